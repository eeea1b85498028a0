"""Statistics of the preparation that do not depend on how rows are laid out in partitions.

Spark's ``approxQuantile`` (a Greenwald-Khanna sketch per partition) and its ``avg`` and
``Summarizer`` merge their per-partition partial results in the order the tasks finish. The same
customers then give quantiles that differ by up to ``relative_error * n`` ranks, and means and
standard deviations that differ in their last bits, on ``local[1]``, ``local[2]`` or a cluster, or
from 1 or 7 input files. UMAP amplifies a last-bit change of the scaled features into a different
embedding: 100,000 generated customers once gave 68 segments on ``local[2]`` and 96 on a
two-worker cluster. The statistics the fitted preparation keeps are computed here instead:

* :func:`exact_quantiles`: the exact quantile (the value of rank ``ceil(q * n)``), found by
  bracketing it between two of Spark's approximate quantiles, counting the values below the
  bracket and collecting the few inside it; columns of at most :data:`EXACT_ROWS` values are
  collected whole. The result is exact, so it is the same on every layout.
* :func:`moments`: count, mean and variance from sums taken in a fixed order: rows are hashed
  into :data:`BUCKETS` buckets by their key, each bucket is summed in key order (a window over the
  bucket), and the buckets are merged on the driver in bucket order.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import Column, DataFrame

#: columns with at most this many values are collected whole for their quantiles
EXACT_ROWS = 200_000
#: buckets summed separately (each in key order) by :func:`moments`; fixed, so that the order of
#: the sums depends on the data alone
BUCKETS = 64
#: a bracket is at most this many values; a wider one (a failed bracket) is refused
BRACKET_LIMIT = 5_000_000


@dataclass(frozen=True)
class Moments:
    """Count, mean, sample variance (``n - 1``; 0 for fewer than two values), min and max."""

    count: int
    mean: float
    variance: float
    min: float
    max: float

    @property
    def std(self) -> float:
        return math.sqrt(self.variance)


def _rank(q: float, n: int) -> int:
    """The 1-based rank of the ``q`` quantile of ``n`` values (Spark's definition)."""
    return min(n, max(1, math.ceil(q * n)))


def exact_quantiles(
    df: DataFrame, cols: Sequence[str], probs: Sequence[float], relative_error: float = 0.001
) -> dict[str, list[float]]:
    """The exact ``probs`` quantiles of each double column (nulls ignored), in at most 4 passes.

    The ``q`` quantile of ``n`` values is the value of rank ``ceil(q * n)`` (rank 1 for ``q = 0``),
    which is what Spark's ``approxQuantile`` approximates. A column with no value is left out.

    ``relative_error`` sizes the bracket: Spark's sketch at that error gives two values on either
    side of the wanted rank, about ``6 * relative_error * n`` values apart, which are then
    collected. Smaller errors collect fewer values but make the sketch larger.

    Examples
    --------
    >>> exact_quantiles(df, ["amount"], [0.5, 0.99])  # doctest: +SKIP
    {'amount': [41.2, 830.5]}
    """
    from pyspark.sql import functions as F

    cols, probs = list(cols), [float(q) for q in probs]
    if not cols:
        return {}
    for q in probs:
        if not 0.0 <= q <= 1.0:
            raise ValueError(f"quantile probability {q} is not in [0, 1]")
    counts = df.agg(*[F.count(F.col(c)) for c in cols]).first()
    assert counts is not None
    n = {c: int(counts[i]) for i, c in enumerate(cols)}
    present = [c for c in cols if n[c] > 0]
    small = [c for c in present if n[c] <= EXACT_ROWS]
    out: dict[str, list[float]] = {}
    if small:
        import numpy as np

        rows = df.select(*[F.col(c) for c in small]).collect()
        for i, c in enumerate(small):
            values = np.sort(np.array([r[i] for r in rows if r[i] is not None], dtype=float))
            out[c] = [float(values[_rank(q, n[c]) - 1]) for q in probs]
    large = [c for c in present if n[c] > EXACT_ROWS]
    if large:
        out.update(_bracketed(df, large, probs, n, max(relative_error, 1e-4)))
    return {c: out[c] for c in cols if c in out}


def _bracketed(
    df: DataFrame, cols: list[str], probs: list[float], n: dict[str, int], err: float
) -> dict[str, list[float]]:
    """Exact quantiles of large columns: sketch, count below the bracket, collect inside it."""
    import numpy as np
    from pyspark.sql import functions as F

    margin = 3.0 * err
    edges = sorted({max(0.0, q - margin) for q in probs} | {min(1.0, q + margin) for q in probs})
    sketch = dict(zip(cols, df.approxQuantile(cols, edges, err), strict=True))
    # (column, q) -> [lo, hi]; None is an open end
    brackets: dict[tuple[str, float], tuple[float | None, float | None]] = {}
    for c in cols:
        at = dict(zip(edges, sketch[c], strict=True))
        for q in probs:
            lo = None if q - margin <= 0.0 else at[max(0.0, q - margin)]
            hi = None if q + margin >= 1.0 else at[min(1.0, q + margin)]
            brackets[(c, q)] = (lo, hi)

    def inside(c: str, lo: float | None, hi: float | None) -> Column:
        x = F.col(c)
        cond = x.isNotNull()
        if lo is not None:
            cond = cond & (x >= F.lit(lo))
        if hi is not None:
            cond = cond & (x <= F.lit(hi))
        return cond

    result: dict[str, list[float]] = {c: [math.nan] * len(probs) for c in cols}
    for _attempt in range(2):  # the sketch's guarantee holds; a miss opens the bracket once
        keys = list(brackets)
        aggs = []
        for c, q in keys:
            lo, hi = brackets[(c, q)]
            under = F.col(c) < F.lit(lo) if lo is not None else F.lit(False)
            aggs.append(F.sum(F.when(under, 1).otherwise(0)))
            aggs.append(F.sum(F.when(inside(c, lo, hi), 1).otherwise(0)))
        row = df.agg(*aggs).first()
        assert row is not None
        ok: list[tuple[str, float, int, int]] = []
        missed: dict[tuple[str, float], tuple[float | None, float | None]] = {}
        for i, (c, q) in enumerate(keys):
            below, within, r = int(row[2 * i] or 0), int(row[2 * i + 1] or 0), _rank(q, n[c])
            lo, hi = brackets[(c, q)]
            if below < r <= below + within:
                ok.append((c, q, r - below, within))
            else:  # open the side the rank fell on
                missed[(c, q)] = (None, lo) if r <= below else (hi, None)
        total = sum(w for *_, w in ok)
        if total > BRACKET_LIMIT:
            raise RuntimeError(
                f"exact quantiles would collect {total} values (limit {BRACKET_LIMIT}); "
                "lower clean.relative_error"
            )
        if ok:
            conds = [inside(c, *brackets[(c, q)]) for c, q, *_ in ok]
            picked = df.where(_any(conds)).select(
                *[F.when(cond, F.col(c)) for cond, (c, *_) in zip(conds, ok, strict=True)]
            )
            rows = picked.collect()
            for i, (c, q, k, _w) in enumerate(ok):
                values = np.sort(np.array([r[i] for r in rows if r[i] is not None], dtype=float))
                result[c][probs.index(q)] = float(values[k - 1])
        if not missed:
            return result
        brackets = missed
    raise RuntimeError(f"exact quantiles: no bracket held the rank for {sorted(brackets)}")


def _any(conds: list[Column]) -> Column:
    out = conds[0]
    for cond in conds[1:]:
        out = out | cond
    return out


def moments(df: DataFrame, cols: Sequence[str], key: Sequence[str]) -> dict[str, Moments]:
    """Count, mean, variance, min and max of each double column, summed in a fixed order.

    ``key`` orders the rows (a unique id, or columns that together identify a row): rows are
    hashed into :data:`BUCKETS` buckets by it, each bucket is summed in key order by a window
    over the bucket, and the buckets are merged on the driver in bucket order (Chan's pairwise
    update, with exactly rounded sums). Nulls are ignored; a column with no value is left out.

    Examples
    --------
    >>> moments(df, ["x"], ["customer_id"])["x"].mean  # doctest: +SKIP
    4.5
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    cols, key = list(cols), list(key)
    if not cols:
        return {}
    bucket = F.pmod(F.xxhash64(F.lit("moments"), *[F.col(k) for k in key]), F.lit(BUCKETS))
    # key, then the values: rows that share a key are still in one order
    order = [*key, *[c for c in cols if c not in key]]
    ordered = Window.partitionBy("__bucket").orderBy(*order)
    whole = ordered.rowsBetween(Window.unboundedPreceding, Window.unboundedFollowing)
    stats = []
    for i, c in enumerate(cols):
        x = F.col(c)
        stats += [
            F.count(x).over(whole).alias(f"n{i}"),
            F.avg(x).over(whole).alias(f"m{i}"),
            F.var_pop(x).over(whole).alias(f"v{i}"),
            F.min(x).over(whole).alias(f"lo{i}"),
            F.max(x).over(whole).alias(f"hi{i}"),
        ]
    rows = (
        df.withColumn("__bucket", bucket)
        .select("__bucket", F.row_number().over(ordered).alias("__first"), *stats)
        .where(F.col("__first") == 1)
        .collect()
    )
    rows.sort(key=lambda r: r["__bucket"])
    out: dict[str, Moments] = {}
    for i, c in enumerate(cols):
        parts = [(int(r[f"n{i}"]), r[f"m{i}"], r[f"v{i}"], r[f"lo{i}"], r[f"hi{i}"]) for r in rows]
        parts = [p for p in parts if p[0] > 0]
        total = sum(p[0] for p in parts)
        if total == 0:
            continue
        mean = math.fsum(k * m for k, m, *_ in parts) / total
        m2 = math.fsum(k * v + k * (m - mean) ** 2 for k, m, v, *_ in parts)
        out[c] = Moments(
            count=total,
            mean=mean,
            variance=m2 / (total - 1) if total > 1 else 0.0,
            min=float(min(p[3] for p in parts)),
            max=float(max(p[4] for p in parts)),
        )
    return out


def vector_slots(df: DataFrame, vector_col: str, size: int, prefix: str = "__slot") -> DataFrame:
    """``df`` with each slot of a vector column as a double column ``<prefix><i>``."""
    from pyspark.ml.functions import vector_to_array
    from pyspark.sql import functions as F

    arr = vector_to_array(F.col(vector_col))
    return df.select("*", *[arr[i].alias(f"{prefix}{i}") for i in range(size)])
