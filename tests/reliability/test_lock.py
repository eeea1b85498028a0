"""The run-date lock on its own, locally and through Hadoop's FileSystem (the path taken for
hdfs:// and s3a:// outputs): one holder at a time, a clear message naming it, waiting, a dead
holder's lock broken automatically, a remote one only when asked, a live one never."""

from __future__ import annotations

import dataclasses
import json
import socket
import subprocess
import sys
import threading
import time

import pytest

from spark_clustering.jobs import io
from spark_clustering.jobs.lock import LockHeld, WriterLock


@pytest.fixture(params=["local", "hadoop"])
def lock_file(request, tmp_path, monkeypatch):
    """``(spark or None, lock path, local path)`` on the local disk or through Hadoop."""
    if request.param == "local":
        return None, str(tmp_path / "_lock"), tmp_path / "_lock"
    spark = request.getfixturevalue("spark")
    # a file: URI treated as remote runs the same Hadoop FileSystem calls as s3a:// would
    monkeypatch.setattr(io, "is_local", lambda path: not path.startswith("file:"))
    return spark, f"file://{tmp_path}/_lock", tmp_path / "_lock"


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _plant(path, **changes) -> dict:
    """A lock file as another run would have left it."""
    holder = {"host": socket.gethostname(), "pid": _dead_pid(), "started": "2026-12-01T10:00:00",
              "run_id": "theirs", "job": "segment"}  # fmt: skip
    holder.update(changes)
    if "T" in holder["started"] and "+" not in holder["started"]:
        holder["started"] += "+00:00"
    path.write_text(json.dumps(holder))
    return holder


def test_one_holder_and_a_clear_message(lock_file):
    spark, path, local = lock_file
    first = WriterLock(spark, path, "run-one").acquire()
    with pytest.raises(LockHeld) as caught:
        WriterLock(spark, path, "run-two").acquire()
    message = str(caught.value)
    holder = first.holder
    for text in ("segment run run-one", f"host {holder.host}", f"pid {holder.pid}",
                 f"started {holder.started}", "--wait-lock", "--break-lock"):  # fmt: skip
        assert text in message, (text, message)
    # a live holder on this host is never broken, even when asked
    with pytest.raises(LockHeld, match="alive on this host"):
        WriterLock(spark, path, "run-two").acquire(break_lock=True)
    first.release()
    assert not local.exists()
    with WriterLock(spark, path, "run-two").acquire():
        assert json.loads(local.read_text())["run_id"] == "run-two"
    assert not local.exists()


def test_waits_for_the_holder(lock_file):
    spark, path, local = lock_file
    first = WriterLock(spark, path, "run-one").acquire()
    timer = threading.Timer(1.5, first.release)
    timer.start()
    try:
        second = WriterLock(spark, path, "run-two").acquire(wait=120, poll=0.2)
    finally:
        timer.join()
    assert json.loads(local.read_text())["run_id"] == "run-two"
    second.release()


def test_a_dead_holder_on_this_host_is_broken_automatically(lock_file):
    spark, path, local = lock_file
    dead = _plant(local, started=time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()))
    with WriterLock(spark, path, "mine").acquire():
        assert json.loads(local.read_text())["run_id"] == "mine"
    assert not [p for p in local.parent.iterdir() if "broken" in p.name], "aside copy left"
    assert dead["pid"] > 0


def test_a_remote_holder_needs_break_lock_or_the_age_limit(lock_file):
    spark, path, local = lock_file
    now = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())
    _plant(local, host="another-host.example", pid=1, started=now)
    with pytest.raises(LockHeld, match=r"another-host\.example"):
        WriterLock(spark, path, "mine").acquire()
    assert json.loads(local.read_text())["run_id"] == "theirs"
    with WriterLock(spark, path, "mine").acquire(break_lock=True):
        assert json.loads(local.read_text())["run_id"] == "mine"
    # older than the age limit: stale wherever it was taken
    _plant(local, host="another-host.example", pid=1, started="2026-01-01T00:00:00")
    with WriterLock(spark, path, "mine").acquire(max_age=3600):
        assert json.loads(local.read_text())["run_id"] == "mine"


def test_release_leaves_a_lock_that_is_no_longer_ours(tmp_path):
    path = tmp_path / "_lock"
    lock = WriterLock(None, str(path), "mine").acquire()
    other = dataclasses.replace(lock.holder, run_id="theirs")
    path.write_bytes(other.to_bytes())  # broken by an operator and taken by another run
    lock.release()
    assert json.loads(path.read_text())["run_id"] == "theirs"


def test_a_holder_releasing_between_create_and_check_is_still_held(spark, tmp_path, monkeypatch):
    """The race CI met: the holder's lock makes Hadoop's create fail, then the holder releases
    before anything looks again. The failed create is "held", never an error."""
    path = f"file://{tmp_path}/_lock"
    (tmp_path / "_lock").write_text("{}")
    fs = io._HadoopFS(spark, path)
    monkeypatch.setattr(fs, "exists", lambda _path: False)  # released just after the create
    assert fs.create_new(path, b"{}") is False
