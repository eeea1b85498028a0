"""``tune_kmeans``: a SageMaker hyperparameter tuning job for the built-in KMeans.

As SageMaker documents it ("Tune a K-Means Model"): Bayesian strategy, objective ``test:msd``
minimised, ranges for ``extra_center_factor``, ``mini_batch_size``, ``init_method`` and
``epochs``, early stopping ``Auto``, and a ``test`` channel next to ``train``. Both channels are
written as RecordIO-protobuf by sagemaker-pyspark's ``sagemaker`` data source.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ...base import check_range
from ...features.vectors import Requirement, check_input
from .clients import CreatedResources, apply_s3a, boto3_client
from .config import SageMakerConfig
from .hyperparameters import KMEANS_TUNING_RANGES, to_hyperparameters
from .inference import delete_prefix, fs_uri

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import DataFrame

log = logging.getLogger(__name__)

__all__ = ["TuningResult", "tune_kmeans"]

#: The KMeans image account per region is sagemaker-spark's map; fetched from its jar.
_IMAGE_PROVIDER = "com.amazonaws.services.sagemaker.sparksdk.algorithms.SageMakerImageURIProvider"
_ACCOUNT_MAPS = "com.amazonaws.services.sagemaker.sparksdk.algorithms.SagerMakerRegionAccountMaps"


@dataclass(frozen=True)
class TuningResult:
    """What the tuning job found."""

    tuning_job_name: str
    status: str
    best_training_job: str | None
    best_hyperparameters: dict[str, str]
    best_objective: float | None
    training_jobs: list[dict[str, Any]] = field(default_factory=list)
    request: dict[str, Any] = field(default_factory=dict, repr=False)


def kmeans_image(spark: Any, region: str) -> str:
    """The built-in KMeans image URI for ``region`` (sagemaker-spark's own region map)."""
    jvm = spark.sparkContext._jvm
    provider = getattr(jvm, _IMAGE_PROVIDER)
    accounts = getattr(jvm, _ACCOUNT_MAPS).AlgorithmsAccountMap()
    return str(provider.getImage(region, accounts, "kmeans", "1"))


def _write_channel(df: DataFrame, col: str, uri: str) -> None:
    from pyspark.ml.functions import array_to_vector
    from pyspark.ml.linalg import VectorUDT

    from ...features.vectors import as_array

    feats = (
        df[col]
        if isinstance(df.schema[col].dataType, VectorUDT)
        else array_to_vector(as_array(df, col))
    )
    df.select(feats.alias("features")).write.format("sagemaker").option(
        "featuresColumnName", "features"
    ).mode("error").save(uri)


def tune_kmeans(
    train: DataFrame,
    test: DataFrame,
    *,
    k: int,
    config: SageMakerConfig,
    featuresCol: str = "features",
    max_jobs: int = 20,
    max_parallel_jobs: int = 2,
    objective: str = "test:msd",
    ranges: dict[str, Any] | None = None,
    wait: bool = True,
    tracking_experiment: str | None = None,
) -> TuningResult:
    """Create a SageMaker tuning job for KMeans with ``k`` clusters and report the best job.

    Parameters
    ----------
    train, test : DataFrame
        The ``train`` and ``test`` channels (``test:msd`` is computed on ``test``).
    k : int
        Number of clusters (>= 2), a static hyperparameter.
    config : SageMakerConfig
        Region, role, staging prefix, KMS keys, VPC, tags, instance settings.
    max_jobs, max_parallel_jobs : int
        Resource limits of the tuning job.
    objective : {'test:msd', 'test:ssd'}
        Minimised.
    ranges : dict, optional
        ``ParameterRanges``; default :data:`KMEANS_TUNING_RANGES` (SageMaker's documented ones).
    wait : bool
        Poll until the job ends (``config.poll_seconds``); otherwise return right after creating.
    tracking_experiment : str, optional
        With tracking on, each training job of the tuning job is logged as a trial of this
        experiment (its tuned hyperparameters as parameters, the objective as a metric).

    Examples
    --------
    >>> result = tune_kmeans(train, test, k=8, config=cfg)  # doctest: +SKIP
    >>> result.best_training_job, result.best_hyperparameters  # doctest: +SKIP
    """
    config.validate()
    check_range("k", k, ge=2)
    check_range("max_jobs", max_jobs, ge=1)
    check_range("max_parallel_jobs", max_parallel_jobs, ge=1)
    if objective not in ("test:msd", "test:ssd"):
        raise ValueError(f"objective={objective!r} is not valid; accepted: test:msd, test:ssd")
    dims = set()
    for name, df in (("train", train), ("test", test)):
        try:
            stats = check_input(df, featuresCol, None, Requirement(1)).stats
        except ValueError as exc:
            raise ValueError(f"the {name} channel: {exc}") from None
        assert stats.dimension is not None  # rows, none invalid: a dimension
        dims.add(stats.dimension)
    if len(dims) != 1:
        raise ValueError(f"train and test have different feature dimensions: {sorted(dims)}")
    feature_dim = dims.pop()
    spark = train.sparkSession
    name = f"sc-tune-{time.strftime('%y%m%d%H%M%S', time.gmtime())}-{uuid.uuid4().hex[:4]}"
    staged = config.staging_uri(name)
    ledger = CreatedResources()
    sm = boto3_client(config, "sagemaker")
    apply_s3a(spark, config)
    static = to_hyperparameters("kmeans", {"k": k, "featureDim": feature_dim})
    static["eval_metrics"] = "[" + objective.split(":")[1] + "]"
    definition: dict[str, Any] = {
        "StaticHyperParameters": static,
        "AlgorithmSpecification": {
            "TrainingImage": kmeans_image(spark, config.region),
            "TrainingInputMode": "File",
        },
        "RoleArn": config.role_arn,
        "InputDataConfig": [
            {
                "ChannelName": channel,
                "DataSource": {
                    "S3DataSource": {
                        "S3DataType": "S3Prefix",
                        "S3Uri": f"{staged}/{channel}",
                        "S3DataDistributionType": "ShardedByS3Key"
                        if channel == "train"
                        else "FullyReplicated",
                    }
                },
                "ContentType": "application/x-recordio-protobuf",
            }
            for channel in ("train", "test")
        ],
        "OutputDataConfig": {"S3OutputPath": f"{staged}/output"},
        "ResourceConfig": {
            "InstanceType": config.training_instance_type,
            "InstanceCount": config.training_instance_count,
            "VolumeSizeInGB": config.volume_size_gb,
        },
        "StoppingCondition": {"MaxRuntimeInSeconds": config.max_runtime_seconds},
        "EnableNetworkIsolation": config.network_isolation,
    }
    if config.output_kms_key_id:
        definition["OutputDataConfig"]["KmsKeyId"] = config.output_kms_key_id
    if config.volume_kms_key_id:
        definition["ResourceConfig"]["VolumeKmsKeyId"] = config.volume_kms_key_id
    if config.vpc_config():
        definition["VpcConfig"] = config.vpc_config()
    request = {
        "HyperParameterTuningJobName": name,
        "HyperParameterTuningJobConfig": {
            "Strategy": "Bayesian",
            "HyperParameterTuningJobObjective": {"Type": "Minimize", "MetricName": objective},
            "ResourceLimits": {
                "MaxNumberOfTrainingJobs": max_jobs,
                "MaxParallelTrainingJobs": max_parallel_jobs,
            },
            "ParameterRanges": ranges or KMEANS_TUNING_RANGES,
            "TrainingJobEarlyStoppingType": "Auto",
        },
        "TrainingJobDefinition": definition,
        "Tags": config.tag_list(),
    }
    try:
        _write_channel(train, featuresCol, fs_uri(spark, f"{staged}/train"))
        _write_channel(test, featuresCol, fs_uri(spark, f"{staged}/test"))
        ledger.add("staged-data", staged)
        sm.create_hyper_parameter_tuning_job(**request)
        ledger.add("tuning-job", name)
        described = sm.describe_hyper_parameter_tuning_job(HyperParameterTuningJobName=name)
        while wait and described["HyperParameterTuningJobStatus"] in ("InProgress", "Stopping"):
            time.sleep(config.poll_seconds)
            described = sm.describe_hyper_parameter_tuning_job(HyperParameterTuningJobName=name)
    except Exception as exc:
        if "tuning-job" in dict(ledger.items):
            sm.stop_hyper_parameter_tuning_job(HyperParameterTuningJobName=name)
        if "staged_data" in config.cleanup:
            delete_prefix(config, staged)
        raise RuntimeError(
            f"KMeans tuning failed: {exc}. Created: {ledger.describe()} (tuning job stopped, "
            "staged data deleted where the config asks for it)"
        ) from exc
    status = described["HyperParameterTuningJobStatus"]
    if wait and "staged_data" in config.cleanup and status not in ("InProgress", "Stopping"):
        delete_prefix(config, staged)
    best = described.get("BestTrainingJob") or {}
    final = best.get("FinalHyperParameterTuningJobObjectiveMetric") or {}
    jobs = _training_jobs(sm, name) if wait else []
    if tracking_experiment:
        log_trials(tracking_experiment, name, objective, jobs)
    return TuningResult(
        tuning_job_name=name,
        status=status,
        best_training_job=best.get("TrainingJobName"),
        best_hyperparameters=dict(best.get("TunedHyperParameters") or {}),
        best_objective=final.get("Value"),
        training_jobs=jobs,
        request=request,
    )


def _training_jobs(sm: Any, name: str) -> list[dict[str, Any]]:
    try:
        pages = sm.get_paginator("list_training_jobs_for_hyper_parameter_tuning_job").paginate(
            HyperParameterTuningJobName=name
        )
        summaries = [s for page in pages for s in page.get("TrainingJobSummaries", [])]
    except Exception as exc:  # listing is a report, not a reason to fail the tuning
        log.warning("could not list the training jobs of %s: %s", name, exc)
        return []
    return [
        {
            "name": s["TrainingJobName"],
            "status": s.get("TrainingJobStatus"),
            "hyperparameters": dict(s.get("TunedHyperParameters") or {}),
            "objective": (s.get("FinalHyperParameterTuningJobObjectiveMetric") or {}).get("Value"),
        }
        for s in summaries
    ]


def log_trials(
    experiment: str, tuning_job: str, objective: str, jobs: list[dict[str, Any]]
) -> None:
    """One tracking trial per training job (backend from the tracking config; 'none' = no-op)."""
    from ... import tracking

    for job in jobs:
        with tracking.trial(experiment, job["name"], tags={"tuning_job": tuning_job}) as t:
            t.log_parameters({"algorithm": "kmeans", **job["hyperparameters"]})
            if job.get("objective") is not None:
                t.log_metric(objective.replace(":", "_"), job["objective"])
