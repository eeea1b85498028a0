"""EMR ``Configurations`` (classification JSON): load, check the shape EMR accepts, check RAPIDS.

EMR's ``RunJobFlow`` takes a list of ``{"Classification": str, "Properties": {str: str},
"Configurations": [...]}`` objects. EMR rejects property values that are not strings and
classifications it does not know, and most sub-classifications are only valid under one parent
(``export`` under ``*-env``, ``gpu``/``cgroups`` under ``container-executor``). The checks here
run before any AWS call, so a bad file fails on the operator's machine with the key and value.

The RAPIDS settings checked by :func:`check_rapids` are the ones the Amazon EMR Release Guide
("Use the Nvidia RAPIDS Accelerator for Apache Spark", EMR 7.x examples) and NVIDIA's
spark-rapids-ml EMR notebook configuration require; ``docs/emr.md`` explains each one.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from .gpu_sizing import check_memory

Configuration = dict[str, Any]

#: Top-level classifications this project may use on EMR 7 (Amazon EMR Release Guide,
#: "Configure applications" and each application's page). A name outside this set is a typo.
KNOWN_CLASSIFICATIONS: frozenset[str] = frozenset(
    {
        "capacity-scheduler",
        "container-executor",
        "container-log4j",
        "core-site",
        "emrfs-site",
        "hadoop-env",
        "hadoop-log4j",
        "hdfs-env",
        "hdfs-site",
        "hive-env",
        "hive-site",
        "jupyter-notebook-conf",
        "jupyter-sparkmagic-conf",
        "livy-conf",
        "livy-env",
        "livy-log4j2",
        "mapred-env",
        "mapred-site",
        "spark",
        "spark-defaults",
        "spark-env",
        "spark-hive-site",
        "spark-log4j2",
        "spark-metrics",
        "yarn-env",
        "yarn-site",
    }
)

#: Parent classification -> sub-classifications EMR accepts under it.
NESTED_CLASSIFICATIONS: dict[str, frozenset[str]] = {
    "container-executor": frozenset({"gpu", "cgroups", "docker"}),
    **{
        env: frozenset({"export"})
        for env in (
            "hadoop-env",
            "hdfs-env",
            "hive-env",
            "livy-env",
            "mapred-env",
            "spark-env",
            "yarn-env",
        )
    },
}

#: Properties of the ``spark`` classification (EMR-specific switches, not Spark settings).
SPARK_CLASSIFICATION_PROPERTIES = frozenset({"maximizeResourceAllocation", "enableSparkRapids"})

#: Key prefixes each classification's properties must have.
PROPERTY_PREFIXES: dict[str, tuple[str, ...]] = {
    "spark-defaults": ("spark.",),
    "yarn-site": ("yarn.",),
    "capacity-scheduler": ("yarn.scheduler.capacity.",),
    "livy-conf": ("livy.",),
    "core-site": ("fs.", "hadoop.", "io."),
}

RAPIDS_PLUGIN = "com.nvidia.spark.SQLPlugin"
DOMINANT_RESOURCE_CALCULATOR = "org.apache.hadoop.yarn.util.resource.DominantResourceCalculator"
CGROUP_ROOT_EMR7 = "/spark-rapids-cgroup"

#: (classification path, property) -> value, as the Amazon EMR Release Guide's EMR 7.x
#: ``my-configurations.json`` example sets them for the RAPIDS Accelerator.
RAPIDS_REQUIRED: dict[tuple[str, str], str] = {
    ("spark", "enableSparkRapids"): "true",
    ("yarn-site", "yarn.nodemanager.resource-plugins"): "yarn.io/gpu",
    ("yarn-site", "yarn.resource-types"): "yarn.io/gpu",
    ("yarn-site", "yarn.nodemanager.resource-plugins.gpu.allowed-gpu-devices"): "auto",
    (
        "yarn-site",
        "yarn.nodemanager.resource-plugins.gpu.path-to-discovery-executables",
    ): "/usr/bin",
    ("yarn-site", "yarn.nodemanager.linux-container-executor.cgroups.mount"): "true",
    ("yarn-site", "yarn.nodemanager.linux-container-executor.cgroups.mount-path"): CGROUP_ROOT_EMR7,
    ("yarn-site", "yarn.nodemanager.linux-container-executor.cgroups.hierarchy"): "yarn",
    (
        "yarn-site",
        "yarn.nodemanager.container-executor.class",
    ): "org.apache.hadoop.yarn.server.nodemanager.LinuxContainerExecutor",
    ("container-executor/gpu", "module.enabled"): "true",
    ("container-executor/cgroups", "root"): CGROUP_ROOT_EMR7,
    ("container-executor/cgroups", "yarn-hierarchy"): "yarn",
    (
        "capacity-scheduler",
        "yarn.scheduler.capacity.resource-calculator",
    ): DOMINANT_RESOURCE_CALCULATOR,
    (
        "spark-defaults",
        "spark.executor.resource.gpu.discoveryScript",
    ): "/usr/lib/spark/scripts/gpu/getGpusResources.sh",
    ("spark-defaults", "spark.executor.resource.gpu.amount"): "1",
}

#: Library folders the RAPIDS Accelerator needs in ``spark.executor.extraLibraryPath`` (CUDA).
RAPIDS_LIBRARY_PATH_ENTRIES = ("/usr/local/cuda/lib64", "/usr/local/cuda/compat/lib")

#: Settings NVIDIA's spark-rapids-ml EMR configuration uses so cuML tasks can share the GPU with
#: the SQL plugin: the plugin must not grab the GPU memory as a pool, CuPy needs a writable cache
#: and YARN must not scale executors away under a barrier stage.
ML_REQUIRED: dict[tuple[str, str], str] = {
    # "NONE": no RMM pool (the RAPIDS configuration reference; this key replaces the deprecated
    # spark.rapids.memory.gpu.pooling.enabled=false)
    ("spark-defaults", "spark.rapids.memory.gpu.pool"): "NONE",
    ("spark-defaults", "spark.dynamicAllocation.enabled"): "false",
    ("spark-defaults", "spark.executorEnv.CUPY_CACHE_DIR"): "/tmp/.cupy",
    ("spark-defaults", "spark.python.worker.reuse"): "true",
}


#: settings the RAPIDS Accelerator's configuration reference lists as deprecated -> replacement
DEPRECATED: dict[str, str] = {
    "spark.rapids.memory.gpu.pooling.enabled": "spark.rapids.memory.gpu.pool",
}

#: Amazon Linux 2023 (EMR 7) names ENA interfaces by the predictable scheme (ens5, ens6, ...);
#: NCCL_SOCKET_IFNAME is a prefix list, so "eth" matches no interface there
NCCL_IFNAME_PREFIXES = ("ens", "^")


def read_json(path: str | Path, what: str) -> Any:
    """Parse the JSON file ``path``; a missing or malformed file is a ``ValueError``."""
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ValueError(f"{what} file {str(path)!r} does not exist") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{what} file {str(path)!r} is not valid JSON: {exc}") from None


def load_configurations(path: str | Path) -> list[Configuration]:
    """Read and check an EMR ``Configurations`` JSON file; returns the list."""
    data = read_json(path, "configurations")
    validate_configurations(data, source=str(path))
    return data


def validate_configurations(configs: Any, source: str = "Configurations") -> None:
    """Raise ``ValueError`` unless ``configs`` has the shape and names EMR accepts."""
    if not isinstance(configs, list) or not configs:
        raise ValueError(f"{source}: must be a non-empty JSON list of classifications")
    seen: set[str] = set()
    for index, item in enumerate(configs):
        _validate_item(item, f"{source}[{index}]", parent=None)
        name = item["Classification"]
        if name in seen:
            # EMR merges nothing: a second block silently wins for the keys it repeats.
            raise ValueError(f"{source}: classification {name!r} appears more than once")
        seen.add(name)


def _validate_item(item: Any, where: str, parent: str | None) -> None:
    if not isinstance(item, dict):
        raise ValueError(f"{where}: must be an object, got {type(item).__name__}")
    extra = set(item) - {"Classification", "Properties", "Configurations"}
    if extra:
        raise ValueError(
            f"{where}: unknown keys {sorted(extra)}; accepted: Classification, Properties, "
            "Configurations"
        )
    name = item.get("Classification")
    if not isinstance(name, str) or not name:
        raise ValueError(f"{where}: 'Classification' must be a non-empty string, got {name!r}")
    if parent is None:
        if name not in KNOWN_CLASSIFICATIONS:
            raise ValueError(
                f"{where}: Classification={name!r} is not an EMR 7 classification this project "
                f"uses; accepted: {', '.join(sorted(KNOWN_CLASSIFICATIONS))}"
            )
    else:
        allowed = NESTED_CLASSIFICATIONS.get(parent, frozenset())
        if name not in allowed:
            raise ValueError(
                f"{where}: Classification={name!r} is not valid under {parent!r}; accepted: "
                f"{', '.join(sorted(allowed)) or 'none'}"
            )
    props = item.get("Properties", {})
    if not isinstance(props, dict):
        raise ValueError(f"{where}: 'Properties' of {name!r} must be an object")
    for key, value in props.items():
        if not isinstance(value, str):
            raise ValueError(
                f"{where}: {name}.{key}={value!r} is a {type(value).__name__}; EMR accepts only "
                "string property values (write it in quotes)"
            )
        if parent is None:
            _validate_property(name, key, value, where)
    nested = item.get("Configurations", [])
    if not isinstance(nested, list):
        raise ValueError(f"{where}: 'Configurations' of {name!r} must be a list")
    if nested and parent is not None:
        raise ValueError(f"{where}: {name!r} cannot nest further classifications")
    for index, child in enumerate(nested):
        _validate_item(child, f"{where}.Configurations[{index}]", parent=name)


def _validate_property(classification: str, key: str, value: str, where: str) -> None:
    if classification == "spark" and key not in SPARK_CLASSIFICATION_PROPERTIES:
        raise ValueError(
            f"{where}: spark.{key} is not a property of the 'spark' classification; accepted: "
            f"{', '.join(sorted(SPARK_CLASSIFICATION_PROPERTIES))} (Spark settings go in "
            "spark-defaults)"
        )
    if classification == "spark" and value not in ("true", "false"):
        raise ValueError(f"{where}: spark.{key}={value!r}; accepted: 'true' or 'false'")
    prefixes = PROPERTY_PREFIXES.get(classification)
    if prefixes and not key.startswith(prefixes):
        raise ValueError(
            f"{where}: {classification} property {key!r} does not start with "
            f"{' or '.join(repr(p) for p in prefixes)}"
        )


def properties(configs: Iterable[Mapping[str, Any]], path: str) -> dict[str, str]:
    """Properties of the classification at ``path`` (``"spark-defaults"``, ``"a/b"``)."""
    head, _, rest = path.partition("/")
    for item in configs:
        if item.get("Classification") == head:
            if rest:
                return properties(item.get("Configurations", []), rest)
            return dict(item.get("Properties", {}))
    return {}


def spark_defaults(configs: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    return properties(configs, "spark-defaults")


def is_rapids(configs: Iterable[Mapping[str, Any]]) -> bool:
    """True when the configuration turns the RAPIDS Accelerator on."""
    configs = list(configs)
    return properties(configs, "spark").get(
        "enableSparkRapids"
    ) == "true" or RAPIDS_PLUGIN in spark_defaults(configs).get("spark.plugins", "")


def check_rapids(configs: list[Configuration]) -> list[str]:
    """Problems that keep a GPU cluster from scheduling GPUs or loading the RAPIDS plugin.

    Returns an empty list for a configuration that matches the documented EMR 7 settings, the
    settings GPU ML tasks need, and Spark's own resource arithmetic.
    """
    problems = []
    for table in (RAPIDS_REQUIRED, ML_REQUIRED):
        for (path, key), expected in table.items():
            actual = properties(configs, path).get(key)
            if actual != expected:
                problems.append(f"{path}: {key}={actual!r}, expected {expected!r}")
    defaults = spark_defaults(configs)
    plugins = [p.strip() for p in defaults.get("spark.plugins", "").split(",")]
    if RAPIDS_PLUGIN not in plugins:
        problems.append(f"spark-defaults: spark.plugins must include {RAPIDS_PLUGIN}")
    libpath = defaults.get("spark.executor.extraLibraryPath", "").split(":")
    for entry in RAPIDS_LIBRARY_PATH_ENTRIES:
        if entry not in libpath:
            problems.append(f"spark-defaults: spark.executor.extraLibraryPath lacks {entry}")
    problems += _check_gpu_arithmetic(defaults)
    for key, replacement in DEPRECATED.items():
        if key in defaults:
            problems.append(f"spark-defaults: {key} is deprecated; set {replacement} instead")
    ifname = defaults.get("spark.executorEnv.NCCL_SOCKET_IFNAME")
    if ifname is not None and not ifname.startswith(NCCL_IFNAME_PREFIXES):
        problems.append(
            f"spark-defaults: spark.executorEnv.NCCL_SOCKET_IFNAME={ifname!r} matches no "
            "interface of Amazon Linux 2023 (ens*); accepted: a prefix starting with 'ens', or "
            "an exclusion list starting with '^'"
        )
    fixed = defaults.get("spark.dynamicAllocation.enabled") == "false"
    if fixed and not defaults.get("spark.executor.instances", "").isdigit():
        problems.append(
            "spark-defaults: spark.dynamicAllocation.enabled=false needs "
            "spark.executor.instances (YARN starts 2 executors otherwise)"
        )
    problems += check_memory(defaults)
    return problems


def _check_gpu_arithmetic(defaults: Mapping[str, str]) -> list[str]:
    problems = []
    try:
        cores = int(defaults.get("spark.executor.cores", "1"))
        task_cpus = int(defaults.get("spark.task.cpus", "1"))
        exec_gpus = float(defaults.get("spark.executor.resource.gpu.amount", "0"))
        task_gpus = float(defaults.get("spark.task.resource.gpu.amount", "0"))
    except ValueError as exc:
        return [f"spark-defaults: a core or GPU amount is not a number ({exc})"]
    if task_gpus <= 0 or task_gpus > 1:
        problems.append(
            f"spark-defaults: spark.task.resource.gpu.amount={task_gpus} must be in (0, 1]"
        )
        return problems
    slots_by_cpu = cores // max(task_cpus, 1)
    slots_by_gpu = int(round(exec_gpus / task_gpus, 6))
    if slots_by_cpu != slots_by_gpu:
        # Spark runs min(slots) tasks at once: the other resource sits idle on every executor.
        problems.append(
            f"spark-defaults: {cores} cores / {task_cpus} task.cpus = {slots_by_cpu} task slots "
            f"but {exec_gpus} GPU / {task_gpus} per task = {slots_by_gpu}; make them equal"
        )
    return problems


_INSTANCE_TYPE = re.compile(r"^[a-z][a-z0-9-]*\.[0-9]*[a-z]+[0-9]*[a-z]*$")


def is_instance_type(name: str) -> bool:
    return bool(_INSTANCE_TYPE.match(name))
