"""The segment container as a SageMaker training job (or tuning job), through the SDK v3.

Two layers:

- :func:`build_request` (:func:`training_request`, :func:`tuning_request`) translates a
  :class:`SageMakerConfig` (role, instances, KMS keys, VPC, network isolation, tags) and a
  :class:`TrainingSpec` (image, channels, hyperparameters, metric definitions, a sweep) into the
  ``CreateTrainingJob`` / ``CreateHyperParameterTuningJob`` request, in boto3's shape. No SDK
  and no AWS: ``spark-clustering sagemaker train --dry-run`` prints it.
- :func:`launch` sends the same job through the ``sagemaker`` SDK's ``ModelTrainer`` or
  ``HyperparameterTuner`` (imported only there) and returns the request the SDK sent, captured
  by a botocore hook on the session.

The SDK's tuner (sagemaker-train 1.27) builds the tuning job's training definition without the
volume KMS key and without network isolation; :func:`_complete_tuning_request` adds them to the
request before it is signed, as ``clients.RequestDecorator`` does for sagemaker-pyspark, and
every launch checks that the request sent carries each setting of the config
(:func:`check_request`), so a later SDK that drops another one fails loudly instead of
starting an unencrypted or unisolated job.
"""

from __future__ import annotations

import copy
import logging
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .config import SageMakerConfig

log = logging.getLogger(__name__)

__all__ = [
    "LaunchResult",
    "Sweep",
    "TrainingSpec",
    "build_request",
    "check_request",
    "job_name",
    "launch",
    "training_request",
    "tuning_request",
]

#: the SDK v3's training package (``sagemaker`` 3.x installs it too)
SDK_PACKAGE = "sagemaker-train>=1.27,<2"
TUNING_STRATEGIES = ("Bayesian", "Random", "Hyperband", "Grid")
OBJECTIVE_TYPES = ("Maximize", "Minimize")


@dataclass(frozen=True)
class LaunchResult:
    """A job created: its name, its kind and the request sent (as the API received it)."""

    name: str
    kind: str  # "training-job" | "tuning-job"
    request: dict[str, Any] = field(repr=False)


@dataclass(frozen=True)
class Sweep:
    """Trials as one tuning job: ``ranges`` of hyperparameters, ``objective`` a metric.

    ``ranges`` maps a hyperparameter to a list of values (categorical) or to
    ``{"min": .., "max": .., "scaling": "Auto"}`` (integer when both ends are integers).
    """

    ranges: Mapping[str, Any]
    objective: str
    objective_type: str = "Maximize"
    max_jobs: int = 10
    max_parallel_jobs: int = 2
    strategy: str = "Bayesian"


@dataclass(frozen=True)
class TrainingSpec:
    """What the job runs: the image, its channels (name -> ``s3://``), its hyperparameters (the
    static ones of a sweep), the metric definitions, and a :class:`Sweep` or None (one trial)."""

    image: str
    channels: Mapping[str, str]
    hyperparameters: Mapping[str, str]
    metric_definitions: Sequence[Mapping[str, str]]
    instance_type: str | None = None
    sweep: Sweep | None = None


def job_name(base: str) -> str:
    """``<base>-<UTC timestamp>-<4 hex>``, at most 32 characters (tuning jobs' limit)."""
    stamp = time.strftime("%y%m%d-%H%M%S", time.gmtime())
    suffix = f"-{stamp}-{uuid.uuid4().hex[:4]}"
    return base[: 32 - len(suffix)].rstrip("-") + suffix


def _channels(channels: Mapping[str, str]) -> list[dict[str, Any]]:
    return [
        {
            "ChannelName": name,
            "DataSource": {
                "S3DataSource": {
                    "S3DataType": "S3Prefix",
                    "S3Uri": uri,
                    "S3DataDistributionType": "FullyReplicated",
                }
            },
            "InputMode": "File",
        }
        for name, uri in channels.items()
    ]


def _output(config: SageMakerConfig) -> dict[str, Any]:
    out: dict[str, Any] = {"S3OutputPath": config.staging_uri("training")}
    if config.output_kms_key_id:
        out["KmsKeyId"] = config.output_kms_key_id
    out["CompressionType"] = "GZIP"
    return out


def _resources(config: SageMakerConfig, instance_type: str | None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "InstanceType": instance_type or config.training_instance_type,
        "InstanceCount": config.training_instance_count,
        "VolumeSizeInGB": config.volume_size_gb,
    }
    if config.volume_kms_key_id:
        out["VolumeKmsKeyId"] = config.volume_kms_key_id
    return out


def training_request(config: SageMakerConfig, spec: TrainingSpec, name: str) -> dict[str, Any]:
    """The ``CreateTrainingJob`` request of one trial (boto3's shape).

    Examples
    --------
    >>> cfg = SageMakerConfig(region="eu-west-1", role_arn="arn:aws:iam::123456789012:role/sm",
    ...     staging_prefix="s3://bkt/seg", network_isolation=True)
    >>> spec = TrainingSpec("img", {"features": "s3://bkt/f"}, {"clusterer.params.k": "8"}, [])
    >>> r = training_request(cfg, spec, "seg-1")
    >>> r["EnableNetworkIsolation"], r["OutputDataConfig"]["S3OutputPath"]
    (True, 's3://bkt/seg/training')
    """
    request: dict[str, Any] = {
        "TrainingJobName": name,
        "HyperParameters": dict(spec.hyperparameters),
        "AlgorithmSpecification": {
            "TrainingImage": spec.image,
            "TrainingInputMode": "File",
            "MetricDefinitions": [dict(m) for m in spec.metric_definitions],
        },
        "RoleArn": config.role_arn,
        "InputDataConfig": _channels(spec.channels),
        "OutputDataConfig": _output(config),
        "ResourceConfig": _resources(config, spec.instance_type),
        "StoppingCondition": {"MaxRuntimeInSeconds": config.max_runtime_seconds},
        "EnableNetworkIsolation": config.network_isolation,
    }
    if config.vpc_config():
        request["VpcConfig"] = config.vpc_config()
    if config.tags:
        request["Tags"] = config.tag_list()
    return request


def _ranges(ranges: Mapping[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """``ParameterRanges`` from ``{name: [choices] | {"min": a, "max": b[, "scaling": s]}}``."""
    out: dict[str, list[dict[str, Any]]] = {
        "IntegerParameterRanges": [],
        "ContinuousParameterRanges": [],
        "CategoricalParameterRanges": [],
    }
    for name, spec in ranges.items():
        if isinstance(spec, (list, tuple)):
            values = [str(v).lower() if isinstance(v, bool) else str(v) for v in spec]
            out["CategoricalParameterRanges"].append({"Name": name, "Values": values})
            continue
        low, high = spec["min"], spec["max"]
        kind = "Integer" if isinstance(low, int) and isinstance(high, int) else "Continuous"
        entry = {"Name": name, "MinValue": str(low), "MaxValue": str(high),
                 "ScalingType": spec.get("scaling", "Auto")}  # fmt: skip
        out[f"{kind}ParameterRanges"].append(entry)
    return out


def tuning_request(config: SageMakerConfig, spec: TrainingSpec, name: str) -> dict[str, Any]:
    """The ``CreateHyperParameterTuningJob`` request of ``spec.sweep`` (boto3's shape)."""
    sweep = spec.sweep
    assert sweep is not None, "a tuning job needs a sweep"
    trial = training_request(config, spec, name)
    definition: dict[str, Any] = {
        "StaticHyperParameters": trial["HyperParameters"],
        "AlgorithmSpecification": trial["AlgorithmSpecification"],
        "RoleArn": trial["RoleArn"],
        # a tuning job's channels take their input mode from the algorithm specification
        "InputDataConfig": [
            {k: v for k, v in c.items() if k != "InputMode"} for c in trial["InputDataConfig"]
        ],
        "OutputDataConfig": trial["OutputDataConfig"],
        "ResourceConfig": trial["ResourceConfig"],
        "StoppingCondition": trial["StoppingCondition"],
        "EnableNetworkIsolation": trial["EnableNetworkIsolation"],
    }
    if "VpcConfig" in trial:
        definition["VpcConfig"] = trial["VpcConfig"]
    request: dict[str, Any] = {
        "HyperParameterTuningJobName": name,
        "HyperParameterTuningJobConfig": {
            "Strategy": sweep.strategy,
            "HyperParameterTuningJobObjective": {
                "Type": sweep.objective_type,
                "MetricName": sweep.objective,
            },
            "ResourceLimits": {
                "MaxNumberOfTrainingJobs": sweep.max_jobs,
                "MaxParallelTrainingJobs": sweep.max_parallel_jobs,
            },
            "ParameterRanges": _ranges(sweep.ranges),
            "TrainingJobEarlyStoppingType": "Off",
        },
        "TrainingJobDefinition": definition,
    }
    if config.tags:
        request["Tags"] = config.tag_list()
    return request


def build_request(config: SageMakerConfig, spec: TrainingSpec, name: str) -> dict[str, Any]:
    """The request :func:`launch` makes: a training job, or a tuning job for a sweep."""
    if spec.sweep is None:
        return training_request(config, spec, name)
    return tuning_request(config, spec, name)


# --------------------------------------------------------------------------- the SDK


def check_request(config: SageMakerConfig, request: Mapping[str, Any]) -> None:
    """Raise ``RuntimeError`` unless a Create* request carries every setting of ``config``
    that protects the job: KMS keys, VPC, network isolation, tags."""
    body = request.get("TrainingJobDefinition", request)
    missing = []
    if config.volume_kms_key_id and (
        body.get("ResourceConfig", {}).get("VolumeKmsKeyId") != config.volume_kms_key_id
    ):
        missing.append("ResourceConfig.VolumeKmsKeyId")
    if config.output_kms_key_id and (
        body.get("OutputDataConfig", {}).get("KmsKeyId") != config.output_kms_key_id
    ):
        missing.append("OutputDataConfig.KmsKeyId")
    if config.vpc_config() and body.get("VpcConfig") != config.vpc_config():
        missing.append("VpcConfig")
    if config.network_isolation and body.get("EnableNetworkIsolation") is not True:
        missing.append("EnableNetworkIsolation")
    sent_tags = {(t["Key"], t["Value"]) for t in request.get("Tags") or []}
    if not set(config.tags) <= sent_tags:
        missing.append("Tags")
    if missing:
        raise RuntimeError(
            f"the request the sagemaker SDK built lacks {', '.join(missing)} of the "
            "SageMakerConfig; nothing was created"
        )


def _sdk() -> Any:
    try:
        import sagemaker.train
    except ImportError as exc:
        raise ImportError(
            "launching a SageMaker training job needs the sagemaker SDK v3 (its training "
            f"package): pip install 'spark-clustering[sagemaker]' (or '{SDK_PACKAGE}'); "
            "--dry-run needs neither"
        ) from exc
    import sagemaker.train

    return sagemaker.train


class _Capture:
    """botocore hooks on one boto3 session: complete and record the Create* request."""

    def __init__(self, config: SageMakerConfig, operation: str) -> None:
        self.config = config
        self.operation = operation
        self.request: dict[str, Any] | None = None

    def register(self, boto_session: Any) -> None:
        events = boto_session.events
        events.register(f"provide-client-params.sagemaker.{self.operation}", self._complete)
        events.register(f"before-call.sagemaker.{self.operation}", self._record)

    def _complete(self, params: dict[str, Any], **_: Any) -> None:
        if self.operation == "CreateHyperParameterTuningJob":
            _complete_tuning_request(self.config, params)

    def _record(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        # botocore's params here are the serialized HTTP body: the request as sent
        import json

        body = params.get("body")
        if isinstance(body, bytes):
            body = body.decode()
        self.request = json.loads(body) if isinstance(body, str) and body else {}
        check_request(self.config, self.request)


def _complete_tuning_request(config: SageMakerConfig, params: dict[str, Any]) -> None:
    """Add what the SDK's tuner leaves out of the training definition (see module docstring)."""
    definition = params.setdefault("TrainingJobDefinition", {})
    if config.volume_kms_key_id:
        definition.setdefault("ResourceConfig", {})["VolumeKmsKeyId"] = config.volume_kms_key_id
    if config.network_isolation:
        definition["EnableNetworkIsolation"] = True


def _session(config: SageMakerConfig) -> tuple[Any, Any]:
    """(boto3 session, SDK Session) for the configured region, profile and endpoint.

    The SDK builds its own clients from the boto3 session (``session.client(service, region,
    config=...)``); a configured endpoint override reaches them through this session's
    ``client``, as it reaches ours through :func:`clients.boto3_client`.
    """
    import boto3
    from sagemaker.core.helper.session_helper import Session

    from .clients import boto3_client

    url = config.resolved_endpoint_url()

    class ConfiguredSession(boto3.session.Session):
        def client(self, *args: Any, **kwargs: Any) -> Any:
            if url and not kwargs.get("endpoint_url"):
                kwargs["endpoint_url"] = url
            return super().client(*args, **kwargs)

    boto_session = ConfiguredSession(region_name=config.region, profile_name=config.profile_name)
    sm = boto3_client(config, "sagemaker")
    return boto_session, Session(boto_session=boto_session, sagemaker_client=sm)


def _trainer(config: SageMakerConfig, session: Any, spec: TrainingSpec, base_name: str) -> Any:
    from sagemaker.core.shapes import MetricDefinition, Tag
    from sagemaker.core.training.configs import (
        Compute,
        Networking,
        OutputDataConfig,
        StoppingCondition,
    )
    from sagemaker.train import ModelTrainer

    compute = Compute(
        instance_type=spec.instance_type or config.training_instance_type,
        instance_count=config.training_instance_count,
        volume_size_in_gb=config.volume_size_gb,
        volume_kms_key_id=config.volume_kms_key_id,
    )
    networking = Networking(
        subnets=list(config.subnets) or None,
        security_group_ids=list(config.security_group_ids) or None,
        enable_network_isolation=config.network_isolation,
    )
    output = OutputDataConfig(
        s3_output_path=config.staging_uri("training"),
        kms_key_id=config.output_kms_key_id,
        compression_type="GZIP",
    )
    trainer = ModelTrainer(
        sagemaker_session=session,
        role=config.role_arn,
        training_image=spec.image,
        base_job_name=base_name,
        compute=compute,
        networking=networking,
        stopping_condition=StoppingCondition(max_runtime_in_seconds=config.max_runtime_seconds),
        output_data_config=output,
        hyperparameters=dict(spec.hyperparameters),
        tags=[Tag(key=k, value=v) for k, v in config.tags] or None,
    )
    return trainer.with_metric_definitions(
        [MetricDefinition(name=m["Name"], regex=m["Regex"]) for m in spec.metric_definitions]
    )


def _parameter_ranges(ranges: Mapping[str, Any]) -> dict[str, Any]:
    from sagemaker.core.parameter import (
        CategoricalParameter,
        ContinuousParameter,
        IntegerParameter,
    )

    out: dict[str, Any] = {}
    native = _ranges(ranges)
    for entry in native["CategoricalParameterRanges"]:
        out[entry["Name"]] = CategoricalParameter(entry["Values"])
    for entry in native["IntegerParameterRanges"]:
        out[entry["Name"]] = IntegerParameter(
            int(entry["MinValue"]), int(entry["MaxValue"]), scaling_type=entry["ScalingType"]
        )
    for entry in native["ContinuousParameterRanges"]:
        out[entry["Name"]] = ContinuousParameter(
            float(entry["MinValue"]), float(entry["MaxValue"]), scaling_type=entry["ScalingType"]
        )
    return out


def launch(config: SageMakerConfig, spec: TrainingSpec, base_name: str) -> LaunchResult:
    """Create the job through the SDK, without waiting: a training job (``ModelTrainer``) for
    one trial, a tuning job (``HyperparameterTuner``) for a sweep. Returns the request sent."""
    config.validate()
    _sdk()
    from sagemaker.core.training.configs import InputData

    sweep = spec.sweep
    operation = "CreateTrainingJob" if sweep is None else "CreateHyperParameterTuningJob"
    boto_session, session = _session(config)
    capture = _Capture(config, operation)
    capture.register(boto_session)
    trainer = _trainer(config, session, spec, base_name)
    inputs = [InputData(channel_name=n, data_source=uri) for n, uri in spec.channels.items()]
    if sweep is None:
        trainer.train(input_data_config=inputs, wait=False, logs=False)
    else:
        from sagemaker.train.tuner import HyperparameterTuner

        tuner = HyperparameterTuner(
            model_trainer=trainer,
            objective_metric_name=sweep.objective,
            hyperparameter_ranges=_parameter_ranges(sweep.ranges),
            metric_definitions=[dict(m) for m in spec.metric_definitions],
            strategy=sweep.strategy,
            objective_type=sweep.objective_type,
            max_jobs=sweep.max_jobs,
            max_parallel_jobs=sweep.max_parallel_jobs,
            tags=config.tag_list() or None,
            base_tuning_job_name=base_name,
        )
        tuner.tune(inputs=inputs, job_name=job_name(base_name), wait=False)
    assert capture.request is not None, f"the SDK sent no {operation}"
    if sweep is None:
        return LaunchResult(capture.request["TrainingJobName"], "training-job", capture.request)
    name = capture.request["HyperParameterTuningJobName"]
    return LaunchResult(name, "tuning-job", copy.deepcopy(capture.request))
