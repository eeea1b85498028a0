"""Correlation, correlated-feature dropping and the PCA report, checked against numpy/scipy."""

from __future__ import annotations

import numpy as np
import pytest
from pyspark.ml.linalg import Vectors
from scipy import stats

from spark_clustering.features import analysis

pytestmark = pytest.mark.spark


@pytest.fixture(scope="module")
def data(spark):
    rng = np.random.default_rng(3)
    a = rng.normal(size=300)
    x = np.column_stack(
        [a, 2 * a + 0.01 * rng.normal(size=300), np.exp(rng.normal(size=300)), rng.normal(size=300)]
    )
    df = spark.createDataFrame([(Vectors.dense(row),) for row in x], ["v"]).cache()
    return x, df


def test_pearson_and_spearman_match_scipy(data):
    x, df = data
    pearson = analysis.correlation_matrix(df, "v", "pearson")
    spearman = analysis.correlation_matrix(df, "v", "spearman")
    np.testing.assert_allclose(pearson, np.corrcoef(x, rowvar=False), atol=1e-10)
    np.testing.assert_allclose(spearman, stats.spearmanr(x).statistic, atol=1e-10)
    with pytest.raises(ValueError, match="method='kendall' is not valid"):
        analysis.correlation_matrix(df, "v", "kendall")


def test_select_uncorrelated_keeps_the_first_of_each_pair():
    m = np.array([[1.0, 0.99, 0.1], [0.99, 1.0, -0.2], [0.1, -0.2, 1.0]])
    kept, dropped = analysis.select_uncorrelated(m, ["a", "b", "c"], 0.95)
    assert kept == [0, 2]
    assert dropped == [{"feature": "b", "correlated_with": "a", "r": 0.99}]
    negative = np.array([[1.0, 0.1, -0.97], [0.1, 1.0, 0.0], [-0.97, 0.0, 1.0]])
    kept, dropped = analysis.select_uncorrelated(negative, ["a", "b", "c"], 0.95)  # |r| counts
    assert kept == [0, 1] and dropped[0]["feature"] == "c" and dropped[0]["r"] == -0.97


def test_pca_report_matches_numpy(data, tmp_path):
    x, df = data
    report = analysis.pca_report(df, "v", ["a", "b", "c", "d"], k=3, top=2)
    eig = np.sort(np.linalg.eigvalsh(np.cov(x, rowvar=False)))[::-1]
    np.testing.assert_allclose(report["explained_variance_ratio"], eig[:3] / eig.sum(), atol=1e-8)
    np.testing.assert_allclose(
        report["cumulative_explained_variance"], np.cumsum(eig[:3]) / eig.sum(), atol=1e-8
    )
    first = report["top_components"][0]["loadings"]
    assert {first[0]["feature"], first[1]["feature"]} == {"a", "b"}  # the collinear pair
    assert len(report["top_components"]) == 2
    charts = analysis.write_charts(
        {
            "correlation": {"pearson": analysis.matrix_to_json(np.eye(2), ["a", "b"])},
            "pca": report,
        },
        str(tmp_path),
    )
    assert [p.rsplit("/", 1)[1] for p in charts] == [
        "correlation_pearson.png",
        "pca_explained_variance.png",
    ]
    for path in charts:
        with open(path, "rb") as fh:
            assert fh.read(8) == b"\x89PNG\r\n\x1a\n"
