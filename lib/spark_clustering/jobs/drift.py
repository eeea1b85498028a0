"""Drift on scoring: what ``score`` is given, compared with what its model was fitted on.

At fit time the ``segment`` job keeps a *reference* with the model (``model/drift.json``):

* for every feature slot the model reads, the exact deciles over the fitted customers
  (:func:`spark_clustering.features.stable.exact_quantiles`, distinct values only) and the share
  of customers in each bin they delimit;
* the share of customers that fell to noise (DBSCAN's -1);
* the bins and shares of the clusterer's fit column: KMeans' ``distance`` to its centre, the
  mixture's ``probability`` of its most probable component.

``score`` bins what it scores with the same edges, in one Spark pass, and computes each
feature's *population stability index*, ``PSI = sum((a - e) * ln(a / e))`` over the bins
(shares floored at 1e-4), the fit column's PSI and the noise share. A run *drifts* when a PSI is
above ``psi`` (default 0.25, the usual "significant shift") or the noise share is above the
fit's by more than ``noise_increase`` (default 0.10). ``score`` still writes its assignments;
the drift goes into its summary and the job exits with :data:`EXIT_DRIFT` (3), which schedules
act on (a re-fit, an alarm). Below the thresholds nothing changes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import Column, DataFrame

FORMAT_VERSION = 1
FILE = "drift.json"
#: the exit code of a ``score`` run whose input drifted (assignments written all the same)
EXIT_DRIFT = 3
DECILES = [i / 10 for i in range(1, 10)]
#: the share a bin is floored at in the PSI (an empty bin would make it infinite)
FLOOR = 1e-4
FIT_COLUMNS = {"kmeans": "distance", "gmm": "probability"}


@dataclass(frozen=True)
class Thresholds:
    """When a scored input counts as drifted (``score --drift-psi``, ``--drift-noise``)."""

    psi: float = 0.25
    noise_increase: float = 0.10

    def check(self) -> None:
        if not (self.psi > 0 and math.isfinite(self.psi)):
            raise ValueError(f"--drift-psi {self.psi}; accepted: a finite number > 0")
        if not 0 < self.noise_increase <= 1:
            raise ValueError(f"--drift-noise {self.noise_increase}; accepted: in (0, 1]")


def psi(expected: Sequence[float], actual: Sequence[float]) -> float:
    """Population stability index of two share vectors over the same bins.

    Examples
    --------
    >>> round(psi([0.5, 0.5], [0.5, 0.5]), 6)
    0.0
    >>> round(psi([0.5, 0.5], [0.9, 0.1]), 3)
    0.879
    """
    if len(expected) != len(actual):
        raise ValueError(f"{len(expected)} reference bins and {len(actual)} scored bins")
    total = 0.0
    for e, a in zip(expected, actual, strict=True):
        e, a = max(float(e), FLOOR), max(float(a), FLOOR)
        total += (a - e) * math.log(a / e)
    return total


def _bucket(col: str, edges: Sequence[float]) -> Column:
    """The bin of each value: the number of edges below it (0 .. len(edges)); null stays null."""
    from pyspark.sql import functions as F

    x = F.col(col)
    if not edges:
        return F.when(x.isNotNull(), F.lit(0))
    index = (x > F.lit(float(edges[0]))).cast("int")
    for e in edges[1:]:
        index = index + (x > F.lit(float(e))).cast("int")
    return F.when(x.isNotNull(), index)


def bin_shares(df: DataFrame, edges: Mapping[str, Sequence[float]]) -> dict[str, list[float]]:
    """The share of the non-null values of each column in each bin, in one Spark pass."""
    from pyspark.sql import functions as F

    aggs: list[Column] = []
    keys: list[str] = []
    for col, cuts in edges.items():
        bucket = _bucket(col, cuts)
        aggs.append(F.count(F.col(col)).alias(f"n{len(keys)}"))
        for b in range(len(cuts) + 1):
            aggs.append(F.sum(F.when(bucket == b, 1).otherwise(0)).alias(f"b{len(keys)}_{b}"))
        keys.append(col)
    if not aggs:
        return {}
    row = df.agg(*aggs).first()
    assert row is not None
    out = {}
    for i, col in enumerate(keys):
        n = int(row[f"n{i}"] or 0)
        counts = [int(row[f"b{i}_{b}"] or 0) for b in range(len(edges[col]) + 1)]
        out[col] = [c / n if n else 0.0 for c in counts]
    return out


def _slots(features: DataFrame, col: str) -> tuple[DataFrame, dict[str, str]]:
    """The features column's slots (a vector or an array of numbers) as columns, and slot
    column -> feature name (the vector's ML attribute names, else ``slot <i>``)."""
    from spark_clustering.features.assemble import feature_names
    from spark_clustering.features.vectors import as_array

    values = as_array(features, col)
    first = features.select(values.alias("v")).first()
    size = len(first[0]) if first is not None and first[0] is not None else 0
    try:
        names = feature_names(features, col)
    except ValueError:  # an array, or a vector written without slot names: number the slots
        names = [f"slot {i}" for i in range(size)]
    slots = features.select(*[values[i].cast("double").alias(f"__f{i}") for i in range(size)])
    return slots, {f"__f{i}": n for i, n in enumerate(names[:size])}


def feature_reference(features: DataFrame, features_col: str) -> dict[str, Any]:
    """Deciles and bin shares of each feature slot (a sweep computes it once for its trials)."""
    from spark_clustering.features.stable import exact_quantiles

    slots, names = _slots(features, features_col)
    quantiles = exact_quantiles(slots, list(names), DECILES)
    edges = {c: sorted(set(q)) for c, q in quantiles.items()}
    shares = bin_shares(slots, edges)
    return {names[c]: {"edges": edges[c], "shares": shares[c]} for c in names if c in edges}


def _noise(assigned: DataFrame) -> tuple[int, float]:
    """The number of assigned customers and the share of them that fell to noise."""
    from pyspark.sql import functions as F

    stats = assigned.agg(
        F.count(F.lit(1)).alias("n"), F.sum(F.col("is_noise").cast("int")).alias("noise")
    ).first()
    assert stats is not None
    n = int(stats["n"])
    return n, int(stats["noise"] or 0) / max(n, 1)


def reference(
    features: DataFrame | Mapping[str, Any],
    features_col: str,
    assigned: DataFrame,
    clusterer: str,
) -> dict[str, Any]:
    """The fitted customers' distribution, as ``model/drift.json`` keeps it. ``features`` is
    the model's input, or its :func:`feature_reference` already computed."""

    from spark_clustering.features.stable import exact_quantiles

    if not isinstance(features, Mapping):
        features = feature_reference(features, features_col)
    out: dict[str, Any] = {"format_version": FORMAT_VERSION, "features": dict(features)}
    out["customers"], out["noise_share"] = _noise(assigned)
    fit_col = FIT_COLUMNS.get(clusterer)
    if fit_col and fit_col in assigned.columns:
        fit_edges = sorted(set(exact_quantiles(assigned, [fit_col], DECILES).get(fit_col, [])))
        out["fit"] = {
            "column": fit_col,
            "edges": fit_edges,
            "shares": bin_shares(assigned, {fit_col: fit_edges})[fit_col],
        }
    return out


def compare(
    ref: Mapping[str, Any],
    features: DataFrame,
    features_col: str,
    assigned: DataFrame,
    thresholds: Thresholds,
) -> dict[str, Any]:
    """PSI of each feature and of the fit column, the noise shares, and whether it drifted."""

    slots, names = _slots(features, features_col)
    column_of = {n: c for c, n in names.items()}
    missing = sorted(set(ref["features"]) - set(column_of))
    if missing:
        raise ValueError(
            f"the scored features lack {missing}, which the model was fitted on; accepted: "
            f"the features of the model's preparation ({sorted(ref['features'])})"
        )
    edges = {column_of[n]: r["edges"] for n, r in ref["features"].items()}
    shares = bin_shares(slots, edges)
    features_psi = {n: psi(r["shares"], shares[column_of[n]]) for n, r in ref["features"].items()}
    _, noise = _noise(assigned)
    out: dict[str, Any] = {
        "thresholds": {"psi": thresholds.psi, "noise_increase": thresholds.noise_increase},
        "psi": features_psi,
        "noise_share": {"fit": ref["noise_share"], "scored": noise},
    }
    reasons = [
        f"{n}: PSI {v:.3f} > {thresholds.psi}"
        for n, v in features_psi.items()
        if v > thresholds.psi
    ]
    fit = ref.get("fit")
    if fit and fit["column"] in assigned.columns:
        got = bin_shares(assigned, {fit["column"]: fit["edges"]})[fit["column"]]
        out["fit_psi"] = {fit["column"]: psi(fit["shares"], got)}
        value = out["fit_psi"][fit["column"]]
        if value > thresholds.psi:
            reasons.append(f"{fit['column']} to the segment: PSI {value:.3f} > {thresholds.psi}")
    if noise - ref["noise_share"] > thresholds.noise_increase:
        reasons.append(
            f"noise share {noise:.3f} vs {ref['noise_share']:.3f} at fit "
            f"(+{noise - ref['noise_share']:.3f} > {thresholds.noise_increase})"
        )
    out["drifted"] = bool(reasons)
    out["reasons"] = reasons
    return out
