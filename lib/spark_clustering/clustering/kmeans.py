"""KMeans: MLlib's k-means|| by default, SageMaker's built-in KMeans with ``backend='sagemaker'``.

Both backends give the same output: the closest cluster (``predictionCol``, int) and the Euclidean
distance to its centre (``distanceCol``, double), which is what SageMaker's endpoint answers as
``closest_cluster`` / ``distance_to_cluster``. With ``outlierQuantile`` set, the model also keeps
per-cluster distance thresholds learnt on the training data and flags rows beyond them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from pyspark import keyword_only
from pyspark.ml import Estimator, Model
from pyspark.ml.param import Param, Params, TypeConverters
from pyspark.ml.util import (
    DefaultParamsReadable,
    DefaultParamsWritable,
    MLReadable,
    MLWritable,
)

from ..base import check_choice, check_range, log_fit
from ..features.vectors import Requirement, as_array, check_input, feature_type, transform_rows
from ..params import (
    HANDLE_INVALID_CHOICES,
    HasFeaturesCol,
    HasHandleInvalid,
    HasPredictionCol,
    HasSeed,
)
from ..sampling import canonical_layout
from ._common import (
    ArraysReader,
    ArraysWriter,
    HasSparkOrSageMakerBackend,
    vector_features,
)
from .outliers import fitted_thresholds, flag_outliers

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import Column, DataFrame

__all__ = ["KMeans", "KMeansModel"]

INIT_MODES = ("k-means||", "random")
EVAL_METRICS = ("msd", "ssd")


class _KMeansParams(
    HasFeaturesCol, HasPredictionCol, HasSeed, HasHandleInvalid, HasSparkOrSageMakerBackend
):
    """Params shared by :class:`KMeans` and :class:`KMeansModel`."""

    k: Param[int] = Param(
        Params._dummy(), "k", "number of clusters, >= 2", typeConverter=TypeConverters.toInt
    )
    distanceCol: Param[str] = Param(
        Params._dummy(),
        "distanceCol",
        "output column: Euclidean distance to the closest centre (SageMaker's distance_to_cluster)",
        typeConverter=TypeConverters.toString,
    )
    maxIter: Param[int] = Param(
        Params._dummy(),
        "maxIter",
        "maximum Lloyd iterations, >= 1 (SageMaker: local_lloyd_max_iter)",
        typeConverter=TypeConverters.toInt,
    )
    tol: Param[float] = Param(
        Params._dummy(),
        "tol",
        "convergence tolerance, >= 0 (SageMaker: local_lloyd_tol, at most 1)",
        typeConverter=TypeConverters.toFloat,
    )
    initMode: Param[str] = Param(
        Params._dummy(),
        "initMode",
        "centre initialisation: 'k-means||' (k-means++ on SageMaker) or 'random'",
        typeConverter=TypeConverters.toString,
    )
    initSteps: Param[int] = Param(
        Params._dummy(),
        "initSteps",
        "k-means|| steps, >= 1 (Spark backend only)",
        typeConverter=TypeConverters.toInt,
    )
    outlierQuantile: Param[float] = Param(
        Params._dummy(),
        "outlierQuantile",
        "when set, in (0, 1]: fit learns, per cluster, this quantile of the training rows' "
        "distances, and transform flags rows farther than it in outlierCol",
        typeConverter=TypeConverters.toFloat,
    )
    outlierCol: Param[str] = Param(
        Params._dummy(),
        "outlierCol",
        "output column for the outlier flag (only with outlierQuantile)",
        typeConverter=TypeConverters.toString,
    )
    # SageMaker-only hyperparameters (see backends/sagemaker/hyperparameters.py for the names).
    featureDim: Param[int] = Param(
        Params._dummy(),
        "featureDim",
        "number of features; when set it must match the data (SageMaker backend)",
        typeConverter=TypeConverters.toInt,
    )
    miniBatchSize: Param[int] = Param(
        Params._dummy(),
        "miniBatchSize",
        "rows per mini-batch, >= 1 (SageMaker backend)",
        typeConverter=TypeConverters.toInt,
    )
    extraCenterFactor: Param[str] = Param(
        Params._dummy(),
        "extraCenterFactor",
        "'auto' or an integer >= 1: extra centres kept before the final reduction to k "
        "(SageMaker backend)",
        typeConverter=TypeConverters.toString,
    )
    epochs: Param[int] = Param(
        Params._dummy(),
        "epochs",
        "passes over the training data, >= 1 (SageMaker backend)",
        typeConverter=TypeConverters.toInt,
    )
    evalMetrics: Param[str] = Param(
        Params._dummy(),
        "evalMetrics",
        "comma-separated metrics reported on the test channel: msd, ssd (SageMaker backend)",
        typeConverter=TypeConverters.toString,
    )

    def __init__(self) -> None:
        super().__init__()
        self._setDefault(
            k=2,
            maxIter=20,
            tol=1e-4,
            initMode="k-means||",
            initSteps=2,
            predictionCol="cluster",
            distanceCol="distance",
            outlierCol="outlier",
            backend="spark",
        )

    def getK(self) -> int:
        """Gets the value of k or its default value."""
        return self.getOrDefault(self.k)

    def getDistanceCol(self) -> str:
        """Gets the value of distanceCol or its default value."""
        return self.getOrDefault(self.distanceCol)

    def getMaxIter(self) -> int:
        """Gets the value of maxIter or its default value."""
        return self.getOrDefault(self.maxIter)

    def getTol(self) -> float:
        """Gets the value of tol or its default value."""
        return self.getOrDefault(self.tol)

    def getInitMode(self) -> str:
        """Gets the value of initMode or its default value."""
        return self.getOrDefault(self.initMode)

    def getInitSteps(self) -> int:
        """Gets the value of initSteps or its default value."""
        return self.getOrDefault(self.initSteps)

    def getOutlierQuantile(self) -> float | None:
        """Gets the value of outlierQuantile, or None when unset."""
        return self._opt(self.outlierQuantile)

    def getOutlierCol(self) -> str:
        """Gets the value of outlierCol or its default value."""
        return self.getOrDefault(self.outlierCol)

    def getFeatureDim(self) -> int | None:
        """Gets the value of featureDim, or None when unset (taken from the data)."""
        return self._opt(self.featureDim)

    def getMiniBatchSize(self) -> int | None:
        """Gets the value of miniBatchSize, or None when unset (SageMaker's default)."""
        return self._opt(self.miniBatchSize)

    def getExtraCenterFactor(self) -> str | None:
        """Gets the value of extraCenterFactor, or None when unset (SageMaker's default)."""
        return self._opt(self.extraCenterFactor)

    def getEpochs(self) -> int | None:
        """Gets the value of epochs, or None when unset (SageMaker's default)."""
        return self._opt(self.epochs)

    def getEvalMetrics(self) -> str | None:
        """Gets the value of evalMetrics, or None when unset (SageMaker's default)."""
        return self._opt(self.evalMetrics)

    def _validate_params(self) -> None:
        """Range and cross-parameter checks, before any work or resource is created."""
        self.resolvedBackend()
        check_choice("handleInvalid", self.getHandleInvalid(), HANDLE_INVALID_CHOICES)
        check_range("k", self.getK(), ge=2)
        check_range("maxIter", self.getMaxIter(), ge=1)
        check_range("tol", self.getTol(), ge=0.0)
        check_choice("initMode", self.getInitMode(), INIT_MODES)
        check_range("initSteps", self.getInitSteps(), ge=1)
        optional: dict[str, tuple[float | None, dict[str, float]]] = {
            "outlierQuantile": (self.getOutlierQuantile(), {"gt": 0.0, "le": 1.0}),
            "featureDim": (self.getFeatureDim(), {"ge": 1}),
            "miniBatchSize": (self.getMiniBatchSize(), {"ge": 1}),
            "epochs": (self.getEpochs(), {"ge": 1}),
        }
        for name, (value, bounds) in optional.items():
            if value is not None:
                check_range(name, value, **bounds)
        factor = self.getExtraCenterFactor()
        if factor is not None and factor != "auto" and not (factor.isdigit() and int(factor) >= 1):
            raise ValueError(
                f"extraCenterFactor={factor!r} is not valid; accepted: 'auto' or an integer >= 1"
            )
        metrics = self.getEvalMetrics()
        if metrics is not None:
            for token in metrics.split(","):
                check_choice("evalMetrics", token.strip(), EVAL_METRICS)
        if self.resolvedBackend() == "sagemaker":
            check_range("tol", self.getTol(), ge=0.0, le=1.0)


class KMeans(_KMeansParams, Estimator, DefaultParamsReadable, DefaultParamsWritable):
    """K-means clustering on Spark MLlib (k-means||) or on SageMaker's built-in KMeans.

    Parameters
    ----------
    k : int
        Number of clusters (>= 2).
    featuresCol : str
        A Spark ML vector or an array of numbers.
    predictionCol, distanceCol : str
        Output columns: the closest cluster and the distance to its centre.
    seed, maxIter, tol, initMode, initSteps
        As MLlib's KMeans (``initMode`` 'k-means||' maps to SageMaker's 'kmeans++').
    outlierQuantile, outlierCol
        Optional per-cluster distance threshold learnt at fit, flagged at transform.
    handleInvalid : {'error', 'skip', 'keep'}
        Rows with null, NaN or infinite features (and, at transform, rows of another dimension
        than the centres'): fail (the default), drop them, or keep them with a null cluster and
        distance. A fit always uses the valid rows only.
    backend : {'spark', 'sagemaker'}
        ``sagemaker`` trains with sagemaker-pyspark's ``KMeansSageMakerEstimator`` and scores
        through an endpoint or a batch transform job (see ``setSageMakerConfig`` and
        docs/sagemaker.md); the output columns are the same.
    featureDim, miniBatchSize, extraCenterFactor, epochs, evalMetrics
        SageMaker hyperparameters (ignored by the Spark backend).

    Examples
    --------
    >>> from pyspark.ml.linalg import Vectors
    >>> df = spark.createDataFrame(  # doctest: +SKIP
    ...     [(Vectors.dense([0.0, 0.0]),), (Vectors.dense([9.0, 9.0]),)], ["features"])
    >>> model = KMeans(k=2, seed=1).fit(df)  # doctest: +SKIP
    >>> model.transform(df).columns  # doctest: +SKIP
    ['features', 'cluster', 'distance']
    """

    _input_kwargs: dict[str, Any]

    @keyword_only
    def __init__(
        self,
        *,
        k: int = 2,
        featuresCol: str = "features",
        predictionCol: str = "cluster",
        distanceCol: str = "distance",
        seed: int | None = None,
        maxIter: int = 20,
        tol: float = 1e-4,
        initMode: str = "k-means||",
        initSteps: int = 2,
        outlierQuantile: float | None = None,
        outlierCol: str = "outlier",
        handleInvalid: str = "error",
        backend: str = "spark",
        featureDim: int | None = None,
        miniBatchSize: int | None = None,
        extraCenterFactor: str | None = None,
        epochs: int | None = None,
        evalMetrics: str | None = None,
    ) -> None:
        super().__init__()
        kwargs = self._input_kwargs
        self.setParams(**kwargs)

    @keyword_only
    def setParams(
        self,
        *,
        k: int = 2,
        featuresCol: str = "features",
        predictionCol: str = "cluster",
        distanceCol: str = "distance",
        seed: int | None = None,
        maxIter: int = 20,
        tol: float = 1e-4,
        initMode: str = "k-means||",
        initSteps: int = 2,
        outlierQuantile: float | None = None,
        outlierCol: str = "outlier",
        handleInvalid: str = "error",
        backend: str = "spark",
        featureDim: int | None = None,
        miniBatchSize: int | None = None,
        extraCenterFactor: str | None = None,
        epochs: int | None = None,
        evalMetrics: str | None = None,
    ) -> KMeans:
        """Sets params for KMeans (None leaves a Param unset)."""
        kwargs = {key: v for key, v in self._input_kwargs.items() if v is not None}
        return self._set(**kwargs)

    def setK(self, value: int) -> KMeans:
        """Sets the value of :py:attr:`k`."""
        return self._set(k=value)

    def setFeaturesCol(self, value: str) -> KMeans:
        """Sets the value of :py:attr:`featuresCol`."""
        return self._set(featuresCol=value)

    def setPredictionCol(self, value: str) -> KMeans:
        """Sets the value of :py:attr:`predictionCol`."""
        return self._set(predictionCol=value)

    def setDistanceCol(self, value: str) -> KMeans:
        """Sets the value of :py:attr:`distanceCol`."""
        return self._set(distanceCol=value)

    def setSeed(self, value: int) -> KMeans:
        """Sets the value of :py:attr:`seed`."""
        return self._set(seed=value)

    def setMaxIter(self, value: int) -> KMeans:
        """Sets the value of :py:attr:`maxIter`."""
        return self._set(maxIter=value)

    def setTol(self, value: float) -> KMeans:
        """Sets the value of :py:attr:`tol`."""
        return self._set(tol=value)

    def setInitMode(self, value: str) -> KMeans:
        """Sets the value of :py:attr:`initMode`."""
        return self._set(initMode=value)

    def setInitSteps(self, value: int) -> KMeans:
        """Sets the value of :py:attr:`initSteps`."""
        return self._set(initSteps=value)

    def setOutlierQuantile(self, value: float) -> KMeans:
        """Sets the value of :py:attr:`outlierQuantile`."""
        return self._set(outlierQuantile=value)

    def setOutlierCol(self, value: str) -> KMeans:
        """Sets the value of :py:attr:`outlierCol`."""
        return self._set(outlierCol=value)

    def setHandleInvalid(self, value: str) -> KMeans:
        """Sets the value of :py:attr:`handleInvalid`."""
        return self._set(handleInvalid=value)

    def setBackend(self, value: str) -> KMeans:
        """Sets the value of :py:attr:`backend`."""
        return self._set(backend=value)

    def setFeatureDim(self, value: int) -> KMeans:
        """Sets the value of :py:attr:`featureDim`."""
        return self._set(featureDim=value)

    def setMiniBatchSize(self, value: int) -> KMeans:
        """Sets the value of :py:attr:`miniBatchSize`."""
        return self._set(miniBatchSize=value)

    def setExtraCenterFactor(self, value: str | int) -> KMeans:
        """Sets the value of :py:attr:`extraCenterFactor` ('auto' or an integer)."""
        return self._set(extraCenterFactor=str(value))

    def setEpochs(self, value: int) -> KMeans:
        """Sets the value of :py:attr:`epochs`."""
        return self._set(epochs=value)

    def setEvalMetrics(self, value: str) -> KMeans:
        """Sets the value of :py:attr:`evalMetrics`."""
        return self._set(evalMetrics=value)

    def _fit(self, dataset: DataFrame) -> KMeansModel:
        self._validate_params()
        k = self.getK()
        checked = check_input(
            dataset, self.getFeaturesCol(), self.getHandleInvalid(), Requirement(k, "k", k)
        )
        valid = checked.data
        fit = _FITTERS[self.resolvedBackend()]
        model = fit(self, valid, checked.n_valid)
        quantile = self.getOutlierQuantile()
        if quantile is not None:
            model._thresholds = fitted_thresholds(
                model.transform(valid), quantile, self.getPredictionCol(), self.getDistanceCol()
            )
        log_fit(self)
        return model


def _fit_spark(est: KMeans, dataset: DataFrame, n_rows: int) -> KMeansModel:
    """MLlib's KMeans (k-means||), then our model with the same centres."""
    from pyspark.ml.clustering import KMeans as MLlibKMeans

    col = est.getFeaturesCol()
    mllib = MLlibKMeans(
        featuresCol=col,
        k=est.getK(),
        maxIter=est.getMaxIter(),
        tol=est.getTol(),
        initMode=est.getInitMode(),
        initSteps=est.getInitSteps(),
    )
    if est.isDefined(est.seed):
        mllib.setSeed(est.getOrDefault(est.seed))
    # k-means|| seeds by partition index: fit on a layout that depends on the rows alone
    fitted = mllib.fit(
        canonical_layout(vector_features(dataset.select(col), col), [col], n_rows=n_rows)
    )
    centres = np.array(fitted.clusterCenters(), dtype=float)
    # MLlib's centre order (so the cluster ids) can change between runs and layouts even when
    # the centres do not: number them by their coordinates (at single precision, so that
    # last-bit noise cannot reorder them)
    order = np.lexsort(centres.astype(np.float32).T[::-1])
    model = KMeansModel(centres[order])
    model.trainingCost = float(fitted.summary.trainingCost)
    return est._copyValues(model)


def _fit_sagemaker(est: KMeans, dataset: DataFrame, n_rows: int) -> KMeansModel:
    """SageMaker's KMeans through sagemaker-pyspark; scored by an endpoint or batch transform."""
    from ..backends.sagemaker import estimators

    state = estimators.fit("kmeans", est, dataset)
    model = KMeansModel(None)
    model._sagemaker = state
    model._sagemaker_config = est.getSageMakerConfig()
    return est._copyValues(model)


#: backend -> fit implementation
_FITTERS = {"spark": _fit_spark, "sagemaker": _fit_sagemaker}


def nearest_centre(features: Column, centers: np.ndarray) -> tuple[Column, Column]:
    """(closest centre index, Euclidean distance) as JVM expressions; no Python worker."""
    from pyspark.sql import functions as F

    lit_centers = F.array(*[F.array(*[F.lit(float(v)) for v in row]) for row in centers])
    # (distance, index) structs: array_min compares field by field, so ties go to the lowest
    # index, as in MLlib's predict.
    pairs = F.transform(
        lit_centers,
        lambda c, i: F.struct(
            F.sqrt(
                F.aggregate(
                    F.zip_with(c, features, lambda a, b: (a - b) * (a - b)),
                    F.lit(0.0),
                    lambda acc, v: acc + v,
                )
            ).alias("d"),
            i.alias("i"),
        ),
    )
    best = F.array_min(pairs)
    return best["i"].cast("int"), best["d"]


class KMeansModel(_KMeansParams, Model, MLReadable, MLWritable):
    """A fitted KMeans: cluster centres (Spark backend) or a SageMaker model (SageMaker backend).

    ``transform`` adds ``predictionCol`` (int) and ``distanceCol`` (double), and ``outlierCol``
    when outlier thresholds were learnt. A SageMaker model scores through its endpoint or a batch
    transform job (``SageMakerConfig.inference``); call :meth:`cleanup` to delete what it keeps
    running.
    """

    def __init__(self, clusterCenters: np.ndarray | None = None) -> None:
        super().__init__()
        self._centers = None if clusterCenters is None else np.asarray(clusterCenters, float)
        self._thresholds: dict[int, float] = {}
        self._sagemaker: dict[str, Any] | None = None
        self.trainingCost: float | None = None

    def clusterCenters(self) -> np.ndarray:
        """The k centres, one row each (Spark backend; SageMaker keeps them in its artifact)."""
        if self._centers is None:
            raise ValueError(
                "this KMeansModel was trained on SageMaker: its centres live in the model "
                f"artifact {self.sagemakerState().get('model_artifacts')!r}"
            )
        return self._centers

    def outlierThresholds(self) -> dict[int, float]:
        """Per-cluster distance thresholds learnt at fit (empty without outlierQuantile)."""
        return dict(self._thresholds)

    def sagemakerState(self) -> dict[str, Any]:
        """Names of the SageMaker resources behind this model (empty for the Spark backend)."""
        return dict(self._sagemaker or {})

    def setFeaturesCol(self, value: str) -> KMeansModel:
        """Sets the value of :py:attr:`featuresCol`."""
        return self._set(featuresCol=value)

    def setPredictionCol(self, value: str) -> KMeansModel:
        """Sets the value of :py:attr:`predictionCol`."""
        return self._set(predictionCol=value)

    def setDistanceCol(self, value: str) -> KMeansModel:
        """Sets the value of :py:attr:`distanceCol`."""
        return self._set(distanceCol=value)

    def setOutlierCol(self, value: str) -> KMeansModel:
        """Sets the value of :py:attr:`outlierCol`."""
        return self._set(outlierCol=value)

    def setHandleInvalid(self, value: str) -> KMeansModel:
        """Sets the value of :py:attr:`handleInvalid`."""
        return self._set(handleInvalid=value)

    def _transform(self, dataset: DataFrame) -> DataFrame:
        col = self.getFeaturesCol()
        feature_type(dataset, col)
        pred, dist = self.getPredictionCol(), self.getDistanceCol()
        from pyspark.sql import functions as F

        if self._sagemaker is not None:
            from ..backends.sagemaker import estimators

            df, _ = transform_rows(dataset, col, self.getFeatureDim(), self.getHandleInvalid())
            out = estimators.score(
                "kmeans", df, col, self._sagemaker, {"cluster": pred, "distance": dist}
            )
        else:
            centers = self.clusterCenters()
            # a row of another dimension has no closest centre: an error unless handleInvalid
            # says to drop it or to keep it with a null cluster
            df, bad = transform_rows(dataset, col, centers.shape[1], self.getHandleInvalid())
            cluster, distance = nearest_centre(as_array(df, col), centers)
            out = df.withColumn(pred, F.when(~bad, cluster)).withColumn(
                dist, F.when(~bad, distance)
            )
        if self._thresholds:
            out = flag_outliers(
                out,
                self._thresholds,
                clusterCol=pred,
                distanceCol=dist,
                outputCol=self.getOutlierCol(),
            )
        return out

    def cleanup(self) -> list[str]:
        """Delete the SageMaker endpoint, endpoint config and model; returns what was deleted."""
        if self._sagemaker is None:
            return []
        from ..backends.sagemaker import estimators

        return estimators.cleanup(self._sagemaker)

    # persistence --------------------------------------------------------------------------
    def _arrays(self) -> dict[str, np.ndarray]:
        return {} if self._centers is None else {"clusterCenters": self._centers}

    def _extra(self) -> dict[str, Any]:
        return {
            "outlierThresholds": {str(c): t for c, t in self._thresholds.items()},
            "sagemaker": self._sagemaker,
            "trainingCost": self.trainingCost,
        }

    def _load_state(self, arrays: dict[str, np.ndarray], metadata: dict[str, Any]) -> None:
        self._centers = arrays.get("clusterCenters")
        self._thresholds = {int(c): float(t) for c, t in metadata["outlierThresholds"].items()}
        self._sagemaker = metadata.get("sagemaker")
        self.trainingCost = metadata.get("trainingCost")

    def write(self) -> ArraysWriter:
        """Returns an MLWriter: Params, centres as Parquet, thresholds and SageMaker names."""
        return ArraysWriter(self)

    @classmethod
    def read(cls) -> ArraysReader:
        """Returns an MLReader for :class:`KMeansModel`."""
        return ArraysReader(cls)
