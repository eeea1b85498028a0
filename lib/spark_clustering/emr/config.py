"""The launcher's own configuration file (JSON): what cluster to create and where things go.

Every key is checked here, before any AWS call; a bad value raises ``ValueError`` naming the key,
the value and what is accepted. Relative paths are relative to the configuration file, so a
config in ``emr/`` can say ``"configurations": "cpu.json"``. See ``emr/launch-cpu.json`` and
``docs/emr.md`` for the full format.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .configurations import (
    check_rapids,
    is_instance_type,
    is_rapids,
    load_configurations,
    read_json,
    spark_defaults,
)
from .gpu_sizing import SIZED_KEYS, ExecutorSize, apply_size, size_executors, size_for

CLUSTER_TYPES = ("cpu", "gpu")
INSTANCE_KINDS = ("groups", "fleets")
MARKETS = ("ON_DEMAND", "SPOT")
DEPLOY_MODES = ("cluster", "client")
#: Applications the recipe uses; Spark is required, Livy and JupyterEnterpriseGateway serve
#: SparkMagic notebooks (EMR Studio / workspaces).
APPLICATIONS = ("Hadoop", "Spark", "Livy", "JupyterEnterpriseGateway", "Hive", "JupyterHub")
REQUIRED_TAGS = ("project", "owner")
#: EMR bounds for AutoTerminationPolicy.IdleTimeout (seconds).
IDLE_TIMEOUT_RANGE = (60, 604800)

_RELEASE = re.compile(r"^emr-7\.\d+\.\d+$")
_S3_URI = re.compile(r"^s3://([a-z0-9][a-z0-9.-]{1,61}[a-z0-9])/(.*)$")
_KMS_ARN = re.compile(r"^arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:(key|alias)/[A-Za-z0-9/_-]+$")
_JOB_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


def _err(key: str, value: Any, accepted: str) -> ValueError:
    return ValueError(f"launch config: {key}={value!r} is not valid; accepted: {accepted}")


def split_s3_uri(uri: str, key: str = "s3 uri") -> tuple[str, str]:
    """``s3://bucket/prefix`` -> ``(bucket, prefix)``; raises ``ValueError`` naming ``key``."""
    match = _S3_URI.match(uri) if isinstance(uri, str) else None
    if not match:
        raise _err(key, uri, "an s3://bucket/key URI")
    return match.group(1), match.group(2)


@dataclass(frozen=True)
class RoleSpec:
    """One instance group (``type``/``count``) or fleet (``types``/``on_demand``/``spot``)."""

    role: str
    types: tuple[str, ...]
    count: int = 1
    market: str = "ON_DEMAND"
    on_demand: int = 0
    spot: int = 0
    ebs_gb: int = 64


@dataclass(frozen=True)
class JobSpec:
    script: Path
    args: tuple[str, ...] = ()
    conf: dict[str, str] = field(default_factory=dict)
    deploy_mode: str = "cluster"


@dataclass(frozen=True)
class LaunchConfig:
    path: Path
    name: str
    cluster_type: str
    region: str
    endpoint_url: str | None
    profile: str | None
    release_label: str
    applications: tuple[str, ...]
    configurations_path: Path
    configurations: list[dict[str, Any]]
    bootstrap_script: Path
    python_version: str
    cuml_version: str
    rapids_jar: Path | None
    artifacts_bucket: str
    artifacts_prefix: str
    dist_dir: Path
    jars: dict[str, Path]
    jobs_dir: Path
    log_uri: str
    service_role: str
    instance_profile: str
    security_name: str
    security_template: Path
    kms_key_arn: str
    tls_certificates_s3_object: str
    instance_kind: str
    roles: tuple[RoleSpec, ...]
    subnet_ids: tuple[str, ...]
    key_name: str | None
    ebs_root_volume_size: int
    idle_timeout_seconds: int
    step_concurrency_level: int
    tags: dict[str, str]
    jobs: dict[str, JobSpec]

    @property
    def artifacts_uri(self) -> str:
        return f"s3://{self.artifacts_bucket}/{self.artifacts_prefix}"

    def job(self, name: str) -> JobSpec:
        """The job ``name``: its entry in ``jobs`` or ``<jobs_dir>/<name>.py``."""
        if not isinstance(name, str) or not _JOB_NAME.match(name):
            raise _err("--job", name, "a job name like 'segment' (lowercase, digits, _)")
        if name in self.jobs:
            spec = self.jobs[name]
        else:
            spec = JobSpec(script=self.jobs_dir / f"{name}.py")
        if not spec.script.is_file():
            known = sorted({*self.jobs, *(p.stem for p in self.jobs_dir.glob("*.py"))})
            raise _err("--job", name, f"one of {known} (no script at {spec.script})")
        return spec


def _get(
    data: dict[str, Any],
    key: str,
    kind: type | tuple[type, ...],
    default: Any = ...,
    leaf: str | None = None,
) -> Any:
    """``data[leaf]`` checked against ``kind``; ``key`` is the dotted name errors show."""
    leaf = leaf if leaf is not None else key.rsplit(".", 1)[-1]
    if leaf not in data:
        if default is ...:
            raise ValueError(f"launch config: required key {key!r} is missing")
        return default
    value = data[leaf]
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is int):
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise _err(key, value, f"a {names}")
    return value


def _section(data: dict[str, Any], key: str, required: bool = True) -> dict[str, Any]:
    value = _get(data, key, dict, ... if required else {})
    return dict(value)


def _unknown(data: dict[str, Any], key: str, allowed: set[str]) -> None:
    extra = set(data) - allowed
    if extra:
        raise ValueError(
            f"launch config: unknown key(s) {sorted(extra)} in {key or 'the top level'}; "
            f"accepted: {', '.join(sorted(allowed))}"
        )


def _path(base: Path, value: str) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else (base / path).resolve()


def _existing_file(
    base: Path, data: dict[str, Any], key: str, default: Any = ..., leaf: str | None = None
) -> Path:
    value = _get(data, key, str, default, leaf)
    path = _path(base, value)
    if not path.is_file():
        raise _err(key, value, f"an existing file (relative to {base}); {path} does not exist")
    return path


def _int_in(data: dict[str, Any], key: str, lo: int, hi: int, default: Any = ...) -> int:
    value = _get(data, key, int, default)
    if not lo <= value <= hi:
        raise _err(key, value, f"an integer in [{lo}, {hi}]")
    return int(value)


def _choice(data: dict[str, Any], key: str, choices: tuple[str, ...], default: Any = ...) -> str:
    value = _get(data, key, str, default)
    if value not in choices:
        raise _err(key, value, ", ".join(choices))
    return str(value)


def _roles(data: dict[str, Any], kind: str) -> tuple[RoleSpec, ...]:
    roles = []
    for role in ("master", "core", "task"):
        key = f"instances.{role}"
        spec = _get(data, key, dict, ... if role != "task" else None)
        if spec is None:
            continue
        ebs = _int_in(spec, f"{key}.ebs_gb", 32, 16384, 64)
        if kind == "groups":
            _unknown(spec, key, {"type", "count", "market", "ebs_gb"})
            itype = _get(spec, f"{key}.type", str)
            if not is_instance_type(itype):
                raise _err(f"{key}.type", itype, "an EC2 instance type such as m5.xlarge")
            count = _int_in(spec, f"{key}.count", 1 if role != "task" else 0, 500, 1)
            if role == "master" and count not in (1, 3):
                raise _err(f"{key}.count", count, "1 or 3 (EMR primary nodes)")
            market = _choice(spec, f"{key}.market", MARKETS, "ON_DEMAND")
            roles.append(RoleSpec(role, (itype,), count=count, market=market, ebs_gb=ebs))
        else:
            _unknown(spec, key, {"types", "on_demand", "spot", "ebs_gb"})
            types = _get(spec, f"{key}.types", list)
            if not types or not all(isinstance(t, str) and is_instance_type(t) for t in types):
                raise _err(f"{key}.types", types, "a non-empty list of EC2 instance types")
            if len(types) > 30:
                raise _err(f"{key}.types", types, "at most 30 instance types per fleet")
            on_demand = _int_in(spec, f"{key}.on_demand", 0, 1000, 1 if role == "master" else 0)
            spot = _int_in(spec, f"{key}.spot", 0, 1000, 0)
            if role == "master" and on_demand + spot != 1:
                raise _err(
                    f"{key}.on_demand+spot", on_demand + spot, "exactly 1 for the primary fleet"
                )
            if role == "core" and on_demand + spot < 1:
                raise _err(f"{key}.on_demand+spot", on_demand + spot, "at least 1 core unit")
            roles.append(RoleSpec(role, tuple(types), on_demand=on_demand, spot=spot, ebs_gb=ebs))
    return tuple(roles)


def load_launch_config(path: str | Path) -> LaunchConfig:
    """Read and validate a launcher configuration file; raises ``ValueError`` on bad input."""
    path = Path(path).resolve()
    data = read_json(path, "launch config")
    if not isinstance(data, dict):
        raise ValueError(f"launch config {str(path)!r} must be a JSON object")
    return parse_launch_config(data, path)


def parse_launch_config(data: dict[str, Any], path: Path) -> LaunchConfig:
    base = path.parent
    _unknown(
        data,
        "",
        {
            "$comment",
            "name",
            "cluster_type",
            "aws",
            "release_label",
            "applications",
            "configurations",
            "bootstrap",
            "artifacts",
            "log_uri",
            "service_role",
            "instance_profile",
            "security_configuration",
            "instances",
            "idle_timeout_seconds",
            "step_concurrency_level",
            "tags",
            "jobs",
        },
    )
    name = _get(data, "name", str)
    if not re.match(r"^[A-Za-z0-9][A-Za-z0-9 ._-]{0,255}$", name):
        raise _err("name", name, "letters, digits, space, '.', '_' or '-' (at most 256)")
    cluster_type = _choice(data, "cluster_type", CLUSTER_TYPES)

    aws = _section(data, "aws")
    _unknown(aws, "aws", {"region", "endpoint_url", "profile"})
    region = _get(aws, "aws.region", str)
    if not re.match(r"^[a-z]{2}(-[a-z]+)+-\d$", region):
        raise _err("aws.region", region, "an AWS region name such as us-east-1")
    endpoint_url = _get(aws, "aws.endpoint_url", (str, type(None)), None)
    if endpoint_url is not None and not re.match(r"^https?://", endpoint_url):
        raise _err("aws.endpoint_url", endpoint_url, "null or an http(s):// URL")
    profile = _get(aws, "aws.profile", (str, type(None)), None)

    release = _get(data, "release_label", str)
    if not _RELEASE.match(release):
        raise _err("release_label", release, "an EMR 7 release label such as emr-7.5.0")
    apps = _get(data, "applications", list, ["Hadoop", "Spark", "Livy", "JupyterEnterpriseGateway"])
    bad = [a for a in apps if a not in APPLICATIONS]
    if bad or "Spark" not in apps:
        raise _err(
            "applications", apps, f"a list including 'Spark' drawn from {list(APPLICATIONS)}"
        )

    configurations_path = _existing_file(base, data, "configurations")
    configurations = load_configurations(configurations_path)
    rapids = is_rapids(configurations)
    if cluster_type == "gpu":
        sized = sorted(set(spark_defaults(configurations)) & set(SIZED_KEYS))
        if sized:
            raise _err(
                "configurations",
                str(configurations_path),
                f"no {', '.join(sized)}: the launcher sizes executors from the instance types",
            )
        # the file's own settings first, with a nominal size; the real one follows the instances
        _check_gpu_configurations(configurations_path, configurations, NOMINAL_SIZE)
    elif rapids:
        raise _err(
            "configurations",
            str(configurations_path),
            "a CPU configuration for cluster_type='cpu' "
            "(this one enables the RAPIDS Accelerator: use cluster_type='gpu')",
        )

    bootstrap = _section(data, "bootstrap")
    _unknown(bootstrap, "bootstrap", {"script", "python", "cuml_version", "rapids_jar"})
    bootstrap_script = _existing_file(base, bootstrap, "bootstrap.script")
    python_version = _get(bootstrap, "bootstrap.python", str, "3.11")
    if not re.match(r"^3\.1\d$", python_version):
        raise _err("bootstrap.python", python_version, "3.10 or newer, e.g. '3.11'")
    cuml_version = _get(bootstrap, "bootstrap.cuml_version", str, "25.10")
    if not re.match(r"^\d{2}\.\d{2}$", cuml_version):
        raise _err("bootstrap.cuml_version", cuml_version, "a RAPIDS release like '25.10'")
    rapids_jar = None
    if "rapids_jar" in bootstrap:
        if cluster_type != "gpu":
            raise _err(
                "bootstrap.rapids_jar", bootstrap["rapids_jar"], "only with cluster_type='gpu'"
            )
        rapids_jar = _existing_file(base, bootstrap, "bootstrap.rapids_jar")

    artifacts = _section(data, "artifacts")
    _unknown(artifacts, "artifacts", {"s3_uri", "dist_dir", "jars", "jobs_dir"})
    s3_uri = _get(artifacts, "artifacts.s3_uri", str)
    bucket, prefix = split_s3_uri(s3_uri, "artifacts.s3_uri")
    if prefix and not prefix.endswith("/"):
        raise _err("artifacts.s3_uri", s3_uri, "an s3:// prefix ending with '/'")
    dist_dir = _path(base, _get(artifacts, "artifacts.dist_dir", str, "../dist"))
    jars = {}
    for jar_name, jar_path in _get(artifacts, "artifacts.jars", dict, {}).items():
        if not re.match(r"^[A-Za-z0-9._-]+\.jar$", jar_name):
            raise _err(
                f"artifacts.jars.{jar_name}", jar_path, "an object of 'name.jar': local path"
            )
        jars[jar_name] = _existing_file(
            base, {jar_name: jar_path}, f"artifacts.jars.{jar_name}", leaf=jar_name
        )
    _check_local_jars(configurations, jars)
    jobs_dir = _path(base, _get(artifacts, "artifacts.jobs_dir", str, "../spark_jobs"))

    log_uri = _get(data, "log_uri", str, f"s3://{bucket}/{prefix}logs/")
    split_s3_uri(log_uri, "log_uri")
    service_role = _get(data, "service_role", str)
    instance_profile = _get(data, "instance_profile", str)

    sec = _section(data, "security_configuration")
    _unknown(
        sec,
        "security_configuration",
        {"name", "template", "kms_key_arn", "tls_certificates_s3_object"},
    )
    security_name = _get(sec, "security_configuration.name", str)
    security_template = _existing_file(base, sec, "security_configuration.template")
    kms_key_arn = _get(sec, "security_configuration.kms_key_arn", str)
    if not _KMS_ARN.match(kms_key_arn):
        raise _err(
            "security_configuration.kms_key_arn",
            kms_key_arn,
            "a KMS key ARN such as arn:aws:kms:us-east-1:123456789012:key/<id>",
        )
    tls = _get(sec, "security_configuration.tls_certificates_s3_object", str)
    split_s3_uri(tls, "security_configuration.tls_certificates_s3_object")
    if not tls.endswith(".zip"):
        raise _err(
            "security_configuration.tls_certificates_s3_object",
            tls,
            "an s3:// URI of a .zip of PEM files",
        )

    instances = _section(data, "instances")
    _unknown(
        instances,
        "instances",
        {"kind", "master", "core", "task", "subnet_ids", "key_name", "ebs_root_volume_size"},
    )
    kind = _choice(instances, "instances.kind", INSTANCE_KINDS, "groups")
    roles = _roles(instances, kind)
    subnets = _get(instances, "instances.subnet_ids", list)
    if not subnets or not all(isinstance(s, str) and s.startswith("subnet-") for s in subnets):
        raise _err("instances.subnet_ids", subnets, "a non-empty list of subnet-... ids")
    if kind == "groups" and len(subnets) != 1:
        raise _err("instances.subnet_ids", subnets, "exactly one subnet with instance groups")
    key_name = _get(instances, "instances.key_name", (str, type(None)), None)
    root_gb = _int_in(instances, "instances.ebs_root_volume_size", 15, 100, 32)
    if cluster_type == "gpu":
        for spec in roles:
            if spec.role == "master":
                continue
            for itype in spec.types:
                try:
                    size_for(itype)
                except ValueError as exc:
                    raise _err(f"instances.{spec.role}", itype, str(exc)) from None
        size = executor_size(roles, kind)
        _check_gpu_configurations(configurations_path, apply_size(configurations, size), size)

    idle = _int_in(data, "idle_timeout_seconds", *IDLE_TIMEOUT_RANGE, 3600)
    concurrency = _int_in(data, "step_concurrency_level", 1, 256, 1)

    tags = _get(data, "tags", dict)
    for k, v in tags.items():
        if not isinstance(v, str) or not v or len(k) > 128 or len(v) > 256:
            raise _err(f"tags.{k}", v, "a non-empty string of at most 256 characters")
    missing = [t for t in REQUIRED_TAGS if t not in tags]
    if missing:
        raise _err(
            "tags", tags, f"an object including the keys {list(REQUIRED_TAGS)} (missing {missing})"
        )

    jobs = {}
    for job_name, spec in _get(data, "jobs", dict, {}).items():
        key = f"jobs.{job_name}"
        if not _JOB_NAME.match(job_name) or not isinstance(spec, dict):
            raise _err(key, spec, "an object under a lowercase job name")
        _unknown(spec, key, {"script", "args", "conf", "deploy_mode"})
        script = _existing_file(base, spec, f"{key}.script", str(jobs_dir / f"{job_name}.py"))
        args = _get(spec, f"{key}.args", list, [])
        if not all(isinstance(a, str) for a in args):
            raise _err(f"{key}.args", args, "a list of strings")
        conf = _get(spec, f"{key}.conf", dict, {})
        if not all(isinstance(v, str) and k.startswith("spark.") for k, v in conf.items()):
            raise _err(f"{key}.conf", conf, "an object of spark.* keys to string values")
        mode = _choice(spec, f"{key}.deploy_mode", DEPLOY_MODES, "cluster")
        jobs[job_name] = JobSpec(script=script, args=tuple(args), conf=dict(conf), deploy_mode=mode)

    return LaunchConfig(
        path=path,
        name=name,
        cluster_type=cluster_type,
        region=region,
        endpoint_url=endpoint_url,
        profile=profile,
        release_label=release,
        applications=tuple(apps),
        configurations_path=configurations_path,
        configurations=configurations,
        bootstrap_script=bootstrap_script,
        python_version=python_version,
        cuml_version=cuml_version,
        rapids_jar=rapids_jar,
        artifacts_bucket=bucket,
        artifacts_prefix=prefix,
        dist_dir=dist_dir,
        jars=jars,
        jobs_dir=jobs_dir,
        log_uri=log_uri,
        service_role=service_role,
        instance_profile=instance_profile,
        security_name=security_name,
        security_template=security_template,
        kms_key_arn=kms_key_arn,
        tls_certificates_s3_object=tls,
        instance_kind=kind,
        roles=roles,
        subnet_ids=tuple(subnets),
        key_name=key_name,
        ebs_root_volume_size=root_gb,
        idle_timeout_seconds=idle,
        step_concurrency_level=concurrency,
        tags=dict(tags),
        jobs=jobs,
    )


#: the size the configurations file is first checked with, before the instances are read
NOMINAL_SIZE = size_executors([(["g4dn.2xlarge"], 1)])


def executor_size(roles: tuple[RoleSpec, ...] | list[RoleSpec], kind: str) -> ExecutorSize:
    """GPU executors sized from the core and task instance types and counts."""
    return size_executors(
        (spec.types, spec.count if kind == "groups" else spec.on_demand + spec.spot)
        for spec in roles
        if spec.role != "master"
    )


def _check_gpu_configurations(path: Path, configurations: list, size: ExecutorSize) -> None:
    problems = check_rapids(apply_size(configurations, size))
    if problems:
        raise ValueError(
            f"launch config: configurations={str(path)!r} is not a valid GPU "
            "(RAPIDS) configuration: " + "; ".join(problems)
        )


#: Where emr/bootstrap.sh puts the jars uploaded from ``artifacts.jars`` on every node.
NODE_JARS_DIR = "/opt/spark-clustering/jars"
#: The virtual environment emr/bootstrap.sh builds on every node.
NODE_VENV_DIR = "/opt/spark-clustering/venv"


def _check_local_jars(configurations: list[dict[str, Any]], jars: dict[str, Path]) -> None:
    """Every ``local://`` jar the cluster configuration names must be one the launcher ships."""
    listed = spark_defaults(configurations).get("spark.jars", "")
    for entry in filter(None, (j.strip() for j in listed.split(","))):
        prefix = f"local://{NODE_JARS_DIR}/"
        if entry.startswith(prefix) and entry[len(prefix) :] not in jars:
            raise _err(
                "artifacts.jars",
                {k: str(v) for k, v in jars.items()},
                f"an object naming {entry[len(prefix) :]!r}: the cluster configuration's "
                f"spark.jars loads {entry} on every node",
            )


def render_template(text: str, values: dict[str, str], source: str) -> str:
    """Replace ``${Name}`` placeholders; every placeholder in ``text`` must have a value."""
    names = set(re.findall(r"\$\{([A-Za-z][A-Za-z0-9]*)\}", text))
    missing = sorted(names - set(values))
    if missing:
        raise ValueError(f"{source}: no value for placeholder(s) {missing}")
    for key in names:
        text = text.replace("${" + key + "}", values[key])
    return text


def security_configuration_json(config: LaunchConfig) -> str:
    """The security configuration document with the KMS key and certificates filled in."""
    text = render_template(
        config.security_template.read_text(),
        {
            "KmsKeyArn": config.kms_key_arn,
            "TlsCertificatesS3Object": config.tls_certificates_s3_object,
        },
        str(config.security_template),
    )
    doc = json.loads(text)
    enc = doc.get("EncryptionConfiguration", {})
    if not (enc.get("EnableAtRestEncryption") and enc.get("EnableInTransitEncryption")):
        raise ValueError(
            f"{config.security_template}: EncryptionConfiguration must enable both at-rest and "
            "in-transit encryption"
        )
    return json.dumps(doc, sort_keys=True)
