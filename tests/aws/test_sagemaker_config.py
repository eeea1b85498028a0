"""SageMakerConfig parsing and checks, and the hyperparameter translation table (no Spark)."""

from __future__ import annotations

import pytest

from spark_clustering.backends.sagemaker.config import SageMakerConfig
from spark_clustering.backends.sagemaker.hyperparameters import to_hyperparameters

ROLE = "arn:aws:iam::123456789012:role/sm"


def test_from_mapping_parses_the_job_config_and_round_trips():
    cfg = SageMakerConfig.from_mapping(
        {
            "spark.clustering.sagemaker.region": "eu-west-1",
            "spark.clustering.sagemaker.role_arn": ROLE,
            "spark.clustering.sagemaker.staging_prefix": "s3://bucket/seg/",
            "spark.clustering.sagemaker.tags": "team=crm, env=prod",
            "spark.clustering.sagemaker.subnets": "subnet-1,subnet-2",
            "spark.clustering.sagemaker.security_group_ids": "sg-1",
            "spark.clustering.sagemaker.network_isolation": "true",
            "spark.clustering.sagemaker.training_instance_count": "2",
            "spark.clustering.sagemaker.inference": "batch",
            "spark.other.setting": "ignored",
        },
        "spark.clustering.sagemaker.",
    )
    cfg.validate()
    assert cfg.tags == (("team", "crm"), ("env", "prod"))
    assert cfg.tag_list() == [{"Key": "team", "Value": "crm"}, {"Key": "env", "Value": "prod"}]
    assert cfg.vpc_config() == {"Subnets": ["subnet-1", "subnet-2"], "SecurityGroupIds": ["sg-1"]}
    assert cfg.network_isolation is True and cfg.training_instance_count == 2
    assert cfg.staging_location() == ("bucket", "seg")
    assert cfg.staging_uri("job", "input") == "s3://bucket/seg/job/input"
    assert SageMakerConfig.from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"region": ""}, "region='' is missing"),
        ({"role_arn": ""}, "role_arn='' is missing"),
        ({"role_arn": "sm-role"}, "role_arn='sm-role' is not valid"),
        ({"staging_prefix": "s3a://bucket/x"}, "staging_prefix='s3a://bucket/x' is not valid"),
        ({"require_kms": True}, "volume_kms_key_id=None but require_kms=True"),
        ({"subnets": ["subnet-1"]}, "accepted: both set"),
        ({"inference": "stream"}, "inference='stream' is not valid"),
        ({"cleanup": ["all"]}, "cleanup=\\['all'\\] is not valid"),
        ({"tags": {"aws:owner": "x"}}, "tags entry 'aws:owner'='x' is not valid"),
        ({"max_payload_bytes": 7_000_000}, "max_payload_bytes=7000000 is out of range"),
    ],
)
def test_validate_names_field_value_and_accepted(changes, message):
    base = {"region": "us-east-1", "role_arn": ROLE, "staging_prefix": "s3://bkt/p"}
    cfg = SageMakerConfig(**{**base, **changes})
    with pytest.raises(ValueError, match=message):
        cfg.validate()


def test_unknown_setting_is_rejected():
    with pytest.raises(ValueError, match="'instance' is not a SageMaker setting"):
        SageMakerConfig.from_mapping({"instance": "ml.m5.large"})


def test_translation_table():
    params = {
        "k": 5,
        "featureDim": 4,
        "initMode": "k-means||",
        "evalMetrics": "msd, ssd",
        "extraCenterFactor": "auto",
        "miniBatchSize": None,
        "tol": 0.001,
    }
    assert to_hyperparameters("kmeans", params) == {
        "k": "5",
        "feature_dim": "4",
        "init_method": "kmeans++",
        "eval_metrics": "[msd,ssd]",
        "extra_center_factor": "auto",
        "local_lloyd_tol": "0.001",
    }
    assert to_hyperparameters("pca", {"k": 2, "featureDim": 9, "subtractMean": False}) == {
        "num_components": "2",
        "feature_dim": "9",
        "subtract_mean": "False",
    }


def test_get_spark_jar_provider_orders_sagemaker_jars(monkeypatch, tmp_path):
    import importlib.util

    from spark_clustering.session import JAR_PROVIDERS, sagemaker_jars

    if importlib.util.find_spec("sagemaker_pyspark") is None:
        pytest.skip("sagemaker_pyspark is not installed")
    assert JAR_PROVIDERS["sagemaker"] is sagemaker_jars
    fake = tmp_path / "protobuf-java-3.jar"
    fake.write_bytes(b"")
    monkeypatch.setenv("SPARK_CLUSTERING_PROTOBUF_JAR", str(fake))
    names = [j.rsplit("/", 1)[-1] for j in sagemaker_jars()]
    assert names[0].startswith("sagemaker-spark_2.12")
    sdk = [i for i, n in enumerate(names) if n.startswith("aws-java-sdk-") and "bundle" not in n]
    bundle = names.index(next(n for n in names if n.startswith("aws-java-sdk-bundle")))
    assert sdk and max(sdk) < bundle  # SDK 1.12 classes win over the 1.11 bundle's
    assert any(n.startswith("hadoop-aws") for n in names)
    assert names[-1] == fake.name


def test_config_and_estimators_import_without_aws_libraries():
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from spark_clustering import SageMakerConfig, KMeans, PCA, tune_kmeans\n"
        "SageMakerConfig(region='us-east-1').to_dict()\n"
        "loaded = [m for m in ('boto3', 'botocore', 'sagemaker_pyspark') if m in sys.modules]\n"
        "assert not loaded, loaded\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
