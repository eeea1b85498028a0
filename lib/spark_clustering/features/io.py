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

import difflib
import logging
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

from .spec import InputSpec, PreparationSpec, RangeRule

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import DataFrame, SparkSession

log = logging.getLogger(__name__)

#: What a column is used as, and the Spark types accepted for it.
COLUMN_KINDS = ("id", "numeric", "timestamp", "string")


@dataclass
class InputReport:
    """What reading and checking the input found and did (saved in the report)."""

    rows_read: int = 0
    rows_kept: int = 0
    non_numeric: dict[str, int] = field(default_factory=dict)
    null_ids: int = 0
    range_violations: dict[str, dict[str, Any]] = field(default_factory=dict)
    all_null_dropped: list[str] = field(default_factory=list)
    duplicate_ids: int = 0
    duplicate_rows_dropped: int = 0
    max_timestamp: str | None = None

    def as_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        return asdict(self)


def read_input(spark: SparkSession, spec: InputSpec) -> DataFrame:
    """Read the input as the spec says; ``ValueError`` if the path is missing or unreadable."""
    from pyspark.errors import AnalysisException

    from spark_clustering.jobs.io import path_exists

    if not path_exists(spark, spec.path):
        raise ValueError(f"input.path={spec.path!r} does not exist")
    options = dict(spec.options)
    if spec.format == "csv":
        options.setdefault("header", "true")
        options.setdefault("inferSchema", "false")  # read as text; check numbers ourselves
    try:
        return spark.read.format(spec.format).options(**options).load(spec.path)
    except AnalysisException as exc:
        first = str(exc).splitlines()[0][:300]
        raise ValueError(
            f"input.path={spec.path!r} could not be read as {spec.format}: {first}"
        ) from None


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
    dtype = df.schema[col].dataType
    if isinstance(dtype, StringType):
        return F.trim(F.col(col)).cast("double")
    return F.col(col).cast("double")


def _as_timestamp(df: DataFrame, col: str, fmt: str | None) -> Column:
    dtype = df.schema[col].dataType
    if isinstance(dtype, StringType):
        return F.to_timestamp(F.col(col), fmt) if fmt else F.to_timestamp(F.col(col))
    if isinstance(dtype, NumericType):  # epoch seconds
        return F.timestamp_seconds(F.col(col))
    return F.col(col).cast("timestamp")


def typed_columns(df: DataFrame, need: dict[str, str], timestamp_format: str | None) -> dict:
    """Column -> the typed expression (double, timestamp or string) for each needed column."""
    out: dict[str, Column] = {}
    for col, kind in need.items():
        if kind == "numeric":
            out[col] = _as_number(df, col)
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


def validate_input(
    df: DataFrame, spec: PreparationSpec
) -> tuple[DataFrame, InputReport, list[str]]:
    """Type, count and handle bad input as ``[bad_input]`` chooses.

    Returns the typed DataFrame of the needed columns with the bad rows handled, the report,
    and the numeric/categorical feature columns that were dropped for being entirely null.
    One aggregate pass counts everything; a second query fetches a few examples for an error.
    """
    need = required_columns(spec)
    check_columns(df, need, f"input.path={spec.input.path!r}")
    typed = typed_columns(df, need, spec.input.timestamp_format)
    id_col = spec.input.id_col
    raw_cols = list(need)
    aggs: list[Column] = [F.count(F.lit(1)).alias("__rows")]
    for col, kind in need.items():
        aggs.append(F.count(typed[col]).alias(f"{col}__nonnull"))
        if kind in ("numeric", "timestamp"):
            bad = F.col(col).isNotNull() & typed[col].isNull()
            aggs.append(F.sum(bad.cast("long")).alias(f"{col}__bad"))
    ts_col = spec.transactions.timestamp_col if spec.input.kind == "transactions" else None
    if ts_col and ts_col in need:
        aggs.append(F.max(typed[ts_col]).alias("__max_ts"))
    for i, rule in enumerate(spec.bad_input.ranges):
        below, above = _rule_masks(rule, typed[rule.column])
        aggs.append(F.sum(below.cast("long")).alias(f"__r{i}_below"))
        aggs.append(F.sum(above.cast("long")).alias(f"__r{i}_above"))
    stats = df.select(*raw_cols).agg(*aggs).first()
    assert stats is not None
    report = InputReport(rows_read=int(stats["__rows"]))
    if report.rows_read == 0:
        raise ValueError(f"input.path={spec.input.path!r} has no rows")
    if ts_col and ts_col in need and stats["__max_ts"] is not None:
        report.max_timestamp = stats["__max_ts"].isoformat(sep=" ")

    # values that are not numbers / timestamps
    for col, kind in need.items():
        if kind not in ("numeric", "timestamp"):
            continue
        n_bad = int(stats[f"{col}__bad"] or 0)
        if n_bad == 0:
            continue
        report.non_numeric[col] = n_bad
        if spec.bad_input.non_numeric == "error":
            examples = [
                r[0]
                for r in df.where(F.col(col).isNotNull() & typed[col].isNull())
                .select(F.col(col).cast("string"))
                .limit(5)
                .collect()
            ]
            what = "numbers" if kind == "numeric" else "timestamps"
            raise ValueError(
                f"column {col!r} has {n_bad} value(s) that are not {what}, e.g. {examples}; "
                "fix the input or set bad_input.non_numeric = 'null' to treat them as missing"
            )
        log.warning("column %r: %d non-%s value(s) treated as missing", col, n_bad, kind)

    # entirely null columns
    dropped: list[str] = []
    feature_cols = set(spec.columns.numeric) | set(spec.columns.categorical)
    for col in need:
        if int(stats[f"{col}__nonnull"]) > 0:
            continue
        if col in feature_cols and spec.bad_input.all_null == "drop":
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

    out = df.select(*[typed[c].alias(c) for c in raw_cols if c not in dropped])
    # null ids
    n_null_ids = report.rows_read - int(stats[f"{id_col}__nonnull"])
    if n_null_ids:
        report.null_ids = n_null_ids
        if spec.bad_input.null_ids == "error":
            raise ValueError(
                f"id column {id_col!r} is null in {n_null_ids} row(s); fix the input or set "
                "bad_input.null_ids = 'drop'"
            )
        log.warning("dropped %d row(s) with a null %r", n_null_ids, id_col)
        out = out.where(F.col(id_col).isNotNull())

    # range rules
    for i, rule in enumerate(spec.bad_input.ranges):
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
            out = out.where(~(F.coalesce(below, F.lit(False)) | F.coalesce(above, F.lit(False))))
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
    return out, report, dropped


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
        log.warning("dropped all %d rows of %d duplicated id(s) in %r", n_rows, n_ids, id_col)
        dup = counts.select(id_col)
        return df.join(dup, on=id_col, how="left_anti")
    report.duplicate_rows_dropped = n_rows - n_ids
    log.warning("kept one row of each of %d duplicated id(s) in %r", n_ids, id_col)
    # deterministic: the row that sorts first on every column, nulls last
    order = [F.col(c).asc_nulls_last() for c in df.columns if c != id_col]
    w = Window.partitionBy(id_col).orderBy(*order)
    return df.withColumn("__rn", F.row_number().over(w)).where("__rn = 1").drop("__rn")
