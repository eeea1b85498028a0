"""Reading the raw input (CSV, Parquet, JSON at any Hadoop path), checking it, handling bad rows.

Checks run in this order, so that a wrong spec or input fails before any heavy work:

1. the path exists (:func:`read_input`), and the columns the spec needs are there with usable
   types (:func:`check_columns`: one ``ValueError`` listing every missing or mistyped column,
   with close matches for misspellings);
2. one aggregate pass (:func:`validate_input`) counts rows, values that are not numbers in numeric
   columns, nulls, null ids and values outside the spec's ranges; each finding is then either a
   ``ValueError`` or a counted, logged handling, as ``[bad_input]`` chooses.
"""

from __future__ import annotations

import datetime as dt
import difflib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pyspark.sql import Column
from pyspark.sql import functions as F
from pyspark.sql.types import (
    ArrayType,
    BinaryType,
    BooleanType,
    DateType,
    MapType,
    NumericType,
    StringType,
    StructType,
    TimestampNTZType,
    TimestampType,
)

from .aggregate import AMOUNT_LIMIT, EXACT_AMOUNT, parse_timestamp
from .parquet import NANOS_AS_LONG, NANOS_MARKER, nanos_to_timestamps, parquet_nanos_columns
from .spec import DEFAULT_TRANSACTION_ID, InputSpec, PreparationSpec, RangeRule

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import DataFrame, SparkSession

log = logging.getLogger(__name__)

#: What a column is used as, and the Spark types accepted for it.
COLUMN_KINDS = ("id", "numeric", "timestamp", "string")
DUPLICATE_COL = "__duplicate"


@dataclass
class InputReport:
    """What reading and checking the input found and did (saved in the report).

    ``rows_read`` counts every input row and ``duplicate_rows_dropped`` the duplicate
    transactions among them (the column compared is ``duplicate_key``; ``None`` when not
    checked). The other counts are over the rows left after that, each rule on its own:
    ``non_numeric`` (text that is not a number or timestamp), ``non_finite`` (NaN, inf),
    ``null_ids``, ``range_violations``, ``future_timestamps`` (rows after the cutoff, the latest
    timestamp seen, the cutoff and where it came from). ``rows_kept`` is the rows no rule
    dropped (for a per-customer table, after ``duplicate_ids``); ``max_timestamp`` the latest
    timestamp of a kept row, the default reference date.
    """

    rows_read: int = 0
    rows_kept: int = 0
    non_numeric: dict[str, int] = field(default_factory=dict)
    null_ids: int = 0
    range_violations: dict[str, dict[str, Any]] = field(default_factory=dict)
    all_null_dropped: list[str] = field(default_factory=list)
    duplicate_ids: int = 0
    duplicate_rows_dropped: int = 0
    duplicate_key: str | None = None
    non_finite: dict[str, int] = field(default_factory=dict)
    future_timestamps: dict[str, Any] = field(default_factory=dict)
    max_timestamp: str | None = None

    def as_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        return asdict(self)


def read_input(spark: SparkSession, spec: InputSpec) -> DataFrame:
    """Read the input as the spec says; ``ValueError`` if the path is missing or unreadable.

    Parquet timestamps of any unit are read as timestamps. Spark 3.5 refuses nanosecond ones
    (pandas' default through pyarrow), so the footer of the first data file is read first; when
    it has nanosecond columns the session is switched to
    ``spark.sql.legacy.parquet.nanosAsLong=true`` (left on: Spark reads the setting when the
    scan runs, not here) and those columns, read as longs, are converted back to timestamps
    (truncated to microseconds, Spark's precision).
    """
    from pyspark.errors import AnalysisException

    from spark_clustering.jobs.io import path_exists

    if not path_exists(spark, spec.path):
        raise ValueError(f"input.path={spec.path!r} does not exist")
    options = dict(spec.options)
    if spec.format == "csv":
        options.setdefault("header", "true")
        options.setdefault("inferSchema", "false")  # read as text; check numbers ourselves
    nanos = parquet_nanos_columns(spark, spec.path) if spec.format == "parquet" else {}
    if nanos:
        log.info("input.path=%r: nanosecond timestamps %s read as longs and converted",
                 spec.path, sorted(nanos))  # fmt: skip
        spark.conf.set(NANOS_AS_LONG, "true")
    try:
        df = spark.read.format(spec.format).options(**options).load(spec.path)
    except AnalysisException as exc:
        first = str(exc).splitlines()[0][:300]
        raise ValueError(
            f"input.path={spec.path!r} could not be read as {spec.format}: {first}"
        ) from None
    except Exception as exc:  # a Py4JJavaError from the schema inference job
        if NANOS_MARKER not in str(exc):
            raise
        # only when files disagree: the first one had no nanosecond column, another has
        raise ValueError(
            f"input.path={spec.path!r} has files with nanosecond timestamps where the first "
            "file has none; rewrite them with one schema (pandas: df.to_parquet(..., "
            "coerce_timestamps='us'))"
        ) from None
    return nanos_to_timestamps(spark, df, nanos)


def required_columns(spec: PreparationSpec) -> dict[str, str]:
    """Column -> kind (``id``, ``numeric``, ``timestamp``, ``string``) the spec reads."""
    need: dict[str, str] = {spec.input.id_col: "id"}
    if spec.input.kind == "transactions":
        t = spec.transactions
        aggs = set(t.aggregates)
        if aggs & {"recency", "tenure"} or not aggs:
            need[t.timestamp_col] = "timestamp"
        if aggs & {"monetary", "avg_basket", "category_shares"}:
            need[t.amount_col] = "numeric"
        if "category_shares" in aggs and t.category_col:
            need[t.category_col] = "string"
        if "distinct_channels" in aggs and t.channel_col:
            need[t.channel_col] = "string"
    for col in spec.columns.numeric:
        need[col] = "numeric"
    for col in spec.columns.categorical:
        need[col] = "string"
    for rule in spec.bad_input.ranges:
        need.setdefault(rule.column, "numeric")
    return need


def _type_ok(kind: str, dtype: Any) -> bool:
    if isinstance(dtype, (ArrayType, MapType, StructType, BinaryType)):
        return False
    if kind == "numeric":
        return isinstance(dtype, (NumericType, StringType, BooleanType))
    if kind == "timestamp":
        return isinstance(
            dtype, (TimestampType, TimestampNTZType, DateType, StringType, NumericType)
        )
    return True


def check_columns(df: DataFrame, need: dict[str, str], where: str = "the input") -> None:
    """Raise one ``ValueError`` naming every missing or mistyped column, before any work."""
    problems = []
    have = df.columns
    for col, kind in need.items():
        if col not in have:
            close = difflib.get_close_matches(col, have, n=3, cutoff=0.6)
            hint = f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""
            problems.append(f"column {col!r} ({kind}) is missing{hint}")
        elif not _type_ok(kind, df.schema[col].dataType):
            problems.append(
                f"column {col!r} has type {df.schema[col].dataType.simpleString()}, which cannot "
                f"be used as {kind}"
            )
    if problems:
        raise ValueError(
            f"{where} does not fit the spec: " + "; ".join(problems) + f". Columns found: {have}"
        )


def _as_number(df: DataFrame, col: str) -> Column:
    """The column parsed as a double: null where text is not a number; NaN and inf kept."""
    dtype = df.schema[col].dataType
    if isinstance(dtype, StringType):
        return F.trim(F.col(col)).cast("double")
    return F.col(col).cast("double")


def _non_finite(value: Column) -> Column:
    return F.isnan(value) | (F.abs(value) == F.lit(float("inf")))


def _as_timestamp(df: DataFrame, col: str, fmt: str | None) -> Column:
    dtype = df.schema[col].dataType
    if isinstance(dtype, StringType):
        return F.to_timestamp(F.col(col), fmt) if fmt else F.to_timestamp(F.col(col))
    if isinstance(dtype, NumericType):  # epoch seconds
        return F.timestamp_seconds(F.col(col))
    return F.col(col).cast("timestamp")


def typed_columns(df: DataFrame, need: dict[str, str], timestamp_format: str | None) -> dict:
    """Column -> the typed expression (double, timestamp or string) for each needed column.

    Numbers that are NaN or infinite come out null: they are counted apart (``non_finite``)
    and never reach a range rule, where NaN would compare above every bound.
    """
    out: dict[str, Column] = {}
    for col, kind in need.items():
        if kind == "numeric":
            value = _as_number(df, col)
            out[col] = F.when(~_non_finite(value), value)
        elif kind == "timestamp":
            out[col] = _as_timestamp(df, col, timestamp_format)
        elif kind == "string":
            out[col] = F.col(col).cast("string")
        else:
            out[col] = F.col(col)
    return out


def _rule_masks(rule: RangeRule, value: Column) -> tuple[Column, Column]:
    below = value < F.lit(rule.min) if rule.min is not None else F.lit(False)
    above = value > F.lit(rule.max) if rule.max is not None else F.lit(False)
    return below, above


def _outside(rule: RangeRule, value: Column) -> Column:
    below, above = _rule_masks(rule, value)
    return F.coalesce(below, F.lit(False)) | F.coalesce(above, F.lit(False))


_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)


def _iso(micros: int | None) -> str | None:
    """Epoch microseconds as a UTC ISO timestamp without offset (how dates are saved here)."""
    if micros is None:
        return None
    return (_EPOCH + dt.timedelta(microseconds=int(micros))).replace(tzinfo=None).isoformat(sep=" ")


def duplicate_key(df: DataFrame, spec: PreparationSpec) -> str | None:
    """The column duplicate transactions share, or ``None`` to compare whole rows."""
    col = spec.transactions.transaction_id_col
    if col is None:  # not set: the usual name when the input has it
        col = DEFAULT_TRANSACTION_ID if DEFAULT_TRANSACTION_ID in df.columns else ""
    return col or None


def duplicate_mask(df: DataFrame, key: str | None, order: list[str]) -> Column:
    """True on every row but one of each group of duplicates.

    With ``key``, rows sharing a non-null key are duplicates and the one kept sorts first on
    ``order`` (nulls last): the same row whatever the partitioning or file order. Without it,
    rows equal in every column are duplicates (maps compared as JSON: they cannot be grouped).
    """
    from pyspark.sql import Window

    if key is not None:
        w = Window.partitionBy(F.col(key)).orderBy(*[F.col(c).asc_nulls_last() for c in order])
        return F.col(key).isNotNull() & (F.row_number().over(w) > 1)
    cols = [
        F.to_json(F.col(c)) if isinstance(df.schema[c].dataType, MapType) else F.col(c)
        for c in df.columns
    ]
    # the rows of a group are identical, so which one is numbered 1 cannot matter
    w = Window.partitionBy(*cols).orderBy(*cols)
    return F.row_number().over(w) > 1


def validate_input(
    df: DataFrame,
    spec: PreparationSpec,
    *,
    reference_date: str | None = None,
    now: dt.datetime | None = None,
) -> tuple[DataFrame, InputReport, list[str]]:
    """Type, count and handle bad input as ``[bad_input]`` chooses.

    Returns the typed DataFrame of the needed columns with the bad rows handled, the report,
    and the numeric/categorical feature columns that were dropped for being entirely null.
    One aggregate pass counts everything; a second query fetches a few examples for an error.

    Parameters
    ----------
    df : DataFrame
        The raw input.
    spec : PreparationSpec
    reference_date : str, optional
        The date recency will be measured to, when it is known before reading (reapplying a
        saved preparation); default ``spec.transactions.reference_date``. Transactions after it
        are future ones; without any, those after ``now`` are.
    now : datetime, optional
        The run date (default: the current time, UTC).

    Notes
    -----
    Transactions are first de-duplicated (``bad_input.duplicate_transactions``); every other
    count is over the rows left, each rule counting on its own (a row can be in two counts).
    ``rows_kept`` is the rows that no rule dropped.
    """
    need = required_columns(spec)
    transactions = spec.input.kind == "transactions"
    checked = dict(need)
    if transactions and spec.transactions.transaction_id_col:  # named: it must be there
        checked.setdefault(spec.transactions.transaction_id_col, "id")
    check_columns(df, checked, f"input.path={spec.input.path!r}")
    bad_input = spec.bad_input
    typed = typed_columns(df, need, spec.input.timestamp_format)
    id_col = spec.input.id_col
    raw_cols = list(need)
    report = InputReport()

    dedup = transactions and bad_input.duplicate_transactions != "keep"
    key = duplicate_key(df, spec) if dedup else None
    if dedup:
        report.duplicate_key = key or "all columns"
        df = df.withColumn(DUPLICATE_COL, duplicate_mask(df, key, raw_cols))
        live = ~F.col(DUPLICATE_COL)
    else:
        live = F.lit(True)

    def on(value: Column) -> Column:  # counts are over the rows that are not duplicates
        return F.when(live, value)

    aggs: list[Column] = [F.count(F.lit(1)).alias("__rows"), F.count(on(F.lit(1))).alias("__live")]
    for col, kind in need.items():
        aggs.append(F.count(on(typed[col])).alias(f"{col}__nonnull"))
        parsed = _as_number(df, col) if kind == "numeric" else typed[col]
        if kind in ("numeric", "timestamp"):
            bad = F.col(col).isNotNull() & parsed.isNull()
            aggs.append(F.sum(on(bad.cast("long"))).alias(f"{col}__bad"))
        if kind == "numeric":
            aggs.append(F.sum(on(_non_finite(parsed).cast("long"))).alias(f"{col}__nonfinite"))
    kept = F.col(id_col).isNotNull()
    ts_col = spec.transactions.timestamp_col if transactions else None
    if ts_col not in need:
        ts_col = None
    explicit_ref = reference_date or spec.transactions.reference_date
    if explicit_ref:
        cutoff = parse_timestamp(explicit_ref)
    else:
        cutoff = now or dt.datetime.now(dt.timezone.utc)
        cutoff = cutoff if cutoff.tzinfo else cutoff.replace(tzinfo=dt.timezone.utc)
    future_action = bad_input.future_timestamps
    if ts_col:
        ts = typed[ts_col]
        future = F.coalesce(ts > F.lit(cutoff), F.lit(False))
        aggs.append(F.sum(on(future.cast("long"))).alias("__future"))
        aggs.append(F.max(on(F.unix_micros(ts))).alias("__latest"))
        if future_action == "drop":
            kept = kept & ~future
    for i, rule in enumerate(bad_input.ranges):
        below, above = _rule_masks(rule, typed[rule.column])
        aggs.append(F.sum(on(below.cast("long"))).alias(f"__r{i}_below"))
        aggs.append(F.sum(on(above.cast("long"))).alias(f"__r{i}_above"))
        if rule.action == "drop":
            kept = kept & ~_outside(rule, typed[rule.column])
    kept = live & kept
    aggs.append(F.sum(F.when(kept, 1).otherwise(0)).alias("__kept"))
    amount_col = spec.transactions.amount_col if transactions else None
    if amount_col in need:  # amounts are summed as exact decimals: their magnitude is bounded
        effective = _after_range_rules(typed[amount_col], amount_col, bad_input.ranges)
        finite = ~F.isnan(effective) & (F.abs(effective) < F.lit(float("inf")))
        huge = kept & finite & (F.abs(effective) >= F.lit(AMOUNT_LIMIT))
        aggs.append(F.sum(F.when(huge, 1).otherwise(0)).alias("__huge"))
    if ts_col:
        # the default reference date: the latest timestamp of a kept row, never a future one
        kept_ts = F.least(typed[ts_col], F.lit(cutoff)) if future_action == "clip" else ts
        aggs.append(F.max(F.when(kept, F.unix_micros(kept_ts))).alias("__max_ts"))
    stats = df.agg(*aggs).first()
    assert stats is not None
    report.rows_read = int(stats["__rows"])
    report.rows_kept = int(stats["__kept"] or 0)
    if report.rows_read == 0:
        raise ValueError(f"input.path={spec.input.path!r} has no rows")
    if ts_col:
        report.max_timestamp = _iso(stats["__max_ts"])

    # duplicate transactions
    n_dup = report.rows_read - int(stats["__live"])
    if n_dup:
        what = f"the same {key!r}" if key else "identical in every column"
        if bad_input.duplicate_transactions == "error":
            dups = df.where(F.col(DUPLICATE_COL))
            examples = (
                [r[0] for r in dups.select(key).distinct().orderBy(key).limit(5).collect()]
                if key
                else [r.asDict() for r in dups.drop(DUPLICATE_COL).limit(2).collect()]
            )
            raise ValueError(
                f"{n_dup} duplicate transaction row(s) ({what}), e.g. {examples}; fix the "
                "input or set bad_input.duplicate_transactions = 'drop' (or 'keep')"
            )
        report.duplicate_rows_dropped = n_dup
        log.warning("dropped %d duplicate transaction row(s) (%s)", n_dup, what)

    # values that are not numbers / timestamps, and numbers that are NaN or infinite
    for col, kind in need.items():
        if kind not in ("numeric", "timestamp"):
            continue
        n_bad = int(stats[f"{col}__bad"] or 0)
        n_inf = int(stats[f"{col}__nonfinite"] or 0) if kind == "numeric" else 0
        if n_inf:
            report.non_finite[col] = n_inf
        if n_bad:
            report.non_numeric[col] = n_bad
        if bad_input.non_numeric == "error" and n_bad:
            parsed = _as_number(df, col) if kind == "numeric" else typed[col]
            examples = [
                r[0]
                for r in df.where(F.col(col).isNotNull() & parsed.isNull())
                .select(F.col(col).cast("string"))
                .limit(5)
                .collect()
            ]
            what = "numbers" if kind == "numeric" else "timestamps"
            raise ValueError(
                f"column {col!r} has {n_bad} value(s) that are not {what}, e.g. {examples}; "
                "fix the input or set bad_input.non_numeric = 'null' to treat them as missing"
            )
        if bad_input.non_numeric == "error" and n_inf:
            raise ValueError(
                f"column {col!r} has {n_inf} NaN or infinite value(s); fix the input or set "
                "bad_input.non_numeric = 'null' to treat them as missing"
            )
        if n_bad:
            log.warning("column %r: %d non-%s value(s) treated as missing", col, n_bad, kind)
        if n_inf:
            log.warning("column %r: %d NaN or infinite value(s) treated as missing", col, n_inf)

    # entirely null columns
    dropped: list[str] = []
    feature_cols = set(spec.columns.numeric) | set(spec.columns.categorical)
    for col in need:
        if int(stats[f"{col}__nonnull"]) > 0:
            continue
        if col in feature_cols and bad_input.all_null == "drop":
            log.warning("column %r is entirely null: dropped from the features", col)
            dropped.append(col)
            continue
        hint = (
            " or set bad_input.all_null = 'drop'"
            if col in feature_cols
            else " (it is needed by the aggregation)"
        )
        raise ValueError(
            f"column {col!r} is entirely null in {report.rows_read} rows; fix the input{hint}"
        )
    report.all_null_dropped = dropped

    if dedup:
        df = df.where(live)
    out = df.select(*[typed[c].alias(c) for c in raw_cols if c not in dropped])
    # null ids
    n_null_ids = int(stats["__live"]) - int(stats[f"{id_col}__nonnull"])
    if n_null_ids:
        report.null_ids = n_null_ids
        if bad_input.null_ids == "error":
            raise ValueError(
                f"id column {id_col!r} is null in {n_null_ids} row(s); fix the input or set "
                "bad_input.null_ids = 'drop'"
            )
        log.warning("dropped %d row(s) with a null %r", n_null_ids, id_col)
        out = out.where(F.col(id_col).isNotNull())

    # timestamps after the reference date (or the run date)
    if ts_col:
        n_future = int(stats["__future"] or 0)
        report.future_timestamps = {
            "rows": n_future,
            "latest": _iso(stats["__latest"]),
            "cutoff": _iso(int((cutoff - _EPOCH) / dt.timedelta(microseconds=1))),
            "cutoff_from": "reference_date" if explicit_ref else "run date",
            "action": future_action,
        }
        if n_future:
            after = report.future_timestamps
            text = (
                f"column {ts_col!r} has {n_future} timestamp(s) after the "
                f"{after['cutoff_from']} {after['cutoff']}, the latest {after['latest']}"
            )
            if future_action == "error":
                raise ValueError(
                    f"{text}; fix the input or set bad_input.future_timestamps = 'drop' or 'clip'"
                )
            log.warning("%s: %s", text, "rows dropped" if future_action == "drop" else "clipped")
            ts = F.col(ts_col)
            if future_action == "drop":
                out = out.where(ts.isNull() | (ts <= F.lit(cutoff)))
            else:
                clipped_ts = F.when(ts > F.lit(cutoff), F.lit(cutoff)).otherwise(ts)
                out = out.withColumn(ts_col, clipped_ts)

    # range rules
    for i, rule in enumerate(bad_input.ranges):
        if rule.column in dropped:
            continue
        n_below = int(stats[f"__r{i}_below"] or 0)
        n_above = int(stats[f"__r{i}_above"] or 0)
        if n_below + n_above == 0:
            continue
        report.range_violations[rule.column] = {
            "below_min": n_below,
            "above_max": n_above,
            "min": rule.min,
            "max": rule.max,
            "action": rule.action,
        }
        bounds = f"[{rule.min if rule.min is not None else '-inf'}, "
        bounds += f"{rule.max if rule.max is not None else 'inf'}]"
        if rule.action == "error":
            raise ValueError(
                f"column {rule.column!r} has {n_below} value(s) below and {n_above} above the "
                f"accepted range {bounds}; fix the input or choose another "
                f"bad_input.ranges.{rule.column}.action (drop, clip, null)"
            )
        log.warning(
            "column %r: %d value(s) below and %d above %s: %s",
            rule.column,
            n_below,
            n_above,
            bounds,
            {"drop": "rows dropped", "clip": "clipped", "null": "set to missing"}[rule.action],
        )
        value = F.col(rule.column)
        below, above = _rule_masks(rule, value)
        if rule.action == "drop":
            out = out.where(~_outside(rule, value))
        elif rule.action == "null":
            out = out.withColumn(rule.column, F.when(below | above, F.lit(None)).otherwise(value))
        else:
            clipped = value
            if rule.min is not None:
                clipped = F.greatest(clipped, F.lit(rule.min))
            if rule.max is not None:
                clipped = F.least(clipped, F.lit(rule.max))
            # greatest/least skip nulls: keep a missing value missing
            out = out.withColumn(rule.column, F.when(value.isNull(), value).otherwise(clipped))
    n_huge = int(stats["__huge"] or 0) if amount_col in need else 0
    if n_huge:
        assert amount_col is not None
        raise ValueError(
            f"column {amount_col!r} has {n_huge} amount(s) of magnitude >= {AMOUNT_LIMIT:g}; "
            f"amounts are summed exactly as {EXACT_AMOUNT}, which holds magnitudes below "
            f"{AMOUNT_LIMIT:g}: rescale the amounts (to thousands, say) or add a "
            f"bad_input.ranges rule for {amount_col!r}"
        )
    return out, report, dropped


def _after_range_rules(value: Column, col: str, rules: Sequence[RangeRule]) -> Column:
    """``value`` as the ``clip`` and ``null`` range rules of ``col`` leave it."""
    for rule in rules:
        if rule.column != col or rule.action not in ("clip", "null"):
            continue
        below, above = _rule_masks(rule, value)
        if rule.action == "null":
            value = F.when(below | above, F.lit(None)).otherwise(value)
        else:
            if rule.min is not None:
                value = F.when(below, F.lit(rule.min)).otherwise(value)
            if rule.max is not None:
                value = F.when(above, F.lit(rule.max)).otherwise(value)
    return value


def handle_duplicate_ids(df: DataFrame, id_col: str, action: str, report: InputReport) -> DataFrame:
    """Per-customer tables: fail on duplicate ids, or keep one row, or drop them all (counted)."""
    from pyspark.sql import Window

    counts = df.groupBy(id_col).count().where(F.col("count") > 1)
    row = counts.agg(F.count(F.lit(1)).alias("ids"), F.sum("count").alias("rows")).first()
    n_ids = int(row["ids"]) if row is not None else 0
    if n_ids == 0:
        return df
    n_rows = int(row["rows"])  # type: ignore[index]
    report.duplicate_ids = n_ids
    if action == "error":
        examples = [r[0] for r in counts.orderBy(id_col).limit(5).collect()]
        raise ValueError(
            f"id column {id_col!r} has {n_ids} duplicated id(s) over {n_rows} rows in a "
            f"per-customer table, e.g. {examples}; fix the input or set "
            "bad_input.duplicate_ids = 'keep_one' or 'drop'"
        )
    if action == "drop":
        report.duplicate_rows_dropped = n_rows
        report.rows_kept -= n_rows
        log.warning("dropped all %d rows of %d duplicated id(s) in %r", n_rows, n_ids, id_col)
        dup = counts.select(id_col)
        return df.join(dup, on=id_col, how="left_anti")
    report.duplicate_rows_dropped = n_rows - n_ids
    report.rows_kept -= n_rows - n_ids
    log.warning("kept one row of each of %d duplicated id(s) in %r", n_ids, id_col)
    # deterministic: the row that sorts first on every column, nulls last
    order = [F.col(c).asc_nulls_last() for c in df.columns if c != id_col]
    w = Window.partitionBy(id_col).orderBy(*order)
    return df.withColumn("__rn", F.row_number().over(w)).where("__rn = 1").drop("__rn")
