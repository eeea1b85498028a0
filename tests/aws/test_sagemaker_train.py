"""``spark-clustering sagemaker train`` through the sagemaker SDK v3 against moto's server.

The training job (one trial) and the tuning job (a sweep) are created by the SDK's
``ModelTrainer`` / ``HyperparameterTuner``; moto's Describe* and ListTags show what SageMaker
received. moto answers DescribeTrainingJob with fixed MetricDefinitions of its own, so the metric
definitions are checked on the request the SDK sent (captured by a botocore hook), which must also
equal the request ``--dry-run`` prints. The tests skip (in a fixture) where the SDK is not
installed: ``pip install 'spark-clustering[sagemaker]'``.
"""

from __future__ import annotations

import json

import pytest

from spark_clustering.cli import main
from spark_clustering.jobs import container
from spark_clustering.jobs import sagemaker as job

pytestmark = [pytest.mark.aws]

IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/spark-clustering:gpu"
ROLE = "arn:aws:iam::123456789012:role/segmentation-sagemaker"
MLFLOW = "arn:aws:sagemaker:us-east-1:123456789012:mlflow-tracking-server/segmentation"
SAGEMAKER = f"""
[sagemaker]
region = "us-east-1"
role_arn = "{ROLE}"
staging_prefix = "s3://sc-staging/segmentation"
volume_kms_key_id = "alias/volumes"
output_kms_key_id = "alias/outputs"
require_kms = true
subnets = ["subnet-1", "subnet-2"]
security_group_ids = ["sg-1"]
network_isolation = true
tags = {{ team = "crm", cost-centre = "42" }}
max_runtime_seconds = 3600
[job]
base_name = "seg"
[channels]
features = "s3://sc-data/features/"
config = "s3://sc-data/config/"
"""
TRIAL = (
    SAGEMAKER
    + f"""
[hyperparameters]
"clusterer.algorithm" = "kmeans"
"clusterer.params.k" = 6
"evaluation.enabled" = true
"tracking.backend" = "mlflow"
"tracking.tracking_uri" = "{MLFLOW}"
"""
)
SWEEP = (
    SAGEMAKER
    + """
[hyperparameters]
"clusterer.algorithm" = "dbscan"
[tuning]
objective = "silhouette"
max_jobs = 8
max_parallel_jobs = 2
[tuning.ranges]
"clusterer.params.minPoints" = { min = 5, max = 40 }
"clusterer.params.epsMultiple" = { min = 0.5, max = 2.0, scaling = "Logarithmic" }
"reducer.algorithm" = ["pca", "umap"]
"""
)


@pytest.fixture()
def sdk(aws_endpoint, monkeypatch):
    """The SDK on moto; its client-side IAM role simulation is off (moto lacks
    SimulatePrincipalPolicy)."""
    pytest.importorskip("sagemaker.train", reason="the sagemaker SDK v3 is not installed")
    monkeypatch.setenv("SAGEMAKER_VALIDATE_ROLE", "false")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    import boto3

    return boto3.client("sagemaker", region_name="us-east-1", endpoint_url=aws_endpoint)


def _config(tmp_path, text: str) -> str:
    path = tmp_path / "train.toml"
    path.write_text(text)
    return str(path)


def _launch(monkeypatch, config: str, *extra: str) -> job.LaunchResult:
    sent: list[job.LaunchResult] = []
    real = job.submit

    def submit(*args, **kwargs):
        sent.append(real(*args, **kwargs))
        return sent[-1]

    monkeypatch.setattr(job, "submit", submit)
    assert main(["sagemaker", "train", "--config", config, "--image", IMAGE, *extra]) == 0
    return sent[0]


def test_training_job_has_the_image_channels_hyperparameters_kms_vpc_and_tags(
    sdk, aws_endpoint, tmp_path, monkeypatch, capsys
):
    # the endpoint from the config this time: the SDK's clients must use it too (the
    # environment's points nowhere, so a client that ignores the config cannot reach AWS either)
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    config = _config(tmp_path, TRIAL.replace("[job]", f'endpoint_url = "{aws_endpoint}"\n[job]'))
    result = _launch(monkeypatch, config, "--instance-type", "ml.g5.xlarge")
    assert result.kind == "training-job"
    assert f"training-job {result.name} created" in capsys.readouterr().out

    described = sdk.describe_training_job(TrainingJobName=result.name)
    assert described["AlgorithmSpecification"]["TrainingImage"] == IMAGE
    assert described["AlgorithmSpecification"]["TrainingInputMode"] == "File"
    channels = {
        c["ChannelName"]: c["DataSource"]["S3DataSource"]["S3Uri"]
        for c in described["InputDataConfig"]
    }
    assert channels == {"features": "s3://sc-data/features/", "config": "s3://sc-data/config/"}
    assert described["HyperParameters"] == {
        "clusterer.algorithm": "kmeans",
        "clusterer.params.k": "6",
        "evaluation.enabled": "true",
        "tracking.backend": "mlflow",
        "tracking.tracking_uri": MLFLOW,
    }
    assert described["RoleArn"] == ROLE
    assert described["ResourceConfig"] == {
        "InstanceType": "ml.g5.xlarge",
        "InstanceCount": 1,
        "VolumeSizeInGB": 30,
        "VolumeKmsKeyId": "alias/volumes",
    }
    assert described["OutputDataConfig"]["KmsKeyId"] == "alias/outputs"
    assert described["OutputDataConfig"]["S3OutputPath"] == "s3://sc-staging/segmentation/training"
    assert described["VpcConfig"] == {"Subnets": ["subnet-1", "subnet-2"],
                                      "SecurityGroupIds": ["sg-1"]}  # fmt: skip
    assert described["EnableNetworkIsolation"] is True
    assert described["StoppingCondition"]["MaxRuntimeInSeconds"] == 3600
    tags = sdk.list_tags(ResourceArn=described["TrainingJobArn"])["Tags"]
    assert {t["Key"]: t["Value"] for t in tags} == {"team": "crm", "cost-centre": "42"}

    # moto keeps no MetricDefinitions of ours: check what the SDK sent, and that --dry-run
    # prints exactly that request
    sent = result.request
    assert sent["AlgorithmSpecification"]["MetricDefinitions"] == container.metric_definitions()
    launch = job.load_launch(config)
    assert sent == job.request(launch, IMAGE, "ml.g5.xlarge", result.name)


def test_sweep_is_one_tuning_job_over_the_container_metric(sdk, tmp_path, monkeypatch):
    result = _launch(monkeypatch, _config(tmp_path, SWEEP))
    assert result.kind == "tuning-job"
    described = sdk.describe_hyper_parameter_tuning_job(HyperParameterTuningJobName=result.name)
    cfg = described["HyperParameterTuningJobConfig"]
    assert cfg["HyperParameterTuningJobObjective"] == {"Type": "Maximize",
                                                       "MetricName": "silhouette"}  # fmt: skip
    assert cfg["ResourceLimits"] == {"MaxNumberOfTrainingJobs": 8, "MaxParallelTrainingJobs": 2}
    ranges = cfg["ParameterRanges"]
    assert ranges["IntegerParameterRanges"] == [
        {"Name": "clusterer.params.minPoints", "MinValue": "5", "MaxValue": "40",
         "ScalingType": "Auto"}
    ]  # fmt: skip
    assert ranges["ContinuousParameterRanges"][0]["ScalingType"] == "Logarithmic"
    assert ranges["CategoricalParameterRanges"] == [
        {"Name": "reducer.algorithm", "Values": ["pca", "umap"]}
    ]
    definition = described["TrainingJobDefinition"]
    assert definition["StaticHyperParameters"] == {"clusterer.algorithm": "dbscan"}
    assert definition["AlgorithmSpecification"]["TrainingImage"] == IMAGE
    # the objective is one of the metric definitions the container's lines match
    names = [m["Name"] for m in definition["AlgorithmSpecification"]["MetricDefinitions"]]
    assert names == list(container.METRICS)
    # the SDK's tuner leaves these two out; the launcher adds them before the request is signed
    assert definition["ResourceConfig"]["VolumeKmsKeyId"] == "alias/volumes"
    assert definition["EnableNetworkIsolation"] is True
    assert definition["OutputDataConfig"]["KmsKeyId"] == "alias/outputs"
    assert definition["VpcConfig"]["Subnets"] == ["subnet-1", "subnet-2"]
    tags = sdk.list_tags(ResourceArn=described["HyperParameterTuningJobArn"])["Tags"]
    assert {t["Key"]: t["Value"] for t in tags} == {"team": "crm", "cost-centre": "42"}
    assert result.request == job.request(
        job.load_launch(str(tmp_path / "train.toml")), IMAGE, None, result.name
    )


def test_a_request_without_the_configured_protection_is_never_sent(sdk, tmp_path, monkeypatch):
    """Without the launcher's completion, the SDK's tuning request lacks the volume KMS key and
    network isolation: the check refuses it before it is signed, and nothing is created."""
    from spark_clustering.backends.sagemaker import training

    monkeypatch.setattr(training, "_complete_tuning_request", lambda config, params: None)
    launch = job.load_launch(_config(tmp_path, SWEEP))
    with pytest.raises(RuntimeError) as err:
        job.submit(launch, IMAGE, None)
    assert "lacks ResourceConfig.VolumeKmsKeyId, EnableNetworkIsolation" in str(err.value)
    assert sdk.list_hyper_parameter_tuning_jobs()["HyperParameterTuningJobSummaries"] == []


def test_dry_run_prints_the_request_and_calls_nothing(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens there
    config = _config(tmp_path, TRIAL)
    code = main(["sagemaker", "train", "--config", config, "--image", IMAGE, "--dry-run"])
    assert code == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["TrainingJobName"].startswith("seg-")
    assert printed == job.request(job.load_launch(config), IMAGE, None, printed["TrainingJobName"])
    assert printed["ResourceConfig"]["VolumeKmsKeyId"] == "alias/volumes"
    assert printed["Tags"] == [{"Key": "team", "Value": "crm"}, {"Key": "cost-centre",
                                                                  "Value": "42"}]  # fmt: skip


@pytest.mark.parametrize(
    ("change", "says"),
    [
        (('"clusterer.params.k" = 6', '"clusterer.params.k" = "six"'),
         "hyperparameter clusterer.params.k='six' is not valid; accepted: an integer"),
        (('volume_kms_key_id = "alias/volumes"', ''),
         "volume_kms_key_id=None but require_kms=True"),
        (('features = "s3://sc-data/features/"', 'features = "/local/features"'),
         "[channels] features='/local/features'; accepted: an s3:// URI"),
        (('config = "s3://sc-data/config/"', 'transactions = "s3://sc-data/raw/"'),
         "accepted: exactly one of features, transactions"),
        (('base_name = "seg"', 'base_name = "seg_1"'), "[job].base_name='seg_1'"),
        (('role_arn = "', 'role_arn = "x'), "role_arn='xarn:aws:iam::"),
        (("max_runtime_seconds = 3600", "max_runtime_seconds = 3600\ntraining_instance_count = 2"),
         "training_instance_count=2; accepted: 1"),
        (('"clusterer.params.k" = 6', '"output.path" = "s3://x/y"'),
         "hyperparameter 'output.path' is unknown (set by the container from its channels)"),
    ],
)  # fmt: skip
def test_bad_configs_fail_before_aws(tmp_path, capsys, change, says):
    text = TRIAL.replace(*change)
    assert text != TRIAL
    code = main(["sagemaker", "train", "--config", _config(tmp_path, text), "--image", IMAGE,
                 "--dry-run"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and says in err, err


def test_the_example_config_dry_runs(capsys):
    from pathlib import Path

    example = Path(__file__).resolve().parents[2] / "examples" / "sagemaker-train.toml"
    assert main(["sagemaker", "train", "--config", str(example), "--image", IMAGE,
                 "--dry-run"]) == 0  # fmt: skip
    printed = json.loads(capsys.readouterr().out)
    assert printed["HyperParameters"]["tracking.tracking_uri"].startswith("arn:aws:sagemaker:")
    assert printed["ResourceConfig"]["VolumeKmsKeyId"] == "alias/sagemaker-volumes"
