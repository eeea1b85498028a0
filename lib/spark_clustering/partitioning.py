"""Spatial partitioning of points into axis-aligned regions with an eps halo.

The regions come from a k-d split of a bounded random sample: each split cuts the widest
dimension at the sample's median, so a dense area gets many small regions and a sparse one few
large ones, and no task is left with most of the points when the data is skewed. The outermost
regions extend to infinity, so every point has exactly one home region, whatever the sample saw.

A point is *home* in the region whose half-open box ``[lo, hi)`` contains it and is *halo* in
every other region whose box, grown by ``eps`` on each side, contains it: any point within eps of
a region's home point is then present in that region, which makes per-region neighbourhoods exact.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import Column

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
        margin = _halo_margin(eps)
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

    def _box_condition(self, i: int, xcols: list[str], margin: float | None) -> Column:
        """The JVM-side test ``x in box i`` (half-open), or ``x in box i grown by margin``."""
        from pyspark.sql import functions as F

        cond = F.lit(True)
        for j, c in enumerate(xcols):
            lo, hi = float(self.lo[i, j]), float(self.hi[i, j])
            x = F.col(c)
            if margin is None:
                if np.isfinite(lo):
                    cond = cond & (x >= F.lit(lo))
                if np.isfinite(hi):
                    cond = cond & (x < F.lit(hi))
            else:
                if np.isfinite(lo):
                    cond = cond & (x >= F.lit(lo - margin))
                if np.isfinite(hi):
                    cond = cond & (x <= F.lit(hi + margin))
        return cond

    def home_expr(self, xcols: list[str]) -> Column:
        """Spark SQL expression of :meth:`home` over the coordinate columns (runs in the JVM)."""
        from pyspark.sql import functions as F

        expr = F.when(self._box_condition(0, xcols, None), F.lit(0))
        for i in range(1, self.n_regions):
            expr = expr.when(self._box_condition(i, xcols, None), F.lit(i))
        return expr.cast("int")

    def memberships_expr(self, xcols: list[str], eps: float) -> Column:
        """Spark SQL array of the regions whose eps-grown box holds the row (home included)."""
        from pyspark.sql import functions as F

        margin = _halo_margin(eps)
        hits = [
            F.when(self._box_condition(i, xcols, margin), F.lit(i)) for i in range(self.n_regions)
        ]
        return F.filter(F.array(*hits), lambda r: r.isNotNull())

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


def _halo_margin(eps: float) -> float:
    """eps plus a relative margin: rounding may add a point to a halo, never drop one."""
    return eps * (1.0 + HALO_RELATIVE_MARGIN) + 1e-300


def build_regions(sample: np.ndarray, n_regions: int, min_width: float) -> Regions:
    """Split space into at most ``n_regions`` boxes holding about equal shares of ``sample``.

    A box is not cut along a dimension where its sample spread is below ``2 * min_width``
    (cutting narrower than the halo only multiplies the replicated points).
    """
    d = sample.shape[1]
    boxes: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = [
        (sample, np.full(d, -np.inf), np.full(d, np.inf))
    ]
    done: list[tuple[np.ndarray, np.ndarray]] = []
    while boxes and len(boxes) + len(done) < n_regions:
        # split the box holding the most sample points next
        boxes.sort(key=lambda b: b[0].shape[0])
        pts, lo, hi = boxes.pop()
        cut = _choose_cut(pts, min_width)
        if cut is None:
            done.append((lo, hi))
            continue
        dim, value = cut
        left_hi = hi.copy()
        left_hi[dim] = value
        right_lo = lo.copy()
        right_lo[dim] = value
        mask = pts[:, dim] < value
        boxes.append((pts[mask], lo, left_hi))
        boxes.append((pts[~mask], right_lo, hi))
    done += [(lo, hi) for _, lo, hi in boxes]
    lo_arr = np.array([b[0] for b in done], dtype=np.float64).reshape(len(done), d)
    hi_arr = np.array([b[1] for b in done], dtype=np.float64).reshape(len(done), d)
    return Regions(lo_arr, hi_arr)


def _choose_cut(pts: np.ndarray, min_width: float) -> tuple[int, float] | None:
    if pts.shape[0] < 2:
        return None
    spread = pts.max(axis=0) - pts.min(axis=0)
    for dim in np.argsort(-spread):
        if spread[dim] < 2 * min_width:
            return None
        value = float(np.median(pts[:, dim]))
        left = int(np.count_nonzero(pts[:, dim] < value))
        if 0 < left < pts.shape[0]:
            return int(dim), value
    return None
