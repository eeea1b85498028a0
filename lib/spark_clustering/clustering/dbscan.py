"""Exact, distributed DBSCAN as a Spark ML estimator."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from pyspark import keyword_only
from pyspark.ml import Estimator, Model
from pyspark.ml.param import Param, Params, TypeConverters
from pyspark.ml.util import (
    DefaultParamsReadable,
    DefaultParamsReader,
    DefaultParamsWritable,
    DefaultParamsWriter,
    MLReadable,
    MLReader,
    MLWritable,
    MLWriter,
)
from pyspark.sql import functions as F

from ..base import (
    BACKEND_CHOICES,
    check_choice,
    check_range,
    log_fit,
    resolve_backend,
)
from ..features.vectors import (
    Requirement,
    as_array,
    check_input,
    coordinate_names,
    feature_type,
    invalid_expr,
    transform_rows,
)
from ..params import (
    HANDLE_INVALID_CHOICES,
    HasBackend,
    HasFeaturesCol,
    HasHandleInvalid,
    HasPredictionCol,
    HasSeed,
)
from ..partitioning import Regions

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import DataFrame

    from ..backends.dbscan_spark import DistributedFit

log = logging.getLogger(__name__)

#: Above this many dimensions the grid kernel still answers exactly, but slowly.
FAST_DIMENSIONS = 10


class _DBSCANParams(HasFeaturesCol, HasPredictionCol, HasBackend, HasHandleInvalid, HasSeed):
    """Params of :class:`DBSCAN` and :class:`DBSCANModel`."""

    eps: Param[float] = Param(
        Params._dummy(),
        "eps",
        "neighbourhood radius: points at Euclidean distance <= eps are neighbours (> 0)",
        typeConverter=TypeConverters.toFloat,
    )
    minPoints: Param[int] = Param(
        Params._dummy(),
        "minPoints",
        "a point is core when its eps-neighbourhood, itself included, holds at least this "
        "many points (>= 1); scikit-learn's min_samples",
        typeConverter=TypeConverters.toInt,
    )
    isCoreCol: Param[str] = Param(
        Params._dummy(),
        "isCoreCol",
        "output column: true for core points",
        typeConverter=TypeConverters.toString,
    )
    maxPointsPerPartition: Param[int] = Param(
        Params._dummy(),
        "maxPointsPerPartition",
        "target number of points per spatial partition (>= 100); more points make more partitions",
        typeConverter=TypeConverters.toInt,
    )
    partitionSampleSize: Param[int] = Param(
        Params._dummy(),
        "partitionSampleSize",
        "rows sampled to the driver to draw the spatial partitions (100 to 1000000); the only "
        "rows that leave the executors",
        typeConverter=TypeConverters.toInt,
    )

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self._setDefault(
            eps=0.5,
            minPoints=5,
            predictionCol="cluster",
            isCoreCol="is_core",
            maxPointsPerPartition=250_000,
            partitionSampleSize=50_000,
            seed=0,
        )

    def getEps(self) -> float:
        """Gets the value of eps or its default value."""
        return self.getOrDefault(self.eps)

    def getMinPoints(self) -> int:
        """Gets the value of minPoints or its default value."""
        return self.getOrDefault(self.minPoints)

    def getIsCoreCol(self) -> str:
        """Gets the value of isCoreCol or its default value."""
        return self.getOrDefault(self.isCoreCol)

    def getMaxPointsPerPartition(self) -> int:
        """Gets the value of maxPointsPerPartition or its default value."""
        return self.getOrDefault(self.maxPointsPerPartition)

    def getPartitionSampleSize(self) -> int:
        """Gets the value of partitionSampleSize or its default value."""
        return self.getOrDefault(self.partitionSampleSize)

    def _validate_params(self) -> None:
        """Range and choice checks, each naming the Param, its value and what is accepted."""
        check_range("eps", self.getEps(), gt=0.0)
        if not np.isfinite(self.getEps()):
            raise ValueError(
                f"eps={self.getEps()!r} is out of range; accepted: a finite number > 0"
            )
        check_range("minPoints", self.getMinPoints(), ge=1)
        check_range("maxPointsPerPartition", self.getMaxPointsPerPartition(), ge=100)
        check_range("partitionSampleSize", self.getPartitionSampleSize(), ge=100, le=1_000_000)
        check_choice("backend", self.getBackend(), BACKEND_CHOICES)
        check_choice("handleInvalid", self.getHandleInvalid(), HANDLE_INVALID_CHOICES)
        if self.getPredictionCol() == self.getIsCoreCol():
            raise ValueError(
                f"predictionCol and isCoreCol are both {self.getPredictionCol()!r}; "
                "they must differ"
            )


class DBSCAN(Estimator, _DBSCANParams, DefaultParamsReadable, DefaultParamsWritable):
    """Exact DBSCAN, distributed over Spark executors by spatial partitioning.

    Core points, noise and the clusters of core points equal scikit-learn's
    ``DBSCAN(eps, min_samples=minPoints)`` (Euclidean, the point itself counted), on any number
    of partitions and any row order. A border point (non-core, within eps of a core point)
    joins the cluster of its closest core point, ties going to the smaller cluster id; the rest
    is noise, ``-1``. Cluster ids are ``0..k-1`` by decreasing number of core points, ties
    broken by the lexicographically smallest core point, so they do not depend on how the data
    is partitioned or ordered.

    The data crosses the shuffle once: each row goes, whole, to its spatial region (and as its
    coordinates to the regions within 2 eps), where the fit computes its label. Only
    ``partitionSampleSize`` sampled rows, one row per local cluster and one per group of
    boundary core points reach the driver. The labelled rows stay cached on the executors, so
    ``transform`` of the fitted DataFrame reads them back; the core points among them are the
    model. Every column travels through the executors' Python workers as Arrow, so each must
    be of a type Arrow carries (any but intervals).

    Examples
    --------
    >>> from pyspark.ml.linalg import Vectors
    >>> df = spark.createDataFrame(  # doctest: +SKIP
    ...     [(Vectors.dense([0.0, 0.0]),), (Vectors.dense([0.1, 0.0]),),
    ...      (Vectors.dense([5.0, 5.0]),)], ["features"])
    >>> model = DBSCAN(eps=0.3, minPoints=2).fit(df)  # doctest: +SKIP
    >>> sorted(r.cluster for r in model.transform(df).collect())  # doctest: +SKIP
    [-1, 0, 0]
    """

    _input_kwargs: dict[str, Any]

    @keyword_only
    def __init__(
        self,
        *,
        eps: float = 0.5,
        minPoints: int = 5,
        featuresCol: str = "features",
        predictionCol: str = "cluster",
        isCoreCol: str = "is_core",
        backend: str = "auto",
        handleInvalid: str = "error",
        maxPointsPerPartition: int = 250_000,
        partitionSampleSize: int = 50_000,
        seed: int = 0,
    ) -> None:
        super().__init__()
        kwargs = self._input_kwargs
        self.setParams(**kwargs)

    @keyword_only
    def setParams(
        self,
        *,
        eps: float = 0.5,
        minPoints: int = 5,
        featuresCol: str = "features",
        predictionCol: str = "cluster",
        isCoreCol: str = "is_core",
        backend: str = "auto",
        handleInvalid: str = "error",
        maxPointsPerPartition: int = 250_000,
        partitionSampleSize: int = 50_000,
        seed: int = 0,
    ) -> DBSCAN:
        """Sets params for DBSCAN."""
        kwargs = self._input_kwargs
        return self._set(**kwargs)

    def setEps(self, value: float) -> DBSCAN:
        return self._set(eps=value)

    def setMinPoints(self, value: int) -> DBSCAN:
        return self._set(minPoints=value)

    def setFeaturesCol(self, value: str) -> DBSCAN:
        return self._set(featuresCol=value)

    def setPredictionCol(self, value: str) -> DBSCAN:
        return self._set(predictionCol=value)

    def setIsCoreCol(self, value: str) -> DBSCAN:
        return self._set(isCoreCol=value)

    def setBackend(self, value: str) -> DBSCAN:
        return self._set(backend=value)

    def setHandleInvalid(self, value: str) -> DBSCAN:
        return self._set(handleInvalid=value)

    def setMaxPointsPerPartition(self, value: int) -> DBSCAN:
        return self._set(maxPointsPerPartition=value)

    def setPartitionSampleSize(self, value: int) -> DBSCAN:
        return self._set(partitionSampleSize=value)

    def setSeed(self, value: int) -> DBSCAN:
        return self._set(seed=value)

    def _fit(self, dataset: DataFrame) -> DBSCANModel:
        from ..backends.dbscan_spark import fit_distributed

        self._validate_params()
        col = self.getFeaturesCol()
        feature_type(dataset, col)
        backend = resolve_backend("dbscan", self.getBackend(), dataset.sparkSession)
        # no rows is a valid input: the model has no clusters and labels every row noise
        checked = check_input(dataset, col, self.getHandleInvalid(), Requirement(min_rows=0))
        d, valid, n_valid = checked.dimension, checked.data, checked.n_valid
        if d is None or n_valid == 0:
            model = DBSCANModel._empty(d or 0)
        else:
            if d > FAST_DIMENSIONS:
                log.warning(
                    "DBSCAN on %d dimensions: results stay exact but the grid search slows "
                    "down past %d; reduce dimensions first (UMAP or PCA)",
                    d,
                    FAST_DIMENSIONS,
                )
            xcols = coordinate_names(d)
            arr = as_array(valid, col)
            rows = valid.select("*", *[arr[i].alias(c) for i, c in enumerate(xcols)])
            fitted = fit_distributed(
                rows,
                xcols,
                n_valid,
                self.getEps(),
                self.getMinPoints(),
                backend,
                self.getMaxPointsPerPartition(),
                self.getPartitionSampleSize(),
                self.getSeed(),
            )
            model = DBSCANModel._from_fit(
                d,
                fitted,
                _FittedRows(dataset, col, fitted.rows, checked.stats.n_invalid, fitted.cached),
            )
        self._copyValues(model)
        model._backend_used = backend
        log_fit(self)
        return model


@dataclass(frozen=True)
class _FittedRows:
    """The fit's own DataFrame and its labelled rows: ``transform`` of that DataFrame is a
    lookup of the rows, not a second pass over the data."""

    source: DataFrame  # the DataFrame given to fit
    features_col: str
    rows: DataFrame  # its valid rows' columns + CLUSTER + IS_CORE, cached
    n_invalid: int  # rows the fit left out (handleInvalid 'skip' or 'keep')
    cached: DataFrame  # the persisted pass that ``rows`` reads


class DBSCANModel(Model, _DBSCANParams, MLReadable, MLWritable):
    """A fitted DBSCAN: the core points with their cluster ids, kept distributed.

    ``transform`` adds ``predictionCol`` (int, ``-1`` = noise) and ``isCoreCol`` (bool). On the
    training data it returns exactly the fitted labels: the fit labelled those rows in its one
    pass and keeps them cached, so transforming the DataFrame given to ``fit`` (the same query
    plan, see ``DataFrame.sameSemantics``) reads them back. A new row takes the cluster of its
    closest core point within eps (ties to the smaller id), or ``-1``, and is core when it
    coincides with a core point. That is how a scheduled job places new customers into the
    segments found earlier. A loaded model labels every DataFrame that way.
    """

    def __init__(self) -> None:
        super().__init__()
        self._dimension = 0
        self._loaded_cores: DataFrame | None = None
        self._fitted: _FittedRows | None = None
        self._regions: Regions | None = None
        self._cluster_sizes: list[int] = []
        self._backend_used = "cpu"

    @classmethod
    def _from_fit(cls, d: int, fit: DistributedFit, fitted: _FittedRows) -> DBSCANModel:
        model = cls()
        model._dimension = d
        model._fitted = fitted
        model._regions = fit.regions
        model._cluster_sizes = list(fit.cluster_sizes)
        return model

    @classmethod
    def _empty(cls, d: int) -> DBSCANModel:
        model = cls()
        model._dimension = d
        return model

    def _core_table(self) -> DataFrame | None:
        """The core points: coordinate columns + ``cluster``."""
        from ..backends.dbscan_spark import CLUSTER, IS_CORE

        if self._loaded_cores is not None:
            return self._loaded_cores
        if self._fitted is None:
            return None
        rows = self._fitted.rows.where(F.col(IS_CORE))
        arr = as_array(rows, self._fitted.features_col)
        xcols = coordinate_names(self._dimension)
        return rows.select(
            *[arr[i].alias(c) for i, c in enumerate(xcols)], F.col(CLUSTER).alias("cluster")
        )

    @property
    def dimension(self) -> int:
        """Number of features the model was fitted on (0 when fitted on no rows)."""
        return self._dimension

    @property
    def numClusters(self) -> int:
        """Number of clusters found."""
        return len(self._cluster_sizes)

    @property
    def clusterSizes(self) -> list[int]:
        """Number of core points in each cluster, by cluster id."""
        return list(self._cluster_sizes)

    @property
    def coreCount(self) -> int:
        """Number of core points."""
        return int(sum(self._cluster_sizes))

    @property
    def corePoints(self) -> DataFrame | None:
        """The core points as a DataFrame of ``features`` (vector) and ``cluster``."""
        cores = self._core_table()
        if cores is None:
            return None
        from pyspark.ml.functions import array_to_vector

        xcols = coordinate_names(self._dimension)
        return cores.select(array_to_vector(F.array(*xcols)).alias("features"), F.col("cluster"))

    def setFeaturesCol(self, value: str) -> DBSCANModel:
        return self._set(featuresCol=value)

    def setPredictionCol(self, value: str) -> DBSCANModel:
        return self._set(predictionCol=value)

    def setIsCoreCol(self, value: str) -> DBSCANModel:
        return self._set(isCoreCol=value)

    def setHandleInvalid(self, value: str) -> DBSCANModel:
        return self._set(handleInvalid=value)

    def setBackend(self, value: str) -> DBSCANModel:
        return self._set(backend=value)

    def _transform(self, dataset: DataFrame) -> DataFrame:
        from ..backends.dbscan_spark import CLUSTER, IS_CORE, label_distributed

        col, pred, core_col = self.getFeaturesCol(), self.getPredictionCol(), self.getIsCoreCol()
        feature_type(dataset, col)
        for out in (pred, core_col):
            if out in dataset.columns:
                raise ValueError(f"output column {out!r} already exists in the DataFrame")
        d = self._dimension
        handle = self.getHandleInvalid()
        result = [F.col(CLUSTER).alias(pred), F.col(IS_CORE).alias(core_col)]
        fitted = self._fitted
        if (
            fitted is not None
            and fitted.features_col == col
            and (fitted.n_invalid == 0 or handle != "error")
            and dataset.sameSemantics(fitted.source)
        ):
            labelled = fitted.rows
            if fitted.n_invalid and handle == "keep":
                labelled = labelled.unionByName(
                    _as_noise(dataset, invalid_expr(as_array(dataset, col)))
                )
            return labelled.select(*[F.col(c) for c in dataset.columns], *result)

        df, bad = transform_rows(dataset, col, d, handle)
        cores = self._core_table()
        if cores is None or self._regions is None or not self._cluster_sizes:
            return df.withColumn(pred, F.lit(-1)).withColumn(core_col, F.lit(False))
        xcols = coordinate_names(d)
        arr = as_array(dataset, col)
        backend = resolve_backend("dbscan", self.getBackend(), dataset.sparkSession)
        valid = df.where(~bad).select("*", *[arr[i].alias(c) for i, c in enumerate(xcols)])
        labelled = label_distributed(valid, xcols, cores, self._regions, self.getEps(), backend)
        if handle == "keep":
            labelled = labelled.unionByName(_as_noise(df, bad))
        return labelled.select(*[F.col(c) for c in dataset.columns], *result)

    def unpersist(self) -> DBSCANModel:
        """Free the labelled rows of the fit that this model keeps cached (see the class
        docstring); the core points a saved model holds stay as they are. For a model you are
        done with, such as a losing candidate of a search: each fit's cache holds a copy of its
        rows, so a search that keeps them fills the executors' memory and disks."""
        if self._fitted is not None:
            self._fitted.cached.unpersist()
        return self

    def copy(self, extra: dict | None = None) -> DBSCANModel:
        that = super().copy(extra)
        that._dimension = self._dimension
        that._loaded_cores = self._loaded_cores
        that._fitted = self._fitted
        that._regions = self._regions
        that._cluster_sizes = list(self._cluster_sizes)
        return that

    def write(self) -> MLWriter:
        return _DBSCANModelWriter(self)

    @classmethod
    def read(cls) -> MLReader:
        return _DBSCANModelReader(cls)


class _DBSCANModelWriter(MLWriter):
    """Params as Spark ML metadata; core points and regions as Parquet under ``path/data``."""

    def __init__(self, instance: DBSCANModel) -> None:
        super().__init__()
        self.instance = instance

    def saveImpl(self, path: str) -> None:
        m = self.instance
        DefaultParamsWriter.saveMetadata(
            m,
            path,
            self.sparkSession.sparkContext,
            extraMetadata={"dimension": m._dimension, "clusterSizes": m._cluster_sizes},
        )
        cores = m._core_table()
        if cores is not None and m._regions is not None:
            cores.write.parquet(f"{path}/data/cores")
            self.sparkSession.createDataFrame(
                m._regions.to_rows(), "region int, lo array<double>, hi array<double>"
            ).coalesce(1).write.parquet(f"{path}/data/regions")


class _DBSCANModelReader(MLReader):
    def __init__(self, cls: type[DBSCANModel]) -> None:
        super().__init__()
        self.cls = cls

    def load(self, path: str) -> DBSCANModel:
        sc = self.sparkSession.sparkContext
        metadata = DefaultParamsReader.loadMetadata(path, sc)
        model = self.cls()
        DefaultParamsReader.getAndSetParams(model, metadata)
        model._dimension = int(metadata["dimension"])
        model._cluster_sizes = [int(s) for s in metadata["clusterSizes"]]
        if model._cluster_sizes:
            model._loaded_cores = self.sparkSession.read.parquet(f"{path}/data/cores")
            rows = [
                (r["region"], list(r["lo"]), list(r["hi"]))
                for r in self.sparkSession.read.parquet(f"{path}/data/regions").collect()
            ]
            model._regions = Regions.from_rows(rows, model._dimension)
        return model


def _as_noise(df: DataFrame, rows: Any) -> DataFrame:
    """The rows of ``df`` where ``rows`` is true, labelled noise and not core."""
    from ..backends.dbscan_spark import CLUSTER, IS_CORE

    return df.where(rows).select(
        "*", F.lit(-1).cast("int").alias(CLUSTER), F.lit(False).alias(IS_CORE)
    )
