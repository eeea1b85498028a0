"""The grid kernel on the device (CuPy) against the CPU kernel: the device run of the contract
that ``tests/unit/test_dbscan_grid_kernel.py`` checks with numpy everywhere."""

from __future__ import annotations

import numpy as np
import pytest

from dbscan_data import EPS, MIN_POINTS, assert_same_border, assert_same_region, parity_dataset

pytestmark = pytest.mark.gpu


@pytest.fixture()
def cupy_device():
    """Skip unless CuPy sees a CUDA device (no Spark or cuML needed)."""
    from spark_clustering.backends.gpu.dbscan_kernel import cupy_device_count

    if cupy_device_count() == 0:
        pytest.skip("needs CuPy and a CUDA device")
    import cupy

    return cupy


@pytest.mark.parametrize("d", [1, 2, 3, 5])
def test_device_run_is_the_cpu_kernels_result(cupy_device, d):
    from spark_clustering.backends.cpu.dbscan_kernel import CPU_KERNEL
    from spark_clustering.backends.gpu.grid_kernel import GridKernel

    x = parity_dataset(d)
    home = np.random.default_rng(d).random(x.shape[0]) < 0.8
    kernel = GridKernel(xp=cupy_device)
    assert_same_region(
        kernel.fit_region(x, home, EPS, MIN_POINTS), CPU_KERNEL.fit_region(x, home, EPS, MIN_POINTS)
    )
    fit = CPU_KERNEL.fit_region(x, np.ones(x.shape[0], dtype=bool), EPS, MIN_POINTS)
    want = CPU_KERNEL.nearest_core(x, x[fit.core_index], fit.core_component, EPS)
    got = kernel.nearest_core(x, x[fit.core_index], fit.core_component, EPS)
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])


@pytest.mark.parametrize("d", [2, 3, 5])
def test_device_fit_cores_and_border_pass_are_the_cpu_kernels(cupy_device, d):
    from spark_clustering.backends.cpu.dbscan_kernel import CPU_KERNEL, border_candidates
    from spark_clustering.backends.gpu.grid_kernel import GridKernel

    x = parity_dataset(d)
    home = np.random.default_rng(d).random(x.shape[0]) < 0.7
    kernel = GridKernel(xp=cupy_device)
    got = kernel.fit_cores(x, home, EPS, MIN_POINTS)
    want = CPU_KERNEL.fit_cores(x, home, EPS, MIN_POINTS)
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])
    q = x + np.random.default_rng(9).normal(0, EPS / 2, x.shape)
    assert_same_border(
        kernel.border_candidates(q, x[want[0]], want[1], EPS),
        border_candidates(q, x[want[0]], want[1], EPS),
    )


@pytest.mark.parametrize("n_regions", [1, 23])
def test_device_one_pass_equals_sklearn(cupy_device, n_regions):
    from dbscan_data import assert_same_clustering, one_pass, sklearn_reference
    from spark_clustering.backends.gpu.grid_kernel import GridKernel

    x = parity_dataset(3)
    labels, is_core, _ = one_pass(x, n_regions, EPS, MIN_POINTS, kernel=GridKernel(xp=cupy_device))
    ref_labels, ref_core = sklearn_reference(x, EPS, MIN_POINTS)
    assert_same_clustering(labels, is_core, ref_labels, ref_core)
