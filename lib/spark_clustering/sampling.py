"""Random draws that do not depend on how rows are laid out in partitions.

Spark's ``rand(seed)`` seeds one generator per partition (``seed + partition index``) and draws
in row order, so the rows a sample keeps change with the number of partitions, the input files,
the cluster and the row order: the same data and seed once gave 63 clusters on ``local[*]`` and
64 on a two-worker cluster. Every sample in this package is instead a function of the seed and
the row's own content (or id): a 53-bit slice of ``xxhash64(seed, name, columns)``. The same rows
are drawn on ``local[1]``, ``local[2]`` or a cluster, from 1 or 7 partitions in any order.

Rows with identical content get identical draws; a sample then keeps all or none of them, which
is harmless for the samples here (identical points carry identical information).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, cast

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd
    from pyspark.sql import Column, DataFrame

#: 2**53: the draws are 53-bit integers scaled into (0, 1), exactly representable as doubles
_SCALE = float(2**53)


def uniform(seed: int, name: str, *cols: Column | str) -> Column:
    """A deterministic uniform draw in (0, 1): 53 bits of ``xxhash64(seed, name, cols)``.

    ``name`` separates independent draws of the same rows (two samples with one seed). Vector
    columns hash as they are stored (a dense and a sparse copy of one vector differ).
    """
    from pyspark.sql import functions as F

    if not cols:
        raise ValueError("uniform needs at least one column to hash (the row's id or content)")
    bits = F.shiftrightunsigned(F.xxhash64(F.lit(int(seed)), F.lit(name), *cols), 11)
    return (bits.cast("double") + 0.5) / _SCALE


def smallest(
    df: DataFrame, key: Column, n: int, cols: list[str], n_rows: int | None = None
) -> pd.DataFrame:
    """``cols`` of the ``n`` rows of ``df`` with the smallest ``key`` (a :func:`uniform` draw),
    ties broken by ``cols``: the rows ``df.orderBy(key, *cols).limit(n)`` gives, as pandas.

    With the row count ``n_rows`` known (a fit's input scan has it), one map-only pass keeps
    the rows whose draw is below a threshold that about ``n + 6 sqrt(n)`` of them pass, and
    the driver keeps the ``n`` smallest of those: no sort of the data and no single-task merge
    of every partition's top ``n``, which cost three times as much. Should fewer than ``n`` pass
    (about once in a billion), the sorted query answers instead, so the result is always the
    same rows.
    """
    from pyspark.sql import functions as F

    if n_rows is not None and n_rows > n:
        threshold = (n + 6.0 * math.sqrt(n) + 50.0) / n_rows
        if threshold < 1.0:
            drawn = df.select(key.alias("__draw"), *cols).where(F.col("__draw") < threshold)
            got = cast("pd.DataFrame", drawn.toPandas())
            if len(got) >= n:
                ordered = got.sort_values(["__draw", *cols], kind="stable")
                return ordered.head(n)[cols].reset_index(drop=True)
    return cast("pd.DataFrame", df.orderBy(key, *cols).limit(n).select(*cols).toPandas())


def single(col: Column | str) -> Column:
    """A double column rounded to single precision, for hashing a row's coordinates.

    Upstream aggregates (a scaler's means, a reduction) can move the last bits of a double
    between layouts, since Spark merges partial sums in the order they arrive; a hash of the
    raw doubles would then draw another sample. Rounded to 24 bits, a coordinate changes only
    when it sits within one double ulp of a float boundary (about 1 in 5e8 values).
    """
    from pyspark.sql import functions as F

    return (F.col(col) if isinstance(col, str) else col).cast("float")


def single_array(col: Column | str) -> Column:
    """:func:`single` for every element of an ``array<double>`` column."""
    from pyspark.sql import functions as F

    return F.transform(F.col(col) if isinstance(col, str) else col, lambda v: v.cast("float"))


def normal(seed: int, name: str, *cols: Column | str) -> Column:
    """A deterministic standard normal draw (Box-Muller on two hashed uniforms)."""
    from pyspark.sql import functions as F

    u1 = uniform(seed, name + ".1", *cols)
    u2 = uniform(seed, name + ".2", *cols)
    return F.sqrt(-2.0 * F.log(u1)) * F.cos(2.0 * math.pi * u2)


#: rows per partition of :func:`canonical_layout`: a function of the data alone, so that the
#: layout (and MLlib's seeded initialisations on it) is the same on every cluster
ROWS_PER_PARTITION = 50_000


def _hashable(df: DataFrame, col: str) -> Column:
    """``col`` as hashed for a layout: doubles and vectors at single precision (:func:`single`),
    so that a reduction's last-bit noise (PCA's and UMAP's sums) leaves the layout unchanged."""
    from pyspark.ml.functions import vector_to_array
    from pyspark.ml.linalg import VectorUDT
    from pyspark.sql import functions as F
    from pyspark.sql.types import ArrayType, DoubleType, FloatType

    kind = df.schema[col].dataType
    if isinstance(kind, VectorUDT):
        return single_array(vector_to_array(F.col(col)))
    if isinstance(kind, ArrayType) and isinstance(kind.elementType, (DoubleType, FloatType)):
        return single_array(col)
    if isinstance(kind, DoubleType):
        return single(col)
    return F.col(col)


def canonical_layout(df: DataFrame, cols: list[str], n_rows: int | None = None) -> DataFrame:
    """The rows of ``df`` in partitions and an order that depend only on their content.

    MLlib's KMeans (k-means||) and GaussianMixture draw their initial centres with per-partition
    generators seeded by the partition index, so their result follows the input's layout: the
    number of files, the cluster, the row order. Here the rows are hash-partitioned into
    ``ceil(n_rows / ROWS_PER_PARTITION)`` partitions by a hash of ``cols`` (doubles and vectors at
    single precision) and sorted within each by two such hashes: a fixed seed then gives the
    same model everywhere, also when an upstream reduction moved the last bits of the features.
    It costs one shuffle of ``cols``.
    """
    from pyspark.sql import functions as F

    n = df.count() if n_rows is None else n_rows
    parts = max(1, math.ceil(n / ROWS_PER_PARTITION))
    hashed = [_hashable(df, c) for c in cols]
    keyed = df.withColumn("__layout1", F.xxhash64(F.lit("layout.1"), *hashed)).withColumn(
        "__layout2", F.xxhash64(F.lit("layout.2"), *hashed)
    )
    return (
        keyed.repartition(parts, "__layout1")
        .sortWithinPartitions("__layout1", "__layout2")
        .drop("__layout1", "__layout2")
    )
