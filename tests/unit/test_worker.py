"""The worker set-up: zip importers re-read an archive only when it changed."""

from __future__ import annotations

import importlib
import os
import sys
import zipfile
import zipimport

import pytest

from spark_clustering import _worker

pytestmark = pytest.mark.skipif(
    not _worker._needs_patch(), reason="only Python 3.10 and 3.11 re-read archives eagerly"
)


def _write_zip(path, modules: dict[str, str]) -> None:
    with zipfile.ZipFile(path, "w") as z:
        for name, source in modules.items():
            z.writestr(f"{name}.py", source)


@pytest.fixture
def archive(tmp_path, monkeypatch):
    path = tmp_path / "pkgs.zip"
    _write_zip(path, {"sc_zip_one": "VALUE = 1\n"})
    monkeypatch.syspath_prepend(str(path))
    yield str(path)
    for name in ("sc_zip_one", "sc_zip_two"):
        sys.modules.pop(name, None)
    sys.path_importer_cache.pop(str(path), None)


@pytest.fixture
def reads(monkeypatch):
    """Archive paths whose directory zipimport read, in order."""
    seen: list[str] = []
    original = zipimport._read_directory

    def counting(archive):
        seen.append(archive)
        return original(archive)

    monkeypatch.setattr(zipimport, "_read_directory", counting)
    return seen


def test_unchanged_archive_is_not_read_again(archive, reads):
    assert importlib.import_module("sc_zip_one").VALUE == 1
    assert _worker.install_stat_invalidation() is True
    assert _worker.install_stat_invalidation() is True  # idempotent
    importlib.invalidate_caches()  # what every PySpark task does first
    reads.clear()
    for _ in range(3):
        importlib.invalidate_caches()
    assert archive not in reads


def test_changed_archive_is_read_and_its_new_module_imported(archive, reads):
    importlib.import_module("sc_zip_one")
    _worker.prepare_worker()
    importlib.invalidate_caches()
    _write_zip(archive, {"sc_zip_one": "VALUE = 1\n", "sc_zip_two": "VALUE = 2\n"})
    st = os.stat(archive)
    os.utime(archive, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    reads.clear()
    importlib.invalidate_caches()
    assert archive in reads
    assert importlib.import_module("sc_zip_two").VALUE == 2
