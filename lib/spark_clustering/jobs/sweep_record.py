"""The sweep's own record of its completed trials, kept next to its outputs.

A sweep must resume without its tracking store (an MLflow server that is down, a read-only
store): after each completed trial the record ``<output>/sweep_trials/<experiment>.json`` is
rewritten with that trial's config hash, label, metrics and (redacted) parameters. A rerun skips
every trial listed there or held as completed by the tracking store, and ranks the skipped ones
from whichever source has them.

The file is replaced atomically: written whole to a temporary sibling, then renamed over the
old one (``os.replace`` locally; on a Hadoop file system, where a rename does not overwrite, the
old file is deleted first and a reader that finds no file reads the temporary siblings).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import tempfile
import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from spark_clustering.redact import redact

from .io import _HadoopFS, is_local, list_dir, local_path, path_exists

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import SparkSession

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
FOLDER = "sweep_trials"
_TMP = ".tmp-"


def record_path(output_path: str, experiment: str) -> str:
    """Where a sweep writing to ``output_path`` keeps the record of ``experiment``.

    Examples
    --------
    >>> record_path("s3://b/segments/", "customer segmentation")
    's3://b/segments/sweep_trials/customer_segmentation.json'
    """
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in experiment)
    return f"{output_path.rstrip('/')}/{FOLDER}/{safe}.json"


class SweepRecord:
    """Config hash -> ``{"label", "metrics", "params", "completed_at"}`` of completed trials.

    Parameters
    ----------
    spark : SparkSession or None
        Needed for a non-local output path.
    path : str
        The record file (:func:`record_path`).
    """

    def __init__(self, spark: SparkSession | None, path: str, experiment: str) -> None:
        self.spark, self.path, self.experiment = spark, path, experiment
        self.trials: dict[str, dict[str, Any]] = {}

    @classmethod
    def load(cls, spark: SparkSession | None, output_path: str, experiment: str) -> SweepRecord:
        """The record of an earlier run (empty when there is none)."""
        record = cls(spark, record_path(output_path, experiment), experiment)
        for text in record._texts():
            try:
                data = json.loads(text)
            except ValueError:
                log.warning("sweep: ignoring an unreadable trial record near %s", record.path)
                continue
            if isinstance(data, dict) and data.get("format_version") == FORMAT_VERSION:
                for key, entry in (data.get("trials") or {}).items():
                    record.trials.setdefault(key, entry)
        return record

    def _texts(self) -> list[str]:
        """The record's text, else those of the temporary files an interrupted replace left."""
        folder, _, name = self.path.rpartition("/")
        if path_exists(self.spark, self.path):
            return [self._read(self.path)]
        leftovers = sorted(
            n for n in list_dir(self.spark, folder) if n.startswith(f".{name}{_TMP}")
        )
        return [self._read(f"{folder}/{n}") for n in reversed(leftovers)]

    def _read(self, path: str) -> str:
        if is_local(path):
            with open(local_path(path)) as fh:
                return fh.read()
        from .pipeline import read_text

        assert self.spark is not None
        return read_text(self.spark, path)

    def metrics(self) -> dict[str, dict[str, float]]:
        """Config hash -> final metrics of every recorded trial."""
        return {key: dict(entry.get("metrics") or {}) for key, entry in self.trials.items()}

    def add(
        self, config_hash: str, label: str, metrics: Mapping[str, float], params: Mapping[str, Any]
    ) -> None:
        """Record a completed trial and rewrite the file."""
        self.trials[config_hash] = {
            "label": label,
            "metrics": dict(metrics),
            "params": redact(dict(params)),
            "completed_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        }
        self.write()

    def write(self) -> None:
        """Replace the file with the current record, atomically."""
        doc = {"format_version": FORMAT_VERSION, "experiment": self.experiment,
               "trials": self.trials}  # fmt: skip
        text = json.dumps(doc, indent=1, sort_keys=True, default=str)
        folder, _, name = self.path.rpartition("/")
        tmp = f"{folder}/.{name}{_TMP}{uuid.uuid4().hex[:12]}"
        if is_local(self.path):
            os.makedirs(local_path(folder), exist_ok=True)
            with open(local_path(tmp), "w") as fh:
                fh.write(text)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(local_path(tmp), local_path(self.path))
            for leftover in list_dir(None, folder):  # of a run killed while writing
                if leftover.startswith(f".{name}{_TMP}"):
                    os.remove(os.path.join(local_path(folder), leftover))
            return
        if self.spark is None:
            raise ValueError(f"writing the non-local path {self.path!r} needs a SparkSession")
        fs = _HadoopFS(self.spark, self.path)
        fs.mkdirs(folder)
        with tempfile.TemporaryDirectory(prefix="sc-record-") as local:
            source = os.path.join(local, name)
            with open(source, "w") as fh:
                fh.write(text)
            fs.put(source, tmp)
        fs.delete(self.path)
        fs.rename(tmp, self.path)
        for leftover in list_dir(self.spark, folder):
            if leftover.startswith(f".{name}{_TMP}"):
                fs.delete(f"{folder}/{leftover}")
