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

#: Named sets of jars a job may ask for (``get_spark(jars=("sagemaker",))``): name -> a function
#: returning their paths. Only the sets asked for go on the classpath, so a job that does not use
#: SageMaker does not ship sagemaker-pyspark's 184 MB of AWS SDK to every executor.
JAR_PROVIDERS: dict[str, Callable[[], list[str]]] = {}

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


JAR_PROVIDERS["sagemaker"] = sagemaker_jars


def uses_sagemaker(raw: Any) -> bool:
    """True when any ``backend`` in a config (segment or sweep, any depth) is ``sagemaker``:
    only then does the job put sagemaker-pyspark's jars on the classpath."""
    if isinstance(raw, dict):
        for key, value in raw.items():
            if key == "backend" and (
                value == "sagemaker" or (isinstance(value, list) and "sagemaker" in value)
            ):
                return True
            if key != "tracking" and uses_sagemaker(value):
                return True
    elif isinstance(raw, (list, tuple)):
        return any(uses_sagemaker(item) for item in raw)
    return False


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


def _read_defaults_file(path: str) -> dict[str, str]:
    """``spark-defaults.conf`` as Spark reads it: ``key value`` (or ``key=value``) per line."""
    settings: dict[str, str] = {}
    try:
        with open(path, encoding="utf-8") as handle:
            lines = handle.read().splitlines()
    except OSError:
        return settings
    for line in lines:
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = re.split(r"[\s=]+", line, maxsplit=1)
        if len(parts) == 2 and parts[0].startswith("spark."):
            settings[parts[0]] = parts[1].strip()
    return settings


#: spark-submit options that are settings under another name (``--master`` is ``spark.master``).
_SUBMIT_OPTIONS = {
    "--master": "spark.master",
    "--deploy-mode": "spark.submit.deployMode",
    "--driver-memory": "spark.driver.memory",
    "--executor-memory": "spark.executor.memory",
    "--executor-cores": "spark.executor.cores",
    "--num-executors": "spark.executor.instances",
    "--total-executor-cores": "spark.cores.max",
    "--jars": "spark.jars",
    "--py-files": "spark.submit.pyFiles",
    "--name": "spark.app.name",
}


def _submit_args_settings(args: str) -> dict[str, str]:
    """Settings named in ``PYSPARK_SUBMIT_ARGS`` (``--master``, ``--conf k=v``, ...)."""
    import shlex

    settings: dict[str, str] = {}
    words = shlex.split(args)
    for i, word in enumerate(words[:-1]):
        value = words[i + 1]
        if word in ("--conf", "-c") and "=" in value:
            key, _, val = value.partition("=")
            settings[key] = val
        elif word in _SUBMIT_OPTIONS:
            settings[_SUBMIT_OPTIONS[word]] = value
    for word in words:
        key, _, val = word.partition("=")
        if key in _SUBMIT_OPTIONS and val:
            settings[_SUBMIT_OPTIONS[key]] = val
    return settings


def configured_settings() -> dict[str, str]:
    """What spark-submit, Livy, ``spark-defaults.conf`` or ``PYSPARK_SUBMIT_ARGS`` already set.

    Under ``spark-submit`` (and Livy) the JVM exists before our Python code runs and
    ``PYSPARK_GATEWAY_PORT`` points at it: the settings are that JVM's ``spark.*`` system
    properties (``--master``, ``--conf``, ``spark-defaults.conf``, EMR's classifications), read by
    connecting to it. A ``SparkConf()`` built before the connection is empty, which once made every
    job fall back to ``local[*]`` on a cluster. In a plain ``python`` process nothing has started
    yet: the settings are those the JVM we launch will read, ``spark-defaults.conf`` (under
    ``SPARK_CONF_DIR`` or ``SPARK_HOME/conf``) and ``PYSPARK_SUBMIT_ARGS``.
    """
    from pyspark import SparkConf, SparkContext

    if os.environ.get("PYSPARK_GATEWAY_PORT") or SparkContext._jvm is not None:
        SparkContext._ensure_initialized()
        return {str(k): str(v) for k, v in SparkConf().getAll()}
    settings: dict[str, str] = {}
    conf_dir = os.environ.get("SPARK_CONF_DIR")
    if not conf_dir:
        from pyspark.find_spark_home import _find_spark_home

        try:
            conf_dir = os.path.join(_find_spark_home(), "conf")
        except Exception:  # pragma: no cover - pyspark always finds its own home
            conf_dir = ""
    if conf_dir:
        settings.update(_read_defaults_file(os.path.join(conf_dir, "spark-defaults.conf")))
    settings.update(_submit_args_settings(os.environ.get("PYSPARK_SUBMIT_ARGS", "")))
    return settings


def is_local_master(master: str) -> bool:
    """True for ``local``, ``local[N]``, ``local[*]``, ``local[N,F]``: one process does it all."""
    return master == "local" or master.startswith("local[")


def build_conf(
    master: str | None = None,
    conf: Mapping[str, Any] | None = None,
    gpu: str | bool = "off",
    preset: Mapping[str, str] | None = None,
    jars: Iterable[str] = (),
) -> tuple[str, dict[str, str]]:
    """Compute (master, settings) without starting anything; ``preset`` is what is already set.

    Precedence, lowest first: our defaults, then what spark-submit, ``spark-defaults.conf`` or the
    cluster set (``preset``), then ``conf`` and ``master`` given by the caller. Our local defaults
    (driver memory, shuffle partitions, no UI, loopback addresses, the driver's interpreter for the
    Python workers) apply only to a local master. ``jars`` names sets of :data:`JAR_PROVIDERS`
    to add to ``spark.jars``.
    """
    import sys

    preset = dict(preset or {})
    user = {str(k): str(v) for k, v in (conf or {}).items()}
    chosen_master = master or user.get("spark.master") or preset.get("spark.master") or "local[*]"
    settings: dict[str, str] = dict(BASE_CONF)
    if is_local_master(chosen_master):
        settings.update(LOCAL_CONF)
        settings["spark.driver.memory"] = _local_driver_memory()
        # The workers are forked by this process's JVM: without this they run whatever
        # `python3` is first on PATH, which may lack the package (cron, an unactivated venv).
        settings["spark.pyspark.python"] = os.environ.get("PYSPARK_PYTHON") or sys.executable
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
    for name in jars:
        if name not in JAR_PROVIDERS:
            raise ValueError(f"jars={name!r} is not known; accepted: {', '.join(JAR_PROVIDERS)}")
        _merge_jars(settings, JAR_PROVIDERS[name]())
    return chosen_master, settings


def get_spark(
    app_name: str = "spark-clustering",
    master: str | None = None,
    conf: Mapping[str, Any] | None = None,
    gpu: str | bool = "auto",
    jars: Iterable[str] = (),
) -> SparkSession:
    """Return the SparkSession for this process, building it with our defaults if needed.

    The cluster decides: a master, setting or interpreter that ``spark-submit``,
    ``spark-defaults.conf``, EMR's classifications or ``PYSPARK_SUBMIT_ARGS`` set is never
    replaced by one of our defaults; ``local[*]`` is used only when no master is configured at all.

    Parameters
    ----------
    app_name : str
        Application name shown by YARN / the Spark UI (kept when spark-submit named it).
    master : str, optional
        Spark master. Default: what spark-submit or spark-defaults configured, else ``local[*]``.
    conf : mapping, optional
        Extra Spark settings; they win over every default and every preset here.
    gpu : {"auto", "on", "off"} or bool
        Enable the RAPIDS Accelerator for Apache Spark. ``auto`` enables it when the plugin jar
        and an NVIDIA GPU are both present; ``on`` fails clearly when the jar is missing.
    jars : iterable of str
        Named jar sets to add to the classpath (``"sagemaker"``: sagemaker-pyspark's jars and
        protobuf-java). Only the jobs that use them ask for them.

    Examples
    --------
    >>> spark = get_spark("doc", master="local[1]")  # doctest: +SKIP
    >>> spark.conf.get("spark.sql.session.timeZone")  # doctest: +SKIP
    'UTC'
    """
    from pyspark.sql import SparkSession

    jars = tuple(jars)
    active = SparkSession.getActiveSession()
    preset = configured_settings()
    chosen_master, settings = build_conf(master, conf, gpu, preset, jars)
    if active is not None:
        # A notebook (Livy) or spark-submit already started one: only runtime SQL settings apply.
        for key, value in settings.items():
            if key.startswith("spark.sql.") and key not in preset:
                try:
                    active.conf.set(key, value)
                except Exception:  # static settings cannot change on a live session
                    log.debug("could not set %s on the active session", key)
        _warn_missing_jars(active, settings)
        return active
    python = settings.get("spark.pyspark.python")
    if python and not os.environ.get("PYSPARK_PYTHON"):
        # pyspark's driver reads the workers' interpreter from the environment, not the setting.
        os.environ["PYSPARK_PYTHON"] = python
    check_master_reachable(chosen_master)
    builder = SparkSession.builder
    if "spark.app.name" not in preset:
        builder = builder.appName(app_name)
    for key, value in settings.items():
        if preset.get(key) != value:
            builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel(os.environ.get("SPARK_CLUSTERING_SPARK_LOG_LEVEL", "WARN"))
    if not is_local_master(spark.sparkContext.master or "") and os.environ.get(
        "SPARK_CLUSTERING_CHECK_WORKERS", "1"
    ) not in ("0", "false"):
        check_workers(spark)
    log.info("Spark master %s (%s)", spark.sparkContext.master,
             "configured" if chosen_master == preset.get("spark.master") else "ours")  # fmt: skip
    return spark


class SparkSetupError(ValueError):
    """Spark cannot run our jobs as set up: the message names the cause and the setting to fix.

    Raised before any work starts; the jobs print it as one ``error:`` line (exit code 2).
    """


def check_master_reachable(master: str, timeout: float = 5.0) -> None:
    """For a standalone master (``spark://host:port[,host:port]``), fail at once when no master
    answers, instead of Spark's minute of registration retries and a stopped context."""
    import socket

    if not master.startswith("spark://"):
        return
    addresses = master[len("spark://") :].split(",")
    for address in addresses:
        host, _, port = address.rpartition(":")
        try:
            with socket.create_connection((host, int(port)), timeout=timeout):
                return
        except (OSError, ValueError):
            continue
    raise SparkSetupError(
        f"cannot reach the Spark master {master}: nothing answers at {', '.join(addresses)}; "
        "check --master (spark.master) and that the master runs "
        "(scripts/local-cluster.sh status for the local test cluster)"
    )


def check_workers(spark: SparkSession) -> None:
    """Run one tiny task and fail clearly when the executors' Python cannot run our code.

    On a cluster the executors get the package only from ``--py-files`` (or an install on every
    node) and run the interpreter of ``spark.pyspark.python``: a missing zip or a Python without
    numpy/pyarrow would otherwise surface, after the first stage, as a Java stack trace.
    """

    # Defined here so that cloudpickle ships it by value: it must run where spark_clustering
    # itself may not import.
    def probe(_: Any) -> Any:
        import importlib
        import sys as worker_sys

        found = {}
        for name in ("spark_clustering", "numpy", "pandas", "pyarrow"):
            try:
                module = importlib.import_module(name)
                found[name] = str(getattr(module, "__version__", "?"))
            except ImportError as exc:  # the module missing, or one it needs
                found[name] = f"MISSING {getattr(exc, 'name', None) or name}"
        yield worker_sys.executable, found

    python = spark.sparkContext.pythonExec
    try:
        executable, found = spark.sparkContext.parallelize([0], 1).mapPartitions(probe).first()
    except Exception as exc:
        cause = str(exc).strip().splitlines()
        reason = next((ln for ln in cause if "Cannot run program" in ln or "rror" in ln), "")
        raise SparkSetupError(
            f"the executors cannot start their Python {python!r} (spark.pyspark.python / "
            f"PYSPARK_PYTHON): {reason.strip()[:300] or type(exc).__name__}"
        ) from exc
    missing = {why.split()[1] for why in found.values() if why.startswith("MISSING")}
    if "spark_clustering" in missing:
        raise SparkSetupError(
            "the executors cannot import spark_clustering: pass the package zip with --py-files "
            "(scripts/build-dist.sh builds dist/spark_clustering-<version>.zip) or install the "
            f"package in the executors' Python {executable}"
        )
    if missing:
        raise SparkSetupError(
            f"the executors' Python {executable} (spark.pyspark.python / PYSPARK_PYTHON) lacks "
            f"{', '.join(sorted(missing))}: install them there, or point spark.pyspark.python at "
            "an environment that has them"
        )


def _warn_missing_jars(active: SparkSession, settings: Mapping[str, str]) -> None:
    """A live session cannot take jars any more: say which asked-for jars it lacks."""
    wanted = [j for j in settings.get("spark.jars", "").split(",") if j]
    have = active.sparkContext.getConf().get("spark.jars", "") or ""
    missing = [j for j in wanted if os.path.basename(j) not in have]
    if missing:
        log.warning(
            "the active Spark session was started without %s; add them to spark.jars (for "
            "example in %%%%configure or --jars) before the session starts",
            ", ".join(os.path.basename(j) for j in missing),
        )
