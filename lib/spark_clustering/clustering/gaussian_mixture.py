"""Gaussian mixture: Spark MLlib's EM, with the package's column conventions.

``predictionCol`` defaults to ``cluster`` (as :class:`~spark_clustering.KMeans`) and
``probabilityCol`` holds each row's membership probabilities (a vector of ``k`` values).
SageMaker has no built-in Gaussian mixture, so only the Spark backend exists.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from pyspark import keyword_only
from pyspark.ml import Estimator, Model
from pyspark.ml.param import Param, Params, TypeConverters
from pyspark.ml.param.shared import HasProbabilityCol
from pyspark.ml.util import (
    DefaultParamsReadable,
    DefaultParamsWritable,
    MLReadable,
    MLWritable,
)

from ..base import check_choice, check_range, log_fit
from ..features.vectors import Requirement, check_input, feature_type
from ..params import (
    HANDLE_INVALID_CHOICES,
    HasFeaturesCol,
    HasHandleInvalid,
    HasPredictionCol,
    HasSeed,
)
from ..sampling import canonical_layout
from ._common import (
    DelegateReader,
    DelegateWriter,
    HasSparkOrSageMakerBackend,
    transform_with_mllib,
    vector_features,
)

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import DataFrame

__all__ = ["GaussianMixture", "GaussianMixtureModel"]


class _GaussianMixtureParams(
    HasFeaturesCol,
    HasPredictionCol,
    HasProbabilityCol,
    HasSeed,
    HasHandleInvalid,
    HasSparkOrSageMakerBackend,
):
    """Params shared by :class:`GaussianMixture` and :class:`GaussianMixtureModel`."""

    k: Param[int] = Param(
        Params._dummy(), "k", "number of components, >= 2", typeConverter=TypeConverters.toInt
    )
    maxIter: Param[int] = Param(
        Params._dummy(),
        "maxIter",
        "maximum EM iterations, >= 1",
        typeConverter=TypeConverters.toInt,
    )
    tol: Param[float] = Param(
        Params._dummy(),
        "tol",
        "convergence tolerance on the log-likelihood, >= 0",
        typeConverter=TypeConverters.toFloat,
    )

    def __init__(self) -> None:
        super().__init__()
        self._setDefault(
            k=2,
            maxIter=100,
            tol=0.01,
            predictionCol="cluster",
            probabilityCol="probability",
            backend="spark",
        )

    def getK(self) -> int:
        """Gets the value of k or its default value."""
        return self.getOrDefault(self.k)

    def getMaxIter(self) -> int:
        """Gets the value of maxIter or its default value."""
        return self.getOrDefault(self.maxIter)

    def getTol(self) -> float:
        """Gets the value of tol or its default value."""
        return self.getOrDefault(self.tol)

    def _validate_params(self) -> None:
        """Range checks, before any work starts."""
        check_choice("backend", self.resolvedBackend(), ("spark",))
        check_choice("handleInvalid", self.getHandleInvalid(), HANDLE_INVALID_CHOICES)
        check_range("k", self.getK(), ge=2)
        check_range("maxIter", self.getMaxIter(), ge=1)
        check_range("tol", self.getTol(), ge=0.0)


class GaussianMixture(
    _GaussianMixtureParams, Estimator, DefaultParamsReadable, DefaultParamsWritable
):
    """Gaussian mixture model fitted by Spark MLlib's expectation-maximisation.

    The features are checked first (:func:`~spark_clustering.features.vectors.check_input`):
    at least ``k`` valid rows of one dimension; rows with null, NaN or infinite values fail the
    fit unless ``handleInvalid`` is 'skip' or 'keep' (then the fit uses the valid rows, and
    transform drops such rows or keeps them with null outputs).

    Examples
    --------
    >>> model = GaussianMixture(k=3, seed=7).fit(df)  # doctest: +SKIP
    >>> model.transform(df).select("cluster", "probability").first()  # doctest: +SKIP
    """

    _input_kwargs: dict[str, Any]

    @keyword_only
    def __init__(
        self,
        *,
        k: int = 2,
        featuresCol: str = "features",
        predictionCol: str = "cluster",
        probabilityCol: str = "probability",
        seed: int | None = None,
        maxIter: int = 100,
        tol: float = 0.01,
        handleInvalid: str = "error",
        backend: str = "spark",
    ) -> None:
        super().__init__()
        self.setParams(**self._input_kwargs)

    @keyword_only
    def setParams(
        self,
        *,
        k: int = 2,
        featuresCol: str = "features",
        predictionCol: str = "cluster",
        probabilityCol: str = "probability",
        seed: int | None = None,
        maxIter: int = 100,
        tol: float = 0.01,
        handleInvalid: str = "error",
        backend: str = "spark",
    ) -> GaussianMixture:
        """Sets params for GaussianMixture (None leaves a Param unset)."""
        return self._set(**{k_: v for k_, v in self._input_kwargs.items() if v is not None})

    def setK(self, value: int) -> GaussianMixture:
        """Sets the value of :py:attr:`k`."""
        return self._set(k=value)

    def setFeaturesCol(self, value: str) -> GaussianMixture:
        """Sets the value of :py:attr:`featuresCol`."""
        return self._set(featuresCol=value)

    def setPredictionCol(self, value: str) -> GaussianMixture:
        """Sets the value of :py:attr:`predictionCol`."""
        return self._set(predictionCol=value)

    def setProbabilityCol(self, value: str) -> GaussianMixture:
        """Sets the value of :py:attr:`probabilityCol`."""
        return self._set(probabilityCol=value)

    def setSeed(self, value: int) -> GaussianMixture:
        """Sets the value of :py:attr:`seed`."""
        return self._set(seed=value)

    def setMaxIter(self, value: int) -> GaussianMixture:
        """Sets the value of :py:attr:`maxIter`."""
        return self._set(maxIter=value)

    def setTol(self, value: float) -> GaussianMixture:
        """Sets the value of :py:attr:`tol`."""
        return self._set(tol=value)

    def setHandleInvalid(self, value: str) -> GaussianMixture:
        """Sets the value of :py:attr:`handleInvalid`."""
        return self._set(handleInvalid=value)

    def setBackend(self, value: str) -> GaussianMixture:
        """Sets the value of :py:attr:`backend`."""
        return self._set(backend=value)

    def _fit(self, dataset: DataFrame) -> GaussianMixtureModel:
        self._validate_params()
        from pyspark.ml.clustering import GaussianMixture as MLlibGaussianMixture

        col, k = self.getFeaturesCol(), self.getK()
        checked = check_input(dataset, col, self.getHandleInvalid(), Requirement(k, "k", k))
        valid = checked.data
        mllib = MLlibGaussianMixture(
            featuresCol=col, k=self.getK(), maxIter=self.getMaxIter(), tol=self.getTol()
        )
        if self.isDefined(self.seed):
            mllib.setSeed(self.getOrDefault(self.seed))
        model = GaussianMixtureModel()
        # the initial sample is drawn per partition: fit on a layout that depends on the rows.
        # EM keeps the components in the order of that (seeded) sample, so their ids are the
        # same on every layout without renumbering (KMeans' k-means|| needs it, see kmeans.py)
        features = canonical_layout(
            vector_features(valid.select(col), col), [col], n_rows=checked.n_valid
        )
        model._mllib = mllib.fit(features)
        log_fit(self)
        return self._copyValues(model)


class GaussianMixtureModel(_GaussianMixtureParams, Model, MLReadable, MLWritable):
    """A fitted Gaussian mixture (MLlib's model, with this package's columns)."""

    def __init__(self) -> None:
        super().__init__()
        self._mllib: Any = None
        self._sagemaker: dict[str, Any] | None = None

    @property
    def weights(self) -> np.ndarray:
        """Mixture weights, summing to 1."""
        return np.asarray(self._mllib.weights, dtype=float)

    @property
    def means(self) -> np.ndarray:
        """Component means, ``k x d``."""
        rows = self._mllib.gaussiansDF.collect()
        return np.array([r["mean"].toArray() for r in rows])

    @property
    def covariances(self) -> np.ndarray:
        """Component covariance matrices, ``k x d x d``."""
        rows = self._mllib.gaussiansDF.collect()
        return np.array([r["cov"].toArray() for r in rows])

    def setFeaturesCol(self, value: str) -> GaussianMixtureModel:
        """Sets the value of :py:attr:`featuresCol`."""
        return self._set(featuresCol=value)

    def setPredictionCol(self, value: str) -> GaussianMixtureModel:
        """Sets the value of :py:attr:`predictionCol`."""
        return self._set(predictionCol=value)

    def setProbabilityCol(self, value: str) -> GaussianMixtureModel:
        """Sets the value of :py:attr:`probabilityCol`."""
        return self._set(probabilityCol=value)

    def setHandleInvalid(self, value: str) -> GaussianMixtureModel:
        """Sets the value of :py:attr:`handleInvalid`."""
        return self._set(handleInvalid=value)

    @property
    def numFeatures(self) -> int:
        """Dimension of the features the model was fitted on."""
        return int(self._mllib.gaussians[0].mean.size)

    def _transform(self, dataset: DataFrame) -> DataFrame:
        col = self.getFeaturesCol()
        feature_type(dataset, col)
        mllib = self._mllib.copy()
        mllib.setPredictionCol(self.getPredictionCol())
        mllib.setProbabilityCol(self.getProbabilityCol())
        return transform_with_mllib(
            dataset,
            col,
            self.numFeatures,
            self.getHandleInvalid(),
            lambda df, tmp: mllib.setFeaturesCol(tmp).transform(df),
            [self.getPredictionCol(), self.getProbabilityCol()],
        )

    def _extra(self) -> dict[str, Any]:
        return {}

    def write(self) -> DelegateWriter:
        """Returns an MLWriter: Params, and MLlib's model under ``mllib/``."""
        return DelegateWriter(self)

    @classmethod
    def read(cls) -> DelegateReader:
        """Returns an MLReader for :class:`GaussianMixtureModel`."""
        from pyspark.ml.clustering import GaussianMixtureModel as MLlibGaussianMixtureModel

        return DelegateReader(cls, MLlibGaussianMixtureModel)
