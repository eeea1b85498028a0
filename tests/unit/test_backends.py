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
    monkeypatch.setattr(base, "cuml_importable", lambda: False)
    with caplog.at_level(logging.INFO, logger="spark_clustering.base"):
        chosen = base.resolve_backend("dbscan", "auto", _Session({"spark.master": "local[2]"}))
    assert chosen == "cpu"
    assert "auto -> cpu (cuML is not installed)" in caplog.text


def test_auto_picks_gpu_when_executors_have_gpus(monkeypatch):
    session = _Session({"spark.master": "yarn", "spark.executor.resource.gpu.amount": "1"})
    assert base.resolve_backend("dbscan", "auto", session) == "gpu"


def test_auto_on_cluster_without_gpu_resources_is_cpu():
    session = _Session({"spark.master": "yarn"})
    assert base.resolve_backend("dbscan", "auto", session) == "cpu"


def test_local_gpu_needs_cuml_and_a_device(monkeypatch):
    import spark_clustering.session as session_mod

    monkeypatch.setattr(base, "cuml_importable", lambda: True)
    monkeypatch.setattr(session_mod, "gpu_available", lambda: False)
    ok, why = base.executors_have_gpus(_Session({"spark.master": "local[*]"}))
    assert not ok and "no NVIDIA GPU" in why
    monkeypatch.setattr(session_mod, "gpu_available", lambda: True)
    assert base.executors_have_gpus(_Session({"spark.master": "local[*]"}))[0]


def test_explicit_gpu_without_gpu_fails_clearly(monkeypatch):
    monkeypatch.setattr(base, "cuml_importable", lambda: False)
    with pytest.raises(ValueError, match="backend='gpu' was requested for dbscan but cuML"):
        base.resolve_backend("dbscan", "gpu", _Session({"spark.master": "local[2]"}))


def test_unknown_backend_rejected():
    with pytest.raises(ValueError, match="backend='cuda' is not valid; accepted: auto, cpu, gpu"):
        base.resolve_backend("dbscan", "cuda", _Session({}))


def test_registry_loads_kernels_lazily():
    cpu = base.load_backend("dbscan", "cpu")
    gpu = base.load_backend("dbscan", "gpu")  # importable without cuML: cuML loads in fit_region
    assert cpu.name == "cpu" and gpu.name == "gpu"
    with pytest.raises(ValueError, match="not available for dbscan"):
        base.load_backend("dbscan", "tpu")


def test_gpu_kernel_without_cuml_raises_import_error():
    pytest.importorskip("numpy")
    if base.cuml_importable():
        pytest.skip("cuML is installed here")
    import numpy as np

    with pytest.raises(ImportError):
        base.load_backend("dbscan", "gpu").fit_region(
            np.zeros((3, 2)), np.ones(3, dtype=bool), 0.5, 2
        )


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
