"""Executor sizes for GPU clusters, from the instance types (GPUs, vCPUs, memory), not fixed.

The RAPIDS Accelerator runs one executor per GPU ("Getting started on Amazon EMR" and the
configuration reference of the RAPIDS Accelerator for Apache Spark; EMR's "Use the Nvidia
Spark-RAPIDS Accelerator" page). So for each supported instance type this module derives:

- ``spark.executor.cores``: the vCPUs per GPU, rounded down to a power of two (so
  ``spark.task.resource.gpu.amount = 1 / cores`` is exact in decimal) and at most 16 (more tasks
  than that on one GPU only queue behind ``spark.rapids.sql.concurrentGpuTasks``);
- the executor's container memory: the node's memory YARN can hand out (:data:`YARN_SHARE` of
  it; EMR keeps the rest for the OS and its daemons) divided among its GPUs, split into
  ``spark.executor.memory`` (heap) and ``spark.executor.memoryOverhead``, where the overhead
  covers, besides the JVM's own off-heap share (10% of the heap, at least 384 MiB, Spark's
  default), the pinned host pool (``spark.rapids.memory.pinnedPool.size``, which the plugin
  allocates off-heap), one Python worker per task core (pandas UDFs, numba and the kernels'
  host arrays) and the host side of CuPy/cuML;
- ``spark.executor.instances``: the GPUs of the core and task nodes, since dynamic allocation is
  off on GPU clusters (left at YARN's default of 2 executors otherwise).

Python workers are budgeted in the overhead rather than with ``spark.executor.pyspark.memory``:
that setting caps each worker's address space, and CUDA reserves far more virtual memory than it
uses, so CuPy would fail to initialise under it.

A cluster whose core and task types differ gets the smallest executor that fits every one of
them (Spark's executor settings are cluster-wide).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

MIB_PER_GIB = 1024
#: share of a node's memory the executors plan with (EMR's NodeManager default leaves ~25%
#: to the OS, HDFS and its agents on these sizes)
YARN_SHARE = 0.75
#: host memory per task core for its Python worker
PYTHON_WORKER_MIB = 1024
#: host memory of CuPy/cuML per executor (CUDA context, pinned staging, library state)
GPU_LIBRARIES_MIB = 2048
#: the smallest executor heap worth running
MIN_HEAP_MIB = 2048
MAX_CORES = 16


@dataclass(frozen=True)
class GpuInstance:
    """An EC2 GPU instance type, as EC2 documents it."""

    vcpus: int
    gpus: int
    memory_gib: int
    gpu: str  # the GPU model
    gpu_memory_gib: int  # per GPU
    cuda: int  # CUDA major version its driver on EMR 7 runs (CuPy wheel: cupy-cuda{cuda}x)


def _family(gpu: str, gpu_gib: int, sizes: Mapping[str, tuple[int, int, int]]) -> dict:
    return {size: GpuInstance(v, g, m, gpu, gpu_gib, 12) for size, (v, g, m) in sizes.items()}


_SIZES_G = {  # g5 and g6 share the layout: size -> (vCPUs, GPUs, memory GiB)
    "xlarge": (4, 1, 16),
    "2xlarge": (8, 1, 32),
    "4xlarge": (16, 1, 64),
    "8xlarge": (32, 1, 128),
    "16xlarge": (64, 1, 256),
    "12xlarge": (48, 4, 192),
    "24xlarge": (96, 4, 384),
    "48xlarge": (192, 8, 768),
}
_FAMILIES: dict[str, dict[str, GpuInstance]] = {
    # g4dn: the same sizes up to 16xlarge, no 24x/48x, a metal size with 8 GPUs
    "g4dn": _family(
        "T4",
        16,
        {**{k: v for k, v in _SIZES_G.items() if k[:2] not in ("24", "48")}, "metal": (96, 8, 384)},
    ),
    "g5": _family("A10G", 24, _SIZES_G),
    "g6": _family("L4", 24, _SIZES_G),
    "p3": _family(
        "V100", 16, {"2xlarge": (8, 1, 61), "8xlarge": (32, 4, 244), "16xlarge": (64, 8, 488)}
    ),
    "p4d": _family("A100", 40, {"24xlarge": (96, 8, 1152)}),
}

#: supported EC2 GPU instance types -> what sizes their executors
GPU_INSTANCES: dict[str, GpuInstance] = {
    f"{family}.{size}": spec for family, sizes in _FAMILIES.items() for size, spec in sizes.items()
}

#: spark-defaults keys the launcher derives from the instance types; a configurations file
#: that sets one would silently disagree with the instances, so it is rejected
SIZED_KEYS = (
    "spark.executor.cores",
    "spark.executor.memory",
    "spark.executor.memoryOverhead",
    "spark.executor.instances",
    "spark.task.cpus",
    "spark.task.resource.gpu.amount",
    "spark.rapids.memory.pinnedPool.size",
)


@dataclass(frozen=True)
class ExecutorSize:
    """One GPU executor's resources, and how many of them the cluster runs."""

    cores: int
    heap_mib: int
    overhead_mib: int
    pinned_mib: int
    instances: int

    def properties(self) -> dict[str, str]:
        """The spark-defaults this size sets (all strings, as EMR requires)."""
        return {
            "spark.executor.cores": str(self.cores),
            "spark.task.cpus": "1",
            "spark.task.resource.gpu.amount": repr(1 / self.cores),
            "spark.executor.memory": f"{self.heap_mib}m",
            "spark.executor.memoryOverhead": f"{self.overhead_mib}m",
            "spark.rapids.memory.pinnedPool.size": f"{self.pinned_mib}m",
            "spark.executor.instances": str(self.instances),
        }


def cores_per_executor(spec: GpuInstance) -> int:
    """vCPUs per GPU, rounded down to a power of two, at most :data:`MAX_CORES`."""
    per_gpu = min(spec.vcpus // spec.gpus, MAX_CORES)
    return 1 << (per_gpu.bit_length() - 1)


def overhead_needed(cores: int, heap_mib: int, pinned_mib: int) -> int:
    """Off-heap memory one executor needs: JVM share, pinned pool, Python workers, GPU libs."""
    return max(384, heap_mib // 10) + pinned_mib + cores * PYTHON_WORKER_MIB + GPU_LIBRARIES_MIB


def size_for(instance_type: str) -> tuple[int, int, int]:
    """(cores, heap MiB, pinned MiB) of one executor per GPU on ``instance_type``."""
    spec = GPU_INSTANCES.get(instance_type)
    if spec is None:
        raise ValueError(
            f"{instance_type!r} is not a supported GPU instance type; accepted: "
            f"{', '.join(sorted(GPU_INSTANCES))}"
        )
    cores = cores_per_executor(spec)
    container = int(spec.memory_gib * MIB_PER_GIB * YARN_SHARE) // spec.gpus
    pinned = 1024 if container < 32 * MIB_PER_GIB else 2048
    fixed = pinned + cores * PYTHON_WORKER_MIB + GPU_LIBRARIES_MIB
    heap = min(int((container - fixed) / 1.1), container - fixed - 384)
    if heap < MIN_HEAP_MIB:
        raise ValueError(
            f"{instance_type!r}: {container} MiB per GPU leave a {heap} MiB heap after "
            f"{fixed} MiB of pinned pool, Python workers and GPU libraries; accepted: a type "
            f"with more memory per GPU"
        )
    return cores, heap, pinned


def size_executors(roles: Iterable[tuple[Iterable[str], int]]) -> ExecutorSize:
    """The executor size for worker roles given as (instance types, instance count).

    Every type must fit the size (the smallest over the types), and the instance count is
    the GPUs the roles bring (the fewest-GPU type of each role, as a fleet may pick any).
    """
    sizes = []
    instances = 0
    for types, count in roles:
        types = list(types)
        sizes += [size_for(t) for t in types]
        if types and count > 0:
            instances += count * min(GPU_INSTANCES[t].gpus for t in types)
    if not sizes:
        raise ValueError("a GPU cluster needs core or task instances with GPUs")
    cores = min(s[0] for s in sizes)
    heap = min(s[1] for s in sizes)
    pinned = min(s[2] for s in sizes)
    overhead = overhead_needed(cores, heap, pinned)
    return ExecutorSize(cores, heap, overhead, pinned, max(instances, 1))


def cuda_major(types: Iterable[str]) -> int:
    """The CUDA major version every one of ``types`` runs (for the CuPy wheel)."""
    return min(GPU_INSTANCES[t].cuda for t in types)


def apply_size(configs: list[dict[str, Any]], size: ExecutorSize) -> list[dict[str, Any]]:
    """A copy of ``configs`` with the size's spark-defaults set (other keys untouched)."""
    out = [dict(item) for item in configs]
    for item in out:
        if item["Classification"] == "spark-defaults":
            item["Properties"] = {**item.get("Properties", {}), **size.properties()}
            return out
    out.append({"Classification": "spark-defaults", "Properties": size.properties()})
    return out


def parse_mib(value: str) -> int:
    """``'2048m'``, ``'2g'``, ``'2G'`` or ``'512'`` (MiB, as Spark reads memory settings)."""
    v = value.strip().lower()
    units = {"k": 1 / 1024, "m": 1, "g": 1024, "t": 1024 * 1024}
    if v and v[-1] in units:
        return int(float(v[:-1]) * units[v[-1]])
    if v.endswith("b") and len(v) > 1 and v[-2] in units:
        return int(float(v[:-2]) * units[v[-2]])
    return int(float(v))


def check_memory(defaults: Mapping[str, str]) -> list[str]:
    """Problems with an executor's off-heap budget: the overhead must hold the pinned pool,
    the Python workers and the GPU libraries beside the JVM's own share."""
    try:
        cores = int(defaults.get("spark.executor.cores", "1"))
        heap = parse_mib(defaults.get("spark.executor.memory", "1g"))
        overhead = parse_mib(defaults.get("spark.executor.memoryOverhead", "0"))
        pinned = parse_mib(defaults.get("spark.rapids.memory.pinnedPool.size", "0"))
    except ValueError as exc:
        return [f"spark-defaults: a memory setting is not a size ({exc})"]
    need = overhead_needed(cores, heap, pinned)
    if overhead < need:
        return [
            f"spark-defaults: spark.executor.memoryOverhead={overhead}m leaves too little "
            f"beside spark.rapids.memory.pinnedPool.size={pinned}m: {cores} Python workers, "
            f"CuPy/cuML and the JVM need {need}m in all"
        ]
    return []
