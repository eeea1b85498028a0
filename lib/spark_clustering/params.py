"""Shared ``Has*`` Param mixins, written once and used by every estimator."""

from __future__ import annotations

from pyspark.ml.param import Param, Params, TypeConverters
from pyspark.ml.param.shared import (  # re-exported for estimator modules
    HasFeaturesCol,
    HasOutputCol,
    HasPredictionCol,
    HasSeed,
)

__all__ = [
    "HANDLE_INVALID_CHOICES",
    "HasBackend",
    "HasFeaturesCol",
    "HasHandleInvalid",
    "HasOutputCol",
    "HasPredictionCol",
    "HasSampleSize",
    "HasSeed",
]

HANDLE_INVALID_CHOICES = ("error", "skip", "keep")


class HasBackend(Params):
    """Where the numeric work runs: ``auto``, ``cpu`` or ``gpu`` (some estimators add more)."""

    backend: Param[str] = Param(
        Params._dummy(),
        "backend",
        "where the work runs: 'auto' (GPU when cuML and a GPU are present, else CPU), "
        "'cpu' or 'gpu'",
        typeConverter=TypeConverters.toString,
    )

    def __init__(self) -> None:
        super().__init__()
        self._setDefault(backend="auto")

    def getBackend(self) -> str:
        """Gets the value of backend or its default value."""
        return self.getOrDefault(self.backend)


class HasHandleInvalid(Params):
    """How rows with NaN or infinite features are handled, as Spark's feature transformers do."""

    handleInvalid: Param[str] = Param(
        Params._dummy(),
        "handleInvalid",
        "rows whose features are null or hold NaN or infinity (and, at transform, rows of "
        "another dimension than the model's): 'error' (fail, naming how many rows), 'skip' "
        "(drop them) or 'keep' (keep them: noise, -1, for DBSCAN, a null result for the "
        "others); a fit uses the valid rows only with 'skip' or 'keep'",
        typeConverter=TypeConverters.toString,
    )

    def __init__(self) -> None:
        super().__init__()
        self._setDefault(handleInvalid="error")

    def getHandleInvalid(self) -> str:
        """Gets the value of handleInvalid or its default value."""
        return self.getOrDefault(self.handleInvalid)


class HasSampleSize(Params):
    """Rows brought to one place (the driver) at most; past it the estimator fails clearly."""

    sampleSize: Param[int] = Param(
        Params._dummy(),
        "sampleSize",
        "number of rows sampled to one node; the only data that leaves the executors",
        typeConverter=TypeConverters.toInt,
    )

    def getSampleSize(self) -> int:
        """Gets the value of sampleSize or its default value."""
        return self.getOrDefault(self.sampleSize)
