"""Exact DBSCAN distributed over Spark executors: one pass over the data fits and labels.

fit:
1. a bounded sample (``partitionSampleSize`` rows, the only data that reaches the driver) is
   split into k-d regions of about equal count (:mod:`spark_clustering.partitioning`);
2. one shuffle (:mod:`spark_clustering.routing`): every row goes to its home region, with the
   whole row, and as coordinates and a row key to each region within 2 eps of it; region ``i``
   is partition ``i``, no sort, no grouping;
3. each region runs :func:`.dbscan_regions.fit_label_region` on numpy views of its Arrow
   columns: core flags, local components, and a label for each home row (its component, a tie
   set, or noise), which leaves the executors with the row; only per-component counts, the
   links (row key naming a group of core points, component) and tie sets are collected;
4. the driver unions the components that share a row key and numbers the clusters
   (:func:`.dbscan_regions.merge_regions`); its result is a small table label id -> cluster;
5. the labelled rows stay cached: labelling them is a broadcast lookup of that table, a narrow
   projection. They are ``transform``'s answer for the fitted DataFrame, and their core points
   are the model.

label (transform of other rows): each row goes to its home region, each core point to its home
region and the regions within eps; per region each row takes the cluster of its closest core
point within eps. One shuffle; rows are never joined on their coordinates.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

import numpy as np

from .. import sampling
from ..partitioning import Regions, build_regions
from ..routing import HOME_REGION, ROW_KEY, map_regions, partition_by_region, route
from .dbscan_regions import fit_label_region, global_ids, merge_regions

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd
    import pyarrow as pa
    from pyspark.sql import DataFrame, SparkSession
    from pyspark.sql.types import StructType

log = logging.getLogger(__name__)

KIND = "__dbscan_kind"  # what a row of the fit's output is:
KIND_ROW = 0  # a home row with its label
KIND_COMP = 1  # a component: LABEL its id, AUX its home core count, coordinates its smallest
KIND_LINK = 2  # LABEL a component, AUX a group of core points it holds (its smallest row key)
KIND_TIE = 3  # LABEL a tie set, AUX one of its components
LABEL = "__dbscan_label"
AUX = "__dbscan_aux"
CLUSTER = "__dbscan_cluster"
IS_CORE = "__dbscan_is_core"


@dataclass
class DistributedFit:
    """What the distributed fit leaves: the labelled rows and how space was partitioned."""

    rows: DataFrame  # the fitted rows' columns + CLUSTER (int) + IS_CORE (bool), over the cache
    regions: Regions
    cluster_sizes: list[int]  # number of core points per cluster id
    cached: DataFrame  # the persisted pass ``rows`` reads: unpersist it to free the cache


def _coordinates(table: pa.Table, xcols: list[str]) -> np.ndarray:
    """An Arrow table's coordinate columns as a C-contiguous (n, d) float64 array."""
    x = np.empty((table.num_rows, len(xcols)), dtype=np.float64)
    for j, c in enumerate(xcols):
        x[:, j] = table.column(c).to_numpy()
    return x


def _fit_schema(xcols: list[str], row_schema: StructType) -> StructType:
    from pyspark.sql.types import (
        BooleanType,
        ByteType,
        DoubleType,
        LongType,
        StructField,
        StructType,
    )

    fields = [
        StructField(KIND, ByteType(), False),
        StructField(LABEL, LongType(), True),
        StructField(IS_CORE, BooleanType(), True),
        StructField(AUX, LongType(), True),
        *[StructField(c, DoubleType(), True) for c in xcols],
        *[StructField(f.name, f.dataType, True) for f in row_schema.fields],
    ]
    return StructType(fields)


def _fit_regions(
    eps: float,
    min_points: int,
    backend: str,
    xcols: list[str],
    row_cols: list[str],
    regions: Regions,
    kernel_seconds: object,
):
    """The per-region function of the fit's one pass (runs on the executors)."""
    lo, hi = regions.lo, regions.hi

    def fit_region(region: int, table: pa.Table) -> Iterator[pa.RecordBatch]:
        import pyarrow as pa

        from ..base import load_backend

        kernel = load_backend("dbscan", backend)
        x = _coordinates(table, xcols)
        start = time.monotonic()
        out = fit_label_region(
            kernel,
            x,
            table.column(HOME_REGION).to_numpy(),
            table.column(ROW_KEY).to_numpy(),
            region,
            lo[region],
            hi[region],
            eps,
            min_points,
        )
        kernel_seconds.add(time.monotonic() - start)  # type: ignore[attr-defined]
        n_home = out.home_index.size
        rows = table.select(row_cols).take(pa.array(out.home_index))
        yield _batch(
            [
                pa.array(np.full(n_home, KIND_ROW, np.int8)),
                pa.array(global_ids(region, out.home_label)),
                pa.array(out.home_core),
                pa.nulls(n_home, pa.int64()),
                *[pa.nulls(n_home, pa.float64()) for _ in xcols],
                *[rows.column(c).combine_chunks() for c in row_cols],
            ],
            [KIND, LABEL, IS_CORE, AUX, *xcols, *row_cols],
        )
        n_c, n_l, n_t = out.comp_id.size, out.link_key.size, out.tie_id.size
        n_side = n_c + n_l + n_t
        if n_side == 0:
            return
        smallest = np.full((n_side, len(xcols)), np.nan)
        smallest[:n_c] = out.comp_smallest
        valid_x = np.zeros(n_side, dtype=bool)
        valid_x[:n_c] = True
        kinds = np.repeat(np.array([KIND_COMP, KIND_LINK, KIND_TIE], np.int8), (n_c, n_l, n_t))
        label = np.concatenate(
            [
                global_ids(region, out.comp_id),
                global_ids(region, out.link_comp),
                global_ids(region, out.tie_id),
            ]
        )
        aux = np.concatenate([out.comp_core_count, out.link_key, global_ids(region, out.tie_comp)])
        yield _batch(
            [
                pa.array(kinds),
                pa.array(label),
                pa.nulls(n_side, pa.bool_()),
                pa.array(aux),
                *[pa.array(smallest[:, j], mask=~valid_x) for j in range(len(xcols))],
                *[pa.nulls(n_side, table.schema.field(c).type) for c in row_cols],
            ],
            [KIND, LABEL, IS_CORE, AUX, *xcols, *row_cols],
        )

    return fit_region


def _batch(arrays: list, names: list[str]) -> pa.RecordBatch:
    import pyarrow as pa

    return pa.RecordBatch.from_arrays(arrays, names=names)


#: Spark's setting for compressing cached columns
CACHE_COMPRESSED = "spark.sql.inMemoryColumnarStorage.compressed"


@contextmanager
def _uncompressed_cache(spark: SparkSession) -> Iterator[None]:
    """Cache the fit's pass without Spark's column compression, then restore the setting.

    The cached columns are mostly the carried row (a features array or vector, which no scheme
    compresses) and ids: at 3M rows compression saved 8% of the cache (131 -> 142 MiB) and cost
    ~1 s of the fit's ~10. The cache's builder reads the setting when the first action plans
    it, so the context holds until that action has run.
    """
    before = spark.conf.get(CACHE_COMPRESSED) or "true"
    spark.conf.set(CACHE_COMPRESSED, "false")
    try:
        yield
    finally:
        spark.conf.set(CACHE_COMPRESSED, before)


def fit_distributed(
    rows: DataFrame,
    xcols: list[str],
    n_rows: int,
    eps: float,
    min_points: int,
    backend: str,
    max_points_per_partition: int,
    partition_sample_size: int,
    seed: int,
) -> DistributedFit:
    """Cluster and label ``rows`` (its columns plus the coordinate columns ``xcols``, no
    invalid rows) exactly, in one pass over the data."""
    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    spark = rows.sparkSession
    row_cols = [c for c in rows.columns if c not in xcols]
    d = len(xcols)
    t0 = time.monotonic()
    parallelism = spark.sparkContext.defaultParallelism
    n_regions = max(2 * parallelism, math.ceil(n_rows / max_points_per_partition))
    # The rows with the smallest keys hashed from the seed and their coordinates (one filter
    # pass below a threshold set from the row count): the same sample, so the same regions, on
    # any partitioning or cluster.
    key = sampling.uniform(seed, "dbscan-regions", *map(sampling.single, xcols))
    drawn = sampling.smallest(rows, key, partition_sample_size, xcols, n_rows)
    sample = drawn.to_numpy(dtype=np.float64).reshape(-1, d)
    # a cut narrower than the 2 eps halo only multiplies the copies
    regions = build_regions(sample, n_regions, min_width=2 * eps)
    t_regions = time.monotonic() - t0
    log.info(
        "dbscan: %d rows, %d dimensions, %d regions from a %d-row sample (%.1fs)",
        n_rows,
        d,
        regions.n_regions,
        sample.shape[0],
        t_regions,
    )

    kernel_seconds = spark.sparkContext.accumulator(0.0)
    keyed = rows.select(F.monotonically_increasing_id().alias(ROW_KEY), *xcols, *row_cols)
    routed = route(keyed, regions, xcols, 2 * eps, carried=[ROW_KEY], home_only=row_cols)
    with _uncompressed_cache(spark):
        result = map_regions(
            partition_by_region(routed, regions.n_regions),
            _fit_regions(eps, min_points, backend, xcols, row_cols, regions, kernel_seconds),
            _fit_schema(xcols, rows.select(*row_cols).schema),
        ).persist(StorageLevel.MEMORY_AND_DISK)
        try:
            side = cast(
                "pd.DataFrame",
                result.where(F.col(KIND) != KIND_ROW).select(KIND, LABEL, AUX, *xcols).toPandas(),
            )
        except BaseException:
            result.unpersist()  # a failed fit leaves no cache entry behind
            raise
    t_pass = time.monotonic() - t0 - t_regions
    kind = side[KIND].to_numpy()
    comps, links, ties = side[kind == KIND_COMP], side[kind == KIND_LINK], side[kind == KIND_TIE]
    merged = merge_regions(
        comps[LABEL].to_numpy(dtype=np.int64),
        comps[AUX].to_numpy(dtype=np.int64),
        comps[xcols].to_numpy(dtype=np.float64).reshape(-1, d),
        links[AUX].to_numpy(dtype=np.int64),
        links[LABEL].to_numpy(dtype=np.int64),
        ties[LABEL].to_numpy(dtype=np.int64),
        ties[AUX].to_numpy(dtype=np.int64),
    )
    t_merge = time.monotonic() - t0 - t_regions - t_pass
    log.info(
        "dbscan: one pass: route + region kernels + cache %.1fs (kernels %.1fs summed over "
        "tasks); merge of %d components, %d links, %d tie pairs on the driver %.1fs; "
        "%d clusters",
        t_pass,
        kernel_seconds.value,
        len(comps),
        len(links),
        len(ties),
        t_merge,
        len(merged.sizes),
    )
    import pandas as pd  # the driver's: the executors' workers never load pandas

    mapping = spark.createDataFrame(
        pd.DataFrame({LABEL: merged.label_id, CLUSTER: merged.cluster}),
        f"{LABEL} long, {CLUSTER} int",
    )
    labelled = (
        result.where(F.col(KIND) == KIND_ROW)
        .join(F.broadcast(mapping), on=LABEL, how="left")
        .select(
            *[F.col(c) for c in row_cols],
            F.coalesce(F.col(CLUSTER), F.lit(-1)).alias(CLUSTER),
            F.col(IS_CORE),
        )
    )
    return DistributedFit(labelled, regions, merged.sizes, result)


def _label_schema(row_schema: StructType) -> StructType:
    from pyspark.sql.types import BooleanType, IntegerType, StructField, StructType

    return StructType(
        [
            *[StructField(f.name, f.dataType, True) for f in row_schema.fields],
            StructField(CLUSTER, IntegerType(), False),
            StructField(IS_CORE, BooleanType(), False),
        ]
    )


def _label_regions(eps: float, backend: str, xcols: list[str], row_cols: list[str]):
    """The per-region function of labelling: each query row against the region's cores."""

    def label_region(region: int, table: pa.Table) -> Iterator[pa.RecordBatch]:
        import pyarrow as pa

        from ..base import load_backend

        kernel = load_backend("dbscan", backend)
        is_query = table.column(KIND).to_numpy() == KIND_ROW
        queries = table.filter(pa.array(is_query))
        if queries.num_rows == 0:
            return
        cores = table.filter(pa.array(~is_query))
        labels, is_core = kernel.nearest_core(
            _coordinates(queries, xcols),
            _coordinates(cores, xcols),
            cores.column(CLUSTER).to_numpy(zero_copy_only=False).astype(np.int64),
            eps,
        )
        yield _batch(
            [
                *[queries.column(c).combine_chunks() for c in row_cols],
                pa.array(labels.astype(np.int32)),
                pa.array(is_core),
            ],
            [*row_cols, CLUSTER, IS_CORE],
        )

    return label_region


def label_distributed(
    rows: DataFrame,
    xcols: list[str],
    cores: DataFrame,
    regions: Regions,
    eps: float,
    backend: str,
) -> DataFrame:
    """``rows``' columns (all but ``xcols``) + CLUSTER + IS_CORE for every row of ``rows``
    (valid coordinates in ``xcols``), against ``cores`` (``xcols`` + ``cluster``)."""
    from pyspark.sql import functions as F

    row_cols = [c for c in rows.columns if c not in xcols]
    queries = route(rows, regions, xcols, 0.0, carried=[], home_only=row_cols).withColumn(
        KIND, F.lit(KIND_ROW).cast("tinyint")
    )
    replicated = route(
        cores.select(*xcols, F.col("cluster").alias(CLUSTER)),
        regions,
        xcols,
        eps,
        carried=[CLUSTER],
        home_only=[],
    ).withColumn(KIND, F.lit(KIND_COMP).cast("tinyint"))
    both = queries.unionByName(replicated, allowMissingColumns=True)
    return map_regions(
        partition_by_region(both, regions.n_regions),
        _label_regions(eps, backend, xcols, row_cols),
        _label_schema(rows.select(*row_cols).schema),
    )
