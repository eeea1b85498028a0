"""The gpu backend's DBSCAN through Spark against scikit-learn (runs only where a GPU and CuPy or
cuML are; the executor picks the grid kernel on CuPy, else cuML)."""

from __future__ import annotations

import pytest

from dbscan_data import EPS, MIN_POINTS, assert_same_clustering, parity_dataset, sklearn_reference
from spark_clustering import DBSCAN

pytestmark = [pytest.mark.gpu, pytest.mark.spark]


@pytest.fixture()
def dbscan_gpu(spark) -> None:
    """Skip unless the executors can run one of DBSCAN's GPU kernels."""
    from spark_clustering.base import GPU_LIBRARIES, executors_have_gpus

    ok, why = executors_have_gpus(spark, GPU_LIBRARIES["dbscan"])
    if not ok:
        pytest.skip(f"needs a GPU: {why}")


@pytest.mark.parametrize("d", [2, 3])
def test_gpu_backend_matches_sklearn(spark, dbscan_gpu, d):
    x = parity_dataset(d)
    rows = [(i, x[i].tolist()) for i in range(x.shape[0])]
    df = spark.createDataFrame(rows, ["id", "features"]).repartition(3)
    model = DBSCAN(eps=EPS, minPoints=MIN_POINTS, backend="gpu", maxPointsPerPartition=300)
    out = model.fit(df).transform(df).toPandas().sort_values("id")
    ref_labels, ref_core = sklearn_reference(x, EPS, MIN_POINTS)
    assert_same_clustering(
        out["cluster"].to_numpy(), out["is_core"].to_numpy(bool), ref_labels, ref_core
    )
