"""One prepared GPU check: the grid DBSCAN kernel on the device against the CPU kernel and
scikit-learn, its timings at 1M and 10M 3-D points, and UMAP's transform k-NN on the device.

Made for a lent machine with a GPU and only minutes on it: offline, no Java, Spark or cuML;
numpy, numba, CuPy, scikit-learn, pandas and pyarrow installed. It imports the kernels from
``lib/`` without pyspark (the package imports lazily; the check asserts it). Run it through
``scripts/gpu-check.sh``, which brings the prepared wheels (``scripts/gpu-prepare.sh``).

Every step runs in its own process with its own time limit inside one overall budget, so a hung
or crashed step costs only its share; the orchestrator writes ``gpu-check.md`` (the results) and
``gpu-check.log`` (every step's output) into the output folder.

``--dry-run`` prints the plan and runs what needs no GPU: the imports, the parity step with the
kernel's array module set to numpy on the small data sets, and a small timing step.

One step alone, in this process (``PYTHONPATH=lib:tests``)::

    python bench/gpu_check.py --step parity numpy-all --result parity.json  # every case, numpy
    python bench/gpu_check.py --step time 1000000 cpu --result t.json       # or numpy / cupy
    python bench/gpu_check.py --step region 1000000 numpy --result r.json   # one box, end to end
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import json
import logging
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
# bench/dbscan.py would shadow the `dbscan` package timed below: drop this folder from the path
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
for _p in (ROOT / "lib", ROOT / "tests"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

#: the prepared files (scripts/gpu-prepare.sh): wheels, unpacked by scripts/gpu-check.sh
PREPARED = ROOT / ".gpu-check"
#: the whole check stays under 8 minutes on the device
TOTAL_BUDGET_S = 450
EPS_3D = 0.3
MIN_POINTS_3D = 10


@dataclass(frozen=True)
class Step:
    """One step of the plan: its name, arguments and time limit."""

    name: str
    args: tuple[str, ...]
    limit_s: int
    what: str


def plan(dry_run: bool) -> list[Step]:
    """The steps in order: cheap and decisive first, the 10M timings last."""
    if dry_run:
        return [
            Step("environment", ("environment",), 60, "versions, device, no pyspark import"),
            Step("parity", ("parity", "numpy"), 120, "grid kernel (numpy) = CPU kernel = sklearn"),
            Step("time-20k-grid", ("time", "20000", "numpy"), 60, "grid kernel, numpy, 20k"),
            Step("time-20k-cpu", ("time", "20000", "cpu"), 60, "CPU kernel, 20k"),
            Step("time-20k-dbscan", ("time", "20000", "dbscan"), 60, "dbscan package, 20k"),
            Step("region-20k-grid", ("region", "20000", "numpy"), 60, "one box, grid, numpy"),
            Step("region-20k-cpu", ("region", "20000", "cpu"), 60, "one box, CPU kernel, 20k"),
            Step("umap-transform", ("umap", "numpy"), 60, "UMAP transform k-NN (numpy)"),
        ]
    steps = [
        Step("environment", ("environment",), 30, "versions, device, no pyspark import"),
        # CuPy compiles each of the kernel's element-wise kernels on first use: the parity
        # step pays that once for the whole check (the cache on disk serves the later steps)
        Step("parity", ("parity", "cupy"), 150, "grid kernel (CuPy) = CPU kernel = sklearn"),
    ]
    for n, label, limits in ((1_000_000, "1m", (40, 60, 40)), (10_000_000, "10m", (90, 120, 60))):
        steps += [
            Step(f"time-{label}-grid", ("time", str(n), "cupy"), limits[0], f"grid, GPU, {label}"),
            Step(f"time-{label}-cpu", ("time", str(n), "cpu"), limits[1], f"CPU kernel, {label}"),
            Step(
                f"time-{label}-dbscan",
                ("time", str(n), "dbscan"),
                limits[2],
                f"dbscan package, {label} (if its wheel was brought)",
            ),
        ]
        if label == "1m":
            steps += [
                Step("region-1m-grid", ("region", str(n), "cupy"), 40, "one box, grid, GPU, 1m"),
                Step("region-1m-cpu", ("region", str(n), "cpu"), 40, "one box, CPU kernel, 1m"),
                Step("umap-transform", ("umap", "cupy"), 40, "UMAP transform k-NN (CuPy)"),
            ]
    return steps


# --------------------------------------------------------------------------- step bodies


def _array_module(name: str) -> Any:
    """``numpy`` (the dry run's quick cases) and ``numpy-all`` (every case) run the device code
    on the host; any other name is CuPy."""
    return np if name.startswith("numpy") else importlib.import_module("cupy")


def _device_memory() -> dict[str, int]:
    try:
        import cupy

        free, total = cupy.cuda.Device().mem_info
        return {"free": int(free), "total": int(total)}
    except Exception:  # no CuPy or no device: reported, not fatal
        return {}


def step_environment() -> dict[str, Any]:
    import spark_clustering.backends.cpu.dbscan_kernel
    import spark_clustering.backends.gpu.dbscan_kernel as gpu_backend
    import spark_clustering.backends.gpu.grid_kernel  # noqa: F401

    versions = {"python": platform.python_version()}
    for mod in ("numpy", "numba", "cupy", "sklearn", "pandas", "pyarrow", "dbscan"):
        try:
            versions[mod] = str(getattr(importlib.import_module(mod), "__version__", "present"))
        except Exception as exc:  # absent or broken: reported
            versions[mod] = f"absent ({type(exc).__name__})"
    smi = ""
    try:
        smi = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        smi = "nvidia-smi not found"
    wheels = sorted(p.name for p in (PREPARED / "wheels").glob("*.whl"))
    return {
        "versions": versions,
        "prepared_wheels": wheels,
        "nvidia_smi": smi,
        "cupy_devices": gpu_backend.cupy_device_count(),
        "gpu_kernel_choice": gpu_backend.choose_gpu_kernel("auto"),
        "device_memory": _device_memory(),
        "pyspark_imported": "pyspark" in sys.modules,
        "ok": "pyspark" not in sys.modules,
    }


def _parity_cases() -> list[tuple[str, np.ndarray, float, int]]:
    from dbscan_data import EPS, MIN_POINTS, parity_dataset

    rng = np.random.default_rng(11)
    cases = [(f"parity {d}-D", parity_dataset(d), EPS, MIN_POINTS) for d in (1, 2, 3, 5)]
    lattice = np.stack(np.meshgrid(*[np.arange(12) * 0.3] * 3, indexing="ij"), -1).reshape(-1, 3)
    cases.append(("lattice at eps=0.3, 3-D", lattice, 0.3, 7))
    cases.append(("duplicates 2-D", np.repeat(rng.uniform(0, 2, (50, 2)), 5, axis=0), EPS, 5))
    cases.append(("all noise 3-D", rng.uniform(0, 1000, (2000, 3)), EPS, 5))
    cases.append(("one blob 3-D", rng.normal(0, 1.0, (20000, 3)), 0.2, 10))
    return cases


def step_parity(xp_name: str) -> dict[str, Any]:
    from dbscan_data import assert_same_border, assert_same_region, sklearn_reference
    from spark_clustering.backends.cpu.dbscan_kernel import CPU_KERNEL, border_candidates
    from spark_clustering.backends.gpu.grid_kernel import GridKernel

    kernel = GridKernel(xp=_array_module(xp_name))
    rows = []
    cases = _parity_cases()
    if xp_name == "numpy":  # the dry run: the code path, on the quick cases (the tests do all)
        cases = [
            c for c in cases if c[0] in ("parity 3-D", "lattice at eps=0.3, 3-D", "duplicates 2-D")
        ]
    for name, x, eps, min_pts in cases:
        row: dict[str, Any] = {"case": name, "n": int(x.shape[0]), "d": int(x.shape[1])}
        try:
            home = np.random.default_rng(5).random(x.shape[0]) < 0.8
            assert_same_region(
                kernel.fit_region(x, home, eps, min_pts),
                CPU_KERNEL.fit_region(x, home, eps, min_pts),
            )
            # what the one-pass fit calls: fit_region less the halo links
            got_cores = kernel.fit_cores(x, home, eps, min_pts)
            want_cores = CPU_KERNEL.fit_cores(x, home, eps, min_pts)
            for got_a, want_a in zip(got_cores, want_cores, strict=True):
                np.testing.assert_array_equal(got_a, want_a, err_msg="fit_cores differs")
            # and the border pass that labels the region's other home points, ties included
            border_q = x + np.random.default_rng(7).normal(0, eps / 2, x.shape)
            border_args = (x[want_cores[0]], want_cores[1], eps)
            assert_same_border(
                kernel.border_candidates(border_q, *border_args),
                border_candidates(border_q, *border_args),
            )
            everything = np.ones(x.shape[0], dtype=bool)
            res = kernel.fit_region(x, everything, eps, min_pts)
            assert_same_region(res, CPU_KERNEL.fit_region(x, everything, eps, min_pts))
            ref_labels, ref_core = sklearn_reference(x, eps, min_pts)
            core = np.zeros(x.shape[0], dtype=bool)
            core[res.core_index] = True
            np.testing.assert_array_equal(core, ref_core, err_msg="core flags differ from sklearn")
            ours, theirs = res.core_component.tolist(), ref_labels[res.core_index].tolist()
            pairs = set(zip(ours, theirs, strict=True))
            assert len(pairs) == len(set(ours)) == len(set(theirs)), "partition differs"
            queries = x + np.random.default_rng(6).normal(0, eps / 2, x.shape)
            want = CPU_KERNEL.nearest_core(queries, x[res.core_index], res.core_component, eps)
            got = kernel.nearest_core(queries, x[res.core_index], res.core_component, eps)
            np.testing.assert_array_equal(got[0], want[0], err_msg="nearest_core labels differ")
            np.testing.assert_array_equal(got[1], want[1], err_msg="nearest_core flags differ")
            row.update(result="exact", core=int(core.sum()), clusters=len(pairs))
        except AssertionError as exc:
            row.update(result="DIFFERS", detail=str(exc).splitlines()[0][:200])
        rows.append(row)
    rows += _one_pass_parity(kernel)
    return {"rows": rows, "ok": all(r["result"] == "exact" for r in rows)}


def _one_pass_parity(kernel: Any) -> list[dict[str, Any]]:
    """The one-pass fit region by region (the Spark job's per-region work and merge, without
    Spark) with the grid kernel, against scikit-learn."""
    from dbscan_data import (
        EPS,
        MIN_POINTS,
        assert_same_clustering,
        one_pass,
        parity_dataset,
        sklearn_reference,
    )

    rows = []
    for d, n_regions in ((2, 23), (3, 4), (3, 23)):
        x = parity_dataset(d)
        row: dict[str, Any] = {
            "case": f"one pass, {n_regions} regions, {d}-D",
            "n": int(x.shape[0]),
            "d": d,
        }
        try:
            labels, is_core, sizes = one_pass(x, n_regions, EPS, MIN_POINTS, kernel=kernel)
            ref_labels, ref_core = sklearn_reference(x, EPS, MIN_POINTS)
            assert_same_clustering(labels, is_core, ref_labels, ref_core)
            row.update(result="exact", core=int(is_core.sum()), clusters=len(sizes))
        except AssertionError as exc:
            row.update(result="DIFFERS", detail=str(exc).splitlines()[0][:200])
        rows.append(row)
    return rows


def timing_data(n: int, seed: int = 0) -> np.ndarray:
    """3-D customers-like data: ten Gaussian blobs of different spreads and 10% uniform noise
    in a 100-unit cube (the same for every kernel)."""
    rng = np.random.default_rng(seed)
    centres = rng.uniform(0, 100, (10, 3))
    spreads = rng.uniform(1, 3, 10)
    per = int(n * 0.9) // 10
    parts = [rng.normal(c, s, (per, 3)) for c, s in zip(centres, spreads, strict=True)]
    parts.append(rng.uniform(0, 100, (n - 10 * per, 3)))
    return np.concatenate(parts)


def _digest(core_index: np.ndarray, component: np.ndarray) -> str:
    h = hashlib.sha256()
    h.update(np.ascontiguousarray(core_index, dtype=np.int64).tobytes())
    h.update(np.ascontiguousarray(component, dtype=np.int64).tobytes())
    return h.hexdigest()[:16]


class _Collect(logging.Handler):
    """Keeps the messages logged while a step runs."""

    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def _watch_kernel_log() -> list[str]:
    """From now on, keep what the package logs: a region the grid kernel hands to the CPU
    kernel says so in one line, so a fall-back is never reported as a GPU timing. Returns the
    list the messages go to (see :func:`_kernel_result`)."""
    handler = _Collect()
    logging.getLogger("spark_clustering").addHandler(handler)
    logging.getLogger("spark_clustering").setLevel(logging.INFO)
    return handler.messages


def _kernel_result(out: dict[str, Any], messages: list[str]) -> dict[str, Any]:
    """A timing step's result with the kernel's log; not ok when a region fell back."""
    fell_back = any("runs on the CPU kernel" in m for m in messages)
    return {**out, "kernel_log": messages, "ok": not fell_back}


def step_time(n: int, which: str) -> dict[str, Any]:
    x = timing_data(n)
    home = np.ones(n, dtype=bool)
    out: dict[str, Any] = {"n": n, "d": 3, "eps": EPS_3D, "min_points": MIN_POINTS_3D}
    warm = x[:: max(1, n // 5000)]
    if which == "dbscan":
        try:
            from dbscan import DBSCAN as PkgDBSCAN  # the `dbscan` package (Wang, Gu, Shun)
        except ImportError:
            return {**out, "skipped": "the dbscan package is not installed", "ok": True}
        PkgDBSCAN(warm, eps=EPS_3D, min_samples=MIN_POINTS_3D)
        t0 = time.perf_counter()
        labels, core = PkgDBSCAN(x, eps=EPS_3D, min_samples=MIN_POINTS_3D)
        out["seconds"] = time.perf_counter() - t0
        out["core"] = int(np.asarray(core).sum())
        out["clusters"] = int(np.asarray(labels).max()) + 1
        return {**out, "ok": True}
    if which == "cpu":
        from spark_clustering.backends.cpu.dbscan_kernel import CPU_KERNEL as kernel
    else:
        from spark_clustering.backends.gpu.grid_kernel import GridKernel

        kernel = GridKernel(xp=_array_module(which))
    kernel.fit_cores(warm, home[: warm.shape[0]], EPS_3D, MIN_POINTS_3D)  # compile, warm up
    records = _watch_kernel_log()
    pool = None
    if which == "cupy":
        import cupy

        pool = cupy.get_default_memory_pool()
        pool.free_all_blocks()
        out["device_memory_before"] = _device_memory()
    t0 = time.perf_counter()
    # fit_cores: what the one-pass fit asks of a kernel (all points home: no halo either way)
    core_index, core_component = kernel.fit_cores(x, home, EPS_3D, MIN_POINTS_3D)
    out["seconds"] = time.perf_counter() - t0
    if pool is not None:
        out["pool_bytes_held"] = int(pool.total_bytes())  # the pool keeps its peak blocks
    out["core"] = int(core_index.shape[0])
    out["clusters"] = int(core_component.max(initial=-1)) + 1
    out["digest"] = _digest(core_index, core_component)
    return _kernel_result(out, records)


def step_region(n: int, which: str) -> dict[str, Any]:
    """One box of the one-pass fit end to end (``fit_label_region``: box tests, ``fit_cores``,
    the border pass, group links) on the grid kernel or the CPU kernel: the home box is the
    data's bounding box less 5 units each side, and the box gets every point within the
    routing's halo margin of it, as the Spark job routes them."""
    from spark_clustering.backends.cpu.dbscan_kernel import CPU_KERNEL
    from spark_clustering.backends.dbscan_regions import fit_label_region
    from spark_clustering.backends.gpu.grid_kernel import GridKernel
    from spark_clustering.partitioning import halo_margin

    x = timing_data(n)
    lo, hi = x.min(axis=0) + 5.0, x.max(axis=0) - 5.0
    reach = 2 * halo_margin(EPS_3D)
    x = x[np.all((x >= lo - reach) & (x < hi + reach), axis=1)]
    home_region = np.where(np.all((x >= lo) & (x < hi), axis=1), 0, 1)
    key = np.arange(x.shape[0], dtype=np.int64)
    kernel: Any = CPU_KERNEL if which == "cpu" else GridKernel(xp=_array_module(which))
    out: dict[str, Any] = {"n": int(x.shape[0]), "home": int((home_region == 0).sum())}
    warm = slice(None, None, max(1, x.shape[0] // 5000))
    args = (EPS_3D, MIN_POINTS_3D)
    fit_label_region(kernel, x[warm], home_region[warm], key[warm], 0, lo, hi, *args)
    records = _watch_kernel_log()
    t0 = time.perf_counter()
    res = fit_label_region(kernel, x, home_region, key, 0, lo, hi, *args)
    out["seconds"] = time.perf_counter() - t0
    out["core"] = int(res.home_core.sum())
    out["clusters"] = int(res.comp_id.shape[0])
    out["digest"] = _digest(res.home_label, res.home_core.astype(np.int64))
    return _kernel_result(out, records)


def step_umap(xp_name: str) -> dict[str, Any]:
    from spark_clustering.backends.cpu.umap_kernel import exact_knn, prepare_training

    rng = np.random.default_rng(3)
    n_train, n_query, dims, k = (
        (20_000, 200_000, 10, 15) if xp_name == "cupy" else (2000, 5000, 10, 15)
    )
    train = rng.normal(size=(n_train, dims))
    queries = rng.normal(size=(n_query, dims))
    prepared = prepare_training(train, "euclidean")
    exact_knn(prepared, queries[:100], k, "euclidean")  # compile
    t0 = time.perf_counter()
    idx_cpu, dist_cpu = exact_knn(prepared, queries, k, "euclidean")
    cpu_s = time.perf_counter() - t0
    out: dict[str, Any] = {"train": n_train, "queries": n_query, "dims": dims, "k": k}
    out["cpu_seconds"] = cpu_s
    from spark_clustering.backends.gpu.umap_kernel import cupy_knn

    xp = _array_module(xp_name)  # numpy in the dry run: the device code on the host
    cupy_knn(prepared, queries[:100], k, "euclidean", xp=xp)
    t0 = time.perf_counter()
    idx_gpu, dist_gpu = cupy_knn(prepared, queries, k, "euclidean", xp=xp)
    out[f"{xp_name}_seconds"] = time.perf_counter() - t0
    out["same_neighbours"] = float(np.mean(np.sort(idx_gpu, 1) == np.sort(idx_cpu, 1)))
    out["max_distance_diff"] = float(np.abs(dist_gpu - dist_cpu).max())
    return {**out, "ok": out["same_neighbours"] > 0.999}


def run_step(argv: list[str]) -> dict[str, Any]:
    kind = argv[0]
    if kind == "environment":
        return step_environment()
    if kind == "parity":
        return step_parity(argv[1])
    if kind == "time":
        return step_time(int(argv[1]), argv[2])
    if kind == "region":
        return step_region(int(argv[1]), argv[2])
    if kind == "umap":
        return step_umap(argv[1])
    raise SystemExit(f"unknown step {kind!r}")


# --------------------------------------------------------------------------- orchestration


def _fmt_s(v: Any) -> str:
    return f"{v:.2f} s" if isinstance(v, float) else "-"


def write_report(path: Path, results: dict[str, dict[str, Any]], dry_run: bool) -> None:
    """The Markdown results file: environment, parity table, timings, UMAP, every step's status."""
    lines = [f"# GPU check {'(dry run, no GPU used)' if dry_run else ''}".rstrip(), ""]
    lines.append(f"Run {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}.")
    env = results.get("environment", {})
    if env:
        lines += ["", "## Environment", "", f"- nvidia-smi: {env.get('nvidia_smi') or '-'}"]
        lines.append(
            f"- CuPy devices: {env.get('cupy_devices')}; memory: {env.get('device_memory')}"
        )
        lines.append(f"- versions: {json.dumps(env.get('versions', {}))}")
        lines.append(f"- prepared wheels: {', '.join(env.get('prepared_wheels', [])) or 'none'}")
        lines.append(f"- pyspark imported by the kernels: {env.get('pyspark_imported')}")
    par = results.get("parity", {})
    if par.get("rows"):
        lines += ["", "## Parity (grid kernel vs CPU kernel vs scikit-learn, exact)", ""]
        lines += ["| case | n | d | result | core | clusters |", "|---|---|---|---|---|---|"]
        for r in par["rows"]:
            res = r["result"] + (f" ({r['detail']})" if "detail" in r else "")
            lines.append(
                f"| {r['case']} | {r['n']} | {r['d']} | {res} | {r.get('core', '-')} | "
                f"{r.get('clusters', '-')} |"
            )
    timed = {k: v for k, v in results.items() if k.startswith(("time-", "region-"))}
    if timed:
        lines += ["", f"## Timings (3-D, eps={EPS_3D}, minPoints={MIN_POINTS_3D})", ""]
        lines += [
            "`time-*`: the kernel's `fit_cores` of all points; `region-*`: one box of the "
            "one-pass fit end to end (`fit_label_region`, n = the box's rows with its halo).",
            "",
        ]
        lines += ["| step | n | seconds | core | clusters | same as CPU | GPU pool held |"]
        lines += ["|---|---|---|---|---|---|---|"]
        for name, r in timed.items():
            cpu = results.get(name.rsplit("-", 1)[0] + "-cpu", {})
            same = "-"
            if "digest" in r and "digest" in cpu and not name.endswith("-cpu"):
                same = "yes" if r["digest"] == cpu["digest"] else "NO"
            pool = r.get("pool_bytes_held")
            lines.append(
                f"| {name} | {r.get('n', '-')} | {_fmt_s(r.get('seconds'))} | "
                f"{r.get('core', '-')} | {r.get('clusters', '-')} | {same} | "
                f"{f'{pool / 2**30:.2f} GiB' if pool else '-'} |"
                + (f" {r['skipped']}" if "skipped" in r else "")
                + (f" {r['error']}" if "error" in r else "")
                + (f" {'; '.join(r['kernel_log'])}" if r.get("kernel_log") else "")
            )
    um = results.get("umap-transform", {})
    if um:
        lines += ["", "## UMAP transform k-NN", "", "```", json.dumps(um, indent=1), "```"]
    lines += ["", "## Steps", "", "| step | status | wall |", "|---|---|---|"]
    for name, r in results.items():
        lines.append(f"| {name} | {r.get('status', '?')} | {_fmt_s(r.get('wall_s'))} |")
    path.write_text("\n".join(lines) + "\n")


def orchestrate(out_dir: Path, dry_run: bool, budget_s: int) -> int:
    out_dir.mkdir(parents=True, exist_ok=True)
    log_path = out_dir / "gpu-check.log"
    report = out_dir / "gpu-check.md"
    steps = plan(dry_run)
    print(f"gpu-check: {'dry run' if dry_run else 'device run'}, budget {budget_s} s, plan:")
    for s in steps:
        print(f"  {s.name:<18} limit {s.limit_s:>4} s  {s.what}")
    deadline = time.monotonic() + budget_s
    results: dict[str, dict[str, Any]] = {}
    failed = False
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "lib"), str(ROOT / "tests")])}
    if os.environ.get("PYTHONPATH"):
        env["PYTHONPATH"] += os.pathsep + os.environ["PYTHONPATH"]
    with log_path.open("a") as log:
        for s in steps:
            left = deadline - time.monotonic()
            if left < 5:
                results[s.name] = {"status": "not run (budget spent)"}
                failed = True
                continue
            limit = min(s.limit_s, int(left))
            result_file = out_dir / f".{s.name}.json"
            result_file.unlink(missing_ok=True)
            cmd = [sys.executable, __file__, "--step", *s.args, "--result", str(result_file)]
            log.write(f"\n=== {s.name} (limit {limit} s): {' '.join(cmd)}\n")
            log.flush()
            t0 = time.monotonic()
            try:
                proc = subprocess.run(
                    cmd, stdout=log, stderr=subprocess.STDOUT, timeout=limit, env=env, check=False
                )
                rc: int | str = proc.returncode
            except subprocess.TimeoutExpired:
                rc = "timeout"
            wall = time.monotonic() - t0
            r: dict[str, Any] = {}
            if result_file.exists():
                r = json.loads(result_file.read_text())
                result_file.unlink()
            ok = rc == 0 and r.get("ok", False)
            r.update(status="ok" if ok else f"FAILED (rc={rc})", wall_s=wall)
            results[s.name] = r
            failed = failed or not ok
            print(f"  {s.name:<18} {r['status']:<20} {wall:6.1f} s")
            write_report(report, results, dry_run)  # a partial report survives a kill
    write_report(report, results, dry_run)
    print(f"gpu-check: wrote {report} and {log_path}")
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=os.environ.get("OUT", "gpu-check-out"))
    ap.add_argument("--dry-run", action="store_true")
    ap.add_argument("--budget", type=int, default=TOTAL_BUDGET_S)
    ap.add_argument("--step", nargs="+", help=argparse.SUPPRESS)
    ap.add_argument("--result", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.step:
        try:
            result = run_step(args.step)
        except Exception as exc:
            result = {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:300]}
            import traceback

            traceback.print_exc()
        Path(args.result).write_text(json.dumps(result, default=str))
        print(json.dumps(result, default=str)[:2000])
        return 0 if result.get("ok") else 1
    return orchestrate(Path(args.out), args.dry_run, args.budget)


if __name__ == "__main__":
    raise SystemExit(main())
