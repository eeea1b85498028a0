"""AWS clients built explicitly from a :class:`SageMakerConfig`: boto3 and the Java SDK v1.

sagemaker-pyspark's defaults build Java clients from the environment when they are first used
(``AmazonSageMakerClientBuilder.defaultClient``: region and credentials looked up, EC2 metadata
included). Here every client gets the configured region and endpoint, and the Java clients the
credentials the driver's boto3 resolved (environment, profile, or the role the driver runs as).

The Java SageMaker client handed to sagemaker-pyspark is wrapped by :class:`RequestDecorator`, a
Python implementation of ``AmazonSageMaker`` (through py4j's callback server) that adds what
sagemaker-pyspark cannot express to ``CreateTrainingJob``: tags, the volume KMS key, the VPC and
network isolation, and records the job in a :class:`CreatedResources` ledger.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import SparkSession

    from .config import SageMakerConfig

log = logging.getLogger(__name__)

__all__ = ["CreatedResources", "RequestDecorator", "boto3_client", "java_clients"]


@dataclass
class CreatedResources:
    """What this process created, in order, so a failure can clean up or list it."""

    items: list[tuple[str, str]] = field(default_factory=list)

    def add(self, kind: str, name: str) -> None:
        self.items.append((kind, name))

    def names(self, kind: str) -> list[str]:
        return [n for k, n in self.items if k == kind]

    def describe(self) -> str:
        return ", ".join(f"{k} {n}" for k, n in self.items) or "nothing"


def boto3_session(config: SageMakerConfig) -> Any:
    """A boto3 session for the configured region (and profile, when set)."""
    import boto3

    return boto3.session.Session(region_name=config.region, profile_name=config.profile_name)


def boto3_client(config: SageMakerConfig, service: str, *, runtime: bool = False) -> Any:
    """A boto3 client for ``service`` with the configured region, endpoint and retries."""
    from botocore.config import Config

    url = config.resolved_runtime_endpoint_url() if runtime else config.resolved_endpoint_url()
    retry = Config(retries={"max_attempts": config.max_retries, "mode": "adaptive"})
    return boto3_session(config).client(service, endpoint_url=url, config=retry)


def _java_credentials(jvm: Any, config: SageMakerConfig) -> Any:
    creds = boto3_session(config).get_credentials()
    if creds is None:
        raise ValueError(
            "no AWS credentials found for the driver (environment, shared config or "
            f"profile_name={config.profile_name!r}); the SageMaker backend needs them"
        )
    frozen = creds.get_frozen_credentials()
    auth = jvm.com.amazonaws.auth
    if frozen.token:
        basic = auth.BasicSessionCredentials(frozen.access_key, frozen.secret_key, frozen.token)
    else:
        basic = auth.BasicAWSCredentials(frozen.access_key, frozen.secret_key)
    return auth.AWSStaticCredentialsProvider(basic)


def _build(jvm: Any, builder: Any, config: SageMakerConfig, creds: Any) -> Any:
    url = config.resolved_endpoint_url()
    if url:
        endpoint = jvm.com.amazonaws.client.builder.AwsClientBuilder.EndpointConfiguration(
            url, config.region
        )
        builder = builder.withEndpointConfiguration(endpoint)
    else:
        builder = builder.withRegion(config.region)
    return builder.withCredentials(creds).build()


def java_clients(spark: SparkSession, config: SageMakerConfig) -> tuple[Any, Any, Any]:
    """(SageMaker, S3, STS) Java SDK v1 clients for the configured region and endpoint."""
    jvm = spark.sparkContext._jvm
    assert jvm is not None
    creds = _java_credentials(jvm, config)
    aws = jvm.com.amazonaws.services
    sagemaker = _build(jvm, aws.sagemaker.AmazonSageMakerClientBuilder.standard(), config, creds)
    s3_builder = aws.s3.AmazonS3ClientBuilder.standard()
    if config.resolved_endpoint_url():
        s3_builder = s3_builder.withPathStyleAccessEnabled(True)
    s3 = _build(jvm, s3_builder, config, creds)
    sts_builder = aws.securitytoken.AWSSecurityTokenServiceClientBuilder.standard()
    sts = _build(jvm, sts_builder, config, creds)
    return sagemaker, s3, sts


class RequestDecorator:
    """``AmazonSageMaker`` for sagemaker-pyspark: completes CreateTrainingJob, delegates the rest.

    py4j calls these methods from the JVM; any other method is looked up on the real client.
    """

    def __init__(
        self, spark: SparkSession, real: Any, config: SageMakerConfig, ledger: CreatedResources
    ) -> None:
        self._jvm: Any = spark.sparkContext._jvm
        self._real = real
        self._config = config
        self._ledger = ledger
        self.requests: list[str] = []

    def _list(self, values: Any) -> Any:
        out = self._jvm.java.util.ArrayList()
        for v in values:
            out.add(v)
        return out

    def createTrainingJob(self, request: Any) -> Any:
        cfg = self._config
        model = self._jvm.com.amazonaws.services.sagemaker.model
        if cfg.tags:
            tags = [model.Tag().withKey(k).withValue(v) for k, v in cfg.tags]
            request.setTags(self._list(tags))
        if cfg.volume_kms_key_id:
            request.getResourceConfig().setVolumeKmsKeyId(cfg.volume_kms_key_id)
        if cfg.output_kms_key_id:
            request.getOutputDataConfig().setKmsKeyId(cfg.output_kms_key_id)
        if cfg.subnets:
            vpc = model.VpcConfig()
            vpc.setSubnets(self._list(cfg.subnets))
            vpc.setSecurityGroupIds(self._list(cfg.security_group_ids))
            request.setVpcConfig(vpc)
        if cfg.network_isolation:
            request.setEnableNetworkIsolation(True)
        self.requests.append(str(request.toString()))
        result = self._real.createTrainingJob(request)
        self._ledger.add("training-job", str(request.getTrainingJobName()))
        return result

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._real, name)

    class Java:
        implements = ["com.amazonaws.services.sagemaker.AmazonSageMaker"]


def as_java(spark: SparkSession, python_object: Any) -> Any:
    """The JVM-side proxy of a Python object implementing a Java interface.

    pyspark.ml pickles Python arguments it does not recognise; handing it the JVM reference
    (obtained by a round trip through a Java list) avoids that.
    """
    from pyspark.java_gateway import ensure_callback_server_started

    sc = spark.sparkContext
    ensure_callback_server_started(sc._gateway)
    jvm = sc._jvm
    assert jvm is not None
    return jvm.java.util.Collections.singletonList(python_object).get(0)


def s3a_settings(config: SageMakerConfig) -> dict[str, str]:
    """Hadoop settings for the staged data written through S3A.

    SSE-KMS with ``output_kms_key_id`` for the staging bucket; with an endpoint override
    (tests, S3-compatible stores) also the endpoint, path-style access and the driver's
    credentials, and no FileSystem cache so a changed setting takes effect.
    """
    bucket, _ = config.staging_location()
    out: dict[str, str] = {}
    url = config.resolved_endpoint_url()
    plain_http = bool(url) and str(url).startswith("http://")
    if config.output_kms_key_id and plain_http:
        # The AWS Java SDK v1 refuses to send SSE-KMS headers over plain HTTP, which only
        # S3-compatible test servers speak; AWS's own endpoints are HTTPS.
        log.warning(
            "staged data to %s is not SSE-KMS encrypted: the Java SDK sends KMS headers only "
            "over HTTPS",
            url,
        )
    elif config.output_kms_key_id:
        for key in ("server-side-encryption-algorithm", "encryption.algorithm"):
            out[f"fs.s3a.bucket.{bucket}.{key}"] = "SSE-KMS"
        for key in ("server-side-encryption.key", "encryption.key"):
            out[f"fs.s3a.bucket.{bucket}.{key}"] = config.output_kms_key_id
    if url:
        creds = boto3_session(config).get_credentials()
        frozen = creds.get_frozen_credentials() if creds is not None else None
        out.update(
            {
                "fs.s3a.endpoint": url,
                "fs.s3a.endpoint.region": config.region,
                "fs.s3a.path.style.access": "true",
                "fs.s3a.connection.ssl.enabled": str(url.startswith("https")).lower(),
                "fs.s3a.impl.disable.cache": "true",
            }
        )
        if frozen is not None:
            out["fs.s3a.access.key"] = frozen.access_key
            out["fs.s3a.secret.key"] = frozen.secret_key
            if frozen.token:
                out["fs.s3a.session.token"] = frozen.token
                out["fs.s3a.aws.credentials.provider"] = (
                    "org.apache.hadoop.fs.s3a.TemporaryAWSCredentialsProvider"
                )
            else:
                out["fs.s3a.aws.credentials.provider"] = (
                    "org.apache.hadoop.fs.s3a.SimpleAWSCredentialsProvider"
                )
    return out


def apply_s3a(spark: SparkSession, config: SageMakerConfig) -> None:
    """Set :func:`s3a_settings` on the session's Hadoop configuration (runtime-settable)."""
    hadoop = spark.sparkContext._jsc.hadoopConfiguration()
    for key, value in s3a_settings(config).items():
        hadoop.set(key, value)
