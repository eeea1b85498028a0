"""UMAP on NVIDIA GPUs: cuML fits on the driver sample; transform's k-NN runs in cupy.

Written against cuML's documented API (``cuml.manifold.UMAP`` with ``n_neighbors``,
``n_components``, ``min_dist``, ``metric``, ``random_state``; ``fit_transform`` returning the
input's array type) and cupy. cuml and cupy are imported inside the methods, so this module
imports on a machine without them; it runs only where :func:`spark_clustering.base.
resolve_backend` found a GPU.

Transform places points exactly as the CPU kernel does (same weights, start, epochs, seeds;
see :mod:`spark_clustering.backends.cpu.umap_kernel`); only the exact nearest-neighbour search
(the part that grows with ``sample x rows``) runs on the device. A model fitted on either
backend can be saved, loaded and applied on the other.
"""

from __future__ import annotations

import importlib
from typing import Any

import numpy as np

from ..cpu.umap_kernel import (
    FitResult,
    as_queries,
    find_ab_params,
    transform_points,
)

#: Spark-facing Param -> cuML keyword (the one translation table of this backend).
CUML_NAMES = {
    "nNeighbors": "n_neighbors",
    "nComponents": "n_components",
    "minDist": "min_dist",
    "metric": "metric",
    "seed": "random_state",
}
_QUERY_BLOCK = 4096


def refine_neighbours(
    prepared: dict[str, Any], q: np.ndarray, idx: np.ndarray, metric: str, k: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Exact distances to candidate neighbours (from differences): the ``k`` nearest, sorted."""
    diff = q[:, None, :] - prepared["train"][idx]
    sqd = np.einsum("ijk,ijk->ij", diff, diff)
    dist = 0.5 * sqd if metric == "cosine" else np.sqrt(sqd)  # 1 - cos = ||u - v||^2 / 2
    order = np.lexsort((idx, dist), axis=1)[:, : idx.shape[1] if k is None else k]  # ties: index
    return np.take_along_axis(idx, order, axis=1), np.take_along_axis(dist, order, axis=1)


def cupy_knn(
    prepared: dict[str, Any], queries: np.ndarray, k: int, metric: str, xp: Any = None
) -> tuple[np.ndarray, np.ndarray]:
    """Exact k nearest training points on the GPU: (indices, distances), sorted, as numpy.

    ``xp`` is the array module: CuPy (default) or numpy, which runs the same code on the host
    for the tests. Candidates come from ``|t|^2 - 2 q.t`` on the device; their exact distances
    are recomputed from differences on the host (:func:`refine_neighbours`).
    """
    if xp is None:
        xp = importlib.import_module("cupy")
    kk = min(int(k), len(prepared["train"]))
    q_all = as_queries(queries, metric)
    if kk == 0 or len(q_all) == 0:
        empty = np.empty((len(q_all), kk))
        return empty.astype(np.int64), empty
    key = f"_train_{xp.__name__}"  # the training points on this array module, kept
    if key not in prepared:
        train = xp.asarray(prepared["train"])
        prepared[key] = (train, (train * train).sum(axis=1))
    train, sq = prepared[key]
    idx_parts = []
    for start in range(0, len(q_all), _QUERY_BLOCK):
        q = xp.asarray(q_all[start : start + _QUERY_BLOCK])
        cand = sq[None, :] - 2.0 * (q @ train.T)
        part = xp.argpartition(cand, kk - 1, axis=1)[:, :kk]
        idx_parts.append(part.get() if hasattr(part, "get") else np.asarray(part))
    idx = np.concatenate(idx_parts).astype(np.int64)
    return refine_neighbours(prepared, q_all, idx, metric)


class GPUUMAPKernel:
    """cuML UMAP fit on the driver; cupy k-NN plus the shared placement on the executors."""

    name = "gpu"

    def fit(self, x: np.ndarray, params: dict[str, Any]) -> FitResult:
        from cuml.manifold import UMAP as CumlUMAP

        kwargs = {CUML_NAMES[k]: v for k, v in params.items() if k in CUML_NAMES}
        model = CumlUMAP(**kwargs)
        embedding = np.asarray(model.fit_transform(np.ascontiguousarray(x, dtype=np.float32)))
        # cuML fits the same curve as umap-learn from spread=1 and min_dist
        a, b = find_ab_params(1.0, float(params["minDist"]))
        return FitResult(embedding.astype(np.float64), a, b)

    def transform(self, state: dict[str, Any], queries: np.ndarray) -> np.ndarray:
        return transform_points(state, queries, cupy_knn)


GPU_KERNEL = GPUUMAPKernel()
