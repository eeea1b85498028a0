"""KMeans on the Spark backend: MLlib's fit, our transform, outliers, persistence, bad input."""

from __future__ import annotations

import numpy as np
import pytest
from pyspark.ml.linalg import Vectors

pytestmark = pytest.mark.spark

CENTRES = np.array([[0.0, 0.0], [6.0, 6.0], [0.0, 9.0]])


@pytest.fixture(scope="module")
def blobs(spark):
    rng = np.random.default_rng(7)
    x = np.vstack([rng.normal(c, 0.6, (40, 2)) for c in CENTRES])
    x = np.vstack([x, [[3.0, -4.0]]])  # one far point, closest to the first blob
    rows = [(i, Vectors.dense(v)) for i, v in enumerate(x)]
    return x, spark.createDataFrame(rows, ["id", "features"]).cache()


@pytest.fixture(scope="module")
def fitted(blobs):
    from spark_clustering import KMeans

    _, df = blobs
    est = KMeans(k=3, seed=11)
    # fit(df, paramMap), as Pipelines and CrossValidator call it
    return est.fit(df, {est.outlierQuantile: 0.95, est.distanceCol: "distance"})


def test_centres_and_predictions_match_mllib(blobs, fitted):
    from pyspark.ml.clustering import KMeans as MLlibKMeans

    from spark_clustering.sampling import canonical_layout

    x, df = blobs
    # ours fits on the rows in a layout set by their content (the same on any cluster): MLlib
    # on that same layout is the reference
    mllib = MLlibKMeans(k=3, seed=11).fit(canonical_layout(df, ["features"]))
    # the same centres, numbered by their coordinates (lexicographic) rather than MLlib's order
    theirs_centres = np.array(mllib.clusterCenters())
    order = np.lexsort(theirs_centres.astype(np.float32).T[::-1])
    np.testing.assert_allclose(fitted.clusterCenters(), theirs_centres[order])
    renumber = {int(old): new for new, old in enumerate(order)}
    ours = {r["id"]: (r["cluster"], r["distance"]) for r in fitted.transform(df).collect()}
    theirs = {r["id"]: renumber[r["prediction"]] for r in mllib.transform(df).collect()}
    assert {i: c for i, (c, _) in ours.items()} == theirs
    centres = fitted.clusterCenters()
    expected = np.linalg.norm(x - centres[[ours[i][0] for i in range(len(x))]], axis=1)
    np.testing.assert_allclose([ours[i][1] for i in range(len(x))], expected, rtol=1e-12)


def test_same_partition_as_sklearn(blobs, fitted):
    from sklearn.cluster import KMeans as SkKMeans
    from sklearn.metrics import adjusted_rand_score

    x, df = blobs
    sk = SkKMeans(n_clusters=3, n_init=10, random_state=0).fit(x)
    labels = [r["cluster"] for r in fitted.transform(df).orderBy("id").collect()]
    assert adjusted_rand_score(sk.labels_, labels) == pytest.approx(1.0)
    ours = np.sort(fitted.clusterCenters(), axis=0)
    np.testing.assert_allclose(ours, np.sort(sk.cluster_centers_, axis=0), atol=1e-6)


def test_outlier_thresholds_are_per_cluster_quantiles(blobs, fitted):
    _, df = blobs
    scored = fitted.transform(df).orderBy("id").collect()
    thresholds = fitted.outlierThresholds()
    assert sorted(thresholds) == [0, 1, 2]
    for c, t in thresholds.items():
        d = np.array([r["distance"] for r in scored if r["cluster"] == c])
        # percentile_approx returns an element of the data at (about) that rank
        assert t in d
        assert np.mean(d <= t) == pytest.approx(0.95, abs=0.05)
    far = scored[-1]
    assert far["outlier"] is True and far["distance"] > thresholds[far["cluster"]]
    assert sum(r["outlier"] for r in scored) <= 0.1 * len(scored)


def test_array_features_give_the_same_output(blobs, fitted):
    from pyspark.ml.functions import vector_to_array

    _, df = blobs
    arrays = df.withColumn("features", vector_to_array("features"))
    a = fitted.transform(arrays).orderBy("id").select("cluster", "distance").collect()
    b = fitted.transform(df).orderBy("id").select("cluster", "distance").collect()
    assert a == b


def test_save_load_copy_and_param_map(blobs, fitted, tmp_path):
    from spark_clustering import KMeans, KMeansModel

    _, df = blobs
    fitted.write().overwrite().save(str(tmp_path / "model"))
    loaded = KMeansModel.load(str(tmp_path / "model"))
    np.testing.assert_array_equal(loaded.clusterCenters(), fitted.clusterCenters())
    assert loaded.outlierThresholds() == fitted.outlierThresholds()
    assert loaded.transform(df).collect() == fitted.transform(df).collect()

    est = KMeans(k=3, seed=11)
    est.write().overwrite().save(str(tmp_path / "est"))
    assert KMeans.load(str(tmp_path / "est")).getK() == 3
    copied = est.copy({est.predictionCol: "segment"})
    assert copied.getPredictionCol() == "segment" and est.getPredictionCol() == "cluster"
    assert est.setK(4).setDistanceCol("d").getK() == 4
    assert fitted.getOutlierQuantile() == 0.95
    renamed = fitted.copy({fitted.distanceCol: "dist"})
    assert renamed.transform(df).columns == ["id", "features", "cluster", "dist", "outlier"]


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"k": 1}, "k=1 is out of range; accepted: >= 2"),
        ({"initMode": "kmeans++"}, "initMode='kmeans++' is not valid"),
        ({"backend": "gpu"}, "backend='gpu' is not valid"),
        ({"outlierQuantile": 1.5}, "outlierQuantile=1.5 is out of range"),
        ({"extraCenterFactor": "x"}, "extraCenterFactor='x' is not valid"),
        ({"evalMetrics": "msd,rmse"}, "evalMetrics='rmse' is not valid"),
    ],
)
def test_bad_params_are_rejected(spark, params, message):
    from spark_clustering import KMeans

    df = spark.createDataFrame([(Vectors.dense([0.0, 1.0]),)], ["features"])
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace("+", r"\+")):
        KMeans(**params).fit(df)


def test_non_vector_features_are_rejected(spark):
    from spark_clustering import KMeans

    df = spark.createDataFrame([("a",)], ["features"])
    with pytest.raises(ValueError, match="featuresCol='features' has type string; accepted"):
        KMeans(k=2).fit(df)
