"""Exact DBSCAN distributed over Spark executors.

fit:
1. a bounded sample (``partitionSampleSize`` rows, the only data that reaches the driver) is
   split into k-d regions of about equal count (:mod:`spark_clustering.partitioning`);
2. every point goes to its home region and, replicated, to the halo of each region within eps;
3. each region runs the kernel (CPU: numba, GPU: cuML): core flags of its home points, the
   local components of its home core points, and which local components each halo point
   touches;
4. a halo point touching component ``a`` in one region, and itself core in its home region with
   component ``b``, links ``a`` and ``b``: a join on the point's coordinates finds those links;
5. the driver unions the local components (their number is far below n) and numbers the
   clusters by decreasing number of core points, ties broken by the smallest core point;
6. the core points with their cluster ids stay distributed: they are the model.

label (transform): each row goes to its home region; each core point to its home region and its
halos; per region, each distinct point takes the cluster of its closest core point within eps.
The labels join back to the rows on the coordinates, so nothing but coordinates is shuffled.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

import numpy as np
import pandas as pd

from .. import sampling
from ..partitioning import Regions, build_regions

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import DataFrame

log = logging.getLogger(__name__)

KIND_CORE = 0  # a home core point with its local component
KIND_EDGE = 1  # a halo point next to a local component
KIND_COMP = 2  # a local component: its core count and smallest core point


@dataclass
class DistributedFit:
    """What the distributed fit leaves: the core table and how space was partitioned."""

    cores: DataFrame  # coordinate columns + "cluster" (int)
    regions: Regions
    cluster_sizes: list[int]  # number of core points per cluster id


def _coords_schema(xcols: list[str]) -> str:
    return ", ".join(f"{c} double" for c in xcols)


def route_with_halo(df: DataFrame, regions: Regions, xcols: list[str], eps: float) -> DataFrame:
    """One row per (row, region) for its home region and each region whose halo holds it,
    with ``home`` telling which and ``shared`` whether the row is in any halo; computed in the
    JVM, no Python round trip."""
    from pyspark.sql import functions as F

    others = [c for c in df.columns if c not in xcols]
    return (
        df.select(
            regions.memberships_expr(xcols, eps).alias("__regions"),
            regions.home_expr(xcols).alias("__home_region"),
            *xcols,
            *others,
        )
        .select(
            F.explode("__regions").alias("region"),
            (F.size("__regions") > 1).alias("shared"),
            "__home_region",
            *xcols,
            *others,
        )
        .select(
            "region",
            (F.col("region") == F.col("__home_region")).alias("home"),
            "shared",
            *xcols,
            *others,
        )
    )


def _fit_regions(eps: float, min_points: int, backend: str, xcols: list[str]):
    """applyInPandas function: run the kernel on one region's home and halo points."""

    def fit_group(pdf: pd.DataFrame) -> pd.DataFrame:
        from spark_clustering._worker import prepare_worker

        prepare_worker()
        from ..base import load_backend

        kernel = load_backend("dbscan", backend)
        region = int(pdf["region"].iloc[0])
        x = pdf[xcols].to_numpy(dtype=np.float64)
        res = kernel.fit_region(x, pdf["home"].to_numpy(dtype=bool), eps, min_points)
        base = np.int64(region) << np.int64(32)
        # per local component: its core count and its lexicographically smallest core point
        core_x = x[res.core_index]
        order = np.lexsort([*core_x.T[::-1], res.core_component])
        first = order[np.r_[True, np.diff(res.core_component[order]) != 0]] if order.size else order
        n_comp = np.bincount(res.core_component, minlength=len(first))
        idx = np.concatenate([res.core_index, res.edge_halo_index, res.core_index[first]])
        sizes = (len(res.core_index), len(res.edge_halo_index), len(first))
        out = pd.DataFrame(
            {
                "kind": np.repeat(np.array([KIND_CORE, KIND_EDGE, KIND_COMP], np.int8), sizes),
                "comp": base
                + np.concatenate(
                    [res.core_component, res.edge_component, res.core_component[first]]
                ),
                "shared": np.concatenate(
                    [
                        pdf["shared"].to_numpy(dtype=bool)[res.core_index],
                        np.ones(sizes[1] + sizes[2], dtype=bool),
                    ]
                ),
                "n": np.concatenate([np.zeros(sizes[0] + sizes[1], np.int64), n_comp]),
            }
        )
        for j, c in enumerate(xcols):
            out[c] = x[idx, j]
        return out

    return fit_group


def _collect_coordinates(df: DataFrame, xcols: list[str]) -> np.ndarray:
    """A bounded DataFrame's coordinates as an (n, d) array on the driver."""
    pdf = cast(pd.DataFrame, df.select(*xcols).toPandas())
    return pdf.to_numpy(dtype=np.float64).reshape(-1, len(xcols))


def fit_distributed(
    points: DataFrame,
    xcols: list[str],
    n_rows: int,
    eps: float,
    min_points: int,
    backend: str,
    max_points_per_partition: int,
    partition_sample_size: int,
    seed: int,
) -> DistributedFit:
    """Cluster ``points`` (coordinate columns ``xcols``, no invalid rows) exactly."""
    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    spark = points.sparkSession
    d = len(xcols)
    t0 = time.monotonic()
    parallelism = spark.sparkContext.defaultParallelism
    n_regions = max(2 * parallelism, math.ceil(n_rows / max_points_per_partition))
    # The rows with the smallest keys hashed from the seed and their coordinates (a per-partition
    # top-k): the same sample, so the same regions, on any partitioning or cluster.
    key = sampling.uniform(seed, "dbscan-regions", *map(sampling.single, xcols))
    sample = _collect_coordinates(points.orderBy(key, *xcols).limit(partition_sample_size), xcols)
    regions = build_regions(sample, n_regions, min_width=eps)
    log.info(
        "dbscan: %d rows, %d dimensions, %d regions from a %d-row sample (%.1fs)",
        n_rows,
        d,
        regions.n_regions,
        sample.shape[0],
        time.monotonic() - t0,
    )

    routed = route_with_halo(points.select(*xcols), regions, xcols, eps)
    result = (
        routed.groupBy("region")
        .applyInPandas(
            _fit_regions(eps, min_points, backend, xcols),
            f"kind tinyint, comp long, shared boolean, n long, {_coords_schema(xcols)}",
        )
        .persist(StorageLevel.MEMORY_AND_DISK)
    )
    try:
        n_out = result.count()
        log.info(
            "dbscan: regions clustered, %d core points and halo links out (%.1fs)",
            n_out,
            time.monotonic() - t0,
        )
        cores_all = result.where(F.col("kind") == KIND_CORE)
        cores = cores_all.select("comp", *xcols)
        edges = result.where(F.col("kind") == KIND_EDGE).select(F.col("comp").alias("a"), *xcols)
        shared_cores = cores_all.where("shared").select(F.col("comp").alias("b"), *xcols)
        links = cast(
            pd.DataFrame,
            edges.join(shared_cores, on=xcols)
            .where(F.col("a") != F.col("b"))
            .select("a", "b")
            .distinct()
            .toPandas(),
        )
        comps = cast(
            pd.DataFrame,
            result.where(F.col("kind") == KIND_COMP).select("comp", "n", *xcols).toPandas(),
        )
        log.info(
            "dbscan: %d local components, %d cross-region links (%.1fs)",
            len(comps),
            len(links),
            time.monotonic() - t0,
        )
        mapping, sizes = _number_clusters(comps, links, xcols)
        mapping_df = spark.createDataFrame(mapping, "comp long, cluster int")
        core_table = (
            cores.join(F.broadcast(mapping_df), on="comp")
            .select(*xcols, "cluster")
            .persist(StorageLevel.MEMORY_AND_DISK)
        )
        n_core = core_table.count()
    finally:
        result.unpersist()
    log.info(
        "dbscan: %d clusters, %d core points (%.1fs)",
        len(sizes),
        n_core,
        time.monotonic() - t0,
    )
    return DistributedFit(core_table, regions, sizes)


def _number_clusters(
    comps: pd.DataFrame, links: pd.DataFrame, xcols: list[str]
) -> tuple[pd.DataFrame, list[int]]:
    """Union local components and number clusters by decreasing size, then smallest point."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    if comps.empty:
        return pd.DataFrame({"comp": pd.Series([], dtype="int64"), "cluster": []}), []
    ids = comps["comp"].to_numpy(dtype=np.int64)
    order = np.argsort(ids)
    ids = ids[order]
    counts = comps["n"].to_numpy(dtype=np.int64)[order]
    corner = comps[xcols].to_numpy(dtype=np.float64)[order]
    firsts = [tuple(row) for row in corner.tolist()]
    a = np.searchsorted(ids, links["a"].to_numpy(dtype=np.int64))
    b = np.searchsorted(ids, links["b"].to_numpy(dtype=np.int64))
    graph = coo_matrix((np.ones(len(a)), (a, b)), shape=(len(ids), len(ids)))
    _, root = connected_components(graph, directed=False)
    n_roots = int(root.max()) + 1
    size = np.bincount(root, weights=counts, minlength=n_roots).astype(np.int64)
    smallest: list[tuple[float, ...] | None] = [None] * n_roots
    for r, first in zip(root, firsts, strict=True):
        cur = smallest[r]
        if cur is None or first < cur:
            smallest[r] = first
    ranked = sorted(range(n_roots), key=lambda r: (-size[r], smallest[r]))
    cluster_of_root = np.empty(n_roots, dtype=np.int32)
    cluster_of_root[ranked] = np.arange(n_roots, dtype=np.int32)
    mapping = pd.DataFrame({"comp": ids, "cluster": cluster_of_root[root]})
    return mapping, [int(size[r]) for r in ranked]


def _label_regions(eps: float, backend: str, xcols: list[str]):
    """cogroup function: label the distinct query points of a region from its core points."""

    def label_group(queries: pd.DataFrame, cores: pd.DataFrame) -> pd.DataFrame:
        from spark_clustering._worker import prepare_worker

        prepare_worker()
        from ..base import load_backend

        kernel = load_backend("dbscan", backend)
        q = queries[xcols].to_numpy(dtype=np.float64)
        if q.shape[0] == 0:
            return pd.DataFrame(
                {**{c: [] for c in xcols}, "cluster": np.empty(0, np.int32), "is_core": []}
            )
        q = np.unique(q, axis=0)
        c = cores[xcols].to_numpy(dtype=np.float64).reshape(-1, len(xcols))
        labels, is_core = kernel.nearest_core(q, c, cores["cluster"].to_numpy(dtype=np.int64), eps)
        out = pd.DataFrame({col: q[:, j] for j, col in enumerate(xcols)})
        out["cluster"] = labels.astype(np.int32)
        out["is_core"] = is_core
        return out

    return label_group


def label_distributed(
    rows: DataFrame,
    xcols: list[str],
    cores: DataFrame,
    regions: Regions,
    eps: float,
    backend: str,
) -> DataFrame:
    """(coordinates, cluster, is_core) for every distinct valid point of ``rows``."""
    schema = _coords_schema(xcols)
    queries = rows.select(regions.home_expr(xcols).alias("region"), *xcols)
    replicated = route_with_halo(cores, regions, xcols, eps).drop("home")
    return (
        queries.groupBy("region")
        .cogroup(replicated.groupBy("region"))
        .applyInPandas(
            _label_regions(eps, backend, xcols), f"{schema}, cluster int, is_core boolean"
        )
    )
