"""The SageMaker backend's configuration: one frozen dataclass, from arguments or the job config.

Every field has one meaning and one check in :meth:`SageMakerConfig.validate`, which runs before
any resource (S3 object, training job, model, endpoint) is created.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import SparkSession

__all__ = ["CLEANUP_CHOICES", "CONF_PREFIX", "INFERENCE_MODES", "SageMakerConfig"]

#: Spark settings read by :meth:`SageMakerConfig.from_spark_conf`:
#: ``spark.clustering.sagemaker.<field>`` (lists comma-separated, tags ``key=value,...``).
CONF_PREFIX = "spark.clustering.sagemaker."
INFERENCE_MODES = ("endpoint", "batch")
#: ``staged_data``: training input and batch-transform input/output are deleted after use;
#: ``endpoint``: an endpoint is deleted once a batch transform has run (none stays up).
CLEANUP_CHOICES = ("staged_data", "endpoint")
ROLE_ARN = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]+$")
#: SageMaker caps one InvokeEndpoint payload at 6 MB; stay below it.
MAX_PAYLOAD_LIMIT = 6 * 1024 * 1024


def _tuple(value: Any) -> tuple[str, ...]:
    if value is None or value == "":
        return ()
    if isinstance(value, str):
        return tuple(v.strip() for v in value.split(",") if v.strip())
    return tuple(str(v) for v in value)


def _tags(value: Any) -> tuple[tuple[str, str], ...]:
    if not value:
        return ()
    if isinstance(value, str):
        pairs = [p.split("=", 1) for p in value.split(",") if p.strip()]
        if any(len(p) != 2 for p in pairs):
            raise ValueError(f"tags={value!r} is not valid; accepted: 'key=value,key2=value2'")
        return tuple((k.strip(), v.strip()) for k, v in pairs)
    if isinstance(value, Mapping):
        return tuple((str(k), str(v)) for k, v in value.items())
    items: Iterable[Any] = value
    out = []
    for item in items:
        if isinstance(item, Mapping):
            out.append((str(item["Key"]), str(item["Value"])))
        else:
            k, v = item
            out.append((str(k), str(v)))
    return tuple(out)


def _bool(value: Any) -> bool:
    if isinstance(value, str):
        if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
            raise ValueError(f"{value!r} is not a boolean; accepted: true or false")
        return value.lower() in ("true", "1", "yes")
    return bool(value)


@dataclass(frozen=True)
class SageMakerConfig:
    """Where and how the SageMaker backend runs.

    Parameters
    ----------
    region : str
        AWS region of every client (no lookup of the EC2 metadata service).
    role_arn : str
        Execution role SageMaker assumes for training, the model and transform jobs.
    staging_prefix : str
        ``s3://bucket/prefix``: training data, outputs and batch transform files go below it.
    training_instance_type, training_instance_count, volume_size_gb, max_runtime_seconds
        The training job's resources and stopping condition.
    volume_kms_key_id : str, optional
        KMS key for the ML storage volumes (training, endpoint, transform).
    output_kms_key_id : str, optional
        KMS key for the model artifacts, transform output and the staged data (SSE-KMS).
    require_kms : bool
        Refuse to start unless both KMS keys are set.
    subnets, security_group_ids : tuple of str
        VPC of the training job, the model and transform jobs (both or neither).
    network_isolation : bool
        Run the containers without network access.
    tags : mapping or pairs
        Applied to every resource created: training job, model, endpoint config, endpoint,
        transform job, tuning job.
    endpoint_instance_type, endpoint_instance_count
        Hosting resources (also the batch transform's instances).
    inference : {'endpoint', 'batch'}
        ``endpoint``: fit deploys an endpoint and ``transform`` calls it from the executors;
        ``batch``: fit creates only the model and ``transform`` runs a batch transform job.
    cleanup : tuple of {'staged_data', 'endpoint'}
        What is deleted after use (both by default).
    endpoint_url, runtime_endpoint_url : str, optional
        Override the AWS API endpoint (and SageMaker Runtime's); default ``AWS_ENDPOINT_URL``
        from the environment, else AWS's public endpoints.
    profile_name : str, optional
        Named AWS profile for the driver's credentials.
    max_payload_bytes, max_retries, poll_seconds, wait_timeout_seconds
        Endpoint batching and retries; how often and how long to wait on SageMaker.

    Examples
    --------
    >>> cfg = SageMakerConfig(region="eu-west-1",
    ...     role_arn="arn:aws:iam::123456789012:role/sm", staging_prefix="s3://b/seg",
    ...     tags={"team": "crm"})
    >>> cfg.validate()
    >>> cfg.tag_list()
    [{'Key': 'team', 'Value': 'crm'}]
    """

    region: str = ""
    role_arn: str = ""
    staging_prefix: str = ""
    training_instance_type: str = "ml.m5.xlarge"
    training_instance_count: int = 1
    volume_size_gb: int = 30
    max_runtime_seconds: int = 24 * 3600
    volume_kms_key_id: str | None = None
    output_kms_key_id: str | None = None
    require_kms: bool = False
    subnets: tuple[str, ...] = ()
    security_group_ids: tuple[str, ...] = ()
    network_isolation: bool = False
    tags: tuple[tuple[str, str], ...] = ()
    endpoint_instance_type: str = "ml.m5.large"
    endpoint_instance_count: int = 1
    inference: str = "endpoint"
    cleanup: tuple[str, ...] = CLEANUP_CHOICES
    endpoint_url: str | None = None
    runtime_endpoint_url: str | None = None
    profile_name: str | None = None
    max_payload_bytes: int = 5 * 1024 * 1024
    max_retries: int = 6
    poll_seconds: float = 30.0
    wait_timeout_seconds: float = 3 * 3600.0

    def __post_init__(self) -> None:
        # Normalise lists and mappings so the dataclass stays hashable-ish and JSON-friendly.
        object.__setattr__(self, "subnets", _tuple(self.subnets))
        object.__setattr__(self, "security_group_ids", _tuple(self.security_group_ids))
        object.__setattr__(self, "cleanup", _tuple(self.cleanup))
        object.__setattr__(self, "tags", _tags(self.tags))

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_mapping(cls, values: Mapping[str, Any], prefix: str = "") -> SageMakerConfig:
        """Build from ``{field: value}`` (strings are parsed); keys may carry ``prefix``."""
        names = {f.name: f for f in dataclasses.fields(cls)}
        kwargs: dict[str, Any] = {}
        for key, value in values.items():
            if prefix and not key.startswith(prefix):
                continue
            name = key[len(prefix) :]
            if name not in names:
                raise ValueError(
                    f"{key!r} is not a SageMaker setting; accepted: "
                    f"{', '.join(prefix + n for n in names)}"
                )
            kwargs[name] = cls._parse(name, value)
        return cls(**kwargs)

    @classmethod
    def _parse(cls, name: str, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        if name in (
            "training_instance_count",
            "volume_size_gb",
            "max_runtime_seconds",
            "endpoint_instance_count",
            "max_payload_bytes",
            "max_retries",
        ):
            try:
                return int(value)
            except ValueError:
                raise ValueError(f"{name}={value!r} is not an integer") from None
        if name in ("poll_seconds", "wait_timeout_seconds"):
            return float(value)
        if name in ("require_kms", "network_isolation"):
            return _bool(value)
        return value

    @classmethod
    def from_spark_conf(cls, spark: SparkSession) -> SageMakerConfig:
        """Read ``spark.clustering.sagemaker.*`` from the session (the job's config)."""
        conf = dict(spark.sparkContext.getConf().getAll())
        for key in list(conf):
            if not key.startswith(CONF_PREFIX):
                del conf[key]
        for key, value in conf.items():
            conf[key] = spark.conf.get(key, value) or value
        return cls.from_mapping(conf, CONF_PREFIX)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> SageMakerConfig:
        """Inverse of :meth:`to_dict` (as saved with a model)."""
        return cls.from_mapping(dict(values))

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly dict (tags as pairs); no credentials are part of the config."""
        out = dataclasses.asdict(self)
        out["tags"] = [list(t) for t in self.tags]
        for key in ("subnets", "security_group_ids", "cleanup"):
            out[key] = list(out[key])
        return out

    # ------------------------------------------------------------------ checks
    def validate(self) -> None:
        """Raise ``ValueError`` naming the field, its value and what is accepted."""
        if not self.region:
            raise ValueError(
                "region='' is missing; accepted: an AWS region name such as 'eu-west-1' (set it "
                f"in SageMakerConfig or {CONF_PREFIX}region; it is never looked up)"
            )
        if not re.fullmatch(r"[a-z]{2}(-[a-z]+)+-\d", self.region):
            raise ValueError(f"region={self.region!r} is not valid; accepted: e.g. 'eu-west-1'")
        if not self.role_arn:
            raise ValueError(
                "role_arn='' is missing; accepted: an IAM role ARN "
                "'arn:aws:iam::<12-digit account>:role/<name>' that SageMaker can assume"
            )
        if not ROLE_ARN.match(self.role_arn):
            raise ValueError(
                f"role_arn={self.role_arn!r} is not valid; accepted: "
                "'arn:aws:iam::<12-digit account>:role/<name>'"
            )
        self.staging_location()
        for name in (
            "training_instance_count",
            "endpoint_instance_count",
            "volume_size_gb",
            "max_runtime_seconds",
            "max_retries",
        ):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name}={getattr(self, name)!r} is out of range; accepted: >= 1")
        if not 1024 <= self.max_payload_bytes <= MAX_PAYLOAD_LIMIT:
            raise ValueError(
                f"max_payload_bytes={self.max_payload_bytes!r} is out of range; accepted: "
                f"1024 to {MAX_PAYLOAD_LIMIT} (SageMaker's 6 MB InvokeEndpoint limit)"
            )
        if self.poll_seconds <= 0 or self.wait_timeout_seconds <= 0:
            raise ValueError("poll_seconds and wait_timeout_seconds must be > 0")
        if self.inference not in INFERENCE_MODES:
            raise ValueError(
                f"inference={self.inference!r} is not valid; accepted: {', '.join(INFERENCE_MODES)}"
            )
        for item in self.cleanup:
            if item not in CLEANUP_CHOICES:
                raise ValueError(
                    f"cleanup={list(self.cleanup)!r} is not valid; accepted: a subset of "
                    f"{', '.join(CLEANUP_CHOICES)}"
                )
        if bool(self.subnets) != bool(self.security_group_ids):
            raise ValueError(
                f"subnets={list(self.subnets)!r} and security_group_ids="
                f"{list(self.security_group_ids)!r}: accepted: both set (a VPC) or both empty"
            )
        if self.require_kms:
            for name in ("volume_kms_key_id", "output_kms_key_id"):
                if not getattr(self, name):
                    raise ValueError(
                        f"{name}=None but require_kms=True; accepted: a KMS key id, ARN or alias "
                        "(every volume and output must be encrypted with your key)"
                    )
        if len(self.tags) > 50:
            raise ValueError(f"tags has {len(self.tags)} entries; accepted: at most 50")
        for key, value in self.tags:
            if not key or len(key) > 128 or len(value) > 256 or key.lower().startswith("aws:"):
                raise ValueError(
                    f"tags entry {key!r}={value!r} is not valid; accepted: key of 1-128 "
                    "characters not starting with 'aws:', value of at most 256"
                )

    # ------------------------------------------------------------------ helpers
    def staging_location(self) -> tuple[str, str]:
        """(bucket, prefix without slashes) of ``staging_prefix``; raises if not ``s3://``."""
        match = re.fullmatch(r"s3://([a-z0-9][a-z0-9.-]{1,61}[a-z0-9])(/.*)?", self.staging_prefix)
        if not match:
            raise ValueError(
                f"staging_prefix={self.staging_prefix!r} is not valid; accepted: "
                "'s3://<bucket>/<prefix>' (an S3 URI; s3a:// and local paths are not)"
            )
        return match.group(1), (match.group(2) or "").strip("/")

    def staging_uri(self, *parts: str) -> str:
        """``s3://bucket/prefix/part/...``."""
        bucket, prefix = self.staging_location()
        return "s3://" + "/".join(p.strip("/") for p in (bucket, prefix, *parts) if p)

    def tag_list(self) -> list[dict[str, str]]:
        """Tags as the SageMaker API takes them."""
        return [{"Key": k, "Value": v} for k, v in self.tags]

    def vpc_config(self) -> dict[str, list[str]] | None:
        """``VpcConfig`` for the API, or None without a VPC."""
        if not self.subnets:
            return None
        return {"Subnets": list(self.subnets), "SecurityGroupIds": list(self.security_group_ids)}

    def resolved_endpoint_url(self) -> str | None:
        """The API endpoint override: this config's, else ``AWS_ENDPOINT_URL``, else None."""
        return self.endpoint_url or os.environ.get("AWS_ENDPOINT_URL") or None

    def resolved_runtime_endpoint_url(self) -> str | None:
        """SageMaker Runtime's endpoint override (defaults to :meth:`resolved_endpoint_url`)."""
        return self.runtime_endpoint_url or self.resolved_endpoint_url()

    def with_changes(self, **changes: Any) -> SageMakerConfig:
        """A copy with some fields replaced."""
        return dataclasses.replace(self, **changes)
