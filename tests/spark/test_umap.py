"""UMAP / UMAPModel on Spark against umap-learn on the same sample."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from pyspark.ml.linalg import Vectors, VectorUDT
from pyspark.sql.types import LongType, StructField, StructType
from sklearn.datasets import make_blobs
from sklearn.manifold import trustworthiness

from spark_clustering import UMAP, UMAPModel

pytestmark = pytest.mark.spark

SEED = 5


def _df(spark, x, ids=None, sparse=False, partitions=3):
    ids = range(len(x)) if ids is None else ids
    if sparse:
        vecs = [Vectors.sparse(len(r), {i: v for i, v in enumerate(r) if v != 0}) for r in x]
    else:
        vecs = [Vectors.dense(r) for r in x]
    rows = [(int(i), v) for i, v in zip(ids, vecs, strict=True)]
    return spark.createDataFrame(rows, ["id", "features"]).repartition(partitions)


def _embedding(df, col="umap_features"):
    rows = df.orderBy("id").collect()
    return np.array([r[col].toArray() for r in rows])


@pytest.fixture(scope="module")
def blobs():
    x, _ = make_blobs(n_samples=1100, n_features=8, centers=5, cluster_std=1.5, random_state=0)
    x[:, :3] = np.round(x[:, :3])  # some exact zeros for the sparse test
    return x[:800], x[800:]


@pytest.fixture(scope="module")
def fitted(spark, blobs):
    import umap

    train, _ = blobs
    model = UMAP(seed=SEED, sampleSize=5000).fit(_df(spark, train))
    ref = umap.UMAP(n_neighbors=15, n_components=3, min_dist=0.1, random_state=SEED)
    ref.fit(model.trainingSample)
    return model, ref


def test_fit_is_umap_learn_on_the_sample(fitted, blobs):
    model, ref = fitted
    train, _ = blobs
    assert model.trainingSample.shape == train.shape  # fewer rows than sampleSize: all of them
    assert {tuple(r) for r in model.trainingSample} == {tuple(r) for r in train}
    np.testing.assert_array_equal(model.embedding, ref.embedding_.astype(np.float64))
    assert model.numFeatures == 8 and model.getOutputCol() == "umap_features"


def test_transform_matches_umap_learn_transform(spark, fitted, blobs):
    model, ref = fitted
    _, new = blobs
    out = model.transform(_df(spark, new))
    assert isinstance(out.schema["umap_features"].dataType, VectorUDT)
    assert out.columns == ["id", "features", "umap_features"]
    ours = _embedding(out)
    theirs = ref.transform(new)
    t_ours = trustworthiness(new, ours, n_neighbors=15)
    t_ref = trustworthiness(new, theirs, n_neighbors=15)
    assert t_ours > t_ref - 0.02
    # same fitted space: each new point lands where umap-learn puts it, up to its SGD noise
    spread = theirs.std(axis=0).mean()
    assert np.median(np.linalg.norm(ours - theirs, axis=1)) < 0.1 * spread


def test_training_rows_get_their_fitted_embedding(spark, fitted):
    model, _ = fitted
    sample = model.trainingSample
    out = _embedding(model.transform(_df(spark, sample)))
    np.testing.assert_array_equal(out, model.embedding)


def test_transform_deterministic_whatever_the_partitioning(spark, fitted, blobs):
    model, _ = fitted
    _, new = blobs
    a = _embedding(model.transform(_df(spark, new, partitions=1)))
    b = _embedding(model.transform(_df(spark, new[::-1], ids=range(len(new))[::-1], partitions=4)))
    np.testing.assert_array_equal(a, b)
    sparse = _embedding(model.transform(_df(spark, new, sparse=True)))
    np.testing.assert_array_equal(a, sparse)
    arrays = spark.createDataFrame(
        [(i, r) for i, r in enumerate(new.tolist())], "id long, features array<double>"
    )
    np.testing.assert_array_equal(a, _embedding(model.transform(arrays)))
    no_epochs = _embedding(model.copy({model.transformEpochs: 0}).transform(_df(spark, new)))
    assert not np.array_equal(a, no_epochs)


def test_transform_gathers_arrow_batches_without_mixing_rows(spark, fitted, blobs, monkeypatch):
    import spark_clustering.reduction.umap as umap_module

    model, _ = fitted
    _, new = blobs
    rows = [(i, Vectors.dense(r)) for i, r in enumerate(new)]
    rows[5] = (5, Vectors.dense([float("nan")] * new.shape[1]))  # invalid rows inside a call
    rows[40] = (40, Vectors.dense([float("inf")] * new.shape[1]))
    df = spark.createDataFrame(rows, ["id", "features"]).repartition(2)
    keep = model.copy({model.handleInvalid: "keep"})
    expected = keep.transform(df).orderBy("id").collect()
    # batches of 7 rows, gathered 3 at a time (21 rows per kernel call, a remainder per task)
    monkeypatch.setattr(umap_module, "_EMBED_ROWS", 20)
    spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", "7")
    try:
        got = keep.transform(df).orderBy("id").collect()
    finally:
        spark.conf.unset("spark.sql.execution.arrow.maxRecordsPerBatch")
    assert [r["id"] for r in got] == [r["id"] for r in expected]
    assert got[5]["umap_features"] is None and got[40]["umap_features"] is None
    for g, e in zip(got, expected, strict=True):
        if e["umap_features"] is not None:
            np.testing.assert_array_equal(
                g["umap_features"].toArray(), e["umap_features"].toArray()
            )


def test_sampled_fit_deterministic_and_params(spark):
    x, _ = make_blobs(n_samples=400, n_features=5, centers=3, random_state=1)
    df = _df(spark, x)
    est = UMAP().setSampleSize(150).setSeed(3).setNComponents(2).setNNeighbors(10)
    m1 = est.fit(df)
    m2 = est.fit(df, {est.minDist: 0.1})
    assert m1.trainingSample.shape == (150, 5)
    assert {tuple(r) for r in m1.trainingSample} <= {tuple(r) for r in x}
    np.testing.assert_array_equal(m1.trainingSample, m2.trainingSample)
    np.testing.assert_array_equal(m1.embedding, m2.embedding)
    assert m1.embedding.shape == (150, 2)
    out = m1.transform(df)
    assert len(out.first()["umap_features"]) == 2
    assert est.copy({est.nComponents: 4}).getNComponents() == 4
    assert est.getNComponents() == 2


def test_save_load_round_trip(spark, fitted, blobs, tmp_path):
    model, _ = fitted
    _, new = blobs
    path = str(tmp_path / "umap_model")
    model.save(path)
    loaded = UMAPModel.load(path)
    assert loaded.uid == model.uid
    assert loaded.getNNeighbors() == 15 and loaded.getSeed() == SEED
    np.testing.assert_array_equal(loaded.embedding, model.embedding)
    np.testing.assert_array_equal(loaded.trainingSample, model.trainingSample)
    df = _df(spark, new[:100])
    np.testing.assert_array_equal(_embedding(loaded.transform(df)), _embedding(model.transform(df)))
    est_path = str(tmp_path / "umap_est")
    UMAP(nComponents=2, sampleSize=99).save(est_path)
    est = UMAP.load(est_path)
    assert est.getNComponents() == 2 and est.getSampleSize() == 99


def test_invalid_rows(spark, fitted):
    model, _ = fitted
    rows = [(0, Vectors.dense([float("nan")] + [0.0] * 7)), (1, Vectors.dense([1.0] * 8))]
    df = spark.createDataFrame(rows, ["id", "features"])
    # a null row is invalid too (not a row of the wrong size), in an array or a vector column
    null_array = spark.createDataFrame(
        [(0, None), (1, [1.0] * 8)], "id long, features array<double>"
    )
    schema = StructType([StructField("id", LongType()), StructField("features", VectorUDT())])
    null_vector = spark.createDataFrame([(0, None), (1, Vectors.dense([1.0] * 8))], schema)
    for bad in (df, null_array, null_vector):
        with pytest.raises(Exception, match="null, NaN or infinite"):
            model.transform(bad).collect()
        kept = model.copy({model.handleInvalid: "keep"}).transform(bad).orderBy("id").collect()
        assert kept[0]["umap_features"] is None and len(kept[1]["umap_features"]) == 3
        skipped = model.copy({model.handleInvalid: "skip"}).transform(bad).collect()
        assert [r["id"] for r in skipped] == [1]
    wrong = spark.createDataFrame([(0, Vectors.dense([1.0, 2.0]))], ["id", "features"])
    with pytest.raises(Exception, match="must have 8 features"):
        model.transform(wrong).collect()
    with pytest.raises(ValueError, match="outputCol='features' already exists"):
        model.copy({model.outputCol: "features"}).transform(df)


def test_bad_params_rejected_before_work(spark, blobs):
    train, _ = blobs
    df = _df(spark, train[:50])
    with pytest.raises(ValueError, match="sampleSize=300000 is past maxSampleSize=200000"):
        UMAP(sampleSize=300_000).fit(df)
    with pytest.raises(ValueError, match="sampleSize=0"):
        UMAP(sampleSize=0).fit(df)
    with pytest.raises(ValueError, match="nNeighbors=1"):
        UMAP(nNeighbors=1).fit(df)
    with pytest.raises(ValueError, match="metric='hamming'"):
        UMAP(metric="hamming").fit(df)
    with pytest.raises(ValueError, match=r"minDist=2\.0"):
        UMAP(minDist=2.0).fit(df)
    with pytest.raises(ValueError, match="featuresCol='x'"):
        UMAP(featuresCol="x").fit(df)
    with pytest.raises(ValueError, match="has 50 rows; nNeighbors=60 needs at least 61"):
        UMAP(nNeighbors=60).fit(df)
    with pytest.raises(ValueError, match="backend='gpu' was requested for umap"):
        UMAP(backend="gpu").fit(df)
    with pytest.raises(ValueError, match="backend='tpu'"):
        UMAP(backend="tpu").fit(df)
    nan = spark.createDataFrame(
        [(Vectors.dense([float("nan"), 1.0]),)] + [(Vectors.dense([i, 1.0]),) for i in range(30)],
        ["features"],
    )
    with pytest.raises(ValueError, match="1 of 31 rows with null, NaN"):
        UMAP(nNeighbors=5).fit(nan)


def test_import_does_not_load_umap_learn_or_cuml():
    code = (
        "import sys, spark_clustering\n"
        "from spark_clustering import UMAP, UMAPModel, suggest_eps, evaluate\n"
        "import spark_clustering.backends.gpu.umap_kernel\n"
        "bad = [m for m in ('umap', 'cuml', 'cupy', 'pynndescent') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
