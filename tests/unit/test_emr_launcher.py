"""The launcher without AWS: config validation, the exact requests, dry runs, IAM documents."""

from __future__ import annotations

import copy
import json
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from spark_clustering import cli
from spark_clustering.emr import launcher, packaging
from spark_clustering.emr.config import load_launch_config, render_template

EMR_DIR = Path(__file__).resolve().parents[2] / "emr"
KMS = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"


def write_launch_config(tmp_path: Path, example: str = "launch-cpu.json", **changes: Any) -> Path:
    """The shipped example with its local paths pointed at files under ``tmp_path``."""
    data = json.loads((EMR_DIR / example).read_text())
    dist = tmp_path / "dist"
    dist.mkdir(exist_ok=True)
    packaging.build_pyfiles_zip(dist)
    # The plan only names the wheel; its bytes are built and checked in test_emr_packaging.
    (dist / packaging.wheel_name()).write_bytes(b"wheel placeholder for request building")
    jobs = tmp_path / "spark_jobs"
    jobs.mkdir(exist_ok=True)
    (jobs / "segment.py").write_text("print('segment')\n")
    (jobs / "prepare_features.py").write_text("print('prepare')\n")
    jar = tmp_path / "protobuf.jar"
    jar.write_bytes(b"PK\x03\x04")
    data["configurations"] = str(EMR_DIR / data["configurations"])
    data["bootstrap"]["script"] = str(EMR_DIR / "bootstrap.sh")
    data["security_configuration"]["template"] = str(EMR_DIR / "security-configuration.json")
    data["artifacts"].update(
        dist_dir=str(dist), jobs_dir=str(jobs), jars={"protobuf-java.jar": str(jar)}
    )
    for dotted, value in changes.items():
        node = data
        *parents, leaf = dotted.split("__")
        for part in parents:
            node = node[part]
        if value is None:
            node.pop(leaf, None)
        else:
            node[leaf] = value
    path = tmp_path / "launch.json"
    path.write_text(json.dumps(data))
    return path


@pytest.mark.parametrize("example", ["launch-cpu.json", "launch-gpu.json"])
def test_shipped_examples_validate(tmp_path: Path, example: str) -> None:
    config = load_launch_config(write_launch_config(tmp_path, example))
    assert config.cluster_type == ("gpu" if "gpu" in example else "cpu")
    assert config.tags["project"] == "spark-clustering"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"release_label": "emr-6.15.0"}, r"release_label='emr-6.15.0' .*EMR 7 release label"),
        ({"cluster_type": "tpu"}, r"cluster_type='tpu' .*accepted: cpu, gpu"),
        ({"cluster_type": "gpu"}, r"is not a valid GPU \(RAPIDS\) configuration: spark: "),
        ({"applications": ["Hadoop"]}, r"applications=\['Hadoop'\] .*including 'Spark'"),
        ({"idle_timeout_seconds": 30}, r"idle_timeout_seconds=30 .*\[60, 604800\]"),
        ({"idle_timeout_seconds": "1h"}, r"idle_timeout_seconds='1h' .*a int"),
        ({"tags": {"project": "x"}}, r"tags=.*missing \['owner'\]"),
        ({"aws__region": "mars"}, r"aws.region='mars'"),
        ({"colour": "red"}, r"unknown key\(s\) \['colour'\] in the top level"),
        ({"instances__master__count": 2}, r"instances.master.count=2 .*1 or 3"),
        ({"instances__core__type": "huge"}, r"instances.core.type='huge'"),
        ({"instances__subnet_ids": ["sn-1"]}, r"instances.subnet_ids=\['sn-1'\]"),
        ({"security_configuration__kms_key_arn": "alias/x"}, r"kms_key_arn='alias/x'"),
        ({"security_configuration__tls_certificates_s3_object": "s3://bkt/c.pem"}, r"\.zip"),
        ({"artifacts__s3_uri": "s3://bkt/prefix"}, r"artifacts.s3_uri='s3://bkt/prefix' .*'/'"),
        ({"artifacts__s3_uri": "https://b/"}, r"artifacts.s3_uri='https://b/'"),
        ({"configurations": "/nope.json"}, r"configurations='/nope.json' .*does not exist"),
        ({"bootstrap__python": "3.9"}, r"bootstrap.python='3.9'"),
        ({"service_role": None}, r"required key 'service_role' is missing"),
    ],
)
def test_bad_config_names_key_value_and_accepted(
    tmp_path: Path, change: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        load_launch_config(write_launch_config(tmp_path, **change))


def test_gpu_config_rejects_cpu_instances_and_cpu_file(tmp_path: Path) -> None:
    path = write_launch_config(tmp_path, "launch-gpu.json", instances__core__types=["m5.2xlarge"])
    with pytest.raises(ValueError, match=r"instances.core='m5.2xlarge' .*not a supported GPU"):
        load_launch_config(path)
    path = write_launch_config(
        tmp_path, "launch-gpu.json", instances__task__types=["g4dn.xlarge", "g4dn.2xlarge"]
    )
    load_launch_config(path)  # 4 vCPUs per GPU fit spark.executor.cores=4
    path = write_launch_config(
        tmp_path, "launch-cpu.json", configurations=str(EMR_DIR / "gpu-rapids.json")
    )
    with pytest.raises(ValueError, match="enables the RAPIDS Accelerator: use cluster_type='gpu'"):
        load_launch_config(path)


def test_launch_plan_is_the_exact_cluster_request(tmp_path: Path) -> None:
    config = load_launch_config(write_launch_config(tmp_path))
    plan = launcher.plan_launch(config)
    keys = [u.key for u in plan.uploads]
    assert keys[:4] == [
        "spark-clustering/bootstrap/bootstrap.sh",
        f"spark-clustering/dist/{packaging.wheel_name()}",
        f"spark-clustering/dist/{packaging.pyfiles_zip_name()}",
        "spark-clustering/jars/protobuf-java.jar",
    ]
    assert {"spark-clustering/jobs/segment.py", "spark-clustering/jobs/prepare_features.py"} <= set(
        keys
    )
    for upload in plan.uploads:
        assert upload.request()["ExtraArgs"] == {
            "ServerSideEncryption": "aws:kms",
            "SSEKMSKeyId": KMS,
        }

    ops = dict(plan.requests)
    security = json.loads(ops["create_security_configuration"]["SecurityConfiguration"])
    at_rest = security["EncryptionConfiguration"]["AtRestEncryptionConfiguration"]
    assert at_rest["S3EncryptionConfiguration"] == {"EncryptionMode": "SSE-KMS", "AwsKmsKey": KMS}
    assert at_rest["LocalDiskEncryptionConfiguration"]["AwsKmsKey"] == KMS
    assert at_rest["LocalDiskEncryptionConfiguration"]["EnableEbsEncryption"] is True
    assert security["EncryptionConfiguration"]["EnableInTransitEncryption"] is True

    rjf = ops["run_job_flow"]
    assert rjf["ReleaseLabel"] == "emr-7.5.0"
    assert rjf["SecurityConfiguration"] == "spark-clustering-kms-tls-v1"
    assert rjf["AutoTerminationPolicy"] == {"IdleTimeout": 3600}
    assert rjf["LogUri"] == "s3://my-company-spark-clustering/spark-clustering/logs/"
    assert {"Key": "owner", "Value": "data-platform"} in rjf["Tags"]
    assert rjf["Configurations"] == json.loads((EMR_DIR / "cpu.json").read_text())
    action = rjf["BootstrapActions"][0]["ScriptBootstrapAction"]
    assert (
        action["Path"] == "s3://my-company-spark-clustering/spark-clustering/bootstrap/bootstrap.sh"
    )
    assert action["Args"] == [
        "--wheel", f"s3://my-company-spark-clustering/spark-clustering/dist/{packaging.wheel_name()}",
        "--python", "3.11",
        "--jars", "s3://my-company-spark-clustering/spark-clustering/jars/",
        "--gpu", "off",
    ]  # fmt: skip
    groups = {g["InstanceRole"]: g for g in rjf["Instances"]["InstanceGroups"]}
    assert groups["TASK"]["Market"] == "SPOT" and groups["CORE"]["InstanceCount"] == 2
    assert rjf["Instances"]["Ec2SubnetId"] == "subnet-0123456789abcdef0"
    assert rjf["Instances"]["KeepJobFlowAliveWhenNoSteps"] is True


def test_gpu_plan_uses_fleets_and_gpu_bootstrap(tmp_path: Path) -> None:
    rapids = tmp_path / "rapids-4-spark_2.12-25.10.0.jar"
    rapids.write_bytes(b"PK")
    config = load_launch_config(
        write_launch_config(tmp_path, "launch-gpu.json", bootstrap__rapids_jar=str(rapids))
    )
    rjf = dict(launcher.plan_launch(config).requests)["run_job_flow"]
    fleets = {f["InstanceFleetType"]: f for f in rjf["Instances"]["InstanceFleets"]}
    assert [c["InstanceType"] for c in fleets["CORE"]["InstanceTypeConfigs"]] == [
        "g4dn.2xlarge",
        "g5.2xlarge",
    ]
    assert fleets["TASK"]["TargetSpotCapacity"] == 2
    args = rjf["BootstrapActions"][0]["ScriptBootstrapAction"]["Args"]
    assert args[args.index("--gpu") + 1] == "workers"
    assert args[args.index("--rapids-jar") + 1].endswith("/jars/rapids-4-spark.jar")
    # A pinned jar replaces EMR's bundled one instead of sitting next to it.
    spark = next(c for c in rjf["Configurations"] if c["Classification"] == "spark")
    assert spark["Properties"]["enableSparkRapids"] == "false"
    defaults = next(c for c in rjf["Configurations"] if c["Classification"] == "spark-defaults")
    assert defaults["Properties"]["spark.jars"].endswith(
        "local:///opt/spark-clustering/jars/rapids-4-spark.jar"
    )


def test_submit_plan_is_the_exact_step(tmp_path: Path) -> None:
    config = load_launch_config(write_launch_config(tmp_path))
    job_config = tmp_path / "segment.json"
    job_config.write_text("{}")
    when = datetime(2026, 11, 22, 9, 0, 0, tzinfo=timezone.utc)
    plan = launcher.plan_submit(
        config, "j-ABC123", "segment", job_config, ["--limit", "10"],
        {"spark.executor.memory": "8g"}, now=when,
    )  # fmt: skip
    root = "s3://my-company-spark-clustering/spark-clustering/"
    assert [u.uri for u in plan.uploads] == [
        f"{root}dist/{packaging.pyfiles_zip_name()}",
        f"{root}jobs/segment.py",
        f"{root}configs/segment/20261122T090000Z/segment.json",
    ]
    request = dict(plan.requests)["add_job_flow_steps"]
    assert request["JobFlowId"] == "j-ABC123"
    step = request["Steps"][0]
    assert step["ActionOnFailure"] == "CONTINUE"
    assert step["HadoopJarStep"]["Jar"] == "command-runner.jar"
    assert step["HadoopJarStep"]["Args"] == [
        "spark-submit", "--deploy-mode", "cluster",
        "--py-files", f"{root}dist/{packaging.pyfiles_zip_name()}",
        "--files", f"{root}configs/segment/20261122T090000Z/segment.json",
        "--conf", "spark.app.name=spark-clustering-segment",
        "--conf", "spark.executor.memory=8g",
        f"{root}jobs/segment.py",
        "--config", "segment.json",
        "--limit", "10",
    ]  # fmt: skip


def test_only_sagemaker_jobs_carry_the_sagemaker_jars(tmp_path: Path) -> None:
    config = load_launch_config(write_launch_config(tmp_path))
    plain = tmp_path / "kmeans.toml"
    plain.write_text('[clusterer]\nalgorithm = "kmeans"\nparams = { k = 5 }\n'
                     '[tracking]\nbackend = "sagemaker"\n')  # fmt: skip
    sagemaker = tmp_path / "sm.toml"
    sagemaker.write_text('[clusterer]\nalgorithm = "kmeans"\n'
                         'params = { k = 5, backend = "sagemaker" }\n')  # fmt: skip

    def args(job_config: Path) -> list[str]:
        plan = launcher.plan_submit(config, "j-ABC123", "segment", job_config)
        return dict(plan.requests)["add_job_flow_steps"]["Steps"][0]["HadoopJarStep"]["Args"]

    assert "--jars" not in args(plain)
    with_jars = args(sagemaker)
    jars = with_jars[with_jars.index("--jars") + 1].split(",")
    site = f"/opt/spark-clustering/venv/lib/python{config.python_version}/site-packages"
    assert jars == [
        f"file://{site}/sagemaker_pyspark/jars/*.jar",
        "file:///opt/spark-clustering/jars/protobuf-java.jar",
    ]
    # a SageMaker job needs protobuf-java shipped to the nodes
    bare = load_launch_config(write_launch_config(tmp_path, artifacts__jars={}))
    with pytest.raises(ValueError, match=r"artifacts.jars=\{\} .*'protobuf-java.jar'"):
        launcher.plan_submit(bare, "j-ABC123", "segment", sagemaker)


def test_submit_rejects_unknown_job_and_bad_ids(tmp_path: Path) -> None:
    config = load_launch_config(write_launch_config(tmp_path))
    with pytest.raises(ValueError, match=r"--job='sweep' .*\['prepare_features', 'segment'\]"):
        launcher.plan_submit(config, "j-1", "sweep")
    with pytest.raises(ValueError, match=r"--cluster-id='cluster-1'"):
        launcher.plan_submit(config, "cluster-1", "segment")
    with pytest.raises(ValueError, match=r"--conf \['executor.memory'\]"):
        launcher.plan_submit(config, "j-1", "segment", extra_conf={"executor.memory": "1g"})


def test_missing_dist_says_how_to_build(tmp_path: Path) -> None:
    config = load_launch_config(write_launch_config(tmp_path))
    (config.dist_dir / packaging.pyfiles_zip_name()).unlink()
    with pytest.raises(ValueError, match=r"run scripts/build-dist\.sh"):
        launcher.plan_launch(config)


def test_cli_dry_run_prints_requests_and_calls_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def no_aws(*_: Any, **__: Any) -> None:
        raise AssertionError("--dry-run must not create AWS clients")

    monkeypatch.setattr(launcher, "make_clients", no_aws)
    # Any accidental request would go to a closed port and fail.
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    path = write_launch_config(tmp_path)
    assert cli.main(["emr", "launch", "--config", str(path), "--dry-run"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert set(printed) == {
        "s3.upload_file",
        "emr.create_security_configuration",
        "emr.run_job_flow",
    }
    assert printed["emr.run_job_flow"]["Name"] == "spark-clustering-cpu"

    rc = cli.main(
        ["emr", "submit", "--cluster-id", "j-XYZ", "--job", "segment", "--config", str(path),
         "--conf", "spark.sql.shuffle.partitions=64", "--dry-run", "--", "--limit", "5"]
    )  # fmt: skip
    assert rc == 0
    step = json.loads(capsys.readouterr().out)["emr.add_job_flow_steps"]["Steps"][0]
    args = step["HadoopJarStep"]["Args"]
    assert "spark.sql.shuffle.partitions=64" in args and args[-2:] == ["--limit", "5"]


def test_cli_bad_config_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_launch_config(tmp_path, release_label="emr-5.36.0")
    assert cli.main(["emr", "launch", "--config", str(path), "--dry-run"]) == 2
    assert "release_label='emr-5.36.0'" in capsys.readouterr().err


# --------------------------------------------------------------------------- IAM documents

IAM_VALUES = {
    "Region": "us-east-1",
    "AccountId": "123456789012",
    "ArtifactsBucket": "my-company-spark-clustering",
    "ArtifactsPrefix": "spark-clustering/",
    "DataBucket": "my-company-customer-data",
    "DataPrefix": "segmentation/",
    "KmsKeyArn": KMS,
    "SageMakerExecutionRoleArn": "arn:aws:iam::123456789012:role/spark-clustering-sagemaker",
    "SageMakerNamePrefix": "spark-clustering",
    "MlflowTrackingServerArn": (
        "arn:aws:sagemaker:us-east-1:123456789012:mlflow-tracking-server/spark-clustering"
    ),
    "ProjectTag": "spark-clustering",
    "EmrServiceRoleArn": "arn:aws:iam::123456789012:role/EMR_DefaultRole_V2",
    "EmrInstanceRoleArn": "arn:aws:iam::123456789012:role/spark-clustering-emr-instance",
}
#: Actions AWS offers without resource-level permissions: the only ones allowed on "*".
WILDCARD_RESOURCE_OK = {
    "sagemaker:Search",
    "sagemaker:ListTrialComponents",
    "sagemaker:ListTrainingJobs",
    "elasticmapreduce:RunJobFlow",
    "elasticmapreduce:AddTags",
    "elasticmapreduce:CreateSecurityConfiguration",
    "elasticmapreduce:DescribeSecurityConfiguration",
}


def render_policy(name: str) -> dict[str, Any]:
    path = EMR_DIR / "iam" / name
    return json.loads(render_template(path.read_text(), IAM_VALUES, str(path)))


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


@pytest.mark.parametrize("name", ["instance-role-policy.json", "launcher-policy.json"])
def test_policies_are_least_privilege(name: str) -> None:
    doc = render_policy(name)
    assert doc["Version"] == "2012-10-17"
    for statement in doc["Statement"]:
        actions = _as_list(statement["Action"])
        resources = _as_list(statement["Resource"])
        assert statement["Effect"] == "Allow" and "Sid" in statement
        for action in actions:
            assert re.fullmatch(r"[a-z0-9-]+:[A-Z][A-Za-z]+", action), f"wildcard action {action}"
        if "*" in resources:
            assert set(actions) <= WILDCARD_RESOURCE_OK, statement["Sid"]
            if statement["Sid"].startswith("CreateOnlyTagged"):
                assert "aws:RequestTag/project" in json.dumps(statement["Condition"])
        for resource in resources:
            if resource.startswith("arn:aws:s3:::"):
                bucket_part = resource[len("arn:aws:s3:::") :]
                assert bucket_part.split("/")[0] in {
                    IAM_VALUES["ArtifactsBucket"],
                    IAM_VALUES["DataBucket"],
                }
                if "/" in bucket_part:
                    prefix = bucket_part.split("/", 1)[1]
                    assert prefix.startswith(
                        (IAM_VALUES["ArtifactsPrefix"], IAM_VALUES["DataPrefix"])
                    ), resource


def test_instance_role_passes_only_the_sagemaker_role_to_sagemaker() -> None:
    doc = render_policy("instance-role-policy.json")
    passrole = [s for s in doc["Statement"] if "iam:PassRole" in _as_list(s["Action"])]
    assert len(passrole) == 1
    assert passrole[0]["Resource"] == IAM_VALUES["SageMakerExecutionRoleArn"]
    assert passrole[0]["Condition"] == {
        "StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}
    }
    actions = {a for s in doc["Statement"] for a in _as_list(s["Action"])}
    for needed in (
        "sagemaker:CreateTrainingJob", "sagemaker:CreateModel", "sagemaker:CreateEndpoint",
        "sagemaker:CreateExperiment", "sagemaker:CreateTrialComponent", "sagemaker:BatchPutMetrics",
        "sagemaker-mlflow:LogBatch", "kms:GenerateDataKey", "s3:GetObject", "s3:PutObject",
    ):  # fmt: skip
        assert needed in actions, needed


def test_template_placeholders_must_all_be_filled() -> None:
    text = (EMR_DIR / "iam" / "instance-role-policy.json").read_text()
    values = copy.deepcopy(IAM_VALUES)
    del values["KmsKeyArn"]
    with pytest.raises(ValueError, match=r"no value for placeholder\(s\) \['KmsKeyArn'\]"):
        render_template(text, values, "instance-role-policy.json")


def test_cli_module_imports_neither_spark_nor_boto3() -> None:
    import subprocess
    import sys

    probe = (
        "import sys, spark_clustering.jobs.emr, spark_clustering.emr.launcher, "
        "spark_clustering.emr.config, spark_clustering.emr.packaging; "
        "print(sorted(m for m in ('pyspark', 'boto3') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
