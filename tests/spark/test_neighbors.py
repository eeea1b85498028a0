"""k_distances / suggest_eps against scikit-learn's exact k-NN on the same points."""

from __future__ import annotations

import numpy as np
import pytest
from pyspark.ml.linalg import Vectors, VectorUDT
from pyspark.sql.types import StructField, StructType
from sklearn.neighbors import NearestNeighbors

from spark_clustering import k_distances, suggest_eps
from spark_clustering.features.vectors import FeatureStats, scan_features
from spark_clustering.neighbors import knee_of_sorted

pytestmark = pytest.mark.spark


def _points(n: int, seed: int = 0) -> np.ndarray:
    """3-D blobs of different spreads plus 5% uniform noise (the DBSCAN benchmark's shape)."""
    rng = np.random.default_rng(seed)
    centers = rng.uniform(-20, 20, size=(4, 3))
    m = n - n // 20
    blobs = np.concatenate(
        [rng.normal(c, s, size=(m // 4, 3)) for c, s in zip(centers, (0.5, 1, 1.5, 2), strict=True)]
    )
    noise = rng.uniform(-25, 25, size=(n - len(blobs), 3))
    return np.vstack([blobs, noise])


def _exact(x: np.ndarray, k: int) -> np.ndarray:
    dist, _ = NearestNeighbors(n_neighbors=k).fit(x).kneighbors(x)  # the point itself counted
    return np.sort(dist[:, -1])


def _df(spark, x, partitions=4):
    return spark.createDataFrame(
        [(Vectors.dense(r),) for r in x.tolist()], ["features"]
    ).repartition(partitions)


@pytest.fixture(scope="module")
def data(spark):
    x = _points(3000)
    return x, _df(spark, x).cache()


def test_full_curve_equals_sklearn(data):
    x, df = data
    got = k_distances(df, 8, sampleSize=5000)
    np.testing.assert_allclose(got, _exact(x, 8), rtol=1e-12)


def test_sampled_queries_are_exact_against_all_rows(data):
    x, df = data
    got = k_distances(df, 8, sampleSize=400, seed=3)
    assert got.shape == (400,)
    full = _exact(x, 8)
    # every sampled value is some row's exact k-distance
    pos = np.clip(np.searchsorted(full, got), 0, len(full) - 1)
    near = np.minimum(np.abs(full[pos] - got), np.abs(full[np.maximum(pos - 1, 0)] - got))
    assert near.max() < 1e-12
    assert np.array_equal(got, k_distances(df, 8, sampleSize=400, seed=3))  # deterministic
    assert not np.array_equal(got, k_distances(df, 8, sampleSize=400, seed=4))


def test_tree_reduce_merge_equals_driver_merge(data, monkeypatch):
    # past _COLLECT_MERGE_BYTES the per-partition answers are merged by a tree reduce
    from spark_clustering import neighbors

    _, df = data
    on_driver = k_distances(df, 8, sampleSize=300, seed=1)
    monkeypatch.setattr(neighbors, "_COLLECT_MERGE_BYTES", 0)
    np.testing.assert_array_equal(k_distances(df, 8, sampleSize=300, seed=1), on_driver)


def test_sample_is_the_smallest_content_hashed_keys(data):
    from spark_clustering.features.vectors import as_array
    from spark_clustering.sampling import single_array, uniform

    x, df = data
    got = k_distances(df, 8, sampleSize=200, seed=5)
    flat = df.select(as_array(df, "features").alias("a"))
    rows = flat.orderBy(uniform(5, "k-distance", single_array("a"))).limit(200).collect()
    drawn = np.array([r["a"] for r in rows])
    # the same query rows: their exact k-distances against all rows, sorted
    dist, _ = NearestNeighbors(n_neighbors=8).fit(x).kneighbors(drawn)
    np.testing.assert_allclose(got, np.sort(dist[:, -1]), rtol=1e-12)


def test_partitions_smaller_than_k(spark):
    x = _points(60, seed=2)
    df = _df(spark, x, partitions=12)  # ~5 rows per partition, k = 9
    np.testing.assert_allclose(k_distances(df, 9), _exact(x, 9), rtol=1e-12)


def test_array_and_sparse_input(spark):
    x = _points(200, seed=4)
    x[::2, 0] = 0.0
    arr = spark.createDataFrame([(r,) for r in x.tolist()], "features array<double>")
    sparse = spark.createDataFrame(
        [(Vectors.sparse(3, {i: v for i, v in enumerate(r) if v != 0}),) for r in x.tolist()],
        ["features"],
    )
    np.testing.assert_allclose(k_distances(arr, 5), _exact(x, 5), rtol=1e-12)
    np.testing.assert_allclose(k_distances(sparse, 5), _exact(x, 5), rtol=1e-12)


def test_suggest_eps_full_and_sampled(data, tmp_path):
    x, df = data
    full = _exact(x, 8)
    exact = suggest_eps(df, 8, sampleSize=5000)
    assert exact.exact and exact.sample_size == 3000 and exact.n_rows == 3000
    assert exact.eps == pytest.approx(knee_of_sorted(full), rel=1e-12)
    assert exact.distances[exact.knee_index] >= exact.eps
    # the knee sits between the blobs' k-distances and the noise's
    assert np.quantile(full, 0.5) < exact.eps < np.quantile(full, 0.99)
    sampled = suggest_eps(df, 8, sampleSize=1000, seed=1)
    assert not sampled.exact and sampled.sample_size == 1000
    assert sampled.eps == pytest.approx(exact.eps, rel=0.1)
    out = sampled.plot(str(tmp_path / "kdist.png"))
    with open(out, "rb") as fh:
        assert fh.read(8) == b"\x89PNG\r\n\x1a\n"


def test_bad_input(spark, data):
    _, df = data
    with pytest.raises(ValueError, match="k=0"):
        k_distances(df, 0)
    with pytest.raises(ValueError, match=r"has 3000 rows; k=5000 needs at least 5000"):
        k_distances(df, 5000)
    with pytest.raises(ValueError, match="sampleSize=0"):
        suggest_eps(df, 4, sampleSize=0)
    with pytest.raises(ValueError, match="maxSampleSize=100"):
        suggest_eps(df, 4, sampleSize=1000, maxSampleSize=100)
    with pytest.raises(ValueError, match="featuresCol='nope'"):
        k_distances(df, 4, featuresCol="nope")
    with pytest.raises(ValueError, match=r"k=2\.5"):
        k_distances(df, 2.5)  # type: ignore[arg-type]
    nan = spark.createDataFrame(
        [(Vectors.dense([0.0, float("nan")]),)] + [(Vectors.dense([i, 1.0]),) for i in range(5)],
        ["features"],
    )
    with pytest.raises(ValueError, match="1 of 6 rows"):
        k_distances(nan, 2)
    got = k_distances(nan, 2, handleInvalid="skip")
    np.testing.assert_allclose(got, np.ones(5))
    # a null row is an invalid row (not a row of dimension -1, what Spark's size(null) gives),
    # in an array column and in a vector column (where MLlib's vector_to_array would throw)
    null_array = spark.createDataFrame(
        [(None,)] + [([float(i), 1.0],) for i in range(5)], "features array<double>"
    )
    null_vector = spark.createDataFrame(
        [(None,)] + [(Vectors.dense([i, 1.0]),) for i in range(5)],
        StructType([StructField("features", VectorUDT())]),
    )
    for null in (null_array, null_vector):
        with pytest.raises(ValueError, match="1 of 6 rows"):
            k_distances(null, 2)
        np.testing.assert_allclose(k_distances(null, 2, handleInvalid="skip"), np.ones(5))
        assert scan_features(null, "features") == FeatureStats(6, 2, 1)
    ragged = spark.createDataFrame([([1.0, 2.0],), ([1.0, 2.0, 3.0],)], "features array<double>")
    with pytest.raises(ValueError, match="different dimensions"):
        k_distances(ragged, 1)


def test_suggest_eps_on_empty_or_identical_points(spark):
    empty = spark.createDataFrame([], "features array<double>")
    with pytest.raises(ValueError, match="featuresCol='features': the DataFrame has no rows; k=3"):
        suggest_eps(empty, 3)
    same = spark.createDataFrame([([1.0, 2.0],)] * 20, "features array<double>")
    with pytest.raises(ValueError, match="identical points"):
        suggest_eps(same, 3)
    # most points coincide (the knee is at 0): the smallest positive k-distance, never 0
    rows = [([0.0, 0.0],)] * 30 + [([float(i), 1.0],) for i in range(1, 6)]
    mostly = spark.createDataFrame(rows, "features array<double>")
    graph = suggest_eps(mostly, 3)
    assert graph.eps == pytest.approx(float(graph.distances[graph.distances > 0][0]))
    assert graph.eps > 0
