"""GaussianMixture: MLlib's EM with the package's columns, against scikit-learn."""

from __future__ import annotations

import numpy as np
import pytest
from pyspark.ml.linalg import Vectors

pytestmark = pytest.mark.spark


@pytest.fixture(scope="module")
def data(spark):
    rng = np.random.default_rng(5)
    x = np.vstack([rng.normal(c, s, (50, 2)) for c, s in [((0, 0), 0.5), ((6, 1), 1.0)]])
    df = spark.createDataFrame([(i, Vectors.dense(v)) for i, v in enumerate(x)], ["id", "features"])
    return x, df.cache()


@pytest.fixture(scope="module")
def fitted(data):
    from spark_clustering import GaussianMixture

    # MLlib's EM starts each component at the mean of a few sampled rows and never restarts:
    # on this data 7 seeds of 0-7 reach sklearn's optimum and seed 3 a local one (ARI 0.33,
    # measured after the fit layout began hashing at single precision). The test is about the
    # columns and the agreement at the optimum, so it uses a seed that starts fairly.
    return GaussianMixture(k=2, seed=1).fit(data[1])


def test_columns_and_agreement_with_sklearn(data, fitted):
    from sklearn.metrics import adjusted_rand_score
    from sklearn.mixture import GaussianMixture as SkGMM

    x, df = data
    out = fitted.transform(df).orderBy("id").collect()
    assert fitted.transform(df).columns == ["id", "features", "cluster", "probability"]
    probs = np.array([r["probability"].toArray() for r in out])
    np.testing.assert_allclose(probs.sum(axis=1), 1.0)
    labels = [r["cluster"] for r in out]
    assert labels == list(np.argmax(probs, axis=1))
    sk = SkGMM(n_components=2, random_state=0).fit(x)
    assert adjusted_rand_score(sk.predict(x), labels) == pytest.approx(1.0)
    order = np.argsort(fitted.means[:, 0])
    np.testing.assert_allclose(
        fitted.means[order], sk.means_[np.argsort(sk.means_[:, 0])], atol=0.05
    )
    np.testing.assert_allclose(np.sort(fitted.weights), np.sort(sk.weights_), atol=0.02)


def test_save_load_copy(data, fitted, tmp_path):
    from spark_clustering import GaussianMixture, GaussianMixtureModel

    _, df = data
    fitted.write().overwrite().save(str(tmp_path / "m"))
    loaded = GaussianMixtureModel.load(str(tmp_path / "m"))
    assert loaded.transform(df).collect() == fitted.transform(df).collect()
    assert fitted.copy({fitted.probabilityCol: "p"}).transform(df).columns[-1] == "p"
    assert GaussianMixture().setK(3).setSeed(1).copy().getK() == 3


def test_bad_params_are_rejected(data):
    from spark_clustering import GaussianMixture

    with pytest.raises(ValueError, match="k=1 is out of range; accepted: >= 2"):
        GaussianMixture(k=1).fit(data[1])
    with pytest.raises(ValueError, match="backend='sagemaker' is not valid; accepted: spark"):
        GaussianMixture(backend="sagemaker").fit(data[1])
