"""Where a ``segment`` run writes, how it is published in one atomic step, and how to read it.

Layout under the output root, per run date::

    runs/run_date=YYYY-MM-DD/
        _lock                     the writer lock while a run of that date works (jobs.lock)
        _commits/0000000003.json  the publication records, one per published run, never
                                  rewritten; the highest number names the current run
        run-<run_id>/             everything one run wrote:
            assignments/          Parquet: <id>, cluster, is_noise, ..., run_id, model_version
            model/                pipeline.json, preparation/, reducer/, clusterer/
            summary.json  report.html  k_distance.png  scatter.png

A run writes its whole ``run-<run_id>/`` folder, then publishes it by creating the next
numbered record: written to a hidden temporary name in ``_commits/`` and renamed to its final
name (a rename that fails if the name exists; on S3 a one-object copy). Until that rename the
previous record is the highest, so a reader that resolves the current run through
:func:`current_run` (as ``score`` does) sees the previous complete run or the new complete run,
never a mixture. Spark's readers skip ``_``-prefixed paths, so the records and the lock stay out
of any table read.

Cleaning (:func:`clean`, run by the next writer of the date under its lock): unpublished
``run-*`` folders (killed or failed runs), temporary records, and runs superseded more than once
are deleted; the current run and the one it replaced are kept (a reader that resolved the
previous run moments ago can finish), with their two records. Dates written by the layout
before this one (``assignments/``, ``models/``, ``runs/`` each with ``run_date=...``) are still
read; a date republished in this layout has its old directories removed.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import re
import socket
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from . import io
from .faults import fault_point

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import DataFrame, SparkSession

log = logging.getLogger(__name__)

RECORD_FORMAT = 1
COMMITS = "_commits"
LOCK = "_lock"
_RECORD = re.compile(r"^(\d{10})\.json$")
_RUN = "run-"
#: files of the previous layout's runs/run_date=D/, removed when D is republished
_LEGACY_REPORT = ("summary.json", "report.html", "k_distance.png", "scatter.png")


@dataclass(frozen=True)
class RunOutputs:
    """Where the outputs of one run are.

    ``layout`` is ``"run"`` for a ``runs/run_date=D/run-<id>/`` folder and ``"legacy"`` for a
    date written before it (``assignments/run_date=D`` and so on).
    """

    root: str
    run_date: str
    run_id: str
    path: str
    layout: str = "run"

    @property
    def assignments(self) -> str:
        if self.layout == "legacy":
            return f"{self.root}/assignments/run_date={self.run_date}"
        return f"{self.path}/assignments"

    @property
    def model(self) -> str:
        if self.layout == "legacy":
            return f"{self.root}/models/run_date={self.run_date}"
        return f"{self.path}/model"

    @property
    def report(self) -> str:
        return f"{self.path}/report.html"

    @property
    def summary(self) -> str:
        return f"{self.path}/summary.json"


def date_dir(root: str, run_date: str) -> str:
    """``<root>/runs/run_date=<run_date>``: the folder of a run date's runs, records and lock."""
    return f"{root.rstrip('/')}/runs/run_date={run_date}"


def lock_path(root: str, run_date: str) -> str:
    """The writer lock of a run date."""
    return f"{date_dir(root, run_date)}/{LOCK}"


def run_outputs(root: str, run_date: str, run_id: str) -> RunOutputs:
    """Where run ``run_id`` of ``run_date`` writes (published or not)."""
    root = root.rstrip("/")
    return RunOutputs(root, run_date, run_id, f"{date_dir(root, run_date)}/{_RUN}{run_id}")


def _records(spark: SparkSession | None, root: str, run_date: str) -> list[str]:
    """Names of the publication records of ``run_date``, oldest first."""
    names = io.list_dir(spark, f"{date_dir(root, run_date)}/{COMMITS}")
    return sorted(n for n in names if _RECORD.match(n))


def _read_record(spark: SparkSession | None, root: str, run_date: str, name: str) -> dict:
    data = io.read_bytes(spark, f"{date_dir(root, run_date)}/{COMMITS}/{name}")
    if data is None:
        raise FileNotFoundError(f"{date_dir(root, run_date)}/{COMMITS}/{name}")
    record: dict[str, Any] = json.loads(data.decode())
    return record


def _published(spark: SparkSession | None, root: str, run_date: str) -> list[dict]:
    """The records of ``run_date`` still present, newest first (at most the two kept)."""
    out = []
    for name in reversed(_records(spark, root, run_date)):
        try:
            out.append(_read_record(spark, root, run_date, name))
        except FileNotFoundError:
            continue  # pruned by a writer while we listed
        if len(out) == 2:
            break
    return out


def current_run(spark: SparkSession | None, root: str, run_date: str) -> RunOutputs | None:
    """The published run of ``run_date`` under the segment output ``root``, or None.

    Read a date's assignments through it, never by listing folders: the folder it names is
    complete and stays in place until that date is published twice more.

    Parameters
    ----------
    spark : SparkSession or None
        Needed for a non-local ``root`` (S3, HDFS).
    root : str
        The segment job's ``[output] path``.
    run_date : str
        ``YYYY-MM-DD``.

    Examples
    --------
    >>> run = current_run(spark, "s3://bucket/segments", "2026-12-01")  # doctest: +SKIP
    >>> spark.read.parquet(run.assignments)  # doctest: +SKIP
    """
    root = root.rstrip("/")
    records = _published(spark, root, run_date)
    if records:
        record = records[0]
        return RunOutputs(root, run_date, record["run_id"],
                          f"{date_dir(root, run_date)}/{record['path']}")  # fmt: skip
    # a date written by the layout before run folders: complete once its model was renamed in
    legacy_model = f"{root}/models/run_date={run_date}/pipeline.json"
    if io.path_exists(spark, legacy_model):
        meta = json.loads((io.read_bytes(spark, legacy_model) or b"{}").decode())
        return RunOutputs(root, run_date, str(meta.get("run_id", "")), date_dir(root, run_date),
                          layout="legacy")  # fmt: skip
    return None


def listed_dates(spark: SparkSession | None, root: str) -> list[str]:
    """Run dates with a folder under ``root`` (either layout, published or not), oldest first."""
    root = root.rstrip("/")
    dates = set()
    for parent in ("runs", "models"):
        for name in io.list_dir(spark, f"{root}/{parent}"):
            if name.startswith("run_date="):
                dates.add(name.split("=", 1)[1])
    return sorted(dates)


def run_dates(spark: SparkSession | None, root: str) -> list[str]:
    """Run dates under ``root`` with a published run (either layout), oldest first."""
    return [d for d in listed_dates(spark, root) if current_run(spark, root, d) is not None]


def read_assignments(
    spark: SparkSession, root: str, run_dates_: list[str] | None = None
) -> DataFrame:
    """The current assignments of every run date under ``root`` (or of ``run_dates_``), with a
    ``run_date`` date column, as ``spark.read.parquet`` of a ``run_date``-partitioned table
    would give them. Each date is read through :func:`current_run`.

    Examples
    --------
    >>> read_assignments(spark, "s3://bucket/segments").groupBy("run_date").count()
    ... # doctest: +SKIP
    """
    from pyspark.sql import functions as F

    dates = run_dates_ if run_dates_ is not None else run_dates(spark, root)
    frames = []
    for date in dates:
        run = current_run(spark, root, date)
        if run is None:
            raise ValueError(f"no published run of {date} under {root}")
        df = spark.read.parquet(run.assignments)
        frames.append(df.withColumn("run_date", F.lit(date).cast("date")))
    if not frames:
        raise ValueError(f"no published run under {root}")
    out = frames[0]
    for df in frames[1:]:
        out = out.unionByName(df, allowMissingColumns=True)
    return out


def publish(spark: SparkSession | None, run: RunOutputs, model_version: str) -> str:
    """Make the complete folder of ``run`` its date's current run, in one atomic step.

    The caller holds the date's lock. Returns the path of the record created. Raises
    ``OSError`` when the record's name was taken (another writer without the lock).
    """
    commits = f"{date_dir(run.root, run.run_date)}/{COMMITS}"
    names = _records(spark, run.root, run.run_date)
    number = int(names[-1][:10]) + 1 if names else 1
    record = {
        "format_version": RECORD_FORMAT,
        "run_id": run.run_id,
        "run_date": run.run_date,
        "model_version": model_version,
        "path": run.path.rsplit("/", 1)[1],
        "published": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "host": socket.gethostname(),
        "pid": os.getpid(),
    }
    final = f"{commits}/{number:010d}.json"
    tmp = f"{commits}/.tmp-{uuid.uuid4().hex[:12]}.json"
    if not io.create_new_file(spark, tmp, json.dumps(record, indent=2).encode()):
        raise OSError(f"could not create {tmp}")
    fault_point("commit:record-written")
    io.rename_path(spark, tmp, final)  # the commit: from here on readers see this run
    fault_point("commit:published")
    log.info("published %s as %s (%s)", run.path, final, model_version)
    return final


def clean(
    spark: SparkSession | None, root: str, run_date: str, *, writing: str | None = None
) -> list[str]:
    """Delete what no reader of ``run_date`` can reach; returns the paths deleted.

    Kept: the current run and the one it replaced (and their records), and the run
    ``writing`` (the caller's own, not yet published). Deleted: every other ``run-*`` folder
    (unpublished remains of killed or failed runs, runs superseded twice), older records,
    temporary records, moved-aside locks, and, once the date is published in this layout, its
    directories of the previous layout. The caller holds the date's lock, so nothing deleted
    can belong to a live run.
    """
    root = root.rstrip("/")
    folder = date_dir(root, run_date)
    commits = f"{folder}/{COMMITS}"
    kept_names = _records(spark, root, run_date)[-2:]
    kept_records = [_read_record(spark, root, run_date, name) for name in kept_names]
    keep = {r["path"] for r in kept_records}
    if writing is not None:
        keep.add(f"{_RUN}{writing}")
    doomed = []
    leftover_locks = (f"{LOCK}.broken-", f".{LOCK}.tmp-")  # a broken lock, a lock's temporary
    for name in io.list_dir(spark, folder):
        if (name.startswith(_RUN) and name not in keep) or name.startswith(leftover_locks):
            doomed.append(f"{folder}/{name}")
    for name in io.list_dir(spark, commits):
        # a record's temporary, or the temporary of its exclusive create (".<name>.tmp-...")
        if (name.startswith(".") and ".tmp-" in name) or (
            _RECORD.match(name) and name not in kept_names
        ):
            doomed.append(f"{commits}/{name}")
    if kept_records:  # the date is published in this layout: the previous layout's copy goes
        legacy = f"{root}/assignments/run_date={run_date}"
        # score may write its own partitions (and their temporaries) into <output>/assignments:
        # only a partition without score's summary is segment's
        if io.path_exists(spark, legacy) and not io.path_exists(
            spark, f"{legacy}/_score_summary.json"
        ):
            doomed.append(legacy)
        if io.path_exists(spark, f"{root}/models/run_date={run_date}"):
            doomed.append(f"{root}/models/run_date={run_date}")
        for parent in ("models", "runs"):  # the old code's temporaries of the date
            for name in io.list_dir(spark, f"{root}/{parent}"):
                if name.startswith(f".run_date={run_date}."):
                    doomed.append(f"{root}/{parent}/{name}")
        for name in _LEGACY_REPORT:
            if io.path_exists(spark, f"{folder}/{name}"):
                doomed.append(f"{folder}/{name}")
    for path in doomed:
        io.delete_path(spark, path)
    if doomed:
        log.info("cleaned %d leftover(s) of %s: %s", len(doomed), folder, ", ".join(doomed))
    return doomed
