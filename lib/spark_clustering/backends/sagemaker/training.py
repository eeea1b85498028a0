"""The segment container as a SageMaker training job (or tuning job), through the SDK v3.

Two layers:

- :func:`training_request` and :func:`tuning_request` translate a :class:`SageMakerConfig`
  (role, instances, KMS keys, VPC, network isolation, tags), an image, channels and
  hyperparameters into the ``CreateTrainingJob`` / ``CreateHyperParameterTuningJob`` request, in
  boto3's shape. They need no SDK and no AWS: ``spark-clustering sagemaker train --dry-run``
  prints them.
- :func:`launch_training` and :func:`launch_tuning` send the same job through the ``sagemaker``
  SDK's ``ModelTrainer`` and ``HyperparameterTuner`` (``sagemaker-train``, imported only here)
  and return the request the SDK sent, captured by a botocore hook on the session.

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
    "check_request",
    "job_name",
    "launch_training",
    "launch_tuning",
    "training_request",
    "tuning_request",
]

SDK_PACKAGE = "sagemaker-train>=1.27,<2"
TUNING_STRATEGIES = ("Bayesian", "Random", "Hyperband", "Grid")
OBJECTIVE_TYPES = ("Maximize", "Minimize")


@dataclass(frozen=True)
class LaunchResult:
    """A job created: its name, its kind and the request sent (as the API received it)."""

    name: str
    kind: str  # "training-job" | "tuning-job"
    request: dict[str, Any] = field(repr=False)


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


def training_request(
    config: SageMakerConfig,
    *,
    image: str,
    name: str,
    channels: Mapping[str, str],
    hyperparameters: Mapping[str, str],
    metric_definitions: Sequence[Mapping[str, str]],
    instance_type: str | None = None,
) -> dict[str, Any]:
    """The ``CreateTrainingJob`` request of one trial (boto3's shape).

    Examples
    --------
    >>> cfg = SageMakerConfig(region="eu-west-1", role_arn="arn:aws:iam::123456789012:role/sm",
    ...     staging_prefix="s3://b/seg", network_isolation=True)
    >>> r = training_request(cfg, image="img", name="seg-1", channels={"features": "s3://b/f"},
    ...     hyperparameters={"clusterer.params.k": "8"}, metric_definitions=[])
    >>> r["EnableNetworkIsolation"], r["OutputDataConfig"]["S3OutputPath"]
    (True, 's3://b/seg/training')
    """
    request: dict[str, Any] = {
        "TrainingJobName": name,
        "HyperParameters": dict(hyperparameters),
        "AlgorithmSpecification": {
            "TrainingImage": image,
            "TrainingInputMode": "File",
            "MetricDefinitions": [dict(m) for m in metric_definitions],
        },
        "RoleArn": config.role_arn,
        "InputDataConfig": _channels(channels),
        "OutputDataConfig": _output(config),
        "ResourceConfig": _resources(config, instance_type),
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


def tuning_request(
    config: SageMakerConfig,
    *,
    image: str,
    name: str,
    channels: Mapping[str, str],
    static_hyperparameters: Mapping[str, str],
    ranges: Mapping[str, Any],
    objective: str,
    objective_type: str,
    metric_definitions: Sequence[Mapping[str, str]],
    max_jobs: int,
    max_parallel_jobs: int,
    strategy: str = "Bayesian",
    instance_type: str | None = None,
) -> dict[str, Any]:
    """The ``CreateHyperParameterTuningJob`` request of a sweep over the container's metric.

    ``ranges`` maps a hyperparameter to a list of values (categorical) or to
    ``{"min": .., "max": .., "scaling": "Auto"}`` (integer when both ends are integers).
    """
    trial = training_request(
        config,
        image=image,
        name=name,
        channels=channels,
        hyperparameters=static_hyperparameters,
        metric_definitions=metric_definitions,
        instance_type=instance_type,
    )
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
            "Strategy": strategy,
            "HyperParameterTuningJobObjective": {"Type": objective_type, "MetricName": objective},
            "ResourceLimits": {
                "MaxNumberOfTrainingJobs": max_jobs,
                "MaxParallelTrainingJobs": max_parallel_jobs,
            },
            "ParameterRanges": _ranges(ranges),
            "TrainingJobEarlyStoppingType": "Off",
        },
        "TrainingJobDefinition": definition,
    }
    if config.tags:
        request["Tags"] = config.tag_list()
    return request


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


def _trainer(
    config: SageMakerConfig,
    session: Any,
    *,
    image: str,
    base_name: str,
    hyperparameters: Mapping[str, str],
    metric_definitions: Sequence[Mapping[str, str]],
    instance_type: str | None,
) -> Any:
    from sagemaker.core.shapes import MetricDefinition, Tag
    from sagemaker.core.training.configs import (
        Compute,
        Networking,
        OutputDataConfig,
        StoppingCondition,
    )
    from sagemaker.train import ModelTrainer

    compute = Compute(
        instance_type=instance_type or config.training_instance_type,
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
        training_image=image,
        base_job_name=base_name,
        compute=compute,
        networking=networking,
        stopping_condition=StoppingCondition(max_runtime_in_seconds=config.max_runtime_seconds),
        output_data_config=output,
        hyperparameters=dict(hyperparameters),
        tags=[Tag(key=k, value=v) for k, v in config.tags] or None,
    )
    return trainer.with_metric_definitions(
        [MetricDefinition(name=m["Name"], regex=m["Regex"]) for m in metric_definitions]
    )


def launch_training(
    config: SageMakerConfig,
    *,
    image: str,
    base_name: str,
    channels: Mapping[str, str],
    hyperparameters: Mapping[str, str],
    metric_definitions: Sequence[Mapping[str, str]],
    instance_type: str | None = None,
) -> LaunchResult:
    """Create the training job of one trial through the SDK's ``ModelTrainer`` (no wait)."""
    config.validate()
    _sdk()
    from sagemaker.core.training.configs import InputData

    boto_session, session = _session(config)
    capture = _Capture(config, "CreateTrainingJob")
    capture.register(boto_session)
    trainer = _trainer(
        config,
        session,
        image=image,
        base_name=base_name,
        hyperparameters=hyperparameters,
        metric_definitions=metric_definitions,
        instance_type=instance_type,
    )
    inputs = [InputData(channel_name=n, data_source=uri) for n, uri in channels.items()]
    trainer.train(input_data_config=inputs, wait=False, logs=False)
    assert capture.request is not None, "the SDK sent no CreateTrainingJob"
    return LaunchResult(capture.request["TrainingJobName"], "training-job", capture.request)


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


def launch_tuning(
    config: SageMakerConfig,
    *,
    image: str,
    base_name: str,
    channels: Mapping[str, str],
    static_hyperparameters: Mapping[str, str],
    ranges: Mapping[str, Any],
    objective: str,
    objective_type: str,
    metric_definitions: Sequence[Mapping[str, str]],
    max_jobs: int,
    max_parallel_jobs: int,
    strategy: str = "Bayesian",
    instance_type: str | None = None,
) -> LaunchResult:
    """Create a tuning job (a sweep) through the SDK's ``HyperparameterTuner`` (no wait)."""
    config.validate()
    _sdk()
    from sagemaker.core.training.configs import InputData
    from sagemaker.train.tuner import HyperparameterTuner

    boto_session, session = _session(config)
    capture = _Capture(config, "CreateHyperParameterTuningJob")
    capture.register(boto_session)
    trainer = _trainer(
        config,
        session,
        image=image,
        base_name=base_name,
        hyperparameters=static_hyperparameters,
        metric_definitions=metric_definitions,
        instance_type=instance_type,
    )
    tuner = HyperparameterTuner(
        model_trainer=trainer,
        objective_metric_name=objective,
        hyperparameter_ranges=_parameter_ranges(ranges),
        metric_definitions=[dict(m) for m in metric_definitions],
        strategy=strategy,
        objective_type=objective_type,
        max_jobs=max_jobs,
        max_parallel_jobs=max_parallel_jobs,
        tags=config.tag_list() or None,
        base_tuning_job_name=base_name,
    )
    inputs = [InputData(channel_name=n, data_source=uri) for n, uri in channels.items()]
    tuner.tune(inputs=inputs, job_name=job_name(base_name), wait=False)
    assert capture.request is not None, "the SDK sent no CreateHyperParameterTuningJob"
    name = capture.request["HyperParameterTuningJobName"]
    return LaunchResult(name, "tuning-job", copy.deepcopy(capture.request))
