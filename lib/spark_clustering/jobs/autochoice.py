"""The automatic segment count: clustering parameters chosen within a business's targets.

A ``segment`` config that leaves DBSCAN's ``minPoints`` (or KMeans'/GMM's ``k``) out, or sets it
to ``"auto"``, lets the job choose. The business states its targets in its own terms
(``[targets]``): the smallest segment worth having (``min_share`` of the customers), the most
segments (``max_segments``), the fewest that make a segmentation (``min_segments``) and the most
noise accepted (``max_noise``). The job then fits every
candidate on the reduction it already holds (persisted once, reused by each fit):

* DBSCAN: eps at multiples of the knee of the k-distance graph (:data:`EPS_MULTIPLES`), for two
  ``minPoints`` tied to the smallest segment worth having, ``min_share * n / 10`` and
  ``min_share * n / 2`` (each clamped to 10..200: a dense core of a tenth, or half, of the
  smallest segment). A larger multiple only merges clusters, so a ``minPoints`` stops at the
  first multiple that leaves fewer than two segments. DBSCAN also finds clusters far smaller
  than any segment a business would act on (a few dozen identical one-time buyers): a cluster
  below ``min_share`` is folded into noise (its customers count as noise, and ``score`` folds
  them the same way), so the noise target bounds how much is folded.
* KMeans and GMM: ``k`` from ``min_segments`` to ``max_segments``.

Each candidate's sizes say whether it is within the targets. Among those that are, the choice is
the best **silhouette measured in the original feature space** (the prepared, scaled features,
not the reduction, which flatters it; noise excluded, stratified sample of
``[evaluation].sample_size`` rows) for DBSCAN and KMeans, and the lowest **BIC** for GMM (its own
likelihood criterion; every component a segment of at least ``min_share``). Ties go to fewer
segments. When no candidate is within the targets the one that misses them least is taken (the
sum of the relative excesses) and the summary, the log and the report say so.

Every candidate is kept in ``summary["auto"]["candidates"]``, logged to the trial as metrics at
one step per candidate, and drawn in ``choice.png`` (the selection curve of the report).
Explicit parameters skip all of this and run exactly as before.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import DataFrame

log = logging.getLogger(__name__)

AUTO = "auto"
EPS_MULTIPLES = (1.0, 1.5, 2.0, 3.0, 4.0, 6.0)
MIN_POINTS_BASE = 10
MIN_POINTS_CAP = 200


@dataclass(frozen=True)
class Targets:
    """The ``[targets]`` table: what a business accepts as a segmentation."""

    min_share: float = 0.01
    max_segments: int = 12
    max_noise: float = 0.10
    min_segments: int = 3

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def check_targets(table: Mapping[str, Any]) -> tuple[Targets, list[str]]:
    """The settings of a ``[targets]`` table and the problems found (each names key and value)."""
    problems: list[str] = []
    known = {"min_share", "max_segments", "max_noise", "min_segments"}
    for key in sorted(set(table) - known):
        problems.append(f"[targets].{key}: unknown key; accepted: {', '.join(sorted(known))}")
    values: dict[str, Any] = {}
    for key, low, high in (("min_share", 0.0, 0.5), ("max_noise", 0.0, 1.0)):
        value = table.get(key, getattr(Targets, key))
        if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
            problems.append(f"[targets].{key}: {value!r}; accepted: a number")
        elif not low <= float(value) < high:
            problems.append(f"[targets].{key}: {value!r}; accepted: in [{low:g}, {high:g})")
        else:
            values[key] = float(value)
    most = table.get("max_segments", Targets.max_segments)
    if isinstance(most, bool) or not isinstance(most, int) or not 2 <= most <= 100:
        problems.append(f"[targets].max_segments: {most!r}; accepted: an integer in [2, 100]")
    else:
        values["max_segments"] = most
    fewest = table.get("min_segments", Targets.min_segments)
    top = values.get("max_segments", Targets.max_segments)
    if isinstance(fewest, bool) or not isinstance(fewest, int) or not 2 <= fewest <= top:
        problems.append(
            f"[targets].min_segments: {fewest!r}; accepted: an integer in [2, max_segments = {top}]"
        )
    else:
        values["min_segments"] = fewest
    return Targets(**values), problems


def min_points_candidates(n: int, targets: Targets) -> list[int]:
    """DBSCAN's ``minPoints`` candidates for ``n`` customers (see the module docstring)."""
    smallest = targets.min_share * n
    tied = [min(MIN_POINTS_CAP, max(MIN_POINTS_BASE, round(smallest / d))) for d in (10, 2)]
    return sorted(set(tied))


@dataclass
class Candidate:
    """One fitted candidate: its parameters, sizes, target check and criterion."""

    params: dict[str, Any]
    n_segments: int
    noise_share: float
    smallest_share: float
    within: bool
    violation: float
    criterion: float = math.nan
    extra: dict[str, Any] = field(default_factory=dict)
    #: the fitted model and its persisted output while this candidate is the best so far
    fitted: Any = field(default=None, repr=False)

    def record(self) -> dict[str, Any]:
        return {
            "params": self.params,
            "n_segments": self.n_segments,
            "noise_share": self.noise_share,
            "smallest_share": self.smallest_share,
            "within_targets": self.within,
            "violation": self.violation,
            "criterion": None if math.isnan(self.criterion) else self.criterion,
            **self.extra,
        }

    def label(self) -> str:
        p = self.params
        if "epsMultiple" in p:
            return f"eps x{p['epsMultiple']:g}, minPoints {p['minPoints']}"
        return f"k={p['k']}"


def assess(sizes: Mapping[int, int], targets: Targets) -> tuple[int, float, float, bool, float]:
    """``(segments, noise share, smallest segment share, within targets, violation)`` of a
    clustering's sizes (label -1 is noise). The violation sums the relative excesses over each
    target (0 within them)."""
    n = sum(sizes.values())
    segs = [v for k, v in sizes.items() if k != -1]
    noise = sizes.get(-1, 0) / n if n else 0.0
    smallest = min(segs) / n if segs and n else 0.0
    count = len(segs)
    violation = max(0.0, noise - targets.max_noise) / max(targets.max_noise, 1e-9)
    violation += max(0, count - targets.max_segments) / targets.max_segments
    violation += max(0, targets.min_segments - count) / targets.min_segments
    if targets.min_share > 0:
        violation += max(0.0, targets.min_share - smallest) / targets.min_share
    return count, noise, smallest, violation == 0.0, violation


def _key(c: Candidate, higher_is_better: bool) -> tuple[float, float, float, int]:
    """Order of preference: within targets, least violation, best criterion, fewest segments."""
    crit = (
        c.criterion
        if not math.isnan(c.criterion)
        else (-math.inf if higher_is_better else math.inf)
    )
    return (
        0.0 if c.within else 1.0,
        c.violation,
        -crit if higher_is_better else crit,
        c.n_segments,
    )


@dataclass
class Choice:
    """The chosen candidate (its model and persisted output) and the record of the search."""

    params: dict[str, Any]
    model: Any
    clustered: DataFrame
    record: dict[str, Any]
    graphs: dict[int, Any]


def grid(
    algorithm: str, params: Mapping[str, Any], n: int, targets: Targets
) -> list[dict[str, Any]]:
    """The candidates' parameters, in the order they are fitted."""
    if algorithm == "dbscan":
        points = (
            min_points_candidates(n, targets)
            if params.get("minPoints", AUTO) == AUTO
            else [int(params["minPoints"])]
        )
        if params.get("eps", AUTO) != AUTO:
            return [{"minPoints": m, "eps": float(params["eps"])} for m in points]
        given = params.get("epsMultiple")
        multiples = EPS_MULTIPLES if given is None else (float(given),)
        return [{"minPoints": m, "epsMultiple": x} for m in points for x in multiples]
    top = max(2, min(targets.max_segments, n - 1))
    return [{"k": k} for k in range(min(targets.min_segments, top), top + 1)]


def choose(
    algorithm: str,
    params: Mapping[str, Any],
    n: int,
    targets: Targets,
    *,
    fit: Callable[[dict[str, Any]], tuple[Any, DataFrame]],
    sizes: Callable[[DataFrame], dict[int, int]],
    criterion: Callable[[Any, DataFrame], float],
    knee: Callable[[int], Any] | None = None,
    release: Callable[[Any, DataFrame], Any] = lambda model, df: df.unpersist(),
    details: Callable[[Any], Mapping[str, Any]] = lambda model: {},
) -> Choice:
    """Fit every candidate of :func:`grid` and keep the preferred one.

    Parameters
    ----------
    algorithm : {"dbscan", "kmeans", "gmm"}
    params : mapping
        The config's clusterer parameters (``"auto"`` where the job chooses).
    n : int
        Customers.
    targets : Targets
    fit : callable
        ``fit(params) -> (model, persisted output with a "cluster" column)``; for DBSCAN the
        params carry the resolved ``eps``.
    sizes : callable
        Rows per cluster label of an output.
    criterion : callable
        ``criterion(model, output)``: the silhouette in the original feature space (higher is
        better) or, for GMM, the BIC (lower is better).
    knee : callable, optional
        DBSCAN: ``knee(minPoints)`` -> the k-distance graph (``.eps`` its knee).
    release : callable
        ``release(model, output)`` frees a candidate that is not (or no longer) the best.
    details : callable
        More figures of a fitted candidate for its record (``details(model)``).

    Returns
    -------
    Choice
    """
    higher = algorithm != "gmm"
    graphs: dict[int, Any] = {}
    tried: list[Candidate] = []
    best: Candidate | None = None
    stopped: set[int] = set()
    for p in grid(algorithm, params, n, targets):
        p = dict(p)
        if algorithm == "dbscan":
            m = int(p["minPoints"])
            if m in stopped:
                continue
            if "epsMultiple" in p:
                assert knee is not None
                if m not in graphs:
                    graphs[m] = knee(m)
                p["eps"] = float(graphs[m].eps) * float(p["epsMultiple"])
        model, out = fit(p)
        count, noise, smallest, within, violation = assess(sizes(out), targets)
        c = Candidate(p, count, noise, smallest, within, violation, extra=dict(details(model)))
        # the criterion is only worth its cost where the candidate can still be chosen
        if count >= 2 and (within or best is None or not best.within):
            c.criterion = float(criterion(model, out))
        tried.append(c)
        log.info(
            "segment: candidate %s: %d segments, noise %.1f%%, smallest %.2f%%, %s%s",
            c.label(), count, 100 * noise, 100 * smallest,
            "within targets" if within else f"outside targets ({violation:.2f})",
            "" if math.isnan(c.criterion) else f", criterion {c.criterion:.4g}",
        )  # fmt: skip
        if best is None or _key(c, higher) < _key(best, higher):
            if best is not None:
                release(*best.fitted)
                best.fitted = None
            c.fitted = (model, out)
            best = c
        else:
            release(model, out)
        if algorithm == "dbscan" and "epsMultiple" in p and count < 2:
            stopped.add(int(p["minPoints"]))  # larger multiples only merge further
    assert best is not None and best.fitted is not None
    chosen = tried.index(best)
    if not best.within:
        log.warning(
            "segment: no candidate is within the targets %s; taking the closest, %s (%d "
            "segments, noise %.1f%%, smallest %.2f%%)", targets.to_dict(), best.label(),
            best.n_segments, 100 * best.noise_share, 100 * best.smallest_share,
        )  # fmt: skip
    record = {
        "algorithm": algorithm,
        "targets": targets.to_dict(),
        "criterion": "silhouette (original features)" if higher else "BIC",
        "candidates": [c.record() for c in tried],
        "labels": [c.label() for c in tried],
        "chosen": chosen,
        "within_targets": best.within,
        "params": {k: v for k, v in best.params.items()},
    }
    if algorithm == "dbscan" and graphs:
        record["knees"] = {str(m): float(g.eps) for m, g in graphs.items()}
    model, out = best.fitted
    return Choice(dict(best.params), model, out, record, graphs)


def gmm_bic(model: Any, df: DataFrame, col: str) -> float:
    """BIC of a fitted Gaussian mixture on ``df``'s ``col``: ``-2 log L + p ln n`` with
    ``p = (k-1) + k d + k d (d+1) / 2`` (full covariances). The log-likelihood is summed per
    partition on the executors (log-sum-exp over components) and added on the driver."""
    from pyspark.sql import functions as F

    from spark_clustering.features.vectors import as_array

    weights = np.asarray(model.weights, dtype=float)
    means = np.asarray(model.means, dtype=float)
    covs = np.asarray(model.covariances, dtype=float)
    k, d = means.shape
    chols = [np.linalg.cholesky(c + 1e-9 * np.eye(d)) for c in covs]
    logdets = np.array([2.0 * np.log(np.diag(c)).sum() for c in chols])
    inv = [np.linalg.inv(c) for c in chols]
    const = np.log(weights) - 0.5 * (d * math.log(2 * math.pi) + logdets)

    def partial(batches: Any) -> Any:
        import pandas as pd

        total, rows = 0.0, 0
        for batch in batches:
            x = np.array(batch["x"].tolist(), dtype=float).reshape(len(batch), d)
            if not len(x):
                continue
            z = np.stack([((x - means[j]) @ inv[j].T) for j in range(k)])  # (k, n, d)
            logp = const[:, None] - 0.5 * (z * z).sum(axis=2)
            top = logp.max(axis=0)
            total += float((top + np.log(np.exp(logp - top).sum(axis=0))).sum())
            rows += len(x)
        yield pd.DataFrame({"ll": [total], "n": [rows]})

    parts = (
        df.select(as_array(df, col).alias("x"))
        .mapInPandas(partial, "ll double, n long")
        .agg(F.collect_list(F.struct("ll", "n")).alias("p"))
        .first()
    )
    assert parts is not None
    values = sorted(float(r["ll"]) for r in parts["p"])  # a sum in a fixed order
    rows = sum(int(r["n"]) for r in parts["p"])
    loglik = math.fsum(values)
    p = (k - 1) + k * d + k * d * (d + 1) / 2
    return -2.0 * loglik + p * math.log(max(rows, 1))


def selection_png(record: Mapping[str, Any], path: str) -> str:
    """The selection curve: each candidate's criterion (filled within the targets, hollow
    outside), its segment count and noise share, the chosen one marked."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    cands: Sequence[Mapping[str, Any]] = record["candidates"]
    labels: Sequence[str] = record["labels"]
    x = np.arange(len(cands))
    fig = Figure(figsize=(10, 6), dpi=100)
    FigureCanvasAgg(fig)
    top, bottom = fig.subplots(2, 1, sharex=True)
    crit = np.array([np.nan if c["criterion"] is None else c["criterion"] for c in cands])
    within = np.array([bool(c["within_targets"]) for c in cands])
    top.plot(x, crit, color="0.6", lw=1)
    top.scatter(x[within], crit[within], color="tab:blue", zorder=3, label="within targets")
    top.scatter(x[~within], crit[~within], facecolors="none", edgecolors="tab:blue", zorder=3,
                label="outside targets")  # fmt: skip
    chosen = int(record["chosen"])
    top.axvline(chosen, color="tab:red", ls="--", lw=1, label="chosen")
    top.set_ylabel(record["criterion"])
    top.legend(loc="best", fontsize=8)
    bottom.bar(x, [c["n_segments"] for c in cands], color="tab:green", alpha=0.6)
    bottom.axhline(record["targets"]["max_segments"], color="tab:green", ls=":", lw=1)
    bottom.set_ylabel("segments", color="tab:green")
    share = bottom.twinx()
    share.plot(x, [100 * c["noise_share"] for c in cands], color="0.3", marker=".")
    share.axhline(100 * record["targets"]["max_noise"], color="0.3", ls=":", lw=1)
    share.set_ylabel("noise %")
    bottom.axvline(chosen, color="tab:red", ls="--", lw=1)
    bottom.set_xticks(x)
    bottom.set_xticklabels(labels, rotation=45, ha="right", fontsize=7)
    fig.suptitle("Automatic choice: candidates and targets (dotted)")
    fig.tight_layout()
    fig.savefig(path)
    return path
