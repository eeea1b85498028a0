"""A segment run SIGKILLed at each step of its commit (the fault-injection point
``SPARK_CLUSTERING_FAULT=commit:<step>``), in a child process, over a date already published:
afterwards a Spark reader and ``score`` see a complete run (the previous one until the
publication, the new one from it on), and the next run breaks the dead run's lock and cleans
what it left. The steps run in order over one output root, each run cleaning its predecessor's
leftovers; a last successful run leaves only the current run and the one it replaced."""

from __future__ import annotations

import json
import signal
import stat
from pathlib import Path

import pytest
from segment_children import check_published, make_site, run_segment_child, taken_by

from spark_clustering.jobs.faults import COMMIT_STEPS
from spark_clustering.jobs.publish import current_run

pytestmark = [pytest.mark.spark, pytest.mark.slow]

D = "2026-11-01"


@pytest.fixture(scope="module")
def site(spark, tmp_path_factory):
    site = make_site(spark, tmp_path_factory.mktemp("kills"))
    child = run_segment_child(site.config, D)
    assert child.proc.returncode == 0, child.stderr[-4000:]
    # what the previous step left: the dead run's pid (its lock) and paths the next run removes
    return site, {"dead_pid": None, "leftovers": []}


def _folder(site) -> Path:
    return site.out / "runs" / f"run_date={D}"


def test_outputs_follow_the_umask(site):
    site, _ = site
    # the child ran with umask 022: every folder and file is readable by group and others
    modes = {p: stat.S_IMODE(p.stat().st_mode) for p in site.out.rglob("*")}
    closed = {str(p): oct(m) for p, m in modes.items() if m & 0o044 != 0o044}
    assert not closed, f"not readable by other users: {closed}"
    assert stat.S_IMODE(_folder(site).stat().st_mode) == 0o755


@pytest.mark.parametrize("step", COMMIT_STEPS)
def test_kill_at_each_commit_step(spark, site, step, tmp_path):
    site, state = site
    before = check_published(spark, site, D, tmp_path / "before")
    child = run_segment_child(site.config, D, fault=f"commit:{step}")
    assert child.proc.returncode == -signal.SIGKILL, child.stderr[-4000:]
    assert f"fault injected at commit:{step} (kill)" in child.stderr
    mine = taken_by(child)
    # this run broke the lock its killed predecessor left, and cleaned what it left
    if state["dead_pid"] is not None:
        assert f"process {state['dead_pid']} no longer runs" in child.stderr
    if step != "locked":  # killed at "locked", a run dies before its cleaning
        left = [p for p in state["leftovers"] if p.exists()]
        assert not left, f"not cleaned: {left}"
    # readers see a complete run: the previous one until the record is renamed in, then this one
    after = check_published(spark, site, D, tmp_path / "after")
    expected = mine if step in ("published", "cleaned") else before.run_id
    assert after.run_id == expected
    # what the kill left behind: its lock, and before the publication its own folder
    lock = json.loads((_folder(site) / "_lock").read_text())
    assert (lock["pid"], lock["run_id"]) == (child.proc.pid, mine)
    own = _folder(site) / f"run-{mine}"
    leftovers = []
    if step in ("written", "record-written"):
        assert (own / "model" / "pipeline.json").is_file() and (own / "summary.json").is_file()
        leftovers.append(own)
    temporary = list((_folder(site) / "_commits").glob(".tmp-*"))
    assert len(temporary) == (step == "record-written")
    leftovers += temporary
    if step == "cleaned":  # cleaned before the kill: the new run and the one it replaced
        assert {p.name for p in _folder(site).glob("run-*")} == {own.name, f"run-{before.run_id}"}
    state["dead_pid"], state["leftovers"] = child.proc.pid, leftovers


def test_a_following_run_cleans_every_leftover(spark, site, tmp_path):
    site, state = site
    before = current_run(None, str(site.out), D)
    assert before is not None
    assert (_folder(site) / "_lock").exists()  # left by the run killed at "cleaned"
    child = run_segment_child(site.config, D)
    assert child.proc.returncode == 0, child.stderr[-4000:]
    assert f"process {state['dead_pid']} no longer runs" in child.stderr
    run = check_published(spark, site, D, tmp_path / "scored")
    assert run.run_id == taken_by(child)
    folder = _folder(site)
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        ["_commits", f"run-{before.run_id}", f"run-{run.run_id}"]
    )
    assert len(list((folder / "_commits").iterdir())) == 2
    # hidden names left are only the checksums Hadoop writes beside Spark's own files
    hidden = [p for p in site.out.rglob(".*") if not p.name.endswith(".crc")]
    assert not hidden, f"hidden temporaries left: {hidden}"
