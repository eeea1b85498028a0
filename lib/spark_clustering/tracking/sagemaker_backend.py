"""SageMaker Experiments backend: experiments, trials and trial components through boto3.

Structure: a logical experiment is one or more SageMaker experiments ("shards": ``name``,
``name-2``, ...) tagged ``spark-clustering:experiment``; a trial is a SageMaker trial named
``<trial>-<run id>``; each component is a trial component associated with it, holding
parameters, input/output artifacts and metrics (``sagemaker-metrics`` BatchPutMetrics). This is
the structure SageMaker's own Run API builds (experiment -> trial -> trial component), without
its single ``Default-Run-Group`` trial, and it works outside training jobs.

Quotas: past ``max_trials_per_experiment`` (300) trials a new shard is created, and a
``ResourceLimitExceeded`` from CreateTrial moves on to the next shard as well; past
``max_components_per_trial`` (50) components a trial continues in a part trial
``<trial>-<run id>-p2`` tagged with the same run id. Throttled calls are retried by botocore's
``standard`` retry mode (exponential backoff with jitter, ``max_attempts`` attempts).

boto3 is imported here only. Clients are built per backend from the configuration (region,
endpoint, profile), never at import time.
"""

from __future__ import annotations

import datetime as dt
import os
import threading
import uuid
from collections.abc import Iterator
from typing import Any

from .config import TrackingConfig
from .core import ComponentData, ContainedFailure, TrialRecord
from .names import sagemaker_name, sagemaker_tag_value

TAG = "spark-clustering:"
EXPERIMENT_TAG = TAG + "experiment"
SHARD_TAG = TAG + "shard"
TRIAL_TAG = TAG + "trial"
RUN_TAG = TAG + "run-id"
PART_TAG = TAG + "part"
STATUS_TAG = TAG + "status"
#: parameter holding a component's logical name and index (display names must be sanitised)
COMPONENT_PARAM = TAG + "component"
INDEX_PARAM = TAG + "index"

MAX_PARAMETERS = 300
MAX_ARTIFACTS = 60
METRICS_PER_CALL = 10

_MEDIA_TYPES = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".svg": "image/svg+xml",
    ".html": "text/html",
    ".csv": "text/csv",
    ".json": "application/json",
    ".txt": "text/plain",
    ".parquet": "application/x-parquet",
}


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


#: error codes of a service that is up but refuses the rate: the call is lost, not the store
THROTTLING = {"ThrottlingException", "Throttling", "TooManyRequestsException",
              "RequestLimitExceeded", "SlowDown"}  # fmt: skip


def _error_code(exc: BaseException) -> str:
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


#: botocore timeouts (seconds) of the tracking clients; attempts are ``max_attempts`` (default 5)
CONNECT_TIMEOUT = 5
READ_TIMEOUT = 30

_CLIENTS: dict[tuple[Any, ...], Any] = {}
_CLIENTS_LOCK = threading.Lock()
#: (client id, logical experiment) -> [shard index, shard name, trials counted in it]
_SHARDS: dict[tuple[int, str], list[Any]] = {}
_SHARDS_LOCK = threading.RLock()


def _client(service: str, config: TrackingConfig) -> Any:
    """A boto3 client built from the configuration, shared by the trials of this process.

    Building a SageMaker client costs about half a second (its service model is large), so a
    sweep reuses one per (service, profile, region, endpoint, attempts); boto3 clients are
    thread-safe.
    """
    try:
        import boto3
        from botocore.config import Config
    except ImportError as exc:
        raise ImportError(
            "the sagemaker tracking backend needs boto3: pip install 'spark-clustering[aws]'"
        ) from exc

    env = (
        "AWS_ENDPOINT_URL",
        f"AWS_ENDPOINT_URL_{service.upper().replace('-', '_')}",
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
        "AWS_PROFILE",
    )
    key: tuple[Any, ...] = (
        service,
        config.profile,
        config.region,
        config.endpoint_url,
        config.max_attempts,
        *(os.environ.get(var) for var in env),
    )
    with _CLIENTS_LOCK:
        if key not in _CLIENTS:
            session = boto3.session.Session(profile_name=config.profile, region_name=config.region)
            if not session.region_name:
                raise ValueError(
                    "region=None is not valid for the sagemaker tracking backend; accepted: an "
                    "AWS region via region=, the config file or AWS_REGION / AWS_DEFAULT_REGION"
                )
            _CLIENTS[key] = session.client(
                service,
                endpoint_url=config.endpoint_url,
                config=Config(
                    # an endpoint that is down or silent must cost seconds: botocore's default
                    # 60 s connect and read timeouts, retried, would hold a job for minutes
                    connect_timeout=CONNECT_TIMEOUT,
                    read_timeout=READ_TIMEOUT,
                    retries={"mode": "standard", "total_max_attempts": config.max_attempts},
                    user_agent_extra="spark-clustering-tracking",
                ),
            )
        return _CLIENTS[key]


class SageMakerBackend:
    """Writes trials to SageMaker Experiments and reads them back for the leaderboard."""

    def __init__(self, config: TrackingConfig) -> None:
        self.config = config
        self.sm = _client("sagemaker", config)
        self.metrics = _client("sagemaker-metrics", config)
        self._s3: Any = None

    # ----------------------------------------------------------------------------- experiments

    def _shard_name(self, experiment: str, index: int) -> str:
        base = sagemaker_name(experiment, 110)
        return base if index == 1 else f"{base}-{index}"

    def find_shards(self, experiment: str) -> list[tuple[int, str]]:
        """(index, SageMaker experiment name) of every shard of a logical experiment."""
        shards = []
        kwargs: dict[str, Any] = {
            "Resource": "Experiment",
            "SearchExpression": {
                "Filters": [
                    {
                        "Name": f"Tags.{EXPERIMENT_TAG}",
                        "Operator": "Equals",
                        "Value": sagemaker_tag_value(experiment),
                    }
                ]
            },
            "MaxResults": 100,
        }
        while True:
            page = self.sm.search(**kwargs)
            for result in page.get("Results", []):
                exp = result.get("Experiment", {})
                tags = {t["Key"]: t["Value"] for t in exp.get("Tags", [])}
                if tags.get(EXPERIMENT_TAG) != sagemaker_tag_value(experiment):
                    continue
                shards.append((int(tags.get(SHARD_TAG, "1")), exp["ExperimentName"]))
            token = page.get("NextToken")
            if not token:
                break
            kwargs["NextToken"] = token
        return sorted(set(shards))

    def _create_shard(self, experiment: str, index: int) -> str:
        name = self._shard_name(experiment, index)
        tags = [
            {"Key": EXPERIMENT_TAG, "Value": sagemaker_tag_value(experiment)},
            {"Key": SHARD_TAG, "Value": str(index)},
        ]
        try:
            arn = self.sm.create_experiment(
                ExperimentName=name,
                DisplayName=name,
                Description=f"spark-clustering experiment {experiment!r}, part {index}",
                Tags=tags,
            )["ExperimentArn"]
        except Exception as exc:
            # created meanwhile by a parallel job of the same sweep (Search lags behind writes):
            # adopt it; DescribeExperiment is consistent and the experiment exists
            if "exist" not in str(exc).lower():
                raise
            arn = self.sm.describe_experiment(ExperimentName=name)["ExperimentArn"]
        self.sm.add_tags(ResourceArn=arn, Tags=tags)
        return name

    def _paginate(self, method: str, key: str, **kwargs: Any) -> Iterator[dict[str, Any]]:
        while True:
            page = getattr(self.sm, method)(**kwargs)
            yield from page.get(key, [])
            token = page.get("NextToken")
            if not token:
                return
            kwargs["NextToken"] = token

    def _count_trials(self, shard: str) -> int:
        return sum(
            1
            for _ in self._paginate(
                "list_trials", "TrialSummaries", ExperimentName=shard, MaxResults=100
            )
        )

    def _shard_for(self, experiment: str) -> list[Any]:
        """[index, name, trials counted] of the shard new trials go to, creating it if needed.

        The state is kept per process and client, so a sweep looks its experiment up once; a
        count that is stale because other jobs added trials is corrected by the service's
        ResourceLimitExceeded, which moves on to the next shard.
        """
        key = (id(self.sm), experiment)
        with _SHARDS_LOCK:
            state = _SHARDS.get(key)
            if state is None:
                shards = self.find_shards(experiment)
                if not shards:
                    state = [1, self._create_shard(experiment, 1), 0]
                else:
                    index, name = shards[-1]
                    state = [index, name, self._count_trials(name)]
                _SHARDS[key] = state
            if state[2] >= self.config.max_trials_per_experiment:
                state[:] = [state[0] + 1, self._create_shard(experiment, state[0] + 1), 0]
            return state

    def _next_shard(self, experiment: str) -> None:
        with _SHARDS_LOCK:
            state = _SHARDS[(id(self.sm), experiment)]
            state[2] = self.config.max_trials_per_experiment

    def _forget(self, experiment: str) -> None:
        with _SHARDS_LOCK:
            _SHARDS.pop((id(self.sm), experiment), None)

    # ----------------------------------------------------------------------------- trials

    def _create_trial(self, handle: dict[str, Any], name: str, tags: dict[str, str]) -> str:
        experiment = handle["experiment"]
        for attempt in range(3):
            state = self._shard_for(experiment)
            try:
                response = self.sm.create_trial(TrialName=name, ExperimentName=state[1])
                break
            except Exception as exc:
                code = _error_code(exc)
                if attempt == 2:
                    raise
                if code == "ResourceLimitExceeded":
                    # the service says the shard is full (parallel jobs, or a lower quota)
                    self._next_shard(experiment)
                elif code in ("ResourceNotFound", "ValidationException") and "xperiment" in str(
                    exc
                ):
                    self._forget(experiment)  # the shard was deleted since we looked it up
                else:
                    raise
        with _SHARDS_LOCK:
            state[2] += 1
        handle["shard"] = state[1]
        arn = str(response["TrialArn"])
        self._add_tags(arn, tags)
        return arn

    def _add_tags(self, arn: str, tags: dict[str, str]) -> None:
        items = [{"Key": k[:128], "Value": sagemaker_tag_value(v)} for k, v in tags.items()]
        for start in range(0, len(items), 50):
            self.sm.add_tags(ResourceArn=arn, Tags=items[start : start + 50])

    def start_trial(self, experiment: str, trial: str, tags: dict[str, str]) -> dict[str, Any]:
        run_id = uuid.uuid4().hex[:10]
        handle: dict[str, Any] = {
            "experiment": experiment,
            "trial": trial,
            "run_id": run_id,
            "part": 1,
            "components": 0,
            "root": None,
        }
        name = f"{sagemaker_name(trial, 100)}-{run_id}"
        own = {EXPERIMENT_TAG: experiment, TRIAL_TAG: trial, RUN_TAG: run_id, PART_TAG: "1"}
        handle["name"] = name
        handle["arns"] = [self._create_trial(handle, name, {**tags, **own})]
        return handle

    def reference(self, trial: dict[str, Any]) -> dict[str, str]:
        """The SageMaker trial (first part) and its run id suffix."""
        return {
            "backend": "sagemaker",
            "experiment_name": str(trial.get("shard", "")),
            "trial_name": f"{sagemaker_name(trial['trial'], 100)}-{trial['run_id']}",
            "trial_arn": str(trial["arns"][0]),
            "run_id": str(trial["run_id"]),
        }

    def set_tags(self, trial: dict[str, Any], tags: dict[str, str]) -> None:
        for arn in trial["arns"]:
            self._add_tags(arn, tags)

    def _trial_for_component(self, handle: dict[str, Any]) -> str:
        """The trial a new component joins, opening a part trial when this one is full."""
        if handle["components"] >= self.config.max_components_per_trial:
            handle["part"] += 1
            part = handle["part"]
            name = f"{sagemaker_name(handle['trial'], 96)}-{handle['run_id']}-p{part}"
            own = {
                EXPERIMENT_TAG: handle["experiment"],
                TRIAL_TAG: handle["trial"],
                RUN_TAG: handle["run_id"],
                PART_TAG: str(part),
            }
            handle["arns"].append(self._create_trial(handle, name, own))
            handle["name"] = name
            handle["components"] = 0
        handle["components"] += 1
        return str(handle["name"])

    def start_component(
        self, trial: dict[str, Any], data: ComponentData, index: int
    ) -> dict[str, Any]:
        label = data.name or "Trial"
        name = "-".join(
            [
                sagemaker_name(trial["trial"], 70),
                sagemaker_name(label, 30),
                trial["run_id"],
                str(index),
            ]
        )
        params = {
            COMPONENT_PARAM: {"StringValue": label},
            INDEX_PARAM: {"NumberValue": float(index)},
        }
        self.sm.create_trial_component(
            TrialComponentName=name,
            DisplayName=sagemaker_name(label),
            Status={"PrimaryStatus": "InProgress"},
            StartTime=dt.datetime.fromtimestamp(data.start_time, dt.timezone.utc),
            Parameters=params,
        )
        self.sm.associate_trial_component(
            TrialComponentName=name, TrialName=self._trial_for_component(trial)
        )
        return {"name": name, "params": params, "inputs": {}, "outputs": {}}

    # ----------------------------------------------------------------------------- writing

    def _root(self, trial: dict[str, Any]) -> dict[str, Any]:
        """SageMaker trials hold no parameters: trial-level logs go to a ``Trial`` component."""
        if trial["root"] is None:
            trial["root"] = self.start_component(trial, ComponentData(None), 0)
        root: dict[str, Any] = trial["root"]
        return root

    def _upload(
        self, trial: dict[str, Any], comp: dict[str, Any], path: str, sub: str | None
    ) -> str:
        if not self.config.artifact_uri:
            raise ValueError(
                f"log_artifact({path!r}) needs artifact_uri (s3://bucket/prefix) for the "
                "sagemaker backend: set artifact_uri= or SPARK_CLUSTERING_TRACKING_ARTIFACTS"
            )
        if self._s3 is None:
            self._s3 = _client("s3", self.config)
        bucket, _, prefix = self.config.artifact_uri[len("s3://") :].partition("/")
        parts = [prefix.strip("/"), trial["name"], comp["name"], sub or "", os.path.basename(path)]
        key = "/".join(p.strip("/") for p in parts if p)
        self._s3.upload_file(path, bucket, key)
        return f"s3://{bucket}/{key}"

    def _write(
        self,
        trial: dict[str, Any],
        comp: dict[str, Any] | None,
        data: ComponentData,
        status: str | None = None,
    ) -> None:
        comp = comp if comp is not None else self._root(trial)
        errors: list[str] = []
        changed = False
        for key, value in data.params.items():
            if isinstance(value, (int, float)):
                comp["params"][key] = {"NumberValue": float(value)}
            else:
                comp["params"][key] = {"StringValue": value}
            changed = True
        for kind, artifacts in (("inputs", data.inputs), ("outputs", data.outputs)):
            for art in artifacts.values():
                entry = {"Value": art.uri}
                if art.media_type:
                    entry["MediaType"] = art.media_type
                comp[kind][art.name] = entry
                if art.dataset is not None:  # an artifact holds a value and a media type only
                    comp["params"][f"input.{art.name}.digest"] = {"StringValue": art.dataset.digest}
                changed = True
        for path, sub in data.files:
            try:
                uri = self._upload(trial, comp, path, sub)
            except Exception as exc:  # the other files and values still get written
                errors.append(f"{os.path.basename(path)}: {exc}")
                continue
            media = _MEDIA_TYPES.get(os.path.splitext(path)[1].lower(), "application/octet-stream")
            comp["outputs"][os.path.basename(path)[:128]] = {"Value": uri, "MediaType": media}
            changed = True
        if len(comp["params"]) > MAX_PARAMETERS:
            raise ContainedFailure(
                f"component {comp['name']} has {len(comp['params'])} parameters; SageMaker "
                f"accepts at most {MAX_PARAMETERS} per trial component"
            )
        for kind in ("inputs", "outputs"):
            if len(comp[kind]) > MAX_ARTIFACTS:
                raise ContainedFailure(
                    f"component {comp['name']} has {len(comp[kind])} {kind}; SageMaker accepts "
                    f"at most {MAX_ARTIFACTS} per trial component"
                )
        update: dict[str, Any] = {}
        if changed:
            # the full maps each time: the update is idempotent whatever the service merges
            update.update(
                Parameters=comp["params"],
                InputArtifacts=comp["inputs"],
                OutputArtifacts=comp["outputs"],
            )
        if status is not None:
            update.update(Status={"PrimaryStatus": status}, EndTime=_now())
        try:
            if update:
                self.sm.update_trial_component(TrialComponentName=comp["name"], **update)
            self._put_metrics(comp["name"], data, errors)
        except Exception as exc:
            if _error_code(exc) in THROTTLING:  # still throttled after max_attempts
                raise ContainedFailure(f"{comp['name']}: {exc}") from exc
            raise
        if errors:  # some files or metric values refused, the rest written
            raise ContainedFailure("; ".join(errors))

    def _put_metrics(self, name: str, data: ComponentData, errors: list[str]) -> None:
        points = [
            {
                "MetricName": m.name,
                "Timestamp": dt.datetime.fromtimestamp(m.timestamp, dt.timezone.utc),
                "Step": m.step,
                "Value": m.value,
            }
            for m in data.metrics
        ]
        for start in range(0, len(points), METRICS_PER_CALL):
            batch = points[start : start + METRICS_PER_CALL]
            response = self.metrics.batch_put_metrics(TrialComponentName=name, MetricData=batch)
            for err in response.get("Errors", []):
                index = int(err.get("MetricIndex", 0))
                metric = batch[index]["MetricName"] if index < len(batch) else "?"
                errors.append(f"metric {metric}: {err.get('Code')}")

    def flush(self, trial: dict[str, Any], component: Any, data: ComponentData) -> None:
        self._write(trial, component, data)

    def end_component(
        self, trial: dict[str, Any], component: Any, data: ComponentData, ok: bool
    ) -> None:
        self._write(trial, component, data, "Completed" if ok else "Failed")

    def end_trial(self, trial: dict[str, Any], ok: bool) -> None:
        status = "Completed" if ok else "Failed"
        if trial["root"] is not None:
            self._write(trial, trial["root"], ComponentData(None), status)
        self.set_tags(trial, {STATUS_TAG: status})

    # ----------------------------------------------------------------------------- reading

    def _tags(self, arn: str) -> dict[str, str]:
        tags: dict[str, str] = {}
        kwargs: dict[str, Any] = {"ResourceArn": arn, "MaxResults": 100}
        while True:
            page = self.sm.list_tags(**kwargs)
            tags.update({t["Key"]: t["Value"] for t in page.get("Tags", [])})
            if not page.get("NextToken"):
                return tags
            kwargs["NextToken"] = page["NextToken"]

    def read_trials(self, experiment: str) -> list[TrialRecord]:
        """Every trial of every shard, parts merged by run id (List/Describe calls only)."""
        records: dict[str, TrialRecord] = {}
        for _, shard in self.find_shards(experiment):
            summaries = self._paginate(
                "list_trials", "TrialSummaries", ExperimentName=shard, MaxResults=100
            )
            for summary in summaries:
                tags = self._tags(summary["TrialArn"])
                run_id = tags.get(RUN_TAG, summary["TrialName"])
                created = summary.get("CreationTime")
                record = records.get(run_id)
                if record is None:
                    record = records[run_id] = TrialRecord(
                        experiment=experiment,
                        trial=tags.get(TRIAL_TAG, summary["TrialName"]),
                        run_id=run_id,
                        status=tags.get(STATUS_TAG, "InProgress"),
                        start_time=created.timestamp() if created else None,
                        tags={k: v for k, v in tags.items() if not k.startswith(TAG)},
                        components=[],
                    )
                if STATUS_TAG in tags:
                    record.status = tags[STATUS_TAG]
                record.components.extend(self._components(summary["TrialName"]))
        for record in records.values():
            record.components.sort(key=lambda c: c[1].pop(INDEX_PARAM, 0.0))
            record.components = [
                (None if name == "Trial" else name, params, metrics)
                for name, params, metrics in record.components
            ]
        return sorted(records.values(), key=lambda r: r.start_time or 0.0)

    def _components(
        self, trial_name: str
    ) -> list[tuple[str | None, dict[str, Any], dict[str, float]]]:
        out: list[tuple[str | None, dict[str, Any], dict[str, float]]] = []
        summaries = self._paginate(
            "list_trial_components", "TrialComponentSummaries", TrialName=trial_name, MaxResults=100
        )
        for summary in summaries:
            desc = self.sm.describe_trial_component(
                TrialComponentName=summary["TrialComponentName"]
            )
            params: dict[str, Any] = {}
            for key, value in desc.get("Parameters", {}).items():
                params[key] = (
                    value["NumberValue"] if "NumberValue" in value else value.get("StringValue")
                )
            name = params.pop(COMPONENT_PARAM, desc.get("DisplayName"))
            metrics = {
                m["MetricName"]: float(m["Last"]) for m in desc.get("Metrics", []) if "Last" in m
            }
            out.append((name, params, metrics))
        return out
