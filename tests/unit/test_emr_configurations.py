"""emr/cpu.json and emr/gpu-rapids.json against what EMR accepts and what AWS/NVIDIA document."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import pytest

from spark_clustering.emr.configurations import (
    check_rapids,
    is_rapids,
    load_configurations,
    properties,
    spark_defaults,
    validate_configurations,
)
from spark_clustering.emr.gpu_sizing import apply_size, size_executors

EMR_DIR = Path(__file__).resolve().parents[2] / "emr"
VENV_PYTHON = "/opt/spark-clustering/venv/bin/python"

# The Amazon EMR Release Guide's EMR 7.x example ("Use the Nvidia RAPIDS Accelerator for Apache
# Spark", my-configurations.json), written out here independently of the library's tables so
# that the shipped file is compared with the documentation, not with itself.
AWS_EMR7_RAPIDS_EXAMPLE = [
    {"Classification": "spark", "Properties": {"enableSparkRapids": "true"}},
    {
        "Classification": "yarn-site",
        "Properties": {
            "yarn.nodemanager.resource-plugins": "yarn.io/gpu",
            "yarn.resource-types": "yarn.io/gpu",
            "yarn.nodemanager.resource-plugins.gpu.allowed-gpu-devices": "auto",
            "yarn.nodemanager.resource-plugins.gpu.path-to-discovery-executables": "/usr/bin",
            "yarn.nodemanager.linux-container-executor.cgroups.mount": "true",
            "yarn.nodemanager.linux-container-executor.cgroups.mount-path": "/spark-rapids-cgroup",
            "yarn.nodemanager.linux-container-executor.cgroups.hierarchy": "yarn",
            "yarn.nodemanager.container-executor.class": (
                "org.apache.hadoop.yarn.server.nodemanager.LinuxContainerExecutor"
            ),
        },
    },
    {
        "Classification": "container-executor",
        "Properties": {},
        "Configurations": [
            {"Classification": "gpu", "Properties": {"module.enabled": "true"}},
            {
                "Classification": "cgroups",
                "Properties": {"root": "/spark-rapids-cgroup", "yarn-hierarchy": "yarn"},
            },
        ],
    },
    {
        "Classification": "spark-defaults",
        "Properties": {
            "spark.plugins": "com.nvidia.spark.SQLPlugin",
            "spark.executor.resource.gpu.discoveryScript": (
                "/usr/lib/spark/scripts/gpu/getGpusResources.sh"
            ),
            "spark.executor.extraLibraryPath": (
                "/usr/local/cuda/targets/x86_64-linux/lib:/usr/local/cuda/extras/CUPTI/lib64:"
                "/usr/local/cuda/compat/lib:/usr/local/cuda/lib:/usr/local/cuda/lib64:"
                "/usr/lib/hadoop/lib/native:/usr/lib/hadoop-lzo/lib/native:"
                "/docker/usr/lib/hadoop/lib/native:/docker/usr/lib/hadoop-lzo/lib/native"
            ),
            "spark.executor.resource.gpu.amount": "1",
        },
    },
    {
        "Classification": "capacity-scheduler",
        "Properties": {
            "yarn.scheduler.capacity.resource-calculator": (
                "org.apache.hadoop.yarn.util.resource.DominantResourceCalculator"
            )
        },
    },
]

# NVIDIA spark-rapids-ml notebooks/aws-emr/init-configurations.json: the settings GPU ML tasks
# (cuML inside Spark tasks) need next to the SQL plugin. Its pooling.enabled=false is written with
# the key that replaces the deprecated one (the RAPIDS Accelerator's configuration reference).
SPARK_RAPIDS_ML_SETTINGS = {
    "spark.rapids.memory.gpu.pool": "NONE",
    "spark.rapids.memory.gpu.minAllocFraction": "0.0001",
    "spark.rapids.memory.gpu.reserve": "20",
    "spark.rapids.sql.python.gpu.enabled": "true",
    "spark.python.worker.reuse": "true",
    "spark.dynamicAllocation.enabled": "false",
    "spark.executorEnv.CUPY_CACHE_DIR": "/tmp/.cupy",
    "spark.sql.execution.arrow.maxRecordsPerBatch": "100000",
    "spark.sql.cache.serializer": "com.nvidia.spark.ParquetCachedBatchSerializer",
}


@pytest.fixture(scope="module")
def cpu() -> list[dict]:
    return load_configurations(EMR_DIR / "cpu.json")


@pytest.fixture(scope="module")
def gpu() -> list[dict]:
    """gpu-rapids.json as the launcher sends it for two g4dn.2xlarge core nodes."""
    configs = load_configurations(EMR_DIR / "gpu-rapids.json")
    return apply_size(configs, size_executors([(["g4dn.2xlarge"], 2)]))


def _walk(configs: list[dict], parent: str = ""):
    for item in configs:
        path = f"{parent}/{item['Classification']}".lstrip("/")
        yield path, item
        yield from _walk(item.get("Configurations", []), path)


@pytest.mark.parametrize("name", ["cpu.json", "gpu-rapids.json"])
def test_shipped_files_have_emr_shape_and_string_values(name: str) -> None:
    configs = json.loads((EMR_DIR / name).read_text())
    validate_configurations(configs, source=name)
    for path, item in _walk(configs):
        assert set(item) <= {"Classification", "Properties", "Configurations"}, path
        for key, value in item.get("Properties", {}).items():
            assert isinstance(value, str), f"{path}.{key}={value!r} must be a string for EMR"


def test_gpu_file_contains_every_documented_emr7_rapids_setting(gpu: list[dict]) -> None:
    for path, item in _walk(AWS_EMR7_RAPIDS_EXAMPLE):
        shipped = properties(gpu, path)
        for key, value in item.get("Properties", {}).items():
            assert shipped.get(key) == value, f"{path}: {key}={shipped.get(key)!r}, AWS: {value!r}"


def test_gpu_file_has_spark_rapids_ml_settings(gpu: list[dict]) -> None:
    defaults = spark_defaults(gpu)
    for key, value in SPARK_RAPIDS_ML_SETTINGS.items():
        assert defaults.get(key) == value, key


def test_gpu_resources_add_up(gpu: list[dict]) -> None:
    assert check_rapids(gpu) == []
    d = spark_defaults(gpu)
    slots = int(d["spark.executor.cores"]) // int(d["spark.task.cpus"])
    assert slots * float(d["spark.task.resource.gpu.amount"]) == pytest.approx(
        float(d["spark.executor.resource.gpu.amount"])
    )
    # EMR 7 (Amazon Linux 2023, cgroup v2): YARN's mount path and container-executor's root must
    # both be the v1 devices hierarchy that emr/bootstrap.sh mounts.
    bootstrap = (EMR_DIR / "bootstrap.sh").read_text()
    root = properties(gpu, "container-executor/cgroups")["root"]
    assert f'CGROUP_ROOT="{root}"' in bootstrap


def test_cpu_file_has_no_gpu_settings(cpu: list[dict]) -> None:
    assert not is_rapids(cpu)
    for path, item in _walk(cpu):
        for key in item.get("Properties", {}):
            assert "rapids" not in key.lower() and "gpu" not in key.lower(), f"{path}.{key}"
    assert check_rapids(cpu)  # and the RAPIDS check says why it is not a GPU configuration


@pytest.mark.parametrize("name", ["cpu.json", "gpu-rapids.json"])
def test_python_and_jars_match_what_bootstrap_installs(name: str) -> None:
    configs = load_configurations(EMR_DIR / name)
    bootstrap = (EMR_DIR / "bootstrap.sh").read_text()
    prefix = re.search(r'PREFIX="\$\{SPARK_CLUSTERING_PREFIX:-([^}]+)\}"', bootstrap).group(1)
    defaults = spark_defaults(configs)
    assert defaults["spark.pyspark.python"] == f"{prefix}/venv/bin/python" == VENV_PYTHON
    assert defaults["spark.pyspark.driver.python"] == VENV_PYTHON
    export = properties(configs, "spark-env/export")
    assert export["PYSPARK_PYTHON"] == VENV_PYTHON
    # protobuf-java and sagemaker-pyspark's jars are added by `emr submit` to SageMaker jobs only
    assert "protobuf" not in defaults.get("spark.jars", "")


def _bad(configs: list[dict], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        validate_configurations(configs)


def test_rejects_what_emr_rejects(cpu: list[dict]) -> None:
    c = copy.deepcopy(cpu)
    c[1]["Classification"] = "spark-default"
    _bad(c, r"Classification='spark-default' is not an EMR 7 classification")

    c = copy.deepcopy(cpu)
    c[1]["Properties"]["spark.executor.cores"] = 4
    _bad(c, r"spark-defaults\.spark\.executor\.cores=4 is a int; EMR accepts only string")

    c = copy.deepcopy(cpu)
    c[1]["Configurations"] = [{"Classification": "export", "Properties": {"A": "b"}}]
    _bad(c, r"Classification='export' is not valid under 'spark-defaults'")

    c = copy.deepcopy(cpu)
    c[1]["properties"] = c[1].pop("Properties")
    _bad(c, r"unknown keys \['properties'\]")

    c = [*copy.deepcopy(cpu), copy.deepcopy(cpu[1])]
    _bad(c, r"classification 'spark-defaults' appears more than once")

    c = copy.deepcopy(cpu)
    c[1]["Properties"]["executor.cores"] = "4"
    _bad(c, r"spark-defaults property 'executor.cores' does not start with 'spark.'")

    c = copy.deepcopy(cpu)
    c[0]["Properties"]["spark.plugins"] = "x"
    _bad(c, r"spark\.spark\.plugins is not a property of the 'spark' classification")

    c = copy.deepcopy(cpu)
    c[0]["Properties"]["maximizeResourceAllocation"] = "yes"
    _bad(c, r"spark\.maximizeResourceAllocation='yes'; accepted: 'true' or 'false'")

    _bad([], "non-empty JSON list")


def test_load_names_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "c.json"
    bad.write_text("[{")
    with pytest.raises(ValueError, match=r"c\.json' is not valid JSON"):
        load_configurations(bad)
    with pytest.raises(ValueError, match="does not exist"):
        load_configurations(tmp_path / "missing.json")


def test_rapids_check_catches_emr6_paths_and_idle_gpus(gpu: list[dict]) -> None:
    c = copy.deepcopy(gpu)
    for _, item in _walk(c):
        props = item.get("Properties", {})
        for key, value in props.items():
            if value == "/spark-rapids-cgroup":
                props[key] = "/sys/fs/cgroup"  # the EMR 6 value: wrong on EMR 7
    problems = check_rapids(c)
    assert any("cgroups.mount-path='/sys/fs/cgroup'" in p for p in problems)
    assert any("container-executor/cgroups: root='/sys/fs/cgroup'" in p for p in problems)

    c = copy.deepcopy(gpu)
    next(i for i in c if i["Classification"] == "spark-defaults")["Properties"][
        "spark.task.resource.gpu.amount"
    ] = "0.5"
    assert any("task slots" in p for p in check_rapids(c))

    c = [i for i in copy.deepcopy(gpu) if i["Classification"] != "capacity-scheduler"]
    assert any("DominantResourceCalculator" in p for p in check_rapids(c))
