"""Realistic synthetic customer transactions, generated on Spark from ``spark.range``.

Customers are drawn from five latent behavioural segments of very different sizes (46% to 4%)
and densities (tight loyal shoppers, widely spread big spenders). Each customer has a
log-normal spend level, a favourite category and channel, a tenure and a recency; each of
their transactions has a heavy-tailed amount (log-normal with a Pareto tail). Most customers
have few transactions, so their category usage is sparse. A small share of values is missing
(amount, channel, country) and a few amounts are outliers (x100) or negative (refunds/errors).

Every random draw is a hash of (seed, draw name, customer id[, transaction index]), not a
stateful generator, so the data is identical for a seed whatever the partitioning or cluster.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .. import sampling

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import Column, DataFrame, SparkSession

log = logging.getLogger(__name__)

#: Latest timestamp of the generated data; fixed so that output does not depend on "now".
END_DATE = "2026-01-01 00:00:00"
CHANNELS = ("store", "online", "app", "phone")
CATEGORIES = ("grocery", "home", "electronics", "fashion", "beauty", "sports", "toys", "luxury")
COUNTRIES = ("US", "GB", "DE", "FR", "ES", "NL")
COUNTRY_WEIGHTS = (0.40, 0.20, 0.15, 0.12, 0.08, 0.05)


@dataclass(frozen=True)
class Segment:
    """One latent behavioural segment and the distributions its customers are drawn from."""

    name: str
    weight: float  # share of customers
    tx_mean: float  # mean number of transactions (1 + exponential)
    amount_median: float  # median transaction amount of a typical customer
    amount_sigma: float  # log-normal spread of one customer's transaction amounts
    level_sigma: float  # log-normal spread of spend levels between customers
    recency_scale: float  # mean days since the last transaction (exponential)
    tenure_range: tuple[float, float]  # days since the first transaction (uniform)
    channel_weights: tuple[float, ...]
    category_weights: tuple[float, ...]


SEGMENTS: tuple[Segment, ...] = (
    Segment(
        "occasional", 0.46, 2.5, 25.0, 0.6, 0.5, 300.0, (30, 1000),
        (0.70, 0.20, 0.05, 0.05), (0.35, 0.15, 0.10, 0.15, 0.10, 0.05, 0.10, 0.0),
    ),
    Segment(
        "family_regulars", 0.26, 18.0, 60.0, 0.5, 0.3, 20.0, (200, 1500),
        (0.60, 0.20, 0.15, 0.05), (0.50, 0.20, 0.05, 0.05, 0.05, 0.05, 0.10, 0.0),
    ),
    Segment(
        "online_deal_seekers", 0.14, 35.0, 45.0, 0.8, 0.4, 15.0, (60, 700),
        (0.05, 0.55, 0.40, 0.0), (0.05, 0.10, 0.40, 0.25, 0.10, 0.10, 0.0, 0.0),
    ),
    Segment(
        "loyal_frequent", 0.10, 70.0, 20.0, 0.3, 0.2, 5.0, (700, 1800),
        (0.50, 0.10, 0.35, 0.05), (0.70, 0.10, 0.0, 0.05, 0.10, 0.05, 0.0, 0.0),
    ),
    Segment(
        "big_spenders", 0.04, 14.0, 600.0, 1.1, 0.7, 40.0, (100, 1200),
        (0.30, 0.40, 0.10, 0.20), (0.0, 0.15, 0.20, 0.15, 0.05, 0.0, 0.0, 0.45),
    ),
)  # fmt: skip

MAX_TRANSACTIONS = 999  # per customer; transaction ids are customer_id * 1000 + index


@dataclass(frozen=True)
class Snapshot:
    """A later snapshot of the same customer base (``number`` periods after the first).

    Customers keep their segment, spend level, favourite category and channel, country and the
    start of their tenure, and their history up to the base's end date; a cumulative ``churn``
    share of them is lost per period (lost once, lost for good) and ``arrivals`` x the base
    customers are new per period (ids after the base's, a history within the periods since).
    Each period adds transactions to the customers still there, at the pace of their own
    history, dated within the period. ``shift_segment`` names a segment whose customers spend
    ``shift_factor`` times more in this snapshot, history included (a behaviour shift).
    Snapshot 0 is the base data, identical to what the generator always wrote.
    """

    number: int = 0
    churn: float = 0.05
    arrivals: float = 0.05
    period_days: int = 30
    shift_segment: str | None = None
    shift_factor: float = 3.0

    def check(self) -> None:
        if self.number < 0:
            raise ValueError(f"snapshot={self.number}; accepted: an integer >= 0")
        for name in ("churn", "arrivals"):
            value = getattr(self, name)
            if not 0.0 <= value < 1.0:
                raise ValueError(f"{name}={value}; accepted: 0 <= {name} < 1")
        if self.period_days < 1:
            raise ValueError(f"period_days={self.period_days}; accepted: >= 1")
        names = [x.name for x in SEGMENTS]
        if self.shift_segment is not None and self.shift_segment not in names:
            raise ValueError(
                f"shift_segment={self.shift_segment!r}; accepted: one of {', '.join(names)}"
            )
        if not (self.shift_factor > 0 and math.isfinite(self.shift_factor)):
            raise ValueError(f"shift_factor={self.shift_factor}; accepted: a number > 0")


@dataclass(frozen=True)
class GeneratedData:
    """Where :func:`generate_transactions` wrote its tables."""

    transactions: str
    segments: str
    customers: int
    seed: int


_uniform = sampling.uniform
_normal = sampling.normal


def _pick(u: Column, names: tuple[str, ...], weights: tuple[float, ...]) -> Column:
    """The name whose cumulative-weight interval holds ``u``."""
    from pyspark.sql import functions as F

    total = float(sum(weights))
    expr = None
    cum = 0.0
    for name, w in zip(names, weights, strict=True):
        if w <= 0:
            continue
        cum += w / total
        cond = u < cum
        expr = F.when(cond, F.lit(name)) if expr is None else expr.when(cond, F.lit(name))
    assert expr is not None
    return expr.otherwise(F.lit(names[-1] if weights[-1] > 0 else name))


def _per_segment(seg: Column, values: list[Column]) -> Column:
    from pyspark.sql import functions as F

    expr = F.when(seg == 0, values[0])
    for i, value in enumerate(values[1:], start=1):
        expr = expr.when(seg == i, value)
    return expr


def _pick_per_segment(seg: Column, u: Column, names: tuple[str, ...], kind: str) -> Column:
    """Draw ``names`` with the weights of the customer's segment (``kind``: category/channel)."""
    attr = f"{kind}_weights"
    return _per_segment(seg, [_pick(u, names, getattr(x, attr)) for x in SEGMENTS])


def _param(seg: Column, values: list[float]) -> Column:
    from pyspark.sql import functions as F

    return F.element_at(F.array(*[F.lit(float(v)) for v in values]), seg + 1)


def _transactions(
    tx: DataFrame,
    s: int,
    salt: str,
    key: tuple[Column, ...],
    epoch_seconds: Column,
    transaction_id: Column,
    missing_rate: float,
    outlier_rate: float,
) -> DataFrame:
    """Transactions of the customers' rows in ``tx``: amount, category and channel drawn from
    hashes of ``key`` (names suffixed by ``salt``), dated at ``epoch_seconds``."""
    from pyspark.sql import functions as F

    seg, cid = F.col("segment"), F.col("customer_id")
    tx = tx.select(
        "*",
        _normal(s, "amount" + salt, *key).alias("_z_amount"),
        _uniform(s, "tail" + salt, *key).alias("_u_tail"),
        _uniform(s, "pareto" + salt, *key).alias("_u_pareto"),
        _uniform(s, "bad_amount" + salt, *key).alias("_u_bad"),
        _uniform(s, "use_fav_cat" + salt, *key).alias("_u_use_fav"),
        _uniform(s, "cat" + salt, *key).alias("_u_cat"),
        _uniform(s, "chan" + salt, *key).alias("_u_chan"),
        _uniform(s, "chan2" + salt, *key).alias("_u_chan2"),
    )
    sigma = _param(seg, [x.amount_sigma for x in SEGMENTS])
    # Log-normal around the customer's level, with a Pareto tail (alpha 1.5) on 3% of rows.
    tail = F.when(F.col("_u_tail") < 0.03, F.pow(F.col("_u_pareto"), -1.0 / 1.5)).otherwise(1.0)
    tx = tx.withColumn("_amount", F.col("level") * F.exp(sigma * F.col("_z_amount")) * tail)
    amount, u_bad = F.col("_amount"), F.col("_u_bad")
    amount = (
        F.when(u_bad < missing_rate / 2, F.lit(None))
        .when(u_bad < missing_rate / 2 + outlier_rate / 2, amount * 100.0)
        .when(u_bad < missing_rate / 2 + outlier_rate, -amount)
        .otherwise(amount)
    )
    category = F.when(F.col("_u_use_fav") < 0.7, F.col("fav_cat")).otherwise(
        _pick_per_segment(seg, F.col("_u_cat"), CATEGORIES, "category")
    )
    u_chan = F.col("_u_chan")
    channel = (
        F.when(u_chan < missing_rate, F.lit(None))
        .when(u_chan < 0.8, F.col("fav_chan"))
        .otherwise(_pick_per_segment(seg, F.col("_u_chan2"), CHANNELS, "channel"))
    )
    return tx.select(
        transaction_id.alias("transaction_id"),
        cid.alias("customer_id"),
        F.timestamp_seconds(epoch_seconds).alias("timestamp"),
        F.round(amount, 2).cast("double").alias("amount"),
        channel.cast("string").alias("channel"),
        category.cast("string").alias("category"),
        F.col("country"),
    )


def transactions_frame(
    spark: SparkSession,
    customers: int,
    seed: int = 0,
    *,
    missing_rate: float = 0.01,
    outlier_rate: float = 0.002,
    partitions: int | None = None,
    snapshot: Snapshot | None = None,
) -> tuple[DataFrame, DataFrame]:
    """The (lazy) transactions and true-segment DataFrames for ``customers`` customers (the
    base; a later ``snapshot`` loses and adds some, see :class:`Snapshot`).

    Columns of the transactions: ``transaction_id`` (long), ``customer_id`` (long),
    ``timestamp`` (timestamp, UTC), ``amount`` (double; a few null, negative or x100),
    ``channel`` (string; a few null), ``category`` (string), ``country`` (string, constant per
    customer; a few null). The segments: ``customer_id``, ``segment`` (int), ``segment_name``.
    """
    from pyspark.sql import functions as F

    if customers < 1:
        raise ValueError(f"customers={customers} is not valid; accepted: an integer >= 1")
    for name, rate in (("missing_rate", missing_rate), ("outlier_rate", outlier_rate)):
        if not 0.0 <= rate < 0.5:
            raise ValueError(f"{name}={rate} is not valid; accepted: 0 <= {name} < 0.5")
    snap = snapshot or Snapshot()
    snap.check()
    if partitions is None:
        partitions = max(spark.sparkContext.defaultParallelism, math.ceil(customers / 100_000))
    s = seed
    cid = F.col("customer_id")
    arrived = round(snap.arrivals * customers * snap.number)
    weights = [seg.weight for seg in SEGMENTS]
    cum = [sum(weights[: i + 1]) / sum(weights) for i in range(len(weights))]
    u_seg = _uniform(s, "segment", cid)
    seg_expr = F.when(u_seg < cum[0], F.lit(0))
    for i, c in enumerate(cum[1:-1], start=1):
        seg_expr = seg_expr.when(u_seg < c, F.lit(i))
    seg_expr = seg_expr.otherwise(F.lit(len(SEGMENTS) - 1))

    base = spark.range(0, customers + arrived, numPartitions=partitions).select(
        (F.col("id") + 1).alias("customer_id")
    )
    if snap.number > 0:  # lost: a draw under the cumulative churn (lost once, lost for good)
        lost = (cid <= customers) & (_uniform(s, "lost", cid) < snap.churn * snap.number)
        base = base.where(~lost)
    cust = base.withColumn("segment", seg_expr.cast("int"))
    seg = F.col("segment")
    tx_mean = _param(seg, [x.tx_mean for x in SEGMENTS])
    lo = _param(seg, [x.tenure_range[0] for x in SEGMENTS])
    hi = _param(seg, [x.tenure_range[1] for x in SEGMENTS])
    aged = float(snap.period_days * snap.number)
    new = cid > customers  # arrived after the base: a history within the periods since
    base_tenure = lo + (hi - lo) * _uniform(s, "tenure", cid)
    tenure = F.when(new, F.lit(aged) * _uniform(s, "arrival", cid)).otherwise(base_tenure)
    n_base = 1 + F.floor(-F.log(_uniform(s, "n_tx", cid)) * (tx_mean - 1.0))
    # a new customer buys at the pace of the segment's typical customer, over a short tenure
    n_new = 1 + F.floor(n_base * tenure / ((lo + hi) / 2.0))
    n_tx = F.least(F.lit(MAX_TRANSACTIONS), F.when(new, n_new).otherwise(n_base).cast("int"))
    level = F.exp(
        F.log(_param(seg, [x.amount_median for x in SEGMENTS]))
        + _param(seg, [x.level_sigma for x in SEGMENTS]) * _normal(s, "level", cid)
    )
    if snap.shift_segment is not None:
        shifted = [x.name for x in SEGMENTS].index(snap.shift_segment)
        level = F.when(seg == shifted, level * snap.shift_factor).otherwise(level)
    recency = F.least(
        tenure,
        -F.log(_uniform(s, "recency", cid)) * _param(seg, [x.recency_scale for x in SEGMENTS]),
    )
    # Draws used more than once are materialised as columns first, so each hash runs once.
    cust = cust.select(
        "*",
        _uniform(s, "fav_cat", cid).alias("_u_cat"),
        _uniform(s, "fav_chan", cid).alias("_u_chan"),
    )
    country = F.when(_uniform(s, "country_null", cid) < 2 * missing_rate, F.lit(None)).otherwise(
        _pick(_uniform(s, "country", cid), COUNTRIES, COUNTRY_WEIGHTS)
    )
    cust = cust.select(
        "customer_id",
        "segment",
        n_tx.alias("n_tx"),
        level.alias("level"),
        tenure.alias("tenure"),
        recency.alias("recency"),
        _pick_per_segment(seg, F.col("_u_cat"), CATEGORIES, "category").alias("fav_cat"),
        _pick_per_segment(seg, F.col("_u_chan"), CHANNELS, "channel").alias("fav_chan"),
        country.cast("string").alias("country"),
    )
    base_end = F.unix_timestamp(F.lit(END_DATE).cast("timestamp"))
    day = 86400.0

    # The history up to the base's end date (a new customer's: up to this snapshot's end).
    tx = cust.select("*", F.explode(F.sequence(F.lit(1), F.col("n_tx"))).alias("tx_index"))
    idx = F.col("tx_index")
    # The first transaction sits at the start of the tenure, the last at the recency.
    days_ago = (
        F.when(idx == 1, F.col("tenure"))
        .when(idx == F.col("n_tx"), F.col("recency"))
        .otherwise(
            F.col("recency") + (F.col("tenure") - F.col("recency")) * _uniform(s, "when", cid, idx)
        )
    )
    end = base_end + F.when(new, F.lit(int(aged * day))).otherwise(F.lit(0))
    history = _transactions(
        tx, s, "", (cid, idx), end - F.round(days_ago * day).cast("long"),
        (cid * 1000 + idx).cast("long"), missing_rate, outlier_rate,
    )  # fmt: skip
    frames = [history]
    # Each later period adds transactions to the customers of the base still there, at the
    # pace of their own history, dated within the period.
    for period in range(1, snap.number + 1):
        past = (F.col("n_tx") - 1).cast("double")
        pace = past / F.greatest(F.col("tenure"), F.lit(1.0))
        expected = F.greatest(pace, F.lit(0.01)) * float(snap.period_days)
        u_n = _uniform(s, f"period_n@{period}", cid)
        n_p = F.least(F.lit(MAX_TRANSACTIONS), F.floor(-F.log(u_n) * expected).cast("int"))
        extra = cust.where(~new).withColumn("_n_p", n_p).where(F.col("_n_p") > 0)
        extra = extra.select("*", F.explode(F.sequence(F.lit(1), F.col("_n_p"))).alias("_j"))
        j = F.col("_j")
        start = base_end + int((period - 1) * snap.period_days * day)
        when = _uniform(s, f"when@{period}", cid, j) * (snap.period_days * day)
        ids = (F.lit(period * 10**12) + cid * 1000 + j).cast("long")
        dated = start + F.round(when).cast("long")
        frames.append(
            _transactions(extra, s, f"@{period}", (cid, j), dated, ids, missing_rate, outlier_rate)
        )
    transactions = frames[0]
    for frame in frames[1:]:
        transactions = transactions.unionByName(frame)
    names = F.element_at(F.array(*[F.lit(x.name) for x in SEGMENTS]), seg + 1)
    segments = cust.select("customer_id", seg.alias("segment"), names.alias("segment_name"))
    return transactions, segments


def generate_transactions(
    spark: SparkSession,
    customers: int,
    output: str,
    seed: int = 0,
    *,
    missing_rate: float = 0.01,
    outlier_rate: float = 0.002,
    partitions: int | None = None,
    snapshot: Snapshot | None = None,
) -> GeneratedData:
    """Write ``output/transactions`` and ``output/segments`` (Parquet), atomically.

    Parameters
    ----------
    spark : SparkSession
    customers : int
        Number of customers; about 18 transactions each on average (many have 1-3).
    output : str
        Output directory (any Hadoop path); replaced only when both tables are written.
    seed : int
        The same seed gives the same data, whatever the partitioning.
    missing_rate, outlier_rate : float
        Share of missing values (amount, channel; twice that for country) and of outlier or
        negative amounts.
    partitions : int, optional
        Partitions of ``spark.range`` (default: the default parallelism, at least one per
        100,000 customers). Does not change the data, only the number of files.
    snapshot : Snapshot, optional
        A later snapshot of the same customers (:class:`Snapshot`); default the base data.

    Examples
    --------
    >>> out = generate_transactions(spark, 1000, "/tmp/gen", seed=1)  # doctest: +SKIP
    >>> spark.read.parquet(out.transactions).count()  # doctest: +SKIP
    18090
    """
    from spark_clustering.jobs.io import atomic_output

    transactions, segments = transactions_frame(
        spark,
        customers,
        seed,
        missing_rate=missing_rate,
        outlier_rate=outlier_rate,
        partitions=partitions,
        snapshot=snapshot,
    )
    with atomic_output(spark, output) as tmp:
        transactions.write.mode("overwrite").parquet(f"{tmp}/transactions")
        segments.write.mode("overwrite").parquet(f"{tmp}/segments")
    out = output.rstrip("/")
    log.info("generated %d customers (seed %d) into %s", customers, seed, out)
    return GeneratedData(f"{out}/transactions", f"{out}/segments", customers, seed)
