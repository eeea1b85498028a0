"""UMAP numeric kernels for the CPU: fit on the driver sample, embed new points on executors.

Fit is umap-learn's (``umap.UMAP.fit_transform`` on the sample). Transform is ours and places
each new point as umap-learn's ``UMAP.transform`` does, with the changes that make it fast,
exact and independent of how Spark splits the rows:

1. the ``nNeighbors`` nearest training points are found by brute force (float32 BLAS
   products screen ``2 * nNeighbors`` candidates with a numba top-k scan, their distances are
   recomputed exactly in float64), not by approximate NN-descent;
2. fuzzy membership weights ``exp(-d / sigma)`` with ``sigma`` from the same binary search as
   umap-learn's ``smooth_knn_dist`` (``local_connectivity`` 0, as its transform uses), the
   lower clamp on ``sigma`` taken from the row's own mean distance (umap-learn uses the mean
   over the whole transform batch, which would tie a row's result to its batch);
3. the start position is the weighted average of the neighbours' embeddings; a point whose
   nearest training point is at distance 0 (a training row) gets that point's fitted embedding
   and is not moved;
4. optionally ``n_epochs`` of umap-learn's transform optimisation (attraction along the edges,
   negative sampling of training points, learning rate ``1/4`` decaying linearly, gradients
   clipped to 4), per point, with a random stream seeded from the seed and the point's own
   coordinates, so a row's embedding does not depend on its partition or batch. Edges keep
   umap-learn's pruning (weight below ``max / n_epochs`` dropped) with ``max`` the largest
   possible weight, 1.

Nothing here imports Spark; umap-learn is imported only inside :meth:`CPUUMAPKernel.fit`.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Any

import numba
import numpy as np

SMOOTH_K_TOLERANCE = 1e-5
MIN_K_DIST_SCALE = 1e-3
# float32 candidate distances screened at once (~5 MB: the sgemm writes them and the top-k scan
# reads them while they are still in cache; 32 MB blocks ran 1.7x slower)
_BLOCK_ELEMENTS = 1_280_000
_REFINE_ROWS = 2048  # queries refined at once: bounds the (rows, 2k, d) float64 temporaries

#: Spark-facing Param -> umap-learn keyword (the one translation table of this backend).
UMAP_LEARN_NAMES = {
    "nNeighbors": "n_neighbors",
    "nComponents": "n_components",
    "minDist": "min_dist",
    "metric": "metric",
    "seed": "random_state",
}


@dataclass(frozen=True)
class FitResult:
    """What a backend's fit returns: the sample's embedding and the curve parameters a, b."""

    embedding: np.ndarray
    a: float
    b: float


def find_ab_params(spread: float, min_dist: float) -> tuple[float, float]:
    """The ``a, b`` of ``1 / (1 + a d^(2b))`` fitted as umap-learn's ``find_ab_params``."""
    from scipy.optimize import curve_fit

    def curve(x: np.ndarray, a: float, b: float) -> np.ndarray:
        return 1.0 / (1.0 + a * x ** (2 * b))

    xv = np.linspace(0, spread * 3, 300)
    yv = np.where(xv < min_dist, 1.0, np.exp(-(xv - min_dist) / spread))
    params, _ = curve_fit(curve, xv, yv)
    return float(params[0]), float(params[1])


# --------------------------------------------------------------------------- exact k-NN


@numba.njit(cache=True, nogil=True)
def _topk_rows(cand: np.ndarray, k: int) -> np.ndarray:  # pragma: no cover - numba
    """Column indices of the ``k`` smallest values of each row (unordered)."""
    n, m = cand.shape
    out = np.empty((n, k), dtype=np.int64)
    vals = np.empty(k)
    for i in range(n):
        # keep the k best in vals/out[i] as a max-heap by linear max search (k is small)
        for j in range(k):
            vals[j] = cand[i, j]
            out[i, j] = j
        worst = 0
        for j in range(1, k):
            if vals[j] > vals[worst]:
                worst = j
        for j in range(k, m):
            v = cand[i, j]
            if v < vals[worst]:
                vals[worst] = v
                out[i, worst] = j
                worst = 0
                for t in range(1, k):
                    if vals[t] > vals[worst]:
                        worst = t
    return out


def prepare_training(train: np.ndarray, metric: str) -> dict[str, np.ndarray]:
    """Arrays the k-NN search needs, computed once per worker (centred for precision)."""
    x = np.ascontiguousarray(train, dtype=np.float64)
    if metric == "cosine":
        norms = np.linalg.norm(x, axis=1)
        x = x / np.where(norms > 0, norms, 1.0)[:, None]
        center = np.zeros(x.shape[1])
    else:
        center = x.mean(axis=0)
    xc = x - center
    xc32 = xc.astype(np.float32)
    return {
        "train": x,
        "center": center,
        # -2 x^T, contiguous: one sgemm gives -2 q.x for a block of queries
        "minus2_t32": np.ascontiguousarray((np.float32(-2.0) * xc32).T),
        "sqnorm32": (xc32.astype(np.float64) ** 2).sum(axis=1).astype(np.float32),
    }


def exact_knn(
    prepared: dict[str, np.ndarray], queries: np.ndarray, k: int, metric: str
) -> tuple[np.ndarray, np.ndarray]:
    """Exact ``k`` nearest training points of each query: (indices, distances), sorted.

    Candidates are screened in float32 (BLAS sgemm, several times faster than float64): the
    ``2k`` best by ``||x||^2 - 2 q.x`` on centred data; their distances are then recomputed
    in float64 from differences and the ``k`` nearest kept. The result equals a float64
    search unless float32 rounding exceeds the gap between a row's k-th and 2k-th neighbour.
    """
    q = as_queries(queries, metric)
    xt, sq = prepared["minus2_t32"], prepared["sqnorm32"]
    n_train = len(sq)
    m = min(2 * k, n_train)
    step = max(1, _BLOCK_ELEMENTS // max(1, n_train))
    idx = np.empty((len(q), m), dtype=np.int64)
    # one candidate buffer per worker, reused by every block and batch: fresh arrays cost page
    # faults that took longer than the sgemm itself
    buf = prepared.get("_candidates")
    if buf is None or buf.shape != (step, n_train):
        buf = prepared["_candidates"] = np.empty((step, n_train), dtype=np.float32)
    qc = (q - prepared["center"]).astype(np.float32)
    for start in range(0, len(q), step):
        block = qc[start : start + step]
        cand = buf[: len(block)]
        np.matmul(block, xt, out=cand)
        cand += sq[None, :]  # ||q - x||^2 - ||q||^2
        idx[start : start + step] = _topk_rows(cand, m)
    kk = min(k, m)
    out_idx = np.empty((len(q), kk), dtype=np.int64)
    out_dist = np.empty((len(q), kk))
    for start in range(0, len(q), _REFINE_ROWS):
        part = slice(start, start + _REFINE_ROWS)
        out_idx[part], out_dist[part] = refine_neighbours(prepared, q[part], idx[part], metric, k)
    return out_idx, out_dist


def as_queries(queries: np.ndarray, metric: str) -> np.ndarray:
    """Queries as float64 rows, unit-normalised for the cosine metric (as the training rows)."""
    q = np.ascontiguousarray(queries, dtype=np.float64)
    if metric == "cosine":
        norms = np.linalg.norm(q, axis=1)
        q = q / np.where(norms > 0, norms, 1.0)[:, None]
    return q


def refine_neighbours(
    prepared: dict[str, Any], q: np.ndarray, idx: np.ndarray, metric: str, k: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Exact distances to candidate neighbours (from differences): the ``k`` nearest, sorted."""
    diff = q[:, None, :] - prepared["train"][idx]
    sqd = np.einsum("ijk,ijk->ij", diff, diff)
    dist = 0.5 * sqd if metric == "cosine" else np.sqrt(sqd)  # 1 - cos = ||u - v||^2 / 2
    order = np.argsort(dist, axis=1, kind="stable")[:, : idx.shape[1] if k is None else k]
    return np.take_along_axis(idx, order, axis=1), np.take_along_axis(dist, order, axis=1)


# --------------------------------------------------------------------------- membership


def smooth_knn_sigmas(dists: np.ndarray, k: float, n_iter: int = 64) -> np.ndarray:
    """Per-row ``sigma`` so that ``sum_{j>=1} exp(-d_j / sigma) = log2(k)`` (rho = 0).

    The binary search of umap-learn's ``smooth_knn_dist`` with ``local_connectivity=0`` (the
    value its transform uses), vectorised over rows.
    """
    target = math.log2(k)
    n = len(dists)
    lo = np.zeros(n)
    hi = np.full(n, np.inf)
    mid = np.ones(n)
    done = np.zeros(n, dtype=bool)
    rest = dists[:, 1:]
    for _ in range(n_iter):
        with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
            psum = np.where(rest > 0, np.exp(-(rest / mid[:, None])), 1.0).sum(axis=1)
        done |= np.abs(psum - target) < SMOOTH_K_TOLERANCE
        if done.all():
            break
        active = ~done
        too_big = active & (psum > target)
        too_small = active & ~(psum > target)
        hi = np.where(too_big, mid, hi)
        lo = np.where(too_small, mid, lo)
        mid = np.where(
            too_big,
            (lo + hi) / 2.0,
            np.where(too_small, np.where(np.isinf(hi), mid * 2.0, (lo + hi) / 2.0), mid),
        )
    floor = MIN_K_DIST_SCALE * dists.mean(axis=1)
    return np.maximum(mid, floor)


def membership_weights(dists: np.ndarray, sigmas: np.ndarray) -> np.ndarray:
    """``exp(-d / sigma)``, 1 where ``d <= 0`` or ``sigma == 0`` (umap-learn's strengths)."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        w = np.exp(-(dists / sigmas[:, None]))
    w[(dists <= 0) | (sigmas[:, None] == 0)] = 1.0
    return w


# --------------------------------------------------------------------------- optimisation


def point_seeds(points: np.ndarray, seed: int) -> np.ndarray:
    """One 64-bit stream seed per row from the seed and the row's coordinates."""
    # + 0.0 turns -0.0 into 0.0: a sparse vector drops the sign of its zeros
    data = np.ascontiguousarray(points, dtype=np.float64) + 0.0
    salt = hashlib.blake2b(str(int(seed)).encode(), digest_size=8).digest()
    out = np.empty(len(data), dtype=np.uint64)
    for i in range(len(data)):
        h = hashlib.blake2b(data[i].tobytes(), digest_size=8, key=salt).digest()
        out[i] = np.frombuffer(h, dtype=np.uint64)[0]
    return out


@numba.njit(cache=True, nogil=True)
def _next(state: np.ndarray) -> np.uint64:  # pragma: no cover - numba
    # splitmix64: small, fast, good enough for picking negative samples
    state[0] += np.uint64(0x9E3779B97F4A7C15)
    z = state[0]
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


@numba.njit(cache=True, nogil=True)
def _clip(v: float) -> float:  # pragma: no cover - numba
    if v > 4.0:
        return 4.0
    if v < -4.0:
        return -4.0
    return v


@numba.njit(cache=True, nogil=True)
def optimize_points(
    start: np.ndarray,
    tail: np.ndarray,
    idx: np.ndarray,
    weights: np.ndarray,
    fixed: np.ndarray,
    seeds: np.ndarray,
    n_epochs: int,
    a: float,
    b: float,
    gamma: float,
    initial_alpha: float,
    negative_sample_rate: float,
) -> np.ndarray:  # pragma: no cover - numba
    """umap-learn's transform epochs (``move_other=False``), one point at a time."""
    out = start.copy()
    n, k = idx.shape
    dim = out.shape[1]
    n_tail = tail.shape[0]
    eps_sample = np.empty(k)
    next_sample = np.empty(k)
    eps_neg = np.empty(k)
    next_neg = np.empty(k)
    state = np.empty(1, dtype=np.uint64)
    for i in range(n):
        if fixed[i]:
            continue
        state[0] = seeds[i]
        current = out[i]
        for e in range(k):
            w = weights[i, e]
            if w < 1.0 / n_epochs:  # umap-learn prunes weights below max / n_epochs
                eps_sample[e] = -1.0
            else:
                eps_sample[e] = 1.0 / w
            next_sample[e] = eps_sample[e]
            eps_neg[e] = eps_sample[e] / negative_sample_rate
            next_neg[e] = eps_neg[e]
        for epoch in range(n_epochs):
            alpha = initial_alpha * (1.0 - epoch / n_epochs)
            for e in range(k):
                if eps_sample[e] <= 0 or next_sample[e] > epoch:
                    continue
                other = tail[idx[i, e]]
                dist2 = 0.0
                for d in range(dim):
                    diff = current[d] - other[d]
                    dist2 += diff * diff
                if dist2 > 0.0:
                    coeff = -2.0 * a * b * dist2 ** (b - 1.0) / (a * dist2**b + 1.0)
                else:
                    coeff = 0.0
                for d in range(dim):
                    current[d] += _clip(coeff * (current[d] - other[d])) * alpha
                next_sample[e] += eps_sample[e]
                n_neg = int((epoch - next_neg[e]) / eps_neg[e])
                for _ in range(n_neg):
                    other = tail[_next(state) % np.uint64(n_tail)]
                    dist2 = 0.0
                    for d in range(dim):
                        diff = current[d] - other[d]
                        dist2 += diff * diff
                    if dist2 > 0.0:
                        coeff = 2.0 * gamma * b / ((0.001 + dist2) * (a * dist2**b + 1.0))
                        for d in range(dim):
                            current[d] += _clip(coeff * (current[d] - other[d])) * alpha
                next_neg[e] += n_neg * eps_neg[e]
    return out


# --------------------------------------------------------------------------- transform


def transform_points(
    state: dict[str, Any],
    queries: np.ndarray,
    knn: Any = exact_knn,
) -> np.ndarray:
    """Embed ``queries`` against a fitted model's ``state`` (see the module docstring)."""
    k = int(state["k"])
    idx, dist = knn(state["prepared"], queries, k, state["metric"])
    emb = state["embedding"]
    sigmas = smooth_knn_sigmas(dist, float(k))
    w = membership_weights(dist, sigmas)
    start = np.einsum("ij,ijk->ik", w, emb[idx]) / w.sum(axis=1)[:, None]
    fixed = dist[:, 0] <= 0.0
    start[fixed] = emb[idx[fixed, 0]]
    n_epochs = int(state["n_epochs"])
    if n_epochs <= 0:
        return start
    return optimize_points(
        start,
        emb,
        idx,
        w,
        fixed,
        point_seeds(queries, int(state["seed"])),
        n_epochs,
        float(state["a"]),
        float(state["b"]),
        1.0,
        0.25,
        5.0,
    )


#: Per Python worker: fitted models already prepared, keyed by model uid and broadcast token.
_MODEL_CACHE: dict[str, dict[str, Any]] = {}
_MODEL_CACHE_LIMIT = 2


def cached_state(key: str, load: Any, metric: str) -> dict[str, Any]:
    """The model arrays for ``key`` with their k-NN preparation, built once per worker.

    ``load()`` returns the model's arrays (``train``, ``embedding``, ``a``, ``b``); settings
    that may change between calls (``k``, ``n_epochs``, ``seed``) are not cached here. The key
    must change when ``metric`` does (the preparation depends on it).
    """
    key = f"{key}:{metric}"
    state = _MODEL_CACHE.get(key)
    if state is None:
        state = dict(load())
        state["prepared"] = prepare_training(state["train"], metric)
        while len(_MODEL_CACHE) >= _MODEL_CACHE_LIMIT:
            _MODEL_CACHE.pop(next(iter(_MODEL_CACHE)))
        _MODEL_CACHE[key] = state
    return state


class CPUUMAPKernel:
    """umap-learn fit on the driver; exact-k-NN transform (above) on the executors."""

    name = "cpu"

    def fit(self, x: np.ndarray, params: dict[str, Any]) -> FitResult:
        import warnings

        import umap

        kwargs = {UMAP_LEARN_NAMES[k]: v for k, v in params.items() if k in UMAP_LEARN_NAMES}
        with warnings.catch_warnings():
            # umap-learn warns that a random_state forces one thread: that is what we want
            warnings.filterwarnings("ignore", message=".*n_jobs.*", category=UserWarning)
            model = umap.UMAP(**kwargs)
            embedding = model.fit_transform(x)
        return FitResult(np.asarray(embedding, dtype=np.float64), float(model._a), float(model._b))

    def transform(self, state: dict[str, Any], queries: np.ndarray) -> np.ndarray:
        return transform_points(state, queries, exact_knn)


CPU_KERNEL = CPUUMAPKernel()
