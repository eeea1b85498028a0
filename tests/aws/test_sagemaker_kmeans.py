"""SageMaker backend against moto's server on 127.0.0.1: training, hosting, scoring, cleanup.

Training runs for real through sagemaker-pyspark's KMeansSageMakerEstimator (its JVM code, its
RecordIO-protobuf writer through S3A, the Java SDK v1 client) against moto. Moto does not run
models, so the endpoint's answers come from a local server speaking SageMaker's documented KMeans
format (tests/aws/sagemaker_support.py) and the batch transform's output is written by the test
in the format SageMaker documents for JoinSource=Input.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest
from pyspark.ml.linalg import Vectors
from sagemaker_support import BUCKET, ROLE, KMeansEndpoint

pytestmark = [pytest.mark.aws, pytest.mark.spark]

CENTRES = np.array([[0.0, 0.0], [5.0, 5.0], [0.0, 8.0]])


@pytest.fixture(scope="module")
def points() -> np.ndarray:
    rng = np.random.default_rng(1)
    return np.vstack([rng.normal(c, 0.4, (8, 2)) for c in CENTRES])


@pytest.fixture()
def frame(spark, points):
    return spark.createDataFrame(
        [(i, Vectors.dense(p)) for i, p in enumerate(points)], ["id", "features"]
    )


@pytest.fixture()
def env(spark, aws_endpoint):
    """A staging bucket and two KMS keys in a fresh moto, and a config using them."""
    import boto3

    jars = spark.sparkContext.getConf().get("spark.jars", "")
    if "sagemaker-spark" not in jars or "protobuf" not in jars:
        pytest.skip(f"sagemaker_pyspark or protobuf-java jar not on the classpath: {jars}")
    from spark_clustering import SageMakerConfig

    boto3.client("s3", region_name="us-east-1").create_bucket(Bucket=BUCKET)
    kms = boto3.client("kms", region_name="us-east-1")
    volume_key = kms.create_key(Description="volumes")["KeyMetadata"]["KeyId"]
    output_key = kms.create_key(Description="outputs")["KeyMetadata"]["KeyId"]
    config = SageMakerConfig(
        region="us-east-1",
        role_arn=ROLE,
        staging_prefix=f"s3://{BUCKET}/runs",
        training_instance_type="ml.m5.large",
        volume_size_gb=5,
        volume_kms_key_id=volume_key,
        output_kms_key_id=output_key,
        require_kms=True,
        subnets=["subnet-0a1b2c3d"],
        security_group_ids=["sg-0a1b2c3d"],
        network_isolation=True,
        tags={"team": "crm", "cost-centre": "42"},
        poll_seconds=0.05,
        wait_timeout_seconds=30,
        endpoint_url=aws_endpoint,
    )
    return {"config": config, "volume_key": volume_key, "output_key": output_key}


def _sm():
    import boto3

    return boto3.client("sagemaker", region_name="us-east-1")


def _tags(arn: str) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in _sm().list_tags(ResourceArn=arn)["Tags"]}


def _recordio_vectors(spark, payload: bytes) -> list[list[float]]:
    """Decode RecordIO-protobuf (sagemaker-spark's Record messages) with its own Java classes."""
    record_cls = spark.sparkContext._jvm.aialgorithms.proto2.RecordProto2.Record
    out, pos = [], 0
    while pos < len(payload):
        magic, length = struct.unpack_from("<II", payload, pos)
        assert magic == 0xCED7230A
        length &= (1 << 29) - 1
        body = payload[pos + 8 : pos + 8 + length]
        record = record_cls.parseFrom(bytearray(body))
        entries = {e.getKey(): e.getValue() for e in record.getFeaturesList()}
        values = entries["values"].getFloat32Tensor().getValuesList()
        out.append([float(v) for v in values])
        pos += 8 + length + (-length % 4)
    return out


def test_fit_trains_hosts_scores_and_cleans_up(spark, env, frame, points, tmp_path):
    import boto3

    from spark_clustering import KMeans, KMeansModel

    config = env["config"].with_changes(cleanup=("endpoint",))  # keep the staged data to check it
    with KMeansEndpoint(CENTRES) as endpoint:
        config = config.with_changes(runtime_endpoint_url=endpoint.url)
        est = KMeans(
            outlierQuantile=0.8,
            k=3,
            backend="sagemaker",
            miniBatchSize=100,
            extraCenterFactor="4",
            epochs=2,
            evalMetrics="msd,ssd",
        ).setSageMakerConfig(config)
        model = est.fit(frame)
        state = model.sagemakerState()

        # the training data: RecordIO-protobuf under the staging prefix (SSE-KMS through S3A
        # needs HTTPS, which moto's server does not speak: see test_s3a_settings_encrypt_staging)
        s3 = boto3.client("s3", region_name="us-east-1")
        prefix = f"runs/training-input/{state['training_job_name']}/"
        keys = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix)["Contents"]]
        parts = [k for k in keys if k.endswith(".pbr")]
        assert parts, keys
        vectors = []
        for key in parts:
            body = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
            vectors += _recordio_vectors(spark, body)
        # sagemaker-spark writes Float32Tensor records
        np.testing.assert_allclose(
            sorted(map(tuple, vectors)), sorted(map(tuple, points.tolist())), rtol=1e-6
        )

        # the training job request: role, image, hyperparameters, KMS, VPC, isolation, tags
        sm = _sm()
        job = sm.describe_training_job(TrainingJobName=state["training_job_name"])
        assert job["RoleArn"] == ROLE
        assert job["AlgorithmSpecification"]["TrainingImage"].endswith("/kmeans:1")
        assert job["HyperParameters"] == {
            "k": "3",
            "feature_dim": "2",
            "mini_batch_size": "100",
            "init_method": "kmeans++",
            "extra_center_factor": "4",
            "epochs": "2",
            "eval_metrics": "[msd,ssd]",
            "local_lloyd_max_iter": "20",
            "local_lloyd_tol": "1.0E-4",
        }
        assert job["InputDataConfig"][0]["DataSource"]["S3DataSource"]["S3Uri"] == (
            f"s3://{BUCKET}/{prefix.rstrip('/')}"
        )
        assert job["OutputDataConfig"]["KmsKeyId"] == env["output_key"]
        assert job["ResourceConfig"]["VolumeKmsKeyId"] == env["volume_key"]
        assert job["ResourceConfig"]["VolumeSizeInGB"] == 5
        assert job["VpcConfig"] == {
            "SecurityGroupIds": ["sg-0a1b2c3d"],
            "Subnets": ["subnet-0a1b2c3d"],
        }
        assert job["EnableNetworkIsolation"] is True
        assert _tags(job["TrainingJobArn"]) == {"team": "crm", "cost-centre": "42"}

        # hosting: model, endpoint config (volume key), endpoint, all tagged
        m = sm.describe_model(ModelName=state["model_name"])
        assert m["ExecutionRoleArn"] == ROLE
        assert m["PrimaryContainer"]["ModelDataUrl"] == state["model_artifacts"]
        assert m["VpcConfig"]["Subnets"] == ["subnet-0a1b2c3d"]
        # (moto does not keep CreateModel's EnableNetworkIsolation, so it is not checked here)
        ec = sm.describe_endpoint_config(EndpointConfigName=state["endpoint_config_name"])
        assert ec["KmsKeyId"] == env["volume_key"]
        ep = sm.describe_endpoint(EndpointName=state["endpoint_name"])
        assert ep["EndpointStatus"] == "InService"
        for arn in (m["ModelArn"], ec["EndpointConfigArn"], ep["EndpointArn"]):
            assert _tags(arn) == {"team": "crm", "cost-centre": "42"}

        # transform through the endpoint: the documented columns, as the Spark backend's
        out = model.transform(frame).orderBy("id")
        assert out.columns == ["id", "features", "cluster", "distance", "outlier"]
        rows = out.collect()
        d = np.linalg.norm(points[:, None, :] - CENTRES[None], axis=2)
        assert [r["cluster"] for r in rows] == list(d.argmin(axis=1))
        np.testing.assert_allclose([r["distance"] for r in rows], d.min(axis=1))
        # outlier thresholds were learnt at fit through the endpoint: the farthest of each
        # cluster's 8 rows lies beyond its 0.8 quantile (the 7th smallest distance)
        assert sorted(model.outlierThresholds()) == [0, 1, 2]
        assert sum(r["outlier"] for r in rows) == 3

        # a saved and loaded model still scores through the same endpoint
        model.write().save(str(tmp_path / "sm-model"))
        loaded = KMeansModel.load(str(tmp_path / "sm-model"))
        assert loaded.sagemakerState() == state
        assert loaded.transform(frame).orderBy("id").collect() == rows
        assert all(
            r["path"] == f"/endpoints/{state['endpoint_name']}/invocations"
            for r in endpoint.requests
        )

    deleted = model.cleanup()
    assert len(deleted) == 3
    assert sm.list_endpoints()["Endpoints"] == []
    assert sm.list_models()["Models"] == []
    assert sm.list_endpoint_configs()["EndpointConfigs"] == []


def test_endpoint_calls_split_payload_and_retry_throttling(env):
    from spark_clustering.backends.sagemaker.inference import invoke_batches

    rng = np.random.default_rng(2)
    features = [list(v) for v in rng.normal(size=(60, 2))] + [None]
    with KMeansEndpoint(CENTRES, throttle_first=2) as endpoint:
        settings = {
            "endpoint": "seg-endpoint",
            "region": "us-east-1",
            "endpoint_url": endpoint.url,
            "max_payload_bytes": 1024,
            "max_retries": 4,
        }
        scored = invoke_batches("kmeans", features, settings)
    assert scored[-1] is None
    x = np.array(features[:-1])
    d = np.linalg.norm(x[:, None, :] - CENTRES[None], axis=2)
    assert [s[0] for s in scored[:-1]] == list(d.argmin(axis=1))
    sizes = [r["bytes"] for r in endpoint.requests]
    assert max(sizes) <= 1024
    # 60 records of ~40 bytes do not fit one 1 KiB request: at least 3 requests, plus the 2
    # throttled attempts that were retried
    assert len(sizes) >= 3 + 2
    assert all(r["type"] == "application/json" for r in endpoint.requests)


def test_batch_transform_runs_tagged_job_and_joins_by_id(spark, env, frame, points):
    import boto3

    from spark_clustering import KMeans
    from spark_clustering.backends.sagemaker import estimators, inference

    config = env["config"].with_changes(inference="batch")
    model = KMeans(k=3, backend="sagemaker").setSageMakerConfig(config).fit(frame)
    state = model.sagemakerState()
    sm = _sm()
    assert state["endpoint_name"] is None and sm.list_endpoints()["Endpoints"] == []
    # the training data was deleted after training (cleanup 'staged_data' by default)
    s3 = boto3.client("s3", region_name="us-east-1")
    listed = s3.list_objects_v2(
        Bucket=BUCKET, Prefix=f"runs/training-input/{state['training_job_name']}"
    )
    assert listed.get("KeyCount", 0) == 0

    job = inference.submit_batch_transform(
        "kmeans",
        frame,
        "features",
        state,
        {"cluster": "cluster", "distance": "distance"},
        estimators.SageMakerConfig.from_dict(state["config"]),
    )
    described = sm.describe_transform_job(TransformJobName=job.job_name)
    assert described["ModelName"] == state["model_name"]
    assert described["TransformOutput"]["KmsKeyId"] == env["output_key"]
    assert described["DataProcessing"]["JoinSource"] == "Input"
    assert _tags(described["TransformJobArn"]) == {"team": "crm", "cost-centre": "42"}

    # play SageMaker's part: one .out file per input file, JoinSource=Input + OutputFilter
    in_prefix = job.input_uri.split(f"{BUCKET}/", 1)[1]
    out_prefix = job.output_uri.split(f"{BUCKET}/", 1)[1]
    for obj in s3.list_objects_v2(Bucket=BUCKET, Prefix=in_prefix)["Contents"]:
        lines = s3.get_object(Bucket=BUCKET, Key=obj["Key"])["Body"].read().decode().splitlines()
        answers = []
        for line in lines:
            rec = json.loads(line)
            dist = np.linalg.norm(CENTRES - np.array(rec["data"]["features"]), axis=1)
            answers.append(
                json.dumps(
                    {
                        "id": rec["id"],
                        "SageMakerOutput": {
                            "closest_cluster": float(dist.argmin()),
                            "distance_to_cluster": float(dist.min()),
                        },
                    }
                )
            )
        name = Path(obj["Key"]).name
        s3.put_object(Bucket=BUCKET, Key=f"{out_prefix}/{name}.out", Body="\n".join(answers))

    out = inference.collect_batch_transform(job).orderBy("id")
    assert out.columns == ["id", "features", "cluster", "distance"]
    rows = out.collect()
    d = np.linalg.norm(points[:, None, :] - CENTRES[None], axis=2)
    assert [r["cluster"] for r in rows] == list(d.argmin(axis=1))
    np.testing.assert_allclose([r["distance"] for r in rows], d.min(axis=1))
    left = s3.list_objects_v2(Bucket=BUCKET, Prefix=f"runs/{job.job_name}")
    assert left.get("KeyCount", 0) == 0  # staged input and output deleted
    assert model.cleanup() == [f"deleted model {state['model_name']}"]


@pytest.mark.parametrize(
    ("change", "params", "message"),
    [
        ({"role_arn": ""}, {}, "role_arn='' is missing"),
        ({"region": ""}, {}, "region='' is missing"),
        ({"staging_prefix": "/tmp/stage"}, {}, "staging_prefix='/tmp/stage' is not valid"),
        ({"output_kms_key_id": None}, {}, "output_kms_key_id=None but require_kms=True"),
        ({}, {"k": 1}, "k=1 is out of range; accepted: >= 2"),
        ({}, {"featureDim": 5}, "featureDim=5 does not match the data"),
        ({}, {"featuresCol": "id"}, "featuresCol='id' has type bigint; accepted"),
    ],
)
def test_bad_input_fails_before_any_resource(spark, env, frame, change, params, message):
    import boto3

    from spark_clustering import KMeans

    config = env["config"].with_changes(**change)
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        KMeans(backend="sagemaker", **{"k": 3, **params}).setSageMakerConfig(config).fit(frame)
    sm = _sm()
    assert sm.list_training_jobs()["TrainingJobSummaries"] == []
    assert sm.list_models()["Models"] == []
    assert (
        boto3.client("s3", region_name="us-east-1").list_objects_v2(Bucket=BUCKET)["KeyCount"] == 0
    )


def test_failure_after_creation_cleans_up_and_lists(spark, env, frame, monkeypatch):
    from spark_clustering import KMeans
    from spark_clustering.backends.sagemaker import estimators

    def endpoint_stuck(*args, what, **kwargs):
        raise TimeoutError(f"{what} still Creating")

    monkeypatch.setattr(estimators, "wait_for", endpoint_stuck)
    with pytest.raises(estimators.SageMakerStepError) as err:
        KMeans(k=3, backend="sagemaker").setSageMakerConfig(env["config"]).fit(frame)
    text = str(err.value)
    assert "still Creating" in text and "training-job sc-kmeans-" in text
    for kind in ("model", "endpoint-config", "endpoint"):
        assert f"deleted {kind} sc-kmeans-" in text
    sm = _sm()
    assert sm.list_models()["Models"] == []
    assert sm.list_endpoints()["Endpoints"] == []
    assert sm.list_endpoint_configs()["EndpointConfigs"] == []


def test_s3a_settings_encrypt_staging(env):
    from spark_clustering.backends.sagemaker.clients import s3a_settings

    on_aws = env["config"].with_changes(endpoint_url="https://s3.us-east-1.amazonaws.com")
    settings = s3a_settings(on_aws)
    assert settings[f"fs.s3a.bucket.{BUCKET}.server-side-encryption-algorithm"] == "SSE-KMS"
    assert settings[f"fs.s3a.bucket.{BUCKET}.server-side-encryption.key"] == env["output_key"]
    assert settings["fs.s3a.connection.ssl.enabled"] == "true"
    plain = s3a_settings(env["config"])
    assert not any("encryption" in k for k in plain)
    assert plain["fs.s3a.path.style.access"] == "true"
