"""Create EMR clusters and submit ``spark_jobs/*.py`` as spark-submit steps, with boto3.

Each action is split into a *plan* (pure: the exact boto3 requests, built from a validated
:class:`~spark_clustering.emr.config.LaunchConfig`) and its *execution*. ``--dry-run`` prints the
plan as JSON and calls nothing; a real run executes the same plan, so what was printed is what
is sent. boto3 is imported only when a plan is executed.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from . import packaging
from .config import (
    NODE_JARS_DIR,
    NODE_VENV_DIR,
    LaunchConfig,
    executor_size,
    security_configuration_json,
    split_s3_uri,
)
from .gpu_sizing import apply_size, cuda_major

log = logging.getLogger(__name__)

#: States after which a step or cluster will not change by itself.
STEP_TERMINAL = ("COMPLETED", "CANCELLED", "FAILED", "INTERRUPTED")
CLUSTER_READY = ("WAITING", "RUNNING")
CLUSTER_DEAD = ("TERMINATING", "TERMINATED", "TERMINATED_WITH_ERRORS")
RAPIDS_JAR_NAME = "rapids-4-spark.jar"


@dataclass(frozen=True)
class Upload:
    """One file to put in S3, encrypted with the cluster's KMS key."""

    source: Path
    bucket: str
    key: str
    kms_key_arn: str

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    def request(self) -> dict[str, Any]:
        """Keyword arguments of ``S3.Client.upload_file``."""
        return {
            "Filename": str(self.source),
            "Bucket": self.bucket,
            "Key": self.key,
            "ExtraArgs": {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": self.kms_key_arn},
        }


@dataclass
class Plan:
    """The requests of one action, in the order they are sent."""

    uploads: list[Upload] = field(default_factory=list)
    requests: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def to_json(self) -> str:
        body = {
            "s3.upload_file": [u.request() for u in self.uploads],
            **{f"emr.{op}": req for op, req in self.requests},
        }
        return json.dumps(body, indent=2, sort_keys=False)


# --------------------------------------------------------------------------- artifacts


def _key(config: LaunchConfig, *parts: str) -> str:
    return config.artifacts_prefix + "/".join(parts)


def _upload(config: LaunchConfig, source: Path, *parts: str) -> Upload:
    return Upload(source, config.artifacts_bucket, _key(config, *parts), config.kms_key_arn)


def dist_files(config: LaunchConfig) -> tuple[Path, Path]:
    """The wheel and ``--py-files`` zip in ``artifacts.dist_dir``; fails if not built."""
    version = packaging.package_version()
    wheel = config.dist_dir / packaging.wheel_name(version)
    zip_path = config.dist_dir / packaging.pyfiles_zip_name(version)
    missing = [str(p) for p in (wheel, zip_path) if not p.is_file()]
    if missing:
        raise ValueError(
            f"launch config: artifacts.dist_dir={str(config.dist_dir)!r} lacks {missing}; run "
            "scripts/build-dist.sh (or pass --build)"
        )
    return wheel, zip_path


def _pyfiles_upload(config: LaunchConfig, zip_path: Path) -> Upload:
    return _upload(config, zip_path, "dist", zip_path.name)


# --------------------------------------------------------------------------- launch


def sagemaker_node_jars(python_version: str) -> list[str]:
    """Where emr/bootstrap.sh leaves sagemaker-pyspark's jars and protobuf-java on every node."""
    site = f"{NODE_VENV_DIR}/lib/python{python_version}/site-packages"
    return [
        f"file://{site}/sagemaker_pyspark/jars/*.jar",
        f"file://{NODE_JARS_DIR}/protobuf-java.jar",
    ]


def _config_uses_sagemaker(path: Path) -> bool:
    """True when a job's TOML config trains or scores with the SageMaker backend."""
    try:
        import tomllib
    except ModuleNotFoundError:  # pragma: no cover - Python 3.10
        import tomli as tomllib
    from ..session import uses_sagemaker

    try:
        return uses_sagemaker(tomllib.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError):
        return False


def bootstrap_args(config: LaunchConfig, wheel_uri: str) -> list[str]:
    args = ["--wheel", wheel_uri, "--python", config.python_version]
    if config.jars or config.rapids_jar:
        args += ["--jars", f"{config.artifacts_uri}jars/"]
    if config.cluster_type == "gpu":
        workers = [t for spec in config.roles if spec.role != "master" for t in spec.types]
        args += ["--gpu", "workers", "--cuml-version", config.cuml_version]
        args += ["--cuda", str(cuda_major(workers))]
        if config.rapids_jar:
            args += ["--rapids-jar", f"{config.artifacts_uri}jars/{RAPIDS_JAR_NAME}"]
    else:
        args += ["--gpu", "off"]
    return args


def cluster_configurations(config: LaunchConfig) -> list[dict[str, Any]]:
    """The configuration file's classifications, with GPU executors sized from the instance
    types (:mod:`spark_clustering.emr.gpu_sizing`) and adjusted for a pinned RAPIDS jar."""
    configs = json.loads(json.dumps(config.configurations))
    if config.cluster_type == "gpu":
        configs = apply_size(configs, executor_size(config.roles, config.instance_kind))
    if config.rapids_jar:
        # A pinned jar replaces EMR's bundled build: two copies of the plugin on one classpath
        # load whichever comes first.
        for item in configs:
            if item["Classification"] == "spark":
                item.setdefault("Properties", {})["enableSparkRapids"] = "false"
            if item["Classification"] == "spark-defaults":
                props = item.setdefault("Properties", {})
                jars = [j for j in props.get("spark.jars", "").split(",") if j]
                props["spark.jars"] = ",".join(
                    [*jars, f"local://{NODE_JARS_DIR}/{RAPIDS_JAR_NAME}"]
                )
    return configs


def _ebs(size_gb: int) -> dict[str, Any]:
    return {
        "EbsBlockDeviceConfigs": [
            {
                "VolumeSpecification": {"VolumeType": "gp3", "SizeInGB": size_gb},
                "VolumesPerInstance": 1,
            }
        ],
        "EbsOptimized": True,
    }


def instances_request(config: LaunchConfig) -> dict[str, Any]:
    request: dict[str, Any] = {
        "KeepJobFlowAliveWhenNoSteps": True,
        "TerminationProtected": False,
    }
    if config.instance_kind == "groups":
        request["InstanceGroups"] = [
            {
                "Name": f"{spec.role}",
                "InstanceRole": spec.role.upper(),
                "Market": spec.market,
                "InstanceType": spec.types[0],
                "InstanceCount": spec.count,
                "EbsConfiguration": _ebs(spec.ebs_gb),
            }
            for spec in config.roles
            if spec.count > 0
        ]
        request["Ec2SubnetId"] = config.subnet_ids[0]
    else:
        request["InstanceFleets"] = [
            {
                "Name": f"{spec.role}",
                "InstanceFleetType": spec.role.upper(),
                "TargetOnDemandCapacity": spec.on_demand,
                "TargetSpotCapacity": spec.spot,
                "InstanceTypeConfigs": [
                    {
                        "InstanceType": t,
                        "WeightedCapacity": 1,
                        "EbsConfiguration": _ebs(spec.ebs_gb),
                    }
                    for t in spec.types
                ],
            }
            for spec in config.roles
            if spec.on_demand + spec.spot > 0
        ]
        request["Ec2SubnetIds"] = list(config.subnet_ids)
    if config.key_name:
        request["Ec2KeyName"] = config.key_name
    return request


def plan_launch(config: LaunchConfig) -> Plan:
    """Uploads, ``CreateSecurityConfiguration`` and ``RunJobFlow`` for ``config``."""
    wheel, zip_path = dist_files(config)
    uploads = [
        _upload(config, config.bootstrap_script, "bootstrap", config.bootstrap_script.name),
        _upload(config, wheel, "dist", wheel.name),
        _pyfiles_upload(config, zip_path),
        *(_upload(config, path, "jars", name) for name, path in sorted(config.jars.items())),
    ]
    if config.rapids_jar:
        uploads.append(_upload(config, config.rapids_jar, "jars", RAPIDS_JAR_NAME))
    for script in sorted(config.jobs_dir.glob("*.py")):
        uploads.append(_upload(config, script, "jobs", script.name))
    security = {
        "Name": config.security_name,
        "SecurityConfiguration": security_configuration_json(config),
    }
    run_job_flow = {
        "Name": config.name,
        "ReleaseLabel": config.release_label,
        "LogUri": config.log_uri,
        "Applications": [{"Name": app} for app in config.applications],
        "Configurations": cluster_configurations(config),
        "BootstrapActions": [
            {
                "Name": "spark-clustering environment",
                "ScriptBootstrapAction": {
                    "Path": uploads[0].uri,
                    "Args": bootstrap_args(config, uploads[1].uri),
                },
            }
        ],
        "Instances": instances_request(config),
        "ServiceRole": config.service_role,
        "JobFlowRole": config.instance_profile,
        "SecurityConfiguration": config.security_name,
        "AutoTerminationPolicy": {"IdleTimeout": config.idle_timeout_seconds},
        "StepConcurrencyLevel": config.step_concurrency_level,
        "EbsRootVolumeSize": config.ebs_root_volume_size,
        "VisibleToAllUsers": True,
        "Tags": [{"Key": k, "Value": v} for k, v in sorted(config.tags.items())],
    }
    return Plan(
        uploads, [("create_security_configuration", security), ("run_job_flow", run_job_flow)]
    )


# --------------------------------------------------------------------------- submit


def _expand(arg: str, values: Mapping[str, str]) -> str:
    for name, value in values.items():
        arg = arg.replace("{" + name + "}", value)
    return arg


def plan_submit(
    config: LaunchConfig,
    cluster_id: str,
    job: str,
    job_config: Path | None = None,
    extra_args: Sequence[str] = (),
    extra_conf: Mapping[str, str] | None = None,
    now: datetime | None = None,
) -> Plan:
    """Uploads and the ``AddJobFlowSteps`` request that runs ``spark_jobs/<job>.py``."""
    if not isinstance(cluster_id, str) or not cluster_id.startswith("j-"):
        raise ValueError(
            f"--cluster-id={cluster_id!r} is not valid; accepted: an EMR id like j-ABC123"
        )
    spec = config.job(job)
    _, zip_path = dist_files(config)
    stamp = (now or datetime.now(timezone.utc)).strftime("%Y%m%dT%H%M%SZ")
    script = _upload(config, spec.script, "jobs", spec.script.name)
    pyfiles = _pyfiles_upload(config, zip_path)
    uploads = [pyfiles, script]
    values = {"artifacts": config.artifacts_uri, "log_uri": config.log_uri, "stamp": stamp}
    files: list[str] = []
    args = list(spec.args)
    if job_config is not None:
        if not job_config.is_file():
            raise ValueError(
                f"--job-config={str(job_config)!r} is not valid; accepted: an existing file"
            )
        upload = _upload(config, job_config, "configs", job, stamp, job_config.name)
        uploads.append(upload)
        # --files puts the file in the driver's and executors' working folder in cluster mode,
        # so jobs that open a local path (TOML specs) read it as-is; in client mode the driver
        # runs on the primary node and gets the S3 URI.
        files = [upload.uri]
        values["job_config"] = job_config.name if spec.deploy_mode == "cluster" else upload.uri
        if not any("{job_config}" in a for a in args):
            args += ["--config", "{job_config}"]
    elif any("{job_config}" in a for a in args):
        raise ValueError(f"job {job!r} takes {{job_config}} in its args: pass --job-config FILE")
    conf = {**spec.conf, **dict(extra_conf or {})}
    bad = [k for k, v in conf.items() if not (k.startswith("spark.") and isinstance(v, str))]
    if bad:
        raise ValueError(f"--conf {bad} is not valid; accepted: spark.* keys with string values")
    submit = ["spark-submit", "--deploy-mode", spec.deploy_mode, "--py-files", pyfiles.uri]
    if job_config is not None and _config_uses_sagemaker(job_config):
        if "protobuf-java.jar" not in config.jars:
            raise ValueError(
                f"artifacts.jars={ {k: str(v) for k, v in config.jars.items()} } is not valid for "
                f"{job_config.name}, which uses the SageMaker backend; accepted: an object naming "
                "'protobuf-java.jar' (sagemaker-pyspark's upload needs it on Spark 3.5)"
            )
        # Only SageMaker jobs carry sagemaker-pyspark's jars (184 MB of AWS SDK), and they must
        # be on spark-submit's command line: the driver JVM exists before our code runs.
        submit += ["--jars", ",".join(sagemaker_node_jars(config.python_version))]
    if files:
        submit += ["--files", ",".join(files)]
    submit += ["--conf", f"spark.app.name=spark-clustering-{job}"]
    for key, value in sorted(conf.items()):
        submit += ["--conf", f"{key}={value}"]
    submit.append(script.uri)
    submit += [_expand(a, values) for a in [*args, *extra_args]]
    step = {
        "Name": f"spark-clustering {job} {stamp}",
        "ActionOnFailure": "CONTINUE",
        "HadoopJarStep": {"Jar": "command-runner.jar", "Args": submit},
    }
    return Plan(uploads, [("add_job_flow_steps", {"JobFlowId": cluster_id, "Steps": [step]})])


# --------------------------------------------------------------------------- execution


@dataclass
class Clients:
    emr: Any
    s3: Any


def make_clients(config: LaunchConfig) -> Clients:
    """boto3 clients for the configured region, profile and endpoint (moto, VPC endpoints)."""
    import boto3

    session = boto3.session.Session(profile_name=config.profile, region_name=config.region)
    kwargs = {"endpoint_url": config.endpoint_url} if config.endpoint_url else {}
    return Clients(emr=session.client("emr", **kwargs), s3=session.client("s3", **kwargs))


def _upload_all(clients: Clients, uploads: Sequence[Upload]) -> None:
    for upload in uploads:
        log.info("upload %s -> %s", upload.source, upload.uri)
        clients.s3.upload_file(**upload.request())


def _ensure_security_configuration(clients: Clients, request: dict[str, Any]) -> None:
    from botocore.exceptions import ClientError

    try:
        existing = clients.emr.describe_security_configuration(Name=request["Name"])
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") not in (
            "InvalidRequestException",
            "ResourceNotFoundException",
        ):
            raise
        clients.emr.create_security_configuration(**request)
        log.info("created security configuration %s", request["Name"])
        return
    current = json.loads(existing["SecurityConfiguration"])
    if current != json.loads(request["SecurityConfiguration"]):
        # Security configurations cannot be edited; silently reusing the old one would launch
        # with keys or certificates the operator no longer asked for.
        raise ValueError(
            f"security_configuration.name={request['Name']!r} already exists with different "
            "content; accepted: a new name (EMR security configurations are immutable)"
        )
    log.info("security configuration %s already exists and matches", request["Name"])


def _check_tls_certificates(clients: Clients, security_json: str) -> None:
    """In-transit encryption fails at cluster start without its certificates: check first."""
    from botocore.exceptions import ClientError

    tls = json.loads(security_json)["EncryptionConfiguration"]["InTransitEncryptionConfiguration"]
    uri = tls["TLSCertificateConfiguration"].get("S3Object")
    if not uri:
        return
    bucket, key = split_s3_uri(uri, "security_configuration.tls_certificates_s3_object")
    try:
        clients.s3.head_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "?")
        raise ValueError(
            f"security_configuration.tls_certificates_s3_object={uri!r} cannot be read ({code}); "
            "accepted: an existing zip of PEM certificates the launcher may read"
        ) from None


def execute_launch(plan: Plan, clients: Clients) -> str:
    """Run a launch plan; returns the new cluster id."""
    ops = dict(plan.requests)
    _check_tls_certificates(clients, ops["create_security_configuration"]["SecurityConfiguration"])
    _upload_all(clients, plan.uploads)
    _ensure_security_configuration(clients, ops["create_security_configuration"])
    response = clients.emr.run_job_flow(**ops["run_job_flow"])
    return str(response["JobFlowId"])


@dataclass
class StepReport:
    cluster_id: str
    step_id: str
    state: str
    logs: str
    failure: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.state == "COMPLETED"

    def describe(self) -> str:
        text = f"step {self.step_id} on {self.cluster_id}: {self.state}; logs: {self.logs}"
        if self.failure:
            reason = self.failure.get("Reason") or self.failure.get("Message") or "no reason given"
            text += f"; failure: {reason}"
            if self.failure.get("LogFile"):
                text += f" (see {self.failure['LogFile']})"
        return text


def step_log_uri(log_uri: str, cluster_id: str, step_id: str) -> str:
    """Where EMR archives a step's stdout/stderr (``<LogUri>/<cluster>/steps/<step>/``)."""
    return f"{log_uri.rstrip('/')}/{cluster_id}/steps/{step_id}/"


def execute_submit(
    plan: Plan,
    clients: Clients,
    log_uri: str,
    wait: bool = False,
    timeout_s: float = 3600.0,
    poll_s: float = 30.0,
    sleep: Callable[[float], None] = time.sleep,
) -> StepReport:
    """Run a submit plan; with ``wait``, poll the step until it ends or ``timeout_s`` passes."""
    ops = dict(plan.requests)
    request = ops["add_job_flow_steps"]
    cluster_id = request["JobFlowId"]
    cluster = clients.emr.describe_cluster(ClusterId=cluster_id)["Cluster"]
    state = cluster["Status"]["State"]
    if state in CLUSTER_DEAD:
        raise ValueError(f"--cluster-id={cluster_id!r} is {state}; accepted: a running cluster")
    _upload_all(clients, plan.uploads)
    step_id = clients.emr.add_job_flow_steps(**request)["StepIds"][0]
    logs = step_log_uri(log_uri, cluster_id, step_id)
    report = StepReport(cluster_id, step_id, "PENDING", logs)
    deadline = time.monotonic() + timeout_s
    while True:
        step = clients.emr.describe_step(ClusterId=cluster_id, StepId=step_id)["Step"]
        report.state = step["Status"]["State"]
        report.failure = dict(step["Status"].get("FailureDetails") or {})
        if not wait or report.state in STEP_TERMINAL or time.monotonic() >= deadline:
            return report
        log.info("step %s is %s; next check in %.0fs", step_id, report.state, poll_s)
        sleep(poll_s)
