"""The same rows and seed give the same result whatever their layout: 1, 3 or 7 partitions, any
row order. Every sample is drawn by a hash of the seed and the row (spark_clustering.sampling),
and MLlib's seeded initialisations run on a layout that depends on the rows alone."""

from __future__ import annotations

import numpy as np
import pytest
from pyspark.ml.linalg import Vectors

from segment_data import blobs

pytestmark = pytest.mark.spark

LAYOUTS = (1, 3, 7)


@pytest.fixture(scope="module")
def layouts(spark):
    """The same 150 rows as three DataFrames: 1, 3 and 7 partitions, each in another order."""
    ids, x, _ = blobs(50, seed=11)
    frames = {}
    for parts in LAYOUTS:
        order = np.random.default_rng(parts).permutation(len(ids))
        rows = [(int(ids[i]), Vectors.dense(x[i])) for i in order]
        rdd = spark.sparkContext.parallelize(rows, parts)
        frames[parts] = spark.createDataFrame(rdd, ["id", "features"]).cache()
        assert frames[parts].rdd.getNumPartitions() == parts
    return frames


def _by_id(df, col: str) -> dict[int, object]:
    return {r["id"]: r[col] for r in df.select("id", col).collect()}


def _same_everywhere(results: dict[int, object]) -> None:
    first = results[LAYOUTS[0]]
    for parts in LAYOUTS[1:]:
        assert results[parts] == first, f"{parts} partitions differ from 1 partition"


def test_eps_sample_and_knee(layouts) -> None:
    from spark_clustering import suggest_eps

    # sampleSize below the row count: which rows are drawn decides the curve and the knee
    graphs = {p: suggest_eps(df, k=5, sampleSize=60, seed=3) for p, df in layouts.items()}
    _same_everywhere({p: (g.eps, tuple(g.distances)) for p, g in graphs.items()})


def test_umap_fit_sample_and_embedding(layouts) -> None:
    from spark_clustering import UMAP

    models = {
        p: UMAP(nComponents=2, nNeighbors=8, sampleSize=90, seed=3).fit(df)
        for p, df in layouts.items()
    }
    _same_everywhere({p: m.trainingSample.tobytes() for p, m in models.items()})
    _same_everywhere({p: m.embedding.tobytes() for p, m in models.items()})
    _same_everywhere(
        {p: _by_id(models[p].transform(df), "umap_features") for p, df in layouts.items()}
    )


def test_kmeans_and_gmm_initialisation(layouts) -> None:
    from spark_clustering import GaussianMixture, KMeans

    for est in (KMeans(k=3, seed=7, initSteps=2), GaussianMixture(k=3, seed=7)):
        models = {p: est.copy().fit(df) for p, df in layouts.items()}
        _same_everywhere({p: _by_id(m.transform(df), "cluster") for p, (df, m) in
                          ((p, (layouts[p], models[p])) for p in LAYOUTS)})  # fmt: skip


def test_dbscan_and_metrics(layouts) -> None:
    from spark_clustering import DBSCAN, evaluate

    labelled = {p: DBSCAN(eps=1.0, minPoints=5).fit(df).transform(df) for p, df in layouts.items()}
    _same_everywhere({p: _by_id(df, "cluster") for p, df in labelled.items()})
    # silhouette on a sample smaller than the data: the same rows, the same estimate
    scores = {
        p: evaluate(df, sampleSize=40, repeats=2, seed=5, metrics=["silhouette"])
        for p, df in labelled.items()
    }
    _same_everywhere({p: repr(sorted(s.items())) for p, s in scores.items()})


def test_prepared_features_from_transactions(spark) -> None:
    """Aggregation (exact decimal sums), winsorizing and median imputation (exact quantiles) and
    standard scaling (sums in id order) give bit-identical features from 1, 3 or 7 partitions
    in any order, whatever spark.sql.shuffle.partitions the cluster sets."""
    from pathlib import Path

    from pyspark.sql import functions as F

    from spark_clustering.features.generate import transactions_frame
    from spark_clustering.features.prepare import prepare_features
    from spark_clustering.features.spec import load_spec

    spec = load_spec(str(Path(__file__).parents[2] / "examples" / "prepare.toml"))
    tx, _ = transactions_frame(spark, 1500, seed=5, partitions=2)
    tx = tx.cache()
    shuffle = spark.conf.get("spark.sql.shuffle.partitions")
    results = {}
    try:
        for parts, shuffle_parts in zip(LAYOUTS, (2, 5, 9), strict=True):
            spark.conf.set("spark.sql.shuffle.partitions", str(shuffle_parts))
            order = F.xxhash64(F.lit(parts), "transaction_id", "amount")
            layout = tx.repartition(parts).sortWithinPartitions(order)
            prepared = prepare_features(spark, spec, layout)
            features = {r[0]: r[1].toArray().tobytes() for r in prepared.features.collect()}
            results[parts] = (features, repr(prepared.report["clean"]), prepared.feature_names)
            prepared.unpersist()
    finally:
        spark.conf.set("spark.sql.shuffle.partitions", shuffle)
        tx.unpersist()
    # the generator's nulls are imputed: median fills are part of what must agree
    assert "imputed_values" in results[1][1]
    _same_everywhere(results)


def test_kmeans_and_gmm_ignore_last_bit_noise_of_their_input(spark) -> None:
    """An upstream reduction (PCA's or UMAP's sums, merged in task order) can move the last bit
    of the features between runs: the fit's layout is hashed at single precision, so the same
    model comes out (it once gave 284/222/276/25 and 438/148/199/22 on the same data)."""
    from spark_clustering import GaussianMixture, KMeans

    ids, x, _ = blobs(60, seed=8)
    nudged = np.nextafter(x, np.inf)  # one ulp up in every coordinate
    assert (nudged != x).all()
    frames = [
        spark.createDataFrame([(int(i), Vectors.dense(r)) for i, r in zip(ids, v, strict=True)],
                              ["id", "features"])
        for v in (x, nudged)
    ]  # fmt: skip
    for est in (KMeans(k=4, seed=2, initSteps=2), GaussianMixture(k=4, seed=2)):
        labels = [_by_id(est.copy().fit(df).transform(df), "cluster") for df in frames]
        assert labels[0] == labels[1], type(est).__name__


def test_segment_ids_and_transitions(spark) -> None:
    """Matching a re-fit and counting transitions: the same record and matrix from assignments
    in 1, 3 or 7 partitions, in any order."""
    from spark_clustering.jobs.identity import (
        MatchSettings,
        Previous,
        assign_ids,
        overlap_counts,
        transition_counts,
        transition_rows,
    )

    rng = np.random.default_rng(4)
    before = [(i, int(rng.integers(-1, 4))) for i in range(600)]
    after = [(i, int((c + 1) % 5) - 1 if rng.random() < 0.9 else int(rng.integers(-1, 5)))
             for i, c in before[30:]] + [(i, 0) for i in range(1000, 1040)]  # fmt: skip
    previous = Previous("2026-11-01", "r0", {s: f"segment {s}" for s in range(4)}, {}, 4)
    results = {}
    for parts in LAYOUTS:
        order = np.random.default_rng(parts).permutation
        a_rows = [before[i] for i in order(len(before))]
        b_rows = [after[i] for i in order(len(after))]
        a = spark.createDataFrame(spark.sparkContext.parallelize(a_rows, parts),
                                  "customer_id long, segment_id int")  # fmt: skip
        b = spark.createDataFrame(spark.sparkContext.parallelize(b_rows, parts),
                                  "customer_id long, cluster int")  # fmt: skip
        overlap = overlap_counts(b, a, "customer_id")
        record = assign_ids(sorted({c for _, c in after}), previous, MatchSettings(),
                            overlap=overlap, customers=len(after))  # fmt: skip
        moved = transition_rows(
            transition_counts(a, b.withColumnRenamed("cluster", "segment_id"), "customer_id")
        )
        results[parts] = (repr(record), repr(moved))
    _same_everywhere(results)
    assert "'method': 'overlap'" in results[1][0]


@pytest.mark.parametrize("n_rows", ["known", "unknown", "overstated"])
def test_smallest_draws_are_the_sorted_querys_rows(spark, n_rows) -> None:
    """The threshold pass gives the rows ``orderBy(key, cols).limit(n)`` gives, ties (equal
    rows, equal draws) included; with no row count, or one so overstated that too few rows
    pass the threshold, the sorted query answers."""
    from spark_clustering import sampling

    rng = np.random.default_rng(3)
    x = np.round(rng.normal(size=(6000, 2)), 1)  # many equal rows, so equal draws
    df = spark.createDataFrame([(float(a), float(b)) for a, b in x], "a double, b double")
    df = df.repartition(5)
    key = sampling.uniform(7, "test", *map(sampling.single, ["a", "b"]))
    want = df.orderBy(key, "a", "b").limit(500).toPandas()
    count = {"known": 6000, "unknown": None, "overstated": 6_000_000}[n_rows]
    got = sampling.smallest(df, key, 500, ["a", "b"], count)
    assert got.to_numpy().tolist() == want.to_numpy().tolist()
