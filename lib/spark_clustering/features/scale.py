"""Scaling: Spark's ``StandardScaler``, ``MinMaxScaler`` or ``RobustScaler`` on the vector.

The scaler is fitted on the prepared data and saved inside the preparation's ``PipelineModel``,
so the same scaling applies to new data. ``standard`` and ``robust`` scale without centering
by default (``scale.with_mean = false``): distances, and so every clustering, are unchanged by
a shift, and sparse vectors stay sparse. ``minmax`` always gives dense vectors.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .spec import ScaleSpec

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.ml import Estimator

log = logging.getLogger(__name__)


def scaler_stage(
    spec: ScaleSpec, input_col: str, output_col: str, relative_error: float = 0.001
) -> Estimator | None:
    """The Spark scaler the spec asks for, or ``None`` for ``method = "none"``."""
    from pyspark.ml.feature import MinMaxScaler, RobustScaler, StandardScaler

    if spec.method == "standard":
        return StandardScaler(
            inputCol=input_col, outputCol=output_col, withMean=spec.with_mean, withStd=True
        )
    if spec.method == "minmax":
        return MinMaxScaler(inputCol=input_col, outputCol=output_col, min=spec.min, max=spec.max)
    if spec.method == "robust":
        return RobustScaler(
            inputCol=input_col,
            outputCol=output_col,
            lower=spec.lower,
            upper=spec.upper,
            withCentering=spec.with_mean,
            withScaling=True,
            relativeError=relative_error,
        )
    if spec.method == "none":
        return None
    raise ValueError(f"scale.method={spec.method!r} is not valid")


def degenerate_features(model: Any, names: Sequence[str]) -> list[str]:
    """Features the fitted scaler maps to a constant: zero std, zero range or zero IQR.

    Spark sets their scale to 0 (standard, robust) or their value to the middle of the range
    (min-max), so they carry no information after scaling. Robust scaling zeroes sparse columns
    whose inter-quantile range is 0 (a category share bought by under a quarter of customers).
    """
    import numpy as np
    from pyspark.ml.feature import MinMaxScalerModel, RobustScalerModel, StandardScalerModel

    if isinstance(model, StandardScalerModel):
        spread = model.std.toArray()
    elif isinstance(model, RobustScalerModel):
        spread = model.range.toArray()
    elif isinstance(model, MinMaxScalerModel):
        spread = model.originalMax.toArray() - model.originalMin.toArray()
    else:
        return []
    return [names[int(i)] for i in np.flatnonzero(spread == 0.0)]
