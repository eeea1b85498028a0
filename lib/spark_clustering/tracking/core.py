"""Trials and components: the one small API, failure isolation and the active-trial stack.

A :class:`Trial` checks every name and value first, then hands plain data to a backend
(``mlflow``, ``sagemaker`` or ``none``). Tracking never stops the work it records: the first
backend failure (an unreachable server, a read-only store, a permission denied) is logged once
with its root cause, and tracking is then switched off for that store for the rest of the
trial, and of the run when the job opened one (:func:`health_scope`); every call not sent is
counted, so
:meth:`Trial.summary` and :meth:`TrackingHealth.text` say what was recorded and what was not.
With ``strict`` the first failure raises :class:`TrackingError` instead. Metrics, parameters and
artifacts are buffered per component and written when it ends (or the metric buffer fills), so
a sweep makes few calls to a throttled API.
"""

from __future__ import annotations

import dataclasses
import importlib
import logging
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Protocol

from ..redact import redact_text
from .config import TrackingConfig, resolve_config
from .names import (
    coerce_metric,
    coerce_param,
    redact_tags,
    validate_key,
    validate_media_type,
    validate_name,
)

log = logging.getLogger(__name__)

#: backend name -> "module:class", imported on first use (mlflow and boto3 stay unimported).
BACKENDS: dict[str, str] = {
    "mlflow": "spark_clustering.tracking.mlflow_backend:MlflowBackend",
    "sagemaker": "spark_clustering.tracking.sagemaker_backend:SageMakerBackend",
    "none": "spark_clustering.tracking.core:NoneBackend",
}

ParamValue = str | int | float


class TrackingError(RuntimeError):
    """A tracking backend failed while the trial was ``strict``."""


class ContainedFailure(RuntimeError):
    """A backend failure that concerns one item only (an artifact the artifact store refused):
    counted as not recorded without switching tracking off."""


class ParameterConflict(ValueError):
    """A parameter name was logged again, in the same component, with another value."""


@dataclasses.dataclass
class MetricPoint:
    """One metric value; ``timestamp`` in seconds since the epoch."""

    name: str
    value: float
    step: int
    timestamp: float


@dataclasses.dataclass
class Dataset:
    """What identifies a data set logged as an input: where MLflow shows a Dataset.

    ``digest`` changes when the data changes (the jobs derive it from the files' names, sizes
    and modification times, not from a scan); ``schema`` maps column names to types;
    ``profile`` holds a few figures (rows, files, bytes); ``context`` is how the run used it
    (``training``, ``evaluation``...).
    """

    digest: str
    schema: dict[str, str] | None = None
    profile: dict[str, Any] | None = None
    context: str = "training"


@dataclasses.dataclass
class Artifact:
    """An input or output: a named URI with an optional media type (and, for an input logged
    with :meth:`Trial.log_dataset`, what identifies the data set)."""

    name: str
    uri: str
    media_type: str | None = None
    dataset: Dataset | None = None


@dataclasses.dataclass
class ComponentData:
    """What a component (or the trial itself) logged, as sent at each flush."""

    name: str | None
    params: dict[str, ParamValue] = dataclasses.field(default_factory=dict)
    metrics: list[MetricPoint] = dataclasses.field(default_factory=list)
    inputs: dict[str, Artifact] = dataclasses.field(default_factory=dict)
    outputs: dict[str, Artifact] = dataclasses.field(default_factory=dict)
    files: list[tuple[str, str | None]] = dataclasses.field(default_factory=list)
    start_time: float = dataclasses.field(default_factory=time.time)


@dataclasses.dataclass
class TrialRecord:
    """One trial as read back for the leaderboard."""

    experiment: str
    trial: str
    run_id: str
    status: str | None
    start_time: float | None
    tags: dict[str, str]
    #: component name (None: the trial itself) -> (params, final metric values)
    components: list[tuple[str | None, dict[str, Any], dict[str, float]]]


class TrackingBackend(Protocol):
    """What a backend implements; handles are whatever the backend needs to find its entities."""

    def start_trial(self, experiment: str, trial: str, tags: dict[str, str]) -> Any: ...

    def set_tags(self, trial: Any, tags: dict[str, str]) -> None: ...

    def start_component(self, trial: Any, data: ComponentData, index: int) -> Any: ...

    def flush(self, trial: Any, component: Any, data: ComponentData) -> None: ...

    def end_component(self, trial: Any, component: Any, data: ComponentData, ok: bool) -> None: ...

    def end_trial(self, trial: Any, ok: bool) -> None: ...

    def read_trials(self, experiment: str) -> list[TrialRecord]: ...

    def reference(self, trial: Any) -> dict[str, str] | None: ...


class NoneBackend:
    """Logs nothing: for users who opt out."""

    def __init__(self, config: TrackingConfig) -> None:
        self.config = config

    def start_trial(self, experiment: str, trial: str, tags: dict[str, str]) -> Any:
        return None

    def set_tags(self, trial: Any, tags: dict[str, str]) -> None:
        return None

    def start_component(self, trial: Any, data: ComponentData, index: int) -> Any:
        return None

    def flush(self, trial: Any, component: Any, data: ComponentData) -> None:
        return None

    def end_component(self, trial: Any, component: Any, data: ComponentData, ok: bool) -> None:
        return None

    def end_trial(self, trial: Any, ok: bool) -> None:
        return None

    def read_trials(self, experiment: str) -> list[TrialRecord]:
        return []

    def reference(self, trial: Any) -> dict[str, str] | None:
        return None


def make_backend(config: TrackingConfig) -> TrackingBackend:
    """Import and build the backend named by ``config.backend``."""
    module_name, _, cls = BACKENDS[config.backend].partition(":")
    backend: TrackingBackend = getattr(importlib.import_module(module_name), cls)(config)
    return backend


@dataclasses.dataclass
class Failure:
    """Something that was not recorded, and why."""

    what: str
    error: str


class Component:
    """A step of a trial (Preprocessing, Training, Evaluation); use :meth:`Trial.component`."""

    def __init__(self, trial: Trial, name: str | None, explicit: bool, index: int) -> None:
        self.trial = trial
        self.name = name
        self.explicit = explicit
        self.index = index
        self.data = ComponentData(name)
        self.handle: Any = None
        self.started = False
        self.closed = False
        #: every parameter logged so far (data.params is cleared at each flush)
        self.logged_params: dict[str, ParamValue] = {}

    def __repr__(self) -> str:
        return f"Component({self.name!r}, trial={self.trial.name!r})"


class Trial:
    """One trial of an experiment: parameters, metrics, inputs, outputs and artifacts.

    Use :func:`trial` (a context manager) or :func:`start_trial` / :meth:`end`.

    Parameters
    ----------
    experiment, name : str
        Logical names (see ``validate_name``); SageMaker entity names are derived from them.
    tags : mapping, optional
        Extra tags; credential-like keys are redacted.
    backend : {"mlflow", "sagemaker", "none"}, optional
        Default from ``SPARK_CLUSTERING_TRACKING``, the config file, else ``mlflow``.
    config : path, mapping or TrackingConfig, optional
        Config file (TOML ``[tracking]`` / JSON ``"tracking"``) or options.
    strict : bool, optional
        Raise :class:`TrackingError` when the backend fails instead of carrying on.
    **options
        Any other :class:`TrackingConfig` field (``tracking_uri``, ``artifact_uri``...).

    Examples
    --------
    >>> from spark_clustering import tracking
    >>> with tracking.trial("demo", "kmeans-k4", backend="none") as t:
    ...     with t.component("Training"):
    ...         t.log_parameters({"k": 4})
    ...         t.log_metric("silhouette", 0.5)
    >>> t.summary()["not_recorded"]
    0
    """

    def __init__(
        self,
        experiment: str,
        name: str,
        tags: Mapping[str, Any] | None = None,
        *,
        backend: str | None = None,
        config: Any = None,
        strict: bool | None = None,
        **options: Any,
    ) -> None:
        self.experiment = validate_name("experiment", experiment)
        self.name = validate_name("trial", name)
        _check_tags(tags or {}, set())
        self.config = resolve_config(backend, config=config, strict=strict, **options)
        self.strict = self.config.strict
        self.user_tags = redact_tags(tags or {})
        self.backend: TrackingBackend | None = None
        self.handle: Any = None
        #: the trial itself, where logs outside any component go
        self.root = Component(self, None, explicit=True, index=0)
        self._components: list[Component] = []
        self._stack: list[Component] = []
        self._implicit: Component | None = None
        self._counts: dict[str, int] = {}
        self._lock = threading.RLock()
        self._broken: str | None = None
        self.failures: list[Failure] = []
        self.recorded = 0
        self.status: str | None = None
        self._staging: str | None = None
        #: the store this trial writes to (what an outage switches off)
        self.target = self.config.target()
        self.health: TrackingHealth | None = None
        #: > 0 while the caller logs the metrics it computes itself (:meth:`own_metrics`)
        self._own_metrics = 0

    # ----------------------------------------------------------------------------- lifecycle

    def __enter__(self) -> Trial:
        return self.start()

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self.end(ok=exc_type is None)

    def start(self) -> Trial:
        """Open the trial in the backend, tag it with the run context and make it active."""
        from .context import run_context

        with self._lock:
            if self.status is not None:
                raise RuntimeError(f"trial {self.name!r} was already started")
            self.status = "running"
            _push(self)
            self.health = current_health()
            try:
                earlier = self.health.outage(self.target)
                if earlier is not None:
                    # switched off by an earlier trial of this run: do not wait for it again
                    self._broken = f"tracking switched off after an earlier failure: {earlier}"
                    self.failures.append(Failure(f"start trial {self.name}", self._broken))
                    return self
                self.backend = self._guard(
                    "open backend", lambda: make_backend(self.config), count=False
                )
                if self.backend is None:
                    self._broken = self.failures[-1].error
                    return self
                tags = {**redact_tags(run_context()), **self.user_tags}
                what = f"start trial {self.experiment}/{self.name}"
                before = len(self.failures)
                self.handle = self._guard(
                    what, lambda: self._be().start_trial(self.experiment, self.name, tags)
                )
                if len(self.failures) > before:
                    self._broken = self.failures[-1].error
            except BaseException:
                _pop(self)
                self.status = None
                raise
        return self

    def end(self, ok: bool = True) -> None:
        """Close open components, flush everything and close the trial (no-op if closed)."""
        with self._lock:
            if self.status in (None, "completed", "failed"):
                return
            try:
                for comp in list(reversed(self._stack)):
                    self._end_component(comp, ok)
                if self._implicit is not None:
                    self._end_component(self._implicit, ok)
                self._flush(self.root)
                if self._usable(self.root, f"end trial {self.name}"):
                    self._guard(
                        f"end trial {self.name}", lambda: self._be().end_trial(self.handle, ok)
                    )
            finally:
                self.status = "completed" if ok else "failed"
                _pop(self)
                if self._staging is not None:
                    shutil.rmtree(self._staging, ignore_errors=True)
                    self._staging = None
                if self.health is not None:
                    self.health.add(self)
                if self.failures:
                    # the cause was logged once when it happened; this is the count, quietly
                    log.info("tracking summary: %s", self.summary_text())

    # ----------------------------------------------------------------------------- components

    @contextmanager
    def component(self, name: str) -> Iterator[Component]:
        """A step of this trial; logs inside the block go to it."""
        comp = self.open_component(name)
        ok = False
        try:
            yield comp
            ok = True
        finally:
            self.close_component(comp, ok)

    def open_component(self, name: str, *, explicit: bool = True) -> Component:
        """Open a component without a ``with`` block (close it with :meth:`close_component`)."""
        validate_name("component", name)
        with self._lock:
            self._require_open()
            if explicit and self._implicit is not None:
                self._end_component(self._implicit, True)
            comp = Component(self, name, explicit, len(self._components) + 1)
            self._components.append(comp)
            if explicit:
                self._stack.append(comp)
            else:
                self._implicit = comp
            self._start_component(comp)
            return comp

    def close_component(self, comp: Component, ok: bool = True) -> None:
        """Flush and close a component opened with :meth:`open_component`."""
        with self._lock:
            self._end_component(comp, ok)

    def _start_component(self, comp: Component) -> None:
        if self.backend is None or self._broken:
            return
        before = len(self.failures)
        comp.handle = self._guard(
            f"start component {comp.name}",
            lambda: self._be().start_component(self.handle, comp.data, comp.index),
        )
        comp.started = len(self.failures) == before

    def _end_component(self, comp: Component, ok: bool) -> None:
        if comp.closed:
            return
        comp.closed = True
        if comp in self._stack:
            self._stack.remove(comp)
        if comp is self._implicit:
            self._implicit = None
        if self._usable(comp, f"end component {comp.name}"):
            self._guard(
                f"end component {comp.name}",
                lambda: self._be().end_component(self.handle, comp.handle, comp.data, ok),
            )
        comp.data = ComponentData(comp.name)

    def current_component(self) -> Component | None:
        """The innermost explicit component, else the one a hook opened, else None."""
        if self._stack:
            return self._stack[-1]
        return self._implicit

    def hook_target(self, component: str) -> Component:
        """Where an estimator hook logs: the user's open component, else ``component``."""
        with self._lock:
            if self._stack:
                return self._stack[-1]
            if self._implicit is not None and self._implicit.name == component:
                return self._implicit
            if self._implicit is not None:
                self._end_component(self._implicit, True)
            return self.open_component(component, explicit=False)

    def _target(self) -> Component:
        return self._stack[-1] if self._stack else self.root

    # ----------------------------------------------------------------------------- logging

    def log_parameters(
        self, params: Mapping[str, Any], *, component: Component | None = None
    ) -> None:
        """Log parameters; credential-like names are redacted. A name keeps its first value."""
        target = component or self._target()
        checked = {validate_key("parameter", k): coerce_param(k, v) for k, v in params.items()}
        with self._lock:
            self._require_open()
            for key, value in checked.items():
                old = target.logged_params.get(key)
                if old is not None and old != value:
                    raise ParameterConflict(
                        f"parameter {key!r} was already logged as {old!r} in "
                        f"{self._where(target)}; got {value!r} (a parameter keeps one value: "
                        "use another name or a new component)"
                    )
            target.logged_params.update(checked)
            target.data.params.update(checked)

    def log_parameter(self, name: str, value: Any) -> None:
        """Log one parameter."""
        self.log_parameters({name: value})

    def log_metric(
        self,
        name: str,
        value: Any,
        step: int | None = None,
        *,
        timestamp: float | None = None,
        component: Component | None = None,
    ) -> None:
        """Log a metric value at ``step`` (default 0); the leaderboard shows the last step."""
        validate_key("metric", name)
        number = coerce_metric(value)
        if step is not None and (isinstance(step, bool) or not isinstance(step, int) or step < 0):
            raise ValueError(f"step={step!r} is not valid; accepted: an integer >= 0")
        target = component or self._target()
        point = MetricPoint(name, number, step or 0, timestamp or time.time())
        with self._lock:
            self._require_open()
            target.data.metrics.append(point)
            if len(target.data.metrics) >= self.config.metric_buffer:
                self._flush(target)

    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        """Log several metrics at one step."""
        for name, value in metrics.items():
            self.log_metric(name, value, step)

    def log_input(
        self,
        name: str,
        uri: str,
        media_type: str | None = None,
        *,
        component: Component | None = None,
    ) -> None:
        """Record an input (a path or URI, not uploaded)."""
        self._log_io("inputs", name, uri, media_type, component)

    def log_dataset(
        self,
        name: str,
        uri: str,
        dataset: Dataset,
        media_type: str | None = None,
        *,
        component: Component | None = None,
    ) -> None:
        """Record an input data set: its absolute URI and what identifies it (digest, schema).

        MLflow shows it in the run's Datasets (``log_inputs``, with ``dataset.context`` as the
        ``mlflow.data.context`` tag) and keeps the ``input.<name>`` tag; SageMaker records an
        input artifact and the digest as the parameter ``input.<name>.digest``.
        """
        if not isinstance(dataset, Dataset) or not str(dataset.digest):
            raise ValueError(f"dataset={dataset!r} is not valid; accepted: a Dataset with a digest")
        validate_key("dataset context", dataset.context)
        self._log_io("inputs", name, uri, media_type, component, dataset)

    def log_output(
        self,
        name: str,
        uri: str,
        media_type: str | None = None,
        *,
        component: Component | None = None,
    ) -> None:
        """Record an output (a path or URI, not uploaded)."""
        self._log_io("outputs", name, uri, media_type, component)

    def _log_io(
        self,
        kind: str,
        name: str,
        uri: str,
        media_type: str | None,
        component: Component | None,
        dataset: Dataset | None = None,
    ) -> None:
        validate_key(kind[:-1], name)
        if not isinstance(uri, (str, os.PathLike)) or not str(uri):
            raise ValueError(f"uri={uri!r} is not valid; accepted: a non-empty path or URI")
        text = redact_text(str(uri))
        if len(text) > 2048:
            raise ValueError(f"uri={text[:60]!r}... is {len(text)} characters; accepted: <= 2048")
        media_type = validate_media_type(media_type)
        target = component or self._target()
        with self._lock:
            self._require_open()
            getattr(target.data, kind)[name] = Artifact(name, text, media_type, dataset)

    def log_artifact(
        self,
        path: str | os.PathLike[str],
        artifact_path: str | None = None,
        *,
        component: Component | None = None,
    ) -> None:
        """Store a local file (a plot, a report) in the backend's artifact store.

        The file is copied when logged (it is written to the backend when the component ends),
        so the caller may overwrite or delete it right away.
        """
        local = os.fspath(path)
        if not os.path.isfile(local):
            raise ValueError(f"path={local!r} is not valid; accepted: an existing local file")
        if artifact_path is not None:
            validate_key("artifact_path", artifact_path)
        target = component or self._target()
        with self._lock:
            self._require_open()
            if self._staging is None:
                self._staging = tempfile.mkdtemp(prefix="spark-clustering-artifacts-")
            copy_dir = os.path.join(self._staging, str(len(os.listdir(self._staging))))
            os.makedirs(copy_dir)
            copy = shutil.copy2(local, os.path.join(copy_dir, os.path.basename(local)))
            target.data.files.append((str(copy), artifact_path))

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        """Add tags to the trial (credential-like keys redacted)."""
        _check_tags(tags, set(self.user_tags))
        clean = redact_tags(tags)
        with self._lock:
            self._require_open()
            self.user_tags.update(clean)
            if self._usable(self.root, "set tags"):
                self._guard("set tags", lambda: self._be().set_tags(self.handle, clean))

    @contextmanager
    def own_metrics(self) -> Iterator[None]:
        """Inside, the metric hooks log nothing: the caller logs the figures it computes
        itself, once, where they belong (a job puts its evaluation on the trial, not on an
        ``Evaluation`` component as well)."""
        with self._lock:
            self._own_metrics += 1
        try:
            yield
        finally:
            with self._lock:
                self._own_metrics -= 1

    @property
    def hooks_log_metrics(self) -> bool:
        """False inside :meth:`own_metrics`."""
        return self._own_metrics == 0

    def reference(self) -> dict[str, str] | None:
        """Where the backend keeps this trial (MLflow: experiment and run ids, the UI path;
        SageMaker: trial name and ARN), for a job's summary; None when nothing was opened."""
        if self.backend is None or self.handle is None:
            return None
        try:
            return self.backend.reference(self.handle)
        except Exception as exc:  # a reference is a convenience: never fail the job for it
            log.debug("no tracking reference: %s", exc)
            return None

    def flush(self) -> None:
        """Write everything buffered so far (components stay open)."""
        with self._lock:
            for comp in [self.root, *self._components]:
                if not comp.closed:
                    self._flush(comp)

    def _flush(self, comp: Component) -> None:
        data = comp.data
        if not (data.params or data.metrics or data.inputs or data.outputs or data.files):
            return
        if self._usable(comp, f"flush {self._where(comp)}"):
            self._guard(
                f"flush {self._where(comp)}",
                lambda: self._be().flush(self.handle, comp.handle, data),
            )
        comp.data = ComponentData(comp.name, start_time=data.start_time)

    # ----------------------------------------------------------------------------- failures

    def _usable(self, comp: Component, what: str) -> bool:
        if self.backend is None or self._broken:
            self.failures.append(Failure(what, f"not sent: {self._broken}"))
            return False
        if comp is not self.root and not comp.started:
            self.failures.append(Failure(what, f"component {comp.name} was not started"))
            return False
        return True

    def _guard(self, what: str, call: Callable[[], Any], count: bool = True) -> Any:
        """``call()``, or None when it failed; ``count``: a success sends something to the store
        (opening the backend only builds a client)."""
        if self._broken:
            self.failures.append(Failure(what, f"not sent: {self._broken}"))
            return None
        try:
            result = call()
        except Exception as exc:
            cause = root_cause(exc)
            self.failures.append(Failure(what, cause))
            if self.strict:
                raise TrackingError(f"{what} failed: {cause}") from exc
            if isinstance(exc, ContainedFailure):
                log.warning("tracking: %s not recorded: %s", what, cause)
            else:
                self._broken = f"tracking switched off after {what} failed: {cause}"
                health = self.health or current_health()
                where = what if self.name in what else f"{what} ({self.experiment}/{self.name})"
                health.switch_off(self.target, where, cause)
            return None
        self.recorded += count
        return result

    def record_failure(self, what: str, exc: BaseException) -> None:
        """Count a failure seen outside a backend call (used by the hooks)."""
        self.failures.append(Failure(what, redact_text(f"{type(exc).__name__}: {exc}")))
        log.warning("tracking: %s not recorded: %s", what, redact_text(str(exc)))

    def _be(self) -> TrackingBackend:
        if self.backend is None:  # callers check _usable first
            raise RuntimeError("tracking backend is not open")
        return self.backend

    def _require_open(self) -> None:
        if self.status != "running":
            raise RuntimeError(f"trial {self.name!r} is not open (status {self.status!r})")

    def _where(self, comp: Component) -> str:
        return f"trial {self.name}" if comp is self.root else f"component {comp.name}"

    def summary(self) -> dict[str, Any]:
        """What was recorded and what was not: for a job's final report."""
        return {
            "backend": self.config.backend,
            "experiment": self.experiment,
            "trial": self.name,
            "status": self.status,
            "recorded_calls": self.recorded,
            "not_recorded": len(self.failures),
            "switched_off": self._broken,
            "failures": [dataclasses.asdict(f) for f in self.failures],
            "run": self.reference(),
        }

    def summary_text(self) -> str:
        """The counts, then each distinct failure once (a switched-off store repeats one)."""
        total = self.recorded + len(self.failures)
        head = (
            f"{self.config.backend} trial {self.experiment}/{self.name}: "
            f"{self.recorded} of {total} calls recorded, {len(self.failures)} not recorded"
        )
        lines = [head]
        for failure in self.failures:
            line = f"  - {failure.what}: {failure.error}"
            if not failure.error.startswith("not sent: ") and line not in lines:
                lines.append(line)
        return "\n".join(lines)


# --------------------------------------------------------------------------------- health


def root_cause(exc: BaseException) -> str:
    """``"<Type>: <message>"`` of the innermost exception of ``exc``'s chain, one line, redacted.

    Wrappers say little: SQLAlchemy's "raised as a result of Query-invoked autoflush" around
    ``sqlite3.OperationalError: attempt to write a readonly database``, MLflow's "API request to
    ... failed" around ``ConnectionRefusedError``; the innermost exception is what went wrong.
    """
    if isinstance(exc, ImportError):  # ours say what to install; the inner one does not
        return redact_text(f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
    seen = {id(exc)}
    inner = exc
    while True:
        nxt = inner.__cause__ or (None if inner.__suppress_context__ else inner.__context__)
        if nxt is None or id(nxt) in seen:
            break
        seen.add(id(nxt))
        inner = nxt
    lines = [line.strip() for line in str(inner).splitlines() if line.strip()]
    text = f"{type(inner).__name__}: {lines[0] if lines else '(no message)'}"
    return redact_text(text if len(text) <= 300 else f"{text[:297]}...")


class TrackingHealth:
    """What the trials of one run recorded, together, and the stores that failed.

    A store that failed once is switched off (:meth:`switch_off`): later trials of the same run
    do not contact it, so an outage costs one timeout, not one per trial.
    """

    def __init__(self) -> None:
        self.outages: dict[str, str] = {}
        self.backends: set[str] = set()
        self.trials = 0
        self.recorded = 0
        self.not_recorded = 0
        self.other: Failure | None = None
        self._lock = threading.Lock()

    def outage(self, target: str) -> str | None:
        """The cause that switched ``target`` off, or None."""
        with self._lock:
            return self.outages.get(target)

    def switch_off(self, target: str, what: str, cause: str) -> bool:
        """Record that ``target`` failed; True (and one warning logged) the first time only."""
        with self._lock:
            if target in self.outages:
                return False
            self.outages[target] = cause
        log.warning(
            "tracking: %s failed at %s: %s; tracking is switched off for the rest of this run "
            "(the clustering goes on)",
            what,
            target,
            cause,
        )
        return True

    def add(self, trial: Trial) -> None:
        """Count a finished trial's calls."""
        with self._lock:
            self.backends.add(trial.config.backend)
            if trial.config.backend == "none":  # its calls go nowhere: nothing to count
                return
            self.trials += 1
            self.recorded += trial.recorded
            self.not_recorded += len(trial.failures)
            if self.other is None and trial.failures:
                self.other = trial.failures[0]

    def summary(self) -> dict[str, Any]:
        """``status``: ``off`` (backend none), ``ok``, ``failed`` (a store was switched off) or
        ``partial`` (some calls were not recorded), with the counts and the causes."""
        with self._lock:
            total = self.recorded + self.not_recorded
            if self.outages:
                status = "failed"
            elif self.backends <= {"none"}:
                status = "off"
            elif self.not_recorded:
                status = "partial"
            else:
                status = "ok"
            out: dict[str, Any] = {
                "status": status,
                "backends": sorted(self.backends),
                "trials": self.trials,
                "recorded_calls": self.recorded,
                "not_recorded": self.not_recorded,
                "calls": total,
            }
            if self.outages:
                out["causes"] = dict(self.outages)
            if self.other is not None and not self.outages:
                out["first_failure"] = dataclasses.asdict(self.other)
            return out

    def text(self) -> str:
        """One line for a job's printed summary, e.g.
        ``tracking: failed (mlflow sqlite:///m.db: OperationalError: ...) - 0 of 7 calls recorded``.
        """
        s = self.summary()
        counts = f"{s['recorded_calls']} of {s['calls']} calls recorded"
        if s["status"] == "off":
            return "tracking: off"
        if s["status"] == "failed":
            causes = "; ".join(f"{t}: {c}" for t, c in s["causes"].items())
            return f"tracking: failed ({causes}) - {counts}"
        if s["status"] == "partial":
            first = s["first_failure"]
            return (
                f"tracking: partial - {counts} (first not recorded: {first['what']}: "
                f"{first['error']})"
            )
        return f"tracking: ok - {counts}"


_HEALTH: list[TrackingHealth] = []
_HEALTH_LOCK = threading.Lock()


def current_health() -> TrackingHealth:
    """The health of the innermost open :func:`health_scope`; outside any, a new one, so a
    trial opened on its own (a notebook cell) tries its store again."""
    with _HEALTH_LOCK:
        return _HEALTH[-1] if _HEALTH else TrackingHealth()


@contextmanager
def health_scope() -> Iterator[TrackingHealth]:
    """One run of a job: the trials opened inside share one :class:`TrackingHealth`.

    Nested scopes share the outermost one (a sweep's trials and its best trial's outputs are
    one run). A store switched off inside is tried again by the next run.
    """
    with _HEALTH_LOCK:
        outer = _HEALTH[-1] if _HEALTH else None
        health = outer or TrackingHealth()
        _HEALTH.append(health)
    try:
        yield health
    finally:
        with _HEALTH_LOCK:
            _HEALTH.pop()


def read_trials_safely(config: TrackingConfig, experiment: str) -> list[TrialRecord] | None:
    """The experiment's trials, or None when the store cannot be read (switched off then).

    Examples
    --------
    >>> from spark_clustering.tracking.config import resolve_config
    >>> read_trials_safely(resolve_config("none"), "demo")
    []
    """
    health = current_health()
    target = config.target()
    if health.outage(target) is not None:
        return None
    try:
        return make_backend(config).read_trials(experiment)
    except Exception as exc:
        if config.strict:
            raise TrackingError(f"read trials of {experiment} failed: {exc}") from exc
        health.switch_off(target, f"read trials of {experiment}", root_cause(exc))
        return None


#: SageMaker allows 50 tags per resource; the run context and our own bookkeeping use up to 15.
MAX_USER_TAGS = 35


def _check_tags(tags: Mapping[str, Any], existing: set[str]) -> None:
    for key in tags:
        validate_key("tags", key)
    total = len(existing | set(tags))
    if total > MAX_USER_TAGS:
        raise ValueError(
            f"tags: {total} user tags on one trial is too many; accepted: at most "
            f"{MAX_USER_TAGS} (SageMaker's 50 tags per resource, less the run context)"
        )


# --------------------------------------------------------------------------------- active trial

_ACTIVE: list[Trial] = []
_ACTIVE_LOCK = threading.Lock()


def _push(t: Trial) -> None:
    with _ACTIVE_LOCK:
        _ACTIVE.append(t)


def _pop(t: Trial) -> None:
    with _ACTIVE_LOCK:
        if t in _ACTIVE:
            _ACTIVE.remove(t)


def active_trial() -> Trial | None:
    """The most recently opened trial that is still open, or None."""
    with _ACTIVE_LOCK:
        return _ACTIVE[-1] if _ACTIVE else None


@contextmanager
def trial(
    experiment: str,
    name: str,
    tags: Mapping[str, Any] | None = None,
    **kwargs: Any,
) -> Iterator[Trial]:
    """Open a trial for the duration of a ``with`` block (see :class:`Trial`).

    Examples
    --------
    >>> from spark_clustering import tracking
    >>> with tracking.trial("demo", "dbscan-eps0.31", backend="none") as t:
    ...     t.log_metric("silhouette", 0.5)
    """
    t = Trial(experiment, name, tags, **kwargs)
    t.start()
    ok = False
    try:
        yield t
        ok = True
    finally:
        t.end(ok=ok)


def start_trial(
    experiment: str, name: str, tags: Mapping[str, Any] | None = None, **kwargs: Any
) -> Trial:
    """Open a trial and leave it open (notebooks); close it with ``Trial.end()``."""
    return Trial(experiment, name, tags, **kwargs).start()
