"""tune_kmeans and PCA on SageMaker against moto's server on 127.0.0.1."""

from __future__ import annotations

import numpy as np
import pytest
from pyspark.ml.linalg import Vectors
from sagemaker_support import BUCKET, ROLE, KMeansEndpoint, pca_answer

pytestmark = [pytest.mark.aws, pytest.mark.spark]


@pytest.fixture()
def config(spark, aws_endpoint):
    import boto3

    jars = spark.sparkContext.getConf().get("spark.jars", "")
    if "sagemaker-spark" not in jars or "protobuf" not in jars:
        pytest.skip(f"sagemaker_pyspark or protobuf-java jar not on the classpath: {jars}")
    from spark_clustering import SageMakerConfig

    boto3.client("s3", region_name="us-east-1").create_bucket(Bucket=BUCKET)
    return SageMakerConfig(
        region="us-east-1",
        role_arn=ROLE,
        staging_prefix=f"s3://{BUCKET}/tuning",
        volume_kms_key_id="alias/volumes",
        output_kms_key_id="alias/outputs",
        subnets=["subnet-1"],
        security_group_ids=["sg-1"],
        tags={"team": "crm"},
        cleanup=(),
        poll_seconds=0.05,
        endpoint_url=aws_endpoint,
    )


def _frame(spark, seed: int, n: int):
    rng = np.random.default_rng(seed)
    return spark.createDataFrame(
        [(Vectors.dense(v),) for v in rng.normal(size=(n, 3))], ["features"]
    )


def test_tune_kmeans_creates_the_documented_tuning_job(spark, config):
    import boto3

    from spark_clustering import tune_kmeans

    result = tune_kmeans(
        _frame(spark, 1, 12),
        _frame(spark, 2, 6),
        k=4,
        config=config,
        max_jobs=6,
        max_parallel_jobs=2,
    )
    sm = boto3.client("sagemaker", region_name="us-east-1")
    job = sm.describe_hyper_parameter_tuning_job(HyperParameterTuningJobName=result.tuning_job_name)
    cfg = job["HyperParameterTuningJobConfig"]
    assert cfg["Strategy"] == "Bayesian"
    assert cfg["HyperParameterTuningJobObjective"] == {"Type": "Minimize", "MetricName": "test:msd"}
    assert cfg["TrainingJobEarlyStoppingType"] == "Auto"
    assert cfg["ResourceLimits"] == {"MaxNumberOfTrainingJobs": 6, "MaxParallelTrainingJobs": 2}
    ranges = {
        r["Name"]: (r["MinValue"], r["MaxValue"])
        for r in cfg["ParameterRanges"]["IntegerParameterRanges"]
    }
    assert ranges == {
        "extra_center_factor": ("4", "10"),
        "mini_batch_size": ("3000", "15000"),
        "epochs": ("1", "10"),
    }
    assert cfg["ParameterRanges"]["CategoricalParameterRanges"] == [
        {"Name": "init_method", "Values": ["kmeans++", "random"]}
    ]
    definition = job["TrainingJobDefinition"]
    assert definition["StaticHyperParameters"] == {
        "k": "4",
        "feature_dim": "3",
        "eval_metrics": "[msd]",
    }
    assert definition["AlgorithmSpecification"]["TrainingImage"].endswith("/kmeans:1")
    assert definition["RoleArn"] == ROLE
    assert [c["ChannelName"] for c in definition["InputDataConfig"]] == ["train", "test"]
    assert definition["OutputDataConfig"]["KmsKeyId"] == "alias/outputs"
    assert definition["ResourceConfig"]["VolumeKmsKeyId"] == "alias/volumes"
    assert definition["VpcConfig"] == {"Subnets": ["subnet-1"], "SecurityGroupIds": ["sg-1"]}
    tags = sm.list_tags(ResourceArn=job["HyperParameterTuningJobArn"])["Tags"]
    assert tags == [{"Key": "team", "Value": "crm"}]
    assert result.best_training_job == job["BestTrainingJob"]["TrainingJobName"]
    # both channels were written as RecordIO-protobuf under the staging prefix
    s3 = boto3.client("s3", region_name="us-east-1")
    for channel in ("train", "test"):
        keys = [
            o["Key"]
            for o in s3.list_objects_v2(
                Bucket=BUCKET, Prefix=f"tuning/{result.tuning_job_name}/{channel}/"
            )["Contents"]
        ]
        assert any(k.endswith(".pbr") for k in keys), keys


def test_tune_kmeans_rejects_bad_input_before_creating_anything(spark, config):
    import boto3

    from spark_clustering import tune_kmeans

    with pytest.raises(ValueError, match="k=1 is out of range"):
        tune_kmeans(_frame(spark, 1, 5), _frame(spark, 2, 5), k=1, config=config)
    with pytest.raises(ValueError, match="different feature dimensions"):
        two = spark.createDataFrame([(Vectors.dense([1.0, 2.0]),)], ["features"])
        tune_kmeans(_frame(spark, 1, 5), two, k=2, config=config)
    sm = boto3.client("sagemaker", region_name="us-east-1")
    assert sm.list_hyper_parameter_tuning_jobs()["HyperParameterTuningJobSummaries"] == []


def test_pca_trains_sagemaker_pca_and_projects_through_the_endpoint(spark, config):
    import boto3

    from spark_clustering import PCA

    components = np.array([[1.0, 0.0], [0.0, 1.0], [0.5, -0.5]])
    df = _frame(spark, 3, 10)
    with KMeansEndpoint(np.zeros((1, 3)), answer=pca_answer(components)) as endpoint:
        cfg = config.with_changes(
            cleanup=("staged_data", "endpoint"), runtime_endpoint_url=endpoint.url
        )
        est = PCA(k=2, backend="sagemaker", subtractMean=True, algorithmMode="randomized")
        model = est.setSageMakerConfig(cfg).fit(df)
        state = model.sagemakerState()
        sm = boto3.client("sagemaker", region_name="us-east-1")
        job = sm.describe_training_job(TrainingJobName=state["training_job_name"])
        assert job["AlgorithmSpecification"]["TrainingImage"].endswith("/pca:1")
        hyper = job["HyperParameters"]
        assert hyper["num_components"] == "2" and hyper["feature_dim"] == "3"
        assert hyper["subtract_mean"] == "True" and hyper["algorithm_mode"] == "randomized"
        out = model.transform(df)
        assert out.columns == ["features", "projection"]
        rows = out.collect()
    x = np.array([r["features"].toArray() for r in rows])
    got = np.array([r["projection"].toArray() for r in rows])
    np.testing.assert_allclose(got, x @ components)
    assert len(model.cleanup()) == 3
    assert sm.list_models()["Models"] == [] and sm.list_endpoints()["Endpoints"] == []
