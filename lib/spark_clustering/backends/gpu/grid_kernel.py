"""DBSCAN's per-region kernel as array operations: CuPy on an NVIDIA GPU, numpy for its tests.

The same eps-grid as the CPU kernel (:mod:`spark_clustering.backends.cpu.dbscan_kernel`), written
once against an array module ``xp`` (``cupy`` on the device, ``numpy`` anywhere), so the whole
algorithm is tested against the CPU kernel on machines without a GPU and only the device run
itself needs one:

1. points sorted by cell (the CPU kernel's order: cells lexicographically, ties by row);
2. each cell's neighbour cells found by adding precomputed key offsets to a linear cell key and
   looking the keys up with ``searchsorted`` (the offsets are those of the CPU kernel's bound);
   the key is built on gap-compressed coordinates (:class:`KeySpace`), so a box with far
   outliers keeps small keys;
3. every (point, candidate) pair of neighbouring cells expanded in memory-bounded batches and
   compared exactly: the squared distance summed dimension by dimension in float64, one array
   operation per step (no fused multiply-add), ``<= eps * eps``, as the CPU kernel and
   scikit-learn compare;
4. core flags from the counts, nearest cells first and only for the points still short of
   ``min_points``; components of core cells by hooking and pointer jumping, cells linked on
   one, then four, then all of their core points; halo links and nearest core points from
   the same pair batches.

The result is the CPU kernel's ``RegionResult`` field for field (components numbered by their
smallest sorted core point, as the CPU kernel's union-find roots are); only the order of the halo
links may differ. A region in more than :data:`MAX_DIMS` dimensions, whose arrays do not fit the
free device memory, or whose cell keys would overflow int64, runs on the CPU kernel instead, with
one log line saying why.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..cpu.dbscan_kernel import CPU_KERNEL, RegionResult, cell_side
from ..cpu.dbscan_kernel import border_candidates as cpu_border_candidates

log = logging.getLogger(__name__)

#: bytes of device memory per expanded (point, candidate) pair at the peak of a batch: the
#: pair's item, two int64 indices and their temporaries, gathered coordinates, the distance
_PAIR_BYTES = 128
#: bytes per input point kept on the device for the whole region, coordinates excluded: sort
#: keys and order, cell ids, counts, flags, and the (cell, neighbour cell) table (~27
#: neighbouring non-empty cells of 17 bytes each per point in dense 3-D data)
_POINT_BYTES = 512
#: share of the free device memory the kernel plans to use
_MEMORY_SHARE = 0.7
#: most dimensions the grid serves: the neighbour offsets grow as ~7**d (6095 at d=5, 41221 at
#: d=6), past which the CPU kernel's pruned enumeration is the better tool
MAX_DIMS = 5
#: core points per cell tried when linking two cells, in turn, before all of them for the cell
#: pairs still apart (at 1M 3-D points the first point alone links all but ~1 in 3000)
_LINK_SAMPLES = (1, 4)
#: most pairs expanded at once, whatever the memory (keeps each array op a few GiB at most)
_MAX_BATCH_PAIRS = 1 << 27


# --------------------------------------------------------------------------- array module


def device_free_bytes() -> int:
    """Free memory of the current CUDA device, in bytes (needs CuPy and a device)."""
    import cupy as cp

    free, _total = cp.cuda.Device().mem_info
    # blocks CuPy's pool holds from earlier regions are free to this one too
    return int(free) + int(cp.get_default_memory_pool().free_bytes())


def _scatter_min(xp: Any, a: Any, idx: Any, values: Any) -> None:
    """``a[idx] = min(a[idx], values)`` with repeated indices, in place.

    By sorting rather than atomics (``numpy.minimum.at``/``cupyx.scatter_min``): the same code
    on every array module, so the numpy tests run the device's path, and any integer dtype.
    """
    if idx.shape[0] == 0:
        return
    order = xp.lexsort(xp.stack([values, idx]))
    idx, values = idx[order], values[order]
    first = _run_starts(xp, idx)
    idx, values = idx[first], values[first]
    a[idx] = xp.minimum(a[idx], values)


def _run_starts(xp: Any, keys: Any) -> Any:
    """For sorted ``keys``: whether each is the first of its run of equal keys."""
    return xp.concatenate([xp.ones(min(1, keys.shape[0]), dtype=bool), keys[1:] != keys[:-1]])


def _to_host(a: Any) -> np.ndarray:
    return a.get() if hasattr(a, "get") else np.asarray(a)


# --------------------------------------------------------------------------- the grid


def neighbour_offsets(d: int) -> np.ndarray:
    """Integer cell offsets that may hold a point within eps of a cell's point, (m, d).

    Cells have side ``eps / sqrt(d)``; a cell at offset ``o`` can hold such a point only when
    ``sum(max(|o_j| - 1, 0) ** 2) <= d``, the CPU kernel's bound. The zero offset comes first.
    """
    r = 1 + int(np.sqrt(d))
    axes = np.arange(-r, r + 1, dtype=np.int64)
    grid = np.stack(np.meshgrid(*([axes] * d), indexing="ij"), axis=-1).reshape(-1, d)
    a = np.maximum(np.abs(grid) - 1, 0)
    keep = grid[(a * a).sum(axis=1) <= d]
    zero = np.all(keep == 0, axis=1)
    return np.concatenate([keep[zero], keep[~zero]])


def offset_tiers(offsets: np.ndarray) -> np.ndarray:
    """Each offset's tier, nearer cells first: 0 for the cell itself, ``k`` for the touching
    cells differing in ``k`` coordinates (faces, edges, corners), ``d + 1`` for far cells
    (some ``|o_j| > 1``)."""
    d = offsets.shape[1]
    far = np.any(np.abs(offsets) > 1, axis=1)
    return np.where(far, d + 1, np.count_nonzero(offsets, axis=1)).astype(np.int64)


@dataclass(frozen=True)
class KeySpace:
    """Linear cell keys over gap-compressed coordinates, order-preserving.

    Per dimension, the occupied cell coordinates are mapped to ``f(c)``: the distinct ones in
    order, each gap wider than ``margin + 1`` shrunk to ``margin + 1``. Two occupied
    coordinates then differ by at most ``margin`` after the map exactly when they did before,
    and by the same amount, so ``key(a) + offset_key(o) == key(b)`` exactly when ``b = a + o``
    for every offset with ``|o_j| <= margin``, while the keys of a box with a few far outliers
    stay small (its key range follows the occupied cells, not the box's extent). The key is
    ``sum((f_j(c_j) + margin) * stride_j)``.
    """

    coords: tuple[Any, ...]  # per dimension: the distinct occupied coordinates, sorted
    mapped: tuple[Any, ...]  # ... and their compressed values
    strides: np.ndarray  # (d,) int64
    margin: int  # r: every neighbour offset stays inside the key's box

    @staticmethod
    def fit(xp: Any, cell_sets: list[Any], margin: int) -> KeySpace | None:
        """The key space of the cells (rows of integer coordinates) of ``cell_sets``, or None
        when its keys would overflow int64."""
        d = int(cell_sets[0].shape[1])
        coords, mapped, extent = [], [], []
        for j in range(d):
            u = xp.unique(xp.concatenate([c[:, j] for c in cell_sets]))
            gaps = xp.minimum(u[1:] - u[:-1], margin + 1)
            f = xp.concatenate([xp.zeros(1, dtype=xp.int64), xp.cumsum(gaps)])
            coords.append(u)
            mapped.append(f)
            extent.append(int(f[-1]) + 1 + 2 * margin)
        strides = [1] * d
        total = 1
        for j in range(d - 1, -1, -1):
            strides[j] = total
            total *= extent[j]
        if total >= 1 << 62:
            return None
        return KeySpace(tuple(coords), tuple(mapped), np.asarray(strides, np.int64), margin)

    def keys(self, xp: Any, cells: Any) -> Any:
        """The keys of ``cells``, which must be among the cells the space was fitted on."""
        # a sum of integer products, not a matmul: exact in int64 on every array module
        key = xp.zeros(cells.shape[0], dtype=xp.int64)
        for j, stride in enumerate(self.strides.tolist()):
            f = self.mapped[j][xp.searchsorted(self.coords[j], cells[:, j])]
            key = key + (f + self.margin) * stride
        return key

    def offset_keys(self, offsets: np.ndarray) -> np.ndarray:
        return offsets @ self.strides


@dataclass
class SortedPoints:
    """Points sorted by cell (the CPU kernel's ``build_grid`` order) with per-cell ranges."""

    order: Any  # sorted position -> input row
    xs: Any  # (n, d) float64, sorted
    cell_of: Any  # (n,) cell index of each sorted point
    cells: Any  # (n_cells, d) int64 cell coordinates, sorted
    starts: Any  # (n_cells,)
    ends: Any  # (n_cells,)


def sort_by_cell(xp: Any, x: Any, side: float, origin: Any) -> SortedPoints:
    """Sort ``x`` by grid cell exactly as ``build_grid`` does (ties by input row)."""
    n = x.shape[0]
    cells = xp.floor((x - origin) / side).astype(xp.int64)
    keys = xp.concatenate([xp.arange(n, dtype=xp.int64)[None, :], cells.T[::-1]], axis=0)
    order = xp.lexsort(keys)
    sc = cells[order]
    change = xp.any(sc[1:] != sc[:-1], axis=1)
    starts = xp.concatenate([xp.zeros(1, dtype=xp.int64), xp.flatnonzero(change) + 1])
    ends = xp.concatenate([starts[1:], xp.asarray([n], dtype=xp.int64)])
    cell_of = xp.cumsum(xp.concatenate([xp.zeros(1, dtype=xp.int64), change.astype(xp.int64)]))
    return SortedPoints(order, x[order], cell_of, sc[starts], starts, ends)


def cell_pairs(
    xp: Any, space: KeySpace, a_cells: Any, b_cells: Any, offsets: np.ndarray
) -> tuple[Any, Any, Any]:
    """(a cell, b cell, tier) for every existing b cell at a neighbour offset of an a cell.

    ``b_cells`` must be sorted lexicographically (then their keys are sorted). ``tier`` is the
    offset's :func:`offset_tiers`.
    """
    a_keys = space.keys(xp, a_cells)
    b_keys = space.keys(xp, b_cells)
    off = xp.asarray(space.offset_keys(offsets))
    tier_off = xp.asarray(offset_tiers(offsets))
    ia_parts, ib_parts, tier_parts = [], [], []
    # a few thousand offsets per cell in high dimensions: bound the (cells x offsets) table
    step = max(1, (1 << 24) // max(1, len(offsets)))
    for lo in range(0, int(a_keys.shape[0]), step):
        want = a_keys[lo : lo + step, None] + off[None, :]
        pos = xp.searchsorted(b_keys, want.ravel())
        pos_c = xp.minimum(pos, max(int(b_keys.shape[0]) - 1, 0))
        hit = (pos < b_keys.shape[0]) & (b_keys[pos_c] == want.ravel())
        flat = xp.flatnonzero(hit)
        ia_parts.append(flat // len(offsets) + lo)
        ib_parts.append(pos_c[flat])
        tier_parts.append(tier_off[flat % len(offsets)])
    if not ia_parts:
        empty = xp.zeros(0, dtype=xp.int64)
        return empty, empty, xp.zeros(0, dtype=bool)
    return xp.concatenate(ia_parts), xp.concatenate(ib_parts), xp.concatenate(tier_parts)


# --------------------------------------------------------------------------- pair batches


def _batches(xp: Any, counts: Any, budget: int) -> list[tuple[int, int]]:
    """Split consecutive items with ``counts`` pairs each into runs of at most ``budget`` pairs
    (an item larger than the budget runs alone)."""
    total = _to_host(xp.cumsum(counts)) if counts.shape[0] else np.zeros(0, np.int64)
    out = []
    lo = 0
    n = len(total)
    while lo < n:
        base = total[lo - 1] if lo else 0
        hi = int(np.searchsorted(total, base + budget, side="right"))
        hi = max(hi, lo + 1)
        out.append((lo, min(hi, n)))
        lo = hi
    return out


def expand_pairs(
    xp: Any, a_start: Any, a_len: Any, b_start: Any, b_len: Any
) -> tuple[Any, Any, Any]:
    """All (a, b) index pairs of the ranges ``a_start[i] + [0, a_len[i])`` x the same for b,
    with the item ``i`` each pair comes from."""
    counts = a_len * b_len
    total = int(counts.sum()) if counts.shape[0] else 0
    # the item of each pair without xp.repeat (CuPy's takes no device array of repeats): mark
    # where each non-empty item starts and count the marks
    first = xp.cumsum(counts) - counts
    present = xp.flatnonzero(counts > 0)
    marks = xp.zeros(total, dtype=xp.int64)
    marks[first[present]] = 1
    item = present[xp.cumsum(marks) - 1]
    local = xp.arange(total, dtype=xp.int64) - first[item]
    bl = b_len[item]
    return a_start[item] + local // bl, b_start[item] + local % bl, item


def squared_distances(xp: Any, xa: Any, ia: Any, xb: Any, ib: Any) -> Any:
    """``sum_j (xa[ia, j] - xb[ib, j]) ** 2`` accumulated left to right as the CPU kernel does,
    one array operation per step so no multiply-add is fused."""
    s = xp.zeros(ia.shape[0], dtype=xp.float64)
    for j in range(xa.shape[1]):
        t = xa[ia, j] - xb[ib, j]
        t = t * t
        s = s + t
    return s


# --------------------------------------------------------------------------- the kernel


def _segment_ranges(xp: Any, keys: Any, n_segments: int) -> tuple[Any, Any]:
    """Starts and ends of the runs of each value ``0..n_segments-1`` in sorted ``keys``."""
    ids = xp.arange(n_segments, dtype=xp.int64)
    return xp.searchsorted(keys, ids, side="left"), xp.searchsorted(keys, ids, side="right")


def _merge_components(xp: Any, label: Any, u: Any, v: Any) -> Any:
    """Components after adding edges ``(u, v)``: ``label[i]`` is the smallest node of node
    ``i``'s component, given it was so before the new edges.

    Hooking and pointer jumping: each edge between two components hooks the larger root onto
    the smaller, then every node follows its label to the root. Labels only decrease and stay
    at most their node, so the roots end as each component's smallest node.
    """
    label = label.copy()
    while u.shape[0]:
        lu, lv = label[u], label[v]
        apart = lu != lv
        u, v, lu, lv = u[apart], v[apart], lu[apart], lv[apart]
        if not u.shape[0]:
            break
        _scatter_min(xp, label, xp.maximum(lu, lv), xp.minimum(lu, lv))
        while True:
            jumped = label[label]
            if bool(xp.all(jumped == label)):
                break
            label = jumped
    return label


def _closest_components(xp: Any, q: Any, d2: Any, comp: Any) -> tuple[Any, Any, Any]:
    """Of (query, squared distance, component) rows: those at their query's smallest distance,
    one per (query, component), sorted by query then component."""
    if not q.shape[0]:
        return q, d2, comp
    order = xp.lexsort(xp.stack([comp, d2.view(xp.int64), q]))  # d2 >= 0: bits sort as values
    q, d2, comp = q[order], d2[order], comp[order]
    first = _run_starts(xp, q)
    run = xp.cumsum(first.astype(xp.int64)) - 1
    closest = d2 == d2[xp.flatnonzero(first)][run]
    q, d2, comp = q[closest], d2[closest], comp[closest]
    distinct = _run_starts(xp, q) | _run_starts(xp, comp)
    return q[distinct], d2[distinct], comp[distinct]


def _keep_closest(xp: Any, best: Any, label: Any, q: Any, d2: Any, cluster: Any) -> None:
    """Fold candidate (query, squared distance, cluster) triples into each query's closest
    core point so far, ties to the smaller cluster id; ``best`` and ``label`` in place."""
    q, d2, cluster = _closest_components(xp, q, d2, cluster)
    first = _run_starts(xp, q)  # by query, then cluster: the smallest of the closest
    q, d2, cluster = q[first], d2[first], cluster[first]
    better = (d2 < best[q]) | ((d2 == best[q]) & (cluster < label[q]))
    best[q[better]] = d2[better]
    label[q[better]] = cluster[better]


class GridKernel:
    """DBSCAN per region on an eps-grid as array operations (CuPy by default).

    Parameters
    ----------
    xp : module, optional
        The array module: ``cupy`` (default, imported when first used) or ``numpy``.
    memory_bytes : int, optional
        Memory the kernel may plan with; defaults to the device's free memory (CuPy) and to
        no limit with numpy. Regions whose fixed arrays do not fit run on the CPU kernel.

    Examples
    --------
    >>> import numpy as np
    >>> kernel = GridKernel(xp=np)
    >>> x = np.array([[0.0], [0.1], [0.2], [5.0]])
    >>> res = kernel.fit_region(x, np.ones(4, dtype=bool), eps=0.15, min_points=2)
    >>> res.core_index.tolist(), res.core_component.tolist()
    ([0, 1, 2], [0, 0, 0])
    """

    name = "gpu"

    def __init__(self, xp: Any = None, memory_bytes: int | None = None) -> None:
        self._xp = xp
        self.memory_bytes = memory_bytes

    @property
    def xp(self) -> Any:
        if self._xp is None:
            import cupy

            self._xp = cupy
        return self._xp

    # ----------------------------------------------------------------- planning

    def _budget(self) -> int | None:
        if self.memory_bytes is not None:
            return int(self.memory_bytes * _MEMORY_SHARE)
        if self.xp is np:
            return None
        return int(device_free_bytes() * _MEMORY_SHARE)

    def plan(self, n: int, d: int) -> tuple[bool, int, str]:
        """Whether a region of ``n`` points in ``d`` dimensions runs here, the pair batch size,
        and why not when it does not."""
        if d > MAX_DIMS:
            return False, 0, f"{d} dims: the grid kernel serves up to {MAX_DIMS}"
        budget = self._budget()
        fixed = n * (_POINT_BYTES + 16 * d)
        if budget is None:
            return True, _MAX_BATCH_PAIRS, ""
        left = budget - fixed
        batch = min(_MAX_BATCH_PAIRS, left // _PAIR_BYTES)
        if batch < max(1024, n // 64):
            return (
                False,
                0,
                f"{n} points x {d} dims need ~{fixed / 2**20:.0f} MiB of the "
                f"{budget / 2**20:.0f} MiB planned on the device",
            )
        return True, int(batch), ""

    # ----------------------------------------------------------------- fit_region

    def fit_region(
        self, x: np.ndarray, home: np.ndarray, eps: float, min_points: int
    ) -> RegionResult:
        """Core flags of the home points, their local components, and the halo adjacencies:
        the CPU kernel's result (see :class:`~spark_clustering.backends.cpu.dbscan_kernel.
        CPUKernel`), computed with array operations."""
        x = np.ascontiguousarray(x, dtype=np.float64)
        if x.shape[0] == 0:
            empty = np.empty(0, dtype=np.int64)
            return RegionResult(empty, empty, empty, empty)
        res = self._region(x, home, eps, min_points, halo_links=True)
        if isinstance(res, str):
            log.info("dbscan grid kernel: region runs on the CPU kernel (%s)", res)
            return CPU_KERNEL.fit_region(x, home, eps, min_points)
        return res

    def fit_cores(
        self, x: np.ndarray, home: np.ndarray, eps: float, min_points: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`fit_region` without the halo adjacencies: the home core points and their
        local components (what DBSCAN's one-pass fit uses; the CPU kernel's ``fit_cores``)."""
        x = np.ascontiguousarray(x, dtype=np.float64)
        if x.shape[0] == 0:
            empty = np.empty(0, dtype=np.int64)
            return empty, empty
        res = self._region(x, home, eps, min_points, halo_links=False)
        if isinstance(res, str):
            log.info("dbscan grid kernel: region runs on the CPU kernel (%s)", res)
            return CPU_KERNEL.fit_cores(x, home, eps, min_points)
        return res.core_index, res.core_component

    def _region(
        self, x: np.ndarray, home: np.ndarray, eps: float, min_points: int, halo_links: bool
    ) -> RegionResult | str:
        """The region's result on the grid, or why it runs on the CPU kernel."""
        d = x.shape[1]
        ok, batch, why = self.plan(x.shape[0], d)
        if not ok:
            return why
        xp = self.xp
        g = sort_by_cell(xp, xp.asarray(x), cell_side(eps, d), xp.asarray(x.min(axis=0)))
        offsets = neighbour_offsets(d)
        space = KeySpace.fit(xp, [g.cells], int(np.abs(offsets).max(initial=0)))
        if space is None:
            return f"the grid of {d} dims is too large for int64 cell keys"
        home_sorted = xp.asarray(np.asarray(home, dtype=bool))[g.order]
        return self._fit(g, home_sorted, eps, int(min_points), offsets, space, batch, halo_links)

    def _fit(
        self,
        g: SortedPoints,
        hs: Any,
        eps: float,
        min_pts: int,
        offsets: np.ndarray,
        space: KeySpace,
        batch: int,
        halo_links: bool,
    ) -> RegionResult:
        """The region's result from its points sorted by cell (``g``) and their home flags in
        that order (``hs``)."""
        xp = self.xp
        eps2 = eps * eps
        xs, n = g.xs, int(g.xs.shape[0])
        n_cells = int(g.cells.shape[0])
        size = g.ends - g.starts
        ca, cb, tier = cell_pairs(xp, space, g.cells, g.cells, offsets)
        d = int(g.xs.shape[1])
        far = tier > d

        # 1. core flags: cells of min_pts points are all core (their diagonal is below eps);
        #    the home points of the other cells count their neighbours pair by pair, nearest
        #    cells first (faces, edges, corners, then far cells), each pass only for the points
        #    still short of min_pts; a point that cannot reach min_pts with every point of the
        #    cells left is settled as not core
        count = size[g.cell_of].copy()
        need = hs & (count < min_pts)
        for t in range(1, d + 2):
            step = tier == t
            left = tier >= t  # the cells this pass and the next ones see
            weights = size[cb[left]].astype(xp.float64)  # CuPy adds weights as float64
            reach = xp.bincount(ca[left], weights=weights, minlength=n_cells)
            need = need & (count + reach[g.cell_of] >= min_pts)
            pts = xp.flatnonzero(need)
            if not pts.shape[0]:
                break
            p_start, p_end = _segment_ranges(xp, g.cell_of[pts], n_cells)
            p_len = p_end - p_start
            sel = xp.flatnonzero(step & (p_len[ca] > 0))
            pa, pb = ca[sel], cb[sel]
            for lo, hi in _batches(xp, p_len[pa] * size[pb], batch):
                ia, ib, _ = expand_pairs(
                    xp, p_start[pa[lo:hi]], p_len[pa[lo:hi]], g.starts[pb[lo:hi]], size[pb[lo:hi]]
                )
                ia = pts[ia]
                within = squared_distances(xp, xs, ia, xs, ib) <= eps2
                count = count + xp.bincount(ia[within], minlength=n)
            need = need & (count < min_pts)
        core = hs & (count >= min_pts)

        # 2. core points compacted, cell by cell; the cells holding some are the graph's nodes
        core_pos = xp.flatnonzero(core)
        core_cell = g.cell_of[core_pos]
        has_core = xp.zeros(n_cells, dtype=bool)
        has_core[core_cell] = True
        node_of_cell = xp.cumsum(has_core.astype(xp.int64)) - 1
        n_nodes = int(has_core.sum())
        c_start, c_end = _segment_ranges(xp, core_cell, n_cells)
        c_len = c_end - c_start

        # 3. link neighbouring core cells holding a core pair within eps: touching cells first,
        #    then far ones; each first on the first one, then four core points of each cell (in
        #    dense data that settles nearly every pair at a small share of the pairs), then in
        #    full for the cell pairs still apart. Sampled links are true links: exact still.
        both = has_core[ca] & has_core[cb] & (ca < cb)
        label = xp.arange(n_nodes, dtype=xp.int64)
        for pass_far in (False, True):
            sel = xp.flatnonzero(both & (far == pass_far))
            pa, pb = ca[sel], cb[sel]
            for cap in (*_LINK_SAMPLES, None):
                apart = label[node_of_cell[pa]] != label[node_of_cell[pb]]
                pa, pb = pa[apart], pb[apart]
                la, lb = c_len[pa], c_len[pb]
                if cap is not None:
                    la, lb = xp.minimum(la, cap), xp.minimum(lb, cap)
                linked = xp.zeros(pa.shape[0], dtype=bool)
                for lo, hi in _batches(xp, la * lb, batch):
                    ia, ib, item = expand_pairs(
                        xp, c_start[pa[lo:hi]], la[lo:hi], c_start[pb[lo:hi]], lb[lo:hi]
                    )
                    d2 = squared_distances(xp, xs, core_pos[ia], xs, core_pos[ib])
                    linked[lo + item[d2 <= eps2]] = True
                label = _merge_components(
                    xp, label, node_of_cell[pa[linked]], node_of_cell[pb[linked]]
                )
                pa, pb = pa[~linked], pb[~linked]
        # a component's root: its smallest sorted core position (the CPU kernel's union-find
        # root), which is the first core point of its smallest node
        node_first = core_pos[c_start[xp.flatnonzero(has_core)]]
        root_of_core = node_first[label[node_of_cell[core_cell]]]

        # 4. halo links: each halo point and the components of the core points within eps
        #    (fit_cores skips them)
        halo = xp.flatnonzero(~hs)
        e_h = xp.zeros(0, dtype=xp.int64)
        e_r = xp.zeros(0, dtype=xp.int64)
        if halo_links and halo.shape[0] and core_pos.shape[0]:
            halo_cell = g.cell_of[halo]
            h_start, h_end = _segment_ranges(xp, halo_cell, n_cells)
            h_len = h_end - h_start
            sel = xp.flatnonzero((h_len[ca] > 0) & has_core[cb])
            pa, pb = ca[sel], cb[sel]
            keys_parts = []
            for lo, hi in _batches(xp, h_len[pa] * c_len[pb], batch):
                ia, ib, _ = expand_pairs(
                    xp, h_start[pa[lo:hi]], h_len[pa[lo:hi]], c_start[pb[lo:hi]], c_len[pb[lo:hi]]
                )
                d2 = squared_distances(xp, xs, halo[ia], xs, core_pos[ib])
                w = d2 <= eps2
                # one row per (halo point, component), deduplicated per batch to stay small
                keys_parts.append(xp.unique(halo[ia[w]] * (n + 1) + root_of_core[ib[w]]))
            if keys_parts:
                pairs = xp.unique(xp.concatenate(keys_parts))
                e_h, e_r = pairs // (n + 1), pairs % (n + 1)

        roots, comp = np.unique(_to_host(root_of_core), return_inverse=True)
        order = _to_host(g.order)
        return RegionResult(
            core_index=order[_to_host(core_pos)],
            core_component=comp.astype(np.int64),
            edge_halo_index=order[_to_host(e_h)],
            edge_component=np.searchsorted(roots, _to_host(e_r)).astype(np.int64),
        )

    # ----------------------------------------------------------------- labelling grids

    def _labelling(
        self, q: np.ndarray, cores: np.ndarray, ids: np.ndarray, eps: float
    ) -> _Labelling | str:
        """The grids of a labelling (queries and core points, one origin) and their pairs of
        neighbouring cells on the device, or why it runs on the CPU kernel."""
        d = q.shape[1]
        ok, batch, why = self.plan(q.shape[0] + cores.shape[0], d)
        if not ok:
            return why
        side = cell_side(eps, d)
        offsets = neighbour_offsets(d)
        xp = self.xp
        o = xp.asarray(cores.min(axis=0))
        cg = sort_by_cell(xp, xp.asarray(cores), side, o)
        qg = sort_by_cell(xp, xp.asarray(q), side, o)
        space = KeySpace.fit(xp, [qg.cells, cg.cells], int(np.abs(offsets).max(initial=0)))
        if space is None:
            return f"the grid of {d} dims is too large for int64 cell keys"
        cc = xp.asarray(np.asarray(ids, dtype=np.int64))[cg.order]
        qa, cb, _ = cell_pairs(xp, space, qg.cells, cg.cells, offsets)
        own = space.keys(xp, qg.cells)[qa] == space.keys(xp, cg.cells)[cb]
        return _Labelling(qg, cg, cc, qa, cb, own, cg.ends - cg.starts, batch)

    def _pairs_within(
        self, lab: _Labelling, pts: Any, cell_sel: Any, eps2: float
    ) -> Iterator[tuple[Any, Any, Any]]:
        """(query, squared distance, core id) of every sorted query ``pts`` and core point
        within eps in the cell pairs ``cell_sel``, a memory-bounded batch at a time."""
        xp = self.xp
        p_start, p_end = _segment_ranges(xp, lab.qg.cell_of[pts], int(lab.qg.cells.shape[0]))
        p_len = p_end - p_start
        sel = xp.flatnonzero(cell_sel & (p_len[lab.qa] > 0))
        pa, pb = lab.qa[sel], lab.cb[sel]
        for lo, hi in _batches(xp, p_len[pa] * lab.c_len[pb], lab.batch):
            ia, ib, _ = expand_pairs(
                xp,
                p_start[pa[lo:hi]],
                p_len[pa[lo:hi]],
                lab.cg.starts[pb[lo:hi]],
                lab.c_len[pb[lo:hi]],
            )
            ia = pts[ia]
            d2 = squared_distances(xp, lab.qg.xs, ia, lab.cg.xs, ib)
            w = d2 <= eps2
            yield ia[w], d2[w], lab.cc[ib[w]]

    # ----------------------------------------------------------------- nearest_core

    def nearest_core(
        self, q: np.ndarray, cores: np.ndarray, clusters: np.ndarray, eps: float
    ) -> tuple[np.ndarray, np.ndarray]:
        """Cluster of the closest core point within eps (-1 when none, ties to the smallest
        cluster id) and whether each query point coincides with a core point."""
        q = np.ascontiguousarray(q, dtype=np.float64)
        nq = q.shape[0]
        if nq == 0 or cores.shape[0] == 0:
            return np.full(nq, -1, dtype=np.int64), np.zeros(nq, dtype=bool)
        cores = np.ascontiguousarray(cores, dtype=np.float64)
        lab = self._labelling(q, cores, clusters, eps)
        if isinstance(lab, str):
            log.info("dbscan grid kernel: labelling runs on the CPU kernel (%s)", lab)
            return CPU_KERNEL.nearest_core(q, cores, clusters, eps)
        xp = self.xp
        best = xp.full(nq, np.inf)
        label = xp.full(nq, np.iinfo(np.int64).max, dtype=xp.int64)
        # most queries are training rows that are core points: their own cell settles them
        # (distance 0); only the others look at the neighbouring cells
        for pass_own in (True, False):
            pts = xp.flatnonzero(best != 0.0)
            if not pts.shape[0]:
                break
            for ia, d2, cluster in self._pairs_within(lab, pts, lab.own == pass_own, eps * eps):
                _keep_closest(xp, best, label, ia, d2, cluster)
        found = xp.isfinite(best)
        label = xp.where(found, label, -1)
        is_core = best == 0.0
        out_label = np.empty(nq, dtype=np.int64)
        out_core = np.empty(nq, dtype=bool)
        qo = _to_host(lab.qg.order)
        out_label[qo] = _to_host(label)
        out_core[qo] = _to_host(is_core)
        return out_label, out_core

    # ----------------------------------------------------------------- border_candidates

    def border_candidates(
        self, q: np.ndarray, cores: np.ndarray, components: np.ndarray, eps: float
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """For each query point: the smallest component among its closest core points within
        eps (-1 when none), and the ``(query, component)`` pairs of the queries whose closest
        core points belong to two or more components: the CPU kernel's
        :func:`~spark_clustering.backends.cpu.dbscan_kernel.border_candidates` (only the
        order of the pairs may differ)."""
        q = np.ascontiguousarray(q, dtype=np.float64)
        nq = q.shape[0]
        empty = np.empty(0, dtype=np.int64)
        if nq == 0 or cores.shape[0] == 0:
            return np.full(nq, -1, dtype=np.int64), empty, empty
        cores = np.ascontiguousarray(cores, dtype=np.float64)
        lab = self._labelling(q, cores, components, eps)
        if isinstance(lab, str):
            log.info("dbscan grid kernel: border labelling runs on the CPU kernel (%s)", lab)
            return cpu_border_candidates(q, cores, components, eps)
        xp = self.xp
        parts = []
        all_queries = xp.arange(nq, dtype=xp.int64)
        for ia, d2, comp in self._pairs_within(lab, all_queries, lab.qa >= 0, eps * eps):
            parts.append(_closest_components(xp, ia, d2, comp))  # a few rows per query
        label = xp.full(nq, -1, dtype=xp.int64)
        tie_q = tie_c = xp.zeros(0, dtype=xp.int64)
        if parts:
            qq, _, cc = _closest_components(
                xp, *(xp.concatenate([p[k] for p in parts]) for k in range(3))
            )
            # rows sorted by query, then component: each query's first is its smallest
            first = _run_starts(xp, qq)
            label[qq[first]] = cc[first]
            n_of = xp.bincount(qq, minlength=nq)
            tied = n_of[qq] > 1
            tie_q, tie_c = qq[tied], cc[tied]
        qo = _to_host(lab.qg.order)
        out = np.empty(nq, dtype=np.int64)
        out[qo] = _to_host(label)
        return out, qo[_to_host(tie_q)], _to_host(tie_c)


@dataclass
class _Labelling:
    """A labelling's grids on the device: sorted queries and core points (with the core
    points' ids), their neighbouring cell pairs, and the pair batch size."""

    qg: SortedPoints
    cg: SortedPoints
    cc: Any  # the core points' ids (cluster or component), in their sorted order
    qa: Any  # query cell of each cell pair
    cb: Any  # core cell of each cell pair
    own: Any  # whether the pair is a cell with itself
    c_len: Any  # core points per core cell
    batch: int


GRID_KERNEL = GridKernel()
