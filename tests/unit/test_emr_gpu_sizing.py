"""GPU executors sized from the instance type: the generated configuration of every supported
type, the four settings the RAPIDS Accelerator's and EMR's documentation contradict, and the
launcher and bootstrap using the sizes."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from spark_clustering.emr import gpu_sizing
from spark_clustering.emr.config import load_launch_config
from spark_clustering.emr.configurations import check_rapids, load_configurations, spark_defaults
from spark_clustering.emr.gpu_sizing import (
    GPU_INSTANCES,
    apply_size,
    parse_mib,
    size_executors,
)
from spark_clustering.emr.launcher import bootstrap_args, cluster_configurations

EMR_DIR = Path(__file__).resolve().parents[2] / "emr"


@pytest.fixture(scope="module")
def gpu_file() -> list[dict]:
    return load_configurations(EMR_DIR / "gpu-rapids.json")


@pytest.mark.parametrize("itype", sorted(GPU_INSTANCES))
def test_generated_configuration_for_each_instance_type(gpu_file, itype):
    spec = GPU_INSTANCES[itype]
    configs = apply_size(gpu_file, size_executors([([itype], 3)]))
    assert check_rapids(configs) == []
    d = spark_defaults(configs)
    cores = int(d["spark.executor.cores"])
    assert cores <= spec.vcpus // spec.gpus and cores & (cores - 1) == 0  # a power of two
    assert float(d["spark.task.resource.gpu.amount"]) * cores == 1.0  # exact: no idle slot
    assert d["spark.executor.instances"] == str(3 * spec.gpus)  # one executor per GPU
    heap = parse_mib(d["spark.executor.memory"])
    overhead = parse_mib(d["spark.executor.memoryOverhead"])
    pinned = parse_mib(d["spark.rapids.memory.pinnedPool.size"])
    # the executors of one node fit the share of its memory YARN hands out
    assert spec.gpus * (heap + overhead) <= spec.memory_gib * 1024 * gpu_sizing.YARN_SHARE
    # the overhead holds the pinned pool, one Python worker per core and CuPy/cuML
    off_heap = pinned + cores * gpu_sizing.PYTHON_WORKER_MIB + gpu_sizing.GPU_LIBRARIES_MIB
    assert overhead >= off_heap + max(384, heap // 10)
    assert heap >= gpu_sizing.MIN_HEAP_MIB


def test_mixed_types_get_the_executor_that_fits_all():
    small = size_executors([(["g4dn.xlarge"], 1)])
    big = size_executors([(["g5.12xlarge"], 1)])
    mixed = size_executors([(["g4dn.xlarge", "g5.12xlarge"], 2), (["g5.12xlarge"], 1)])
    assert mixed.cores == min(small.cores, big.cores)
    assert mixed.heap_mib == min(small.heap_mib, big.heap_mib)
    assert mixed.instances == 2 * 1 + 1 * 4  # a fleet may pick the one-GPU type


def test_four_documented_points_are_checked(gpu_file):
    sized = apply_size(gpu_file, size_executors([(["g4dn.2xlarge"], 4)]))
    d = spark_defaults(sized)
    assert "spark.rapids.memory.gpu.pooling.enabled" not in d
    assert d["spark.rapids.memory.gpu.pool"] == "NONE"
    assert d["spark.executorEnv.NCCL_SOCKET_IFNAME"].startswith("ens")
    assert d["spark.executor.instances"] == "4"

    def problems(**changes: str | None) -> str:
        c = copy.deepcopy(sized)
        props = next(i for i in c if i["Classification"] == "spark-defaults")["Properties"]
        for key, value in changes.items():
            key = key.replace("__", ".")
            if value is None:
                props.pop(key)
            else:
                props[key] = value
        return "; ".join(check_rapids(c))

    # the old file's pinned pool of 2G with 2G of overhead leaves nothing for Python and cuML
    assert "memoryOverhead=2048m leaves too little" in problems(
        spark__executor__memoryOverhead="2G", spark__rapids__memory__pinnedPool__size="2G"
    )
    assert "needs spark.executor.instances" in problems(spark__executor__instances=None)
    assert "pooling.enabled is deprecated; set spark.rapids.memory.gpu.pool" in problems(
        spark__rapids__memory__gpu__pooling__enabled="false"
    )
    assert "NCCL_SOCKET_IFNAME='eth' matches no interface" in problems(
        spark__executorEnv__NCCL_SOCKET_IFNAME="eth"
    )


def test_unsupported_or_too_small_type_is_rejected():
    with pytest.raises(ValueError, match=r"'m5\.2xlarge' is not a supported GPU instance type"):
        size_executors([(["m5.2xlarge"], 1)])
    with pytest.raises(ValueError, match="needs core or task instances"):
        size_executors([])


def _launch_config(tmp_path: Path, core_types: list[str], spot: int) -> Path:
    data = json.loads((EMR_DIR / "launch-gpu.json").read_text())
    for key in ("configurations",):
        data[key] = str(EMR_DIR / data[key])
    data["bootstrap"]["script"] = str(EMR_DIR / data["bootstrap"]["script"])
    for key in ("dist_dir", "jobs_dir"):
        data["artifacts"][key] = str((EMR_DIR / data["artifacts"][key]).resolve())
    data["security_configuration"]["template"] = str(
        EMR_DIR / data["security_configuration"]["template"]
    )
    data["artifacts"]["jars"] = {}
    data["instances"]["core"]["types"] = core_types
    data["instances"]["task"]["types"] = core_types
    data["instances"]["task"]["spot"] = spot
    path = tmp_path / "launch.json"
    path.write_text(json.dumps(data))
    return path


def test_launcher_sizes_from_the_instances_and_bootstrap_gets_the_cuda(tmp_path):
    config = load_launch_config(_launch_config(tmp_path, ["g5.12xlarge"], spot=1))
    d = spark_defaults(cluster_configurations(config))
    assert d["spark.executor.instances"] == str((2 + 1) * 4)  # on-demand 2 + spot 1, 4 GPUs each
    assert d["spark.executor.cores"] == "8"  # 48 vCPUs / 4 GPUs = 12 -> 8
    args = bootstrap_args(config, "s3://b/p/dist/x.whl")
    assert args[args.index("--cuda") + 1] == "12"


def test_configurations_file_may_not_fix_the_sizes(tmp_path, gpu_file):
    c = copy.deepcopy(gpu_file)
    next(i for i in c if i["Classification"] == "spark-defaults")["Properties"][
        "spark.executor.cores"
    ] = "4"
    (tmp_path / "fixed.json").write_text(json.dumps(c))
    path = _launch_config(tmp_path, ["g4dn.2xlarge"], spot=0)
    data = json.loads(path.read_text())
    data["configurations"] = str(tmp_path / "fixed.json")
    path.write_text(json.dumps(data))
    with pytest.raises(
        ValueError, match=r"no spark\.executor\.cores: the launcher sizes executors"
    ):
        load_launch_config(path)


def test_bootstrap_installs_cupy_for_the_cuda_it_is_given():
    script = (EMR_DIR / "bootstrap.sh").read_text()
    assert '"cupy-cuda${CUDA_MAJOR}x' in script
    assert "--cuda) CUDA_MAJOR=" in script
    assert "assert u.find_spec('cupy')" in script
    assert {spec.cuda for spec in GPU_INSTANCES.values()} == {12}  # what the bootstrap accepts
