"""A cluster set up wrong stops a job before any work, with one ``error:`` line that names the
cause and the setting to fix: never a Java stack trace, never a half-run job."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from submit_support import spark_submit

pytestmark = [pytest.mark.spark, pytest.mark.slow, pytest.mark.cluster]

ROOT = Path(__file__).resolve().parents[2]
SEGMENT = ROOT / "spark_jobs" / "segment_customers.py"


@pytest.fixture(scope="module")
def segment_input(spark, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from segment_data import blobs, write_config, write_features

    data = tmp_path_factory.mktemp("setup-errors")
    ids, x, _ = blobs(20, seed=5)
    write_features(spark, data / "features", ids, x)
    write_config(data / "segment.toml", str(data / "features"), str(data / "segments"))
    return data


def _args(data: Path) -> list[str]:
    return ["--config", str(data / "segment.toml"), "--run-date", "2026-11-01", "--gpu", "off"]


def _one_error_line(proc: subprocess.CompletedProcess) -> str:
    # spark-submit's PythonRunner merges the driver's stderr into its stdout: read both
    both = proc.stdout + proc.stderr
    assert proc.returncode == 2, (proc.returncode, both[-3000:])
    errors = [ln for ln in both.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1, both[-3000:]
    assert "Traceback" not in both and "\tat org.apache" not in both, both[-3000:]
    return errors[0]


def test_unreachable_master(segment_input: Path, pyfiles_zip: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    master = f"spark://127.0.0.1:{port}"
    proc = spark_submit(SEGMENT, _args(segment_input), pyfiles_zip, segment_input, master=master)
    line = _one_error_line(proc)
    assert f"cannot reach the Spark master {master}" in line and "--master" in line
    assert not (segment_input / "segments").exists()


def test_zip_missing_from_py_files(
    segment_input: Path, cluster, worker_python: str, tmp_path: Path
) -> None:
    proc = spark_submit(SEGMENT, _args(segment_input), None, tmp_path,
                        master=cluster.master_url, worker_python=worker_python)  # fmt: skip
    line = _one_error_line(proc)
    assert "executors cannot import spark_clustering" in line and "--py-files" in line
    assert not (segment_input / "segments").exists()


def test_worker_python_without_numpy(
    segment_input: Path, cluster, pyfiles_zip: Path, tmp_path: Path
) -> None:
    bare = tmp_path / "bare-venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(bare)], check=True)
    python = str(bare / "bin" / "python")
    proc = spark_submit(SEGMENT, _args(segment_input), pyfiles_zip, tmp_path,
                        master=cluster.master_url, worker_python=python)  # fmt: skip
    line = _one_error_line(proc)
    assert python in line and "numpy" in line and "spark.pyspark.python" in line
    assert not (segment_input / "segments").exists()
