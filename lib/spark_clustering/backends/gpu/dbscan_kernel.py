"""DBSCAN's per-region kernel on an NVIDIA GPU with cuML, imported on the executors only.

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

import numpy as np

from ..cpu.dbscan_kernel import CPU_KERNEL, RegionResult, build_grid, cell_side, halo_edges


class GPUKernel:
    """cuML DBSCAN per region; labelling of new points reuses the CPU kernel (cheap, exact)."""

    name = "gpu"

    def fit_region(
        self, x: np.ndarray, home: np.ndarray, eps: float, min_points: int
    ) -> RegionResult:
        from cuml.cluster import DBSCAN as CumlDBSCAN  # GPU-only dependency, executor side

        x = np.ascontiguousarray(x, dtype=np.float64)
        home = np.asarray(home, dtype=bool)
        if x.shape[0] == 0:
            empty = np.empty(0, dtype=np.int64)
            return RegionResult(empty, empty, empty, empty)
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
        core = core_local & home
        labels = np.asarray(model.labels_, dtype=np.int64)
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

    def nearest_core(
        self, q: np.ndarray, cores: np.ndarray, clusters: np.ndarray, eps: float
    ) -> tuple[np.ndarray, np.ndarray]:
        return CPU_KERNEL.nearest_core(q, cores, clusters, eps)


GPU_KERNEL = GPUKernel()
