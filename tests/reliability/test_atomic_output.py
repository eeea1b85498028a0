"""``atomic_output`` (what ``prepare`` and ``score`` write through) killed between moving the
previous output aside and renaming the new one in: the next writer restores the previous output
and removes every leftover; one writer at a time."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from segment_children import LIB

from spark_clustering.jobs.io import atomic_output, lock_sibling
from spark_clustering.jobs.lock import LockHeld, WriterLock

WRITE = """
import sys
from spark_clustering.jobs.io import atomic_output
with atomic_output(None, sys.argv[1]) as tmp:
    import os
    os.makedirs(tmp)
    open(os.path.join(tmp, "part"), "w").write(sys.argv[2])
"""


def _write(path: Path, text: str, fault: str | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "SPARK_CLUSTERING_FAULT"}
    env["PYTHONPATH"] = LIB
    if fault:
        env["SPARK_CLUSTERING_FAULT"] = fault
    return subprocess.run([sys.executable, "-c", WRITE, str(path), text], env=env,
                          capture_output=True, text=True, timeout=120)  # fmt: skip


@pytest.mark.parametrize("step", ["output:written", "output:moved-aside"])
def test_a_kill_mid_commit_is_repaired_by_the_next_writer(tmp_path, step):
    out = tmp_path / "run_date=2026-11-01"
    assert _write(out, "first").returncode == 0
    killed = _write(out, "second", fault=step)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert f"fault injected at {step} (kill)" in killed.stderr
    left = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("."))
    assert any(".tmp-" in n for n in left) and ".run_date=2026-11-01.lock" in left
    if step == "output:moved-aside":  # the window the kill hit: no output, only the aside copy
        assert not out.exists() and any(".old-" in n for n in left)
    # the next writer, failing, still restores the previous output and removes the leftovers
    with pytest.raises(RuntimeError, match="later failure"), atomic_output(None, str(out)):
        raise RuntimeError("later failure")
    assert (out / "part").read_text() == "first"
    assert sorted(p.name for p in tmp_path.iterdir()) == [out.name]
    assert _write(out, "third").returncode == 0
    assert (out / "part").read_text() == "third"
    assert sorted(p.name for p in tmp_path.iterdir()) == [out.name]


def test_one_writer_at_a_time(tmp_path):
    out = tmp_path / "features"
    held = WriterLock(None, lock_sibling(str(out)), "holder", job="prepare").acquire()
    with pytest.raises(LockHeld, match="prepare run holder"), atomic_output(None, str(out)):
        pass
    held.release()
    assert not out.exists()
