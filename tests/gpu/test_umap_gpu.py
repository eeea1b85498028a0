"""cuML UMAP backend: parity with the CPU backend (runs only with a GPU; skipped otherwise)."""

from __future__ import annotations

import numpy as np
import pytest
from pyspark.ml.linalg import Vectors
from sklearn.datasets import make_blobs
from sklearn.manifold import trustworthiness

pytestmark = [pytest.mark.gpu, pytest.mark.spark]


def test_gpu_umap_parity_with_cpu(spark, gpu):
    from spark_clustering import UMAP

    x, _ = make_blobs(n_samples=3000, n_features=10, centers=5, random_state=0)
    df = spark.createDataFrame(
        [(i, Vectors.dense(r)) for i, r in enumerate(x.tolist())], ["id", "features"]
    )
    out = {}
    for backend in ("cpu", "gpu"):
        model = UMAP(seed=1, sampleSize=2000, backend=backend).fit(df)
        rows = model.transform(df).orderBy("id").collect()
        out[backend] = np.array([r["umap_features"].toArray() for r in rows])
        assert out[backend].shape == (3000, 3)
    t_cpu = trustworthiness(x, out["cpu"], n_neighbors=15)
    t_gpu = trustworthiness(x, out["gpu"], n_neighbors=15)
    assert abs(t_cpu - t_gpu) < 0.02
    # the GPU transform of a CPU-fitted model places points as the CPU does
    model = UMAP(seed=1, sampleSize=2000, backend="cpu").fit(df)
    cpu_rows = model.transform(df).orderBy("id").collect()
    gpu_rows = model.setBackend("gpu").transform(df).orderBy("id").collect()
    a = np.array([r["umap_features"].toArray() for r in cpu_rows])
    b = np.array([r["umap_features"].toArray() for r in gpu_rows])
    np.testing.assert_allclose(a, b, atol=1e-6)
