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
import time
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

    def create_new(self, path: str, data: bytes) -> bool:
        """Create ``path`` holding ``data`` unless it exists; False when it does. On HDFS the
        create with ``overwrite=false`` is atomic (one NameNode operation); on S3A it is a check
        then a PUT unless the store makes the PUT conditional (see docs/segment.md)."""
        try:
            stream = self._fs.create(self._p(path), False)
        except Exception as exc:  # FileAlreadyExistsException, through py4j
            # The holder may release between the failed create and any check made after it, so
            # the exception itself says whether the file was there.
            if "FileAlreadyExistsException" in str(exc) or self.exists(path):
                return False
            raise OSError(f"could not create {path}: {exc}") from exc
        try:
            stream.write(bytearray(data))
        finally:
            stream.close()
        return True

    def read(self, path: str) -> bytes | None:
        if not self.exists(path):
            return None
        stream = self._fs.open(self._p(path))
        try:
            return bytes(self._jvm.org.apache.commons.io.IOUtils.toByteArray(stream))
        finally:
            stream.close()

    def age_seconds(self, path: str) -> float:
        modified = self._fs.getFileStatus(self._p(path)).getModificationTime() / 1000.0
        return time.time() - modified


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
    """Copy the files of a local directory into ``dest`` (local or Hadoop), creating it.

    Locally, folders and files are created afresh, so their modes follow the process umask:
    ``local_dir`` is usually a ``TemporaryDirectory`` (mode 0700, files 0600), and copying its
    modes would hide the outputs from every other user (a scoring service, a report reader).
    """
    if is_local(dest):
        shutil.copytree(
            local_dir,
            local_path(dest),
            dirs_exist_ok=True,
            copy_function=shutil.copyfile,  # the content only, not the mode
        )
        _umask_modes(local_dir, local_path(dest))
        return
    if spark is None:
        raise ValueError(f"writing to the non-local path {dest!r} needs a SparkSession")
    fs = _HadoopFS(spark, dest)
    fs.mkdirs(dest)
    for name in sorted(os.listdir(local_dir)):
        fs.put(os.path.join(local_dir, name), f"{dest.rstrip('/')}/{name}")


def _umask_modes(source: str, dest: str) -> None:
    """Give the folders copytree made under ``dest`` (from ``source``'s tree) the umask's mode:
    copytree copies each folder's mode (``copystat``) whatever the copy function."""
    mask = os.umask(0)
    os.umask(mask)
    for folder, subdirs, _ in os.walk(source):
        for name in ["", *subdirs]:
            rel = os.path.relpath(os.path.join(folder, name), source)
            os.chmod(os.path.normpath(os.path.join(dest, rel)), 0o777 & ~mask)


def read_bytes(spark: SparkSession | None, path: str) -> bytes | None:
    """The content of the small file ``path`` (local or Hadoop); None when it does not exist."""
    if is_local(path):
        try:
            with open(local_path(path), "rb") as fh:
                return fh.read()
        except FileNotFoundError:
            return None
    if spark is None:
        raise ValueError(f"reading the non-local path {path!r} needs a SparkSession")
    return _HadoopFS(spark, path).read(path)


def create_new_file(spark: SparkSession | None, path: str, data: bytes) -> bool:
    """Create the file ``path`` holding ``data`` in one step, unless it exists (then False).

    Locally the content is written to a hidden sibling first and hard-linked to ``path``
    (``link`` fails when ``path`` exists), so no reader ever sees the file partly written and
    of two writers exactly one wins. The mode follows the umask. On a Hadoop file system it is
    ``create(path, overwrite=false)``; see :meth:`_HadoopFS.create_new` for what that means on
    HDFS and S3.
    """
    if not is_local(path):
        if spark is None:
            raise ValueError(f"writing the non-local path {path!r} needs a SparkSession")
        return _HadoopFS(spark, path).create_new(path, data)
    target = local_path(path)
    os.makedirs(os.path.dirname(os.path.abspath(target)), exist_ok=True)
    tmp = _sibling(target, "tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(tmp, target)
        except FileExistsError:
            return False
        except OSError:  # a file system without hard links: an exclusive create, then write
            try:
                fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            except FileExistsError:
                return False
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
        return True
    finally:
        os.unlink(tmp)


def rename_path(spark: SparkSession | None, src: str, dst: str) -> None:
    """Rename ``src`` to ``dst`` (local or Hadoop); ``OSError`` when ``dst`` exists."""
    if is_local(src):
        if os.path.lexists(local_path(dst)):
            raise FileExistsError(f"{dst} exists")
        os.rename(local_path(src), local_path(dst))
        return
    if spark is None:
        raise ValueError(f"renaming the non-local path {src!r} needs a SparkSession")
    _HadoopFS(spark, src).rename(src, dst)


def delete_path(spark: SparkSession | None, path: str) -> None:
    """Delete the file or folder ``path`` (local or Hadoop); nothing when it does not exist."""
    if is_local(path):
        target = local_path(path)
        if os.path.isdir(target) and not os.path.islink(target):
            shutil.rmtree(target, ignore_errors=True)
        elif os.path.lexists(target):
            os.unlink(target)
        return
    if spark is None:
        raise ValueError(f"deleting the non-local path {path!r} needs a SparkSession")
    _HadoopFS(spark, path).delete(path)


def age_seconds(spark: SparkSession | None, path: str) -> float:
    """Seconds since ``path`` was last modified (local or Hadoop)."""
    if is_local(path):
        return time.time() - os.stat(local_path(path)).st_mtime
    if spark is None:
        raise ValueError(f"checking the non-local path {path!r} needs a SparkSession")
    return _HadoopFS(spark, path).age_seconds(path)


def _recover(spark: SparkSession | None, path: str) -> list[str]:
    """Repair what a writer of ``path`` killed mid-way left, under ``path``'s lock: a kill
    between moving the previous output aside and renaming the new one in leaves no ``path``
    but a complete ``.<name>.old-*``, which is renamed back; every other temporary sibling of
    ``path`` (``.<name>.tmp-*``, ``.<name>.old-*``) is deleted. Returns what was removed."""
    stripped = path.rstrip("/")
    parent, _, name = stripped.rpartition("/")
    siblings = [n for n in list_dir(spark, parent or ".")
                if n.startswith((f".{name}.tmp-", f".{name}.old-"))]  # fmt: skip
    olds = [n for n in siblings if n.startswith(f".{name}.old-")]
    if olds and not path_exists(spark, stripped):
        restored = f"{parent}/{olds[0]}" if parent or stripped.startswith("/") else olds[0]
        rename_path(spark, restored, stripped)
        siblings.remove(olds[0])
        log.warning("restored %s from %s, left by a writer killed mid-commit", path, restored)
    removed = []
    for sibling in siblings:
        removed.append(f"{parent}/{sibling}" if parent or stripped.startswith("/") else sibling)
        delete_path(spark, removed[-1])
    if removed:
        log.info("removed leftovers of killed writers of %s: %s", path, ", ".join(removed))
    return removed


def lock_sibling(path: str) -> str:
    """The hidden lock file beside ``path`` that :func:`atomic_output` holds while it writes."""
    stripped = path.rstrip("/")
    parent, _, name = stripped.rpartition("/")
    return f"{parent}/.{name}.lock" if parent or stripped.startswith("/") else f".{name}.lock"


@contextmanager
def atomic_output(spark: SparkSession | None, path: str, job: str = "write") -> Iterator[str]:
    """Yield a temporary sibling of ``path`` to write into; rename it to ``path`` on success.

    On an exception the temporary directory is deleted and the previous content of ``path``
    (if any) is left exactly as it was; the exception propagates. On success a previous
    ``path`` is first moved aside, the new one renamed into place, then the old one deleted.
    Readers of ``path`` find nothing between the two renames (an instant locally; on S3, where
    a rename is a copy, longer): jobs whose outputs must never be missing publish run folders
    instead (:mod:`spark_clustering.jobs.publish`).

    One writer at a time: the hidden lock file :func:`lock_sibling` is taken first
    (:class:`spark_clustering.jobs.lock.WriterLock`; a second writer fails at once naming the
    first, a dead writer's lock on this host is broken). Under it the leftovers of writers
    killed mid-way are repaired: a ``path`` lost between the two renames is restored from its
    moved-aside copy, and temporary siblings are deleted. Fault-injection points
    (:mod:`spark_clustering.jobs.faults`): ``output:written`` (before the first rename) and
    ``output:moved-aside`` (between the two).

    Parameters
    ----------
    spark : SparkSession or None
        Needed for non-local paths (Hadoop ``FileSystem`` through the JVM gateway).
    path : str
        The output directory: a local path, ``file:``, ``s3://``, ``s3a://`` or ``hdfs://`` URI.
    job : str
        The job's name, written into the lock.

    Examples
    --------
    >>> with atomic_output(None, "/tmp/out") as tmp:  # doctest: +SKIP
    ...     df.write.parquet(tmp + "/features")
    """
    import uuid as _uuid

    from .faults import fault_point
    from .lock import WriterLock

    if not is_local(path) and spark is None:
        raise ValueError(f"writing to the non-local path {path!r} needs a SparkSession")
    if is_local(path):
        os.makedirs(os.path.dirname(os.path.abspath(local_path(path))), exist_ok=True)
    tmp = _sibling(path, "tmp")
    old = _sibling(path, "old")
    with WriterLock(spark, lock_sibling(path), _uuid.uuid4().hex, job=job).acquire():
        _recover(spark, path)
        try:
            yield tmp
        except BaseException:
            delete_path(spark, tmp)
            raise
        if not path_exists(spark, tmp):  # the body wrote nothing: commit an empty directory
            if is_local(tmp):
                os.makedirs(local_path(tmp))
            else:
                _HadoopFS(spark, tmp).mkdirs(tmp)  # type: ignore[arg-type]
        fault_point("output:written")
        had_old = path_exists(spark, path)
        if had_old:
            rename_path(spark, path, old)
        fault_point("output:moved-aside")
        try:
            rename_path(spark, tmp, path)
        except BaseException:
            if had_old:
                rename_path(spark, old, path)
            delete_path(spark, tmp)
            raise
        if had_old:
            delete_path(spark, old)
        log.info("committed %s", path)
