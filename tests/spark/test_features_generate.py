"""The synthetic transactions: deterministic for a seed whatever the partitioning, with the
promised shape (segments of very different sizes, sparse usage, missing values, outliers)."""

from __future__ import annotations

import pytest
from chispa import assert_df_equality
from pyspark.sql import functions as F

from spark_clustering.features.generate import (
    CATEGORIES,
    SEGMENTS,
    generate_transactions,
    transactions_frame,
)

pytestmark = pytest.mark.spark

N = 3000


@pytest.fixture(scope="module")
def generated(spark, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("gen") / "data")
    return generate_transactions(spark, N, out, seed=7, partitions=3)


def test_same_seed_same_data_whatever_the_partitioning(spark, generated):
    again, segments = transactions_frame(spark, N, seed=7, partitions=5)
    written = spark.read.parquet(generated.transactions)
    assert_df_equality(written, again, ignore_row_order=True, ignore_nullable=True)
    assert_df_equality(
        spark.read.parquet(generated.segments), segments, ignore_row_order=True,
        ignore_nullable=True,
    )  # fmt: skip


def test_other_seed_other_data(spark, generated):
    other, _ = transactions_frame(spark, N, seed=8)
    written = spark.read.parquet(generated.transactions)
    assert other.select("amount").subtract(written.select("amount")).count() > 0


def test_shape(spark, generated):
    tx = spark.read.parquet(generated.transactions)
    seg = spark.read.parquet(generated.segments)
    assert tx.columns == [
        "transaction_id", "customer_id", "timestamp", "amount", "channel", "category", "country",
    ]  # fmt: skip
    assert seg.count() == N
    assert seg.select("customer_id").distinct().count() == N
    s = tx.agg(
        F.count(F.lit(1)).alias("rows"),
        F.countDistinct("customer_id").alias("customers"),
        F.countDistinct("transaction_id").alias("ids"),
        F.sum(F.col("amount").isNull().cast("int")).alias("null_amount"),
        F.sum((F.col("amount") < 0).cast("int")).alias("negative"),
        F.sum(F.col("channel").isNull().cast("int")).alias("null_channel"),
        F.max("timestamp").alias("latest"),
        F.expr("percentile_approx(amount, 0.5)").alias("median"),
        F.max("amount").alias("max"),
    ).first()
    assert s["customers"] == N and s["ids"] == s["rows"]
    assert 12 * N < s["rows"] < 25 * N  # about 18 transactions per customer
    assert s["null_amount"] > 0 and s["negative"] > 0 and s["null_channel"] > 0
    assert s["max"] > 50 * s["median"]  # heavy tail and outliers
    assert str(s["latest"]) < "2026-01-01"
    # segment sizes follow the weights: the largest is many times the smallest
    sizes = {r["segment"]: r["count"] for r in seg.groupBy("segment").count().collect()}
    assert set(sizes) == set(range(len(SEGMENTS)))
    assert sizes[0] > 6 * sizes[len(SEGMENTS) - 1]
    for i, segment in enumerate(SEGMENTS):
        assert abs(sizes[i] / N - segment.weight) < 0.03
    # sparse category usage: most customers use few of the categories
    per_customer = tx.groupBy("customer_id").agg(F.countDistinct("category").alias("k"))
    median_k = per_customer.approxQuantile("k", [0.5], 0.0)[0]
    assert median_k <= len(CATEGORIES) / 2
    assert per_customer.where("k = 1").count() > 0.2 * N


def test_bad_arguments(spark):
    with pytest.raises(ValueError, match="customers=0 is not valid"):
        transactions_frame(spark, 0)
    with pytest.raises(ValueError, match=r"missing_rate=0\.7 is not valid"):
        transactions_frame(spark, 10, missing_rate=0.7)
