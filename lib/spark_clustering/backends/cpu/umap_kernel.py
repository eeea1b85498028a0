"""UMAP numeric kernels for the CPU: fit on the driver sample, embed new points on executors.

Fit is umap-learn's (``umap.UMAP.fit_transform`` on the sample). Transform is ours and places
each new point as umap-learn's ``UMAP.transform`` does, with the changes that make it fast,
exact and independent of how Spark splits the rows:

1. the ``nNeighbors`` nearest training points are found exactly, not by approximate
   NN-descent: an inverted-file index whose lists are skipped only where the triangle
   inequality proves they hold no closer point, read with BLAS products (see "exact k-NN"
   below), the neighbours kept re-measured in float64;
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
   possible weight, 1. The curve's power ``d^(2b)`` is taken in single precision (powf), the
   rest of the arithmetic in double. One change of schedule: the negative samples drawn after
   an attractive step are all evaluated at the position that step reached and their (each
   clipped) moves applied together, where umap-learn moves the point after each of them.
   The expected gradient is the same; the samples no longer wait on one another, which made
   the epochs 1.4x faster, with the same trustworthiness (bench/RESULTS.md).

Nothing here imports Spark; umap-learn is imported only inside :meth:`CPUUMAPKernel.fit`.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numba
import numpy as np

SMOOTH_K_TOLERANCE = 1e-5
MIN_K_DIST_SCALE = 1e-3

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
#
# An inverted-file index with exact pruning. The training rows are split into about sqrt(n)
# lists by a few k-means (Lloyd) iterations; each list is stored contiguously as offsets from
# its centre, with its radius (the largest member-to-centre distance). Queries are taken in
# groups that share their nearest centre. A group first reads its own list, which gives each
# query an upper bound tau on its k-th neighbour distance; then the other lists in order of
# the group's smallest lower bound. By the triangle inequality a list can hold a point closer
# than tau only if ``d(q, centre) - radius <= tau``: only the queries for which that holds
# read it, all others skip it unread, and tau tightens as lists are read. A list is read as
# one BLAS product (queries minus centre) x (members minus centre), which is why the search
# runs near the machine's arithmetic speed. The k kept are re-measured exactly in float64
# from differences and ordered by (distance, training index). The k-means only decides how
# much is skipped, never what is found: the result is the exact k nearest neighbours.

_KMEANS_ITERATIONS = 8
_KMEANS_MAX_ROWS = 50_000  # rows the list centres are fitted on (all rows are then assigned)
_ASSIGN_CHUNK = 8192
# a list is skipped only when its lower bound beats tau by this relative margin: far more than
# the rounding of the BLAS-form distances, so rounding never drops a neighbour
_BOUND_SLACK = 1e-7


def _nearest_centre(x: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Index of each row's nearest centre (BLAS; used for grouping only, never for pruning)."""
    out = np.empty(len(x), dtype=np.int64)
    c2 = (centres**2).sum(axis=1)
    for start in range(0, len(x), _ASSIGN_CHUNK):
        block = x[start : start + _ASSIGN_CHUNK]
        out[start : start + _ASSIGN_CHUNK] = np.argmin(c2[None, :] - 2.0 * block @ centres.T, 1)
    return out


def _list_centres(x: np.ndarray, n_lists: int) -> np.ndarray:
    """k-means centres of ``x`` (deterministic: a fixed seed, a fixed number of iterations)."""
    rng = np.random.default_rng(0)
    fit = x if len(x) <= _KMEANS_MAX_ROWS else x[rng.choice(len(x), _KMEANS_MAX_ROWS, False)]
    centres = fit[rng.choice(len(fit), n_lists, replace=False)].copy()
    for _ in range(_KMEANS_ITERATIONS):
        label = _nearest_centre(fit, centres)
        counts = np.bincount(label, minlength=n_lists)
        sums = np.zeros_like(centres)
        np.add.at(sums, label, fit)
        filled = counts > 0
        centres[filled] = sums[filled] / counts[filled, None]
    return centres


def prepare_training(train: np.ndarray, metric: str) -> dict[str, np.ndarray]:
    """The training rows as an inverted-file index (above), built once per worker."""
    x = np.ascontiguousarray(train, dtype=np.float64)
    if metric == "cosine":
        norms = np.linalg.norm(x, axis=1)
        x = x / np.where(norms > 0, norms, 1.0)[:, None]
    n_lists = max(1, min(len(x), round(math.sqrt(len(x)))))
    centres = _list_centres(x, n_lists)
    label = _nearest_centre(x, centres)
    ring = np.sqrt(((x - centres[label]) ** 2).sum(axis=1))
    order = np.lexsort((ring, label))  # by list, then by distance to the list's centre
    offsets = np.searchsorted(label[order], np.arange(n_lists + 1)).astype(np.int64)
    rel = np.ascontiguousarray(x[order] - centres[label[order]])
    ring = np.ascontiguousarray(ring[order])
    radius = np.zeros(n_lists)
    np.maximum.at(radius, label[order], ring)
    return {
        "train": x,
        "centres": centres,
        "radius": radius,
        "offsets": offsets,
        "member_ids": order.astype(np.int64),
        "member_rel": rel,
        "member_rel_sq": (rel**2).sum(axis=1),
        "member_ring": ring,
    }


@numba.njit(cache=True, nogil=True, fastmath={"reassoc", "contract"})
def _sqdist(a: np.ndarray, b: np.ndarray) -> float:  # pragma: no cover - numba
    # reassociation lets the sum use SIMD lanes; no flag that assumes finite values (inf is
    # the empty-slot sentinel below)
    s = 0.0
    for t in range(a.shape[0]):
        diff = a[t] - b[t]
        s += diff * diff
    return s


@numba.njit(cache=True, nogil=True, inline="always")
def _before(d1: float, i1: int, d2: float, i2: int) -> bool:  # pragma: no cover - numba
    """Whether neighbour (d1, i1) ranks before (d2, i2): nearer, ties by training index."""
    return d1 < d2 or (d1 == d2 and i1 < i2)


@numba.njit(cache=True, nogil=True)
def _offer(
    best_d: np.ndarray, best_i: np.ndarray, worst: np.ndarray, r: int, s: float, idv: int
) -> float:  # pragma: no cover - numba
    """Put (s, idv) among row r's k best if it beats the worst held; return the new worst."""
    w = worst[r]
    if _before(s, idv, best_d[r, w], best_i[r, w]):
        best_d[r, w] = s
        best_i[r, w] = idv
        w = 0
        for t in range(1, best_d.shape[1]):
            if _before(best_d[r, w], best_i[r, w], best_d[r, t], best_i[r, t]):
                w = t
        worst[r] = w
    return best_d[r, w]


@numba.njit(cache=True, nogil=True)
def _ivf_knn(
    q: np.ndarray,
    starts: np.ndarray,
    own: np.ndarray,
    k: int,
    centres: np.ndarray,
    radius: np.ndarray,
    offsets: np.ndarray,
    ids: np.ndarray,
    rel: np.ndarray,
    rel_sq: np.ndarray,
    ring: np.ndarray,
    train: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:  # pragma: no cover - numba
    """Exact k nearest training rows of the query groups ``q[starts[g]:starts[g + 1]]``.

    Returns (training indices, squared distances from differences), ordered by (distance,
    index). ``own[g]`` is the list whose centre is nearest to every query of group g.
    """
    n, d = q.shape
    n_lists = centres.shape[0]
    out_i = np.empty((n, k), dtype=np.int64)
    out_d = np.empty((n, k))
    no_id = np.iinfo(np.int64).max
    for g in range(len(starts) - 1):
        a = starts[g]
        m = starts[g + 1] - a
        group = q[a : a + m]
        to_centre = np.empty((m, n_lists))
        low = np.full(n_lists, np.inf)  # the group's smallest lower bound per list
        for r in range(m):
            for c in range(n_lists):
                dc = math.sqrt(_sqdist(group[r], centres[c]))
                to_centre[r, c] = dc
                low[c] = min(low[c], dc - radius[c])
        low[own[g]] = -np.inf  # own list first
        best_d = np.full((m, k), np.inf)
        best_i = np.full((m, k), no_id)
        worst = np.zeros(m, dtype=np.int64)
        tau = np.full(m, np.inf)
        rows = np.empty(m, dtype=np.int64)
        for c in np.argsort(low):
            lo, hi = offsets[c], offsets[c + 1]
            if hi == lo:
                continue
            # the rows that may find a closer point here, and the ring of members (distance
            # to the centre within tau of the row's own) any of them can reach
            n_rows = 0
            inner, outer = np.inf, -np.inf
            for r in range(m):
                reach = tau[r] * (1.0 + _BOUND_SLACK) + _BOUND_SLACK * to_centre[r, c]
                if to_centre[r, c] - radius[c] <= reach:
                    rows[n_rows] = r
                    n_rows += 1
                    inner = min(inner, to_centre[r, c] - reach)
                    outer = max(outer, to_centre[r, c] + reach)
            if n_rows == 0:
                continue
            if inner > 0.0:
                lo += np.searchsorted(ring[lo:hi], inner)
            if outer < np.inf:
                hi = lo + np.searchsorted(ring[lo:hi], outer, side="right")
            if hi <= lo:
                continue
            sub = np.empty((n_rows, d))
            sub_sq = np.empty(n_rows)
            for j in range(n_rows):
                s = 0.0
                for t in range(d):
                    v = group[rows[j], t] - centres[c, t]
                    sub[j, t] = v
                    s += v * v
                sub_sq[j] = s
            dots = np.dot(sub, rel[lo:hi].T)
            for j in range(n_rows):
                r = rows[j]
                limit = best_d[r, worst[r]]
                base = sub_sq[j]
                for u in range(hi - lo):
                    s = base + rel_sq[lo + u] - 2.0 * dots[j, u]
                    if s <= limit:
                        limit = _offer(best_d, best_i, worst, r, s, ids[lo + u])
                if limit < np.inf:
                    tau[r] = math.sqrt(max(limit, 0.0))
        # the k kept, re-measured from differences and ordered by (distance, index)
        for r in range(m):
            for j in range(k):
                best_d[r, j] = _sqdist(group[r], train[best_i[r, j]])
            for j in range(k):
                b = j
                for u in range(j + 1, k):
                    if _before(best_d[r, u], best_i[r, u], best_d[r, b], best_i[r, b]):
                        b = u
                best_d[r, j], best_d[r, b] = best_d[r, b], best_d[r, j]
                best_i[r, j], best_i[r, b] = best_i[r, b], best_i[r, j]
                out_i[a + r, j] = best_i[r, j]
                out_d[a + r, j] = best_d[r, j]
    return out_i, out_d


def exact_knn(
    prepared: dict[str, np.ndarray], queries: np.ndarray, k: int, metric: str
) -> tuple[np.ndarray, np.ndarray]:
    """Exact ``k`` nearest training points of each query: (indices, distances), sorted."""
    q = as_queries(queries, metric)
    kk = min(int(k), len(prepared["train"]))
    nearest = _nearest_centre(q, prepared["centres"])
    order = np.argsort(nearest, kind="stable")
    grouped = nearest[order]
    starts = np.flatnonzero(np.r_[True, grouped[1:] != grouped[:-1], True]).astype(np.int64)
    idx_g, sqd_g = _ivf_knn(
        np.ascontiguousarray(q[order]),
        starts,
        grouped[starts[:-1]],
        kk,
        prepared["centres"],
        prepared["radius"],
        prepared["offsets"],
        prepared["member_ids"],
        prepared["member_rel"],
        prepared["member_rel_sq"],
        prepared["member_ring"],
        prepared["train"],
    )
    idx = np.empty_like(idx_g)
    sqd = np.empty_like(sqd_g)
    idx[order] = idx_g
    sqd[order] = sqd_g
    dist = 0.5 * sqd if metric == "cosine" else np.sqrt(sqd)  # 1 - cos = ||u - v||^2 / 2
    return idx, dist


def as_queries(queries: np.ndarray, metric: str) -> np.ndarray:
    """Queries as float64 rows, unit-normalised for the cosine metric (as the training rows)."""
    q = np.ascontiguousarray(queries, dtype=np.float64)
    if metric == "cosine":
        norms = np.linalg.norm(q, axis=1)
        q = q / np.where(norms > 0, norms, 1.0)[:, None]
    return q


# --------------------------------------------------------------------------- membership


def smooth_knn_sigmas(dists: np.ndarray, k: float, n_iter: int = 64) -> np.ndarray:
    """Per-row ``sigma`` so that ``sum_{j>=1} exp(-d_j / sigma) = log2(k)`` (rho = 0).

    The binary search of umap-learn's ``smooth_knn_dist`` with ``local_connectivity=0`` (the
    value its transform uses), row by row.
    """
    return _smooth_knn_sigmas(np.ascontiguousarray(dists, dtype=np.float64), math.log2(k), n_iter)


@numba.njit(cache=True, nogil=True)
def _smooth_knn_sigmas(
    dists: np.ndarray, target: float, n_iter: int
) -> np.ndarray:  # pragma: no cover
    n, k = dists.shape
    out = np.empty(n)
    for i in range(n):
        lo, hi, mid = 0.0, np.inf, 1.0
        for _ in range(n_iter):
            psum = 0.0
            for j in range(1, k):
                psum += math.exp(-(dists[i, j] / mid)) if dists[i, j] > 0 else 1.0
            if abs(psum - target) < SMOOTH_K_TOLERANCE:
                break
            if psum > target:
                hi = mid
                mid = (lo + hi) / 2.0
            else:
                lo = mid
                mid = mid * 2.0 if hi == np.inf else (lo + hi) / 2.0
        mean = 0.0
        for j in range(k):
            mean += dists[i, j]
        out[i] = max(mid, MIN_K_DIST_SCALE * mean / k)
    return out


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
    return _hash_rows(data.view(np.uint64), np.frombuffer(salt, dtype=np.uint64)[0])


@numba.njit(cache=True, nogil=True)
def _mix(z: np.uint64) -> np.uint64:  # pragma: no cover - numba
    # splitmix64's finaliser: every input bit reaches every output bit
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


@numba.njit(cache=True, nogil=True)
def _hash_rows(words: np.ndarray, salt: np.uint64) -> np.ndarray:  # pragma: no cover - numba
    n, m = words.shape
    out = np.empty(n, dtype=np.uint64)
    for i in range(n):
        h = salt
        for j in range(m):
            h = _mix((h ^ words[i, j]) + np.uint64(0x9E3779B97F4A7C15))
        out[i] = _mix(h ^ np.uint64(m))
    return out


@numba.njit(cache=True, nogil=True)
def _below(state: np.ndarray, n: np.uint64) -> np.uint64:  # pragma: no cover - numba
    # splitmix64 (small, fast, good enough for picking negative samples), mapped onto [0, n)
    # by a multiply-shift of its high 32 bits instead of a 64-bit modulo (Lemire's reduction)
    state[0] += np.uint64(0x9E3779B97F4A7C15)
    return ((_mix(state[0]) >> np.uint64(32)) * n) >> np.uint64(32)


@numba.njit(cache=True, nogil=True)
def _clip(v: float) -> float:  # pragma: no cover - numba
    if v > 4.0:
        return 4.0
    if v < -4.0:
        return -4.0
    return v


@numba.njit(cache=True, nogil=True)
def _pow32(x: float, b: np.float32) -> float:  # pragma: no cover - numba
    # single-precision pow: the gradient coefficients need far less than float64's precision
    # (umap-learn keeps its embedding in float32) and powf is most of an epoch's cost
    return float(np.float32(x) ** b)


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
    dim = out.shape[1]
    b32 = np.float32(b)
    n, k = idx.shape
    n_tail = np.uint64(tail.shape[0])  # < 2**32 (the fit sample), as _below needs
    eps_sample = np.empty(k)
    next_sample = np.empty(k)
    eps_neg = np.empty(k)
    next_neg = np.empty(k)
    push = np.empty(dim)  # the summed moves of one edge's negative samples
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
                    pw = _pow32(dist2, b32)  # one pow: dist2 ** (b - 1) is pw / dist2
                    coeff = -2.0 * a * b * (pw / dist2) / (a * pw + 1.0)
                else:
                    coeff = 0.0
                for d in range(dim):
                    current[d] += _clip(coeff * (current[d] - other[d])) * alpha
                next_sample[e] += eps_sample[e]
                n_neg = int((epoch - next_neg[e]) / eps_neg[e])
                # the negative samples are independent of one another: all are measured from
                # this position and their moves summed (see the module docstring)
                for d in range(dim):
                    push[d] = 0.0
                for _ in range(n_neg):
                    other = tail[_below(state, n_tail)]
                    dist2 = 0.0
                    for d in range(dim):
                        diff = current[d] - other[d]
                        dist2 += diff * diff
                    if dist2 > 0.0:
                        pw = _pow32(dist2, b32)
                        coeff = 2.0 * gamma * b / ((0.001 + dist2) * (a * pw + 1.0))
                        for d in range(dim):
                            push[d] += _clip(coeff * (current[d] - other[d])) * alpha
                for d in range(dim):
                    current[d] += push[d]
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


@contextlib.contextmanager
def one_blas_thread() -> Iterator[None]:
    """Each Spark task is one core: keep BLAS from starting a thread per core inside it."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
        yield
        return
    with threadpool_limits(1):
        yield


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
