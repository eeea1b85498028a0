"""Per-customer aggregation of transactions, on hand-made inputs with known answers."""

from __future__ import annotations

import datetime as dt

import pytest
from chispa import assert_approx_df_equality

from spark_clustering.features.aggregate import aggregate_transactions
from spark_clustering.features.spec import ColumnsSpec, TransactionsSpec

pytestmark = pytest.mark.spark

SCHEMA = (
    "customer_id long, timestamp timestamp, amount double, category string, channel string, "
    "country string"
)


def _ts(day: int) -> dt.datetime:
    return dt.datetime(2025, 1, day, tzinfo=dt.timezone.utc)


@pytest.fixture(scope="module")
def tx(spark):
    rows = [
        (1, _ts(1), 10.0, "grocery", "store", "US"),
        (1, _ts(11), 30.0, "home", "online", "US"),
        (2, _ts(21), 50.0, "grocery", "store", "GB"),
        (3, _ts(6), None, "toys", None, None),  # amount and channel missing
        (3, _ts(16), 20.0, None, "app", "FR"),  # category missing
    ]
    return spark.createDataFrame(rows, SCHEMA)


AGG_SCHEMA = (
    "customer_id long, recency_days double, frequency double, monetary double, "
    "tenure_days double, avg_basket double, share_grocery double, share_home double, "
    "share_toys double, distinct_channels double, country string"
)


def test_rfm_tenure_basket_shares_channels(spark, tx):
    spec = TransactionsSpec(reference_date="2025-01-31")
    out, info = aggregate_transactions(
        tx, "customer_id", spec, ColumnsSpec(categorical=("country",))
    )
    assert info.categories == ("grocery", "home", "toys")
    assert info.reference_date == "2025-01-31"
    expected = spark.createDataFrame(
        [
            (1, 20.0, 2.0, 40.0, 30.0, 20.0, 0.25, 0.75, 0.0, 2.0, "US"),
            (2, 10.0, 1.0, 50.0, 10.0, 50.0, 1.0, 0.0, 0.0, 1.0, "GB"),
            # the toys transaction has no amount: it adds to no share; the null category neither
            (3, 15.0, 2.0, 20.0, 25.0, 20.0, 0.0, 0.0, 0.0, 1.0, "FR"),
        ],
        AGG_SCHEMA,
    )
    assert_approx_df_equality(
        out, expected, precision=1e-9, ignore_row_order=True, ignore_nullable=True
    )


def test_default_reference_is_the_latest_timestamp_and_categories_can_be_fixed(spark, tx):
    spec = TransactionsSpec(aggregates=("recency", "category_shares"))
    out, info = aggregate_transactions(tx, "customer_id", spec, categories=["home"])
    assert info.reference_date == "2025-01-21 00:00:00"
    assert info.feature_columns == ("recency_days", "share_home")
    expected = spark.createDataFrame(
        [(1, 10.0, 0.75), (2, 0.0, 0.0), (3, 5.0, 0.0)],
        "customer_id long, recency_days double, share_home double",
    )
    assert_approx_df_equality(
        out, expected, precision=1e-9, ignore_row_order=True, ignore_nullable=True
    )


def test_rare_categories_beyond_the_limit_go_to_share_other(spark, tx):
    spec = TransactionsSpec(aggregates=("category_shares",), max_categories=1)
    out, info = aggregate_transactions(tx, "customer_id", spec)
    assert info.categories == ("grocery",)  # the most frequent one
    assert info.other_category
    expected = spark.createDataFrame(
        [(1, 0.25, 0.75), (2, 1.0, 0.0), (3, 0.0, 0.0)],
        "customer_id long, share_grocery double, share_other double",
    )
    assert_approx_df_equality(
        out, expected, precision=1e-9, ignore_row_order=True, ignore_nullable=True
    )
