"""Scaling: Spark's ``StandardScaler``, ``MinMaxScaler`` or ``RobustScaler`` on the vector.

The scaler is fitted on the prepared data and saved inside the preparation's ``PipelineModel``,
so the same scaling applies to new data. ``standard`` and ``robust`` scale without centering
by default (``scale.with_mean = false``): distances, and so every clustering, are unchanged by
a shift, and sparse vectors stay sparse. ``minmax`` always gives dense vectors.

:func:`fit_scaler` returns Spark's own fitted models (``StandardScalerModel``,
``RobustScalerModel``, ``MinMaxScalerModel``), saved and applied as Spark saves and applies them,
but the standard and robust statistics come from :mod:`.stable`: Spark's fit merges partial sums
and quantile sketches in the order tasks finish, so the same customers would be scaled
differently in their last bits on another cluster or from another number of input files.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from . import stable
from .spec import ScaleSpec

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.ml import Estimator, Model
    from pyspark.sql import DataFrame

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


def fit_scaler(
    spec: ScaleSpec,
    df: DataFrame,
    input_col: str,
    output_col: str,
    key: Sequence[str],
    relative_error: float = 0.001,
) -> Model | None:
    """The fitted scaler the spec asks for, with statistics that do not depend on the layout.

    ``key`` identifies the rows (the customer id): :func:`.stable.moments` sums in its order.
    Standard scaling uses the corrected sample standard deviation and the mean, robust scaling
    the exact ``lower``, ``upper`` quantiles and median (zeros included), as Spark's
    ``StandardScaler`` and ``RobustScaler`` define them; min-max scaling is Spark's own fit
    (a minimum and a maximum do not depend on the order).

    Examples
    --------
    >>> model = fit_scaler(ScaleSpec(), df, "raw", "scaled", ["customer_id"])  # doctest: +SKIP
    >>> model.std  # doctest: +SKIP
    DenseVector([12.5, 0.31])
    """
    import numpy as np

    if spec.method == "none":
        return None
    stage = scaler_stage(spec, input_col, output_col, relative_error)
    assert stage is not None
    if spec.method == "minmax":
        return stage.fit(df)
    first = df.select(input_col).first()
    if first is None:
        raise ValueError(f"cannot fit a {spec.method} scaler on no rows")
    size = int(first[0].size)
    slots = stable.vector_slots(df.select(*key, input_col), input_col, size)
    names = [f"__slot{i}" for i in range(size)]
    if spec.method == "standard":
        m = stable.moments(slots, names, key)
        scale = np.array([m[c].std for c in names])
        center = np.array([m[c].mean for c in names])
        return _spark_model("StandardScalerModel", stage, scale, center)
    q = stable.exact_quantiles(slots, names, [spec.lower, 0.5, spec.upper], relative_error)
    spread = np.array([q[c][2] - q[c][0] for c in names])
    median = np.array([q[c][1] for c in names])
    return _spark_model("RobustScalerModel", stage, spread, median)


def _spark_model(kind: str, estimator: Estimator, first: Any, second: Any) -> Model:
    """Spark's fitted ``kind`` (``StandardScalerModel(std, mean)`` or
    ``RobustScalerModel(range, median)``) with the estimator's params, built from its vectors.

    Both constructors are ``private[ml]`` in Scala, which is public in the JVM: the model is the
    one ``fit`` returns, so it transforms, saves and loads the same way.
    """
    from pyspark import SparkContext
    from pyspark.ml import feature
    from pyspark.ml.common import _py2java
    from pyspark.ml.linalg import Vectors

    sc = SparkContext._active_spark_context
    assert sc is not None and sc._jvm is not None
    jvm_class = getattr(sc._jvm.org.apache.spark.ml.feature, kind)
    java_model = jvm_class(
        estimator.uid,
        _py2java(sc, Vectors.dense([float(v) for v in first])),
        _py2java(sc, Vectors.dense([float(v) for v in second])),
    )
    model = getattr(feature, kind)(java_model)
    params = estimator.extractParamMap().items()
    model._set(**{p.name: v for p, v in params if model.hasParam(p.name)})
    model._transfer_params_to_java()
    return model


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
