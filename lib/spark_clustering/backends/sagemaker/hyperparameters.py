"""The one translation table between our camelCase Params and SageMaker's hyperparameter names.

Values are translated too where the vocabularies differ (MLlib's ``k-means||`` initialisation
is SageMaker's ``kmeans++``); everything is sent as a string, as the API takes it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["HYPERPARAMETERS", "KMEANS_TUNING_RANGES", "to_hyperparameters"]


def _init_method(value: Any) -> str:
    return {"k-means||": "kmeans++", "random": "random"}[str(value)]


def _eval_metrics(value: Any) -> str:
    # "[msd,ssd]": the form sagemaker-spark's validator and SageMaker's KMeans both accept
    return "[" + ",".join(m.strip() for m in str(value).split(",") if m.strip()) + "]"


def _bool(value: Any) -> str:
    # SageMaker's PCA documents (and sagemaker-spark validates) "True" / "False"
    return "True" if value else "False"


#: algorithm -> {our Param name: (SageMaker hyperparameter, value translation)}
HYPERPARAMETERS: dict[str, dict[str, tuple[str, Callable[[Any], str]]]] = {
    "kmeans": {
        "k": ("k", str),
        "featureDim": ("feature_dim", str),
        "miniBatchSize": ("mini_batch_size", str),
        "initMode": ("init_method", _init_method),
        "extraCenterFactor": ("extra_center_factor", str),
        "epochs": ("epochs", str),
        "evalMetrics": ("eval_metrics", _eval_metrics),
        "maxIter": ("local_lloyd_max_iter", str),
        "tol": ("local_lloyd_tol", str),
    },
    "pca": {
        "k": ("num_components", str),
        "featureDim": ("feature_dim", str),
        "miniBatchSize": ("mini_batch_size", str),
        "algorithmMode": ("algorithm_mode", str),
        "subtractMean": ("subtract_mean", _bool),
    },
}

#: SageMaker's documented tunable KMeans hyperparameters and ranges ("Tune a K-Means Model").
KMEANS_TUNING_RANGES: dict[str, Any] = {
    "IntegerParameterRanges": [
        {"Name": "extra_center_factor", "MinValue": "4", "MaxValue": "10"},
        {"Name": "mini_batch_size", "MinValue": "3000", "MaxValue": "15000"},
        {"Name": "epochs", "MinValue": "1", "MaxValue": "10"},
    ],
    "CategoricalParameterRanges": [{"Name": "init_method", "Values": ["kmeans++", "random"]}],
}


def to_hyperparameters(algorithm: str, params: Mapping[str, Any]) -> dict[str, str]:
    """Translate ``{Param name: value}`` (None = unset, left to SageMaker's default)."""
    table = HYPERPARAMETERS[algorithm]
    return {
        native: convert(params[name])
        for name, (native, convert) in table.items()
        if params.get(name) is not None
    }
