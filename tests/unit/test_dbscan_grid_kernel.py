"""The GPU grid kernel's algorithm run with numpy, against the CPU kernel and scikit-learn.

The kernel is written against an array module; here it runs on numpy, so everything but the
device run itself (``tests/gpu/test_dbscan_grid_kernel_gpu.py``) is tested on any machine.
"""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dbscan_data import (
    EPS,
    MIN_POINTS,
    assert_same_border,
    assert_same_region,
    pairs,
    parity_dataset,
    sklearn_reference,
)
from spark_clustering.backends.cpu.dbscan_kernel import CPU_KERNEL, border_candidates
from spark_clustering.backends.gpu import dbscan_kernel as gpu_backend
from spark_clustering.backends.gpu import grid_kernel
from spark_clustering.backends.gpu.grid_kernel import GridKernel, neighbour_offsets

NUMPY_KERNEL = GridKernel(xp=np)


def _exact_eps_cases(d: int) -> np.ndarray:
    """Pairs exactly at eps (and one ulp beyond) for an eps that is not a power of two."""
    eps = 0.3
    base = np.zeros((1, d))
    step = np.zeros(d)
    step[0] = eps
    beyond = np.zeros(d)
    beyond[0] = np.nextafter(eps, 1.0)
    chain = base + np.arange(6)[:, None] * step  # 0, 0.3, 0.6 ...: sums round both ways
    return np.concatenate([chain, chain + beyond + 10.0])


def datasets() -> list[tuple[str, np.ndarray, float]]:
    rng = np.random.default_rng(3)
    cases = [(f"parity-{d}d", parity_dataset(d), EPS) for d in (1, 2, 3, 5)]
    cases += [(f"exact-eps-{d}d", _exact_eps_cases(d), 0.3) for d in (1, 2, 3)]
    cases.append(("duplicates", np.repeat(rng.uniform(0, 2, (30, 2)), 6, axis=0), EPS))
    cases.append(("all-noise", rng.uniform(0, 1000, (300, 3)), EPS))
    cases.append(("one-cell", rng.normal(0, 1e-3, (200, 3)), EPS))
    cases.append(("one-big-blob", rng.normal(0, 1.0, (3000, 3)), EPS))
    return cases


@pytest.mark.parametrize(("name", "x", "eps"), datasets(), ids=[c[0] for c in datasets()])
@pytest.mark.parametrize("home_share", [1.0, 0.7])
def test_fit_region_is_the_cpu_kernels_result(name, x, eps, home_share):
    home = np.random.default_rng(1).random(x.shape[0]) < home_share
    cpu = CPU_KERNEL.fit_region(x, home, eps, MIN_POINTS)
    assert_same_region(NUMPY_KERNEL.fit_region(x, home, eps, MIN_POINTS), cpu)


@pytest.mark.parametrize(("name", "x", "eps"), datasets(), ids=[c[0] for c in datasets()])
def test_fit_cores_is_the_cpu_kernels_and_skips_the_halo_links(name, x, eps, monkeypatch):
    home = np.random.default_rng(2).random(x.shape[0]) < 0.7
    want = CPU_KERNEL.fit_cores(x, home, eps, MIN_POINTS)
    full = NUMPY_KERNEL.fit_region(x, home, eps, MIN_POINTS)
    runs = []
    real_fit = GridKernel._fit
    monkeypatch.setattr(
        GridKernel, "_fit", lambda self, *a: runs.append(a[-1]) or real_fit(self, *a)
    )
    core_index, core_component = NUMPY_KERNEL.fit_cores(x, home, eps, MIN_POINTS)
    assert runs == [False]  # on the grid (every case: none falls back), without its halo pass
    np.testing.assert_array_equal(core_index, want[0])
    np.testing.assert_array_equal(core_component, want[1])
    np.testing.assert_array_equal(core_index, full.core_index)
    np.testing.assert_array_equal(core_component, full.core_component)


def test_fit_cores_falls_back_to_the_cpu_kernels(caplog):
    x = parity_dataset(2)
    home = np.random.default_rng(4).random(x.shape[0]) < 0.7
    small = GridKernel(xp=np, memory_bytes=100_000)
    with caplog.at_level(logging.INFO, logger=grid_kernel.__name__):
        got = small.fit_cores(x, home, EPS, MIN_POINTS)
        empty = NUMPY_KERNEL.fit_cores(np.empty((0, 2)), np.empty(0, dtype=bool), EPS, 5)
    want = CPU_KERNEL.fit_cores(x, home, EPS, MIN_POINTS)
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])
    assert [e.size for e in empty] == [0, 0]
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and "runs on the CPU kernel" in lines[0]


@pytest.mark.parametrize("d", [2, 3])
def test_all_home_matches_sklearn(d):
    x = parity_dataset(d)
    res = NUMPY_KERNEL.fit_region(x, np.ones(x.shape[0], dtype=bool), EPS, MIN_POINTS)
    ref_labels, ref_core = sklearn_reference(x, EPS, MIN_POINTS)
    core = np.zeros(x.shape[0], dtype=bool)
    core[res.core_index] = True
    np.testing.assert_array_equal(core, ref_core)
    pairs = set(zip(res.core_component.tolist(), ref_labels[res.core_index].tolist(), strict=True))
    assert len(pairs) == len(set(res.core_component.tolist())) == len(set(ref_labels[ref_core]))


@pytest.mark.parametrize(("name", "x", "eps"), datasets(), ids=[c[0] for c in datasets()])
def test_nearest_core_is_the_cpu_kernels_result(name, x, eps):
    fit = CPU_KERNEL.fit_region(x, np.ones(x.shape[0], dtype=bool), eps, MIN_POINTS)
    cores = x[fit.core_index]
    rng = np.random.default_rng(2)
    queries = np.concatenate([x, x + rng.normal(0, eps / 2, x.shape)])
    want = CPU_KERNEL.nearest_core(queries, cores, fit.core_component, eps)
    got = NUMPY_KERNEL.nearest_core(queries, cores, fit.core_component, eps)
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])


def test_nearest_core_ties_go_to_the_smaller_cluster():
    cores = np.array([[0.0], [0.2]])
    label, is_core = NUMPY_KERNEL.nearest_core(
        np.array([[0.1], [5.0]]), cores, np.array([3, 1]), 0.15
    )
    assert label.tolist() == [1, -1] and is_core.tolist() == [False, False]


def _border_cases() -> list[tuple[str, np.ndarray, np.ndarray, np.ndarray, float]]:
    """(name, queries, core points, components, eps), ties included: on a lattice of step
    0.5 with random components, the centre of each square is exactly as far from its four
    corners (binary-exact coordinates), so most centres tie between components."""
    rng = np.random.default_rng(8)
    cases = []
    for name, x, eps in datasets():
        fit = CPU_KERNEL.fit_region(x, np.ones(x.shape[0], dtype=bool), eps, MIN_POINTS)
        if fit.core_index.size == 0:
            continue
        queries = np.concatenate([x, x + rng.normal(0, eps / 2, x.shape)])
        cases.append((name, queries, x[fit.core_index], fit.core_component, eps))
    lattice = np.stack(np.meshgrid(np.arange(10) * 0.5, np.arange(10) * 0.5), -1).reshape(-1, 2)
    comps = rng.integers(0, 4, lattice.shape[0])
    centres = lattice[:-11] + 0.25
    cases.append(("lattice-ties", centres, lattice, comps, 0.5))
    return cases


@pytest.mark.parametrize("batch", [None, 300])
@pytest.mark.parametrize(
    ("name", "q", "cores", "comps", "eps"), _border_cases(), ids=[c[0] for c in _border_cases()]
)
def test_border_candidates_are_the_cpu_kernels(name, q, cores, comps, eps, batch, monkeypatch):
    if batch is not None:
        monkeypatch.setattr(grid_kernel, "_MAX_BATCH_PAIRS", batch)  # many batches per pass
    want = border_candidates(q, cores, comps, eps)
    assert_same_border(NUMPY_KERNEL.border_candidates(q, cores, comps, eps), want)
    if name == "lattice-ties":  # the case is there for its ties: it must have some
        assert len(set(want[1].tolist())) > 20


def test_border_candidates_of_nothing_and_on_the_cpu_kernel(caplog):
    cores = np.array([[0.0], [2.0], [2.5]])
    comps = np.array([5, 3, 3])
    q = np.array([[1.0], [2.2], [9.0]])
    label, tie_q, tie_c = NUMPY_KERNEL.border_candidates(q, cores, comps, 1.0)
    assert label.tolist() == [3, 3, -1]
    assert pairs(tie_q, tie_c) == [(0, 3), (0, 5)]
    none = NUMPY_KERNEL.border_candidates(np.empty((0, 1)), cores, comps, 1.0)
    assert [a.size for a in none] == [0, 0, 0]
    assert (
        NUMPY_KERNEL.border_candidates(q, np.empty((0, 1)), comps[:0], 1.0)[0].tolist() == [-1] * 3
    )
    small = GridKernel(xp=np, memory_bytes=1000)
    with caplog.at_level(logging.INFO, logger=grid_kernel.__name__):
        label, tie_q, tie_c = small.border_candidates(q, cores, comps, 1.0)
    assert label.tolist() == [3, 3, -1] and pairs(tie_q, tie_c) == [(0, 3), (0, 5)]
    assert "border labelling runs on the CPU kernel" in caplog.text


@pytest.mark.parametrize("d", [2, 5])
@pytest.mark.parametrize("min_points", [1, 2, 50])
@pytest.mark.parametrize("eps", [0.05, 1.0])
def test_other_min_points_and_eps_are_the_cpu_kernels(d, min_points, eps):
    # minPoints 1 (every point core), 2, and more than most cells hold; eps far below and
    # above the data set's own
    x = parity_dataset(d)
    home = np.random.default_rng(0).random(x.shape[0]) < 0.7
    assert_same_region(
        NUMPY_KERNEL.fit_region(x, home, eps, min_points),
        CPU_KERNEL.fit_region(x, home, eps, min_points),
    )
    cores, comps = CPU_KERNEL.fit_cores(x, home, eps, min_points)
    q = x + np.random.default_rng(1).normal(0, eps / 2, x.shape)
    assert_same_border(
        NUMPY_KERNEL.border_candidates(q, x[cores], comps, eps),
        border_candidates(q, x[cores], comps, eps),
    )


def test_small_batches_give_the_same_result(monkeypatch):
    x = parity_dataset(3)
    home = np.random.default_rng(4).random(x.shape[0]) < 0.8
    monkeypatch.setattr(grid_kernel, "_MAX_BATCH_PAIRS", 500)  # hundreds of batches per step
    assert_same_region(
        NUMPY_KERNEL.fit_region(x, home, EPS, MIN_POINTS),
        CPU_KERNEL.fit_region(x, home, EPS, MIN_POINTS),
    )


def test_region_too_large_for_the_memory_runs_on_the_cpu_kernel(caplog, monkeypatch):
    x = parity_dataset(2)
    home = np.ones(x.shape[0], dtype=bool)
    small = GridKernel(xp=np, memory_bytes=100_000)  # far below n x (point state + pairs)
    assert not small.plan(x.shape[0], 2)[0]
    assert GridKernel(xp=np, memory_bytes=1 << 30).plan(x.shape[0], 2)[0]
    calls = []
    monkeypatch.setattr(GridKernel, "_fit", lambda *a, **k: calls.append(1))
    with caplog.at_level(logging.INFO, logger=grid_kernel.__name__):
        res = small.fit_region(x, home, EPS, MIN_POINTS)
    assert calls == []
    assert_same_region(res, CPU_KERNEL.fit_region(x, home, EPS, MIN_POINTS))
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and "runs on the CPU kernel" in lines[0] and "MiB" in lines[0]


def test_high_dimensions_run_on_the_cpu_kernel(caplog):
    x = parity_dataset(10)[:400]
    home = np.ones(x.shape[0], dtype=bool)
    with caplog.at_level(logging.INFO, logger=grid_kernel.__name__):
        res = NUMPY_KERNEL.fit_region(x, home, EPS, MIN_POINTS)
    assert "10 dims" in caplog.text
    assert_same_region(res, CPU_KERNEL.fit_region(x, home, EPS, MIN_POINTS))


@pytest.mark.parametrize("d", [1, 2, 3, 5])
def test_compressed_keys_find_exactly_the_cells_at_each_offset(d):
    # occupied cells in clumps separated by gaps of every width, some astronomically wide: a
    # cell plus an offset has a key among the cells' keys exactly when that cell exists
    rng = np.random.default_rng(d)
    clumps = rng.integers(-3, 4, (60, d)) + rng.choice([0, 2, 4, 5, 7, 10**6, 10**15], (60, d))
    cells = np.unique(np.concatenate([clumps, clumps[:20] + 1]), axis=0)
    queries = np.unique(np.concatenate([cells[::3], cells[:10] - 3]), axis=0)
    offsets = neighbour_offsets(d)
    margin = int(np.abs(offsets).max())
    space = grid_kernel.KeySpace.fit(np, [queries, cells], margin)
    assert space is not None  # the real extent (2e15 per dimension) would overflow
    keys = space.keys(np, cells)
    assert np.all(np.diff(keys) > 0)  # lexicographic order kept, all distinct
    q_keys = space.keys(np, queries)
    present = {tuple(c) for c in cells.tolist()}
    for q, qk in zip(queries.tolist(), q_keys.tolist(), strict=True):
        for o, ok in zip(offsets.tolist(), space.offset_keys(offsets).tolist(), strict=True):
            target = tuple(a + b for a, b in zip(q, o, strict=True))
            assert (qk + ok in set(keys.tolist())) == (target in present), (q, o)


def test_a_far_outlier_keeps_the_box_on_the_grid(caplog):
    # one point 1e9 away from a 3-D blob: a box at the data's edge; its key range follows
    # the occupied cells, so the box is not handed to the CPU kernel
    x = np.concatenate([np.random.default_rng(0).normal(0, 1.0, (2000, 3)), [[1e9, -1e9, 1e9]]])
    home = np.ones(x.shape[0], dtype=bool)
    with caplog.at_level(logging.INFO, logger=grid_kernel.__name__):
        res = NUMPY_KERNEL.fit_region(x, home, 0.2, 5)
        labels = NUMPY_KERNEL.nearest_core(x, x[res.core_index], res.core_component, 0.2)
    assert caplog.text == ""
    assert_same_region(res, CPU_KERNEL.fit_region(x, home, 0.2, 5))
    want = CPU_KERNEL.nearest_core(x, x[res.core_index], res.core_component, 0.2)
    np.testing.assert_array_equal(labels[0], want[0])


def test_keys_past_int64_run_on_the_cpu_kernel(caplog):
    # 5-D points each in its own far cell: ~(distinct cells x 4) per dimension, to the 5th
    x = np.random.default_rng(1).uniform(0, 1e6, (20000, 5))
    assert grid_kernel.KeySpace.fit(np, [np.floor(x / 0.01).astype(np.int64)], 3) is None
    home = np.ones(x.shape[0], dtype=bool)
    with caplog.at_level(logging.INFO, logger=grid_kernel.__name__):
        got = NUMPY_KERNEL.fit_cores(x, home, 0.02, 2)
    assert "too large for int64 cell keys" in caplog.text
    assert got[0].size == 0


def test_neighbour_offsets_follow_the_cpu_bound():
    for d in (1, 2, 3):
        off = neighbour_offsets(d)
        a = np.maximum(np.abs(off) - 1, 0)
        assert np.all((a * a).sum(axis=1) <= d)
        assert off[0].tolist() == [0] * d and len({tuple(o) for o in off.tolist()}) == len(off)
    assert len(neighbour_offsets(1)) == 5 and len(neighbour_offsets(2)) == 25


def test_gpu_backend_picks_grid_cuml_or_cpu(monkeypatch):
    monkeypatch.delenv(gpu_backend.KERNEL_ENV, raising=False)
    monkeypatch.setattr(gpu_backend, "cupy_device_count", lambda: 1)
    assert gpu_backend.choose_gpu_kernel()[0] == "grid"
    monkeypatch.setattr(gpu_backend, "cupy_device_count", lambda: 0)
    monkeypatch.setattr(gpu_backend.importlib.util, "find_spec", lambda name: object())
    assert gpu_backend.choose_gpu_kernel()[0] == "cuml"
    monkeypatch.setattr(gpu_backend.importlib.util, "find_spec", lambda name: None)
    assert gpu_backend.choose_gpu_kernel() == (
        "cpu",
        "neither CuPy with a device nor cuML is present on this executor",
    )
    monkeypatch.setenv(gpu_backend.KERNEL_ENV, "cuml")
    assert gpu_backend.choose_gpu_kernel() == ("cuml", "requested")
    monkeypatch.setenv(gpu_backend.KERNEL_ENV, "tpu")
    with pytest.raises(ValueError, match="SPARK_CLUSTERING_GPU_KERNEL='tpu'"):
        gpu_backend.choose_gpu_kernel()


def test_gpu_backend_without_a_gpu_runs_the_cpu_kernel(caplog, monkeypatch):
    monkeypatch.delenv(gpu_backend.KERNEL_ENV, raising=False)
    monkeypatch.setattr(gpu_backend, "cupy_device_count", lambda: 0)
    monkeypatch.setattr(gpu_backend.importlib.util, "find_spec", lambda name: None)
    kernel = gpu_backend.GPUKernel()
    x = parity_dataset(2)
    home = np.ones(x.shape[0], dtype=bool)
    with caplog.at_level(logging.INFO, logger=gpu_backend.__name__):
        assert_same_region(
            kernel.fit_region(x, home, EPS, MIN_POINTS),
            CPU_KERNEL.fit_region(x, home, EPS, MIN_POINTS),
        )
        kernel.fit_region(x, home, EPS, MIN_POINTS)
    assert caplog.text.count("dbscan gpu backend: cpu kernel") == 1


def test_gpu_backend_fit_cores_asks_the_chosen_kernel(monkeypatch):
    monkeypatch.setenv(gpu_backend.KERNEL_ENV, "grid")
    monkeypatch.setattr(grid_kernel, "GRID_KERNEL", NUMPY_KERNEL)
    calls = []
    real = GridKernel.fit_cores
    monkeypatch.setattr(GridKernel, "fit_cores", lambda self, *a: calls.append(1) or real(self, *a))
    x = parity_dataset(3)
    home = np.random.default_rng(0).random(x.shape[0]) < 0.7
    got = gpu_backend.GPUKernel().fit_cores(x, home, EPS, MIN_POINTS)
    want = CPU_KERNEL.fit_cores(x, home, EPS, MIN_POINTS)
    assert calls == [1]
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])


@pytest.mark.parametrize("chosen", ["grid", "cpu"])
def test_gpu_backend_border_pass_is_the_chosen_kernels_or_the_cpus(chosen, monkeypatch):
    monkeypatch.setenv(gpu_backend.KERNEL_ENV, "grid")
    monkeypatch.setattr(grid_kernel, "GRID_KERNEL", NUMPY_KERNEL)
    monkeypatch.setattr(gpu_backend, "choose_gpu_kernel", lambda requested=None: (chosen, "test"))
    calls = []
    real = GridKernel.border_candidates
    monkeypatch.setattr(
        GridKernel, "border_candidates", lambda self, *a: calls.append(1) or real(self, *a)
    )
    cores = np.array([[0.0], [2.0], [2.5]])
    q = np.array([[1.0], [2.2], [9.0]])
    label, tie_q, tie_c = gpu_backend.GPUKernel().border_candidates(q, cores, [5, 3, 3], 1.0)
    assert calls == ([1] if chosen == "grid" else [])  # the CPU kernel has no border method
    assert label.tolist() == [3, 3, -1] and pairs(tie_q, tie_c) == [(0, 3), (0, 5)]


def test_kernels_import_without_pyspark_or_cupy():
    code = (
        "import sys; import spark_clustering.backends.gpu.grid_kernel;"
        "import spark_clustering.backends.gpu.dbscan_kernel;"
        "print(','.join(m for m in ('pyspark', 'cupy', 'cuml') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_cells_linked_by_points_beyond_the_first_sample():
    # two dense cells whose first (sampled) core points are 1.03 apart; only their last points,
    # 0.95 and 1.05, are within eps: the full pass must find that link
    x = np.array([[0.02]] * 10 + [[0.95]] + [[1.98]] * 10 + [[1.05]])
    res = NUMPY_KERNEL.fit_region(x, np.ones(len(x), dtype=bool), eps=1.0, min_points=3)
    assert res.core_index.tolist() == list(range(len(x)))
    assert set(res.core_component.tolist()) == {0}
    assert_same_region(res, CPU_KERNEL.fit_region(x, np.ones(len(x), dtype=bool), 1.0, 3))


#: the array-module functions the kernel may call: present in CuPy 14 with the arguments the
#: kernel passes (checked against its sources: lexsort takes the 2-D key array, bincount's
#: weights are float64, searchsorted takes side=); repeat is absent on purpose (CuPy's takes no
#: device array of repeats)
CUPY_CHECKED = {
    "all", "any", "arange", "asarray", "bincount", "concatenate", "cumsum", "flatnonzero",
    "float64", "floor", "full", "int64", "isfinite", "lexsort", "maximum", "minimum", "ones",
    "searchsorted", "stack", "unique", "where", "zeros",
}  # fmt: skip


def test_kernel_calls_only_array_functions_checked_against_cupy():
    import re

    code = "\n".join(
        line.split("#")[0] for line in Path(grid_kernel.__file__).read_text().splitlines()
    )
    used = set(re.findall(r"\bxp\.([a-z_0-9]+)", code))
    assert used, "the pattern no longer finds the kernel's array calls"
    assert used <= CUPY_CHECKED, f"check these against CuPy first: {sorted(used - CUPY_CHECKED)}"
