"""Set-up shared by every function this package runs inside a PySpark Python worker.

Only the standard library is imported here: the module is loaded on executors, once per
Python worker process, before any task's real work.

Why it exists: at the start of every task a PySpark 3.5 worker calls
``importlib.invalidate_caches()``. On Python 3.10 and 3.11 that makes every ``zipimporter``
re-read its archive's whole directory at once (CPython gh-103200, fixed lazily in 3.12; Spark
itself stopped calling it needlessly only in SPARK-54744). A pip-installed PySpark worker has
``pyspark.zip``, the py4j zip and the ``spark-core`` jar (5,000 entries) on its path, and one
importer per imported ``pyspark`` sub-package, each re-reading ``pyspark.zip``: about 80 ms of
every task on a 2-core machine, before a row is read. :func:`prepare_worker` makes a
zipimporter re-read its archive only when the archive file changed (size or modification
time), which is what invalidation is for; a changed or new archive is still picked up.
"""

from __future__ import annotations

import os
import sys
from typing import Any

_PATCH_FLAG = "_spark_clustering_stat_invalidation"


def _needs_patch() -> bool:
    # 3.9 has no zipimporter.invalidate_caches; 3.12+ invalidates lazily (gh-103200)
    return (3, 10) <= sys.version_info[:2] < (3, 12)


def _archive_stamp(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size


def install_stat_invalidation() -> bool:
    """Make ``zipimporter.invalidate_caches`` skip archives that have not changed.

    Idempotent, process-wide. Returns whether the patch is in place (False on Pythons that do
    not need it).
    """
    if not _needs_patch():
        return False
    import zipimport

    cls: Any = zipimport.zipimporter
    if getattr(cls, _PATCH_FLAG, False):
        return True
    reread = cls.invalidate_caches

    def invalidate_caches(self: Any) -> None:
        stamp = _archive_stamp(self.archive)
        if stamp is not None and self.__dict__.get(_PATCH_FLAG) == stamp:
            return  # the archive is the file this importer already read
        reread(self)
        self.__dict__[_PATCH_FLAG] = stamp

    invalidate_caches.__doc__ = reread.__doc__
    cls.invalidate_caches = invalidate_caches
    setattr(cls, _PATCH_FLAG, True)
    return True


def prepare_worker() -> None:
    """Call first in every function shipped to executors (cheap after the first call)."""
    install_stat_invalidation()
