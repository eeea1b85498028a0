"""Cleaning stages: winsorize, impute, log1p, one-hot encode, drop constant features.

Each step is a Spark ML stage so that the fitted preparation is one saved ``PipelineModel``
that applies the same cleaning to new data:

* winsorizing: bounds are exact quantiles (:func:`.stable.exact_quantiles`: the same on any
  layout, where ``approxQuantile``'s are not), applied by a ``SQLTransformer``
  (``least(greatest(x, lo), hi)``, which stays on the JVM and on the GPU under the RAPIDS
  Accelerator);
* imputation: medians (exact) and means (summed in id order, :mod:`.stable`) are computed
  here and filled, like a constant, by a ``coalesce`` in the next ``SQLTransformer``; ``mode``
  is Spark's ``Imputer``;
* ``log1p``: the same ``SQLTransformer``;
* one-hot: ``StringIndexer`` (alphabetical, nulls and unseen values into ``__unknown``) then
  ``OneHotEncoder`` (no dropped level: clustering wants every level);
* constant features: found on the assembled vector with ``Summarizer`` (min == max, which also
  catches one-hot levels that never occur) and cut out with ``VectorSlicer``.

Order: winsorize (on raw values) -> impute -> constant fill -> log1p -> one-hot.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from . import stable
from .spec import ImputeRule

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.ml.feature import SQLTransformer
    from pyspark.sql import DataFrame

log = logging.getLogger(__name__)

OHE_SUFFIX = "__ohe"
IDX_SUFFIX = "__idx"


def quote(col: str) -> str:
    """A column name quoted for Spark SQL."""
    return "`" + col.replace("`", "``") + "`"


def _num(value: float) -> str:
    if math.isnan(value) or math.isinf(value):
        raise ValueError(f"cannot use the non-finite value {value} in a cleaning rule")
    return f"CAST({float(value)!r} AS DOUBLE)"


def winsorize_bounds(
    df: DataFrame,
    cols: Sequence[str],
    lower: float,
    upper: float,
    relative_error: float = 0.001,
) -> dict[str, tuple[float, float]]:
    """The exact ``lower`` and ``upper`` quantiles of each column (:func:`.stable.exact_quantiles`).

    Exact, so the same on any layout; ``relative_error`` only sizes the work. Columns with no
    non-null value are left out.
    """
    quantiles = stable.exact_quantiles(df, [*cols], [lower, upper], relative_error)
    return {c: (q[0], q[1]) for c, q in quantiles.items()}


def select_stage(
    id_col: str,
    numeric: Sequence[str],
    categorical: Sequence[str],
    clip: Mapping[str, tuple[float, float]] | None = None,
) -> SQLTransformer:
    """Select the id and feature columns, cast numbers to double and strings, clip outliers."""
    from pyspark.ml.feature import SQLTransformer

    clip = clip or {}
    parts = [quote(id_col)]
    for col in numeric:
        expr = f"CAST({quote(col)} AS DOUBLE)"
        if col in clip:
            lo, hi = clip[col]
            # GREATEST/LEAST skip nulls: a missing value must stay missing for imputation
            expr = f"IF({expr} IS NULL, NULL, LEAST(GREATEST({expr}, {_num(lo)}), {_num(hi)}))"
        parts.append(f"{expr} AS {quote(col)}")
    parts += [f"CAST({quote(c)} AS STRING) AS {quote(c)}" for c in categorical]
    return SQLTransformer(statement=f"SELECT {', '.join(parts)} FROM __THIS__")


def resolve_impute_rules(
    numeric: Sequence[str], rules: Mapping[str, ImputeRule], default: ImputeRule
) -> dict[str, ImputeRule]:
    """The rule of each numeric column: the first matching pattern of ``rules``, else default."""
    import fnmatch

    out = {}
    for col in numeric:
        match = next((r for p, r in rules.items() if fnmatch.fnmatchcase(col, p)), default)
        out[col] = match
    return out


def impute_stages(
    per_column: Mapping[str, ImputeRule],
    df: DataFrame,
    key: Sequence[str],
    relative_error: float = 0.001,
) -> tuple[list[Any], dict[str, float]]:
    """Spark ``Imputer`` estimators for the ``mode`` columns, and the fill of every other column.

    Medians (exact, :func:`.stable.exact_quantiles`) and means (:func:`.stable.moments`, summed
    in the order of ``key``) are computed here from ``df`` and filled as constants, so they are
    the same on any layout; Spark's ``Imputer`` would merge its sketches and sums in the order
    its tasks finish. A column with no value at all is left to Spark's ``Imputer``, which says so.
    """
    from pyspark.ml.feature import Imputer

    constants: dict[str, float] = {}
    by_strategy: dict[str, list[str]] = {}
    for col, rule in per_column.items():
        if rule.strategy == "constant":
            assert rule.value is not None
            constants[col] = float(rule.value)
        else:
            by_strategy.setdefault(rule.strategy, []).append(col)
    medians = stable.exact_quantiles(df, by_strategy.get("median", []), [0.5], relative_error)
    means = stable.moments(df, by_strategy.get("mean", []), key)
    constants.update({c: q[0] for c, q in medians.items()})
    constants.update({c: m.mean for c, m in means.items()})
    left = {s: [c for c in cols if c not in constants] for s, cols in by_strategy.items()}
    stages: list[Any] = [
        Imputer(inputCols=cols, outputCols=cols, strategy=strategy, relativeError=relative_error)
        for strategy, cols in left.items()
        if cols
    ]
    return stages, constants


def fill_log_stage(
    id_col: str,
    numeric: Sequence[str],
    categorical: Sequence[str],
    constants: Mapping[str, float],
    log1p: Sequence[str],
) -> SQLTransformer:
    """Constant fills (``coalesce``) then ``log1p``, as one ``SQLTransformer``."""
    from pyspark.ml.feature import SQLTransformer

    parts = [quote(id_col)]
    for col in numeric:
        expr = quote(col)
        if col in constants:
            expr = f"COALESCE({expr}, {_num(constants[col])})"
        if col in log1p:
            expr = f"LOG1P({expr})"
        parts.append(f"{expr} AS {quote(col)}")
    parts += [quote(c) for c in categorical]
    return SQLTransformer(statement=f"SELECT {', '.join(parts)} FROM __THIS__")


def one_hot_stages(categorical: Sequence[str]) -> list[Any]:
    """``StringIndexer`` + ``OneHotEncoder`` for the categorical columns (``<col>__ohe``)."""
    from pyspark.ml.feature import OneHotEncoder, StringIndexer

    cols = list(categorical)
    if not cols:
        return []
    idx = [c + IDX_SUFFIX for c in cols]
    return [
        StringIndexer(
            inputCols=cols,
            outputCols=idx,
            handleInvalid="keep",  # nulls and unseen values -> an extra "__unknown" level
            stringOrderType="alphabetAsc",
        ),
        OneHotEncoder(inputCols=idx, outputCols=[c + OHE_SUFFIX for c in cols], dropLast=False),
    ]


def check_log1p_domain(df: DataFrame, cols: Sequence[str]) -> None:
    """``log1p`` needs values above -1: raise ``ValueError`` naming the column otherwise."""
    from pyspark.sql import functions as F

    cols = list(cols)
    if not cols:
        return
    row = df.agg(*[F.min(F.col(c)).alias(c) for c in cols]).first()
    assert row is not None
    bad = {c: row[c] for c in cols if row[c] is not None and row[c] <= -1.0}
    if bad:
        raise ValueError(
            f"clean.log1p: columns {sorted(bad)} have values <= -1 (minimum {bad}), where log1p "
            "is undefined; remove them from clean.log1p or add a bad_input range rule"
        )


def constant_slots(df: DataFrame, col: str) -> list[int]:
    """Indices of the vector column's constant slots (min == max), in one ``Summarizer`` pass."""
    from pyspark.ml.stat import Summarizer
    from pyspark.sql import functions as F

    row = df.select(Summarizer.metrics("min", "max").summary(F.col(col)).alias("s")).first()
    assert row is not None
    lo, hi = row["s"]["min"].toArray(), row["s"]["max"].toArray()
    return [i for i in range(len(lo)) if lo[i] == hi[i]]


def winsorize(
    df: DataFrame, cols: Sequence[str], lower: float, upper: float, relative_error: float = 0.001
) -> tuple[DataFrame, dict[str, tuple[float, float]]]:
    """Clip ``cols`` to their approximate ``[lower, upper]`` quantiles; other columns unchanged.

    Examples
    --------
    >>> clipped, bounds = winsorize(df, ["amount"], 0.01, 0.99)  # doctest: +SKIP
    """
    from pyspark.sql import functions as F

    bounds = winsorize_bounds(df, cols, lower, upper, relative_error)
    out = df
    for col, (lo, hi) in bounds.items():
        x = F.col(col).cast("double")
        out = out.withColumn(
            col, F.when(x.isNull(), x).otherwise(F.least(F.greatest(x, F.lit(lo)), F.lit(hi)))
        )
    return out, bounds
