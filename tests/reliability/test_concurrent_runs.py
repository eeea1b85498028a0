"""Two runs of the same run date at once: the second fails at once, before any work, naming the
run that holds the date (host, pid, start time, run id), and writes nothing; with
``--wait-lock`` it waits for the first to finish and then replaces it. Nothing mixes."""

from __future__ import annotations

import json
import os
import signal
import socket

import pytest
from segment_children import check_published, make_site, run_segment_child, start_segment, taken_by

pytestmark = [pytest.mark.spark, pytest.mark.slow]

D = "2026-11-01"


def test_second_run_of_a_date_fails_at_once_or_waits(spark, tmp_path_factory, tmp_path):
    site = make_site(spark, tmp_path_factory.mktemp("concurrent"))
    folder = site.out / "runs" / f"run_date={D}"
    first = start_segment(site.config, D, fault="commit:locked=stop")
    waiting = None
    try:
        first.wait_for("fault injected at commit:locked (stop)")
        holder = json.loads((folder / "_lock").read_text())
        assert holder["pid"] == first.proc.pid

        second = run_segment_child(site.config, D)
        assert second.proc.returncode == 1, second.stderr[-4000:]
        err = second.stderr
        for text in (f"run {holder['run_id']}", f"pid {first.proc.pid}",
                     f"host {socket.gethostname()}", f"started {holder['started']}",
                     "--wait-lock"):  # fmt: skip
            assert text in err, (text, err[-4000:])
        assert "segment: features" not in err  # it failed before any work
        assert sorted(p.name for p in folder.iterdir()) == ["_lock"]  # and wrote nothing

        waiting = start_segment(site.config, D, "--wait-lock", "900")
        waiting.wait_for("; waiting")
    finally:
        os.kill(first.proc.pid, signal.SIGCONT)
    assert first.wait() == 0, first.stderr[-4000:]
    assert waiting.wait() == 0, waiting.stderr[-4000:]
    # the waiting run started its work only once the first had published and released
    assert taken_by(first) == holder["run_id"]
    run = check_published(spark, site, D, tmp_path / "scored")
    assert run.run_id == taken_by(waiting)
    assert sorted(p.name for p in folder.glob("run-*")) == sorted(
        [f"run-{holder['run_id']}", f"run-{run.run_id}"]
    )
    assert not (folder / "_lock").exists()
