"""Feature analysis: Pearson/Spearman correlation, dropping correlated features, a PCA report.

The matrices come from ``pyspark.ml.stat.Correlation`` and the PCA from
``pyspark.ml.feature.PCA`` (covariance of the scaled features, so the report describes what the
clustering will see). Only d x d matrices come to the driver. Charts are PNGs drawn with
matplotlib's Agg backend (no display needed).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    from pyspark.sql import DataFrame

log = logging.getLogger(__name__)


def correlation_matrix(df: DataFrame, col: str, method: str = "pearson") -> np.ndarray:
    """The d x d correlation matrix of a vector column (``pearson`` or ``spearman``)."""
    from pyspark.ml.stat import Correlation

    if method not in ("pearson", "spearman"):
        raise ValueError(f"method={method!r} is not valid; accepted: pearson, spearman")
    row = Correlation.corr(df, col, method).first()
    assert row is not None
    return row[0].toArray()


def select_uncorrelated(
    matrix: np.ndarray, names: Sequence[str], threshold: float
) -> tuple[list[int], list[dict[str, Any]]]:
    """Keep features in order, dropping each one whose |r| with a kept feature is >= threshold.

    Returns the kept indices and, for each dropped feature, the kept feature it duplicates and
    their correlation. Earlier features win, so order the features by preference.
    """
    import numpy as np

    kept: list[int] = []
    dropped: list[dict[str, Any]] = []
    for j in range(len(names)):
        partner = None
        for i in kept:
            r = matrix[i, j]
            if np.isfinite(r) and abs(r) >= threshold:
                partner = i
                break
        if partner is None:
            kept.append(j)
        else:
            r = float(matrix[partner, j])
            dropped.append({"feature": names[j], "correlated_with": names[partner], "r": r})
    return kept, dropped


def pca_report(
    df: DataFrame, col: str, names: Sequence[str], k: int = 10, top: int = 3
) -> dict[str, Any]:
    """Explained variance per component (and cumulative) and the loadings of the top ones."""
    import numpy as np
    from pyspark.ml.feature import PCA

    d = len(names)
    k = max(1, min(k, d))
    model = PCA(k=k, inputCol=col, outputCol="__pca").fit(df.select(col))
    ratio = model.explainedVariance.toArray()
    pc = model.pc.toArray()  # d x k
    loadings = []
    for c in range(min(top, k)):
        order = np.argsort(-np.abs(pc[:, c]))
        loadings.append(
            {
                "component": c + 1,
                "explained_variance_ratio": float(ratio[c]),
                "loadings": [{"feature": names[i], "loading": float(pc[i, c])} for i in order],
            }
        )
    return {
        "n_components": k,
        "explained_variance_ratio": [float(x) for x in ratio],
        "cumulative_explained_variance": [float(x) for x in np.cumsum(ratio)],
        "top_components": loadings,
    }


def matrix_to_json(matrix: np.ndarray, names: Sequence[str]) -> dict[str, Any]:
    import numpy as np

    values = [[None if not np.isfinite(v) else round(float(v), 6) for v in row] for row in matrix]
    return {"features": list(names), "matrix": values}


def write_charts(report: Mapping[str, Any], out_dir: str) -> list[str]:
    """Correlation heatmaps and the explained-variance curve as PNGs in ``out_dir``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    os.makedirs(out_dir, exist_ok=True)
    written = []
    for method, corr in report.get("correlation", {}).items():
        names = corr["features"]
        m = np.array([[np.nan if v is None else v for v in row] for row in corr["matrix"]])
        size = max(5.0, 0.35 * len(names) + 2)
        fig, ax = plt.subplots(figsize=(size + 1, size))
        im = ax.imshow(m, vmin=-1, vmax=1, cmap="RdBu_r")
        ax.set_xticks(range(len(names)), names, rotation=90, fontsize=7)
        ax.set_yticks(range(len(names)), names, fontsize=7)
        ax.set_title(f"{method.capitalize()} correlation")
        fig.colorbar(im, ax=ax, shrink=0.8)
        fig.tight_layout()
        path = os.path.join(out_dir, f"correlation_{method}.png")
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)
    pca = report.get("pca")
    if pca:
        ratio = np.array(pca["explained_variance_ratio"])
        comps = np.arange(1, len(ratio) + 1)
        fig, ax = plt.subplots(figsize=(6, 4))
        ax.bar(comps, ratio, label="per component")
        ax.plot(comps, np.cumsum(ratio), marker="o", color="C1", label="cumulative")
        ax.set_xlabel("principal component")
        ax.set_ylabel("explained variance ratio")
        ax.set_ylim(0, 1.05)
        ax.set_xticks(comps)
        ax.legend()
        ax.set_title("PCA explained variance")
        fig.tight_layout()
        path = os.path.join(out_dir, "pca_explained_variance.png")
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)
    return written
