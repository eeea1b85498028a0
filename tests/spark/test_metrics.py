"""evaluate() and ClusteringMetricsEvaluator against scikit-learn on the same points."""

from __future__ import annotations

import math

import numpy as np
import pytest
from pyspark.ml.linalg import Vectors, VectorUDT
from pyspark.sql.types import LongType, StructField, StructType
from sklearn.datasets import make_blobs
from sklearn.metrics import (
    calinski_harabasz_score,
    davies_bouldin_score,
    silhouette_samples,
    silhouette_score,
)

from spark_clustering import ClusteringMetricsEvaluator, evaluate

pytestmark = pytest.mark.spark


@pytest.fixture(scope="module")
def labelled():
    """1200 rows: 4 blobs with an offset (so centroids are far from 0), 60 noise rows (-1)
    and a 3-row cluster (label 9)."""
    x, y = make_blobs(
        n_samples=1140, centers=4, n_features=3, cluster_std=[0.6, 1.0, 1.5, 0.8], random_state=3
    )
    x = x + 50.0
    rng = np.random.default_rng(5)
    noise = rng.uniform(x.min(0), x.max(0), size=(57, 3))
    tiny = x[:1] + rng.normal(0, 0.2, size=(3, 3))
    x = np.vstack([x, noise, tiny])
    y = np.concatenate([y, np.full(57, -1), np.full(3, 9)])
    return x, y


def _df(spark, x, y, kind="dense"):
    if kind == "dense":
        rows = [(Vectors.dense(r), int(c)) for r, c in zip(x.tolist(), y, strict=True)]
        return spark.createDataFrame(rows, ["features", "cluster"])
    if kind == "sparse":
        rows = [
            (Vectors.sparse(len(r), {i: v for i, v in enumerate(r) if v != 0}), int(c))
            for r, c in zip(x.tolist(), y, strict=True)
        ]
        return spark.createDataFrame(rows, ["features", "cluster"])
    rows = [(r, int(c)) for r, c in zip(x.tolist(), y, strict=True)]
    return spark.createDataFrame(rows, "features array<double>, cluster int")


@pytest.fixture(scope="module")
def df(spark, labelled):
    return _df(spark, *labelled).repartition(3).cache()


def test_scores_equal_sklearn(df, labelled):
    x, y = labelled
    m = evaluate(df, sampleSize=5000)
    keep = y != -1
    xs, ys = x[keep], y[keep]
    assert m["davies_bouldin"] == pytest.approx(davies_bouldin_score(xs, ys), rel=1e-9)
    assert m["calinski_harabasz"] == pytest.approx(calinski_harabasz_score(xs, ys), rel=1e-9)
    ref_sq = silhouette_score(xs, ys, metric="sqeuclidean")
    assert m["silhouette_sqeuclidean"] == pytest.approx(ref_sq, rel=1e-9)
    # fewer scored rows than sampleSize: the Euclidean silhouette is exact
    assert m["silhouette_exact"] is True
    assert m["silhouette"] == pytest.approx(silhouette_score(xs, ys), rel=1e-9)
    assert m["silhouette_ci"] == (m["silhouette"], m["silhouette"])
    per_row = silhouette_samples(xs, ys)
    assert m["silhouette_by_cluster"] == pytest.approx(
        {int(c): float(per_row[ys == c].mean()) for c in np.unique(ys)}, rel=1e-9
    )
    assert m["n_clusters"] == 5
    assert m["n_noise"] == 57
    assert m["noise_fraction"] == pytest.approx(57 / 1200)
    assert m["coverage"] == pytest.approx(1143 / 1200)
    assert m["cluster_size_min"] == 3
    assert m["cluster_size_max"] == np.bincount(ys[ys != 9]).max()


def test_min_cluster_size_excludes_small_clusters(df, labelled):
    x, y = labelled
    m = evaluate(df, minClusterSize=10, metrics=["davies_bouldin", "silhouette_sqeuclidean"])
    keep = (y != -1) & (y != 9)
    assert m["n_clusters"] == 4
    assert m["n_clusters_excluded"] == 1
    assert m["coverage"] == pytest.approx(keep.sum() / len(y))
    assert m["davies_bouldin"] == pytest.approx(davies_bouldin_score(x[keep], y[keep]), rel=1e-9)
    ref = silhouette_score(x[keep], y[keep], metric="sqeuclidean")
    assert m["silhouette_sqeuclidean"] == pytest.approx(ref, rel=1e-9)
    assert math.isnan(m["silhouette"]) and math.isnan(m["calinski_harabasz"])  # not asked


def test_sampled_silhouette_close_to_exact_with_interval(df, labelled):
    x, y = labelled
    keep = y != -1
    exact = silhouette_score(x[keep], y[keep])
    m = evaluate(df, sampleSize=300, repeats=6, seed=11, metrics=["silhouette"])
    assert m["silhouette_exact"] is False
    low, high = m["silhouette_ci"]
    assert low < m["silhouette"] < high
    assert high - low < 0.1
    assert abs(m["silhouette"] - exact) < 0.03
    # the stratified sample keeps the 3-row cluster whole in every repeat; each row is drawn
    # with its stratum's probability, so the count is about 300 (+- 3 sd of a binomial: 50)
    assert 250 <= m["silhouette_sample_rows"] < 400
    again = evaluate(df, sampleSize=300, repeats=6, seed=11, metrics=["silhouette"])
    assert again["silhouette"] == m["silhouette"]


def test_weighting_matches_population_mean(spark):
    """Stratified rows are weighted back: a small cluster oversampled does not bias the mean."""
    x, y = make_blobs(n_samples=[1500, 30], n_features=2, random_state=1, cluster_std=[2.5, 0.3])
    d = _df(spark, x, y)
    exact = silhouette_score(x, y)
    per_cluster = [silhouette_samples(x, y)[y == c].mean() for c in (0, 1)]
    assert abs(per_cluster[0] - per_cluster[1]) > 0.01  # so that weighting matters
    m = evaluate(d, sampleSize=200, repeats=4, seed=2, metrics=["silhouette"])
    assert abs(m["silhouette"] - exact) < 0.02


@pytest.mark.parametrize("kind", ["sparse", "array"])
def test_sparse_and_array_input(spark, labelled, kind):
    x, y = labelled
    x = x.copy()
    x[::3, 1] = 0.0  # real zeros, stored implicitly in the sparse vectors
    m = evaluate(_df(spark, x, y, kind), metrics=["davies_bouldin", "calinski_harabasz"])
    keep = y != -1
    assert m["davies_bouldin"] == pytest.approx(davies_bouldin_score(x[keep], y[keep]), rel=1e-9)
    ref = calinski_harabasz_score(x[keep], y[keep])
    assert m["calinski_harabasz"] == pytest.approx(ref, rel=1e-9)


def test_one_cluster_and_all_noise_give_nan_with_warning(spark):
    x = np.random.default_rng(0).normal(size=(50, 2))
    with pytest.warns(UserWarning, match="undefined"):
        one = evaluate(_df(spark, x, np.zeros(50, dtype=int)))
    assert math.isnan(one["silhouette"]) and math.isnan(one["davies_bouldin"])
    assert one["n_clusters"] == 1 and one["coverage"] == 1.0
    with pytest.warns(UserWarning, match="all noise"):
        noise = evaluate(_df(spark, x, np.full(50, -1)))
    assert noise["coverage"] == 0.0 and noise["noise_fraction"] == 1.0
    assert math.isnan(noise["calinski_harabasz"])


def test_bad_input_rejected(spark, df):
    with pytest.raises(ValueError, match="predictionCol='label'"):
        evaluate(df, predictionCol="label")
    with pytest.raises(ValueError, match="featuresCol='f'"):
        evaluate(df, featuresCol="f")
    with pytest.raises(ValueError, match="sampleSize=0"):
        evaluate(df, sampleSize=0)
    with pytest.raises(ValueError, match="maxSampleSize=1000"):
        evaluate(df, sampleSize=500, repeats=3, maxSampleSize=1000)
    with pytest.raises(ValueError, match="metrics='rand_index'"):
        evaluate(df, metrics=["rand_index"])
    floats = spark.createDataFrame([(Vectors.dense([0.0]), 1.0)], ["features", "cluster"])
    with pytest.raises(ValueError, match="integer cluster label"):
        evaluate(floats)
    nan = spark.createDataFrame(
        [(Vectors.dense([0.0, float("nan")]), 1), (Vectors.dense([1.0, 1.0]), 2)],
        ["features", "cluster"],
    )
    null = spark.createDataFrame(
        [(None, 1), (Vectors.dense([1.0, 1.0]), 2)],
        StructType([StructField("features", VectorUDT()), StructField("cluster", LongType())]),
    )
    for bad in (nan, null):
        with pytest.raises(ValueError, match="1 of 2 rows with null, NaN"):
            evaluate(bad)


def test_evaluator(df, labelled, tmp_path):
    x, y = labelled
    keep = y != -1
    ev = ClusteringMetricsEvaluator(metricName="davies_bouldin")
    assert ev.isLargerBetter() is False
    assert ev.evaluate(df) == pytest.approx(davies_bouldin_score(x[keep], y[keep]), rel=1e-9)
    ch = ev.evaluate(df, {ev.metricName: "calinski_harabasz"})
    assert ch == pytest.approx(calinski_harabasz_score(x[keep], y[keep]), rel=1e-9)
    assert ev.copy({ev.metricName: "silhouette"}).isLargerBetter() is True
    assert ev.setMetricName("coverage").evaluate(df) == pytest.approx(1143 / 1200)
    ev.setMinClusterSize(10).save(str(tmp_path / "ev"))
    loaded = ClusteringMetricsEvaluator.load(str(tmp_path / "ev"))
    assert loaded.getMetricName() == "coverage" and loaded.getMinClusterSize() == 10
    with pytest.raises(ValueError, match="metricName='nope'"):
        ClusteringMetricsEvaluator(metricName="nope").evaluate(df)
