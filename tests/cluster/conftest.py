"""The cluster test tier: a real Spark standalone cluster (a master and two one-core workers on
127.0.0.1, started by ``scripts/local-cluster.sh`` from the installed pyspark) and the jobs
submitted to it with ``spark-submit``, as EMR steps and schedules run them.

The executors' Python is a virtual environment that sees the machine's numpy, pyarrow, pandas,
scikit-learn, numba and umap-learn but NOT spark_clustering: the package reaches the executors only
through the ``--py-files`` zip that ``scripts/build-dist.sh`` builds. Every application writes a
Spark event log, which the tests read to prove where its tasks ran.
"""

from __future__ import annotations

import json
import os
import site
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Cluster:
    """A running standalone cluster: its master URL and the master's web UI port."""

    master_url: str
    webui_port: int
    state_dir: Path

    def state(self) -> dict:
        """The master's JSON status page (workers, active and completed applications)."""
        url = f"http://127.0.0.1:{self.webui_port}/json/"
        with urllib.request.urlopen(url, timeout=10) as response:  # loopback only
            return json.load(response)


def _cluster_script(command: str, state_dir: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, CLUSTER_DIR=str(state_dir), PYTHON=sys.executable)
    return subprocess.run(
        ["bash", str(ROOT / "scripts" / "local-cluster.sh"), command],
        env=env, capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A master and two workers (1 core, 2 GiB each) for the whole session; stopped by their pid
    files at the end, also when a test failed."""
    state_dir = tmp_path_factory.mktemp("local-cluster")
    started = _cluster_script("start", state_dir)
    try:
        assert started.returncode == 0, f"cluster did not start:\n{started.stderr[-3000:]}"
        env = dict(
            line.split("=", 1)
            for line in (state_dir / "cluster.env").read_text().splitlines()
            if "=" in line
        )
        yield Cluster(env["MASTER_URL"], int(env["MASTER_WEBUI_PORT"]), state_dir)
    finally:
        stopped = _cluster_script("stop", state_dir)
        if stopped.returncode != 0:  # pragma: no cover - shown, never hidden
            print(stopped.stdout, stopped.stderr, file=sys.stderr)


@pytest.fixture(scope="session")
def worker_python(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A Python for the executors that has the libraries but not spark_clustering.

    A venv whose one ``.pth`` line adds this interpreter's site-packages as a plain path: the
    libraries import, while the ``.pth`` files there (the editable install of spark_clustering
    among them) are not processed, so ``import spark_clustering`` fails unless the zip is given.
    """
    venv = tmp_path_factory.mktemp("worker-venv")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    Path(purelib, "machine-libraries.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    probe = subprocess.run(
        [str(python), "-c", "import numpy, pyarrow, pandas, numba, sklearn, spark_clustering"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert "No module named 'spark_clustering'" in probe.stderr, (
        "the executors' Python must not have spark_clustering installed:\n" + probe.stderr
    )
    return str(python)


@pytest.fixture(scope="session")
def pyfiles_zip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The ``--py-files`` zip, built by ``scripts/build-dist.sh`` as users build it."""
    out = tmp_path_factory.mktemp("dist")
    done = subprocess.run(
        ["bash", str(ROOT / "scripts" / "build-dist.sh"), str(out)],
        env=dict(os.environ, ZIP_ONLY="1"), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    (zip_path,) = out.glob("spark_clustering-*.zip")
    return zip_path
