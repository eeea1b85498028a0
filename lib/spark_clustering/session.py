"""The one place that builds a SparkSession for spark-clustering.

Every job, test, notebook helper and benchmark gets its session from :func:`get_spark`, so the
classpath (SageMaker jars, the RAPIDS Accelerator), the local defaults and the GPU switch are
decided here and nowhere else.
"""

from __future__ import annotations

import glob
import logging
import os
import re
import shutil
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import SparkSession

log = logging.getLogger(__name__)

GPU_MODES = ("auto", "on", "off")

#: Settings applied to every session we build, unless the caller or spark-submit set them.
BASE_CONF: dict[str, str] = {
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    "spark.sql.execution.arrow.pyspark.fallback.enabled": "false",
    "spark.sql.adaptive.enabled": "true",
}

#: Extra settings for a local master (laptop, CI): small shuffles, no UI, quiet progress.
LOCAL_CONF: dict[str, str] = {
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.sql.shuffle.partitions": "8",
    "spark.driver.bindAddress": "127.0.0.1",
    "spark.driver.host": "127.0.0.1",
}

RAPIDS_PLUGIN = "com.nvidia.spark.SQLPlugin"

#: Functions returning jar paths to put on the classpath; later modules register theirs
#: (for example the SageMaker backend adds sagemaker-pyspark's jars and protobuf-java).
JAR_PROVIDERS: list[Callable[[], list[str]]] = []

#: Where protobuf-java is looked for (``SPARK_CLUSTERING_PROTOBUF_JAR`` wins): Debian's
#: libprotobuf-java, then where emr/bootstrap.sh copies it on EMR.
PROTOBUF_JARS = (
    "/usr/share/java/protobuf.jar",
    "/usr/share/java/protobuf-java.jar",
    "/opt/spark-clustering/jars/protobuf-java.jar",
)


def sagemaker_jars() -> list[str]:
    """sagemaker-pyspark's bundled jars plus protobuf-java, when sagemaker_pyspark is installed.

    Found through the package's location, without importing it. The AWS Java SDK 1.12 jars come
    before the 1.11 bundle so that one version of each SDK class wins; on EMR (EMRFS present)
    hadoop-aws and the bundle are left out because the cluster ships its own.
    """
    import importlib.util

    spec = importlib.util.find_spec("sagemaker_pyspark")
    if spec is None or not spec.submodule_search_locations:
        return []
    jars_dir = os.path.join(next(iter(spec.submodule_search_locations)), "jars")
    jars = sorted(glob.glob(os.path.join(jars_dir, "*.jar")))
    on_emr = os.path.isdir("/usr/share/aws/emr/emrfs")

    def rank(jar: str) -> int:
        name = os.path.basename(jar)
        if name.startswith("sagemaker-spark"):
            return 0
        if name.startswith("aws-java-sdk-bundle"):
            return 3
        return 2 if name.startswith("hadoop-aws") else 1

    chosen = [
        j
        for j in sorted(jars, key=rank)
        if not (on_emr and os.path.basename(j).startswith(("hadoop-aws", "aws-java-sdk-bundle")))
    ]
    protobuf = [os.environ.get("SPARK_CLUSTERING_PROTOBUF_JAR", ""), *PROTOBUF_JARS]
    found = next((j for j in protobuf if j and os.path.exists(j)), None)
    if found is None:
        log.warning(
            "sagemaker_pyspark is installed but no protobuf-java jar was found (%s): its data "
            "upload fails on Spark 3.5; install libprotobuf-java or set "
            "SPARK_CLUSTERING_PROTOBUF_JAR",
            ", ".join(PROTOBUF_JARS),
        )
    return chosen + ([os.path.realpath(found)] if found else [])


JAR_PROVIDERS.append(sagemaker_jars)


def _local_driver_memory() -> str:
    """Half the machine's memory, between 2 and 16 GiB: the local driver is the executor too."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # pragma: no cover - non-POSIX
        return "4g"
    gib = int(total / 2**30 / 2)
    return f"{min(max(gib, 2), 16)}g"


def find_rapids_jar(conf: Mapping[str, str] | None = None) -> str | None:
    """Locate the RAPIDS Accelerator jar: ``SPARK_RAPIDS_JAR``, ``spark.jars``, or EMR's path."""
    candidates: list[str] = []
    if os.environ.get("SPARK_RAPIDS_JAR"):
        candidates.append(os.environ["SPARK_RAPIDS_JAR"])
    for jar in (conf or {}).get("spark.jars", "").split(","):
        if "rapids-4-spark" in jar:
            candidates.append(jar)
    candidates += sorted(glob.glob("/usr/lib/spark/jars/rapids-4-spark*.jar"))
    for jar in candidates:
        if jar and (os.path.exists(jar) or "://" in jar):
            return jar
    return None


def gpu_available() -> bool:
    """True when this host sees an NVIDIA GPU (``nvidia-smi`` present and listing a device)."""
    smi = shutil.which("nvidia-smi")
    if not smi:
        return False
    import subprocess

    try:
        out = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return False
    return out.returncode == 0 and "GPU" in out.stdout


def rapids_conf(jar: str | None) -> dict[str, str]:
    """Settings that enable the RAPIDS Accelerator for Apache Spark, as NVIDIA documents them."""
    conf = {
        "spark.plugins": RAPIDS_PLUGIN,
        "spark.rapids.sql.enabled": "true",
        "spark.rapids.sql.explain": "NOT_ON_GPU",
        "spark.rapids.memory.pinnedPool.size": "1g",
        "spark.sql.execution.arrow.maxRecordsPerBatch": "100000",
    }
    if jar:
        conf["spark.jars"] = jar
    return conf


def resolve_gpu(gpu: str | bool, conf: Mapping[str, str]) -> tuple[bool, str]:
    """Decide whether to enable the RAPIDS Accelerator; returns (enabled, reason)."""
    mode = {True: "on", False: "off"}.get(gpu, gpu) if isinstance(gpu, bool) else gpu
    if mode not in GPU_MODES:
        raise ValueError(f"gpu={gpu!r} is not valid; accepted: {', '.join(GPU_MODES)} or a bool")
    if mode == "off":
        return False, "gpu='off'"
    jar = find_rapids_jar(conf)
    if mode == "on":
        if jar is None:
            raise ValueError(
                "gpu='on' but no RAPIDS Accelerator jar was found: set SPARK_RAPIDS_JAR or add "
                "rapids-4-spark_2.12-<version>.jar to spark.jars"
            )
        return True, f"gpu='on' with {jar}"
    if jar is None:
        return False, "gpu='auto': no RAPIDS Accelerator jar found"
    if not gpu_available():
        return False, "gpu='auto': RAPIDS jar found but no NVIDIA GPU visible (nvidia-smi)"
    return True, f"gpu='auto': RAPIDS jar {jar} and a GPU are present"


def rapids_enabled(spark: SparkSession) -> bool:
    """True when this session runs with the RAPIDS Accelerator plugin and SQL on the GPU on."""
    conf = spark.sparkContext.getConf()
    plugins = conf.get("spark.plugins", "") or ""
    sql_on = (conf.get("spark.rapids.sql.enabled", "true") or "true").lower() == "true"
    return RAPIDS_PLUGIN in plugins.split(",") and sql_on


#: Plan nodes that are neither work on the CPU nor on the GPU (AQE wrappers, codegen stages).
_PLAN_WRAPPERS = frozenset(
    {
        "AdaptiveSparkPlan", "ShuffleQueryStage", "BroadcastQueryStage", "TableCacheQueryStage",
        "ResultQueryStage", "AQEShuffleRead", "InputAdapter", "WholeStageCodegen",
        "ColumnarToRow", "RowToColumnar", "ReusedExchange", "InMemoryRelation",
        "CustomShuffleReader", "Subquery", "SubqueryBroadcast", "ReusedSubquery",
    }
)  # fmt: skip
_PLAN_NODE = re.compile(r"^[\s:|+\-]*(?:\*\(\d+\)\s*)?([A-Z][A-Za-z0-9]+)")


def plan_operators(plan: str) -> list[str]:
    """Physical operator names of an executed plan string (AQE's final plan only)."""
    final = plan.split("== Initial Plan ==")[0]
    names = []
    for line in final.splitlines():
        if "== " in line:
            continue
        match = _PLAN_NODE.match(line)
        if match:
            names.append(match.group(1))
    return names


def gpu_fallbacks(plan: str) -> tuple[list[str], list[str]]:
    """(operators on the GPU, operators that stayed on the CPU) in an executed plan string.

    Under the RAPIDS Accelerator, operators it replaced are named ``Gpu...``; any other
    operator (outside AQE and codegen wrappers) ran on the CPU: it fell back.
    """
    on_gpu, on_cpu = [], []
    for name in plan_operators(plan):
        if name.startswith("Gpu"):
            on_gpu.append(name)
        elif name not in _PLAN_WRAPPERS:
            on_cpu.append(name)
    return on_gpu, on_cpu


def _merge_jars(conf: dict[str, str], jars: Iterable[str]) -> None:
    existing = [j for j in conf.get("spark.jars", "").split(",") if j]
    for jar in jars:
        if jar and jar not in existing:
            existing.append(jar)
    if existing:
        conf["spark.jars"] = ",".join(existing)


def build_conf(
    master: str | None = None,
    conf: Mapping[str, Any] | None = None,
    gpu: str | bool = "off",
    preset: Mapping[str, str] | None = None,
) -> tuple[str | None, dict[str, str]]:
    """Compute (master, settings) without starting anything; ``preset`` is what is already set.

    Precedence, lowest first: our defaults, then what spark-submit or spark-defaults set
    (``preset``), then ``conf`` given by the caller.
    """
    preset = dict(preset or {})
    user = {str(k): str(v) for k, v in (conf or {}).items()}
    chosen_master = master or user.get("spark.master") or preset.get("spark.master") or "local[*]"
    settings: dict[str, str] = dict(BASE_CONF)
    if chosen_master.startswith("local"):
        settings.update(LOCAL_CONF)
        settings["spark.driver.memory"] = _local_driver_memory()
    settings.update(preset)
    settings.update(user)
    settings["spark.master"] = chosen_master
    use_gpu, reason = resolve_gpu(gpu, settings)
    log.info("RAPIDS Accelerator %s (%s)", "enabled" if use_gpu else "not enabled", reason)
    if use_gpu:
        jar = find_rapids_jar(settings)
        for key, value in rapids_conf(None).items():
            settings.setdefault(key, value)
        if jar and "://" not in jar:
            _merge_jars(settings, [jar])
    _merge_jars(settings, [j for provider in JAR_PROVIDERS for j in provider()])
    return chosen_master, settings


def get_spark(
    app_name: str = "spark-clustering",
    master: str | None = None,
    conf: Mapping[str, Any] | None = None,
    gpu: str | bool = "auto",
) -> SparkSession:
    """Return the SparkSession for this process, building it with our defaults if needed.

    Parameters
    ----------
    app_name : str
        Application name shown by YARN / the Spark UI.
    master : str, optional
        Spark master. Default: what spark-submit or spark-defaults configured, else ``local[*]``.
    conf : mapping, optional
        Extra Spark settings; they win over every default here.
    gpu : {"auto", "on", "off"} or bool
        Enable the RAPIDS Accelerator for Apache Spark. ``auto`` enables it when the plugin jar
        and an NVIDIA GPU are both present; ``on`` fails clearly when the jar is missing.

    Examples
    --------
    >>> spark = get_spark("doc", master="local[1]")  # doctest: +SKIP
    >>> spark.conf.get("spark.sql.session.timeZone")  # doctest: +SKIP
    'UTC'
    """
    from pyspark import SparkConf
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    preset = dict(SparkConf().getAll())
    chosen_master, settings = build_conf(master, conf, gpu, preset)
    if active is not None:
        # A notebook (Livy) or spark-submit already started one: only runtime SQL settings apply.
        for key, value in settings.items():
            if key.startswith("spark.sql.") and key not in preset:
                try:
                    active.conf.set(key, value)
                except Exception:  # static settings cannot change on a live session
                    log.debug("could not set %s on the active session", key)
        return active
    builder = SparkSession.builder.appName(app_name).master(chosen_master or "local[*]")
    for key, value in settings.items():
        if key != "spark.master":
            builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel(os.environ.get("SPARK_CLUSTERING_SPARK_LOG_LEVEL", "WARN"))
    return spark
