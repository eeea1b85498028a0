"""Scoring with a SageMaker KMeans or PCA model on Spark 3.5 (not sagemaker-pyspark's transform).

Two ways, the same output columns as the Spark backend:

- :func:`endpoint_transform`: a pandas UDF on the executors calls the model's endpoint with the
  documented JSON format (``{"instances": [{"features": [...]}, ...]}``), in requests kept under
  the payload limit, retrying throttling and 5xx answers with exponential backoff.
- :func:`batch_transform`: for scheduled work with no endpoint up, a SageMaker batch transform
  job reads JSON Lines ``{"id": .., "data": {"features": [..]}}`` from the staging prefix, sends
  ``data`` to the model, and joins its answer to the input (``JoinSource=Input``); the result is
  joined back to the rows by ``id``.

SageMaker's answers (documented "Common Data Formats for Inference"):
KMeans ``{"predictions": [{"closest_cluster": 1.0, "distance_to_cluster": 7.6}, ...]}``,
PCA ``{"projections": [{"projection": [..]}, ...]}``.
"""

from __future__ import annotations

import json
import logging
import random
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pandas as pd  # at module level: pandas_udf resolves the type hints in these globals

from ...features.vectors import as_array
from .clients import apply_s3a, boto3_client
from .config import SageMakerConfig

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import DataFrame, SparkSession

log = logging.getLogger(__name__)

__all__ = ["batch_transform", "endpoint_transform", "invoke_batches", "parse_response"]

#: Error codes worth retrying (throttling, capacity, transient server faults).
RETRYABLE = {
    "ThrottlingException",
    "Throttling",
    "TooManyRequestsException",
    "ServiceUnavailable",
    "InternalFailure",
    "InternalServerError",
    "RequestLimitExceeded",
}


def output_fields(algorithm: str) -> list[tuple[str, str]]:
    """(key in ``columns``, Spark type) of each output, per algorithm."""
    if algorithm == "kmeans":
        return [("cluster", "int"), ("distance", "double")]
    return [("projection", "array<double>")]


def parse_response(algorithm: str, body: dict[str, Any]) -> list[tuple[Any, ...]]:
    """SageMaker's JSON answer -> one tuple per record, in the order sent."""
    if algorithm == "kmeans":
        return [
            (int(p["closest_cluster"]), float(p["distance_to_cluster"]))
            for p in body["predictions"]
        ]
    return [([float(v) for v in p["projection"]],) for p in body["projections"]]


def _record(features: Any) -> str:
    return json.dumps({"features": [float(v) for v in features]}, separators=(",", ":"))


def _batches(records: list[str], max_bytes: int) -> Iterator[tuple[int, int]]:
    """(start, stop) slices whose JSON body stays under ``max_bytes``."""
    overhead = len('{"instances":[]}')
    start, size = 0, overhead
    for i, rec in enumerate(records):
        need = len(rec) + 1
        if overhead + need > max_bytes:
            raise ValueError(
                f"one record is {need} bytes, over max_payload_bytes={max_bytes}; raise it "
                "(SageMaker accepts up to 6 MB) or reduce the number of features"
            )
        if size + need > max_bytes and i > start:
            yield start, i
            start, size = i, overhead
        size += need
    if start < len(records):
        yield start, len(records)


def _invoke(client: Any, endpoint: str, body: str, max_retries: int) -> dict[str, Any]:
    from botocore.exceptions import ClientError, ConnectionError, ReadTimeoutError

    for attempt in range(max_retries + 1):
        try:
            answer = client.invoke_endpoint(
                EndpointName=endpoint,
                Body=body.encode(),
                ContentType="application/json",
                Accept="application/json",
            )
            return dict(json.loads(answer["Body"].read()))
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))
            if attempt == max_retries or not (code in RETRYABLE or status == 429 or status >= 500):
                raise
        except (ConnectionError, ReadTimeoutError):
            if attempt == max_retries:
                raise
        time.sleep(min(20.0, 0.1 * 2**attempt) * (0.5 + random.random()))
    raise AssertionError("unreachable")  # pragma: no cover


def invoke_batches(
    algorithm: str, features: list[Any], settings: dict[str, Any], client: Any = None
) -> list[tuple[Any, ...] | None]:
    """Score ``features`` (None entries stay None) through the endpoint in ``settings``."""
    if client is None:
        client = runtime_client(settings)
    results: list[tuple[Any, ...] | None] = [None] * len(features)
    present = [i for i, f in enumerate(features) if f is not None]
    records = [_record(features[i]) for i in present]
    for start, stop in _batches(records, settings["max_payload_bytes"]):
        body = '{"instances":[' + ",".join(records[start:stop]) + "]}"
        answer = parse_response(
            algorithm, _invoke(client, settings["endpoint"], body, settings["max_retries"])
        )
        if len(answer) != stop - start:
            raise RuntimeError(
                f"endpoint {settings['endpoint']} answered {len(answer)} records for "
                f"{stop - start} sent"
            )
        for offset, value in enumerate(answer):
            results[present[start + offset]] = value
    return results


def runtime_client(settings: dict[str, Any]) -> Any:
    """A sagemaker-runtime client on an executor (its own credentials chain, no secrets shipped)."""
    import boto3
    from botocore.config import Config

    session = boto3.session.Session(
        region_name=settings["region"], profile_name=settings.get("profile_name")
    )
    return session.client(
        "sagemaker-runtime",
        endpoint_url=settings.get("endpoint_url"),
        config=Config(retries={"total_max_attempts": 1}),
    )


def endpoint_transform(
    algorithm: str,
    dataset: DataFrame,
    col: str,
    state: dict[str, Any],
    columns: dict[str, str],
    config: SageMakerConfig,
) -> DataFrame:
    """Add the output columns by calling ``state['endpoint_name']`` from the executors."""
    from pyspark.ml.functions import array_to_vector
    from pyspark.sql import functions as F
    from pyspark.sql.functions import pandas_udf

    settings = {  # plain values only: this dict is shipped to the executors
        "endpoint": state["endpoint_name"],
        "region": config.region,
        "endpoint_url": config.resolved_runtime_endpoint_url(),
        "profile_name": config.profile_name,
        "max_payload_bytes": config.max_payload_bytes,
        "max_retries": config.max_retries,
    }
    fields = output_fields(algorithm)
    schema = ", ".join(f"{name} {dtype}" for name, dtype in fields)

    @pandas_udf(schema)  # type: ignore[call-overload]
    def score(batches: Iterator[pd.Series]) -> Iterator[pd.DataFrame]:
        from spark_clustering._worker import prepare_worker

        prepare_worker()
        client = runtime_client(settings)
        for series in batches:
            values = [None if v is None else list(v) for v in series]
            scored = invoke_batches(algorithm, values, settings, client)
            yield pd.DataFrame(
                [r if r is not None else (None,) * len(fields) for r in scored],
                columns=[name for name, _ in fields],
            )

    tmp = "__sc_scored"
    out = dataset.withColumn(tmp, score(as_array(dataset, col)))
    return _expand(out, tmp, algorithm, columns, array_to_vector, F)


def _expand(
    out: DataFrame, tmp: str, algorithm: str, columns: dict[str, str], array_to_vector: Any, F: Any
) -> DataFrame:
    if algorithm == "kmeans":
        out = out.withColumn(columns["cluster"], F.col(f"{tmp}.cluster").cast("int"))
        out = out.withColumn(columns["distance"], F.col(f"{tmp}.distance").cast("double"))
    else:
        proj = F.col(f"{tmp}.projection")
        out = out.withColumn(columns["projection"], F.when(proj.isNotNull(), array_to_vector(proj)))
    return out.drop(tmp)


def fs_uri(spark: SparkSession, s3_uri: str) -> str:
    """The URI Spark writes through: ``s3://`` on EMR (EMRFS), ``s3a://`` elsewhere."""
    hadoop = spark.sparkContext._jsc.hadoopConfiguration()
    impl = hadoop.get("fs.s3.impl") or ""
    return s3_uri if "EmrFileSystem" in impl else "s3a://" + s3_uri[len("s3://") :]


def delete_prefix(config: SageMakerConfig, s3_uri: str) -> int:
    """Delete every object under ``s3_uri``; returns how many."""
    bucket, _, prefix = s3_uri[len("s3://") :].partition("/")
    s3 = boto3_client(config, "s3")
    deleted = 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
        if keys:
            s3.delete_objects(Bucket=bucket, Delete={"Objects": keys})
            deleted += len(keys)
    return deleted


@dataclass
class BatchTransformJob:
    """A submitted batch transform: what :func:`collect_batch_transform` needs to finish it."""

    algorithm: str
    job_name: str
    rows: Any  # the input rows with their id column, persisted
    columns: dict[str, str]
    state: dict[str, Any]
    config: SageMakerConfig
    request: dict[str, Any]

    @property
    def input_uri(self) -> str:
        return self.config.staging_uri(self.job_name, "input")

    @property
    def output_uri(self) -> str:
        return self.config.staging_uri(self.job_name, "output")


ROW_ID = "__sc_id"


def batch_transform(
    algorithm: str,
    dataset: DataFrame,
    col: str,
    state: dict[str, Any],
    columns: dict[str, str],
    config: SageMakerConfig,
) -> DataFrame:
    """Run a batch transform job on ``dataset`` now and return it with the output columns.

    The job runs when this is called (not lazily): the rows get an id, are written to the
    staging prefix, scored by SageMaker, and its output is read back, kept in Spark's cache and
    joined to the rows by id. Staged input and output are deleted afterwards when
    ``'staged_data'`` is in ``config.cleanup``, and an endpoint left from this model is deleted
    when ``'endpoint'`` is.
    """
    job = submit_batch_transform(algorithm, dataset, col, state, columns, config)
    return collect_batch_transform(job)


def submit_batch_transform(
    algorithm: str,
    dataset: DataFrame,
    col: str,
    state: dict[str, Any],
    columns: dict[str, str],
    config: SageMakerConfig,
) -> BatchTransformJob:
    """Stage the rows as JSON Lines and create the (tagged, encrypted) transform job."""
    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    spark = dataset.sparkSession
    if not state.get("model_name"):
        raise ValueError("this model has no SageMaker model left (cleaned up); fit it again")
    apply_s3a(spark, config)
    name = f"sc-bt-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}-{uuid.uuid4().hex[:8]}"
    rows = dataset.withColumn(ROW_ID, F.monotonically_increasing_id()).persist(
        StorageLevel.MEMORY_AND_DISK
    )
    job = BatchTransformJob(algorithm, name, rows, columns, state, config, {})
    arr = as_array(rows, col)
    rows.where(arr.isNotNull()).select(
        F.col(ROW_ID).alias("id"), F.struct(arr.alias("features")).alias("data")
    ).write.mode("error").json(fs_uri(spark, job.input_uri))
    request: dict[str, Any] = {
        "TransformJobName": name,
        "ModelName": state["model_name"],
        "TransformInput": {
            "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": job.input_uri}},
            "ContentType": "application/jsonlines",
            "SplitType": "Line",
        },
        "TransformOutput": {
            "S3OutputPath": job.output_uri,
            "Accept": "application/jsonlines",
            "AssembleWith": "Line",
        },
        "TransformResources": {
            "InstanceType": config.endpoint_instance_type,
            "InstanceCount": config.endpoint_instance_count,
        },
        "DataProcessing": {
            "InputFilter": "$.data",
            "JoinSource": "Input",
            "OutputFilter": "$['id','SageMakerOutput']",
        },
        "Tags": config.tag_list(),
    }
    if config.output_kms_key_id:
        request["TransformOutput"]["KmsKeyId"] = config.output_kms_key_id
    if config.volume_kms_key_id:
        request["TransformResources"]["VolumeKmsKeyId"] = config.volume_kms_key_id
    job.request = request
    try:
        boto3_client(config, "sagemaker").create_transform_job(**request)
    except Exception:
        _remove_staged(job)
        raise
    state.setdefault("transform_jobs", []).append(name)
    return job


def _remove_staged(job: BatchTransformJob) -> None:
    if "staged_data" in job.config.cleanup:
        removed = delete_prefix(job.config, job.config.staging_uri(job.job_name))
        log.info("batch transform %s: deleted %d staged objects", job.job_name, removed)


def collect_batch_transform(job: BatchTransformJob) -> DataFrame:
    """Wait for the job, read its output, clean up as configured, join back by id."""
    from pyspark import StorageLevel
    from pyspark.ml.functions import array_to_vector
    from pyspark.sql import functions as F

    from .estimators import cleanup, wait_for

    config, spark = job.config, job.rows.sparkSession
    sm = boto3_client(config, "sagemaker")
    try:
        wait_for(
            lambda: sm.describe_transform_job(TransformJobName=job.job_name)["TransformJobStatus"],
            done=("Completed",),
            failed=("Failed", "Stopped"),
            what=f"batch transform job {job.job_name}",
            config=config,
        )
        if job.algorithm == "kmeans":
            answer = "struct<closest_cluster: double, distance_to_cluster: double>"
        else:
            answer = "struct<projection: array<double>>"
        scored = (
            spark.read.schema(f"id long, SageMakerOutput {answer}")
            .json(fs_uri(spark, job.output_uri))
            .persist(StorageLevel.MEMORY_AND_DISK)
        )
        scored.count()  # materialise before the staged files go
    finally:
        _remove_staged(job)
    if "endpoint" in config.cleanup and job.state.get("endpoint_name"):
        cleanup(job.state, keep_model=True)
    tmp = "__sc_scored"
    if job.algorithm == "kmeans":
        out = F.struct(
            F.col("SageMakerOutput.closest_cluster").alias("cluster"),
            F.col("SageMakerOutput.distance_to_cluster").alias("distance"),
        )
    else:
        out = F.struct(F.col("SageMakerOutput.projection").alias("projection"))
    answers = scored.select(F.col("id").alias(ROW_ID), out.alias(tmp))
    joined = job.rows.join(answers, ROW_ID, "left").drop(ROW_ID)
    return _expand(joined, tmp, job.algorithm, job.columns, array_to_vector, F)
