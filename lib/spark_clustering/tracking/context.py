"""Run context recorded as tags when a trial opens: version, user and source, git commit, Spark,
EMR.

Nothing here imports pyspark: the Spark application is looked up only when pyspark is already
loaded in this process, so a bare driver (or a notebook without Spark) pays nothing.
"""

from __future__ import annotations

import contextlib
import functools
import getpass
import json
import logging
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

EMR_INFO_PATH = "/mnt/var/lib/info/job-flow.json"
_STEP_DIR_RE = re.compile(r"/steps/(s-[A-Z0-9]+)(/|$)")


def git_commit(start: str | os.PathLike[str] | None = None) -> str | None:
    """The commit of the git checkout holding ``start`` (default: this package), if any.

    ``SPARK_CLUSTERING_GIT_COMMIT`` wins, for installs built from a commit (EMR bootstrap).
    """
    if os.environ.get("SPARK_CLUSTERING_GIT_COMMIT"):
        return os.environ["SPARK_CLUSTERING_GIT_COMMIT"]
    where = Path(start) if start is not None else Path(__file__).resolve().parent
    return _git_head(str(where))


@functools.lru_cache(maxsize=8)
def _git_head(where: str) -> str | None:
    """``git rev-parse HEAD`` once per directory and process (a sweep opens many trials)."""
    try:
        out = subprocess.run(
            ["git", "-C", where, "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    commit = out.stdout.strip()
    return commit if out.returncode == 0 and re.fullmatch(r"[0-9a-f]{40}", commit) else None


def spark_context() -> dict[str, str]:
    """Application id, master and Spark version of the active SparkSession, when pyspark is
    already loaded."""
    if "pyspark.sql" not in sys.modules:
        return {}
    try:
        from pyspark.sql import SparkSession

        session = SparkSession.getActiveSession()
        if session is None:
            return {}
        sc = session.sparkContext
        return {
            "spark.app_id": str(sc.applicationId),
            "spark.master": str(sc.master),
            "spark.version": str(session.version),
        }
    except Exception as exc:  # a stopped or half-built session must not break tracking
        log.debug("no Spark context for tracking tags: %s", exc)
        return {}


def emr_context(
    info_path: str | os.PathLike[str] = EMR_INFO_PATH,
    environ: Any = None,
    cwd: str | None = None,
) -> dict[str, str]:
    """EMR cluster id and step id: from the environment, EMR's job-flow.json and the step dir.

    ``EMR_CLUSTER_ID`` / ``EMR_STEP_ID`` win; otherwise the cluster id comes from
    ``jobFlowId`` in ``/mnt/var/lib/info/job-flow.json`` and the step id from the step's working
    directory (``/mnt/var/lib/hadoop/steps/s-XXXX``), which is where EMR runs a step.
    """
    environ = os.environ if environ is None else environ
    tags: dict[str, str] = {}
    cluster = environ.get("EMR_CLUSTER_ID")
    if not cluster:
        try:
            with open(info_path, encoding="utf-8") as fh:
                cluster = json.load(fh).get("jobFlowId")
        except (OSError, ValueError, AttributeError):
            cluster = None
    if cluster:
        tags["emr.cluster_id"] = str(cluster)
    step = environ.get("EMR_STEP_ID")
    if not step:
        match = _STEP_DIR_RE.search(cwd if cwd is not None else os.getcwd())
        step = match.group(1) if match else None
    if step:
        tags["emr.step_id"] = str(step)
    return tags


def source_context(argv: list[str] | None = None) -> dict[str, str]:
    """Who ran what: ``user`` (the OS user), ``source.name`` (the script or entry point) and
    ``source.type`` (``NOTEBOOK`` in a Jupyter kernel, else ``LOCAL``, as MLflow records them).

    Examples
    --------
    >>> source_context(["/opt/jobs/segment.py", "--config", "s.toml"])["source.name"]
    'segment.py'
    """
    argv = sys.argv if argv is None else argv
    tags: dict[str, str] = {}
    with contextlib.suppress(Exception):  # no name for this uid (a container): no user tag
        tags["user"] = getpass.getuser()
    script = os.path.basename(argv[0]) if argv and argv[0] else ""
    notebook = "ipykernel" in sys.modules
    if script and script not in ("-c", "-m") and not notebook:
        tags["source.name"] = script
    elif notebook:
        tags["source.name"] = "notebook"
    tags["source.type"] = "NOTEBOOK" if notebook else "LOCAL"
    return tags


def run_context() -> dict[str, str]:
    """All context tags available here."""
    from .. import __version__

    tags = {"spark_clustering.version": __version__, **source_context()}
    commit = git_commit()
    if commit:
        tags["git.commit"] = commit
    tags.update(spark_context())
    tags.update(emr_context())
    return tags
