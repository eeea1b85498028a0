"""PCA: Spark MLlib's by default, SageMaker's built-in PCA with ``backend='sagemaker'``.

Both write the projection to the same ``outputCol`` (default ``projection``, SageMaker's name),
as a Spark ML vector of ``k`` components.
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
from ..clustering._common import (
    DelegateReader,
    DelegateWriter,
    HasSparkOrSageMakerBackend,
    transform_with_mllib,
    vector_features,
)
from ..features.vectors import Requirement, check_input, feature_type, transform_rows
from ..params import HANDLE_INVALID_CHOICES, HasFeaturesCol, HasHandleInvalid, HasOutputCol

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import DataFrame

__all__ = ["PCA", "PCAModel"]

ALGORITHM_MODES = ("regular", "stable", "randomized")


class _PCAParams(HasFeaturesCol, HasOutputCol, HasHandleInvalid, HasSparkOrSageMakerBackend):
    """Params shared by :class:`PCA` and :class:`PCAModel`."""

    k: Param[int] = Param(
        Params._dummy(),
        "k",
        "number of principal components, >= 1 (SageMaker: num_components)",
        typeConverter=TypeConverters.toInt,
    )
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
    algorithmMode: Param[str] = Param(
        Params._dummy(),
        "algorithmMode",
        "'regular', 'stable' or 'randomized' (SageMaker backend)",
        typeConverter=TypeConverters.toString,
    )
    subtractMean: Param[bool] = Param(
        Params._dummy(),
        "subtractMean",
        "centre the data before the decomposition (SageMaker backend)",
        typeConverter=TypeConverters.toBoolean,
    )

    def __init__(self) -> None:
        super().__init__()
        self._setDefault(k=2, outputCol="projection", backend="spark")

    def getK(self) -> int:
        """Gets the value of k or its default value."""
        return self.getOrDefault(self.k)

    def getFeatureDim(self) -> int | None:
        """Gets the value of featureDim, or None when unset (taken from the data)."""
        return self._opt(self.featureDim)

    def getMiniBatchSize(self) -> int | None:
        """Gets the value of miniBatchSize, or None when unset."""
        return self._opt(self.miniBatchSize)

    def getAlgorithmMode(self) -> str | None:
        """Gets the value of algorithmMode, or None when unset."""
        return self._opt(self.algorithmMode)

    def getSubtractMean(self) -> bool | None:
        """Gets the value of subtractMean, or None when unset."""
        return self._opt(self.subtractMean)

    def _validate_params(self) -> None:
        """Range checks, before any work or resource is created."""
        self.resolvedBackend()
        check_choice("handleInvalid", self.getHandleInvalid(), HANDLE_INVALID_CHOICES)
        check_range("k", self.getK(), ge=1)
        dim, batch = self.getFeatureDim(), self.getMiniBatchSize()
        if dim is not None:
            check_range("featureDim", dim, ge=1)
            check_range("k", self.getK(), le=dim)
        if batch is not None:
            check_range("miniBatchSize", batch, ge=1)
        if self.getAlgorithmMode() is not None:
            check_choice("algorithmMode", self.getAlgorithmMode(), ALGORITHM_MODES)


class PCA(_PCAParams, Estimator, DefaultParamsReadable, DefaultParamsWritable):
    """Principal components on Spark MLlib or on SageMaker's built-in PCA.

    Parameters
    ----------
    k : int
        Number of components.
    featuresCol : str
        A Spark ML vector or an array of numbers.
    outputCol : str
        The projection, a vector of ``k`` values (default ``projection``).
    handleInvalid : {'error', 'skip', 'keep'}
        Rows with null, NaN or infinite features (and, at transform, rows of another
        dimension): fail (the default), drop them, or keep them with a null projection. A fit
        uses the valid rows only; ``k`` larger than the number of features fails at the start
        of the fit, after one counting pass and before any decomposition.
    backend : {'spark', 'sagemaker'}
        ``sagemaker`` trains with sagemaker-pyspark's ``PCASageMakerEstimator``.
    featureDim, miniBatchSize, algorithmMode, subtractMean
        SageMaker hyperparameters (ignored by the Spark backend).

    Examples
    --------
    >>> model = PCA(k=2).fit(df)  # doctest: +SKIP
    >>> model.transform(df).select("projection").first()  # doctest: +SKIP
    """

    _input_kwargs: dict[str, Any]

    @keyword_only
    def __init__(
        self,
        *,
        k: int = 2,
        featuresCol: str = "features",
        outputCol: str = "projection",
        handleInvalid: str = "error",
        backend: str = "spark",
        featureDim: int | None = None,
        miniBatchSize: int | None = None,
        algorithmMode: str | None = None,
        subtractMean: bool | None = None,
    ) -> None:
        super().__init__()
        self.setParams(**self._input_kwargs)

    @keyword_only
    def setParams(
        self,
        *,
        k: int = 2,
        featuresCol: str = "features",
        outputCol: str = "projection",
        handleInvalid: str = "error",
        backend: str = "spark",
        featureDim: int | None = None,
        miniBatchSize: int | None = None,
        algorithmMode: str | None = None,
        subtractMean: bool | None = None,
    ) -> PCA:
        """Sets params for PCA (None leaves a Param unset)."""
        return self._set(**{k_: v for k_, v in self._input_kwargs.items() if v is not None})

    def setK(self, value: int) -> PCA:
        """Sets the value of :py:attr:`k`."""
        return self._set(k=value)

    def setFeaturesCol(self, value: str) -> PCA:
        """Sets the value of :py:attr:`featuresCol`."""
        return self._set(featuresCol=value)

    def setOutputCol(self, value: str) -> PCA:
        """Sets the value of :py:attr:`outputCol`."""
        return self._set(outputCol=value)

    def setHandleInvalid(self, value: str) -> PCA:
        """Sets the value of :py:attr:`handleInvalid`."""
        return self._set(handleInvalid=value)

    def setBackend(self, value: str) -> PCA:
        """Sets the value of :py:attr:`backend`."""
        return self._set(backend=value)

    def setFeatureDim(self, value: int) -> PCA:
        """Sets the value of :py:attr:`featureDim`."""
        return self._set(featureDim=value)

    def setMiniBatchSize(self, value: int) -> PCA:
        """Sets the value of :py:attr:`miniBatchSize`."""
        return self._set(miniBatchSize=value)

    def setAlgorithmMode(self, value: str) -> PCA:
        """Sets the value of :py:attr:`algorithmMode`."""
        return self._set(algorithmMode=value)

    def setSubtractMean(self, value: bool) -> PCA:
        """Sets the value of :py:attr:`subtractMean`."""
        return self._set(subtractMean=value)

    def _fit(self, dataset: DataFrame) -> PCAModel:
        self._validate_params()
        need = Requirement(1, max_dimension_param="k", max_dimension_value=self.getK())
        valid = check_input(dataset, self.getFeaturesCol(), self.getHandleInvalid(), need).data
        model = _FITTERS[self.resolvedBackend()](self, valid)
        log_fit(self)
        return model


def _fit_spark(est: PCA, dataset: DataFrame) -> PCAModel:
    from pyspark.ml.feature import PCA as MLlibPCA

    col = est.getFeaturesCol()
    data = vector_features(dataset.select(col), col)
    model = PCAModel()
    model._mllib = MLlibPCA(k=est.getK(), inputCol=col, outputCol="__projection").fit(data)
    return est._copyValues(model)


def _fit_sagemaker(est: PCA, dataset: DataFrame) -> PCAModel:
    from ..backends.sagemaker import estimators

    model = PCAModel()
    model._sagemaker = estimators.fit("pca", est, dataset)
    return est._copyValues(model)


#: backend -> fit implementation
_FITTERS = {"spark": _fit_spark, "sagemaker": _fit_sagemaker}


class PCAModel(_PCAParams, Model, MLReadable, MLWritable):
    """A fitted PCA: MLlib's principal components, or a SageMaker PCA model."""

    def __init__(self) -> None:
        super().__init__()
        self._mllib: Any = None
        self._sagemaker: dict[str, Any] | None = None

    @property
    def pc(self) -> np.ndarray:
        """Principal components, one column each (``d x k``; Spark backend)."""
        return self._require_mllib().pc.toArray()

    @property
    def explainedVariance(self) -> np.ndarray:
        """Proportion of variance explained by each component (Spark backend)."""
        return self._require_mllib().explainedVariance.toArray()

    def _require_mllib(self) -> Any:
        if self._mllib is None:
            raise ValueError(
                "this PCAModel was trained on SageMaker: components are in its artifact"
            )
        return self._mllib

    def sagemakerState(self) -> dict[str, Any]:
        """Names of the SageMaker resources behind this model (empty for the Spark backend)."""
        return dict(self._sagemaker or {})

    def setOutputCol(self, value: str) -> PCAModel:
        """Sets the value of :py:attr:`outputCol`."""
        return self._set(outputCol=value)

    def setFeaturesCol(self, value: str) -> PCAModel:
        """Sets the value of :py:attr:`featuresCol`."""
        return self._set(featuresCol=value)

    def setHandleInvalid(self, value: str) -> PCAModel:
        """Sets the value of :py:attr:`handleInvalid`."""
        return self._set(handleInvalid=value)

    def _transform(self, dataset: DataFrame) -> DataFrame:
        col, out = self.getFeaturesCol(), self.getOutputCol()
        feature_type(dataset, col)
        mode = self.getHandleInvalid()
        if self._sagemaker is not None:
            from ..backends.sagemaker import estimators

            df, _ = transform_rows(dataset, col, self.getFeatureDim(), mode)
            return estimators.score("pca", df, col, self._sagemaker, {"projection": out})
        mllib = self._mllib.copy().setOutputCol(out)
        return transform_with_mllib(
            dataset,
            col,
            int(self._mllib.pc.numRows),
            mode,
            lambda df, tmp: mllib.setInputCol(tmp).transform(df),
            [out],
        )

    def cleanup(self) -> list[str]:
        """Delete the SageMaker endpoint, endpoint config and model; returns what was deleted."""
        if self._sagemaker is None:
            return []
        from ..backends.sagemaker import estimators

        return estimators.cleanup(self._sagemaker)

    def _extra(self) -> dict[str, Any]:
        return {"sagemaker": self._sagemaker}

    def write(self) -> DelegateWriter:
        """Returns an MLWriter: Params, and MLlib's model under ``mllib/``."""
        return DelegateWriter(self)

    @classmethod
    def read(cls) -> DelegateReader:
        """Returns an MLReader for :class:`PCAModel`."""
        from pyspark.ml.feature import PCAModel as MLlibPCAModel

        return DelegateReader(cls, MLlibPCAModel)
