"""Spatial partitioning of points into axis-aligned regions with a halo (the geometry only:
:mod:`spark_clustering.routing` moves the rows).

The regions come from a k-d split of a bounded random sample: each split cuts the widest
dimension at the quantile that gives each side its share of the regions still to make (the
median for an even count), so the regions hold equal shares of the sample, a dense area gets
many small regions and a sparse one few large ones, and no task is left with most of the points
when the data is skewed. The outermost regions extend to infinity, so every point has exactly
one home region, whatever the sample saw.

A point is *home* in the region whose half-open box ``[lo, hi)`` contains it and is *halo* in
every other region whose box, grown by ``eps`` on each side, contains it: any point within eps of
a region's home point is then present in that region, which makes per-region neighbourhoods exact.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

HALO_RELATIVE_MARGIN = 1e-9


@dataclass(frozen=True)
class Regions:
    """Axis-aligned boxes that tile space: ``lo[i] <= x < hi[i]`` (infinite at the edges)."""

    lo: np.ndarray  # (n_regions, d)
    hi: np.ndarray  # (n_regions, d)

    @property
    def n_regions(self) -> int:
        return int(self.lo.shape[0])

    @property
    def dimension(self) -> int:
        return int(self.lo.shape[1])

    def home(self, x: np.ndarray) -> np.ndarray:
        """Home region of each row of ``x`` (n, d)."""
        out = np.empty(x.shape[0], dtype=np.int32)
        for start in range(0, x.shape[0], 4096):
            chunk = x[start : start + 4096, None, :]
            inside = np.all((chunk >= self.lo[None]) & (chunk < self.hi[None]), axis=2)
            out[start : start + 4096] = np.argmax(inside, axis=1)
        return out

    def memberships(self, x: np.ndarray, eps: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every (row, region, is_home) with the row home in the region or in its halo.

        The halo test grows each box by ``eps`` plus a relative margin, so rounding can only
        add a point to a halo, never drop one.
        """
        margin = halo_margin(eps)
        rows: list[np.ndarray] = []
        regions: list[np.ndarray] = []
        homes: list[np.ndarray] = []
        for start in range(0, x.shape[0], 4096):
            chunk = x[start : start + 4096, None, :]
            near = np.all((chunk >= self.lo[None] - margin) & (chunk <= self.hi[None] + margin), 2)
            inside = np.all((chunk >= self.lo[None]) & (chunk < self.hi[None]), axis=2)
            r, g = np.nonzero(near)
            rows.append(r + start)
            regions.append(g.astype(np.int32))
            homes.append(inside[r, g])
        if not rows:
            empty = np.empty(0, dtype=np.int64)
            return empty, empty.astype(np.int32), empty.astype(bool)
        return np.concatenate(rows), np.concatenate(regions), np.concatenate(homes)

    def meeting(self, margin: float) -> list[list[int]]:
        """For each region, the regions (itself first) whose box grown by ``margin`` meets its
        box: the only regions whose halo can hold one of its points."""
        lo, hi = self.lo, self.hi
        meets = np.all((lo[None] - margin <= hi[:, None]) & (hi[None] + margin >= lo[:, None]), 2)
        return [[i, *(int(r) for r in np.flatnonzero(meets[i]) if r != i)] for i in range(len(lo))]

    def tree(self) -> Cut | int:
        """The boxes as a k-d tree: a leaf is a region id; a :class:`Cut` sends ``x[dim] <
        value`` left. Recovered from the boxes alone (a k-d split always leaves a cut that
        separates them), so a loaded model has it too."""
        return _guillotine(self.lo, self.hi, np.arange(self.n_regions))

    def to_rows(self) -> list[tuple[int, list[float], list[float]]]:
        """(region, lo, hi) rows for persistence."""
        return [(i, self.lo[i].tolist(), self.hi[i].tolist()) for i in range(self.n_regions)]

    @classmethod
    def from_rows(cls, rows: list[tuple[int, list[float], list[float]]], d: int) -> Regions:
        rows = sorted(rows, key=lambda r: r[0])
        if not rows:
            return cls(np.full((1, d), -np.inf), np.full((1, d), np.inf))
        lo = np.array([r[1] for r in rows], dtype=np.float64).reshape(len(rows), d)
        hi = np.array([r[2] for r in rows], dtype=np.float64).reshape(len(rows), d)
        return cls(lo, hi)


@dataclass(frozen=True)
class Cut:
    """An inner node of :meth:`Regions.tree`."""

    dim: int
    value: float
    left: Cut | int  # x[dim] < value
    right: Cut | int  # x[dim] >= value


def _guillotine(lo: np.ndarray, hi: np.ndarray, ids: np.ndarray) -> Cut | int:
    if ids.size == 1:
        return int(ids[0])
    for dim in range(lo.shape[1]):
        order = np.argsort(lo[ids, dim], kind="stable")
        starts = lo[ids[order], dim]
        reach = np.maximum.accumulate(hi[ids[order], dim])
        # a cut before position k: every box before ends at or below the next box's start
        ok = np.flatnonzero((reach[:-1] <= starts[1:]) & (starts[1:] > starts[0]))
        if ok.size:
            k = int(ok[0]) + 1
            value = float(starts[k])
            left, right = ids[order[:k]], ids[order[k:]]
            return Cut(
                dim, value, _guillotine(lo, hi, np.sort(left)), _guillotine(lo, hi, np.sort(right))
            )
    raise ValueError(
        f"regions={lo.shape[0]} boxes do not come from a k-d split: no cut separates them"
    )


def halo_margin(eps: float) -> float:
    """eps plus a relative margin: rounding may add a point to a halo, never drop one."""
    return eps * (1.0 + HALO_RELATIVE_MARGIN) + 1e-300


def build_regions(sample: np.ndarray, n_regions: int, min_width: float) -> Regions:
    """Split space into at most ``n_regions`` boxes holding about equal shares of ``sample``.

    A box meant to hold ``m`` regions is cut at the ``(m // 2) / m`` quantile of its widest
    dimension, its two sides meant for ``m // 2`` and ``m - m // 2``: the leaves hold equal
    shares for any count (halving at the median would leave some boxes twice the size of others
    whenever ``n_regions`` is not a power of two). A box is not cut along a dimension where its
    sample spread is below ``2 * min_width`` (cutting narrower than the halo only multiplies the
    replicated points); the regions it was meant for go to the largest box still to be cut.
    """
    d = sample.shape[1]
    pending: list[tuple[np.ndarray, np.ndarray, np.ndarray, int]] = [
        (sample, np.full(d, -np.inf), np.full(d, np.inf), max(1, n_regions))
    ]
    done: list[tuple[np.ndarray, np.ndarray]] = []
    spare = 0
    while pending:
        # the box holding the most sample points next, so that spare regions go to it
        pending.sort(key=lambda b: b[0].shape[0])
        pts, lo, hi, m = pending.pop()
        m += spare
        spare = 0
        cut = _choose_cut(pts, min_width, (m // 2) / m) if m > 1 else None
        if cut is None:
            done.append((lo, hi))
            spare = m - 1
            continue
        dim, value = cut
        left_hi = hi.copy()
        left_hi[dim] = value
        right_lo = lo.copy()
        right_lo[dim] = value
        mask = pts[:, dim] < value
        pending.append((pts[mask], lo, left_hi, m // 2))
        pending.append((pts[~mask], right_lo, hi, m - m // 2))
    lo_arr = np.array([b[0] for b in done], dtype=np.float64).reshape(len(done), d)
    hi_arr = np.array([b[1] for b in done], dtype=np.float64).reshape(len(done), d)
    return Regions(lo_arr, hi_arr)


def _choose_cut(pts: np.ndarray, min_width: float, share: float) -> tuple[int, float] | None:
    if pts.shape[0] < 2:
        return None
    spread = pts.max(axis=0) - pts.min(axis=0)
    for dim in np.argsort(-spread):
        if spread[dim] < 2 * min_width:
            return None
        value = float(np.quantile(pts[:, dim], share))
        left = int(np.count_nonzero(pts[:, dim] < value))
        if 0 < left < pts.shape[0]:
            return int(dim), value
    return None
