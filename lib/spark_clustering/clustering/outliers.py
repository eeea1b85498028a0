"""Flag rows far from their cluster: beyond a quantile of that cluster's distances.

The transaction-pattern use case: points that truly belong to a cluster sit close to its centre,
while unusual ones have a much larger ``distance_to_cluster`` than the rest of their cluster. A
single global cut would flag whole loose clusters, so the threshold is per cluster: the chosen
quantile of the distances of that cluster's rows (Spark's ``percentile_approx``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..base import check_range

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import DataFrame

__all__ = ["cluster_distance_thresholds", "flag_outliers"]


def cluster_distance_thresholds(
    df: DataFrame,
    quantile: float,
    *,
    clusterCol: str = "cluster",
    distanceCol: str = "distance",
    accuracy: int = 10000,
) -> dict[int, float]:
    """Per cluster, the ``quantile`` of the distances to its centre.

    Parameters
    ----------
    df : DataFrame
        Rows scored by a clustering model (cluster id and distance columns).
    quantile : float
        In (0, 1): 0.99 flags roughly the farthest 1 % of each cluster.
    clusterCol, distanceCol : str
        Column names (the defaults match :class:`~spark_clustering.KMeansModel`).
    accuracy : int
        ``percentile_approx`` accuracy; the relative error is ``1 / accuracy``.

    Returns
    -------
    dict
        ``{cluster id: distance threshold}``; a cluster absent from ``df`` has no entry.

    Examples
    --------
    >>> thresholds = cluster_distance_thresholds(scored, 0.99)  # doctest: +SKIP
    """
    from pyspark.sql import functions as F

    check_range("outlierQuantile", quantile, gt=0.0, le=1.0)
    for col in (clusterCol, distanceCol):
        if col not in df.columns:
            raise ValueError(f"column {col!r} is not in the DataFrame; columns: {df.columns}")
    rows = (
        df.where(F.col(distanceCol).isNotNull() & F.col(clusterCol).isNotNull())
        .groupBy(clusterCol)
        .agg(F.percentile_approx(distanceCol, float(quantile), accuracy).alias("t"))
        .collect()
    )
    return {int(r[clusterCol]): float(r["t"]) for r in rows}


def flag_outliers(
    df: DataFrame,
    thresholds: dict[int, float],
    *,
    clusterCol: str = "cluster",
    distanceCol: str = "distance",
    outputCol: str = "outlier",
) -> DataFrame:
    """Add a boolean ``outputCol``: distance strictly above its cluster's threshold.

    Rows of a cluster without a threshold, or with a null distance, get null: unknown, not
    "normal".
    """
    from pyspark.sql import functions as F

    if not thresholds:
        return df.withColumn(outputCol, F.lit(None).cast("boolean"))
    pairs = [x for c, t in sorted(thresholds.items()) for x in (F.lit(int(c)), F.lit(float(t)))]
    limit = F.create_map(*pairs)[F.col(clusterCol).cast("int")]  # null when absent
    return df.withColumn(outputCol, F.col(distanceCol) > limit)


def fitted_thresholds(
    scored: DataFrame, quantile: float, clusterCol: str, distanceCol: str
) -> dict[int, float]:
    """Thresholds learnt on the training rows scored by the model being fitted."""
    return cluster_distance_thresholds(
        scored, quantile, clusterCol=clusterCol, distanceCol=distanceCol
    )
