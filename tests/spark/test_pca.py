"""PCA on the Spark backend: MLlib's components, scikit-learn's subspace, persistence."""

from __future__ import annotations

import numpy as np
import pytest
from pyspark.ml.linalg import Vectors

pytestmark = pytest.mark.spark


@pytest.fixture(scope="module")
def data(spark):
    rng = np.random.default_rng(3)
    latent = rng.normal(size=(80, 2)) * [4.0, 1.5]
    mixing = rng.normal(size=(2, 4))
    x = latent @ mixing + rng.normal(scale=0.05, size=(80, 4))
    df = spark.createDataFrame([(i, Vectors.dense(v)) for i, v in enumerate(x)], ["id", "features"])
    return x, df.cache()


@pytest.fixture(scope="module")
def fitted(data):
    from spark_clustering import PCA

    return PCA(k=2).fit(data[1])


def test_projection_matches_mllib_and_sklearn(data, fitted):
    from pyspark.ml.feature import PCA as MLlibPCA
    from sklearn.decomposition import PCA as SkPCA

    x, df = data
    mllib = MLlibPCA(k=2, inputCol="features", outputCol="p").fit(df)
    np.testing.assert_allclose(fitted.pc, mllib.pc.toArray())
    ours = np.array(
        [r["projection"].toArray() for r in fitted.transform(df).orderBy("id").collect()]
    )
    np.testing.assert_allclose(ours, x @ mllib.pc.toArray(), rtol=1e-9, atol=1e-9)

    sk = SkPCA(n_components=2).fit(x)
    # same components up to sign, same explained-variance ratios
    np.testing.assert_allclose(np.abs(fitted.pc.T), np.abs(sk.components_), atol=1e-6)
    np.testing.assert_allclose(fitted.explainedVariance, sk.explained_variance_ratio_, rtol=1e-6)


def test_save_load_and_copy(data, fitted, tmp_path):
    from spark_clustering import PCA, PCAModel

    _, df = data
    fitted.write().overwrite().save(str(tmp_path / "m"))
    loaded = PCAModel.load(str(tmp_path / "m"))
    assert loaded.transform(df).collect() == fitted.transform(df).collect()
    renamed = fitted.copy({fitted.outputCol: "pcs"})
    assert renamed.transform(df).columns == ["id", "features", "pcs"]
    est = PCA(k=3).setOutputCol("x")
    assert est.copy().getK() == 3 and est.getOutputCol() == "x"


def test_bad_params_are_rejected(data):
    from spark_clustering import PCA

    with pytest.raises(ValueError, match="k=0 is out of range; accepted: >= 1"):
        PCA(k=0).fit(data[1])
    with pytest.raises(ValueError, match="algorithmMode='fast' is not valid"):
        PCA(k=2, algorithmMode="fast").fit(data[1])
