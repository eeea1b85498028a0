"""The tracking options every ``spark-clustering`` job shares, and the trial they describe.

A job adds the options with :func:`add_tracking_arguments` and opens its trial with
:func:`trial_from_args`; the estimators it runs then log themselves through the hooks.

Examples
--------
>>> import argparse
>>> parser = argparse.ArgumentParser()
>>> add_tracking_arguments(parser, experiment="customer-segmentation")
>>> args = parser.parse_args(["--tracking", "none", "--trial", "kmeans-k4"])
>>> with trial_from_args(args, default_trial="segment") as t:
...     t.name
'kmeans-k4'
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from typing import Any

from .config import BACKEND_CHOICES
from .core import Trial


def add_tracking_arguments(
    parser: argparse.ArgumentParser, *, experiment: str | None = None, trial: bool = True
) -> None:
    """Add ``--tracking``, ``--tracking-uri``, ``--tracking-config``, ``--tracking-strict``,
    ``--experiment`` and (when ``trial``) ``--trial`` to ``parser``."""
    group = parser.add_argument_group("experiment tracking (see docs/tracking.md)")
    group.add_argument(
        "--tracking",
        "--backend",
        dest="tracking",
        choices=BACKEND_CHOICES,
        default=None,
        help="tracking backend (default: SPARK_CLUSTERING_TRACKING, the config file, else mlflow)",
    )
    group.add_argument(
        "--tracking-uri",
        default=None,
        help="MLflow tracking URI (default: SPARK_CLUSTERING_TRACKING_URI, MLFLOW_TRACKING_URI, "
        "else sqlite:///mlflow.db)",
    )
    group.add_argument(
        "--tracking-config",
        "--config",
        dest="tracking_config",
        default=None,
        help="tracking config file (.toml [tracking] table or .json 'tracking' object)",
    )
    group.add_argument(
        "--tracking-strict",
        action="store_true",
        default=None,
        help="fail the job when the tracking backend fails (default: log and carry on)",
    )
    group.add_argument(
        "--experiment",
        default=experiment,
        required=experiment is None,
        help="experiment name" + (f" (default {experiment})" if experiment else ""),
    )
    if trial:
        group.add_argument("--trial", default=None, help="trial name (default: from the job)")


def tracking_options(args: argparse.Namespace) -> dict[str, Any]:
    """The tracking keyword arguments given on the command line (unset ones left out)."""
    options = {
        "backend": getattr(args, "tracking", None),
        "tracking_uri": getattr(args, "tracking_uri", None),
        "config": getattr(args, "tracking_config", None),
        "strict": getattr(args, "tracking_strict", None),
    }
    return {k: v for k, v in options.items() if v is not None}


def trial_from_args(
    args: argparse.Namespace, default_trial: str, tags: Mapping[str, Any] | None = None
) -> Trial:
    """The (not yet started) trial the command line describes; use it as a context manager."""
    name = getattr(args, "trial", None) or default_trial
    return Trial(args.experiment, name, tags, **tracking_options(args))
