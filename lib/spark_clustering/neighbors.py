"""DBSCAN's eps from the k-distance graph, computed on Spark without collecting the data.

The k-distance of a point is the distance to its k-th nearest point of the dataset, **the point
itself counted** (as scikit-learn's ``min_samples`` and our DBSCAN's ``minPoints`` count it):
with ``eps`` at least a point's k-distance, that point is a core point for ``minPoints = k``.
So ``k = 1`` gives 0 for every point; use ``k = minPoints``.

How, in two passes over Arrow batches: the first counts and checks the rows and draws a
bounded sample of query points (``sampleSize`` rows with the smallest keys hashed from the seed
and the row's content, :mod:`spark_clustering.sampling`: the same rows on any partitioning or
cluster; the only data brought to the driver); the queries are broadcast, each partition builds a
``scipy.spatial.cKDTree`` over its own rows and returns, for every query, its ``k`` smallest
distances, and the per-partition answers are merged (only ``sampleSize x k`` numbers per
partition move). The result is the exact k-distance of each sampled query against the whole
dataset. When the data has at most ``sampleSize`` valid rows, every row is a query and the
curve is the exact full curve.

The knee is found by Kneedle (Satopaa et al., 2011, offline form): the sorted curve is resampled
at ``grid`` evenly spaced quantiles from 0 to ``trim`` (default the 99th percentile), both axes
are scaled to [0, 1], and the knee is where ``x - y`` is largest (the point of the increasing
convex curve farthest below the chord). Trimming the top 1% matters: the largest k-distances
(isolated noise) grow with the number of points looked at, and normalising by the maximum
would make a sample's knee drift from the full curve's.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from . import sampling
from .base import check_choice, check_range
from .features.vectors import (
    FeatureStats,
    Requirement,
    as_array,
    check_stats,
    feature_stats,
    feature_type,
)

if TYPE_CHECKING:  # pragma: no cover
    import pyarrow as pa
    from pyspark.sql import DataFrame

log = logging.getLogger(__name__)

__all__ = ["KDistanceGraph", "k_distances", "kneedle", "suggest_eps"]

DEFAULT_SAMPLE_SIZE = 10_000
DEFAULT_MAX_SAMPLE_SIZE = 200_000


def kneedle(curve: np.ndarray) -> int:
    """Index of the knee of an increasing curve by Kneedle (maximum of ``x_norm - y_norm``).

    ``curve`` is sorted ascending (an increasing, mostly convex curve such as sorted
    k-distances). Returns 0 for a flat curve or a curve of fewer than 3 points.
    """
    y = np.asarray(curve, dtype=np.float64)
    if y.ndim != 1:
        raise ValueError(f"curve must be one-dimensional, got shape {y.shape}")
    n = len(y)
    if n < 3 or y[-1] <= y[0]:
        return 0
    x = np.linspace(0.0, 1.0, n)
    y_norm = (y - y[0]) / (y[-1] - y[0])
    return int(np.argmax(x - y_norm))


def knee_of_sorted(distances: np.ndarray, trim: float = 0.99, grid: int = 1000) -> float:
    """The knee value of sorted k-distances: Kneedle on ``grid`` quantiles from 0 to ``trim``."""
    check_range("trim", trim, gt=0.0, le=1.0)
    check_range("grid", grid, ge=3)
    if len(distances) == 0:
        raise ValueError("no k-distances to find a knee in")
    q = np.quantile(np.asarray(distances, dtype=np.float64), np.linspace(0.0, trim, grid))
    return float(q[kneedle(q)])


@dataclass
class KDistanceGraph:
    """The sorted k-distance curve of the sampled queries and its knee (the suggested eps).

    Attributes
    ----------
    eps : float
        Suggested eps: the knee of the curve (see the module docstring for the method).
    k : int
        Neighbours counted, the point itself included (use DBSCAN's ``minPoints``).
    distances : numpy.ndarray
        k-distances of the sampled query points, sorted ascending.
    knee_index : int
        Position of the knee in ``distances``.
    n_rows : int
        Rows of the dataset the queries were searched against.
    exact : bool
        True when every row was a query (the full curve).
    trim : float
        Quantile where the curve was cut before Kneedle.
    """

    eps: float
    k: int
    distances: np.ndarray = field(repr=False)
    knee_index: int
    n_rows: int
    exact: bool
    trim: float

    @property
    def sample_size(self) -> int:
        """Number of query points on the curve."""
        return len(self.distances)

    def plot(self, path: str, title: str | None = None) -> str:
        """Write the k-distance graph as a PNG with the knee marked; returns ``path``."""
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        fig = Figure(figsize=(7, 4.5), dpi=100)
        FigureCanvasAgg(fig)
        ax = fig.add_subplot(1, 1, 1)
        rank = np.arange(1, len(self.distances) + 1)
        ax.plot(rank, self.distances, lw=1.2, color="#1f77b4", label=f"{self.k}-distance")
        ax.axhline(self.eps, color="#d62728", ls="--", lw=1)
        ax.plot([self.knee_index + 1], [self.eps], "o", color="#d62728", label="knee")
        ax.annotate(
            f"eps = {self.eps:.4g}",
            (self.knee_index + 1, self.eps),
            textcoords="offset points",
            xytext=(-90, 12),
            color="#d62728",
        )
        what = "all" if self.exact else f"{self.sample_size} sampled of"
        ax.set_title(title or f"k-distance graph (k={self.k}, {what} {self.n_rows} rows)")
        ax.set_xlabel("query points sorted by k-distance")
        ax.set_ylabel(f"distance to the {self.k}-th nearest point (itself included)")
        ax.legend(loc="upper left")
        fig.tight_layout()
        fig.savefig(path, format="png")
        return path


def _check(k: int, sampleSize: int, maxSampleSize: int, handleInvalid: str) -> None:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise ValueError(f"k={k!r} is not valid; accepted: an integer >= 1 (DBSCAN's minPoints)")
    check_range("k", k, ge=1)
    check_range("sampleSize", sampleSize, ge=1)
    check_range("maxSampleSize", maxSampleSize, ge=1)
    if sampleSize > maxSampleSize:
        raise ValueError(
            f"sampleSize={sampleSize} is past maxSampleSize={maxSampleSize}: that many query "
            "rows would be collected to the driver and broadcast; lower sampleSize or raise "
            "maxSampleSize"
        )
    check_choice("handleInvalid", handleInvalid, ("error", "skip"))


def _merge_topk(*blocks: np.ndarray) -> np.ndarray:
    """Per row, the ``k`` smallest of the blocks' k-distances (each block ``(m, k)``), sorted."""
    k = blocks[0].shape[1]
    both = np.concatenate(blocks, axis=1)
    return np.sort(np.partition(both, k - 1, axis=1)[:, :k], axis=1)


#: per-partition k-distance blocks are merged on the driver up to this many bytes in all (one
#: job), by a tree reduce past it (driver memory stays bounded)
_COLLECT_MERGE_BYTES = 256 * 1024 * 1024


def _rows_of(column: pa.ListArray, d: int) -> np.ndarray:
    """The non-null rows of an Arrow list column of length-``d`` lists, as a float matrix.

    Null elements become NaN; null rows are left out (``flatten`` skips them).
    """
    values = column.flatten().to_numpy(zero_copy_only=False).astype(np.float64, copy=False)
    return values.reshape(-1, d)


def _scan_and_sample(
    df: DataFrame, col: str, sample_size: int, seed: int
) -> tuple[FeatureStats, np.ndarray, DataFrame]:
    """One pass: :func:`scan_features`' figures and the sampled query rows.

    The queries are the ``sample_size`` valid rows with the smallest content-hashed keys
    (:func:`spark_clustering.sampling.uniform`), every valid row when there are fewer. Each
    partition counts its rows and keeps its own smallest keys, on the Arrow batches; the driver
    merges the partitions' few rows. Returns the figures, the queries and the features as
    ``array<double>`` (the DataFrame to search).
    """
    import pyarrow as pa

    flat = df.select(as_array(df, col).alias("__arr"))
    # A key from the row's content, not rand(): the same rows are drawn on any layout.
    keyed = flat.select(
        "__arr", sampling.uniform(seed, "k-distance", sampling.single_array("__arr")).alias("__key")
    )

    def scan(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        from spark_clustering._worker import prepare_worker

        prepare_worker()
        n = bad = 0
        dmin, dmax = -1, -1
        keys, rows = np.empty(0), np.empty((0, 0))
        for batch in batches:
            column = batch.column(0)
            lengths = column.value_lengths().to_numpy(zero_copy_only=False).astype(np.float64)
            present = ~np.isnan(lengths)
            n += len(batch)
            if not present.any():
                bad += len(batch)
                continue
            lo, hi = int(lengths[present].min()), int(lengths[present].max())
            dmin = lo if dmin < 0 else min(dmin, lo)
            dmax = max(dmax, hi)
            if dmin != dmax or dmin == 0:
                continue  # the driver raises: no sample is needed
            x = _rows_of(column, dmin)
            finite = np.isfinite(x).all(axis=1)
            bad += len(batch) - int(finite.sum())
            key = batch.column(1).to_numpy(zero_copy_only=False)[present][finite]
            keys = np.concatenate([keys, key])
            rows = np.concatenate([rows.reshape(-1, x.shape[1]), x[finite]])
            if len(keys) > sample_size:
                keep = np.argpartition(keys, sample_size - 1)[:sample_size]
                keys, rows = keys[keep], rows[keep]
        yield pa.RecordBatch.from_pydict(
            {
                "n": [n],
                "bad": [bad],
                "dmin": [dmin],
                "dmax": [dmax],
                "keys": [np.ascontiguousarray(keys).tobytes()],
                "rows": [np.ascontiguousarray(rows).tobytes()],
            }
        )

    schema = "n long, bad long, dmin long, dmax long, keys binary, rows binary"
    parts = keyed.mapInArrow(scan, schema).collect()  # type: ignore[arg-type]
    seen = [p for p in parts if p["dmin"] >= 0]
    stats = feature_stats(
        col,
        sum(int(p["n"]) for p in parts),
        min((int(p["dmin"]) for p in seen), default=None),
        max((int(p["dmax"]) for p in seen), default=None),
        sum(int(p["bad"]) for p in parts),
    )
    d = stats.dimension or 0
    # an empty DataFrame may have no partition at all: nothing to concatenate
    keys = np.concatenate(
        [np.empty(0)] + [np.frombuffer(p["keys"], dtype=np.float64) for p in parts]
    )
    rows = np.concatenate(
        [np.empty((0, max(d, 1)))]
        + [np.frombuffer(p["rows"], dtype=np.float64).reshape(-1, max(d, 1)) for p in parts]
    )
    order = np.argsort(keys, kind="stable")[:sample_size]
    return stats, rows[order], flat


def _query_k_distances(
    df: DataFrame,
    k: int,
    featuresCol: str,
    sampleSize: int,
    seed: int,
    maxSampleSize: int,
    handleInvalid: str,
) -> tuple[np.ndarray, int, bool]:
    """Exact k-distances (itself counted) of sampled rows against every row; sorted."""
    import pyarrow as pa

    _check(k, sampleSize, maxSampleSize, handleInvalid)
    feature_type(df, featuresCol)
    stats, queries, flat = _scan_and_sample(df, featuresCol, sampleSize, seed)
    check_stats(featuresCol, stats, handleInvalid, Requirement(int(k), "k", int(k)))
    n = stats.n_rows - stats.n_invalid
    exact = n <= sampleSize
    d = stats.dimension
    assert d is not None  # n > 0: some row has a dimension
    m = len(queries)
    sc = df.sparkSession.sparkContext
    bc = sc.broadcast(queries)

    def per_partition(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        from spark_clustering._worker import prepare_worker

        prepare_worker()
        from scipy.spatial import cKDTree

        parts = [_rows_of(b.column(0), d) for b in batches]
        parts = [p for p in parts if len(p)]
        if not parts:
            return
        points = np.concatenate(parts)
        points = points[np.isfinite(points).all(axis=1)]  # 'skip': invalid rows are not searched
        if not len(points):
            return
        kk = min(k, len(points))
        dist, _ = cKDTree(points).query(bc.value, k=kk)
        dist = np.asarray(dist, dtype=np.float64).reshape(len(bc.value), kk)
        if kk < k:  # a small partition: its missing neighbours are "infinitely far"
            dist = np.hstack([dist, np.full((len(dist), k - kk), np.inf)])
        yield pa.RecordBatch.from_pydict({"d": [np.ascontiguousarray(dist).tobytes()]})

    blocks = flat.mapInArrow(per_partition, "d binary")  # type: ignore[arg-type]
    if flat.rdd.getNumPartitions() * m * k * 8 <= _COLLECT_MERGE_BYTES:
        found = [np.frombuffer(r[0], dtype=np.float64).reshape(m, k) for r in blocks.collect()]
        merged = _merge_topk(*found)
    else:
        merged = blocks.rdd.map(
            lambda row: np.frombuffer(row[0], dtype=np.float64).reshape(m, k)
        ).treeReduce(_merge_topk)
    bc.unpersist()
    return np.sort(merged[:, k - 1]), n, exact


def _positive_fallback(distances: np.ndarray, k: int, featuresCol: str) -> float:
    """The eps suggested when the knee is at distance 0 (more than the knee's share of the
    points have ``k`` identical points): the smallest positive k-distance, or ``ValueError``
    when every k-distance is 0 (no eps > 0 separates anything)."""
    positive = distances[distances > 0.0]
    if not len(positive):
        raise ValueError(
            f"featuresCol={featuresCol!r}: every sampled row has its k={k} nearest rows at "
            "distance 0 (identical points), so no eps > 0 can be suggested; accepted: data "
            "with distinct points (or a smaller k), or set eps yourself"
        )
    eps = float(positive[0])
    log.warning(
        "suggest_eps: the knee of the k-distance curve is 0 (%d of %d sampled rows have k=%d "
        "identical points); suggesting the smallest positive k-distance, %.6g",
        len(distances) - len(positive),
        len(distances),
        k,
        eps,
    )
    return eps


def k_distances(
    df: DataFrame,
    k: int,
    featuresCol: str = "features",
    *,
    sampleSize: int = DEFAULT_SAMPLE_SIZE,
    seed: int = 0,
    maxSampleSize: int = DEFAULT_MAX_SAMPLE_SIZE,
    handleInvalid: str = "error",
) -> np.ndarray:
    """Sorted k-distances (point itself counted) of up to ``sampleSize`` sampled rows.

    Each value is exact against the whole dataset; see the module docstring for how it is
    distributed. At most ``sampleSize`` rows reach the driver (and are broadcast); a
    ``sampleSize`` past ``maxSampleSize`` raises ``ValueError``.

    Parameters
    ----------
    df : DataFrame
        Rows with a features column (vector, dense or sparse, or array of numbers).
    k : int
        Neighbours counted, the point itself included (``1 <= k <= rows``).
    featuresCol : str
        The features column.
    sampleSize : int
        Query rows drawn by content-hashed keys (the same on any layout); all rows when fewer.
    seed : int
        Seed of the sample.
    maxSampleSize : int
        Hard limit on ``sampleSize``.
    handleInvalid : {"error", "skip"}
        Rows with null/NaN/infinite features: fail naming the count, or leave them out.

    Examples
    --------
    >>> d = k_distances(df, k=10, sampleSize=5000)  # doctest: +SKIP
    >>> d.shape, bool((d[1:] >= d[:-1]).all())  # doctest: +SKIP
    ((5000,), True)
    """
    distances, _, _ = _query_k_distances(
        df, k, featuresCol, sampleSize, seed, maxSampleSize, handleInvalid
    )
    return distances


def suggest_eps(
    df: DataFrame,
    k: int,
    featuresCol: str = "features",
    *,
    sampleSize: int = DEFAULT_SAMPLE_SIZE,
    seed: int = 0,
    maxSampleSize: int = DEFAULT_MAX_SAMPLE_SIZE,
    trim: float = 0.99,
    grid: int = 1000,
    handleInvalid: str = "error",
) -> KDistanceGraph:
    """Suggest DBSCAN's eps for ``minPoints = k``: the knee of the k-distance graph.

    Parameters
    ----------
    df, k, featuresCol, sampleSize, seed, maxSampleSize, handleInvalid
        As :func:`k_distances`.
    trim : float
        Quantile where the sorted curve is cut before Kneedle (default 0.99; 1.0 keeps it all).
    grid : int
        Quantiles the curve is resampled at before Kneedle.

    Returns
    -------
    KDistanceGraph
        ``eps``, the sorted ``distances``, ``knee_index`` and ``plot(path)``. ``eps`` is
        always > 0: when the knee is at distance 0 (many identical points), it is the smallest
        positive k-distance, with a warning; when every k-distance is 0, ``ValueError``.

    Examples
    --------
    >>> g = suggest_eps(df, k=10, sampleSize=10000, seed=1)  # doctest: +SKIP
    >>> g.eps  # doctest: +SKIP
    0.53
    >>> g.plot("k_distance.png")  # doctest: +SKIP
    'k_distance.png'
    """
    check_range("trim", trim, gt=0.0, le=1.0)
    check_range("grid", grid, ge=3)
    distances, n, exact = _query_k_distances(
        df, k, featuresCol, sampleSize, seed, maxSampleSize, handleInvalid
    )
    eps = knee_of_sorted(distances, trim=trim, grid=grid)
    if eps <= 0.0:
        eps = _positive_fallback(distances, k, featuresCol)
    index = min(int(np.searchsorted(distances, eps)), len(distances) - 1)
    return KDistanceGraph(
        eps=eps, k=int(k), distances=distances, knee_index=index, n_rows=n, exact=exact, trim=trim
    )
