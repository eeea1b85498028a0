"""The segment report's charts (matplotlib, no Spark): one colour per segment shown, the same
in every chart and table of a run.

The ``TOP`` largest segments get distinct colours (a qualitative palette without greys); the
others are drawn together in one dark colour as "other segments", and grey is for noise only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

#: segments shown one by one in the report's charts and tables; the rest are grouped
TOP = 12
#: tab10 without its grey, then three light tones: distinct for TOP segments
PALETTE = (
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b",
    "#e377c2", "#bcbd22", "#17becf", "#aec7e8", "#ffbb78", "#98df8a",
)  # fmt: skip
NOISE = "#bdbdbd"
OTHER = "#393b79"


def shown(sizes: Mapping[int, int], top: int = TOP) -> list[int]:
    """The clusters shown one by one: the ``top`` largest (noise never), largest first."""
    ranked = sorted((c for c in sizes if c != -1), key=lambda c: (-sizes[c], c))
    return ranked[:top]


def colours(sizes: Mapping[int, int], top: int = TOP) -> dict[int, str]:
    """Colour of every cluster: palette for the shown ones, OTHER for the rest, NOISE for -1."""
    first = {c: PALETTE[i] for i, c in enumerate(shown(sizes, top))}
    return {c: (NOISE if c == -1 else first.get(c, OTHER)) for c in sizes}


def _figure(width: float, height: float) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def sizes_png(sizes: Mapping[int, int], names: Mapping[int, str], path: str, top: int = TOP) -> str:
    """Horizontal bars of the shown segments' shares, then "other segments" and noise;
    ``names``: each cluster's label ("<segment id>: <name>")."""
    total = max(sum(sizes.values()), 1)
    first = shown(sizes, top)
    col = colours(sizes, top)
    rows = [(names.get(c, str(c))[:48], sizes[c], col[c]) for c in first]
    rest = [c for c in sizes if c != -1 and c not in first]
    if rest:
        rows.append((f"{len(rest)} other segments", sum(sizes[c] for c in rest), OTHER))
    if -1 in sizes:
        rows.append(("noise", sizes[-1], NOISE))
    fig = _figure(10, 0.35 * len(rows) + 1.2)
    ax = fig.add_subplot(1, 1, 1)
    y = np.arange(len(rows))[::-1]
    shares = [100 * n / total for _, n, _ in rows]
    ax.barh(y, shares, color=[c for _, _, c in rows])
    ax.set_yticks(y, [label for label, _, _ in rows], fontsize=8)
    for yi, share, (_, n, _) in zip(y, shares, rows, strict=True):
        ax.text(share, yi, f" {share:.1f}% ({n})", va="center", fontsize=7)
    ax.set_xlabel("% of customers")
    ax.set_xlim(0, max(shares) * 1.25 if shares else 1)
    fig.suptitle("Segment sizes")
    fig.tight_layout()
    fig.savefig(path)
    return path


def lifts_png(profiles: Sequence[Mapping[str, Any]], features: Sequence[str], path: str,
              top: int = TOP) -> str:  # fmt: skip
    """Heatmap of feature lifts (standard deviations from the population mean): the shown
    segments (rows) x the features (columns), clipped to +-3."""
    sizes = {int(p["cluster"]): int(p["size"]) for p in profiles}
    first = shown(sizes, top)
    by = {int(p["cluster"]): p for p in profiles}
    m = np.array([[by[c]["lift"].get(f, 0.0) for f in features] for c in first], dtype=float)
    fig = _figure(min(12.0, 2.5 + 0.45 * len(features)), 1.5 + 0.4 * max(len(first), 1))
    ax = fig.add_subplot(1, 1, 1)
    if len(first):
        im = ax.imshow(np.clip(m, -3, 3), cmap="RdBu_r", vmin=-3, vmax=3, aspect="auto")
        fig.colorbar(im, ax=ax, label="lift (std. dev. from the mean)", shrink=0.8)
        for i in range(m.shape[0]):
            for j in range(m.shape[1]):
                ax.text(j, i, f"{m[i, j]:.1f}", ha="center", va="center", fontsize=6)
    ax.set_xticks(range(len(features)), list(features), rotation=60, ha="right", fontsize=7)
    rows = [f"{by[c].get('segment_id', c)}: {by[c].get('name', '')}"[:40] for c in first]
    ax.set_yticks(range(len(first)), rows, fontsize=7)
    fig.suptitle("What sets each segment apart")
    fig.tight_layout()
    fig.savefig(path)
    return path
