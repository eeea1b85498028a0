"""The ``features`` column: checks, conversion to arrays and to flat coordinate columns.

Every estimator accepts a Spark ML vector column (dense or sparse) or an array of numbers.
These helpers validate it once, before any work, and give the numeric code plain double
columns (``x0 .. x{d-1}``), which Arrow hands to numpy without copying per row.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from pyspark.ml.functions import array_to_vector, vector_to_array
from pyspark.ml.linalg import VectorUDT
from pyspark.sql import Column
from pyspark.sql import functions as F
from pyspark.sql.types import ArrayType, DataType, NumericType

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import DataFrame

ACCEPTED_TYPES = "a Spark ML vector (pyspark.ml.linalg.VectorUDT) or an array of numbers"


@dataclass(frozen=True)
class FeatureStats:
    """What one scan of the features column found."""

    n_rows: int
    dimension: int | None
    n_invalid: int


def feature_type(df: DataFrame, col: str) -> DataType:
    """Return the column's type, or raise ``ValueError`` naming the column and what is accepted."""
    if col not in df.columns:
        raise ValueError(
            f"featuresCol={col!r} is not a column of the DataFrame; columns: {df.columns}"
        )
    dtype = df.schema[col].dataType
    if isinstance(dtype, VectorUDT):
        return dtype
    if isinstance(dtype, ArrayType) and isinstance(dtype.elementType, NumericType):
        return dtype
    raise ValueError(
        f"featuresCol={col!r} has type {dtype.simpleString()}; accepted: {ACCEPTED_TYPES}"
    )


def as_array(df: DataFrame, col: str) -> Column:
    """The features as ``array<double>`` (vectors converted on the JVM, no Python UDF)."""
    dtype = feature_type(df, col)
    if isinstance(dtype, VectorUDT):
        # vector_to_array throws on a null row, and Spark may evaluate it before (or without)
        # a guarding CASE WHEN: it is given an empty vector there, and the row is null again
        vec = F.col(col)
        empty = array_to_vector(F.array().cast("array<double>"))
        converted = vector_to_array(F.coalesce(vec, empty), "float64")
        return F.when(vec.isNull(), F.lit(None)).otherwise(converted)
    return F.col(col).cast("array<double>")


def invalid_expr(arr: Column) -> Column:
    """True for a null row, a null element, NaN or +-infinity."""
    bad = F.exists(arr, lambda v: v.isNull() | F.isnan(v) | (F.abs(v) == float("inf")))
    return arr.isNull() | bad


def scan_features(df: DataFrame, col: str) -> FeatureStats:
    """One pass over ``col``: row count, the common dimension, and how many rows are invalid.

    Raises ``ValueError`` (before any clustering work) when rows have different dimensions.
    """
    arr = as_array(df, col)
    # size(null) is -1 unless ANSI mode is on: a null row is invalid, not a dimension
    size = F.when(F.col("__x").isNotNull(), F.size("__x"))
    row = (
        df.select(arr.alias("__x"))
        .agg(
            F.count(F.lit(1)).alias("n"),
            F.min(size).alias("dmin"),
            F.max(size).alias("dmax"),
            F.sum(invalid_expr(F.col("__x")).cast("long")).alias("bad"),
        )
        .first()
    )
    if row is None:  # an aggregate always yields one row; None is defensive
        return FeatureStats(0, None, 0)
    return feature_stats(col, int(row["n"]), row["dmin"], row["dmax"], int(row["bad"] or 0))


def feature_stats(
    col: str, n: int, dmin: int | None, dmax: int | None, n_invalid: int
) -> FeatureStats:
    """The figures of a scan (rows, smallest and largest non-null dimension, invalid rows).

    Raises ``ValueError`` naming the column when the dimensions differ or are 0.
    """
    if n == 0:
        return FeatureStats(0, None, 0)
    if dmin is None:  # every row null
        return FeatureStats(n, None, n_invalid)
    if dmin != dmax:
        raise ValueError(
            f"featuresCol={col!r} holds rows of different dimensions (from {dmin} to {dmax}); "
            "every row must have the same number of features"
        )
    if dmin == 0:
        raise ValueError(f"featuresCol={col!r} holds empty vectors (dimension 0)")
    return FeatureStats(n, int(dmin), n_invalid)


def coordinate_names(d: int, prefix: str = "__x") -> list[str]:
    """Names of the flat coordinate columns: ``__x0 .. __x{d-1}``."""
    return [f"{prefix}{i}" for i in range(d)]


def with_coordinates(df: DataFrame, col: str, d: int, prefix: str = "__x") -> DataFrame:
    """Add one double column per dimension (``__x0`` ...) from the features column."""
    arr = as_array(df, col)
    tmp = f"{prefix}arr"
    out = df.withColumn(tmp, arr)
    out = out.select(
        "*", *[F.col(tmp)[i].alias(name) for i, name in enumerate(coordinate_names(d, prefix))]
    )
    return out.drop(tmp)


def handle_invalid_rows(
    df: DataFrame, col: str, stats: FeatureStats, handle_invalid: str
) -> DataFrame:
    """Apply ``handleInvalid`` for fitting: raise on 'error', drop invalid rows otherwise."""
    check_invalid_rows(col, stats, handle_invalid)
    if stats.n_invalid == 0:
        return df
    return df.where(~invalid_expr(as_array(df, col)))


def check_invalid_rows(col: str, stats: FeatureStats, handle_invalid: str) -> None:
    """Raise ``ValueError`` naming the count when there are invalid rows and the mode is 'error'."""
    if stats.n_invalid and handle_invalid == "error":
        raise ValueError(
            f"featuresCol={col!r} has {stats.n_invalid} of {stats.n_rows} rows with null, NaN or "
            "infinite values; clean them or set handleInvalid to 'skip' (drop them) or 'keep' "
            "(label them -1)"
        )
