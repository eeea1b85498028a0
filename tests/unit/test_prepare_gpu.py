"""RAPIDS Accelerator selection (on/off/auto, with and without the jar) and plan summaries,
all without a GPU."""

from __future__ import annotations

import pytest

from spark_clustering import session
from spark_clustering.session import RAPIDS_PLUGIN, build_conf, gpu_fallbacks, plan_operators


@pytest.fixture()
def no_jar(monkeypatch, tmp_path):
    monkeypatch.delenv("SPARK_RAPIDS_JAR", raising=False)
    monkeypatch.setattr(session.glob, "glob", lambda pattern: [])


@pytest.fixture()
def jar(monkeypatch, tmp_path):
    path = tmp_path / "rapids-4-spark_2.12-24.08.1.jar"
    path.write_bytes(b"")
    monkeypatch.setenv("SPARK_RAPIDS_JAR", str(path))
    monkeypatch.setattr(session.glob, "glob", lambda pattern: [])
    return str(path)


def _gpu_visible(monkeypatch, visible: bool) -> None:
    monkeypatch.setattr(session, "gpu_available", lambda: visible)


@pytest.mark.parametrize("gpu", ["off", False])
def test_off_never_enables(jar, monkeypatch, gpu):
    _gpu_visible(monkeypatch, True)
    _, conf = build_conf("local[1]", gpu=gpu)
    assert "spark.plugins" not in conf


def test_on_with_jar_enables_plugin_and_adds_the_jar(jar, monkeypatch):
    _gpu_visible(monkeypatch, False)  # 'on' does not look for a GPU: the executors may have one
    _, conf = build_conf("local[1]", gpu="on")
    assert conf["spark.plugins"] == RAPIDS_PLUGIN
    assert conf["spark.rapids.sql.enabled"] == "true"
    assert conf["spark.rapids.sql.explain"] == "NOT_ON_GPU"
    assert jar in conf["spark.jars"].split(",")


def test_on_without_jar_fails_clearly(no_jar):
    with pytest.raises(ValueError, match="gpu='on' but no RAPIDS Accelerator jar"):
        build_conf("local[1]", gpu="on")


def test_auto_without_jar_stays_off_even_with_a_gpu(no_jar, monkeypatch):
    _gpu_visible(monkeypatch, True)
    _, conf = build_conf("local[1]", gpu="auto")
    assert "spark.plugins" not in conf


def test_auto_with_jar_but_no_gpu_stays_off(jar, monkeypatch):
    _gpu_visible(monkeypatch, False)
    _, conf = build_conf("local[1]", gpu="auto")
    assert "spark.plugins" not in conf


def test_auto_with_jar_and_gpu_enables(jar, monkeypatch):
    _gpu_visible(monkeypatch, True)
    _, conf = build_conf("local[1]", gpu="auto")
    assert conf["spark.plugins"] == RAPIDS_PLUGIN


def test_jar_from_spark_jars_setting(no_jar, monkeypatch):
    _gpu_visible(monkeypatch, True)
    remote = "s3://bucket/jars/rapids-4-spark_2.12-24.08.1.jar"
    _, conf = build_conf("local[1]", conf={"spark.jars": remote}, gpu="auto")
    assert conf["spark.plugins"] == RAPIDS_PLUGIN
    assert remote in conf["spark.jars"].split(",")


def test_invalid_mode():
    with pytest.raises(ValueError, match="gpu='maybe' is not valid"):
        build_conf("local[1]", gpu="maybe")


GPU_PLAN = """AdaptiveSparkPlan isFinalPlan=true
+- == Final Plan ==
   GpuColumnarToRow false
   +- GpuHashAggregate(keys=[customer_id#1L], functions=[gpumax(timestamp#2)])
      +- GpuShuffleCoalesce 2147483647
         +- ShuffleQueryStage 0
            +- GpuColumnarExchange gpuhashpartitioning(customer_id#1L, 4)
               +- GpuHashAggregate(keys=[customer_id#1L], functions=[partial_gpumax(x)])
                  +- ObjectHashAggregate(keys=[customer_id#1L], functions=[collect_set(c)])
                     +- GpuFileGpuScan parquet [customer_id#1L,timestamp#2]
+- == Initial Plan ==
   HashAggregate(keys=[customer_id#1L], functions=[max(timestamp#2)])
   +- Exchange hashpartitioning(customer_id#1L, 4)
"""

CPU_PLAN = """AdaptiveSparkPlan isFinalPlan=true
+- == Final Plan ==
   *(2) HashAggregate(keys=[customer_id#1L], functions=[max(timestamp#2)])
   +- AQEShuffleRead coalesced
      +- ShuffleQueryStage 0
         +- Exchange hashpartitioning(customer_id#1L, 4), ENSURE_REQUIREMENTS, [plan_id=10]
            +- *(1) HashAggregate(keys=[customer_id#1L], functions=[partial_max(x)])
               +- *(1) ColumnarToRow
                  +- FileScan parquet [customer_id#1L,timestamp#2] Batched: true
"""


def test_plan_summary_finds_gpu_operators_and_fallbacks():
    on_gpu, on_cpu = gpu_fallbacks(GPU_PLAN)
    assert "GpuHashAggregate" in on_gpu and "GpuFileGpuScan" in on_gpu
    assert on_cpu == ["ObjectHashAggregate"]  # the initial plan is ignored


def test_plan_summary_of_a_cpu_plan():
    assert plan_operators(CPU_PLAN)[:2] == ["AdaptiveSparkPlan", "HashAggregate"]
    on_gpu, on_cpu = gpu_fallbacks(CPU_PLAN)
    assert on_gpu == []
    assert on_cpu == ["HashAggregate", "Exchange", "HashAggregate", "FileScan"]
