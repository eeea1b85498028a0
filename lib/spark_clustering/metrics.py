"""Clustering quality at scale: silhouette, Davies-Bouldin, Calinski-Harabasz, noise and sizes.

Every figure is computed on the executors from mergeable statistics; only per-cluster sums
(``n_clusters x d`` numbers) and a bounded silhouette sample reach the driver.

* Pass 1 (Spark SQL, per cluster): count, centroid, and the within-cluster sum of squares
  ``W_c = n_c * sum_j var_pop(x_j)`` (Spark's variance aggregate is numerically stable).
* Pass 2 (one ``mapInPandas`` over the rows, centroids broadcast): per cluster the sum of
  Euclidean distances to the centroid (Davies-Bouldin) and the sum of the per-row squared
  Euclidean silhouette, exact in ``O(n * k * d)`` because the mean squared distance from ``x``
  to the points of cluster ``c`` is ``||x - mu_c||^2 + W_c / n_c``.
* Silhouette (Euclidean): scikit-learn's ``silhouette_samples`` on stratified samples drawn by
  Spark in one pass (one independent uniform per repeat), weighted back to the cluster sizes,
  the repeats giving a Student-t confidence interval.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any, cast

import numpy as np
from pyspark import keyword_only
from pyspark.ml.evaluation import Evaluator
from pyspark.ml.param import Param, Params, TypeConverters
from pyspark.ml.util import DefaultParamsReadable, DefaultParamsWritable
from pyspark.sql import functions as F
from pyspark.sql.types import IntegralType

from . import sampling
from .base import check_choice, check_range, log_metrics
from .features.vectors import Requirement, check_input, coordinate_names, with_coordinates
from .params import HasFeaturesCol, HasPredictionCol, HasSeed

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd
    from pyspark.sql import DataFrame

__all__ = ["METRIC_NAMES", "ClusteringMetricsEvaluator", "evaluate"]

#: Scores a caller can ask for (``metrics=``) and the evaluator's ``metricName`` choices.
METRIC_NAMES = ("silhouette", "silhouette_sqeuclidean", "davies_bouldin", "calinski_harabasz")
_EVALUATOR_METRICS = (*METRIC_NAMES, "coverage")

#: Clusters with at most this many scored rows are taken whole into every silhouette sample,
#: so that small clusters are represented (their rows are weighted back to their true share).
MIN_ROWS_PER_CLUSTER = 10
_LABEL = "__label"
_BLOCK = 4_000_000  # float64 elements per (rows x clusters x dims) block in pass 2


# --------------------------------------------------------------------------- numeric kernels


def _squared_distances(x: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """``||x_i - c_j||^2`` computed from differences (no dot-product cancellation)."""
    n, d = x.shape
    k = centroids.shape[0]
    out = np.empty((n, k))
    step = max(1, _BLOCK // max(1, n * d))
    for start in range(0, k, step):
        diff = x[:, None, :] - centroids[None, start : start + step, :]
        out[:, start : start + step] = np.einsum("ijk,ijk->ij", diff, diff)
    return out


def sqeuclidean_silhouette_rows(
    x: np.ndarray, own: np.ndarray, centroids: np.ndarray, sizes: np.ndarray, wss: np.ndarray
) -> np.ndarray:
    """Per-row silhouette with squared Euclidean distance, exact, from cluster statistics.

    ``own`` holds each row's cluster index into ``centroids``/``sizes``/``wss`` (the
    within-cluster sums of squares). Matches ``sklearn.metrics.silhouette_samples(...,
    metric="sqeuclidean")``: the own-cluster mean excludes the row, singletons score 0.
    """
    d2 = _squared_distances(x, centroids)
    mean_to = d2 + (wss / sizes)[None, :]
    rows = np.arange(x.shape[0])
    n_own = sizes[own]
    with np.errstate(divide="ignore", invalid="ignore"):
        intra = (n_own * d2[rows, own] + wss[own]) / (n_own - 1.0)
    mean_to[rows, own] = np.inf
    inter = mean_to.min(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        s = (inter - intra) / np.maximum(intra, inter)
    s[n_own <= 1] = 0.0
    return np.nan_to_num(s)


def _student_t(confidence: float, dof: int) -> float:
    from scipy import stats

    return float(stats.t.ppf(0.5 + confidence / 2.0, dof))


# --------------------------------------------------------------------------- evaluate


def _check_inputs(
    df: DataFrame,
    featuresCol: str,
    predictionCol: str,
    minClusterSize: int,
    sampleSize: int,
    repeats: int,
    maxSampleSize: int,
    confidence: float,
    metrics: Iterable[str] | None,
) -> tuple[str, ...]:
    if predictionCol not in df.columns:
        raise ValueError(
            f"predictionCol={predictionCol!r} is not a column of the DataFrame; "
            f"columns: {df.columns}"
        )
    dtype = df.schema[predictionCol].dataType
    if not isinstance(dtype, IntegralType):
        raise ValueError(
            f"predictionCol={predictionCol!r} has type {dtype.simpleString()}; accepted: an "
            "integer cluster label (noise as noiseLabel)"
        )
    check_range("minClusterSize", minClusterSize, ge=1)
    check_range("sampleSize", sampleSize, ge=2)
    check_range("repeats", repeats, ge=1)
    check_range("maxSampleSize", maxSampleSize, ge=2)
    check_range("confidence", confidence, gt=0.0)
    check_range("confidence", confidence, le=0.999999)
    if sampleSize * repeats > maxSampleSize:
        raise ValueError(
            f"sampleSize={sampleSize} x repeats={repeats} = {sampleSize * repeats} rows would be "
            f"collected for the silhouette, past maxSampleSize={maxSampleSize}; lower sampleSize "
            "or repeats, or raise maxSampleSize if the driver has the memory"
        )
    chosen = tuple(METRIC_NAMES if metrics is None else metrics)
    for name in chosen:
        check_choice("metrics", name, METRIC_NAMES)
    return chosen


def evaluate(
    df: DataFrame,
    featuresCol: str = "features",
    predictionCol: str = "cluster",
    *,
    noiseLabel: int = -1,
    minClusterSize: int = 1,
    sampleSize: int = 5000,
    repeats: int = 5,
    maxSampleSize: int = 200_000,
    confidence: float = 0.95,
    seed: int = 0,
    metrics: Iterable[str] | None = None,
    cache: bool = True,
) -> dict[str, Any]:
    """Score a clustering: silhouette (with CI), Davies-Bouldin, Calinski-Harabasz, sizes.

    Rows labelled ``noiseLabel`` and clusters with fewer than ``minClusterSize`` rows are left
    out of every score; ``coverage`` is the fraction of rows the scores describe.

    Parameters
    ----------
    df : DataFrame
        Rows with a features column (Spark ML vector, dense or sparse, or array of numbers)
        and an integer cluster label.
    featuresCol, predictionCol : str
        Column names (defaults ``"features"`` and ``"cluster"``).
    noiseLabel : int
        Label of noise rows (DBSCAN's -1); excluded from the scores.
    minClusterSize : int
        Clusters smaller than this are excluded too (default 1: none).
    sampleSize : int
        Rows per silhouette sample (stratified by cluster). When the scored rows are at most
        this many, the silhouette is exact and its interval has zero width.
    repeats : int
        Independent silhouette samples; their spread gives ``silhouette_ci``.
    maxSampleSize : int
        Hard limit on the rows collected to the driver for the silhouette (``sampleSize x
        repeats``, plus the small clusters taken whole); past it ``ValueError`` is raised.
    confidence : float
        Level of the Student-t interval over the repeats (default 0.95).
    seed : int
        Seed of the silhouette samples.
    metrics : iterable of str, optional
        Subset of ``METRIC_NAMES`` to compute (default all); the size figures always come.
    cache : bool
        Persist the flattened (label, coordinates) rows for the passes, then release them.

    Returns
    -------
    dict
        ``silhouette``, ``silhouette_ci`` (low, high), ``silhouette_ci_low``,
        ``silhouette_ci_high``, ``silhouette_std``, ``silhouette_exact``,
        ``silhouette_sample_rows``, ``silhouette_by_cluster`` (label -> mean silhouette of its
        sampled rows), ``silhouette_sqeuclidean``, ``davies_bouldin``,
        ``calinski_harabasz``, ``n_clusters`` (scored), ``n_clusters_excluded``,
        ``noise_fraction``, ``coverage``, ``n_rows``, ``n_noise``, ``n_scored``,
        ``cluster_size_min``/``median``/``mean``/``max`` and ``largest_cluster_fraction``.
        With fewer than two scored clusters (or every scored cluster a single row) the scores
        are NaN and a ``UserWarning`` says why (scikit-learn raises instead).

    Examples
    --------
    >>> from spark_clustering import evaluate  # doctest: +SKIP
    >>> m = evaluate(df, "features", "cluster", sampleSize=5000, repeats=5)  # doctest: +SKIP
    >>> m["silhouette"], m["silhouette_ci"], m["davies_bouldin"]  # doctest: +SKIP
    """
    chosen = _check_inputs(
        df,
        featuresCol,
        predictionCol,
        minClusterSize,
        sampleSize,
        repeats,
        maxSampleSize,
        confidence,
        metrics,
    )
    # no handleInvalid here: a score over part of the rows would not say so
    stats = check_input(df, featuresCol, None, Requirement(1, "evaluate")).stats
    assert stats.dimension is not None
    d = stats.dimension
    coords = coordinate_names(d)
    flat = with_coordinates(
        df.select(F.col(predictionCol).cast("long").alias(_LABEL), featuresCol), featuresCol, d
    ).select(_LABEL, *coords)
    if cache:
        flat = flat.persist()
    try:
        result = _evaluate_flat(
            flat,
            coords,
            stats.n_rows,
            noiseLabel=noiseLabel,
            minClusterSize=minClusterSize,
            sampleSize=sampleSize,
            repeats=repeats,
            maxSampleSize=maxSampleSize,
            confidence=confidence,
            seed=seed,
            chosen=chosen,
        )
    finally:
        if cache:
            flat.unpersist()
    log_metrics({k: v for k, v in result.items() if isinstance(v, (int, float))})
    return result


def _evaluate_flat(
    flat: DataFrame,
    coords: list[str],
    n_rows: int,
    *,
    noiseLabel: int,
    minClusterSize: int,
    sampleSize: int,
    repeats: int,
    maxSampleSize: int,
    confidence: float,
    seed: int,
    chosen: tuple[str, ...],
) -> dict[str, Any]:
    # Pass 1: per-cluster count, centroid and within-cluster sum of squares.
    aggs = [F.count(F.lit(1)).alias("n")]
    aggs += [F.avg(c).alias(f"m{i}") for i, c in enumerate(coords)]
    aggs += [F.var_pop(c).alias(f"v{i}") for i, c in enumerate(coords)]
    rows = flat.groupBy(_LABEL).agg(*aggs).collect()
    d = len(coords)
    labels_all = np.array([r[_LABEL] for r in rows], dtype=np.int64)
    sizes_all = np.array([r["n"] for r in rows], dtype=np.float64)
    is_noise = labels_all == noiseLabel
    n_noise = int(sizes_all[is_noise].sum())
    keep = (~is_noise) & (sizes_all >= minClusterSize)
    labels = labels_all[keep]
    order = np.argsort(labels)
    labels = labels[order]
    sizes = sizes_all[keep][order]
    kept_rows = [rows[i] for i in np.flatnonzero(keep)[order]]
    centroids = np.array([[r[f"m{j}"] for j in range(d)] for r in kept_rows]).reshape(-1, d)
    wss = np.array([sum(r[f"v{j}"] for j in range(d)) for r in kept_rows]) * sizes
    n_scored = int(sizes.sum())
    k = len(labels)

    result: dict[str, Any] = {
        "n_rows": n_rows,
        "n_noise": n_noise,
        "noise_fraction": n_noise / n_rows,
        "n_scored": n_scored,
        "coverage": n_scored / n_rows,
        "n_clusters": k,
        "n_clusters_excluded": int((~is_noise).sum()) - k,
        "cluster_size_min": int(sizes.min()) if k else 0,
        "cluster_size_median": float(np.median(sizes)) if k else math.nan,
        "cluster_size_mean": float(sizes.mean()) if k else math.nan,
        "cluster_size_max": int(sizes.max()) if k else 0,
        "largest_cluster_fraction": float(sizes.max() / n_scored) if k else math.nan,
    }
    nan_scores = {
        "silhouette": math.nan,
        "silhouette_ci": (math.nan, math.nan),
        "silhouette_ci_low": math.nan,
        "silhouette_ci_high": math.nan,
        "silhouette_std": math.nan,
        "silhouette_exact": False,
        "silhouette_sample_rows": 0,
        "silhouette_sqeuclidean": math.nan,
        "davies_bouldin": math.nan,
        "calinski_harabasz": math.nan,
    }
    if k < 2 or k >= n_scored:
        why = (
            "no rows are left to score (all noise or excluded)"
            if k == 0
            else f"{k} cluster(s) over {n_scored} scored rows; the scores need 2 <= clusters < rows"
        )
        warnings.warn(f"evaluate: scores are undefined, returning NaN: {why}", stacklevel=3)
        result.update(nan_scores)
        return result

    result.update(nan_scores)
    if any(m in chosen for m in ("silhouette_sqeuclidean", "davies_bouldin")):
        dist_sums, sil_sum = _pass_two(flat, coords, labels, centroids, sizes, wss)
        if "silhouette_sqeuclidean" in chosen:
            result["silhouette_sqeuclidean"] = sil_sum / n_scored
        if "davies_bouldin" in chosen:
            result["davies_bouldin"] = davies_bouldin_from_stats(centroids, dist_sums / sizes)
    if "calinski_harabasz" in chosen:
        result["calinski_harabasz"] = calinski_harabasz_from_stats(centroids, sizes, wss)
    if "silhouette" in chosen:
        result.update(
            _sampled_silhouette(
                flat,
                coords,
                labels,
                sizes,
                sampleSize=sampleSize,
                repeats=repeats,
                maxSampleSize=maxSampleSize,
                confidence=confidence,
                seed=seed,
            )
        )
    return result


def calinski_harabasz_from_stats(
    centroids: np.ndarray, sizes: np.ndarray, wss: np.ndarray
) -> float:
    """Calinski-Harabasz index from per-cluster centroids, sizes and sums of squares."""
    n, k = float(sizes.sum()), len(sizes)
    mean = (sizes[:, None] * centroids).sum(axis=0) / n
    extra = float((sizes * ((centroids - mean) ** 2).sum(axis=1)).sum())
    intra = float(wss.sum())
    return 1.0 if intra == 0.0 else extra * (n - k) / (intra * (k - 1.0))


def davies_bouldin_from_stats(centroids: np.ndarray, intra: np.ndarray) -> float:
    """Davies-Bouldin index from centroids and mean distances to them (as scikit-learn)."""
    diff = centroids[:, None, :] - centroids[None, :, :]
    between = np.sqrt((diff**2).sum(axis=2))
    if np.allclose(intra, 0) or np.allclose(between, 0):
        return 0.0
    between[between == 0] = np.inf
    combined = intra[:, None] + intra[None, :]
    return float(np.mean(np.max(combined / between, axis=1)))


def _pass_two(
    flat: DataFrame,
    coords: list[str],
    labels: np.ndarray,
    centroids: np.ndarray,
    sizes: np.ndarray,
    wss: np.ndarray,
) -> tuple[np.ndarray, float]:
    """Per cluster: sum of distances to the centroid; overall: sum of sqeuclidean silhouettes."""
    import pandas as pd

    state = {"labels": labels, "centroids": centroids, "sizes": sizes, "wss": wss}
    bc = flat.sparkSession.sparkContext.broadcast(state)

    def partials(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        from spark_clustering._worker import prepare_worker

        prepare_worker()
        s = bc.value
        lab, cen = s["labels"], s["centroids"]
        for pdf in batches:
            own = np.searchsorted(lab, pdf[_LABEL].to_numpy())
            own = np.minimum(own, len(lab) - 1)
            ok = lab[own] == pdf[_LABEL].to_numpy()
            if not ok.any():
                continue
            x = pdf[coords].to_numpy(dtype=np.float64)[ok]
            own = own[ok]
            dist = np.sqrt(((x - cen[own]) ** 2).sum(axis=1))
            sil = sqeuclidean_silhouette_rows(x, own, cen, s["sizes"], s["wss"])
            yield pd.DataFrame(
                {
                    "c": np.arange(len(lab)),
                    "dist": np.bincount(own, weights=dist, minlength=len(lab)),
                    "sil": np.bincount(own, weights=sil, minlength=len(lab)),
                }
            )

    out = (
        flat.mapInPandas(partials, "c long, dist double, sil double")  # type: ignore[arg-type]
        .groupBy("c")
        .agg(F.sum("dist").alias("dist"), F.sum("sil").alias("sil"))
        .collect()
    )
    bc.unpersist()
    dist_sums = np.zeros(len(labels))
    sil_total = 0.0
    for r in out:
        dist_sums[int(r["c"])] = r["dist"]
        sil_total += r["sil"]
    return dist_sums, sil_total


def _sampled_silhouette(
    flat: DataFrame,
    coords: list[str],
    labels: np.ndarray,
    sizes: np.ndarray,
    *,
    sampleSize: int,
    repeats: int,
    maxSampleSize: int,
    confidence: float,
    seed: int,
) -> dict[str, Any]:
    """Euclidean silhouette on stratified samples, weighted back to the cluster sizes."""
    from sklearn.metrics import silhouette_samples

    n_scored = float(sizes.sum())
    exact = n_scored <= sampleSize
    if exact:
        frac = np.ones(len(sizes))
        repeats = 1
    else:
        want = np.maximum(MIN_ROWS_PER_CLUSTER, sampleSize * sizes / n_scored)
        frac = np.minimum(1.0, want / sizes)
    expected = float((frac * sizes).sum()) * repeats
    if expected > maxSampleSize:
        raise ValueError(
            f"the silhouette sample would bring about {int(expected)} rows to the driver "
            f"(sampleSize={sampleSize} x repeats={repeats}, plus {len(sizes)} clusters of at "
            f"least {MIN_ROWS_PER_CLUSTER} rows each), past maxSampleSize={maxSampleSize}; "
            "raise minClusterSize to drop tiny clusters, lower sampleSize, or raise maxSampleSize"
        )
    spark = flat.sparkSession
    fractions = spark.createDataFrame(
        [(int(lab), float(f)) for lab, f in zip(labels, frac, strict=True)],
        f"{_LABEL} long, __f double",
    )
    # Draws hashed from the seed and each row's label and coordinates (not rand()): the same
    # rows on any partitioning or cluster, so the same estimate to the last digit.
    u_cols = [
        sampling.uniform(
            seed + 7919 * r, "silhouette", _LABEL, *map(sampling.single, coords)
        ).alias(f"__u{r}")
        for r in range(repeats)
    ]
    picked = F.col("__u0") < F.col("__f")
    for r in range(1, repeats):
        picked = picked | (F.col(f"__u{r}") < F.col("__f"))
    sampled = (
        flat.join(F.broadcast(fractions), on=_LABEL, how="inner")
        .select(_LABEL, *coords, "__f", *u_cols)
        .where(picked)
    )
    pdf = cast("pd.DataFrame", sampled.toPandas())
    # Partition order would change the order of floating-point sums below.
    pdf = pdf.sort_values([_LABEL, *coords], kind="stable", ignore_index=True)
    x_all = pdf[coords].to_numpy(dtype=np.float64)
    lab_all = pdf[_LABEL].to_numpy()
    size_of = dict(zip(labels.tolist(), sizes.tolist(), strict=True))
    estimates, rows_used = [], []
    per_cluster: dict[int, list[float]] = {}
    for r in range(repeats):
        pick = (pdf[f"__u{r}"] < pdf["__f"]).to_numpy()
        lab = lab_all[pick]
        uniq, inv, counts = np.unique(lab, return_inverse=True, return_counts=True)
        if len(uniq) < 2 or len(uniq) >= len(lab):
            continue
        s = silhouette_samples(x_all[pick], lab)
        # each sampled row stands for size_c / sampled_c rows of its cluster
        weight = np.array([size_of[int(u)] for u in uniq])[inv] / counts[inv]
        estimates.append(float((weight * s).sum() / weight.sum()))
        rows_used.append(int(pick.sum()))
        for j, u in enumerate(uniq):
            per_cluster.setdefault(int(u), []).append(float(s[inv == j].mean()))
    if not estimates:
        warnings.warn(
            "evaluate: the silhouette samples held fewer than 2 clusters; silhouette is NaN",
            stacklevel=4,
        )
        return {}
    est = np.array(estimates)
    mean = float(est.mean())
    if exact:
        low = high = mean
        std = 0.0
    elif len(est) >= 2:
        std = float(est.std(ddof=1))
        half = _student_t(confidence, len(est) - 1) * std / math.sqrt(len(est))
        low, high = mean - half, mean + half
    else:
        std, low, high = math.nan, math.nan, math.nan
    return {
        "silhouette": mean,
        "silhouette_ci": (low, high),
        "silhouette_ci_low": low,
        "silhouette_ci_high": high,
        "silhouette_std": std,
        "silhouette_exact": exact,
        "silhouette_sample_rows": int(np.mean(rows_used)),
        "silhouette_by_cluster": {c: float(np.mean(v)) for c, v in sorted(per_cluster.items())},
    }


# --------------------------------------------------------------------------- Spark ML Evaluator


class _ClusteringMetricsParams(HasFeaturesCol, HasPredictionCol, HasSeed):
    metricName: Param[str] = Param(
        Params._dummy(),
        "metricName",
        f"metric to return: one of {', '.join(_EVALUATOR_METRICS)}",
        typeConverter=TypeConverters.toString,
    )
    noiseLabel: Param[int] = Param(
        Params._dummy(),
        "noiseLabel",
        "label of noise rows, excluded from the scores",
        typeConverter=TypeConverters.toInt,
    )
    minClusterSize: Param[int] = Param(
        Params._dummy(),
        "minClusterSize",
        "clusters with fewer rows are excluded from the scores (>= 1)",
        typeConverter=TypeConverters.toInt,
    )
    sampleSize: Param[int] = Param(
        Params._dummy(),
        "sampleSize",
        "rows per silhouette sample (stratified); exact when the data is smaller",
        typeConverter=TypeConverters.toInt,
    )
    repeats: Param[int] = Param(
        Params._dummy(),
        "repeats",
        "independent silhouette samples (their spread gives the interval)",
        typeConverter=TypeConverters.toInt,
    )
    maxSampleSize: Param[int] = Param(
        Params._dummy(),
        "maxSampleSize",
        "hard limit on rows collected to the driver for the silhouette",
        typeConverter=TypeConverters.toInt,
    )

    def __init__(self) -> None:
        super().__init__()
        self._setDefault(
            featuresCol="features",
            predictionCol="cluster",
            metricName="silhouette",
            noiseLabel=-1,
            minClusterSize=1,
            sampleSize=5000,
            repeats=5,
            maxSampleSize=200_000,
            seed=0,
        )

    def getMetricName(self) -> str:
        """Gets the value of metricName or its default value."""
        return self.getOrDefault(self.metricName)

    def getNoiseLabel(self) -> int:
        """Gets the value of noiseLabel or its default value."""
        return self.getOrDefault(self.noiseLabel)

    def getMinClusterSize(self) -> int:
        """Gets the value of minClusterSize or its default value."""
        return self.getOrDefault(self.minClusterSize)

    def getSampleSize(self) -> int:
        """Gets the value of sampleSize or its default value."""
        return self.getOrDefault(self.sampleSize)

    def getRepeats(self) -> int:
        """Gets the value of repeats or its default value."""
        return self.getOrDefault(self.repeats)

    def getMaxSampleSize(self) -> int:
        """Gets the value of maxSampleSize or its default value."""
        return self.getOrDefault(self.maxSampleSize)


class ClusteringMetricsEvaluator(
    Evaluator, _ClusteringMetricsParams, DefaultParamsReadable, DefaultParamsWritable
):
    """Spark ML ``Evaluator`` over :func:`evaluate`: one figure per call, noise excluded.

    ``davies_bouldin`` is smaller-is-better; the others are larger-is-better.

    Examples
    --------
    >>> ev = ClusteringMetricsEvaluator(metricName="davies_bouldin")  # doctest: +SKIP
    >>> ev.evaluate(predictions), ev.isLargerBetter()  # doctest: +SKIP
    (0.41, False)
    """

    _input_kwargs: dict[str, Any]

    @keyword_only
    def __init__(
        self,
        *,
        featuresCol: str = "features",
        predictionCol: str = "cluster",
        metricName: str = "silhouette",
        noiseLabel: int = -1,
        minClusterSize: int = 1,
        sampleSize: int = 5000,
        repeats: int = 5,
        maxSampleSize: int = 200_000,
        seed: int = 0,
    ) -> None:
        super().__init__()
        kwargs = self._input_kwargs
        self._set(**kwargs)

    @keyword_only
    def setParams(
        self,
        *,
        featuresCol: str = "features",
        predictionCol: str = "cluster",
        metricName: str = "silhouette",
        noiseLabel: int = -1,
        minClusterSize: int = 1,
        sampleSize: int = 5000,
        repeats: int = 5,
        maxSampleSize: int = 200_000,
        seed: int = 0,
    ) -> ClusteringMetricsEvaluator:
        """Sets params for this evaluator."""
        kwargs = self._input_kwargs
        return self._set(**kwargs)

    def setMetricName(self, value: str) -> ClusteringMetricsEvaluator:
        """Sets the value of :py:attr:`metricName`."""
        return self._set(metricName=value)

    def setFeaturesCol(self, value: str) -> ClusteringMetricsEvaluator:
        """Sets the value of :py:attr:`featuresCol`."""
        return self._set(featuresCol=value)

    def setPredictionCol(self, value: str) -> ClusteringMetricsEvaluator:
        """Sets the value of :py:attr:`predictionCol`."""
        return self._set(predictionCol=value)

    def setNoiseLabel(self, value: int) -> ClusteringMetricsEvaluator:
        """Sets the value of :py:attr:`noiseLabel`."""
        return self._set(noiseLabel=value)

    def setMinClusterSize(self, value: int) -> ClusteringMetricsEvaluator:
        """Sets the value of :py:attr:`minClusterSize`."""
        return self._set(minClusterSize=value)

    def setSampleSize(self, value: int) -> ClusteringMetricsEvaluator:
        """Sets the value of :py:attr:`sampleSize`."""
        return self._set(sampleSize=value)

    def setRepeats(self, value: int) -> ClusteringMetricsEvaluator:
        """Sets the value of :py:attr:`repeats`."""
        return self._set(repeats=value)

    def setSeed(self, value: int) -> ClusteringMetricsEvaluator:
        """Sets the value of :py:attr:`seed`."""
        return self._set(seed=value)

    def isLargerBetter(self) -> bool:
        return self.getMetricName() != "davies_bouldin"

    def _evaluate(self, dataset: DataFrame) -> float:
        name = self.getMetricName()
        check_choice("metricName", name, _EVALUATOR_METRICS)
        result = evaluate(
            dataset,
            self.getFeaturesCol(),
            self.getPredictionCol(),
            noiseLabel=self.getNoiseLabel(),
            minClusterSize=self.getMinClusterSize(),
            sampleSize=self.getSampleSize(),
            repeats=self.getRepeats(),
            maxSampleSize=self.getMaxSampleSize(),
            seed=self.getSeed(),
            metrics=[] if name == "coverage" else [name],
        )
        return float(result[name])
