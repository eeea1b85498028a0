"""Running our jobs as users do, through pyspark's own ``spark-submit``, and reading what Spark's
event log says about where their tasks ran."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path


def spark_submit_path() -> Path:
    """pyspark's ``bin/spark-submit``."""
    import pyspark

    path = Path(pyspark.__file__).parent / "bin" / "spark-submit"
    assert path.is_file(), f"pyspark ships no spark-submit at {path}"
    return path


def spark_submit(
    script: Path,
    args: list[str],
    pyfiles: Path | None,
    work: Path,
    *,
    master: str = "local[2]",
    worker_python: str | None = None,
    event_dir: Path | None = None,
    conf: dict[str, str] | None = None,
    timeout: int = 600,
) -> subprocess.CompletedProcess:
    """``spark-submit --master MASTER --py-files ZIP SCRIPT ARGS`` from ``work``.

    The driver runs this interpreter; the Python workers run ``worker_python`` (default: this
    interpreter). ``PYTHONPATH`` and ``SPARK_HOME`` are cleared so nothing but the zip and the
    interpreter decide what imports. ``event_dir`` turns on Spark's event log there.
    """
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "SPARK_HOME")}
    env.update(
        PYSPARK_PYTHON=worker_python or sys.executable,
        PYSPARK_DRIVER_PYTHON=sys.executable,
        SPARK_CLUSTERING_TRACKING=os.environ.get("SPARK_CLUSTERING_TRACKING", "none"),
    )
    settings = {
        "spark.ui.enabled": "false",
        "spark.sql.shuffle.partitions": "4",
        "spark.driver.bindAddress": "127.0.0.1",
        "spark.driver.host": "127.0.0.1",
        "spark.pyspark.python": worker_python or sys.executable,
        "spark.pyspark.driver.python": sys.executable,
        **(conf or {}),
    }
    if event_dir is not None:
        event_dir.mkdir(parents=True, exist_ok=True)
        settings.update({"spark.eventLog.enabled": "true", "spark.eventLog.dir": str(event_dir)})
    cmd = [str(spark_submit_path()), "--master", master, "--driver-memory", "2g"]
    if pyfiles is not None:
        cmd += ["--py-files", str(pyfiles)]
    for key, value in settings.items():
        cmd += ["--conf", f"{key}={value}"]
    cmd += [str(script), *args]
    return subprocess.run(
        cmd, cwd=work, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.splitlines()[-lines:])


def event_logs(event_dir: Path) -> list[Path]:
    return sorted(p for p in event_dir.iterdir() if p.is_file() and not p.name.startswith("."))


def tasks_per_executor(event_log: Path) -> tuple[str, str, Counter]:
    """``(application id, master, tasks per executor id)`` from one Spark event log."""
    app_id, master = "", ""
    tasks: Counter = Counter()
    with open(event_log, encoding="utf-8") as handle:
        for line in handle:
            event = json.loads(line)
            kind = event.get("Event")
            if kind == "SparkListenerApplicationStart":
                app_id = event.get("App ID", "")
            elif kind == "SparkListenerEnvironmentUpdate":
                master = event.get("Spark Properties", {}).get("spark.master", "")
            elif kind == "SparkListenerTaskEnd":
                tasks[event["Task Info"]["Executor ID"]] += 1
    return app_id, master, tasks
