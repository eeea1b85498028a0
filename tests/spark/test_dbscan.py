"""DBSCAN on Spark: parity with scikit-learn, determinism, Spark ML citizenship, bad input."""

from __future__ import annotations

import re

import numpy as np
import pytest
from pyspark.ml import Pipeline
from pyspark.ml.feature import VectorAssembler
from pyspark.ml.linalg import SparseVector, Vectors, VectorUDT
from pyspark.sql import functions as F
from pyspark.sql.types import LongType, StructField, StructType

from dbscan_data import EPS, MIN_POINTS, assert_same_clustering, parity_dataset, sklearn_reference
from spark_clustering import DBSCAN, DBSCANModel

pytestmark = pytest.mark.spark


def _frame(spark, x: np.ndarray, partitions: int, seed: int, as_array: bool = False):
    order = np.random.default_rng(seed).permutation(x.shape[0])
    if as_array:
        rows = [(int(i), [float(v) for v in x[i]]) for i in order]
    else:
        rows = [(int(i), Vectors.dense(x[i])) for i in order]
    return spark.createDataFrame(rows, ["id", "features"]).repartition(partitions)


def _labels(out) -> tuple[np.ndarray, np.ndarray]:
    pdf = out.select("id", "cluster", "is_core").toPandas().sort_values("id")
    return pdf["cluster"].to_numpy(), pdf["is_core"].to_numpy(dtype=bool)


@pytest.mark.parametrize("d", [1, 2, 3, 5, 10])
def test_parity_with_sklearn_any_partitioning_and_order(spark, d):
    x = parity_dataset(d)
    ref_labels, ref_core = sklearn_reference(x, EPS, MIN_POINTS)
    assert ref_core.any() and (ref_labels == -1).any()  # the data exercises both
    results = []
    for partitions, max_points in [(1, 250_000), (3, 400), (16, 100)]:
        df = _frame(spark, x, partitions, seed=partitions, as_array=partitions == 3)
        model = DBSCAN(
            eps=EPS, minPoints=MIN_POINTS, maxPointsPerPartition=max_points, seed=partitions
        ).fit(df)
        labels, is_core = _labels(model.transform(df))
        assert_same_clustering(labels, is_core, ref_labels, ref_core)
        assert model.numClusters == len(set(ref_labels[ref_core].tolist()))
        assert sorted(set(labels.tolist()) - {-1}) == list(range(model.numClusters))
        results.append(labels)
    # ids do not depend on partitioning, region layout or row order
    for other in results[1:]:
        np.testing.assert_array_equal(other, results[0])


def test_cluster_ids_by_decreasing_core_count(spark):
    rng = np.random.default_rng(3)
    x = np.concatenate([rng.normal(0, 0.05, (30, 2)), rng.normal(5, 0.05, (80, 2))])
    df = _frame(spark, x, 2, seed=1)
    model = DBSCAN(eps=0.3, minPoints=4).fit(df)
    assert model.numClusters == 2
    assert model.clusterSizes == [80, 30]
    labels, _ = _labels(model.transform(df))
    assert set(labels[30:]) == {0} and set(labels[:30]) == {1}


def test_transform_new_points_closest_core_within_eps(spark):
    rng = np.random.default_rng(11)
    x = np.concatenate([rng.normal(0, 0.1, (200, 2)), rng.normal(1.2, 0.1, (200, 2))])
    train = _frame(spark, x, 3, seed=2)
    model = DBSCAN(eps=0.2, minPoints=6, maxPointsPerPartition=100).fit(train)
    cores = model.corePoints.toPandas()
    core_x = np.stack(cores["features"].map(lambda v: v.toArray()).to_list())
    core_c = cores["cluster"].to_numpy()
    new = rng.uniform(-0.6, 1.8, size=(300, 2))
    out = model.transform(_frame(spark, new, 2, seed=5))
    labels, is_core = _labels(out)
    d2 = ((new[:, None, :] - core_x[None, :, :]) ** 2).sum(axis=2)
    for i in range(new.shape[0]):
        within = np.flatnonzero(d2[i] <= 0.2**2)
        if within.size == 0:
            assert labels[i] == -1
        else:
            best = d2[i, within].min()
            assert labels[i] == core_c[within[d2[i, within] == best]].min()
    assert not is_core.any()  # new random points never coincide with a core point


def test_training_rows_get_fitted_labels_and_duplicates_agree(spark):
    x = np.array([[0.0, 0.0]] * 3 + [[0.1, 0.0], [5.0, 5.0], [0.3, 0.0]])
    df = _frame(spark, x, 2, seed=0)
    model = DBSCAN(eps=0.15, minPoints=4).fit(df)
    labels, is_core = _labels(model.transform(df))
    ref_labels, ref_core = sklearn_reference(x, 0.15, 4)
    assert_same_clustering(labels, is_core, ref_labels, ref_core)
    assert labels.tolist() == [0, 0, 0, 0, -1, -1]


def test_sparse_vectors(spark):
    rng = np.random.default_rng(4)
    x = np.concatenate([rng.normal(0, 0.05, (50, 4)), rng.normal(2, 0.05, (50, 4))])
    x[:, 2:] = 0.0
    rows = [
        (i, SparseVector(4, {j: float(v) for j, v in enumerate(x[i]) if v != 0.0}))
        for i in range(len(x))
    ]
    df = spark.createDataFrame(rows, ["id", "features"])
    labels, is_core = _labels(DBSCAN(eps=0.3, minPoints=5).fit(df).transform(df))
    ref_labels, ref_core = sklearn_reference(x, 0.3, 5)
    assert_same_clustering(labels, is_core, ref_labels, ref_core)


def test_persistence_round_trip(spark, tmp_path):
    x = parity_dataset(2)
    df = _frame(spark, x, 3, seed=9)
    model = DBSCAN(eps=EPS, minPoints=MIN_POINTS, maxPointsPerPartition=300).fit(df)
    path = str(tmp_path / "dbscan")
    model.write().overwrite().save(path)
    loaded = DBSCANModel.load(path)
    assert loaded.getEps() == EPS and loaded.getMinPoints() == MIN_POINTS
    assert loaded.clusterSizes == model.clusterSizes and loaded.dimension == 2
    np.testing.assert_array_equal(_labels(loaded.transform(df))[0], _labels(model.transform(df))[0])
    # the estimator persists too
    est_path = str(tmp_path / "estimator")
    DBSCAN(eps=0.7, minPoints=3).save(est_path)
    assert DBSCAN.load(est_path).getEps() == 0.7


def test_pipeline_copy_and_param_map(spark):
    rng = np.random.default_rng(5)
    pdf_rows = [(i, float(a), float(b)) for i, (a, b) in enumerate(rng.normal(0, 0.1, (60, 2)))]
    df = spark.createDataFrame(pdf_rows, ["id", "a", "b"])
    est = DBSCAN(minPoints=4)
    pipeline = Pipeline(stages=[VectorAssembler(inputCols=["a", "b"], outputCol="features"), est])
    fitted = pipeline.fit(df, {est.eps: 0.2})
    out = fitted.transform(df)
    assert {"cluster", "is_core"} <= set(out.columns)
    assert fitted.stages[1].getEps() == 0.2 and est.getEps() == 0.5
    copied = est.copy({est.minPoints: 9})
    assert copied.getMinPoints() == 9 and est.getMinPoints() == 4
    assert est.setEps(0.1).setMinPoints(2) is est


def test_empty_input(spark):
    df = spark.createDataFrame([], "id long, features array<double>")
    model = DBSCAN(eps=0.5, minPoints=2).fit(df)
    assert model.numClusters == 0
    out = model.transform(df)
    assert out.count() == 0 and out.columns == ["id", "features", "cluster", "is_core"]


@pytest.mark.parametrize("vectors", [False, True], ids=["array", "vector"])
def test_handle_invalid(spark, vectors):
    rows = [(i, [float(i % 3) * 0.01, 0.0]) for i in range(12)]
    if vectors:  # NaN and a null row (MLlib's vector_to_array throws on null)
        rows = [(i, Vectors.dense(v)) for i, v in rows]
        rows += [(100, Vectors.dense([float("nan"), 0.0])), (101, None)]
        schema = StructType([StructField("id", LongType()), StructField("features", VectorUDT())])
    else:
        rows += [(100, [float("nan"), 0.0]), (101, [float("inf"), 1.0])]
        schema = "id long, features array<double>"
    df = spark.createDataFrame(rows, schema)
    with pytest.raises(ValueError, match="2 of 14 rows"):
        DBSCAN(eps=0.1, minPoints=3).fit(df)
    kept = DBSCAN(eps=0.1, minPoints=3, handleInvalid="keep").fit(df).transform(df)
    by_id = {r["id"]: r["cluster"] for r in kept.collect()}
    assert len(by_id) == 14 and by_id[100] == -1 and by_id[101] == -1 and by_id[0] == 0
    skipped = DBSCAN(eps=0.1, minPoints=3, handleInvalid="skip").fit(df).transform(df)
    assert skipped.count() == 12


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"eps": 0.0}, "eps=0.0"),
        ({"eps": -1.0}, "eps=-1.0"),
        ({"minPoints": 0}, "minPoints=0"),
        ({"backend": "tpu"}, "backend='tpu'"),
        ({"handleInvalid": "drop"}, "handleInvalid='drop'"),
        ({"featuresCol": "nope"}, "featuresCol='nope' is not a column"),
        ({"featuresCol": "name"}, "featuresCol='name' has type string"),
        ({"backend": "gpu"}, "backend='gpu' was requested"),
    ],
)
def test_bad_params_rejected_before_work(spark, kwargs, match):
    df = spark.createDataFrame([(1, "a", [0.0, 1.0])], ["id", "name", "features"])
    with pytest.raises(ValueError, match=match):
        DBSCAN(**kwargs).fit(df)


def test_rows_of_different_dimensions_rejected(spark):
    df = spark.createDataFrame([(1, [0.0, 1.0]), (2, [0.0, 1.0, 2.0])], ["id", "features"])
    with pytest.raises(ValueError, match="different dimensions"):
        DBSCAN().fit(df)


def test_sql_routing_matches_numpy_routing(spark):
    from spark_clustering.partitioning import build_regions
    from spark_clustering.routing import HOME, REGION, route

    rng = np.random.default_rng(8)
    x = rng.uniform(0, 10, size=(2000, 2))
    regions = build_regions(x, 9, min_width=0.5)
    x = np.concatenate([x, regions.lo[np.isfinite(regions.lo).all(axis=1)]])  # on the edges
    df = spark.createDataFrame(
        [(i, float(a), float(b), f"row {i}") for i, (a, b) in enumerate(x)],
        ["id", "x0", "x1", "name"],
    )
    home = route(df, regions, ["x0", "x1"], 0.0, carried=["id"], home_only=[]).toPandas()
    np.testing.assert_array_equal(home.sort_values("id")[REGION].to_numpy(), regions.home(x))
    for halo in (0.5, 1.0):
        routed = route(df, regions, ["x0", "x1"], halo, carried=["id"], home_only=["name"])
        got_pdf = routed.toPandas()
        rows, region, is_home = regions.memberships(x, halo)
        expected = set(zip(rows.tolist(), region.tolist(), is_home.tolist(), strict=True))
        got = set(
            zip(
                got_pdf["id"].tolist(),
                got_pdf[REGION].tolist(),
                got_pdf[HOME].tolist(),
                strict=True,
            )
        )
        assert got == expected
        # the whole row travels with the home copy only
        assert got_pdf.loc[got_pdf[HOME], "name"].notna().all()
        assert got_pdf.loc[~got_pdf[HOME], "name"].isna().all()


def test_sql_routing_at_the_halo_edges_with_many_regions(spark):
    """40 regions in 3-D (the routing offers a row near a face the regions that meet its home
    box, then tests their grown boxes): the same (row, region, home) triples as numpy, also for
    points exactly on a grown box's faces and a hair outside them."""
    from spark_clustering.partitioning import build_regions, halo_margin
    from spark_clustering.routing import HOME, REGION, route

    rng = np.random.default_rng(9)
    x = rng.normal(0, 3, size=(3000, 3))
    regions = build_regions(x, 40, min_width=0.4)
    assert regions.n_regions == 40
    margin = halo_margin(0.4)
    edges = []
    for r in range(0, 40, 3):
        centre = np.where(np.isfinite(regions.lo[r] + regions.hi[r]),
                          (regions.lo[r] + regions.hi[r]) / 2, 0.0)  # fmt: skip
        for j in range(3):
            for bound in (regions.lo[r, j] - margin, regions.hi[r, j] + margin):
                if np.isfinite(bound):
                    for value in (bound, np.nextafter(bound, np.inf), np.nextafter(bound, -np.inf)):
                        p = centre.copy()
                        p[j] = value
                        edges.append(p)
    x = np.concatenate([x, np.array(edges)])
    df = spark.createDataFrame([(i, *map(float, p)) for i, p in enumerate(x)], "id long, a double, "
                               "b double, c double")  # fmt: skip
    got_pdf = route(df, regions, ["a", "b", "c"], 0.4, carried=["id"], home_only=[]).toPandas()
    rows, region, is_home = regions.memberships(x, 0.4)
    expected = set(zip(rows.tolist(), region.tolist(), is_home.tolist(), strict=True))
    got = set(zip(got_pdf["id"].tolist(), got_pdf[REGION].tolist(), got_pdf[HOME].tolist(),
                  strict=True))  # fmt: skip
    assert len(got) == len(got_pdf)  # no row offered twice to one region
    assert got == expected
    assert len(expected) > 1.2 * x.shape[0]  # halos were exercised


def test_region_i_is_partition_i(spark):
    from pyspark.sql import functions as F

    from spark_clustering.routing import REGION, partition_by_region, region_partition_keys

    for n in (1, 4, 7, 80):
        keys = region_partition_keys(n)
        hashed = spark.createDataFrame([(int(k),) for k in keys], "k int").select(
            F.expr(f"pmod(hash(k), {n})").alias("p")
        )
        assert [r["p"] for r in hashed.collect()] == list(range(n))
    regions = spark.range(0, 2000).select((F.col("id") % 13).cast("int").alias(REGION), "id")
    placed = partition_by_region(regions, 13).select(REGION, F.spark_partition_id().alias("p"))
    pairs = {(r[REGION], r["p"]) for r in placed.distinct().collect()}
    assert pairs == {(i, i) for i in range(13)}


def _physical_plan(df) -> str:
    return df._jdf.queryExecution().executedPlan().toString()


def test_fit_and_label_cross_the_shuffle_once(spark):
    x = parity_dataset(2)
    df = _frame(spark, x, 3, seed=4)
    model = DBSCAN(eps=EPS, minPoints=MIN_POINTS, maxPointsPerPartition=400).fit(df)
    out = model.transform(df)
    plan = _physical_plan(out)
    # the fitted rows are read back from the fit's cached pass: its one routing exchange is
    # the only shuffle, and the labels come from a broadcast lookup, not a join of the rows
    assert "InMemoryTableScan" in plan
    assert set(re.findall(r"Exchange hashpartitioning\((\w+)#", plan)) == {"__route_key"}
    assert set(re.findall(r"(\w*Join) \[(\w+)#", plan)) == {("BroadcastHashJoin", "__dbscan_label")}
    assert "Sort [" not in plan and "FlatMapGroupsInPandas" not in plan
    # the row key is generated and carried, coordinates are never a join key
    assert "monotonically_increasing_id" in plan
    labels, is_core = _labels(out)
    ref_labels, ref_core = sklearn_reference(x, EPS, MIN_POINTS)
    assert_same_clustering(labels, is_core, ref_labels, ref_core)


def test_new_rows_are_routed_once_and_training_rows_agree(spark):
    x = parity_dataset(3)
    df = _frame(spark, x, 3, seed=6)
    model = DBSCAN(eps=EPS, minPoints=MIN_POINTS, maxPointsPerPartition=300).fit(df)
    fitted = _labels(model.transform(df))
    # the same rows as another DataFrame: labelled by routing them against the core points
    again = _frame(spark, x, 2, seed=7)
    out = model.transform(again)
    plan = _physical_plan(out)
    assert "InMemoryTableScan" not in plan.split("MapInArrow")[0]
    assert set(re.findall(r"Exchange hashpartitioning\((\w+)#", plan)) == {"__route_key"}
    # the only join is the broadcast lookup of cluster ids that labels the core points
    assert set(re.findall(r"(\w*Join) \[(\w+)#", plan)) <= {("BroadcastHashJoin", "__dbscan_label")}
    routed = _labels(out)
    np.testing.assert_array_equal(routed[0], fitted[0])
    np.testing.assert_array_equal(routed[1], fitted[1])


def test_skewed_data_exact_and_balanced(spark):
    from pyspark.sql import functions as F

    rng = np.random.default_rng(12)
    x = np.concatenate([rng.normal(0, 0.3, (4500, 2)), rng.uniform(-20, 20, (500, 2))])
    df = _frame(spark, x, 4, seed=3)
    model = DBSCAN(eps=0.05, minPoints=5, maxPointsPerPartition=500).fit(df)
    out = model.transform(df)
    labels, is_core = _labels(out)
    ref_labels, ref_core = sklearn_reference(x, 0.05, 5)
    assert_same_clustering(labels, is_core, ref_labels, ref_core)
    # the labelled rows sit in their regions' partitions: no partition holds most of them
    per_part = out.groupBy(F.spark_partition_id().alias("p")).count().toPandas()["count"]
    assert per_part.max() <= 3 * x.shape[0] / model._regions.n_regions


def test_every_column_survives_the_routing(spark):
    df = spark.sql(
        """select id, array(cast(id % 7 as double) * 0.01, 0.0) as features,
        cast(id as string) s, timestamp'2024-01-01 00:00:00' + make_interval(0,0,0,0,0,0,id) ts,
        cast(id as decimal(10,2)) dec, map('a', id) m, named_struct('x', id, 'y', 'z') st,
        array('a', 'b') arr, cast('ab' as binary) bin from range(60)"""
    )
    model = DBSCAN(eps=0.015, minPoints=3).fit(df)
    fitted = model.transform(df)  # the fit's cached rows
    routed = model.transform(df.select("*"))  # routed against the core points
    for out in (fitted, routed):
        # names and types kept (a non-null column comes back nullable: the fit's cached pass
        # also holds rows without one)
        kept = [(f.name, f.dataType) for f in out.schema.fields[: len(df.columns)]]
        assert kept == [(f.name, f.dataType) for f in df.schema.fields]
        got = out.drop("cluster", "is_core").orderBy("id").collect()
        assert got == df.orderBy("id").collect()
    assert fitted.select("id", "cluster").orderBy("id").collect() == (
        routed.select("id", "cluster").orderBy("id").collect()
    )


def test_unpersist_frees_the_fitted_rows(spark):
    """A fit caches its labelled rows (the lookup of transform); unpersist frees them, and the
    search helpers (autochoice's losers, sweep trials) call it through segment.release_fit."""
    from spark_clustering.jobs.segment import release_fit

    def cached() -> int:
        return spark.sparkContext._jsc.getPersistentRDDs().size()

    df = _frame(spark, parity_dataset(2), 3, seed=4)
    before = cached()
    model = DBSCAN(eps=EPS, minPoints=MIN_POINTS, maxPointsPerPartition=300).fit(df)
    assert cached() > before, "the fit caches its labelled rows"
    model.unpersist()
    assert cached() == before
    model = DBSCAN(eps=EPS, minPoints=MIN_POINTS, maxPointsPerPartition=300).fit(df)
    out = model.transform(df).persist()
    out.count()
    release_fit(model, out)
    assert cached() == before


_DRIVER_SCRIPT = """
import sys
import numpy as np
from pyspark.ml.linalg import Vectors
from spark_clustering import DBSCAN
from spark_clustering.session import get_spark

spark = get_spark("driver-numba", master="local[2]", gpu="off")
rng = np.random.default_rng(0)
x = np.concatenate([rng.normal(0, 0.3, (2000, 2)), rng.normal(3, 0.3, (2000, 2))])
df = spark.createDataFrame([(Vectors.dense(v),) for v in x.tolist()], ["features"])
model = DBSCAN(eps=0.2, minPoints=5, maxPointsPerPartition=1000).fit(df)
new = spark.createDataFrame([(Vectors.dense([0.0, 0.1]),)], ["features"])
print(model.numClusters, model.transform(df).count(), model.transform(new).first().cluster)
spark.stop()
print("numba loaded:", "numba" in sys.modules)
"""


def test_the_driver_never_loads_numba():
    """The region kernels run on the executors; the driver's merge is numpy and scipy, so a
    driver fits, transforms its rows and labels new ones without loading numba and LLVM
    (~110 MiB of its memory)."""
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-c", _DRIVER_SCRIPT], capture_output=True, text=True, timeout=600
    )
    assert out.returncode == 0, out.stderr[-3000:]
    lines = out.stdout.strip().splitlines()
    assert lines[-2] == "3 4000 0", lines  # two blobs and a few points that make a third
    assert lines[-1] == "numba loaded: False"


@pytest.mark.parametrize("setting", ["true", "false"])
def test_the_fit_restores_the_cache_compression_setting(spark, setting):
    """The fit caches its pass uncompressed and puts the session's setting back, also when the
    pass fails (which leaves no cache entry behind)."""
    from spark_clustering.backends.dbscan_spark import CACHE_COMPRESSED

    x = parity_dataset(2)
    before = spark.conf.get(CACHE_COMPRESSED)
    spark.conf.set(CACHE_COMPRESSED, setting)
    try:
        model = DBSCAN(eps=EPS, minPoints=MIN_POINTS).fit(_frame(spark, x, 2, 0))
        assert spark.conf.get(CACHE_COMPRESSED) == setting
        model.unpersist()
        # a carried column that fails only when the pass computes it
        failing = _frame(spark, x, 2, 0).withColumn(
            "boom", F.when(F.col("id") == 5, F.raise_error(F.lit("boom"))).otherwise(F.lit(1))
        )
        spark.catalog.clearCache()
        with pytest.raises(Exception, match="boom"):
            DBSCAN(eps=EPS, minPoints=MIN_POINTS).fit(failing)
        assert spark.conf.get(CACHE_COMPRESSED) == setting
        assert spark._jsparkSession.sharedState().cacheManager().isEmpty()  # nothing left
    finally:
        spark.conf.set(CACHE_COMPRESSED, before)
