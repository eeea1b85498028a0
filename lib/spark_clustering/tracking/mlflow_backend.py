"""MLflow backend: experiment -> MLflow experiment, trial -> parent run, component -> nested run.

Any MLflow tracking server works: the default is a SQLite file ``mlflow.db`` in the working
directory; SageMaker's managed MLflow takes its ARN as the tracking URI through the
``sagemaker-mlflow`` plugin (the ``sagemaker-mlflow`` extra). mlflow is imported here only,
when this backend is chosen. Inputs and outputs become run tags ``input.<name>`` and
``output.<name>`` (with ``.media_type``); an input logged with ``Trial.log_dataset`` is also an
MLflow dataset (``log_inputs``: absolute URI, digest, schema, ``mlflow.data.context``), which
the UI shows in the run's Datasets column.

Experiments are tagged ``mlflow.experimentKind = custom_model_development`` (set on those we log
into that have no kind yet), so MLflow 3's UI treats them as model development (runs), not as a
GenAI experiment (traces). The run context becomes MLflow's own system tags (user, source, git
commit), and the run's description (``mlflow.note.content``) says how the job's run id relates
to MLflow's.

An unreachable server must cost seconds, not the ~4 minutes of MLflow's default HTTP retries:
:data:`HTTP_DEFAULTS` are put into the environment (where MLflow reads them at each request)
for every variable the user has not set.
"""

from __future__ import annotations

import json
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
#: the experiment tag MLflow 3's UI reads to open an experiment as model development (runs)
#: rather than GenAI (traces); see mlflow/server/js (ExperimentKind)
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"
#: run context tag -> MLflow system tag (mlflow/utils/mlflow_tags.py)
SYSTEM_TAGS = {
    "git.commit": "mlflow.source.git.commit",
    "user": "mlflow.user",
    "source.name": "mlflow.source.name",
    "source.type": "mlflow.source.type",
}
NOTE_TAG = "mlflow.note.content"
#: the job's own run id (output paths, summary.json), as a tag of the MLflow run
JOB_RUN_TAG = "run_id"
DATASET_CONTEXT_TAG = "mlflow.data.context"
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


#: MLflow 3.17's UI takes the experiment kind from a GenAI / model training switch that
#: defaults to GenAI (kept in the browser); this query parameter sets it to model training
UI_QUERY = "?workflowType=machine_learning"


def ui_path(experiment_id: str, run_id: str | None = None) -> str:
    """The run's (or experiment's runs) page, relative to the MLflow server's address (the UI
    routes after ``#``), opening as model training.

    Examples
    --------
    >>> ui_path("1", "ab12")
    '#/experiments/1/runs/ab12?workflowType=machine_learning'
    """
    return f"#/experiments/{experiment_id}/runs{'/' + run_id if run_id else ''}{UI_QUERY}"


def _note(tags: dict[str, str], handle: dict[str, str]) -> str:
    """The run's description (Markdown, shown on its page): how its ids relate."""
    lines = [
        f"Job run id `{tags[JOB_RUN_TAG]}` (tag `{JOB_RUN_TAG}`): it names the job's outputs; "
        f"their `summary.json` names this MLflow run under `tracking.run` "
        f"(run `{handle['run_id']}`, experiment {handle['experiment_id']}).",
    ]
    if tags.get("model_version"):
        lines.append(f"Model version `{tags['model_version']}`.")
    if tags.get("prepare.run_id"):
        lines.append(
            f"Input prepared by the prepare job run `{tags['prepare.run_id']}`"
            + (
                f" (MLflow run `{tags['prepare.tracking_run_id']}`)."
                if tags.get("prepare.tracking_run_id")
                else "."
            )
        )
    return "\n\n".join(lines)


def dataset_input(art: Any) -> Any:
    """The MLflow ``DatasetInput`` of an input logged with ``Trial.log_dataset``: the source is
    the URI as MLflow's file-system dataset sources write it (``{"uri": ...}``, source type
    ``local`` for ``file:``, else the scheme), the schema in MLflow's ``mlflow_colspec`` form."""
    from urllib.parse import urlparse

    from mlflow.entities import Dataset, DatasetInput, InputTag

    ds = art.dataset
    scheme = urlparse(art.uri).scheme
    schema = None
    if ds.schema:
        colspec = [{"name": k, "type": v} for k, v in ds.schema.items()]
        schema = json.dumps({"mlflow_colspec": colspec})
    entity = Dataset(
        name=art.name,
        digest=ds.digest,
        source_type="local" if scheme in ("", "file") else scheme,
        source=json.dumps({"uri": art.uri}),
        schema=schema,
        profile=json.dumps(ds.profile) if ds.profile else None,
    )
    return DatasetInput(entity, tags=[InputTag(DATASET_CONTEXT_TAG, ds.context)])


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
                        name,
                        artifact_location=self.config.artifact_location,
                        tags={EXPERIMENT_KIND_TAG: EXPERIMENT_KIND},
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
        if create and not exp.tags.get(EXPERIMENT_KIND_TAG):
            # created before we tagged (or by hand): MLflow 3 would open it on traces
            self.client.set_experiment_tag(exp.experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
        return str(exp.experiment_id)

    def start_trial(self, experiment: str, trial: str, tags: dict[str, str]) -> dict[str, str]:
        experiment_id = self._experiment_id(experiment, create=True)
        assert experiment_id is not None
        run_tags = {**tags, KIND_TAG: "trial", TRIAL_TAG: trial}
        for ours, system in SYSTEM_TAGS.items():
            if ours in tags:
                run_tags[system] = tags[ours]
        run = self.client.create_run(experiment_id, run_name=trial, tags=run_tags)
        handle = {"experiment_id": experiment_id, "run_id": run.info.run_id}
        if JOB_RUN_TAG in tags:
            self._log_batch(run.info.run_id, tags={NOTE_TAG: _note(tags, handle)})
        return handle

    def reference(self, trial: dict[str, str]) -> dict[str, str]:
        """The run's ids and its path in the MLflow UI (relative to the server's address)."""
        from ..redact import redact_text

        return {
            "backend": "mlflow",
            "tracking_uri": redact_text(self.uri),
            "experiment_id": trial["experiment_id"],
            "run_id": trial["run_id"],
            "ui_path": ui_path(trial["experiment_id"], trial["run_id"]),
            "experiment_ui_path": ui_path(trial["experiment_id"]),
        }

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
        datasets = [dataset_input(a) for a in data.inputs.values() if a.dataset is not None]
        if datasets:
            self.client.log_inputs(run_id, datasets=datasets)
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
