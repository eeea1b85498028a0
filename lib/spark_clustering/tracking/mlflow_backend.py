"""MLflow backend: experiment -> MLflow experiment, trial -> parent run, component -> nested run.

Any MLflow tracking server works: the default is a SQLite file ``mlflow.db`` in the working
directory; SageMaker's managed MLflow takes its ARN as the tracking URI through the
``sagemaker-mlflow`` plugin (the ``sagemaker-mlflow`` extra). mlflow is imported here only,
when this backend is chosen. Inputs and outputs become run tags ``input.<name>`` and
``output.<name>`` (with ``.media_type``): MLflow has no generic entity for a named URI.

An unreachable server must cost seconds, not the ~4 minutes of MLflow's default HTTP retries:
:data:`HTTP_DEFAULTS` are put into the environment (where MLflow reads them at each request)
for every variable the user has not set.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, TypeVar

from .config import TrackingConfig
from .core import ComponentData, ContainedFailure, TrialRecord

KIND_TAG = "spark_clustering.kind"
TRIAL_TAG = "spark_clustering.trial"
COMPONENT_TAG = "spark_clustering.component"
INDEX_TAG = "spark_clustering.index"
PARENT_TAG = "mlflow.parentRunId"
#: MLflow run status -> the status words the leaderboard uses for every backend (SageMaker's)
STATUS = {"FINISHED": "Completed", "FAILED": "Failed", "RUNNING": "InProgress", "KILLED": "Stopped"}

_T = TypeVar("_T")

#: MLflow's HTTP client settings (mlflow/environment_variables.py) used unless the user set them:
#: a 10 s connect/read timeout and 2 retries 1 s then 2 s apart (with up to 0.5 s of jitter), so
#: a request to a dead or silent server gives up after about 35 s instead of MLflow's 120 s
#: timeout times 7 retries with a backoff factor of 2.
HTTP_DEFAULTS: dict[str, str] = {
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER": "0.5",
}


def apply_http_defaults(env: Any = None) -> dict[str, str]:
    """Set each of :data:`HTTP_DEFAULTS` the environment lacks; returns those it set.

    Examples
    --------
    >>> sorted(apply_http_defaults({"MLFLOW_HTTP_REQUEST_TIMEOUT": "60"}))[0]
    'MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR'
    """
    env = os.environ if env is None else env
    applied = {}
    for name, value in HTTP_DEFAULTS.items():
        if not env.get(name):
            env[name] = applied[name] = value
    return applied


def _chunks(items: Sequence[_T], size: int) -> Iterator[Sequence[_T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class MlflowBackend:
    """Writes trials to an MLflow tracking store through ``MlflowClient``."""

    def __init__(self, config: TrackingConfig) -> None:
        try:
            from mlflow import MlflowClient
        except ImportError as exc:
            raise ImportError(
                "the mlflow tracking backend needs mlflow: pip install 'spark-clustering[mlflow]' "
                "(or choose backend='none' / SPARK_CLUSTERING_TRACKING=none)"
            ) from exc

        self.config = config
        self.uri = config.mlflow_uri()
        apply_http_defaults()
        self.client = MlflowClient(tracking_uri=self.uri)

    # ----------------------------------------------------------------------------- writing

    def _experiment_id(self, name: str, create: bool) -> str | None:
        from mlflow.exceptions import MlflowException

        exp = self.client.get_experiment_by_name(name)
        if exp is None and create:
            try:
                return str(
                    self.client.create_experiment(
                        name, artifact_location=self.config.artifact_location
                    )
                )
            except MlflowException:
                exp = self.client.get_experiment_by_name(name)  # created meanwhile by another job
                if exp is None:
                    raise
        if exp is None:
            return None
        if exp.lifecycle_stage != "active":
            raise RuntimeError(
                f"MLflow experiment {name!r} is deleted; restore it or choose another name"
            )
        return str(exp.experiment_id)

    def start_trial(self, experiment: str, trial: str, tags: dict[str, str]) -> dict[str, str]:
        experiment_id = self._experiment_id(experiment, create=True)
        assert experiment_id is not None
        run_tags = {**tags, KIND_TAG: "trial", TRIAL_TAG: trial}
        if "git.commit" in tags:
            run_tags["mlflow.source.git.commit"] = tags["git.commit"]
        run = self.client.create_run(experiment_id, run_name=trial, tags=run_tags)
        return {"experiment_id": experiment_id, "run_id": run.info.run_id}

    def set_tags(self, trial: dict[str, str], tags: dict[str, str]) -> None:
        self._log_batch(trial["run_id"], tags=tags)

    def start_component(self, trial: dict[str, str], data: ComponentData, index: int) -> str:
        run = self.client.create_run(
            trial["experiment_id"],
            run_name=data.name,
            tags={
                PARENT_TAG: trial["run_id"],
                KIND_TAG: "component",
                COMPONENT_TAG: str(data.name),
                INDEX_TAG: str(index),
            },
        )
        return str(run.info.run_id)

    def flush(self, trial: dict[str, str], component: str | None, data: ComponentData) -> None:
        run_id = component or trial["run_id"]
        tags: dict[str, str] = {}
        for kind, artifacts in (("input", data.inputs), ("output", data.outputs)):
            for art in artifacts.values():
                tags[f"{kind}.{art.name}"] = art.uri
                if art.media_type:
                    tags[f"{kind}.{art.name}.media_type"] = art.media_type
        self._log_batch(
            run_id,
            params={k: str(v) for k, v in data.params.items()},
            metrics=[(m.name, m.value, m.step, m.timestamp) for m in data.metrics],
            tags=tags,
        )
        for path, artifact_path in data.files:
            try:
                self.client.log_artifact(run_id, path, artifact_path)
            except Exception as exc:
                # the artifact store is not the tracking store: the run's data is written
                raise ContainedFailure(
                    f"artifact {os.path.basename(path)} not stored: {type(exc).__name__}: {exc}"
                ) from exc

    def _log_batch(
        self,
        run_id: str,
        params: dict[str, str] | None = None,
        metrics: Iterable[tuple[str, float, int, float]] = (),
        tags: dict[str, str] | None = None,
    ) -> None:
        from mlflow.entities import Metric, Param, RunTag

        # MLflow's log_batch limits: 100 params, 1000 metrics, 100 tags per call
        for chunk in _chunks([Param(k, v) for k, v in (params or {}).items()], 100):
            self.client.log_batch(run_id, params=list(chunk))
        points = [Metric(n, v, int(ts * 1000), s) for n, v, s, ts in metrics]
        for chunk_m in _chunks(points, 1000):
            self.client.log_batch(run_id, metrics=list(chunk_m))
        for chunk_t in _chunks([RunTag(k, v) for k, v in (tags or {}).items()], 100):
            self.client.log_batch(run_id, tags=list(chunk_t))

    def end_component(
        self, trial: dict[str, str], component: str, data: ComponentData, ok: bool
    ) -> None:
        self.flush(trial, component, data)
        self.client.set_terminated(component, "FINISHED" if ok else "FAILED")

    def end_trial(self, trial: dict[str, str], ok: bool) -> None:
        self.client.set_terminated(trial["run_id"], "FINISHED" if ok else "FAILED")

    # ----------------------------------------------------------------------------- reading

    def read_trials(self, experiment: str) -> list[TrialRecord]:
        experiment_id = self._experiment_id(experiment, create=False)
        if experiment_id is None:
            return []
        runs: list[Any] = []
        token = None
        while True:
            page = self.client.search_runs(
                [experiment_id], max_results=1000, page_token=token, order_by=["start_time ASC"]
            )
            runs.extend(page)
            token = page.token
            if not token:
                break
        children: dict[str, list[Any]] = {}
        parents = []
        for run in runs:
            parent = run.data.tags.get(PARENT_TAG)
            if parent:
                children.setdefault(parent, []).append(run)
            elif run.data.tags.get(KIND_TAG) == "trial":
                parents.append(run)
        records = []
        for run in parents:
            comps: list[tuple[str | None, dict[str, Any], dict[str, float]]] = [
                (None, dict(run.data.params), dict(run.data.metrics))
            ]
            kids = sorted(
                children.get(run.info.run_id, []),
                key=lambda r: int(r.data.tags.get(INDEX_TAG, "0") or 0),
            )
            for kid in kids:
                comps.append(
                    (
                        kid.data.tags.get(COMPONENT_TAG, kid.info.run_name),
                        dict(kid.data.params),
                        dict(kid.data.metrics),
                    )
                )
            records.append(
                TrialRecord(
                    experiment=experiment,
                    trial=run.data.tags.get(TRIAL_TAG, run.info.run_name),
                    run_id=run.info.run_id,
                    status=STATUS.get(run.info.status, run.info.status),
                    start_time=(run.info.start_time or time.time() * 1000) / 1000.0,
                    tags={k: v for k, v in run.data.tags.items() if not k.startswith("mlflow.")},
                    components=comps,
                )
            )
        return records
