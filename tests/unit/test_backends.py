"""Backend choice (auto/cpu/gpu), GPU fallback, and the package importing on a bare driver."""

from __future__ import annotations

import logging
import subprocess
import sys

import pytest

from spark_clustering import base


class _Conf:
    def __init__(self, values: dict[str, str]) -> None:
        self.values = values

    def get(self, key: str, default: str | None = None) -> str | None:
        return self.values.get(key, default)


class _Session:
    """Only what executors_have_gpus reads: sparkContext.getConf()."""

    def __init__(self, values: dict[str, str]) -> None:
        conf = _Conf(values)
        self.sparkContext = type("SC", (), {"getConf": staticmethod(lambda: conf)})()


def test_cpu_is_always_cpu():
    assert base.resolve_backend("dbscan", "cpu", _Session({"spark.master": "local[2]"})) == "cpu"


def test_auto_falls_back_to_cpu_and_says_why(caplog, monkeypatch):
    monkeypatch.setattr(base, "importable", lambda module: False)
    with caplog.at_level(logging.INFO, logger="spark_clustering.base"):
        chosen = base.resolve_backend("dbscan", "auto", _Session({"spark.master": "local[2]"}))
        assert base.resolve_backend("umap", "auto", _Session({"spark.master": "local[2]"})) == "cpu"
    assert chosen == "cpu"
    assert "dbscan: backend auto -> cpu (neither CuPy nor cuML is installed)" in caplog.text
    assert "umap: backend auto -> cpu (cuML is not installed)" in caplog.text


def test_local_dbscan_gpu_needs_cupy_or_cuml_and_umap_needs_cuml(monkeypatch):
    import spark_clustering.session as session_mod

    monkeypatch.setattr(session_mod, "gpu_available", lambda: True)
    monkeypatch.setattr(base, "importable", lambda module: module == "cupy")
    local = _Session({"spark.master": "local[2]"})
    assert base.resolve_backend("dbscan", "auto", local) == "gpu"  # the grid kernel on CuPy
    assert base.resolve_backend("umap", "auto", local) == "cpu"  # UMAP's fit needs cuML


def test_auto_picks_gpu_when_executors_have_gpus(monkeypatch):
    session = _Session({"spark.master": "yarn", "spark.executor.resource.gpu.amount": "1"})
    assert base.resolve_backend("dbscan", "auto", session) == "gpu"


def test_auto_on_cluster_without_gpu_resources_is_cpu():
    session = _Session({"spark.master": "yarn"})
    assert base.resolve_backend("dbscan", "auto", session) == "cpu"


def test_local_gpu_needs_cuml_and_a_device(monkeypatch):
    import spark_clustering.session as session_mod

    monkeypatch.setattr(base, "importable", lambda module: True)
    monkeypatch.setattr(session_mod, "gpu_available", lambda: False)
    ok, why = base.executors_have_gpus(_Session({"spark.master": "local[*]"}))
    assert not ok and "no NVIDIA GPU" in why
    monkeypatch.setattr(session_mod, "gpu_available", lambda: True)
    assert base.executors_have_gpus(_Session({"spark.master": "local[*]"}))[0]


def test_explicit_gpu_without_gpu_fails_clearly(monkeypatch):
    monkeypatch.setattr(base, "importable", lambda module: False)
    with pytest.raises(ValueError, match="backend='gpu' was requested for dbscan but neither"):
        base.resolve_backend("dbscan", "gpu", _Session({"spark.master": "local[2]"}))


def test_unknown_backend_rejected():
    with pytest.raises(ValueError, match="backend='cuda' is not valid; accepted: auto, cpu, gpu"):
        base.resolve_backend("dbscan", "cuda", _Session({}))


def test_registry_loads_kernels_lazily():
    cpu = base.load_backend("dbscan", "cpu")
    gpu = base.load_backend(
        "dbscan", "gpu"
    )  # importable without CuPy or cuML: they load on first use
    assert cpu.name == "cpu" and gpu.name == "gpu"
    with pytest.raises(ValueError, match="not available for dbscan"):
        base.load_backend("dbscan", "tpu")


def test_cuml_kernel_without_cuml_raises_import_error():
    if base.importable("cuml"):
        pytest.skip("cuML is installed here")
    import numpy as np

    from spark_clustering.backends.gpu.dbscan_kernel import CUML_KERNEL

    with pytest.raises(ImportError):
        CUML_KERNEL.fit_region(np.zeros((3, 2)), np.ones(3, dtype=bool), 0.5, 2)


def test_package_imports_on_a_bare_driver():
    code = (
        "import sys, spark_clustering, spark_clustering.base, spark_clustering.cli;"
        "spark_clustering.cli.build_parser();"
        "heavy = [m for m in ('pyspark', 'numba', 'cuml', 'cupy', 'boto3', 'umap', 'mlflow',"
        " 'sklearn', 'sagemaker') if m in sys.modules];"
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
