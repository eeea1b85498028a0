"""SageMaker's managed MLflow: a tracking server's ARN as the MLflow tracking URI, accepted
when the sagemaker-mlflow plugin is installed and refused, naming the setting and the package,
when it is not; the segment config checks it before Spark starts."""

from __future__ import annotations

import importlib.util

import pytest

from spark_clustering.jobs.segment_config import ConfigError, parse_config
from spark_clustering.tracking import config as tracking_config
from spark_clustering.tracking.config import check_tracking_uri, resolve_config

ARN = "arn:aws:sagemaker:eu-west-1:123456789012:mlflow-tracking-server/segmentation"


@pytest.fixture()
def plugin(monkeypatch):
    """Pretend sagemaker-mlflow is (True) or is not (False) installed."""
    real = importlib.util.find_spec

    def installed(value: bool):
        def find_spec(name, *args, **kwargs):
            if name == tracking_config.MLFLOW_PLUGIN:
                return object() if value else None
            return real(name, *args, **kwargs)

        monkeypatch.setattr(tracking_config.importlib.util, "find_spec", find_spec)

    return installed


def test_arn_accepted_with_the_plugin(plugin):
    plugin(True)
    assert check_tracking_uri(ARN) == ARN
    assert resolve_config("mlflow", tracking_uri=ARN, env={}).mlflow_uri() == ARN
    gov = "arn:aws-us-gov:sagemaker:us-gov-west-1:123456789012:mlflow-tracking-server/a-b-9"
    assert check_tracking_uri(gov) == gov


def test_arn_without_the_plugin_names_the_setting_and_the_package(plugin):
    plugin(False)
    with pytest.raises(ValueError) as err:
        resolve_config("mlflow", tracking_uri=ARN, env={})
    message = str(err.value)
    assert f"tracking_uri={ARN!r}" in message
    assert "sagemaker-mlflow package (not installed)" in message
    assert "pip install 'spark-clustering[sagemaker-mlflow]'" in message
    with pytest.raises(ValueError, match=r"tracking_uri=.*sagemaker-mlflow"):
        resolve_config(env={"SPARK_CLUSTERING_TRACKING_URI": ARN})


@pytest.mark.parametrize(
    "bad",
    [
        "arn:aws:sagemaker:eu-west-1:123456789012:training-job/segmentation",
        "arn:aws:sagemaker:eu-west-1:1234:mlflow-tracking-server/segmentation",
        "arn:aws:sagemaker:eu-west-1:123456789012:mlflow-tracking-server/",
        "arn:aws:sagemaker:eu-west-1:123456789012:mlflow-tracking-server/bad_name",
        "arn:aws:s3:::bucket",
    ],
)
def test_other_arns_are_refused(plugin, bad):
    plugin(True)
    with pytest.raises(ValueError, match="accepted: a SageMaker MLflow tracking server ARN"):
        check_tracking_uri(bad)


@pytest.mark.parametrize("uri", ["sqlite:///mlflow.db", "http://mlflow:5000", "databricks"])
def test_other_uris_are_mlflows(plugin, uri):
    plugin(False)
    assert resolve_config("mlflow", tracking_uri=uri, env={}).tracking_uri == uri


def test_segment_config_checks_the_arn_before_spark(plugin, tmp_path):
    plugin(False)
    features = tmp_path / "features"
    features.mkdir()
    data = {
        "input": {"path": str(features)},
        "clusterer": {"algorithm": "kmeans"},
        "tracking": {"backend": "mlflow", "tracking_uri": ARN},
        "output": {"path": str(tmp_path / "out")},
    }
    with pytest.raises(ConfigError) as err:
        parse_config(data)
    assert f"[tracking].tracking_uri={ARN!r} is a SageMaker managed MLflow" in str(err.value)
    plugin(True)
    assert parse_config(data).tracking_uri == ARN


def test_the_plugin_resolves_the_arn_to_the_servers_rest_store():
    """Where sagemaker-mlflow is installed: MLflow itself maps the ARN to the tracking server's
    REST endpoint, with SigV4-signed requests (nothing is contacted)."""
    pytest.importorskip("sagemaker_mlflow", reason="sagemaker-mlflow is not installed")
    from mlflow.tracking._tracking_service.utils import _get_store

    store = _get_store(ARN)
    assert type(store).__module__.startswith("sagemaker_mlflow")
    assert store.get_host_creds().host == "https://eu-west-1.experiments.sagemaker.aws"
