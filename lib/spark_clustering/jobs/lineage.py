"""What the jobs tell the tracking store about their data: inputs as data sets, the preparation
as its own component, and the links between a job's run and its tracking run.

A data set's digest comes from its files' names, sizes and modification times (Hadoop's
listing on S3 or HDFS, ``os.stat`` locally): it changes when the data is rewritten and costs a
listing, not a scan. ``summary.json`` of the ``prepare`` job, next to its ``features/``, names
the prepare run, so a ``segment`` run reading those features refers to it.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .io import _HadoopFS, is_local, local_path

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import DataFrame, SparkSession

    from spark_clustering.tracking import Dataset, Trial

log = logging.getLogger(__name__)

#: files listed for a digest at most (a listing of more is cut, and the profile says so)
MAX_FILES = 100_000
#: the prepare job's record of its run, beside ``features/``
PREPARE_SUMMARY = "summary.json"


def absolute_uri(path: str) -> str:
    """``file:///abs/path`` for a local path (relative ones resolved against the working
    directory), the URI itself otherwise (``s3://...``).

    Examples
    --------
    >>> absolute_uri("/data/features/")
    'file:///data/features'
    >>> absolute_uri("s3://bucket/features")
    's3://bucket/features'
    """
    if is_local(path):
        return Path(os.path.abspath(local_path(path))).as_uri()
    return path.rstrip("/")


def _local_files(path: str) -> Iterator[tuple[str, int, int]]:
    root = local_path(path)
    if os.path.isfile(root):
        st = os.stat(root)
        yield os.path.basename(root), st.st_size, st.st_mtime_ns // 1_000_000
        return
    for folder, dirs, files in os.walk(root):
        dirs.sort()
        for name in sorted(files):
            if name.startswith("."):  # checksums (.crc) follow their files
                continue
            full = os.path.join(folder, name)
            st = os.stat(full)
            yield os.path.relpath(full, root), st.st_size, st.st_mtime_ns // 1_000_000


def _remote_files(spark: SparkSession, path: str) -> Iterator[tuple[str, int, int]]:
    fs = _HadoopFS(spark, path)
    root = path.rstrip("/")
    listing = fs._fs.listFiles(fs._p(root), True)
    while listing.hasNext():
        status = listing.next()
        full = str(status.getPath().toString())
        name = full.rsplit("/", 1)[-1]
        if name.startswith("."):
            continue
        rel = full.split(root.split("://", 1)[-1], 1)[-1].lstrip("/") or name
        yield rel, int(status.getLen()), int(status.getModificationTime())


def describe(
    spark: SparkSession | None,
    path: str,
    df: DataFrame | None = None,
    *,
    rows: int | None = None,
    context: str = "training",
) -> tuple[str, Dataset]:
    """The absolute URI of ``path`` and its :class:`~spark_clustering.tracking.Dataset`: a
    digest of the files' names, sizes and modification times, the schema of ``df`` when given,
    and a profile (files, bytes, rows when known)."""
    from spark_clustering.tracking import Dataset

    if is_local(path):
        files: Iterator[tuple[str, int, int]] = _local_files(path)
    elif spark is not None:
        files = _remote_files(spark, path)
    else:
        raise ValueError(f"describing the non-local path {path!r} needs a SparkSession")
    digest = hashlib.sha256()
    count = size = 0
    for rel, length, mtime in files:
        digest.update(f"{rel}\t{length}\t{mtime}\n".encode())
        count += 1
        size += length
        if count >= MAX_FILES:
            break
    profile: dict[str, Any] = {"files": count, "bytes": size}
    if count >= MAX_FILES:
        profile["files_listed"] = f"first {MAX_FILES}"
    if rows is not None:
        profile["rows"] = int(rows)
    schema = {f.name: f.dataType.simpleString() for f in df.schema.fields} if df else None
    return absolute_uri(path), Dataset(digest.hexdigest()[:16], schema, profile, context)


def log_input(
    trial: Trial,
    spark: SparkSession | None,
    name: str,
    path: str,
    df: DataFrame | None = None,
    **kwargs: Any,
) -> None:
    """Log ``path`` as the input data set ``name`` of the trial (or of its open component); a
    path that cannot be listed is logged as a plain input, with the reason in the log."""
    try:
        uri, dataset = describe(spark, path, df, **kwargs)
    except Exception as exc:  # a listing refused must not stop the job: the URI still counts
        log.warning("tracking: input %s logged without a digest: %s", path, exc)
        trial.log_input(name, absolute_uri(path))
        return
    trial.log_dataset(name, uri, dataset)


def preparation_counts(report: Mapping[str, Any]) -> dict[str, float]:
    """The preparation's figures as metrics (``report`` of ``PreparedFeatures``): rows read,
    kept and dropped, customers and features; per bad-input rule the rows it found (dropped,
    clipped or imputed as the spec's action says: ``found_*``); the features dropped per
    reason (``features_dropped_*``).

    Examples
    --------
    >>> counts = preparation_counts({"input": {"rows_read": 10, "rows_kept": 8,
    ...                                        "non_numeric": {"amount": 2}}})
    >>> counts["prepare.rows_dropped"], counts["prepare.found_non_numeric"]
    (2.0, 2.0)
    """
    inp = report.get("input", {})
    clean = report.get("clean", {})
    read, kept = inp.get("rows_read"), inp.get("rows_kept")
    counts: dict[str, Any] = {
        "rows_read": read,
        "rows_kept": kept,
        "rows_dropped": read - kept if read is not None and kept is not None else None,
        "customers": report.get("customers"),
        "features": len(report["features"]) if "features" in report else None,
        "found_duplicate_rows": inp.get("duplicate_rows_dropped"),
        "found_null_ids": inp.get("null_ids"),
        "found_duplicate_ids": inp.get("duplicate_ids"),
        "found_non_numeric": sum((inp.get("non_numeric") or {}).values()),
        "found_non_finite": sum((inp.get("non_finite") or {}).values()),
        "found_out_of_range": sum(
            int(v.get("below_min", 0)) + int(v.get("above_max", 0))
            for v in (inp.get("range_violations") or {}).values()
        ),
        "found_future_timestamps": (inp.get("future_timestamps") or {}).get("rows"),
        "features_dropped_all_null": len(inp.get("all_null_dropped") or []),
        "features_dropped_constant": len(clean.get("dropped_constant") or []),
        "features_dropped_correlated": len(report.get("dropped_correlated") or []),
    }
    return {
        f"prepare.{k}": float(v)
        for k, v in counts.items()
        if isinstance(v, (int, float)) and not isinstance(v, bool)
    }


def log_preparation(
    trial: Trial,
    spark: SparkSession | None,
    prepared: Any,
    input_path: str,
    output_path: str | None = None,
    component: str | None = "Preparation",
) -> None:
    """The preparation as its own component of ``trial`` (``None``: on the trial itself, the
    prepare job's own trial): the spec (parameters ``spec.*``), the raw input as a data set,
    the counts (metrics ``prepare.*``), the report and ``preparation.json`` (artifacts) and,
    when written, the features as an output."""
    import contextlib
    import json
    import tempfile

    from spark_clustering.redact import redact

    from .segment import _flat

    with trial.component(component) if component else contextlib.nullcontext():
        spec = prepared.preparation.get("spec", {})
        trial.log_parameters({f"spec.{k}": v for k, v in _flat(spec).items()})
        log_input(trial, spark, "raw", input_path, rows=prepared.report.get("input", {})
                  .get("rows_read"))  # fmt: skip
        trial.log_metrics(preparation_counts(prepared.report))
        with tempfile.TemporaryDirectory(prefix="sc-prepare-track-") as local:
            for name, obj in (("report.json", prepared.report),
                              ("preparation.json", prepared.preparation)):  # fmt: skip
                with open(os.path.join(local, name), "w") as fh:
                    json.dump(redact(obj), fh, indent=2, default=str)
                trial.log_artifact(os.path.join(local, name))  # copied when logged
        if output_path is not None:
            trial.log_output("features", absolute_uri(f"{output_path.rstrip('/')}/features"))


def prepare_record(spark: SparkSession | None, features_path: str) -> dict[str, Any] | None:
    """The prepare job's ``summary.json`` beside ``features_path`` (``<output>/features``), or
    None when the features were not written by the prepare job (or it cannot be read)."""
    from .pipeline import read_json

    parent = features_path.rstrip("/").rsplit("/", 1)[0]
    if not parent or parent == features_path.rstrip("/"):
        return None
    try:
        record = read_json(spark, f"{parent}/{PREPARE_SUMMARY}")
    except Exception as exc:  # a reference is a convenience: never fail the job for it
        log.debug("no prepare summary beside %s: %s", features_path, exc)
        return None
    if not isinstance(record, dict) or record.get("job") != "prepare":
        return None
    return record


def prepare_tags(record: Mapping[str, Any] | None) -> dict[str, str]:
    """Tags naming the prepare run that produced a segment run's input.

    Examples
    --------
    >>> prepare_tags({"job": "prepare", "run_id": "ab", "tracking": {"run": {"run_id": "9f"}}})
    {'prepare.run_id': 'ab', 'prepare.tracking_run_id': '9f'}
    """
    if not record:
        return {}
    tags = {"prepare.run_id": str(record.get("run_id", ""))}
    run = (record.get("tracking") or {}).get("run") or {}
    if run.get("run_id"):
        tags["prepare.tracking_run_id"] = str(run["run_id"])
    return {k: v for k, v in tags.items() if v}
