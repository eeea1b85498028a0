"""The launcher against moto's server on 127.0.0.1: cluster, security configuration, steps, IAM."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import pytest

from spark_clustering import cli
from spark_clustering.emr import launcher, packaging
from spark_clustering.emr.config import load_launch_config, render_template

pytestmark = pytest.mark.aws

EMR_DIR = Path(__file__).resolve().parents[2] / "emr"
BUCKET = "spark-clustering-artifacts"
REGION = "us-east-1"
ACCOUNT = "123456789012"
MLFLOW_ARN = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:mlflow-tracking-server/spark-clustering"


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> packaging.Dist:
    """The real wheel and --py-files zip, built once for this module."""
    return packaging.build_dist(tmp_path_factory.mktemp("dist"))


@pytest.fixture()
def aws(aws_endpoint: str) -> dict[str, Any]:
    """Fresh moto state with the artifacts bucket and a KMS key, as the IaC would provide."""
    import boto3

    s3 = boto3.client("s3", region_name=REGION, endpoint_url=aws_endpoint)
    s3.create_bucket(Bucket=BUCKET)
    kms = boto3.client("kms", region_name=REGION, endpoint_url=aws_endpoint)
    key_arn = kms.create_key(Description="spark-clustering")["KeyMetadata"]["Arn"]
    # The in-transit certificates are provisioned with the key, outside the launcher.
    s3.put_object(
        Bucket=BUCKET, Key="spark-clustering/tls/certs.zip", Body=b"PK\x05\x06" + bytes(18)
    )
    emr = boto3.client("emr", region_name=REGION, endpoint_url=aws_endpoint)
    return {"endpoint": aws_endpoint, "s3": s3, "emr": emr, "kms_key_arn": key_arn}


def write_config(tmp_path: Path, aws: dict[str, Any], dist: packaging.Dist, **top: Any) -> Path:
    data = json.loads((EMR_DIR / "launch-cpu.json").read_text())
    jobs = tmp_path / "spark_jobs"
    jobs.mkdir(exist_ok=True)
    (jobs / "segment.py").write_text("print('segment')\n")
    jar = tmp_path / "protobuf.jar"
    jar.write_bytes(b"PK\x03\x04")
    data["aws"]["endpoint_url"] = aws["endpoint"]
    data["configurations"] = str(EMR_DIR / "cpu.json")
    data["bootstrap"]["script"] = str(EMR_DIR / "bootstrap.sh")
    sec = data["security_configuration"]
    sec["template"] = str(EMR_DIR / "security-configuration.json")
    sec["kms_key_arn"] = aws["kms_key_arn"]
    sec["tls_certificates_s3_object"] = f"s3://{BUCKET}/spark-clustering/tls/certs.zip"
    data["artifacts"] = {
        "s3_uri": f"s3://{BUCKET}/spark-clustering/",
        "dist_dir": str(dist.wheel.parent),
        "jobs_dir": str(jobs),
        "jars": {"protobuf-java.jar": str(jar)},
    }
    data["log_uri"] = f"s3://{BUCKET}/spark-clustering/logs/"
    data.update(top)
    path = tmp_path / "launch.json"
    path.write_text(json.dumps(data))
    return path


def _launch(path: Path, capsys: pytest.CaptureFixture[str]) -> str:
    assert cli.main(["emr", "launch", "--config", str(path)]) == 0
    out = capsys.readouterr().out
    cluster_id = out.split()[1]
    assert cluster_id.startswith("j-"), out
    return cluster_id


def test_launch_creates_the_cluster_as_configured(
    tmp_path: Path, aws: dict[str, Any], dist: packaging.Dist, capsys: pytest.CaptureFixture[str]
) -> None:
    cluster_id = _launch(write_config(tmp_path, aws, dist), capsys)
    emr, s3 = aws["emr"], aws["s3"]

    cluster = emr.describe_cluster(ClusterId=cluster_id)["Cluster"]
    assert cluster["Name"] == "spark-clustering-cpu"
    assert cluster["ReleaseLabel"] == "emr-7.5.0"
    assert cluster["SecurityConfiguration"] == "spark-clustering-kms-tls-v1"
    assert cluster["LogUri"] == f"s3://{BUCKET}/spark-clustering/logs/"
    assert cluster["ServiceRole"] == "EMR_DefaultRole_V2"
    tags = {t["Key"]: t["Value"] for t in cluster["Tags"]}
    assert tags["project"] == "spark-clustering" and tags["owner"] == "data-platform"
    assert {a["Name"] for a in cluster["Applications"]} >= {"Spark", "Livy"}
    sent = {c["Classification"]: c for c in cluster["Configurations"]}
    assert sent["spark-defaults"]["Properties"]["spark.pyspark.python"] == (
        "/opt/spark-clustering/venv/bin/python"
    )
    assert sent["spark-env"]["Configurations"][0]["Classification"] == "export"

    actions = emr.list_bootstrap_actions(ClusterId=cluster_id)["BootstrapActions"]
    assert len(actions) == 1
    assert actions[0]["ScriptPath"] == f"s3://{BUCKET}/spark-clustering/bootstrap/bootstrap.sh"
    args = actions[0]["Args"]
    assert args[args.index("--wheel") + 1] == (
        f"s3://{BUCKET}/spark-clustering/dist/{dist.wheel.name}"
    )
    groups = emr.list_instance_groups(ClusterId=cluster_id)["InstanceGroups"]
    assert sorted(g["InstanceGroupType"] for g in groups) == ["CORE", "MASTER", "TASK"]

    security = emr.describe_security_configuration(Name="spark-clustering-kms-tls-v1")
    doc = json.loads(security["SecurityConfiguration"])
    s3_enc = doc["EncryptionConfiguration"]["AtRestEncryptionConfiguration"]
    assert s3_enc["S3EncryptionConfiguration"]["AwsKmsKey"] == aws["kms_key_arn"]

    # Everything the cluster reads was uploaded, encrypted with the cluster's key.
    for key in (
        "spark-clustering/bootstrap/bootstrap.sh",
        f"spark-clustering/dist/{dist.wheel.name}",
        f"spark-clustering/dist/{dist.pyfiles_zip.name}",
        "spark-clustering/jars/protobuf-java.jar",
        "spark-clustering/jobs/segment.py",
    ):
        head = s3.head_object(Bucket=BUCKET, Key=key)
        assert head["ServerSideEncryption"] == "aws:kms", key
        assert head["SSEKMSKeyId"] == aws["kms_key_arn"], key
    body = s3.get_object(Bucket=BUCKET, Key=f"spark-clustering/dist/{dist.wheel.name}")["Body"]
    assert body.read() == dist.wheel.read_bytes()


def test_security_configuration_is_reused_only_when_identical(
    tmp_path: Path, aws: dict[str, Any], dist: packaging.Dist, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_config(tmp_path, aws, dist)
    first = _launch(path, capsys)
    second = _launch(path, capsys)  # same name, same content: reused
    assert first != second

    data = json.loads(path.read_text())
    data["security_configuration"]["tls_certificates_s3_object"] = f"s3://{BUCKET}/other.zip"
    aws["s3"].put_object(Bucket=BUCKET, Key="other.zip", Body=b"PK\x05\x06" + bytes(18))
    path.write_text(json.dumps(data))
    config = load_launch_config(path)
    with pytest.raises(ValueError, match="already exists with different content"):
        launcher.execute_launch(launcher.plan_launch(config), launcher.make_clients(config))


def test_launch_stops_before_any_upload_without_tls_certificates(
    tmp_path: Path, aws: dict[str, Any], dist: packaging.Dist, capsys: pytest.CaptureFixture[str]
) -> None:
    aws["s3"].delete_object(Bucket=BUCKET, Key="spark-clustering/tls/certs.zip")
    path = write_config(tmp_path, aws, dist)
    config = load_launch_config(path)
    with pytest.raises(ValueError, match=r"tls_certificates_s3_object=.*cannot be read"):
        launcher.execute_launch(launcher.plan_launch(config), launcher.make_clients(config))
    assert aws["s3"].list_objects_v2(Bucket=BUCKET)["KeyCount"] == 0
    assert aws["emr"].list_clusters()["Clusters"] == []


def _moto_steps(cluster_id: str) -> list[Any]:
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.emr.models import emr_backends

    return emr_backends[DEFAULT_ACCOUNT_ID][REGION].clusters[cluster_id].steps


def test_submit_adds_the_step_and_reports_state_and_logs(
    tmp_path: Path, aws: dict[str, Any], dist: packaging.Dist, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_config(tmp_path, aws, dist)
    cluster_id = _launch(path, capsys)
    job_config = tmp_path / "segment.json"
    job_config.write_text('{"k": 8}')

    rc = cli.main(
        ["emr", "submit", "--cluster-id", cluster_id, "--job", "segment", "--config", str(path),
         "--job-config", str(job_config), "--conf", "spark.executor.memory=6g"]
    )  # fmt: skip
    assert rc == 0
    out = capsys.readouterr().out
    steps = aws["emr"].list_steps(ClusterId=cluster_id)["Steps"]
    assert len(steps) == 1
    step_id = steps[0]["Id"]
    assert f"step {step_id} on {cluster_id}" in out
    assert f"logs: s3://{BUCKET}/spark-clustering/logs/{cluster_id}/steps/{step_id}/" in out
    config = steps[0]["Config"]
    assert config["Jar"] == "command-runner.jar"
    args = config["Args"]
    assert args[:3] == ["spark-submit", "--deploy-mode", "cluster"]
    assert args[args.index("--py-files") + 1] == (
        f"s3://{BUCKET}/spark-clustering/dist/{dist.pyfiles_zip.name}"
    )
    assert "spark.executor.memory=6g" in args
    assert f"s3://{BUCKET}/spark-clustering/jobs/segment.py" in args
    assert args[args.index("--config") + 1] == "segment.json"  # localized by --files
    uploaded_config = args[args.index("--files") + 1]
    bucket, key = uploaded_config[len("s3://") :].split("/", 1)
    assert aws["s3"].get_object(Bucket=bucket, Key=key)["Body"].read() == b'{"k": 8}'


@pytest.mark.parametrize(("final", "rc"), [("COMPLETED", 0), ("FAILED", 1)])
def test_submit_wait_follows_the_step_to_its_end(
    tmp_path: Path,
    aws: dict[str, Any],
    dist: packaging.Dist,
    capsys: pytest.CaptureFixture[str],
    final: str,
    rc: int,
) -> None:
    path = write_config(tmp_path, aws, dist)
    cluster_id = _launch(path, capsys)
    config = load_launch_config(path)
    plan = launcher.plan_submit(config, cluster_id, "segment")
    polls: list[float] = []

    def finish_on_second_poll(seconds: float) -> None:
        # moto never advances steps by itself; EMR would, so the test plays EMR here.
        polls.append(seconds)
        if len(polls) == 2:
            for step in _moto_steps(cluster_id):
                step.state = final

    report = launcher.execute_submit(
        plan, launcher.make_clients(config), config.log_uri, wait=True, poll_s=5,
        sleep=finish_on_second_poll,
    )  # fmt: skip
    assert report.state == final and report.ok is (rc == 0)
    assert polls == [5, 5]
    assert report.logs.endswith(f"/logs/{cluster_id}/steps/{report.step_id}/")


def test_submit_wait_gives_up_at_the_timeout(
    tmp_path: Path, aws: dict[str, Any], dist: packaging.Dist, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_config(tmp_path, aws, dist)
    cluster_id = _launch(path, capsys)
    config = load_launch_config(path)
    plan = launcher.plan_submit(config, cluster_id, "segment")
    report = launcher.execute_submit(
        plan, launcher.make_clients(config), config.log_uri, wait=True, timeout_s=0.0
    )
    assert report.state in ("PENDING", "RUNNING")
    assert "logs: s3://" in report.describe()


def test_submit_to_a_terminated_cluster_fails_before_uploading(
    tmp_path: Path, aws: dict[str, Any], dist: packaging.Dist, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_config(tmp_path, aws, dist)
    cluster_id = _launch(path, capsys)
    aws["emr"].terminate_job_flows(JobFlowIds=[cluster_id])
    config = load_launch_config(path)
    before = aws["s3"].list_objects_v2(Bucket=BUCKET)["KeyCount"]
    with pytest.raises(ValueError, match=r"is TERMINAT"):
        launcher.execute_submit(
            launcher.plan_submit(config, cluster_id, "segment", tmp_path / "launch.json"),
            launcher.make_clients(config),
            config.log_uri,
        )
    assert aws["s3"].list_objects_v2(Bucket=BUCKET)["KeyCount"] == before


def test_iam_documents_are_accepted_by_iam(aws: dict[str, Any]) -> None:
    import boto3

    iam = boto3.client("iam", region_name=REGION, endpoint_url=aws["endpoint"])
    values = {
        "Region": REGION, "AccountId": "123456789012", "ArtifactsBucket": BUCKET,
        "ArtifactsPrefix": "spark-clustering/", "DataBucket": "customer-data",
        "DataPrefix": "segmentation/", "KmsKeyArn": aws["kms_key_arn"],
        "SageMakerExecutionRoleArn": "arn:aws:iam::123456789012:role/sagemaker-exec",
        "SageMakerNamePrefix": "spark-clustering",
        "MlflowTrackingServerArn": MLFLOW_ARN,
        "ProjectTag": "spark-clustering",
        "EmrServiceRoleArn": "arn:aws:iam::123456789012:role/EMR_DefaultRole_V2",
        "EmrInstanceRoleArn": "arn:aws:iam::123456789012:role/spark-clustering-emr-instance",
    }  # fmt: skip

    def render(name: str) -> str:
        path = EMR_DIR / "iam" / name
        return render_template(path.read_text(), values, str(path))

    role = iam.create_role(
        RoleName="spark-clustering-emr-instance",
        AssumeRolePolicyDocument=render("instance-role-trust-policy.json"),
        Tags=[{"Key": "project", "Value": "spark-clustering"}],
    )["Role"]
    for name in ("instance-role-policy.json", "launcher-policy.json"):
        # moto validates the policy grammar (versions, effects, action and ARN formats).
        arn = iam.create_policy(PolicyName=name.removesuffix(".json"), PolicyDocument=render(name))[
            "Policy"
        ]["Arn"]
        if name.startswith("instance"):
            iam.attach_role_policy(RoleName=role["RoleName"], PolicyArn=arn)
    iam.create_instance_profile(InstanceProfileName="spark-clustering-emr-instance")
    iam.add_role_to_instance_profile(
        InstanceProfileName="spark-clustering-emr-instance", RoleName=role["RoleName"]
    )
    attached = iam.list_attached_role_policies(RoleName=role["RoleName"])["AttachedPolicies"]
    assert [p["PolicyName"] for p in attached] == ["instance-role-policy"]


def test_pyfiles_zip_sent_to_steps_is_importable(dist: packaging.Dist) -> None:
    with zipfile.ZipFile(dist.pyfiles_zip) as zf:
        names = set(zf.namelist())
    assert "spark_clustering/__init__.py" in names
    assert "spark_clustering/emr/launcher.py" in names
