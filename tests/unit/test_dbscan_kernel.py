"""The numba kernel and the spatial partitioning, without Spark."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from dbscan_data import EPS, MIN_POINTS, assert_same_clustering, parity_dataset, sklearn_reference
from spark_clustering.backends.cpu.dbscan_kernel import CPU_KERNEL
from spark_clustering.partitioning import build_regions


def _cluster_in_regions(x: np.ndarray, n_regions: int, eps: float, min_points: int):
    """The distributed algorithm's steps, run in one process over a region layout."""
    rng = np.random.default_rng(0)
    sample = x[rng.choice(x.shape[0], size=min(500, x.shape[0]), replace=False)]
    regions = build_regions(sample, n_regions, min_width=eps)
    rows, region, home = regions.memberships(x, eps)
    assert np.bincount(rows[home], minlength=x.shape[0]).tolist() == [1] * x.shape[0]
    core = np.zeros(x.shape[0], dtype=bool)
    comp_of_point = np.full(x.shape[0], -1)
    edges: list[tuple[int, int]] = []  # (component, halo point)
    offset = 0
    for r in range(regions.n_regions):
        sel = region == r
        idx = rows[sel]
        res = CPU_KERNEL.fit_region(x[idx], home[sel], eps, min_points)
        core[idx[res.core_index]] = True
        comp_of_point[idx[res.core_index]] = res.core_component + offset
        edges += list(zip(res.edge_component + offset, idx[res.edge_halo_index], strict=True))
        offset += int(res.core_component.max(initial=-1)) + 1
    links = [(a, comp_of_point[h]) for a, h in edges if core[h]]
    a = np.array([p[0] for p in links], dtype=int)
    b = np.array([p[1] for p in links], dtype=int)
    graph = coo_matrix((np.ones(len(a)), (a, b)), shape=(offset, offset))
    _, root = connected_components(graph, directed=False)
    labels = np.full(x.shape[0], -1)
    labels[core] = root[comp_of_point[core]]
    cores = x[core]
    nearest, is_core = CPU_KERNEL.nearest_core(x, cores, labels[core], eps)
    return nearest, is_core, core


@pytest.mark.parametrize("d", [1, 2, 3, 5, 10])
@pytest.mark.parametrize("n_regions", [1, 4, 23])
def test_regions_merge_equals_sklearn(d, n_regions):
    x = parity_dataset(d)
    ref_labels, ref_core = sklearn_reference(x, EPS, MIN_POINTS)
    labels, is_core, core = _cluster_in_regions(x, n_regions, EPS, MIN_POINTS)
    np.testing.assert_array_equal(core, ref_core)
    assert_same_clustering(labels, is_core, ref_labels, ref_core)


def test_border_point_takes_closest_core_cluster():
    # two clusters on a line; the border point at 1.0 is 0.34 from cluster A's edge core point
    # (0.66) and 0.3 from cluster B's (1.3): it joins B
    a = 0.06 + 0.1 * np.arange(7)[:, None]
    b = 1.3 + 0.1 * np.arange(7)[:, None]
    x = np.concatenate([a, b, [[1.0]]])
    res = CPU_KERNEL.fit_region(x, np.ones(len(x), dtype=bool), 0.35, 4)
    core = np.zeros(len(x), dtype=bool)
    core[res.core_index] = True
    assert not core[-1]
    comp = np.full(len(x), -1)
    comp[res.core_index] = res.core_component
    label, is_core = CPU_KERNEL.nearest_core(x, x[core], comp[core], 0.35)
    assert label[-1] == comp[7] != comp[0]
    assert is_core.tolist() == core.tolist()


def test_tie_goes_to_smaller_cluster_id():
    cores = np.array([[0.0], [2.0]])
    label, _ = CPU_KERNEL.nearest_core(np.array([[1.0]]), cores, np.array([7, 3]), 1.0)
    assert label.tolist() == [3]


def test_regions_tile_space_and_follow_density():
    rng = np.random.default_rng(1)
    dense = rng.normal(0, 0.1, size=(9000, 2))
    sparse = rng.uniform(-50, 50, size=(1000, 2))
    sample = np.concatenate([dense, sparse])
    regions = build_regions(sample, 16, min_width=0.01)
    assert regions.n_regions == 16
    counts = np.bincount(regions.home(sample), minlength=16)
    assert counts.max() <= 3 * sample.shape[0] / 16  # the dense blob is split, not one task
    far = np.array([[1e9, -1e9], [-1e12, 3.0]])
    assert regions.home(far).shape == (2,)  # points outside the sample still have a home


def test_halo_contains_every_point_within_eps_of_a_region():
    rng = np.random.default_rng(2)
    x = rng.uniform(0, 10, size=(3000, 3))
    regions = build_regions(x, 8, min_width=0.5)
    rows, region, _ = regions.memberships(x, 0.5)
    home = regions.home(x)
    member = set(zip(rows.tolist(), region.tolist(), strict=True))
    for i in rng.choice(3000, 50, replace=False):
        near = np.flatnonzero(((x - x[i]) ** 2).sum(axis=1) <= 0.25)
        for j in near:
            assert (int(j), int(home[i])) in member


def test_border_ties_past_the_first_buffer():
    """400 tie pairs (every query exactly between two cores) grow the kernel's tie buffers from
    64 entries several times; each query is tied to both cores and labelled with the smaller."""
    from spark_clustering.backends.cpu.dbscan_kernel import border_candidates

    queries = np.column_stack([np.ones(200), np.linspace(-0.3, 0.3, 200)])
    cores = np.array([[0.0, 0.0], [2.0, 0.0]])
    label, tie_q, tie_c = border_candidates(queries, cores, np.array([0, 1]), 1.5)
    assert (label == 0).all()
    pairs = sorted(zip(tie_q.tolist(), tie_c.tolist(), strict=True))
    assert pairs == [(q, c) for q in range(200) for c in (0, 1)]


def _bound_holds(offset: np.ndarray, d: int) -> bool:
    return int((np.maximum(np.abs(offset) - 1, 0) ** 2).sum()) <= d


@pytest.mark.parametrize("d", [1, 2, 3, 4, 6])
@pytest.mark.parametrize("shuffled", [False, True])
def test_neighbour_walk_finds_exactly_the_cells_within_the_bound(d, shuffled):
    """The walk that reuses its prefix ranges from one cell to the next returns, for every
    cell asked about (in sorted order, or in any order), exactly the existing cells whose
    offset passes the bound, each with its far flag."""
    from spark_clustering.backends.cpu.dbscan_kernel import _neighbours, _walk

    rng = np.random.default_rng(d)
    cells = np.unique(rng.integers(-4, 5, size=(600, d)), axis=0).astype(np.int64)
    queries = np.unique(rng.integers(-6, 7, size=(300, d)), axis=0).astype(np.int64)
    if shuffled:
        queries = queries[rng.permutation(queries.shape[0])]
    walk = _walk(cells)
    out = np.empty(cells.shape[0], dtype=np.int64)
    far = np.empty(cells.shape[0], dtype=np.bool_)
    for c in queries:
        m = _neighbours(cells, c, walk, out, far)
        got = sorted(zip(out[:m].tolist(), far[:m].tolist(), strict=True))
        want = sorted(
            (k, bool((np.abs(cells[k] - c) > 1).any()))
            for k in range(cells.shape[0])
            if _bound_holds(cells[k] - c, d)
        )
        assert got == want, c


def lexicographic_order(rows: np.ndarray) -> np.ndarray:
    """sort_rows' order, after checking its run starts against the sorted rows."""
    from spark_clustering.backends.cpu.dbscan_kernel import sort_rows

    order, first = sort_rows(rows)
    ordered = rows[order]
    runs = np.r_[True, np.any(ordered[1:] != ordered[:-1], axis=1)][: len(rows)]
    assert np.array_equal(first, runs)
    return order


def test_sort_rows_is_lexsort_also_past_62_bits():
    rng = np.random.default_rng(0)
    small = rng.integers(-3, 4, size=(2000, 3))
    assert np.array_equal(lexicographic_order(small), np.lexsort(small.T[::-1]))
    middle = small.copy()
    middle[:, 0] *= 2**25
    middle[:, 1] *= 2**25  # one key, but key * rows + row overflows: the stable argsort
    assert np.array_equal(lexicographic_order(middle), np.lexsort(middle.T[::-1]))
    wide = small.copy()
    wide[:, 0] *= 2**40
    wide[:, 1] *= 2**30  # the spans' product no longer fits in one key
    assert np.array_equal(lexicographic_order(wide), np.lexsort(wide.T[::-1]))
    one = small[:, :1]
    assert np.array_equal(lexicographic_order(one), np.lexsort(one.T[::-1]))
    assert lexicographic_order(np.empty((0, 3), dtype=np.int64)).size == 0


@pytest.mark.parametrize("scale", [1, 2**25, 2**40])
def test_build_grid_cells_and_ranges(scale):
    """The grid's order, cells and ranges against a lexsort of the cells, on all three sort
    paths (one key sorted with the rows, a stable argsort of the key, a lexsort)."""
    from spark_clustering.backends.cpu.dbscan_kernel import build_grid

    rng = np.random.default_rng(2)
    x = rng.integers(-4, 5, size=(3000, 3)).astype(np.float64) + 0.5
    x[:, :2] *= scale
    grid = build_grid(x, 1.0)
    cells = np.floor(x - grid.origin).astype(np.int64)
    want = np.lexsort(cells.T[::-1])
    assert np.array_equal(grid.order, want)
    distinct, counts = np.unique(cells, axis=0, return_counts=True)
    assert np.array_equal(grid.cells, distinct)
    assert np.array_equal(grid.ends - grid.starts, counts)
    assert np.array_equal(grid.starts, np.r_[0, np.cumsum(counts)[:-1]])
    single = build_grid(x[:1], 1.0)
    assert single.starts.tolist() == [0] and single.ends.tolist() == [1]


def test_dense_ranks_are_unique_inverse():
    from spark_clustering.backends.cpu.dbscan_kernel import _dense_ranks

    rng = np.random.default_rng(3)
    values = rng.choice(rng.choice(1000, size=40, replace=False), size=700)
    want = np.unique(values, return_inverse=True)[1].reshape(-1)
    assert np.array_equal(_dense_ranks(values, 1000), want)
    assert _dense_ranks(np.empty(0, dtype=np.int64), 5).size == 0


def test_box_tests_are_numpys_comparisons():
    """On, and one ulp either side of, every bound (and infinite bounds)."""
    from spark_clustering.backends.cpu.dbscan_kernel import box_tests

    rng = np.random.default_rng(4)
    lo, hi = np.array([0.1, -np.inf, 0.3]), np.array([0.7, 0.5, np.inf])
    a, b = np.array([0.2, 0.0, 0.4]), np.array([0.6, 0.4, 0.9])
    edges = np.concatenate([lo, hi, a, b])
    edges = edges[np.isfinite(edges)]
    near = np.concatenate([edges, np.nextafter(edges, -np.inf), np.nextafter(edges, np.inf)])
    x = rng.choice(near, size=(4000, 3))
    x[:1000] = rng.uniform(-1, 2, size=(1000, 3))
    inside, near_ab, near_hi = box_tests(x, lo, hi, (a, b), (hi, lo))
    assert np.array_equal(inside, np.all((x >= lo) & (x <= hi), axis=1))
    assert np.array_equal(near_ab, np.any((x <= a) | (x >= b), axis=1))
    assert np.array_equal(near_hi, np.any((x <= hi) | (x >= lo), axis=1))


@pytest.mark.parametrize("numba_from", [0, 10**9], ids=["numba", "numpy"])
def test_smallest_per_group_is_the_lexicographic_minimum(numba_from):
    from spark_clustering.backends.dbscan_regions import smallest_per_group

    rng = np.random.default_rng(1)
    x = rng.integers(0, 3, size=(500, 3)).astype(np.float64)  # many equal coordinates
    rows = rng.choice(500, size=300, replace=False)
    group = rng.integers(0, 7, size=300)  # group 6 may be empty; 7 and 8 are
    got = smallest_per_group(x, rows, group, 9, numba_from=numba_from)
    empty = smallest_per_group(x, rows[:0], group[:0], 3, numba_from=numba_from)
    assert empty.tolist() == [-1, -1, -1]
    for g in range(9):
        members = rows[group == g]
        if members.size == 0:
            assert got[g] == -1
            continue
        order = np.lexsort(x[members].T[::-1])
        assert np.array_equal(x[got[g]], x[members[order[0]]])
        equal = members[(x[members] == x[members[order[0]]]).all(axis=1)]
        assert got[g] == members[np.isin(members, equal)][0]  # the first among equals


@pytest.mark.parametrize("n_regions", [3, 5, 12, 13])
def test_regions_hold_equal_shares_for_any_count(n_regions):
    """Not only for powers of two: halving at the median gave 12 regions 4 of twice the size."""
    rng = np.random.default_rng(n_regions)
    sample = np.concatenate([rng.normal(0, 1, (30000, 3)), rng.normal(8, 3, (10000, 3))])
    regions = build_regions(sample, n_regions, min_width=0.01)
    assert regions.n_regions == n_regions
    counts = np.bincount(regions.home(sample), minlength=n_regions)
    assert counts.max() <= 1.02 * sample.shape[0] / n_regions
    assert counts.min() >= 0.98 * sample.shape[0] / n_regions


def test_regions_that_a_narrow_box_cannot_use_go_to_the_others():
    """Half the sample sits in a spot narrower than the halo: it stays one region, and the
    regions meant for it split the other half."""
    rng = np.random.default_rng(4)
    spot = np.full((5000, 2), 7.0) + rng.normal(0, 1e-4, (5000, 2))
    spread = rng.uniform(-100, 0, (5000, 2))
    regions = build_regions(np.concatenate([spot, spread]), 8, min_width=0.5)
    assert regions.n_regions == 8
    counts = np.bincount(regions.home(spread), minlength=8)
    assert (counts > 0).sum() == 7  # seven regions share the spread half, one holds the spot
    assert counts[counts > 0].max() <= 1.2 * 5000 / 7
