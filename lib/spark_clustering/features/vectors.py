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
    """True for a null row, a null element, NaN or +-infinity (never null).

    Built from array functions Spark compiles (a lambda over the elements would be interpreted
    row by row, twice the time of a whole scan): ``array_contains(arr, NaN)`` is true for a NaN
    (Spark's NaN equals NaN) and null for a null element without one; an infinity is the
    array's largest or smallest value.
    """
    nan_or_null = F.coalesce(F.array_contains(arr, F.lit(float("nan"))), F.lit(True))
    inf = F.coalesce(
        (F.array_max(arr) == float("inf")) | (F.array_min(arr) == float("-inf")), F.lit(False)
    )
    return arr.isNull() | nan_or_null | inf


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


def check_invalid_rows(col: str, stats: FeatureStats, handle_invalid: str | None) -> None:
    """Raise ``ValueError`` naming the count when there are invalid rows and the mode is 'error'.

    ``handle_invalid=None`` is for a caller without a ``handleInvalid`` Param (``evaluate``):
    any invalid row is an error, and the message says so.
    """
    if not stats.n_invalid or handle_invalid not in (None, "error"):
        return
    what = (
        f"featuresCol={col!r} has {stats.n_invalid} of {stats.n_rows} rows with null, NaN or "
        "infinite values"
    )
    if handle_invalid is None:
        raise ValueError(f"{what}; accepted: finite numbers only (clean or drop them)")
    raise ValueError(
        f"{what}; clean them or set handleInvalid to 'skip' (drop them) or 'keep' "
        "(keep them in the output, with no result or as noise)"
    )


# --------------------------------------------------------------------------- the shared check


@dataclass(frozen=True)
class Requirement:
    """What an estimator's Params ask of its input: ``param=value`` needs ``min_rows`` valid
    rows, and (``max_dimension_param``) a value no larger than the number of features.

    Examples
    --------
    >>> Requirement(min_rows=3, param="k", value=3).describe()
    'k=3'
    """

    min_rows: int = 1
    param: str | None = None
    value: object = None
    #: the Param that must be <= the features' dimension (PCA's ``k``), with its value
    max_dimension_param: str | None = None
    max_dimension_value: int | None = None

    def describe(self) -> str:
        if not self.param:
            return "fitting"
        return self.param if self.value is None else f"{self.param}={self.value!r}"


@dataclass(frozen=True)
class CheckedInput:
    """The rows to fit on (invalid rows dropped unless they are an error) and the scan."""

    data: DataFrame
    stats: FeatureStats

    @property
    def n_valid(self) -> int:
        return self.stats.n_rows - self.stats.n_invalid

    @property
    def dimension(self) -> int | None:
        return self.stats.dimension


def check_stats(
    col: str,
    stats: FeatureStats,
    handle_invalid: str | None,
    need: Requirement | None = None,
) -> None:
    """The checks on a scan's figures, in order: invalid rows under 'error', empty input, too
    few valid rows for the Params, a Param larger than the number of features.

    Every estimator and function that fits on a features column calls this (through
    :func:`check_input`, or with the figures of its own pass), so the messages are the same
    everywhere: they name the column or Param, the value and what is accepted.
    """
    need = need or Requirement()
    check_invalid_rows(col, stats, handle_invalid)
    n_valid = stats.n_rows - stats.n_invalid
    if need.min_rows > 0 and stats.n_rows == 0:
        raise ValueError(
            f"featuresCol={col!r}: the DataFrame has no rows; {need.describe()} needs at least "
            f"{need.min_rows}"
        )
    if n_valid < need.min_rows:
        valid = "valid rows" if stats.n_invalid else "rows"
        raise ValueError(
            f"featuresCol={col!r} has {n_valid} {valid}; {need.describe()} needs at least "
            f"{need.min_rows}"
        )
    d, k = stats.dimension, need.max_dimension_value
    if need.max_dimension_param and d is not None and k is not None and k > d:
        raise ValueError(
            f"{need.max_dimension_param}={k} is larger than the number of features of "
            f"featuresCol={col!r} ({d}); accepted: 1 <= {need.max_dimension_param} <= {d}"
        )


def check_input(
    df: DataFrame,
    col: str,
    handle_invalid: str | None = "error",
    need: Requirement | None = None,
) -> CheckedInput:
    """The one input check before a fit: one pass over ``col``, then :func:`check_stats`.

    Accepts a vector (dense or sparse) or an array of numbers; raises ``ValueError`` for a
    missing column or another type, rows of different dimensions, invalid (null, NaN,
    infinite) rows under ``handleInvalid='error'``, an empty DataFrame or too few valid rows
    for the Params, a Param larger than the number of features. With 'skip' or 'keep', the
    invalid rows are left out of the returned data (a model is fitted on valid rows only).
    """
    feature_type(df, col)
    stats = scan_features(df, col)
    check_stats(col, stats, handle_invalid, need)
    data = df if not stats.n_invalid else df.where(~invalid_expr(as_array(df, col)))
    return CheckedInput(data, stats)


def transform_rows(
    df: DataFrame, col: str, dimension: int | None, handle_invalid: str
) -> tuple[DataFrame, Column]:
    """The rows a model transforms, per ``handleInvalid``, and the expression that is true for
    an invalid row (null, NaN, infinite, or a dimension other than the model's).

    'error' fails the query at the first such row (Spark's ``raise_error``, with a message
    naming the column and the accepted dimension), 'skip' drops them, 'keep' keeps them: the
    caller gives them a null result (or noise).
    """
    from ..base import check_choice
    from ..params import HANDLE_INVALID_CHOICES

    check_choice("handleInvalid", handle_invalid, HANDLE_INVALID_CHOICES)
    arr = as_array(df, col)
    bad = invalid_expr(arr)
    if dimension:
        bad = bad | (F.size(arr) != dimension)
    if handle_invalid == "error":
        message = (
            f"featuresCol={col!r} has a row with null, NaN or infinite values or a dimension "
            f"other than {dimension}; accepted: {dimension} finite numbers per row, or set "
            "handleInvalid='skip' or 'keep'"
        )
        return df.where(F.when(bad, F.raise_error(F.lit(message))).otherwise(F.lit(True))), bad
    if handle_invalid == "skip":
        return df.where(~bad), bad
    return df, bad
