"""DBSCAN's numeric kernels on the CPU (numba), run per spatial partition on the executors.

Everything here works on one region of space: the region's own ("home") points plus the "halo",
the points of neighbouring regions within ``eps`` of its edge. The distributed algorithm in
``clustering/dbscan.py`` routes the points and merges what these kernels return.

Distances follow scikit-learn exactly: a neighbour is a point whose squared Euclidean distance,
summed dimension by dimension, is ``<= eps * eps`` (what scikit-learn's KD-tree compares), and a
point counts itself.

Points are bucketed into grid cells of side ``eps``; a point's neighbours lie in the (at most
``3**d``) cells whose integer coordinates differ from its own by at most one. The cells are kept
sorted, and the neighbouring cells are found by narrowing the sorted range one dimension at a
time, so the cost follows the non-empty cells, not ``3**d``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit


@dataclass(frozen=True)
class Grid:
    """Points sorted by their grid cell, with the cells' ranges."""

    order: np.ndarray  # sorted position -> original index
    cells: np.ndarray  # (n_cells, d) int64, lexicographically sorted, unique
    starts: np.ndarray  # (n_cells,) first sorted position of each cell
    ends: np.ndarray  # (n_cells,) one past the last
    origin: np.ndarray  # (d,) float64
    side: float


def build_grid(x: np.ndarray, side: float, origin: np.ndarray | None = None) -> Grid:
    """Sort ``x`` (n, d) into cells of ``side``; ``origin`` defaults to the minimum corner."""
    n, d = x.shape
    if origin is None:
        origin = x.min(axis=0) if n else np.zeros(d)
    if n == 0:
        empty = np.empty(0, dtype=np.int64)
        return Grid(empty, np.empty((0, d), dtype=np.int64), empty, empty, origin, side)
    cells = np.floor((x - origin) / side).astype(np.int64)
    order, first_of_group = sort_rows(cells)
    starts = np.flatnonzero(first_of_group).astype(np.int64)
    ends = np.append(starts[1:], n).astype(np.int64)
    first = order[starts]
    return Grid(order, np.ascontiguousarray(cells[first]), starts, ends, origin, side)


def sort_rows(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``np.lexsort`` of the rows of the int64 array ``rows`` (first column most significant,
    ties in row order), and for the sorted rows whether each is the first of its run of equal
    rows. Through one sort of a single int64 key when the columns' ranges fit in 62 bits."""
    n = rows.shape[0]
    key = _cell_key(rows) if n else None
    if key is None:
        order = np.lexsort(rows.T[::-1])
        sorted_rows = rows[order]
        change = np.any(sorted_rows[1:] != sorted_rows[:-1], axis=1)
    else:
        order, sorted_key = _stable_order(key)
        change = sorted_key[1:] != sorted_key[:-1]
    return order, np.r_[True, change] if n else np.zeros(0, dtype=bool)


def _cell_key(cells: np.ndarray) -> np.ndarray | None:
    """One non-negative int64 per row that orders the rows as their lexicographic order
    (equal rows, equal keys), or None when the columns' ranges need more than 62 bits."""
    cells = np.ascontiguousarray(cells, dtype=np.int64)
    key = np.empty(cells.shape[0], dtype=np.int64)
    return key if _fill_cell_key(cells, key) else None


@njit(cache=True, nogil=True)
def _fill_cell_key(cells: np.ndarray, key: np.ndarray) -> bool:
    n, d = cells.shape
    low = cells[0].copy()
    high = cells[0].copy()
    for i in range(1, n):
        for j in range(d):
            v = cells[i, j]
            if v < low[j]:
                low[j] = v
            elif v > high[j]:
                high[j] = v
    size = 1.0
    for j in range(d):
        size *= float(high[j] - low[j] + 1)
    if size >= 2.0**62:
        return False
    for i in range(n):
        k = 0
        for j in range(d):
            k = k * (high[j] - low[j] + 1) + (cells[i, j] - low[j])
        key[i] = k
    return True


def _stable_order(key: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``argsort(key, kind="stable")`` and the sorted keys. When ``key * n + row`` fits in
    int64, one unstable sort of those values gives both (they are distinct, so any sort is
    stable on the key), at two thirds of the time of a stable argsort."""
    n = key.shape[0]
    if n == 0:
        return np.empty(0, dtype=np.int64), key
    top = int(key.max())
    if top >= (2**63 - 1) // n - 1:
        order = np.argsort(key, kind="stable")
        return order, key[order]
    tagged = key * np.int64(n)
    tagged += np.arange(n, dtype=np.int64)
    tagged.sort()
    order, sorted_key = tagged % n, tagged // n
    return order, sorted_key


# --------------------------------------------------------------------------- numba helpers


@njit(cache=True, nogil=True)
def _lower(cells: np.ndarray, lo: int, hi: int, j: int, value: int) -> int:
    """First row in [lo, hi) whose column j is >= value (column j sorted within the range)."""
    while lo < hi:
        mid = (lo + hi) >> 1
        if cells[mid, j] < value:
            lo = mid + 1
        else:
            hi = mid
    return lo


@njit(cache=True, nogil=True)
def _prefix_ranges(
    cells: np.ndarray,
    c: np.ndarray,
    out_lo: np.ndarray,
    out_hi: np.ndarray,
    out_s: np.ndarray,
    out_far: np.ndarray,
) -> int:
    """The ranges of sorted cells whose first ``d - 1`` coordinates may hold a point within eps
    of a point of cell ``c``: one range per admissible prefix offset, with the offset's share
    ``s`` of the bound below and whether it already leaves ``c``'s touching cells.

    With cells of side ``eps / sqrt(d)``, a cell at integer offset ``o`` can hold such a point
    only when ``sum(max(|o_j| - 1, 0) ** 2) <= d``. The sorted cells are narrowed one dimension
    at a time with that bound, so only existing cells are visited.
    """
    n_cells, d = cells.shape
    last = d - 1
    r_max = 1 + int(np.sqrt(d))
    size = (d + 1) * (2 * r_max + 1) + 1
    stack_lo = np.empty(size, dtype=np.int64)
    stack_hi = np.empty(size, dtype=np.int64)
    stack_dim = np.empty(size, dtype=np.int64)
    stack_s = np.empty(size, dtype=np.int64)
    stack_far = np.empty(size, dtype=np.bool_)
    stack_lo[0] = 0
    stack_hi[0] = n_cells
    stack_dim[0] = 0
    stack_s[0] = 0
    stack_far[0] = False
    top = 1
    count = 0
    while top > 0:
        top -= 1
        lo = stack_lo[top]
        hi = stack_hi[top]
        j = stack_dim[top]
        s_acc = stack_s[top]
        far = stack_far[top]
        if j == last:
            out_lo[count] = lo
            out_hi[count] = hi
            out_s[count] = s_acc
            out_far[count] = far
            count += 1
            continue
        r = 1 + int(np.sqrt(d - s_acc))
        s = _lower(cells, lo, hi, j, c[j] - r)
        for delta in range(-r, r + 1):
            e = _lower(cells, s, hi, j, c[j] + delta + 1)
            a = abs(delta) - 1
            s_new = s_acc + (a * a if a > 0 else 0)
            if s < e and s_new <= d:
                stack_lo[top] = s
                stack_hi[top] = e
                stack_dim[top] = j + 1
                stack_s[top] = s_new
                stack_far[top] = far or abs(delta) > 1
                top += 1
            s = e
    return count


@njit(cache=True, nogil=True)
def _walk(cells: np.ndarray):
    """The state of :func:`_neighbours` for one sorted cell array: the prefix ranges of the
    last cell asked about, a position in each, and that cell."""
    n_cells, d = cells.shape
    width = 2 * (1 + int(np.sqrt(d))) + 1
    cap = 1
    for _ in range(d - 1):
        cap *= width
        if cap >= n_cells:
            break
    cap = max(1, min(cap, n_cells))
    ranges = np.empty((4, cap), dtype=np.int64)  # lo, hi, s, far
    position = np.empty(cap, dtype=np.int64)
    last_cell = np.empty(d, dtype=np.int64)
    n_ranges = np.full(1, -1, dtype=np.int64)
    return ranges, position, last_cell, n_ranges


@njit(cache=True, nogil=True)
def _neighbours(
    cells: np.ndarray, c: np.ndarray, walk, out: np.ndarray, out_far: np.ndarray
) -> int:
    """Indices of the cells that may hold a point within eps of a point of cell ``c`` (see
    :func:`_prefix_ranges` for the bound); ``out_far[i]`` is True when the cell does not touch
    ``c`` (some ``|o_j| > 1``).

    Asked about cells in sorted order (every caller walks its cells so), consecutive cells
    share their first ``d - 1`` coordinates: the prefix ranges are then reused, and in each the
    last coordinate is found from where the previous cell left it, so most calls cost a short
    binary search per range instead of a descent through every dimension.
    """
    ranges, position, last_cell, n_ranges = walk
    d = cells.shape[1]
    last = d - 1
    m = n_ranges[0]
    same = m >= 0 and c[last] >= last_cell[last]
    if same:
        for j in range(last):
            if c[j] != last_cell[j]:
                same = False
                break
    if not same:
        m = _prefix_ranges(cells, c, ranges[0], ranges[1], ranges[2], ranges[3])
        for t in range(m):
            position[t] = ranges[0, t]
        n_ranges[0] = m
    for j in range(d):
        last_cell[j] = c[j]
    count = 0
    for t in range(m):
        s_acc = ranges[2, t]
        r = 1 + int(np.sqrt(d - s_acc))
        hi = ranges[1, t]
        k = _lower(cells, position[t], hi, last, c[last] - r)
        position[t] = k
        while k < hi:
            delta = cells[k, last] - c[last]
            if delta > r:
                break
            a = abs(delta) - 1
            if s_acc + (a * a if a > 0 else 0) <= d:
                out[count] = k
                out_far[count] = ranges[3, t] != 0 or abs(delta) > 1
                count += 1
            k += 1
    return count


@njit(cache=True, nogil=True)
def _find_cell(cells: np.ndarray, c: np.ndarray) -> int:
    """Index of cell ``c`` among the lexicographically sorted ``cells``, or -1."""
    lo = 0
    hi = cells.shape[0]
    for j in range(cells.shape[1]):
        lo = _lower(cells, lo, hi, j, c[j])
        hi = _lower(cells, lo, hi, j, c[j] + 1)
        if lo >= hi:
            return -1
    return lo


@njit(cache=True, nogil=True)
def _dist2(x: np.ndarray, i: int, y: np.ndarray, k: int) -> float:
    s = 0.0
    for j in range(x.shape[1]):
        t = x[i, j] - y[k, j]
        s += t * t
    return s


@njit(cache=True, nogil=True)
def _find(parent: np.ndarray, i: int) -> int:
    root = i
    while parent[root] != root:
        root = parent[root]
    while parent[i] != root:  # path compression
        nxt = parent[i]
        parent[i] = root
        i = nxt
    return root


@njit(cache=True, nogil=True)
def _union(parent: np.ndarray, a: int, b: int) -> None:
    ra = _find(parent, a)
    rb = _find(parent, b)
    if ra < rb:
        parent[rb] = ra
    elif rb < ra:
        parent[ra] = rb


@njit(cache=True, nogil=True)
def _grown(a: np.ndarray, b: np.ndarray, n: int, cap: int) -> tuple[np.ndarray, np.ndarray]:
    """Two int64 buffers of ``cap`` entries holding the first ``n`` of ``a`` and ``b``."""
    a2 = np.empty(cap, dtype=np.int64)
    b2 = np.empty(cap, dtype=np.int64)
    a2[:n] = a[:n]
    b2[:n] = b[:n]
    return a2, b2


@njit(cache=True, nogil=True)
def _any_within(
    x: np.ndarray, p: int, y: np.ndarray, lo: int, hi: int, mask: np.ndarray, eps2: float
) -> bool:
    for q in range(lo, hi):  # noqa: SIM110 - an explicit loop is what numba compiles
        if mask[q] and _dist2(x, p, y, q) <= eps2:
            return True
    return False


@njit(cache=True, nogil=True)
def _fit_region(
    xs: np.ndarray,
    home: np.ndarray,
    cells: np.ndarray,
    starts: np.ndarray,
    ends: np.ndarray,
    eps2: float,
    min_pts: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Core flags of the home points and the component of each (``parent``, fully compressed).

    All points of one cell lie within eps of each other (the cell's diagonal is below eps), so a
    cell holding ``min_pts`` points makes all of them core, and all core points of a cell belong
    to one component: components are unions of cells.
    """
    n = xs.shape[0]
    n_cells = cells.shape[0]
    core = np.zeros(n, dtype=np.bool_)
    buf = np.empty(n_cells, dtype=np.int64)
    far = np.empty(n_cells, dtype=np.bool_)
    walk = _walk(cells)
    # 1. core flags, own cell first, then the touching cells, stopping as soon as min_pts
    #    neighbours are seen
    for ci in range(n_cells):
        size = ends[ci] - starts[ci]
        if size >= min_pts:
            for p in range(starts[ci], ends[ci]):
                core[p] = home[p]
            continue
        has_home = False
        for p in range(starts[ci], ends[ci]):
            has_home = has_home or home[p]
        if not has_home:
            continue
        m = _neighbours(cells, cells[ci], walk, buf, far)
        for p in range(starts[ci], ends[ci]):
            if not home[p]:
                continue
            count = size
            # touching cells first: they hold most neighbours, so the count stops sooner
            for pass_far in (False, True):
                for t in range(m):
                    k = buf[t]
                    if k == ci or far[t] != pass_far:
                        continue
                    for q in range(starts[k], ends[k]):
                        if _dist2(xs, p, xs, q) <= eps2:
                            count += 1
                            if count >= min_pts:
                                break
                    if count >= min_pts:
                        break
                if count >= min_pts:
                    break
            core[p] = count >= min_pts
    # 2. one representative core point per cell; its cell's core points join it
    rep = np.full(n_cells, -1, dtype=np.int64)
    parent = np.arange(n)
    for ci in range(n_cells):
        for p in range(starts[ci], ends[ci]):
            if core[p]:
                if rep[ci] < 0:
                    rep[ci] = p
                else:
                    parent[p] = rep[ci]
    # 3. link neighbouring cells that hold a core pair within eps; touching cells first, so
    #    most far pairs are already connected and skipped without a distance computation
    for pass_far in (False, True):
        for ci in range(n_cells):
            if rep[ci] < 0:
                continue
            m = _neighbours(cells, cells[ci], walk, buf, far)
            for t in range(m):
                k = buf[t]
                if k <= ci or rep[k] < 0 or far[t] != pass_far:
                    continue
                if _find(parent, rep[ci]) == _find(parent, rep[k]):
                    continue
                linked = False
                for p in range(starts[ci], ends[ci]):
                    if core[p] and _any_within(xs, p, xs, starts[k], ends[k], core, eps2):
                        linked = True
                        break
                if linked:
                    _union(parent, rep[ci], rep[k])
    for i in range(n):
        _find(parent, i)
    return core, parent


@njit(cache=True, nogil=True)
def halo_edges(
    xs: np.ndarray,
    home: np.ndarray,
    core: np.ndarray,
    component: np.ndarray,
    cells: np.ndarray,
    starts: np.ndarray,
    ends: np.ndarray,
    eps2: float,
) -> tuple[np.ndarray, np.ndarray]:
    """For each halo point, the distinct components of the core points within eps of it.

    ``component`` gives each core point's component; all core points of one cell must share
    one (true of any exact clustering, the cell's diagonal being below eps). Returns the halo
    points' positions and the components, one row per (halo point, component).
    """
    n_cells = cells.shape[0]
    rep = np.full(n_cells, -1, dtype=np.int64)
    for ci in range(n_cells):
        for p in range(starts[ci], ends[ci]):
            if core[p]:
                rep[ci] = p
                break
    buf = np.empty(n_cells, dtype=np.int64)
    far = np.empty(n_cells, dtype=np.bool_)
    walk = _walk(cells)
    cap = 1024
    edge_halo = np.empty(cap, dtype=np.int64)
    edge_root = np.empty(cap, dtype=np.int64)
    n_edges = 0
    seen = np.empty(n_cells, dtype=np.int64)
    for ci in range(n_cells):
        has_halo = False
        for p in range(starts[ci], ends[ci]):
            has_halo = has_halo or not home[p]
        if not has_halo:
            continue
        m = _neighbours(cells, cells[ci], walk, buf, far)
        for h in range(starts[ci], ends[ci]):
            if home[h]:
                continue
            n_seen = 0
            for t in range(m):
                k = buf[t]
                if rep[k] < 0:
                    continue
                r = component[rep[k]]
                dup = False
                for s in range(n_seen):
                    if seen[s] == r:
                        dup = True
                        break
                if dup or not _any_within(xs, h, xs, starts[k], ends[k], core, eps2):
                    continue
                seen[n_seen] = r
                n_seen += 1
                if n_edges == cap:
                    cap *= 2
                    edge_halo, edge_root = _grown(edge_halo, edge_root, n_edges, cap)
                edge_halo[n_edges] = h
                edge_root[n_edges] = r
                n_edges += 1
    return edge_halo[:n_edges], edge_root[:n_edges]


@njit(cache=True, nogil=True)
def _nearest_core(
    q: np.ndarray,
    q_cells: np.ndarray,
    q_starts: np.ndarray,
    q_ends: np.ndarray,
    cs: np.ndarray,
    c_cluster: np.ndarray,
    cells: np.ndarray,
    starts: np.ndarray,
    ends: np.ndarray,
    eps2: float,
) -> tuple[np.ndarray, np.ndarray]:
    """For sorted query points: the cluster of the closest core point within eps (-1 if none,
    ties to the smallest cluster id) and whether the point coincides with a core point.

    All core points of a cell share one cluster. Where every core cell around a query cell
    holds the same cluster, any core point within eps decides the label and the scan stops
    early; elsewhere the closest core point is searched exhaustively.
    """
    nq = q.shape[0]
    n_cells = cells.shape[0]
    label = np.full(nq, -1, dtype=np.int64)
    is_core = np.zeros(nq, dtype=np.bool_)
    buf = np.empty(max(1, n_cells), dtype=np.int64)
    far = np.empty(max(1, n_cells), dtype=np.bool_)
    walk = _walk(cells)
    for qi in range(q_cells.shape[0]):
        # most training rows are core points: settle those from their own cell alone and
        # enumerate the neighbour cells only when some query point of the cell is left
        own = _find_cell(cells, q_cells[qi])
        left = False
        for p in range(q_starts[qi], q_ends[qi]):
            if own >= 0:
                for c in range(starts[own], ends[own]):
                    if _dist2(q, p, cs, c) == 0.0:
                        is_core[p] = True
                        label[p] = c_cluster[c]
                        break
            left = left or not is_core[p]
        if not left:
            continue
        m = _neighbours(cells, q_cells[qi], walk, buf, far)
        first = -1
        pure = True
        for t in range(m):
            k = buf[t]
            cl = c_cluster[starts[k]]
            if first < 0:
                first = cl
            elif cl != first:
                pure = False
        for p in range(q_starts[qi], q_ends[qi]):
            if is_core[p]:
                continue
            best = np.inf
            for t in range(m):
                k = buf[t]
                found = False
                for c in range(starts[k], ends[k]):
                    d2 = _dist2(q, p, cs, c)
                    if d2 > eps2:
                        continue
                    if d2 < best or (d2 == best and c_cluster[c] < label[p]):
                        best = d2
                        label[p] = c_cluster[c]
                    if pure:
                        found = True
                        break
                if found:
                    break
    return label, is_core


@njit(cache=True, nogil=True)
def _border_candidates(
    q: np.ndarray,
    q_cells: np.ndarray,
    q_starts: np.ndarray,
    q_ends: np.ndarray,
    cs: np.ndarray,
    c_comp: np.ndarray,
    cells: np.ndarray,
    starts: np.ndarray,
    ends: np.ndarray,
    eps2: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For sorted query points: the smallest component among the closest core points within
    eps (-1 if none), and every (query, component) where closest core points of two or more
    components tie, so that the tie can be broken later on the final cluster ids.

    All core points of a cell share one component. Where every core cell around a query cell
    holds the same component, the first core point within eps decides and no tie is possible.
    """
    nq = q.shape[0]
    n_cells = cells.shape[0]
    label = np.full(nq, -1, dtype=np.int64)
    buf = np.empty(max(1, n_cells), dtype=np.int64)
    far = np.empty(max(1, n_cells), dtype=np.bool_)
    walk = _walk(cells)
    at_best = np.empty(max(1, n_cells), dtype=np.int64)
    cap = 64
    tie_q = np.empty(cap, dtype=np.int64)
    tie_c = np.empty(cap, dtype=np.int64)
    n_ties = 0
    for qi in range(q_cells.shape[0]):
        m = _neighbours(cells, q_cells[qi], walk, buf, far)
        if m == 0:
            continue
        pure = True
        for t in range(1, m):
            if c_comp[starts[buf[t]]] != c_comp[starts[buf[0]]]:
                pure = False
                break
        for p in range(q_starts[qi], q_ends[qi]):
            if pure:
                for t in range(m):
                    k = buf[t]
                    found = False
                    for c in range(starts[k], ends[k]):
                        if _dist2(q, p, cs, c) <= eps2:
                            found = True
                            break
                    if found:
                        label[p] = c_comp[starts[k]]
                        break
                continue
            best = np.inf
            n_best = 0
            for t in range(m):
                k = buf[t]
                comp = c_comp[starts[k]]
                for c in range(starts[k], ends[k]):
                    d2 = _dist2(q, p, cs, c)
                    if d2 > eps2 or d2 > best:
                        continue
                    if d2 < best:
                        best = d2
                        n_best = 0
                    dup = False
                    for s in range(n_best):
                        if at_best[s] == comp:
                            dup = True
                            break
                    if not dup:
                        at_best[n_best] = comp
                        n_best += 1
            if n_best == 0:
                continue
            smallest = at_best[0]
            for s in range(1, n_best):
                smallest = min(smallest, at_best[s])
            label[p] = smallest
            if n_best > 1:
                while n_ties + n_best > cap:
                    cap *= 2
                    tie_q, tie_c = _grown(tie_q, tie_c, n_ties, cap)
                for s in range(n_best):
                    tie_q[n_ties] = p
                    tie_c[n_ties] = at_best[s]
                    n_ties += 1
    return label, tie_q[:n_ties], tie_c[:n_ties]


def smallest_per_group(
    x: np.ndarray, rows: np.ndarray, group: np.ndarray, n_groups: int
) -> np.ndarray:
    """For each group id below ``n_groups``: which of ``rows`` (whose groups are ``group``)
    has the lexicographically smallest coordinates in ``x``, the first on equal ones; -1 for
    a group without rows. One pass, where a lexsort of the coordinates costs ten."""
    return _smallest_per_group(
        np.ascontiguousarray(x, dtype=np.float64),
        np.asarray(rows, dtype=np.int64),
        np.asarray(group, dtype=np.int64),
        int(n_groups),
    )


@njit(cache=True, nogil=True)
def _smallest_per_group(x: np.ndarray, rows: np.ndarray, group: np.ndarray, n_groups: int):
    best = np.full(n_groups, -1, dtype=np.int64)
    for t in range(rows.size):
        i = rows[t]
        g = group[t]
        b = best[g]
        if b < 0:
            best[g] = i
            continue
        for j in range(x.shape[1]):
            if x[i, j] != x[b, j]:
                if x[i, j] < x[b, j]:
                    best[g] = i
                break
    return best


def box_tests(
    x: np.ndarray,
    inside_lo: np.ndarray,
    inside_hi: np.ndarray,
    *faces: tuple[np.ndarray, np.ndarray],
) -> tuple[np.ndarray, ...]:
    """Per row of ``x``: whether it lies in the closed box ``[inside_lo, inside_hi]``, then for
    each ``(lo, hi)`` pair of ``faces`` whether some coordinate is ``<= lo`` or ``>= hi``.
    The bounds are computed by the caller, so the comparisons are exactly numpy's; one pass
    over the rows instead of a temporary array per comparison."""
    pairs = np.array([np.asarray(f, dtype=np.float64) for f in faces]).reshape(-1, 2, x.shape[1])
    inside, near = _box_tests(
        np.ascontiguousarray(x, dtype=np.float64),
        np.asarray(inside_lo, dtype=np.float64),
        np.asarray(inside_hi, dtype=np.float64),
        pairs,
    )
    return (inside, *near)


@njit(cache=True, nogil=True)
def _box_tests(x: np.ndarray, lo: np.ndarray, hi: np.ndarray, faces: np.ndarray):
    n, d = x.shape
    inside = np.empty(n, dtype=np.bool_)
    near = np.zeros((faces.shape[0], n), dtype=np.bool_)
    for i in range(n):
        ok = True
        for j in range(d):
            if not (x[i, j] >= lo[j] and x[i, j] <= hi[j]):
                ok = False
                break
        inside[i] = ok
        for f in range(faces.shape[0]):
            for j in range(d):
                if x[i, j] <= faces[f, 0, j] or x[i, j] >= faces[f, 1, j]:
                    near[f, i] = True
                    break
    return inside, near


# --------------------------------------------------------------------------- kernel API


@dataclass(frozen=True)
class RegionResult:
    """What clustering one region yields (indices refer to the region's input rows)."""

    core_index: np.ndarray  # home core points
    core_component: np.ndarray  # their local component (0..n_components-1)
    edge_halo_index: np.ndarray  # halo points adjacent to a home core point ...
    edge_component: np.ndarray  # ... and that core point's local component


def cell_side(eps: float, d: int) -> float:
    """Grid side: the cell's diagonal stays below eps, with a 1e-6 relative margin that keeps
    the geometry exact under floating-point rounding of the cell coordinates."""
    return eps / np.sqrt(d) * (1.0 - 1e-6)


class CPUKernel:
    """DBSCAN per region with numba; the reference implementation of the kernel protocol."""

    name = "cpu"

    def fit_region(
        self, x: np.ndarray, home: np.ndarray, eps: float, min_points: int
    ) -> RegionResult:
        """Core flags of the home points, their local components, and the halo adjacencies."""
        x = np.ascontiguousarray(x, dtype=np.float64)
        if x.shape[0] == 0:
            empty = np.empty(0, dtype=np.int64)
            return RegionResult(empty, empty, empty, empty)
        grid, xs, hs, core, parent = self._cluster(x, home, eps, min_points)
        e_halo, e_root = halo_edges(
            xs, hs, core, parent, grid.cells, grid.starts, grid.ends, eps * eps
        )
        core_pos = np.flatnonzero(core)
        roots, comp = np.unique(parent[core_pos], return_inverse=True)
        edge_comp = np.searchsorted(roots, e_root)
        return RegionResult(
            core_index=grid.order[core_pos],
            core_component=comp.astype(np.int64),
            edge_halo_index=grid.order[e_halo],
            edge_component=edge_comp.astype(np.int64),
        )

    def fit_cores(
        self, x: np.ndarray, home: np.ndarray, eps: float, min_points: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`fit_region` without the halo adjacencies: the home core points and their
        local components (what DBSCAN's one-pass fit uses)."""
        x = np.ascontiguousarray(x, dtype=np.float64)
        if x.shape[0] == 0:
            empty = np.empty(0, dtype=np.int64)
            return empty, empty
        grid, _, _, core, parent = self._cluster(x, home, eps, min_points)
        core_pos = np.flatnonzero(core)
        return grid.order[core_pos], _dense_ranks(parent[core_pos], parent.size)

    def _cluster(
        self, x: np.ndarray, home: np.ndarray, eps: float, min_points: int
    ) -> tuple[Grid, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        grid = build_grid(x, cell_side(eps, x.shape[1]))
        xs = np.ascontiguousarray(x[grid.order])
        hs = np.ascontiguousarray(np.asarray(home, dtype=np.bool_)[grid.order])
        core, parent = _fit_region(
            xs, hs, grid.cells, grid.starts, grid.ends, eps * eps, int(min_points)
        )
        return grid, xs, hs, core, parent

    def nearest_core(
        self, q: np.ndarray, cores: np.ndarray, clusters: np.ndarray, eps: float
    ) -> tuple[np.ndarray, np.ndarray]:
        """Cluster of the closest core point within eps (-1 when none, ties to the smallest
        cluster id) and whether each query point coincides with a core point."""
        q = np.ascontiguousarray(q, dtype=np.float64)
        nq = q.shape[0]
        if nq == 0 or cores.shape[0] == 0:
            return np.full(nq, -1, dtype=np.int64), np.zeros(nq, dtype=bool)
        qs, qg, cs, cc, cg = _query_grids(q, cores, clusters, eps)
        label_s, core_s = _nearest_core(
            qs, qg.cells, qg.starts, qg.ends, cs, cc, cg.cells, cg.starts, cg.ends, eps * eps
        )
        label = np.empty(nq, dtype=np.int64)
        is_core = np.empty(nq, dtype=bool)
        label[qg.order] = label_s
        is_core[qg.order] = core_s
        return label, is_core


CPU_KERNEL = CPUKernel()


def _dense_ranks(values: np.ndarray, bound: int) -> np.ndarray:
    """``np.unique(values, return_inverse=True)[1]`` for int64 values in ``[0, bound)``: each
    value's rank among the distinct values, without a sort."""
    seen = np.zeros(bound, dtype=np.int64)
    seen[values] = 1
    return (np.cumsum(seen) - 1)[values]


def _query_grids(
    q: np.ndarray, cores: np.ndarray, ids: np.ndarray, eps: float
) -> tuple[np.ndarray, Grid, np.ndarray, np.ndarray, Grid]:
    """The eps grids of a labelling: the queries sorted by cell with their grid, and the core
    points and their ids sorted by cell with theirs (the same origin, so cells line up)."""
    side = cell_side(eps, q.shape[1])
    cg = build_grid(np.ascontiguousarray(cores, dtype=np.float64), side)
    cs = np.ascontiguousarray(cores[cg.order], dtype=np.float64)
    cc = np.ascontiguousarray(np.asarray(ids)[cg.order], dtype=np.int64)
    qg = build_grid(q, side, origin=cg.origin)
    return np.ascontiguousarray(q[qg.order]), qg, cs, cc, cg


def border_candidates(
    q: np.ndarray, cores: np.ndarray, components: np.ndarray, eps: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each query point: the smallest component among its closest core points within eps
    (-1 when none), and the ``(query, component)`` pairs of the queries whose closest core
    points belong to two or more components (the final cluster ids decide those ties).

    Backend-independent: it runs after any backend's region kernel, on the points of one
    region, so the GPU backends share it.
    """
    q = np.ascontiguousarray(q, dtype=np.float64)
    nq = q.shape[0]
    empty = np.empty(0, dtype=np.int64)
    if nq == 0 or cores.shape[0] == 0:
        return np.full(nq, -1, dtype=np.int64), empty, empty
    qs, qg, cs, cc, cg = _query_grids(q, cores, components, eps)
    label_s, tie_q, tie_c = _border_candidates(
        qs, qg.cells, qg.starts, qg.ends, cs, cc, cg.cells, cg.starts, cg.ends, eps * eps
    )
    label = np.empty(nq, dtype=np.int64)
    label[qg.order] = label_s
    return label, qg.order[tie_q], tie_c
