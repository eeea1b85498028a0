"""scripts/gpu-check.sh: its dry run (no GPU needed) and the plan of the device run."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _gpu_check_module():
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "bench" / "gpu_check.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_dry_run_checks_parity_and_writes_the_report(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "OUT"}
    out = subprocess.run(
        [str(ROOT / "scripts" / "gpu-check.sh"), "--dry-run", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "time-10m" not in out.stdout  # the dry run's plan, not the device's
    report = (tmp_path / "gpu-check.md").read_text()
    assert "(dry run, no GPU used)" in report
    assert "pyspark imported by the kernels: False" in report
    rows = re.findall(
        r"^\| (?:parity 3-D|lattice at eps=0\.3, 3-D|duplicates 2-D) \|.*$", report, re.M
    )
    assert len(rows) == 3 and all("| exact |" in r for r in rows), report
    # the job's own path: regions fitted with the grid kernel and merged, against sklearn
    one_pass = re.findall(r"^\| one pass, \d+ regions, \d-D \|.*$", report, re.M)
    assert len(one_pass) == 3 and all("| exact |" in r for r in one_pass), report
    assert re.search(r"^\| time-20k-grid \| 20000 \| .* \| yes \|", report, re.M), report
    assert re.search(r"^\| region-20k-grid \| \d+ \| .* \| yes \|", report, re.M), report
    assert '"same_neighbours": 1.0' in report  # UMAP's device k-NN code, run on numpy
    assert "FAILED" not in report and "DIFFERS" not in report
    assert "=== parity" in (tmp_path / "gpu-check.log").read_text()


def test_device_plan_fits_eight_minutes_and_times_every_kernel():
    gc = _gpu_check_module()
    steps = [s.name for s in gc.plan(dry_run=False)]
    for size in ("1m", "10m"):
        assert {f"time-{size}-grid", f"time-{size}-cpu", f"time-{size}-dbscan"} <= set(steps)
    assert steps[:2] == ["environment", "parity"] and "umap-transform" in steps
    assert {"region-1m-grid", "region-1m-cpu"} <= set(steps)  # one box of the job, end to end
    script = (ROOT / "scripts" / "gpu-check.sh").read_text()
    outer = int(re.search(r"timeout --kill-after=(\d+) (\d+)", script).group(2))
    assert gc.TOTAL_BUDGET_S < outer < 8 * 60 - 10
    assert all(s.args[-1] != "numpy" for s in gc.plan(dry_run=False))  # the device run uses CuPy
