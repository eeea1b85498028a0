"""What one region computes in DBSCAN's one-pass fit, and how the driver merges the regions.

Pure numpy around a backend's region kernel, so the whole algorithm runs and is tested
without Spark (``tests/unit/test_dbscan_regions.py``); :mod:`.dbscan_spark` runs it per region.

A region receives its *home* points (in its half-open box), its *inner halo* (the other points
within eps of the box) and its *outer halo* (within 2 eps). Every neighbour of an inner point
is then present, so the region knows the exact core flag of each home and inner-halo point, and
with it:

- the local components of those core points (unions of true edges only);
- the label of each home point: its own component when core; otherwise the component of its
  closest core point within eps (home or inner halo), or noise. When the closest core points
  belong to several components, the point gets a *tie set* and the final cluster ids decide
  (the smallest wins, as for a new row);
- per component: its number of home core points and its lexicographically smallest one, which
  rank the clusters;
- *links*: (row key, component) for the inner-halo core points of the components it uses, and
  for its home core points near its box's faces. The same core point seen by two regions links
  their components. Every edge between two core points is seen by the home region of each
  end, which keeps all three of its incident edges in one component; the two regions both emit
  the shared end, so the links reproduce the global connectivity exactly.

Links are emitted per *group* rather than per point: the points of one home region in one cell
of a global grid of side ``eps / sqrt(d)`` (all within eps of each other, so its core points
share one component in any region that sees them as core). A group is named by the smallest
row key among all its points. Its home region holds all of them; any other region that sees
one of its points within eps of its box sees all of them (the cell is narrower than eps and the
region receives everything within 2 eps), so both name the group alike, and one link per
(group, component) replaces one per point.

The numba helpers are imported where a region is fitted (on the executors): the driver's merge
stays in numpy and scipy, so a driver never loads numba and LLVM (~110 MiB) for it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..partitioning import halo_margin

#: bits of a region's local ids in a global id: ``region << LOCAL_BITS | local``
LOCAL_BITS = 32


@dataclass(frozen=True)
class RegionLabels:
    """One region's result; indices refer to the region's rows, ids are local."""

    home_index: np.ndarray  # the home rows, in row order
    home_label: np.ndarray  # component, tie set (n_components + t) or -1 per home row
    home_core: np.ndarray  # core flag per home row
    comp_id: np.ndarray  # the components used by the labels or the links
    comp_core_count: np.ndarray  # their home core points
    comp_smallest: np.ndarray  # (n, d): their smallest home core point (NaN: none)
    link_key: np.ndarray  # groups (their smallest row key) linking components across regions ...
    link_comp: np.ndarray  # ... and a component here holding the group's core points
    tie_id: np.ndarray  # (tie set, component) pairs
    tie_comp: np.ndarray


def fit_label_region(
    kernel: Any,
    x: np.ndarray,
    home_region: np.ndarray,
    key: np.ndarray,
    region: int,
    lo: np.ndarray,
    hi: np.ndarray,
    eps: float,
    min_points: int,
) -> RegionLabels:
    """Core flags, components, home labels and links of region ``region`` (box ``[lo, hi)``),
    given its rows' coordinates ``x``, home regions and row keys."""
    from .cpu.dbscan_kernel import border_candidates, box_tests, cell_side

    n, d = x.shape
    margin = halo_margin(eps)
    home_region = np.asarray(home_region, dtype=np.int64)
    home = home_region == region
    # a home point in another region's inner halo is within the margin of one of this box's
    # faces, tested with the routing's own arithmetic (lo + margin is hi' + margin of the
    # neighbour), so the test can only over-include; the rows that can share a group with a
    # linking row are the halo and the home rows less than a cell side further from a face
    # than that (a cell is narrower than the difference)
    reach = margin + cell_side(eps, d) * (1.0 + 1e-6)
    in_margin, near_face, near_reach = box_tests(
        x, lo - margin, hi + margin, (lo + margin, hi - margin), (lo + reach, hi - reach)
    )
    inner = home | in_margin
    core_index, core_component = _cores(kernel, x, inner, eps, min_points)
    core = np.zeros(n, dtype=bool)
    core[core_index] = True
    comp = np.full(n, -1, dtype=np.int64)
    comp[core_index] = core_component
    n_comp = int(core_component.max(initial=-1)) + 1

    home_index = np.flatnonzero(home)
    home_core = core[home_index]
    label = comp[home_index]
    border = home_index[~home_core]
    # a kernel's own border pass where it has one (the GPU grid kernel's), else the CPU's
    border_pass = getattr(kernel, "border_candidates", border_candidates)
    b_label, tie_q, tie_c = border_pass(x[border], x[core_index], core_component, eps)
    tie_id, tie_comp, tied_query, tied_set = _tie_sets(tie_q, tie_c, n_comp)
    b_label[tied_query] = tied_set
    label[~home_core] = b_label

    home_cores = home_index[home_core]
    count = np.bincount(comp[home_cores], minlength=n_comp).astype(np.int64)
    used = count > 0
    used[b_label[(b_label >= 0) & (b_label < n_comp)]] = True
    used[tie_comp] = True
    smallest = np.full((n_comp, d), np.nan)
    first = smallest_per_group(x, home_cores, comp[home_cores], n_comp)
    has = first >= 0
    smallest[has] = x[first[has]]

    halo_cores = np.flatnonzero(inner & ~home & core)
    halo_cores = halo_cores[used[comp[halo_cores]]]
    face_cores = np.flatnonzero(home & core & near_face)
    grouped = np.flatnonzero(~home | near_reach)
    link_key, link_comp = _group_links(
        x,
        home_region,
        np.asarray(key, dtype=np.int64),
        eps,
        np.concatenate([halo_cores, face_cores]),
        comp,
        grouped,
    )
    comp_id = np.flatnonzero(used)
    return RegionLabels(
        home_index=home_index,
        home_label=label,
        home_core=home_core,
        comp_id=comp_id,
        comp_core_count=count[comp_id],
        comp_smallest=smallest[comp_id],
        link_key=link_key,
        link_comp=link_comp,
        tie_id=tie_id,
        tie_comp=tie_comp,
    )


def _cores(
    kernel: Any, x: np.ndarray, inner: np.ndarray, eps: float, min_points: int
) -> tuple[np.ndarray, np.ndarray]:
    """The core points among ``inner`` and their local components. A kernel's ``fit_cores``
    (every kernel of this package has one) skips the halo adjacencies that ``fit_region`` also
    computes and this fit does not use; a kernel with only ``fit_region`` still serves."""
    fit_cores = getattr(kernel, "fit_cores", None)
    if fit_cores is not None:
        return fit_cores(x, inner, eps, min_points)
    res = kernel.fit_region(x, inner, eps, min_points)
    return res.core_index, res.core_component


def _group_links(
    x: np.ndarray,
    home_region: np.ndarray,
    key: np.ndarray,
    eps: float,
    linking: np.ndarray,
    comp: np.ndarray,
    grouped: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """The distinct (group key, component) of the ``linking`` core points: a group is one home
    region's points in one global grid cell, named by its smallest row key. ``grouped`` are
    the rows that may share a group with a linking row (all of them do when in doubt)."""
    from .cpu.dbscan_kernel import cell_side, sort_rows

    empty = np.empty(0, dtype=np.int64)
    if linking.size == 0:
        return empty, empty
    cells = np.floor(x[grouped] / cell_side(eps, x.shape[1])).astype(np.int64)
    order, starts = sort_rows(np.column_stack([home_region[grouped], cells]))
    of_row = np.full(x.shape[0], -1, dtype=np.int64)
    of_row[grouped[order]] = np.cumsum(starts) - 1
    smallest_key = np.minimum.reduceat(key[grouped[order]], np.flatnonzero(starts))
    link_key, link_comp = smallest_key[of_row[linking]], comp[linking]
    by_pair = np.lexsort([link_comp, link_key])
    link_key, link_comp = link_key[by_pair], link_comp[by_pair]
    first = np.r_[True, (link_key[1:] != link_key[:-1]) | (link_comp[1:] != link_comp[:-1])]
    return link_key[first], link_comp[first]


def _tie_sets(
    tie_q: np.ndarray, tie_c: np.ndarray, n_comp: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Number the distinct tie sets ``n_comp, n_comp + 1, ...``: the (set, component) pairs,
    and for each tied query its set."""
    empty = np.empty(0, dtype=np.int64)
    if tie_q.size == 0:
        return empty, empty, empty, empty
    order = np.lexsort([tie_c, tie_q])
    q, c = tie_q[order], tie_c[order]
    cuts = np.flatnonzero(q[1:] != q[:-1]) + 1
    sets: dict[tuple[int, ...], int] = {}
    queries, set_of_query = [], []
    for qs, cs in zip(np.split(q, cuts), np.split(c, cuts), strict=True):
        key = tuple(cs.tolist())
        set_of_query.append(sets.setdefault(key, n_comp + len(sets)))
        queries.append(int(qs[0]))
    ids = [s for key, s in sets.items() for _ in key]
    comps = [v for key in sets for v in key]
    return (
        np.array(ids, dtype=np.int64),
        np.array(comps, dtype=np.int64),
        np.array(queries, dtype=np.int64),
        np.array(set_of_query, dtype=np.int64),
    )


def smallest_per_group(
    x: np.ndarray, rows: np.ndarray, group: np.ndarray, n_groups: int, numba_from: int = 100_000
) -> np.ndarray:
    """For each group id below ``n_groups``: which of ``rows`` (whose groups are ``group``)
    has the lexicographically smallest coordinates in ``x`` (finite), the first on equal ones;
    -1 for a group without rows. From ``numba_from`` rows on, one numba pass (a region's home
    core points: a lexsort of the coordinates costs ten passes); below, a lexsort in numpy
    (the driver's merge of a few thousand components, which then needs no numba)."""
    rows = np.asarray(rows, dtype=np.int64)
    group = np.asarray(group, dtype=np.int64)
    if rows.size >= numba_from:
        from .cpu.dbscan_kernel import smallest_per_group as one_pass

        return one_pass(x, rows, group, n_groups)
    best = np.full(n_groups, -1, dtype=np.int64)
    if rows.size == 0:
        return best
    order = np.lexsort([*np.asarray(x)[rows].T[::-1], group])  # stable: first on equal ones
    g = group[order]
    first = np.r_[True, g[1:] != g[:-1]]
    best[g[first]] = rows[order][first]
    return best


def global_ids(region: int, local: np.ndarray) -> np.ndarray:
    """Local ids of ``region`` made unique across regions; -1 stays -1."""
    local = np.asarray(local, dtype=np.int64)
    return np.where(local < 0, -1, (np.int64(region) << np.int64(LOCAL_BITS)) + local)


@dataclass(frozen=True)
class Clusters:
    """The merge's result: the final cluster of each label id, and the clusters' sizes."""

    label_id: np.ndarray  # component and tie-set ids (global)
    cluster: np.ndarray  # their cluster (int32)
    sizes: list[int]  # core points per cluster id


def merge_regions(
    comp_id: np.ndarray,
    comp_core_count: np.ndarray,
    comp_smallest: np.ndarray,
    link_key: np.ndarray,
    link_comp: np.ndarray,
    tie_id: np.ndarray,
    tie_comp: np.ndarray,
) -> Clusters:
    """Union the components that share a row key; number the clusters by decreasing number of
    core points, ties by the lexicographically smallest core point; a tie set takes the
    smallest cluster among its components. All ids are global."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    if comp_id.size == 0:
        return Clusters(np.empty(0, np.int64), np.empty(0, np.int32), [])
    order = np.argsort(comp_id)
    ids = comp_id[order]
    counts = comp_core_count[order]
    smallest = comp_smallest[order].reshape(ids.size, -1)
    by_key = np.argsort(link_key, kind="stable")
    keys = link_key[by_key]
    comps = np.searchsorted(ids, link_comp[by_key])
    same = np.flatnonzero(keys[1:] == keys[:-1])
    a, b = comps[same], comps[same + 1]
    graph = coo_matrix((np.ones(a.size), (a, b)), shape=(ids.size, ids.size))
    _, root = connected_components(graph, directed=False)
    n_roots = int(root.max()) + 1
    size = np.bincount(root, weights=counts, minlength=n_roots).astype(np.int64)
    # the smallest core point of each root: its components' smallest; a component without a
    # home core point has NaN, and a root with only such components stays NaN (ranked last)
    with_point = np.flatnonzero(~np.isnan(smallest).any(axis=1))
    first = smallest_per_group(smallest, with_point, root[with_point], n_roots)
    root_smallest = np.full((n_roots, smallest.shape[1]), np.nan)
    root_smallest[first >= 0] = smallest[first[first >= 0]]
    ranked = np.lexsort([*root_smallest.T[::-1], -size])
    cluster_of_root = np.empty(n_roots, dtype=np.int32)
    cluster_of_root[ranked] = np.arange(n_roots, dtype=np.int32)
    comp_cluster = cluster_of_root[root]
    if tie_id.size:
        tie_cluster = comp_cluster[np.searchsorted(ids, tie_comp)]
        by_tie = np.lexsort([tie_cluster, tie_id])
        t_ids, t_cl = tie_id[by_tie], tie_cluster[by_tie]
        firsts = np.r_[True, t_ids[1:] != t_ids[:-1]]
        label_id = np.concatenate([ids, t_ids[firsts]])
        cluster = np.concatenate([comp_cluster, t_cl[firsts]])
    else:
        label_id, cluster = ids, comp_cluster
    return Clusters(label_id, cluster.astype(np.int32), [int(size[r]) for r in ranked])
