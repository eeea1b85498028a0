"""Routing rows to spatial regions: the one shuffle of a region-wise algorithm.

A region-wise pass has three steps, each here once:

1. :func:`route`: every row goes to its home region and, when ``halo > 0``, to every other
   region whose box grown by ``halo`` holds it (the geometry is
   :class:`~spark_clustering.partitioning.Regions`). ``HOME`` tells the copies apart; the
   columns a region only needs for its home rows travel on the home copy alone (null on the
   others), so a halo costs its coordinates, not the whole row. Computed in the JVM.
2. :func:`partition_by_region`: one hash repartition whose keys are chosen so that region ``i``
   lands in partition ``i`` exactly (:func:`region_partition_keys`): one region per task, no
   sort, no grouping, the regions' balance is the tasks' balance.
3. :func:`map_regions`: ``mapInArrow`` over those partitions; the function gets one region's
   rows as an Arrow table (numpy views of its columns, no pandas) and yields Arrow batches.

DBSCAN's fit, its labelling of new rows and the benchmark's floor all route through here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING

import numpy as np

from .partitioning import Cut, Regions, halo_margin

if TYPE_CHECKING:  # pragma: no cover
    import pyarrow as pa
    from pyspark.sql import Column, DataFrame
    from pyspark.sql.types import StructType

#: the region a routed row is a copy for (int)
REGION = "__route_region"
#: true on the row's home copy, false on its halo copies
HOME = "__route_home"
#: the row's home region (int), on every copy
HOME_REGION = "__route_home_region"
#: the partitioning key that sends region i to partition i (int)
PARTITION_KEY = "__route_key"
#: a row key unique within one routed pass (long), for matching copies of one row
ROW_KEY = "__route_row"

_MURMUR_SEED = 42  # Spark's HashPartitioning hashes with Murmur3Hash(seed=42)


def _murmur3_int(values: np.ndarray) -> np.ndarray:
    """Spark's ``Murmur3_x86_32.hashInt(v, 42)`` of int32 values, as Spark's ``hash`` gives it."""
    u32 = np.uint32
    k = np.asarray(values, dtype=np.int64).astype(np.int32).view(np.uint32)

    def rotl(x: np.ndarray, r: int) -> np.ndarray:
        return ((x << u32(r)) | (x >> u32(32 - r))).astype(np.uint32)

    with np.errstate(over="ignore"):
        k1 = rotl((k * u32(0xCC9E2D51)).astype(np.uint32), 15)
        k1 = (k1 * u32(0x1B873593)).astype(np.uint32)
        h1 = rotl(np.full_like(k1, _MURMUR_SEED) ^ k1, 13)
        h1 = (h1 * u32(5) + u32(0xE6546B64)).astype(np.uint32)
        h1 ^= u32(4)
        h1 ^= h1 >> u32(16)
        h1 = (h1 * u32(0x85EBCA6B)).astype(np.uint32)
        h1 ^= h1 >> u32(13)
        h1 = (h1 * u32(0xC2B2AE35)).astype(np.uint32)
        h1 ^= h1 >> u32(16)
    return h1.view(np.int32)


def region_partition_keys(n_regions: int) -> np.ndarray:
    """An int key per region such that Spark's hash partitioning into ``n_regions`` partitions
    sends the key of region ``i`` to partition ``i`` (``pmod(hash(key), n) == i``).

    Hashing the region ids themselves would leave some partitions with two regions and some
    with none: twice the work on some tasks, whatever the balance of the regions.
    """
    keys = np.full(n_regions, -1, dtype=np.int64)
    start = 0
    while (keys < 0).any():
        cand = np.arange(start, start + 16 * n_regions + 64, dtype=np.int64)
        part = np.mod(_murmur3_int(cand).astype(np.int64), n_regions)
        order = np.argsort(part, kind="stable")
        part_sorted = part[order]
        first = order[np.r_[True, part_sorted[1:] != part_sorted[:-1]]]
        for p, key in zip(part[first].tolist(), cand[first].tolist(), strict=True):
            if keys[p] < 0:
                keys[p] = key
        start += cand.size
    return keys


def home_expr(regions: Regions, xcols: list[str]) -> Column:
    """The home region of a row (int), walking the regions' k-d tree: about log2(regions)
    comparisons, compiled by Spark's code generation."""
    from pyspark.sql import functions as F

    def walk(node: Cut | int) -> Column:
        if isinstance(node, int):
            return F.lit(node)
        x = F.col(xcols[node.dim])
        return F.when(x < F.lit(node.value), walk(node.left)).otherwise(walk(node.right))

    return walk(regions.tree()).cast("int")


def _literal_doubles(values: np.ndarray) -> Column:
    from pyspark.sql import functions as F

    return F.array(*[F.lit(float(v)) for v in values])


def route(
    df: DataFrame,
    regions: Regions,
    xcols: list[str],
    halo: float,
    carried: list[str],
    home_only: list[str],
) -> DataFrame:
    """One row per (row, region) for the row's home region and, when ``halo > 0``, each
    region whose box grown by ``halo`` (plus a relative margin: rounding can only add a row to
    a halo) holds it. Columns: ``REGION``, ``HOME``, ``HOME_REGION``, ``xcols``, ``carried``
    (on every copy), ``home_only`` (null on halo copies).

    A row farther than the margin from every face of its home box is in no other region's
    halo and keeps its home region alone; a row near a face is offered the regions whose grown
    boxes meet its home box (a literal table per home region) and kept in those whose grown box
    holds it, ``lo - margin <= x <= hi + margin`` with the bounds computed as
    :meth:`~spark_clustering.partitioning.Regions.memberships` computes them. The expression
    does not grow with the number of regions: a k-d tree walk that concatenated arrays at
    every cut compiled, at 80 regions, into a method too large for the JVM's JIT, which then
    interpreted it at a quarter of the speed (the routing of 20M rows took 73 s of 137).
    """
    from pyspark.sql import functions as F

    located = df.select(home_expr(regions, xcols).alias(HOME_REGION), *xcols, *carried, *home_only)
    if halo <= 0:
        return located.select(
            F.col(HOME_REGION).alias(REGION),
            F.lit(True).alias(HOME),
            HOME_REGION,
            *xcols,
            *carried,
            *home_only,
        )
    margin = halo_margin(halo)
    home_at = F.col(HOME_REGION) + 1
    region_at = F.col(REGION) + 1
    near_face = F.lit(False)
    inside = F.lit(True)
    for j, c in enumerate(xcols):
        x = F.col(c)
        near_face = (
            near_face
            | (x <= F.element_at(_literal_doubles(regions.lo[:, j] + margin), home_at))
            | (x >= F.element_at(_literal_doubles(regions.hi[:, j] - margin), home_at))
        )
        inside = (
            inside
            & (x >= F.element_at(_literal_doubles(regions.lo[:, j] - margin), region_at))
            & (x <= F.element_at(_literal_doubles(regions.hi[:, j] + margin), region_at))
        )
    table = F.array(*[F.array(*[F.lit(r) for r in rs]) for rs in regions.meeting(margin)])
    offered = F.when(near_face, F.element_at(table, home_at)).otherwise(F.array(F.col(HOME_REGION)))
    exploded = located.select(
        F.explode(offered).alias(REGION), HOME_REGION, *xcols, *carried, *home_only
    ).where((F.col(REGION) == F.col(HOME_REGION)) | inside)
    home = F.col(REGION) == F.col(HOME_REGION)
    return exploded.select(
        REGION,
        home.alias(HOME),
        HOME_REGION,
        *xcols,
        *carried,
        *[F.when(home, F.col(c)).alias(c) for c in home_only],
    )


def partition_by_region(routed: DataFrame, n_regions: int) -> DataFrame:
    """The routed rows in ``n_regions`` partitions, region ``i`` alone in partition ``i``."""
    from pyspark.sql import functions as F

    keys = region_partition_keys(n_regions)
    key_array = F.array(*[F.lit(int(k)) for k in keys])
    keyed = routed.withColumn(PARTITION_KEY, F.element_at(key_array, F.col(REGION) + 1))
    return keyed.repartition(n_regions, PARTITION_KEY).drop(PARTITION_KEY)


RegionFunction = Callable[[int, "pa.Table"], Iterator["pa.RecordBatch"]]


def map_regions(partitioned: DataFrame, fn: RegionFunction, schema: StructType | str) -> DataFrame:
    """``fn(region, rows)`` on each region's rows (an Arrow table), through ``mapInArrow``.

    A partition normally holds one region; should it hold several (a partitioning other than
    :func:`partition_by_region`'s), they are split here with a stable numpy sort of the region
    column, never a Spark sort.
    """

    def per_partition(batches: Iterable[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        from spark_clustering._worker import prepare_worker

        prepare_worker()
        import pyarrow as pa

        got = [b for b in batches if b.num_rows]
        if not got:
            return
        table = pa.Table.from_batches(got)
        region = table.column(REGION).to_numpy()
        first = int(region[0])
        if (region == first).all():
            yield from fn(first, table)
            return
        order = np.argsort(region, kind="stable")
        ordered = region[order]
        cuts = np.flatnonzero(ordered[1:] != ordered[:-1]) + 1
        for part in np.split(order, cuts):
            yield from fn(int(region[part[0]]), table.take(pa.array(part)))

    return partitioned.mapInArrow(per_partition, schema)
