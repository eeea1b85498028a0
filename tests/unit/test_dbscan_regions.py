"""DBSCAN's one-pass region step and the driver merge, run in one process without Spark."""

from __future__ import annotations

import numpy as np
import pytest

from dbscan_data import (
    EPS,
    MIN_POINTS,
    assert_same_clustering,
    one_pass,
    pairs,
    parity_dataset,
    sklearn_reference,
)
from spark_clustering.backends.cpu.dbscan_kernel import CPU_KERNEL, border_candidates
from spark_clustering.backends.gpu.grid_kernel import GridKernel
from spark_clustering.partitioning import build_regions

#: the region kernels the one-pass fit runs: the CPU kernel, and the GPU backend's grid kernel
#: on numpy (the same array code as on the device, the device call aside)
KERNELS = {"cpu": CPU_KERNEL, "grid": GridKernel(xp=np)}


@pytest.mark.parametrize("kernel", sorted(KERNELS))
@pytest.mark.parametrize("d", [1, 2, 3, 5])
@pytest.mark.parametrize("n_regions", [1, 4, 23])
def test_one_pass_equals_sklearn(d, n_regions, kernel):
    x = parity_dataset(d)
    ref_labels, ref_core = sklearn_reference(x, EPS, MIN_POINTS)
    labels, is_core, sizes = one_pass(x, n_regions, EPS, MIN_POINTS, kernel=KERNELS[kernel])
    assert_same_clustering(labels, is_core, ref_labels, ref_core)
    assert sorted(set(labels.tolist()) - {-1}) == list(range(len(sizes)))
    assert sum(sizes) == int(ref_core.sum())
    if n_regions > 1:  # ids do not depend on the region layout
        one, _, _ = one_pass(x, 1, EPS, MIN_POINTS)
        np.testing.assert_array_equal(labels, one)


def test_a_kernels_own_border_pass_labels_the_border_points(monkeypatch):
    kernel = KERNELS["grid"]
    calls = []
    real = GridKernel.border_candidates
    monkeypatch.setattr(
        GridKernel, "border_candidates", lambda self, *a: calls.append(len(a[0])) or real(self, *a)
    )
    x = parity_dataset(2)
    labels, is_core, _ = one_pass(x, 4, EPS, MIN_POINTS, kernel=kernel)
    assert len(calls) >= 4 and sum(calls) == int((~is_core).sum())  # each non-core row once
    ref_labels, ref_core = sklearn_reference(x, EPS, MIN_POINTS)
    assert_same_clustering(labels, is_core, ref_labels, ref_core)


def test_border_point_takes_the_closest_core_across_regions():
    # cluster A ends at 0.66, B starts at 1.3; the border point 1.0 is closer to B; with many
    # regions the two clusters and the border point sit in different regions
    a = 0.06 + 0.1 * np.arange(7)
    b = 1.3 + 0.1 * np.arange(7)
    x = np.concatenate([a, b, [1.0]])[:, None]
    for n_regions in (1, 3, 8):
        labels, is_core, _ = one_pass(x, n_regions, 0.35, 4)
        assert not is_core[-1]
        assert labels[-1] == labels[7]


def test_exact_tie_goes_to_the_smaller_cluster_id():
    # the border point 1.0 is exactly 0.5 (binary exact) from both clusters' edge core points;
    # the larger cluster (id 0) is on the right, so the tie must resolve to it even when the
    # region holding the point numbers the left component first
    left = np.array([0.0, 0.125, 0.25, 0.375, 0.5])
    right = np.array([1.5, 1.625, 1.75, 1.875, 2.0, 2.125])
    x = np.concatenate([left, right, [1.0]])[:, None]
    ref_labels, ref_core = sklearn_reference(x, 0.5, 4)
    for n_regions in (1, 2, 4):
        labels, is_core, sizes = one_pass(x, n_regions, 0.5, 4)
        assert_same_clustering(labels, is_core, ref_labels, ref_core)
        assert sizes[0] > sizes[1]
        assert labels[-1] == 0


def test_border_candidates_report_ties():
    cores = np.array([[0.0], [2.0], [2.5]])
    comps = np.array([5, 3, 3])
    q = np.array([[1.0], [2.2], [9.0]])
    label, tie_q, tie_c = border_candidates(q, cores, comps, 1.0)
    assert label.tolist() == [3, 3, -1]
    assert pairs(tie_q, tie_c) == [(0, 3), (0, 5)]


def test_skewed_data_stays_balanced():
    # 90% of the points in one tight blob: the regions split the blob, so no region holds
    # most of the rows, halo copies included
    rng = np.random.default_rng(5)
    x = np.concatenate([rng.normal(0, 0.5, (18_000, 2)), rng.uniform(-40, 40, (2_000, 2))])
    regions = build_regions(x[::4], 16, min_width=2 * 0.05)
    _, region, _ = regions.memberships(x, 2 * 0.05)
    per_region = np.bincount(region, minlength=regions.n_regions)
    assert per_region.max() <= 3 * x.shape[0] / 16


@pytest.mark.parametrize("d", [2, 3])
def test_fit_cores_is_fit_region_without_the_halo_links(d):
    x = parity_dataset(d)
    home = np.random.default_rng(d).random(x.shape[0]) < 0.7
    core_index, core_component = CPU_KERNEL.fit_cores(x, home, EPS, MIN_POINTS)
    full = CPU_KERNEL.fit_region(x, home, EPS, MIN_POINTS)
    np.testing.assert_array_equal(core_index, full.core_index)
    np.testing.assert_array_equal(core_component, full.core_component)


def test_a_region_gives_the_same_rows_in_any_order_of_its_input():
    """The shuffle delivers a region's rows in no fixed order, and a cached partition lost with
    its executor is computed again: the region function must give the same labels and side
    rows whatever the order (the kernel numbers components canonically), or the merge's table
    would map a recomputed partition's components to other clusters."""
    import pyarrow as pa

    from spark_clustering.backends.dbscan_spark import LABEL, _fit_regions
    from spark_clustering.routing import HOME_REGION, ROW_KEY

    class Sum:
        def add(self, _):
            pass

    x = parity_dataset(2)
    regions = build_regions(x[::7], 4, min_width=2 * EPS)
    rows, region, _ = regions.memberships(x, 2 * EPS)
    home_region = regions.home(x)
    sel = region == 0
    idx = rows[sel]
    table = pa.table({ROW_KEY: (idx * 7919) % 1_000_003, HOME_REGION: home_region[idx],
                      "__x0": x[idx, 0], "__x1": x[idx, 1], "id": idx})  # fmt: skip
    fit = _fit_regions(EPS, MIN_POINTS, "cpu", ["__x0", "__x1"], ["id"], regions, Sum())

    def result(t: pa.Table) -> list:
        out = pa.Table.from_batches(list(fit(0, t))).to_pylist()
        return sorted(out, key=lambda r: (r[LABEL] is None, repr(sorted(r.items()))))

    permuted = table.take(pa.array(np.random.default_rng(1).permutation(table.num_rows)))
    assert result(table) == result(permuted)
