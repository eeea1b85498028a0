"""Child-process runs of the segment job for the reliability tests: each run is a separate
``python -m spark_clustering.cli segment`` (its own driver and JVM), so a test can kill it at a
named step of its commit (``SPARK_CLUSTERING_FAULT``, see spark_clustering.jobs.faults) and look
at what it left, as a scheduler or an operator would after a real kill."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import spark_clustering
from segment_data import blobs, write_features

#: the library the test process imports: the children import the same one
LIB = str(Path(spark_clustering.__file__).resolve().parents[1])
N_PER = 20  # 60 customers: a child run is mostly the JVM's start


@dataclass
class Child:
    """A running child job whose stderr is collected line by line."""

    proc: subprocess.Popen
    lines: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)

    @property
    def stderr(self) -> str:
        return "".join(self.lines)

    def wait_for(self, text: str, timeout: float = 300.0) -> None:
        """Until ``text`` appears on the child's stderr; fails if it ends or times out first."""
        deadline = time.monotonic() + timeout
        while text not in self.stderr:
            if self.proc.poll() is not None:
                self._reader.join(timeout=10)
                if text in self.stderr:
                    return
                pytest.fail(f"child ended ({self.proc.returncode}) before {text!r}:\n"
                            f"{self.stderr[-4000:]}")  # fmt: skip
            if time.monotonic() > deadline:
                pytest.fail(f"no {text!r} after {timeout} s:\n{self.stderr[-4000:]}")
            time.sleep(0.2)

    def wait(self, timeout: float = 600.0) -> int:
        code = self.proc.wait(timeout=timeout)
        self._reader.join(timeout=10)
        return code


def start_segment(config: str, run_date: str, *args: str, fault: str | None = None) -> Child:
    """``segment`` on a local[1] master in a child process with umask 022."""
    env = {k: v for k, v in os.environ.items() if k != "SPARK_CLUSTERING_FAULT"}
    env["PYTHONPATH"] = LIB
    env["SPARK_CLUSTERING_TRACKING"] = "none"
    if fault:
        env["SPARK_CLUSTERING_FAULT"] = fault
    cmd = [
        sys.executable, "-m", "spark_clustering.cli", "segment", "--config", config,
        "--run-date", run_date, "--master", "local[1]", "--gpu", "off",
        "--conf", "spark.ui.enabled=false", "--conf", "spark.sql.shuffle.partitions=2",
        *args,
    ]  # fmt: skip
    proc = subprocess.Popen(
        cmd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: os.umask(0o022),
    )
    return Child(proc)


def run_segment_child(config: str, run_date: str, *args: str, fault: str | None = None) -> Child:
    """:func:`start_segment`, waited for."""
    child = start_segment(config, run_date, *args, fault=fault)
    child.wait()
    return child


@dataclass
class Site:
    """A features table, a KMeans config and the output root the children write."""

    root: Path
    features: str
    config: str
    out: Path


def make_site(spark, root: Path) -> Site:
    ids, x, _ = blobs(N_PER, seed=5)
    features = write_features(spark, root / "features", ids, x)
    out = root / "out"
    config = root / "segment.toml"
    config.write_text(
        f'[input]\npath = "{features}"\nkind = "features"\n'
        '[reducer]\nalgorithm = "none"\n'
        '[clusterer]\nalgorithm = "kmeans"\nparams = { k = 3, seed = 1, maxIter = 5 }\n'
        "[evaluation]\nenabled = false\n"
        '[tracking]\nbackend = "none"\n'
        f'[output]\npath = "{out}"\nscatter_sample = 60\nprofile = false\n'
    )
    return Site(root, features, str(config), out)


def taken_by(child: Child) -> str:
    """The run id of the lock a child took (from its log)."""
    marker = "taken by segment run "
    line = next(line for line in child.lines if marker in line)
    return line.split(marker, 1)[1].split()[0]


def check_published(spark, site: Site, run_date: str, scored: Path):
    """The published run of ``run_date`` is complete and consistent: its summary, report,
    model and assignments (read with Spark through the publication) name the same run, and
    ``score --model <output root>`` uses that run's model. Returns it."""
    import json

    from spark_clustering.jobs.publish import current_run, read_assignments
    from spark_clustering.jobs.score import run_score

    run = current_run(None, str(site.out), run_date)
    assert run is not None, f"no published run of {run_date}"
    summary = json.loads(Path(run.summary).read_text())
    assert summary["run_id"] == run.run_id
    version = summary["model_version"]
    meta = json.loads((Path(run.model) / "pipeline.json").read_text())
    assert (meta["run_id"], meta["model_version"]) == (run.run_id, version)
    assert version in Path(run.report).read_text()
    rows = read_assignments(spark, str(site.out), [run_date]).collect()
    assert len(rows) == 3 * N_PER
    assert {(r["run_id"], r["model_version"]) for r in rows} == {(run.run_id, version)}
    result = run_score(spark, str(site.out), site.features, str(scored), run_date="2026-12-01")
    assert result["model_version"] == version and result["model"] == run.model
    return run
