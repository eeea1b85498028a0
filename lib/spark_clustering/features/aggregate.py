"""Per-customer aggregation of transactions: RFM, tenure, basket, category shares, channels.

Everything comes out of a single ``groupBy(id).agg(...)`` (one shuffle): category shares are
conditional sums over a known list of categories, not a ``pivot`` (which would need a second
aggregation), and distinct channels are ``size(collect_set(...))``, which avoids the ``Expand``
that ``countDistinct`` mixed with other aggregates costs.

Definitions (``ref`` is the reference date, by default the input's latest timestamp):

* ``recency_days``: days from the customer's last transaction to ``ref``;
* ``frequency``: number of transactions;
* ``monetary``: sum of the amounts (missing amounts ignored);
* ``tenure_days``: days from the first transaction to ``ref``;
* ``avg_basket``: mean amount per transaction with an amount;
* ``share_<category>``: the category's share of the customer's spend (0 when never bought;
  missing when the customer's total spend is 0 or unknown);
* ``distinct_channels``: number of different (non-null) channels used;
* pass-through columns: per-customer attributes repeated on every transaction (``country``);
  when they vary, the largest value is taken, so the result is deterministic.

Amounts are summed as decimals (:data:`EXACT_AMOUNT`: 6 decimal places, below 10^12 in
magnitude, which :func:`.io.validate_input` checks): a sum of decimals is exact, so
``monetary``, ``avg_basket`` and the shares are the same whatever order Spark adds a customer's
transactions in (a sum of doubles changes in its last bits with the partitions, and UMAP turns
that into other segments).
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pyspark.sql import functions as F

from .spec import AGGREGATE_COLUMNS, ColumnsSpec, TransactionsSpec, share_column

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import Column, DataFrame

log = logging.getLogger(__name__)

OTHER_CATEGORY = "other"
#: the type amounts are summed in: exact sums, and a precision of 18 keeps Spark on its fast
#: (long-backed) decimals; amounts are rounded to 6 decimal places
EXACT_AMOUNT = "decimal(18,6)"
#: the largest amount magnitude :data:`EXACT_AMOUNT` holds
AMOUNT_LIMIT = 1e12


@dataclass(frozen=True)
class AggregationInfo:
    """What the aggregation fixed at fit time, needed to aggregate new data the same way."""

    reference_date: str | None
    categories: tuple[str, ...]
    other_category: bool
    feature_columns: tuple[str, ...]


def parse_timestamp(value: str) -> dt.datetime:
    """An ISO date or timestamp, as UTC."""
    ts = dt.datetime.fromisoformat(value)
    return ts if ts.tzinfo else ts.replace(tzinfo=dt.timezone.utc)


def top_categories(df: DataFrame, col: str, limit: int) -> tuple[list[str], bool]:
    """The ``limit`` most frequent non-null categories (ties by name), and whether more exist."""
    rows = (
        df.where(F.col(col).isNotNull())
        .groupBy(col)
        .count()
        .orderBy(F.desc("count"), F.asc(col))
        .limit(limit + 1)
        .collect()
    )
    names = [str(r[0]) for r in rows]
    return sorted(names[:limit]), len(names) > limit


def aggregate_transactions(
    df: DataFrame,
    id_col: str,
    spec: TransactionsSpec,
    passthrough: ColumnsSpec | None = None,
    *,
    reference_date: str | None = None,
    categories: list[str] | tuple[str, ...] | None = None,
    other_category: bool | None = None,
) -> tuple[DataFrame, AggregationInfo]:
    """One row per customer with the aggregates the spec asks for.

    Parameters
    ----------
    df : DataFrame
        Typed transactions (timestamp column of timestamp type, amount double).
    id_col : str
        The customer id column.
    spec : TransactionsSpec
        Which aggregates and which columns hold timestamp, amount, category and channel.
    passthrough : ColumnsSpec
        Per-customer columns carried over (largest value per customer).
    reference_date : str, optional
        Recency and tenure are measured to this date. Default: ``spec.reference_date``, else the
        latest timestamp in ``df`` (one extra pass).
    categories : list of str, optional
        Categories whose spend shares are computed. Default: ``spec.categories``, else the
        ``spec.max_categories`` most frequent ones (one extra pass); the remaining ones are
        summed into ``share_other``.

    Examples
    --------
    >>> agg, info = aggregate_transactions(tx, "customer_id", TransactionsSpec())  # doctest: +SKIP
    """
    passthrough = passthrough or ColumnsSpec()
    aggs = set(spec.aggregates)
    ts, amount = F.col(spec.timestamp_col), F.col(spec.amount_col)
    ref = reference_date or spec.reference_date
    if ref is None and aggs & {"recency", "tenure"}:
        latest = df.agg(F.max(spec.timestamp_col)).first()[0]  # type: ignore[index]
        if latest is None:
            raise ValueError(f"column {spec.timestamp_col!r} has no timestamps")
        ref = latest.isoformat(sep=" ")
    cats: list[str] = []
    other = False
    if "category_shares" in aggs:
        assert spec.category_col is not None
        if categories is None and spec.categories is not None:
            categories = spec.categories
        if categories is None:
            cats, other = top_categories(df, spec.category_col, spec.max_categories)
            if other:
                log.warning(
                    "more than %d categories in %r: the rest are summed into %r",
                    spec.max_categories,
                    spec.category_col,
                    share_column(OTHER_CATEGORY),
                )
        else:
            cats = list(categories)
            other = bool(other_category)
        names = [share_column(c) for c in cats]
        if len(set(names)) != len(names):
            raise ValueError(
                f"categories {cats} give clashing column names {names}; rename the categories"
            )

    exprs: list[Column] = []
    order: list[str] = []
    if ref is not None:
        ref_epoch = parse_timestamp(ref).timestamp()
    epoch = F.unix_timestamp(ts).cast("double")
    exact = amount.cast(EXACT_AMOUNT)

    def total_of(value: Column) -> Column:  # an exact sum, as a double
        return F.sum(value).cast("double")

    for agg in spec.aggregates:  # keep the spec's order
        if agg == "recency":
            exprs.append(((F.lit(ref_epoch) - F.max(epoch)) / 86400.0).alias("recency_days"))
        elif agg == "tenure":
            exprs.append(((F.lit(ref_epoch) - F.min(epoch)) / 86400.0).alias("tenure_days"))
        elif agg == "frequency":
            exprs.append(F.count(F.lit(1)).cast("double").alias("frequency"))
        elif agg == "monetary":
            exprs.append(total_of(exact).alias("monetary"))
        elif agg == "avg_basket":
            exprs.append((total_of(exact) / F.count(amount)).alias("avg_basket"))
        elif agg == "distinct_channels":
            assert spec.channel_col is not None
            channels = F.size(F.collect_set(F.col(spec.channel_col))).cast("double")
            exprs.append(channels.alias("distinct_channels"))
        elif agg == "category_shares":
            assert spec.category_col is not None
            cat = F.col(spec.category_col)
            total = total_of(exact)
            zero = F.lit(0).cast(EXACT_AMOUNT)
            for c in cats:
                share = total_of(F.when(cat == F.lit(c), exact).otherwise(zero)) / total
                exprs.append(share.alias(share_column(c)))
            if other:
                in_list = cat.isin(cats) if cats else F.lit(False)
                rest = F.when(cat.isNotNull() & ~in_list, exact).otherwise(zero)
                exprs.append((total_of(rest) / total).alias(share_column(OTHER_CATEGORY)))
        if agg != "category_shares":
            order.append(AGGREGATE_COLUMNS[agg])
        else:
            order += [share_column(c) for c in cats]
            if other:
                order.append(share_column(OTHER_CATEGORY))
    for col in (*passthrough.numeric, *passthrough.categorical):
        exprs.append(F.max(F.col(col)).alias(col))
    out = df.groupBy(id_col).agg(*exprs)
    info = AggregationInfo(ref, tuple(cats), other, tuple(order))
    return out, info
