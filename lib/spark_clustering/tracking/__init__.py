"""Experiment tracking: one small API over MLflow (default), SageMaker Experiments or nothing.

An experiment holds trials; a trial holds components (Preprocessing, Training, Evaluation);
each logs parameters, metrics, inputs, outputs and artifacts. Estimators and jobs log
themselves through :mod:`spark_clustering.tracking.hooks` while a trial is open. Neither mlflow
nor boto3 is imported until a backend that needs it is used. See ``docs/tracking.md``.

Examples
--------
>>> from spark_clustering import tracking
>>> with tracking.trial("customer-segmentation", "umap3-dbscan-eps0.31", backend="none") as t:
...     with t.component("Training"):
...         t.log_parameters({"eps": 0.31, "minPoints": 20})
...         t.log_metric("silhouette", 0.50)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .config import BACKEND_CHOICES, TrackingConfig, resolve_config
from .core import (
    Component,
    Dataset,
    ParameterConflict,
    TrackingError,
    Trial,
    active_trial,
    start_trial,
    trial,
)
from .names import sagemaker_name, sanitize_name, validate_name

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

__all__ = [
    "BACKEND_CHOICES",
    "Component",
    "Dataset",
    "ParameterConflict",
    "TrackingConfig",
    "TrackingError",
    "Trial",
    "active_trial",
    "leaderboard",
    "resolve_config",
    "sagemaker_name",
    "sanitize_name",
    "start_trial",
    "trial",
    "validate_name",
]


def leaderboard(experiment: str, **kwargs: Any) -> pd.DataFrame:
    """One row per trial of ``experiment``, sorted (see :func:`.board.leaderboard`)."""
    from .board import leaderboard as _leaderboard

    return _leaderboard(experiment, **kwargs)
