"""Fit, score and clean up SageMaker's built-in KMeans and PCA for the package's estimators.

Training goes through sagemaker-pyspark's ``KMeansSageMakerEstimator`` /
``PCASageMakerEstimator``: it writes the features as RecordIO-protobuf to the staging prefix
(Spark's ``sagemaker`` data source, through S3A or EMRFS), starts the training job and waits for
it. It is given explicitly built clients and ``EndpointCreationPolicy.DO_NOT_CREATE``: hosting
is created here with boto3, so that the model, endpoint config and endpoint carry the tags, KMS
key, VPC and network isolation of the config, and so that a failure deletes what was created.

The estimators pass themselves (their Params); this module reads them by name and never imports
an estimator module.
"""

from __future__ import annotations

import functools
import importlib.util
import logging
import time
import uuid
from typing import TYPE_CHECKING, Any

from ...features.vectors import Requirement, as_array, check_input
from .clients import (
    CreatedResources,
    RequestDecorator,
    apply_s3a,
    as_java,
    boto3_client,
    java_clients,
)
from .config import SageMakerConfig
from .hyperparameters import to_hyperparameters

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import DataFrame, SparkSession

log = logging.getLogger(__name__)

__all__ = ["cleanup", "fit", "resolve_config", "score"]

#: algorithm -> sagemaker-pyspark estimator class (module, attribute)
ESTIMATORS = {
    "kmeans": ("sagemaker_pyspark.algorithms", "KMeansSageMakerEstimator"),
    "pca": ("sagemaker_pyspark.algorithms", "PCASageMakerEstimator"),
}


class SageMakerStepError(RuntimeError):
    """A step failed after resources were created; the message lists them and what was removed."""


def resolve_config(est: Any, spark: SparkSession) -> SageMakerConfig:
    """The estimator's config, else the session's ``spark.clustering.sagemaker.*``; validated."""
    config = est.getSageMakerConfig() or SageMakerConfig.from_spark_conf(spark)
    if not isinstance(config, SageMakerConfig):
        raise ValueError(f"sagemakerConfig={config!r} is not valid; accepted: a SageMakerConfig")
    config.validate()
    return config


def _require_sagemaker_pyspark() -> None:
    if importlib.util.find_spec("sagemaker_pyspark") is None:
        raise ValueError(
            "backend='sagemaker' needs sagemaker_pyspark; install it with "
            "`pip install --no-deps sagemaker_pyspark==1.4.5` (it pins pyspark 3.3.0)"
        )


def _params(est: Any) -> dict[str, Any]:
    return {p.name: est.getOrDefault(p) for p in est.params if est.isDefined(p)}


def check_training_input(algorithm: str, est: Any, dataset: DataFrame) -> dict[str, str]:
    """Validate the data against the Params and return the SageMaker hyperparameters."""
    col = est.getFeaturesCol()
    params = _params(est)
    # the package's one input check: SageMaker trains on finite rows only (the estimator has
    # already left out invalid rows under handleInvalid 'skip' or 'keep')
    k = params.get("k") if algorithm == "pca" else None
    need = Requirement(1, max_dimension_param="k" if k is not None else None, max_dimension_value=k)
    stats = check_input(dataset, col, None, need).stats
    declared = params.get("featureDim")
    if declared is not None and declared != stats.dimension:
        raise ValueError(
            f"featureDim={declared} does not match the data: featuresCol={col!r} has "
            f"{stats.dimension} features; accepted: {stats.dimension} or unset"
        )
    params["featureDim"] = stats.dimension
    return to_hyperparameters(algorithm, params)


def _names(algorithm: str) -> dict[str, str]:
    base = f"sc-{algorithm}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}-{uuid.uuid4().hex[:6]}"
    return {
        "training_job": base,
        "model": f"{base}-model",
        "endpoint_config": f"{base}-config",
        "endpoint": f"{base}-endpoint",
    }


def _training_frame(dataset: DataFrame, col: str) -> DataFrame:
    """Only the features, as a vector named ``features`` (what the protobuf writer reads)."""
    from pyspark.ml.functions import array_to_vector
    from pyspark.ml.linalg import VectorUDT

    if isinstance(dataset.schema[col].dataType, VectorUDT):
        return dataset.select(dataset[col].alias("features"))
    return dataset.select(array_to_vector(as_array(dataset, col)).alias("features"))


def fit(algorithm: str, est: Any, dataset: DataFrame) -> dict[str, Any]:
    """Train on SageMaker and set up inference; returns the model's state (names, config).

    Every check runs before the first resource is created. If a later step fails, what was
    created is deleted (model, endpoint config, endpoint) or, for a training job, which cannot
    be deleted, stopped and named in the error.
    """
    spark = dataset.sparkSession
    config = resolve_config(est, spark)
    _require_sagemaker_pyspark()
    hyper = check_training_input(algorithm, est, dataset)
    names = _names(algorithm)
    ledger = CreatedResources()
    sm = boto3_client(config, "sagemaker")
    try:
        job, artifacts, image = _train(
            spark, algorithm, config, hyper, names, ledger, dataset, est.getFeaturesCol()
        )
        state = {
            "algorithm": algorithm,
            "training_job_name": job,
            "model_artifacts": artifacts,
            "model_image": image,
            "feature_dim": int(hyper["feature_dim"]),
            "hyperparameters": hyper,
            "config": config.to_dict(),
            "model_name": None,
            "endpoint_config_name": None,
            "endpoint_name": None,
        }
        create_hosting(sm, config, state, names, ledger)
    except Exception as exc:
        undone = _undo(sm, ledger)
        raise SageMakerStepError(
            f"SageMaker {algorithm} fit failed: {exc}. Created: {ledger.describe()}; "
            f"cleaned up: {', '.join(undone) or 'nothing'}"
        ) from exc
    return state


@functools.cache
def _java_ref() -> type:
    """A sagemaker-pyspark wrapper around a ready JVM object (defined once, on first use)."""
    from sagemaker_pyspark import SageMakerJavaWrapper

    class JavaRef(SageMakerJavaWrapper):
        _wrapped_class = "java.lang.Object"

        def __init__(self, java_obj: Any) -> None:
            self._java_obj = java_obj

    return JavaRef


def _train(
    spark: SparkSession,
    algorithm: str,
    config: SageMakerConfig,
    hyper: dict[str, str],
    names: dict[str, str],
    ledger: CreatedResources,
    dataset: DataFrame,
    col: str,
) -> tuple[str, str, str]:
    import sagemaker_pyspark
    from sagemaker_pyspark import (
        CustomNamePolicyFactory,
        EndpointCreationPolicy,
        IAMRole,
        S3DataPath,
    )

    module, attr = ESTIMATORS[algorithm]
    estimator_cls = getattr(importlib.import_module(module), attr)

    apply_s3a(spark, config)
    sm_java, s3_java, sts_java = java_clients(spark, config)
    decorator = RequestDecorator(spark, sm_java, config, ledger)
    bucket, prefix = config.staging_location()
    # sagemaker-spark appends "/<training job name>" to both paths
    root = prefix.strip("/")
    jvm = spark.sparkContext._jvm
    assert jvm is not None
    poll = jvm.java.time.Duration.ofMillis(int(config.poll_seconds * 1000))
    getattr(
        jvm.com.amazonaws.services.sagemaker.sparksdk.SageMakerEstimator,
        "TrainingJobPollInterval_$eq",
    )(poll)
    estimator = estimator_cls(
        trainingInstanceType=config.training_instance_type,
        trainingInstanceCount=config.training_instance_count,
        endpointInstanceType=config.endpoint_instance_type,
        endpointInitialInstanceCount=config.endpoint_instance_count,
        sagemakerRole=IAMRole(config.role_arn),
        trainingInputS3DataPath=S3DataPath(bucket, f"{root}/training-input".strip("/")),
        trainingOutputS3DataPath=S3DataPath(bucket, f"{root}/training-output".strip("/")),
        trainingInstanceVolumeSizeInGB=config.volume_size_gb,
        trainingProjectedColumns=["features"],
        trainingSparkDataFormatOptions={"featuresColumnName": "features"},
        trainingMaxRuntimeInSeconds=config.max_runtime_seconds,
        trainingKmsKeyId=config.output_kms_key_id,
        endpointCreationPolicy=EndpointCreationPolicy.DO_NOT_CREATE,
        sagemakerClient=_java_ref()(as_java(spark, decorator)),
        region=config.region,
        s3Client=_java_ref()(s3_java),
        stsClient=_java_ref()(sts_java),
        deleteStagingDataAfterTraining="staged_data" in config.cleanup,
        namePolicyFactory=CustomNamePolicyFactory(
            names["training_job"], names["model"], names["endpoint_config"], names["endpoint"]
        ),
    )
    _set_hyperparameters(estimator, hyper)
    log.info(
        "SageMaker %s training job %s (sagemaker_pyspark %s): %s",
        algorithm,
        names["training_job"],
        getattr(sagemaker_pyspark, "__version__", "1.4.5"),
        hyper,
    )
    estimator.fit(_training_frame(dataset, col))
    described = boto3_client(config, "sagemaker").describe_training_job(
        TrainingJobName=names["training_job"]
    )
    return (
        names["training_job"],
        described["ModelArtifacts"]["S3ModelArtifacts"],
        described["AlgorithmSpecification"]["TrainingImage"],
    )


def _set_hyperparameters(estimator: Any, hyper: dict[str, str]) -> None:
    """Set SageMaker's names on sagemaker-pyspark's Params, typed as their converters want."""
    for name, raw in hyper.items():
        candidates: list[Any] = [raw]
        for parse in (int, float):
            try:
                candidates.insert(0, parse(raw))
                break
            except ValueError:
                continue
        for value in candidates:
            try:
                estimator._set(**{name: value})
                break
            except (TypeError, AttributeError):  # pyspark 3.5's toString on numpy 2 raises
                continue
        else:  # pragma: no cover - every table entry has a converter that accepts one form
            raise ValueError(f"cannot set SageMaker hyperparameter {name}={raw!r}")


def create_hosting(
    sm: Any,
    config: SageMakerConfig,
    state: dict[str, Any],
    names: dict[str, str],
    ledger: CreatedResources,
) -> None:
    """Create the model and, in endpoint mode, the endpoint config and endpoint (tagged)."""
    model_kwargs: dict[str, Any] = {
        "ModelName": names["model"],
        "PrimaryContainer": {
            "Image": state["model_image"],
            "ModelDataUrl": state["model_artifacts"],
        },
        "ExecutionRoleArn": config.role_arn,
        "Tags": config.tag_list(),
    }
    if config.vpc_config():
        model_kwargs["VpcConfig"] = config.vpc_config()
    if config.network_isolation:
        model_kwargs["EnableNetworkIsolation"] = True
    sm.create_model(**model_kwargs)
    ledger.add("model", names["model"])
    state["model_name"] = names["model"]
    if config.inference != "endpoint":
        return
    deploy_endpoint(sm, config, state, names["endpoint_config"], names["endpoint"], ledger)


def deploy_endpoint(
    sm: Any,
    config: SageMakerConfig,
    state: dict[str, Any],
    config_name: str,
    endpoint_name: str,
    ledger: CreatedResources,
) -> None:
    """Endpoint config (volume KMS key) and endpoint for ``state['model_name']``; waits."""
    ec_kwargs: dict[str, Any] = {
        "EndpointConfigName": config_name,
        "ProductionVariants": [
            {
                "VariantName": "AllTraffic",
                "ModelName": state["model_name"],
                "InitialInstanceCount": config.endpoint_instance_count,
                "InstanceType": config.endpoint_instance_type,
                "InitialVariantWeight": 1.0,
            }
        ],
        "Tags": config.tag_list(),
    }
    if config.volume_kms_key_id:
        ec_kwargs["KmsKeyId"] = config.volume_kms_key_id
    sm.create_endpoint_config(**ec_kwargs)
    ledger.add("endpoint-config", config_name)
    state["endpoint_config_name"] = config_name
    sm.create_endpoint(
        EndpointName=endpoint_name, EndpointConfigName=config_name, Tags=config.tag_list()
    )
    ledger.add("endpoint", endpoint_name)
    state["endpoint_name"] = endpoint_name
    wait_for(
        lambda: sm.describe_endpoint(EndpointName=endpoint_name)["EndpointStatus"],
        done=("InService",),
        failed=("Failed", "OutOfService"),
        what=f"endpoint {endpoint_name}",
        config=config,
    )


def wait_for(
    status: Any,
    *,
    done: tuple[str, ...],
    failed: tuple[str, ...],
    what: str,
    config: SageMakerConfig,
) -> str:
    """Poll ``status()`` every ``poll_seconds`` until done; raise on failure or timeout."""
    deadline = time.monotonic() + config.wait_timeout_seconds
    while True:
        current = status()
        if current in done:
            return str(current)
        if current in failed:
            raise RuntimeError(f"{what} ended as {current}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} still {current} after {config.wait_timeout_seconds:.0f} s")
        time.sleep(config.poll_seconds)


_DELETERS = {
    "endpoint": ("delete_endpoint", "EndpointName"),
    "endpoint-config": ("delete_endpoint_config", "EndpointConfigName"),
    "model": ("delete_model", "ModelName"),
}


def _undo(sm: Any, ledger: CreatedResources) -> list[str]:
    """Delete (in reverse order) what can be deleted; stop a training job still running."""
    done = []
    for kind, name in reversed(ledger.items):
        try:
            if kind in _DELETERS:
                method, key = _DELETERS[kind]
                getattr(sm, method)(**{key: name})
                done.append(f"deleted {kind} {name}")
            elif kind == "training-job":
                status = sm.describe_training_job(TrainingJobName=name)["TrainingJobStatus"]
                if status == "InProgress":
                    sm.stop_training_job(TrainingJobName=name)
                    done.append(f"stopped training-job {name}")
        except Exception as exc:  # keep going: the error lists what is left
            log.warning("could not clean up %s %s: %s", kind, name, exc)
    return done


def cleanup(state: dict[str, Any], *, keep_model: bool = False) -> list[str]:
    """Delete the endpoint, its config and (unless ``keep_model``) the model of ``state``."""
    config = SageMakerConfig.from_dict(state["config"])
    sm = boto3_client(config, "sagemaker")
    ledger = CreatedResources()
    if state.get("model_name") and not keep_model:
        ledger.add("model", state["model_name"])
    if state.get("endpoint_config_name"):
        ledger.add("endpoint-config", state["endpoint_config_name"])
    if state.get("endpoint_name"):
        ledger.add("endpoint", state["endpoint_name"])
    done = _undo(sm, ledger)
    for key in ("endpoint_name", "endpoint_config_name") + (() if keep_model else ("model_name",)):
        state[key] = None
    return done


def score(
    algorithm: str, dataset: DataFrame, col: str, state: dict[str, Any], columns: dict[str, str]
) -> DataFrame:
    """Add the documented output columns, through the endpoint or a batch transform job."""
    from . import inference

    config = SageMakerConfig.from_dict(state["config"])
    if config.inference == "batch" or not state.get("endpoint_name"):
        return inference.batch_transform(algorithm, dataset, col, state, columns, config)
    return inference.endpoint_transform(algorithm, dataset, col, state, columns, config)
