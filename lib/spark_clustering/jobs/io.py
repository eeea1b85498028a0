"""Job outputs written atomically, on local disks and on any Hadoop file system.

A job writes everything into a temporary sibling of its output directory and, only when all of
it is written, renames it into place. A run that fails leaves the previous output untouched and
removes its temporary directory. Local paths use ``os.replace``; other paths (``s3://``,
``s3a://``, ``hdfs://``) go through Hadoop's ``FileSystem`` on the JVM gateway, so the same code
runs on EMR. On S3 a "rename" is a copy then a delete, so the commit is not instantaneous there,
but a failed run still never leaves a half-written directory at the output path.
"""

from __future__ import annotations

import logging
import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import SparkSession

log = logging.getLogger(__name__)


def is_local(path: str) -> bool:
    """True for a plain file system path or a ``file:`` URI."""
    scheme = urlparse(path).scheme
    return scheme in ("", "file") or (len(scheme) == 1 and os.name == "nt")


def local_path(path: str) -> str:
    """The OS path of a local path or ``file:`` URI."""
    return urlparse(path).path if path.startswith("file:") else path


def _sibling(path: str, tag: str) -> str:
    stripped = path.rstrip("/")
    parent, _, name = stripped.rpartition("/")
    name = f".{name}.{tag}-{uuid.uuid4().hex[:12]}"
    return f"{parent}/{name}" if parent or stripped.startswith("/") else name


class _HadoopFS:
    """The few Hadoop ``FileSystem`` calls the jobs need, through the JVM gateway."""

    def __init__(self, spark: SparkSession, path: str) -> None:
        jvm: Any = spark.sparkContext._jvm
        self._jvm = jvm
        conf = spark.sparkContext._jsc.hadoopConfiguration()
        self._fs = jvm.org.apache.hadoop.fs.Path(path).getFileSystem(conf)

    def _p(self, path: str) -> Any:
        return self._jvm.org.apache.hadoop.fs.Path(path)

    def exists(self, path: str) -> bool:
        return bool(self._fs.exists(self._p(path)))

    def delete(self, path: str) -> None:
        if self.exists(path):
            self._fs.delete(self._p(path), True)

    def rename(self, src: str, dst: str) -> None:
        if not self._fs.rename(self._p(src), self._p(dst)):
            raise OSError(f"could not rename {src} to {dst}")

    def mkdirs(self, path: str) -> None:
        self._fs.mkdirs(self._p(path))

    def put(self, local: str, dst: str) -> None:
        self._fs.copyFromLocalFile(False, True, self._p(local), self._p(dst))

    def list(self, path: str) -> list[str]:
        if not self.exists(path):
            return []
        return [str(status.getPath().getName()) for status in self._fs.listStatus(self._p(path))]


def path_exists(spark: SparkSession | None, path: str) -> bool:
    """Whether ``path`` exists, locally or on its Hadoop file system."""
    if is_local(path):
        return os.path.exists(local_path(path))
    if spark is None:
        raise ValueError(f"checking the non-local path {path!r} needs a SparkSession")
    return _HadoopFS(spark, path).exists(path)


def list_dir(spark: SparkSession | None, path: str) -> list[str]:
    """Names of the entries of directory ``path`` (local, or on its Hadoop file system: S3,
    HDFS), sorted; empty when it does not exist."""
    if is_local(path):
        folder = local_path(path)
        return sorted(os.listdir(folder)) if os.path.isdir(folder) else []
    if spark is None:
        raise ValueError(f"listing the non-local path {path!r} needs a SparkSession")
    return sorted(_HadoopFS(spark, path).list(path))


def put_local_dir(spark: SparkSession | None, local_dir: str, dest: str) -> None:
    """Copy the files of a local directory into ``dest`` (local or Hadoop), creating it."""
    if is_local(dest):
        shutil.copytree(local_dir, local_path(dest), dirs_exist_ok=True)
        return
    if spark is None:
        raise ValueError(f"writing to the non-local path {dest!r} needs a SparkSession")
    fs = _HadoopFS(spark, dest)
    fs.mkdirs(dest)
    for name in sorted(os.listdir(local_dir)):
        fs.put(os.path.join(local_dir, name), f"{dest.rstrip('/')}/{name}")


@contextmanager
def atomic_output(spark: SparkSession | None, path: str) -> Iterator[str]:
    """Yield a temporary sibling of ``path`` to write into; rename it to ``path`` on success.

    On an exception the temporary directory is deleted and the previous content of ``path``
    (if any) is left exactly as it was; the exception propagates. On success a previous
    ``path`` is first moved aside, the new one renamed into place, then the old one deleted.

    Parameters
    ----------
    spark : SparkSession or None
        Needed for non-local paths (Hadoop ``FileSystem`` through the JVM gateway).
    path : str
        The output directory: a local path, ``file:``, ``s3://``, ``s3a://`` or ``hdfs://`` URI.

    Examples
    --------
    >>> with atomic_output(None, "/tmp/out") as tmp:  # doctest: +SKIP
    ...     df.write.parquet(tmp + "/features")
    """
    tmp = _sibling(path, "tmp")
    old = _sibling(path, "old")
    if is_local(path):
        target, tmp_os, old_os = local_path(path), local_path(tmp), local_path(old)
        os.makedirs(os.path.dirname(os.path.abspath(target)), exist_ok=True)
        try:
            yield tmp
        except BaseException:
            shutil.rmtree(tmp_os, ignore_errors=True)
            raise
        if not os.path.exists(tmp_os):  # the body wrote nothing: commit an empty directory
            os.makedirs(tmp_os)
        had_old = os.path.exists(target)
        if had_old:
            os.replace(target, old_os)
        try:
            os.replace(tmp_os, target)
        except BaseException:
            if had_old:
                os.replace(old_os, target)
            shutil.rmtree(tmp_os, ignore_errors=True)
            raise
        if had_old:
            shutil.rmtree(old_os, ignore_errors=True)
        log.info("committed %s", path)
        return
    if spark is None:
        raise ValueError(f"writing to the non-local path {path!r} needs a SparkSession")
    fs = _HadoopFS(spark, path)
    try:
        yield tmp
    except BaseException:
        fs.delete(tmp)
        raise
    if not fs.exists(tmp):
        fs.mkdirs(tmp)
    had_old = fs.exists(path)
    if had_old:
        fs.rename(path, old)
    try:
        fs.rename(tmp, path)
    except BaseException:
        if had_old:
            fs.rename(old, path)
        fs.delete(tmp)
        raise
    if had_old:
        fs.delete(old)
    log.info("committed %s", path)
