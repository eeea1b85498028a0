"""Hooks that estimators and jobs call: no-ops without an open trial, never raising unless strict.

Where a hook logs: inside the user's open component if there is one, else in a component the
hook opens itself (``Training`` for fits, ``Evaluation`` for metrics) and keeps open until a hook
asks for another one or the trial ends. Estimator parameters are logged as
``<EstimatorClass>.<param>`` so two estimators in one component never clash; when the same
estimator is fitted again with other values, the hook moves to a new component of the same name.

Examples
--------
>>> from spark_clustering import tracking
>>> from spark_clustering.tracking import hooks
>>> hooks.log_metrics({"silhouette": 0.5})  # no trial open: nothing happens
>>> with tracking.trial("demo", "hooks", backend="none"):
...     hooks.log_fit("DBSCAN", {"eps": 0.31, "minPoints": 20})
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from .core import Component, ParameterConflict, TrackingError, Trial
from .core import active_trial as _active

log = logging.getLogger(__name__)

__all__ = [
    "active_trial",
    "log_artifact",
    "log_fit",
    "log_input",
    "log_metrics",
    "log_output",
    "muted",
    "set_tags",
]

_MUTED = threading.local()


@contextmanager
def muted() -> Iterator[None]:
    """Hooks log nothing inside the block (this thread): for work whose figures the caller
    logs itself, such as the candidate fits of the automatic segment count."""
    depth = getattr(_MUTED, "depth", 0)
    _MUTED.depth = depth + 1
    try:
        yield
    finally:
        _MUTED.depth = depth


def active_trial() -> Trial | None:
    """The open trial, or None."""
    return _active()


def _muted() -> bool:
    return bool(getattr(_MUTED, "depth", 0))


def _safely(what: str, action: Callable[[Trial], None]) -> None:
    t = _active()
    if t is None or _muted():
        return
    try:
        action(t)
    except TrackingError:
        raise
    except Exception as exc:
        t.record_failure(what, exc)
        if t.strict:
            raise TrackingError(f"{what} failed: {exc}") from exc


def log_fit(
    estimator_class_name: str, params: Mapping[str, Any], component: str = "Training"
) -> None:
    """Log an estimator's parameters as ``<class>.<param>`` in ``component``."""

    def action(t: Trial) -> None:
        prefixed = {f"{estimator_class_name}.{k}": v for k, v in params.items()}
        target = t.hook_target(component)
        try:
            t.log_parameters(prefixed, component=target)
        except ParameterConflict:
            if target.explicit:
                raise
            # same estimator fitted again with other values: a fresh component keeps both fits
            fresh = t.open_component(component, explicit=False)
            t.log_parameters(prefixed, component=fresh)

    _safely(f"log_fit {estimator_class_name}", action)


def log_metrics(metrics: Mapping[str, Any], component: str = "Evaluation") -> None:
    """Log the numeric values of ``metrics``; other values are counted as not recorded.

    Nothing is logged inside :meth:`Trial.own_metrics`, where the caller logs them itself.
    """

    def action(t: Trial) -> None:
        if not t.hooks_log_metrics:  # the caller logs these itself (Trial.own_metrics)
            return
        target = t.hook_target(component)
        problems = []
        for name, value in metrics.items():
            try:
                t.log_metric(name, value, component=target)
            except ValueError as exc:
                problems.append(f"{name}: {exc}")
        if problems:
            raise ValueError("; ".join(problems))

    _safely("log_metrics", action)


def _target_for(t: Trial, component: str | None) -> Component | None:
    if component is None:
        return t.current_component()
    return t.hook_target(component)


def log_artifact(path: str | os.PathLike[str], component: str | None = None) -> None:
    """Store a local file (a plot, a report) with the trial."""
    _safely(
        f"log_artifact {os.fspath(path)}",
        lambda t: t.log_artifact(path, component=_target_for(t, component)),
    )


def log_input(name: str, uri: str, media_type: str | None = None) -> None:
    """Record an input path or URI."""
    _safely(
        f"log_input {name}",
        lambda t: t.log_input(name, uri, media_type, component=t.current_component()),
    )


def log_output(name: str, uri: str, media_type: str | None = None) -> None:
    """Record an output path or URI."""
    _safely(
        f"log_output {name}",
        lambda t: t.log_output(name, uri, media_type, component=t.current_component()),
    )


def set_tags(tags: Mapping[str, Any]) -> None:
    """Add tags to the open trial."""
    _safely("set_tags", lambda t: t.set_tags(tags))
