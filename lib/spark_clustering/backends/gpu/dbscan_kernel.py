"""DBSCAN's per-region kernels on an NVIDIA GPU, chosen on the executor; imported there only.

The ``gpu`` backend runs one of (:data:`GPU_DBSCAN_KERNELS`), picked by the executor's
``SPARK_CLUSTERING_GPU_KERNEL`` environment variable (``auto``, ``grid`` or ``cuml``; set it with
``spark.executorEnv.SPARK_CLUSTERING_GPU_KERNEL``):

- ``grid`` (what ``auto`` picks when CuPy sees a device): the eps-grid kernel of
  :mod:`spark_clustering.backends.gpu.grid_kernel`, exact and the CPU kernel's result;
- ``cuml`` (what ``auto`` picks when only cuML is installed): cuML's DBSCAN, described below;
- with neither, the CPU kernel, with one log line.

cuML's kernel:

cuML's ``DBSCAN`` clusters a region's home and halo points together. Its core flags are exact
for the home points (their whole eps-neighbourhood is in the region), and its clusters only
connect core points through points that are core even with the halo's partial neighbourhoods,
hence truly core: every union it makes is a true one. The links it cannot see (through a halo
point that is core in its own region only) come from the halo adjacencies, computed by the same
CPU pass as the CPU backend, and are merged by the distributed step exactly as for the CPU.

cuML computes distances on the GPU, where rounding can differ from scikit-learn's for pairs
whose distance equals eps to the last bits; everywhere else the result is the CPU backend's.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import os
from typing import Any

import numpy as np

from ..cpu.dbscan_kernel import (
    CPU_KERNEL,
    RegionResult,
    border_candidates,
    build_grid,
    cell_side,
    halo_edges,
)

log = logging.getLogger(__name__)

#: environment variable that picks the GPU kernel on the executors
KERNEL_ENV = "SPARK_CLUSTERING_GPU_KERNEL"
#: GPU kernel name -> "module:attribute" of its implementation, imported on first use
GPU_DBSCAN_KERNELS: dict[str, str] = {
    "grid": "spark_clustering.backends.gpu.grid_kernel:GRID_KERNEL",
    "cuml": "spark_clustering.backends.gpu.dbscan_kernel:CUML_KERNEL",
    "cpu": "spark_clustering.backends.cpu.dbscan_kernel:CPU_KERNEL",
}


def cupy_device_count() -> int:
    """CUDA devices CuPy sees here (0 when CuPy is missing or finds no driver)."""
    if importlib.util.find_spec("cupy") is None:
        return 0
    try:
        import cupy

        return int(cupy.cuda.runtime.getDeviceCount())
    except Exception:  # any CUDA or driver failure means no usable device
        return 0


def choose_gpu_kernel(requested: str | None = None) -> tuple[str, str]:
    """The GPU kernel to run for ``requested`` (``auto``/``grid``/``cuml``; default: the
    ``SPARK_CLUSTERING_GPU_KERNEL`` variable, else ``auto``), and why."""
    requested = (requested or os.environ.get(KERNEL_ENV) or "auto").strip().lower()
    if requested not in ("auto", "grid", "cuml"):
        raise ValueError(f"{KERNEL_ENV}={requested!r} is not valid; accepted: auto, grid, cuml")
    if requested != "auto":
        return requested, "requested"
    if cupy_device_count() > 0:
        return "grid", "CuPy sees a CUDA device"
    if importlib.util.find_spec("cuml") is not None:
        return "cuml", "cuML is installed, CuPy sees no device"
    return "cpu", "neither CuPy with a device nor cuML is present on this executor"


class GPUKernel:
    """The ``gpu`` backend: the kernel :func:`choose_gpu_kernel` picks, chosen once per
    process and logged in one line."""

    name = "gpu"

    def __init__(self) -> None:
        self._kernel: Any = None

    def kernel(self) -> Any:
        if self._kernel is None:
            chosen, why = choose_gpu_kernel()
            log.info("dbscan gpu backend: %s kernel (%s)", chosen, why)
            module_name, _, attr = GPU_DBSCAN_KERNELS[chosen].partition(":")
            self._kernel = getattr(importlib.import_module(module_name), attr)
        return self._kernel

    def fit_region(
        self, x: np.ndarray, home: np.ndarray, eps: float, min_points: int
    ) -> RegionResult:
        """See :meth:`spark_clustering.backends.cpu.dbscan_kernel.CPUKernel.fit_region`."""
        return self.kernel().fit_region(x, home, eps, min_points)

    def fit_cores(
        self, x: np.ndarray, home: np.ndarray, eps: float, min_points: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """See :meth:`spark_clustering.backends.cpu.dbscan_kernel.CPUKernel.fit_cores`."""
        return self.kernel().fit_cores(x, home, eps, min_points)

    def nearest_core(
        self, q: np.ndarray, cores: np.ndarray, clusters: np.ndarray, eps: float
    ) -> tuple[np.ndarray, np.ndarray]:
        """See :meth:`spark_clustering.backends.cpu.dbscan_kernel.CPUKernel.nearest_core`."""
        return self.kernel().nearest_core(q, cores, clusters, eps)

    def border_candidates(
        self, q: np.ndarray, cores: np.ndarray, components: np.ndarray, eps: float
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The chosen kernel's border pass (the grid kernel's runs on the device), else the
        CPU one: see :func:`spark_clustering.backends.cpu.dbscan_kernel.border_candidates`."""
        own = getattr(self.kernel(), "border_candidates", border_candidates)
        return own(q, cores, components, eps)


class CumlKernel:
    """cuML DBSCAN per region; labelling of new points reuses the CPU kernel (cheap, exact)."""

    name = "cuml"

    def fit_region(
        self, x: np.ndarray, home: np.ndarray, eps: float, min_points: int
    ) -> RegionResult:
        x = np.ascontiguousarray(x, dtype=np.float64)
        home = np.asarray(home, dtype=bool)
        if x.shape[0] == 0:
            empty = np.empty(0, dtype=np.int64)
            return RegionResult(empty, empty, empty, empty)
        core, labels = self._cluster(x, home, eps, min_points)
        grid = build_grid(x, cell_side(eps, x.shape[1]))
        xs = np.ascontiguousarray(x[grid.order])
        hs = np.ascontiguousarray(home[grid.order])
        cs = np.ascontiguousarray(core[grid.order])
        e_halo, e_comp = halo_edges(
            xs, hs, cs, labels[grid.order], grid.cells, grid.starts, grid.ends, eps * eps
        )
        core_idx = np.flatnonzero(core)
        roots, comp = np.unique(labels[core_idx], return_inverse=True)
        return RegionResult(
            core_index=core_idx,
            core_component=comp.astype(np.int64),
            edge_halo_index=grid.order[e_halo],
            edge_component=np.searchsorted(roots, e_comp).astype(np.int64),
        )

    def fit_cores(
        self, x: np.ndarray, home: np.ndarray, eps: float, min_points: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`fit_region` without the halo adjacencies (and the CPU pass that finds them)."""
        x = np.ascontiguousarray(x, dtype=np.float64)
        if x.shape[0] == 0:
            empty = np.empty(0, dtype=np.int64)
            return empty, empty
        core, labels = self._cluster(x, np.asarray(home, dtype=bool), eps, min_points)
        core_idx = np.flatnonzero(core)
        _, comp = np.unique(labels[core_idx], return_inverse=True)
        return core_idx, comp.astype(np.int64)

    @staticmethod
    def _cluster(
        x: np.ndarray, home: np.ndarray, eps: float, min_points: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """cuML's DBSCAN of all the region's points: the home core flags and every point's
        cuML label."""
        from cuml.cluster import DBSCAN as CumlDBSCAN  # GPU-only dependency, executor side

        model = CumlDBSCAN(
            eps=eps,
            min_samples=int(min_points),
            metric="euclidean",
            calc_core_sample_indices=True,
            output_type="numpy",
        )
        model.fit(x)
        core_local = np.zeros(x.shape[0], dtype=bool)
        core_local[np.asarray(model.core_sample_indices_, dtype=np.int64)] = True
        return core_local & home, np.asarray(model.labels_, dtype=np.int64)

    def nearest_core(
        self, q: np.ndarray, cores: np.ndarray, clusters: np.ndarray, eps: float
    ) -> tuple[np.ndarray, np.ndarray]:
        return CPU_KERNEL.nearest_core(q, cores, clusters, eps)


CUML_KERNEL = CumlKernel()
GPU_KERNEL = GPUKernel()
