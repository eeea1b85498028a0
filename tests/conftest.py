"""Shared fixtures: one local SparkSession, moto's server on 127.0.0.1, and the GPU gate."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator

import numpy as np
import pytest

# Never let a test reach real AWS: fake credentials and no EC2 metadata lookups, set before
# anything imports boto3.
os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
os.environ.setdefault("AWS_SESSION_TOKEN", "testing")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
os.environ["AWS_EC2_METADATA_DISABLED"] = "true"
# Tests that leave tracking unset must not write an mlruns/ into the checkout.
os.environ.setdefault("SPARK_CLUSTERING_TRACKING", "none")


@pytest.fixture(scope="session")
def spark():
    """The session-scoped local Spark: local[2], 4 shuffle partitions, no UI, UTC."""
    from spark_clustering.session import get_spark

    session = get_spark(
        "spark-clustering-tests",
        master="local[2]",
        conf={
            "spark.sql.shuffle.partitions": "4",
            "spark.default.parallelism": "4",
            "spark.ui.enabled": "false",
            "spark.sql.session.timeZone": "UTC",
            "spark.driver.memory": "3g",
            "spark.python.worker.reuse": "true",
        },
        gpu="off",
        # tests/aws trains through sagemaker-pyspark in this same session
        jars=("sagemaker",),
    )
    yield session
    session.stop()


@pytest.fixture(scope="session")
def rng_seed() -> int:
    return 20261122


@pytest.fixture()
def rng(rng_seed: int) -> np.random.Generator:
    return np.random.default_rng(rng_seed)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def moto_server() -> Iterator[str]:
    """moto's server on 127.0.0.1 for the whole session; yields its endpoint URL."""
    from moto.server import ThreadedMotoServer

    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture()
def aws_endpoint(moto_server: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """A clean moto state for one test, with boto3 pointed at it through the environment."""
    import urllib.request

    urllib.request.urlopen(  # loopback only
        urllib.request.Request(f"{moto_server}/moto-api/reset", method="POST"), timeout=10
    ).read()
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server)
    return moto_server


@pytest.fixture()
def gpu(spark) -> None:
    """Skip the test unless cuML and a GPU are usable by the executors."""
    from spark_clustering.base import executors_have_gpus

    ok, why = executors_have_gpus(spark)
    if not ok:
        pytest.skip(f"needs a GPU: {why}")


@pytest.fixture
def no_spark(monkeypatch):
    """Fail the test if anything asks ``get_spark`` for a session (bad input is rejected
    before Spark starts)."""
    import spark_clustering.session as session

    def refuse(*args, **kwargs):
        raise AssertionError("Spark must not start on a bad config")

    monkeypatch.setattr(session, "get_spark", refuse)
