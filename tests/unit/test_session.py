"""The cluster decides: what spark-submit, spark-defaults.conf or PYSPARK_SUBMIT_ARGS set is never
replaced by our defaults; local defaults only for a local master; jars only where asked."""

from __future__ import annotations

import socket
import sys

import pytest

from spark_clustering import session
from spark_clustering.session import (
    SparkSetupError,
    _read_defaults_file,
    _submit_args_settings,
    build_conf,
    check_master_reachable,
    is_local_master,
    uses_sagemaker,
)


def test_spark_defaults_file_is_read_as_spark_reads_it(tmp_path):
    conf = tmp_path / "spark-defaults.conf"
    conf.write_text(
        "# comment\nspark.master   yarn\nspark.executor.memory=6g\n\n"
        "spark.pyspark.python /opt/venv/bin/python\nnot.spark.key 1\n"
    )
    assert _read_defaults_file(str(conf)) == {
        "spark.master": "yarn",
        "spark.executor.memory": "6g",
        "spark.pyspark.python": "/opt/venv/bin/python",
    }
    assert _read_defaults_file(str(tmp_path / "missing.conf")) == {}


def test_pyspark_submit_args_are_settings():
    got = _submit_args_settings(
        "--master spark://10.0.0.1:7077 --driver-memory 3g --conf spark.sql.shuffle.partitions=64 "
        "--jars=/a.jar pyspark-shell"
    )
    assert got == {
        "spark.master": "spark://10.0.0.1:7077",
        "spark.driver.memory": "3g",
        "spark.sql.shuffle.partitions": "64",
        "spark.jars": "/a.jar",
    }


def test_a_configured_cluster_master_and_settings_win_over_our_defaults():
    preset = {
        "spark.master": "yarn",
        "spark.sql.shuffle.partitions": "400",
        "spark.pyspark.python": "/opt/spark-clustering/venv/bin/python",
    }
    master, conf = build_conf(None, None, "off", preset)
    assert master == "yarn"
    assert conf["spark.sql.shuffle.partitions"] == "400"
    assert conf["spark.pyspark.python"] == "/opt/spark-clustering/venv/bin/python"
    # local-only defaults stay off a cluster
    for key in ("spark.ui.enabled", "spark.driver.memory", "spark.driver.host"):
        assert key not in conf, key
    assert conf["spark.sql.session.timeZone"] == "UTC"  # a base default, not set by the cluster


def test_the_caller_wins_over_the_cluster():
    master, conf = build_conf(
        "local[1]", {"spark.sql.shuffle.partitions": "3"}, "off",
        {"spark.master": "yarn", "spark.sql.shuffle.partitions": "400"},
    )  # fmt: skip
    assert master == "local[1]" and conf["spark.sql.shuffle.partitions"] == "3"


def test_local_master_only_when_nothing_is_configured(monkeypatch):
    monkeypatch.delenv("PYSPARK_PYTHON", raising=False)
    master, conf = build_conf(None, None, "off", {})
    assert master == "local[*]"
    assert conf["spark.ui.enabled"] == "false"
    # the Python workers of a local master run the driver's interpreter, not PATH's python3
    assert conf["spark.pyspark.python"] == sys.executable


def test_local_workers_respect_a_configured_python(monkeypatch):
    monkeypatch.setenv("PYSPARK_PYTHON", "/opt/other/python")
    _, conf = build_conf("local[2]", None, "off", {})
    assert conf["spark.pyspark.python"] == "/opt/other/python"
    monkeypatch.delenv("PYSPARK_PYTHON")
    _, conf = build_conf("local[2]", None, "off", {"spark.pyspark.python": "/opt/p/python"})
    assert conf["spark.pyspark.python"] == "/opt/p/python"


@pytest.mark.parametrize(
    ("master", "local"),
    [("local", True), ("local[2]", True), ("local[*]", True), ("local[2,3]", True),
     ("local-cluster[2,1,1024]", False), ("spark://h:7077", False), ("yarn", False)],
)  # fmt: skip
def test_is_local_master(master, local):
    assert is_local_master(master) is local


def test_sagemaker_jars_only_when_asked(monkeypatch):
    monkeypatch.setitem(session.JAR_PROVIDERS, "sagemaker", lambda: ["/x/sagemaker-spark.jar"])
    _, plain = build_conf("local[1]", None, "off", {"spark.jars": "/rapids.jar"})
    assert plain["spark.jars"] == "/rapids.jar"
    _, with_sm = build_conf("local[1]", None, "off", {"spark.jars": "/rapids.jar"}, ("sagemaker",))
    assert with_sm["spark.jars"] == "/rapids.jar,/x/sagemaker-spark.jar"  # added, not replaced
    with pytest.raises(ValueError, match="jars='nope' is not known; accepted: sagemaker"):
        build_conf("local[1]", None, "off", {}, ("nope",))


def test_jobs_ask_for_sagemaker_jars_only_for_a_sagemaker_backend():
    assert not uses_sagemaker({"clusterer": {"algorithm": "kmeans", "params": {"k": 3}}})
    assert not uses_sagemaker({"tracking": {"backend": "sagemaker"}})  # boto3 only, no jars
    assert uses_sagemaker({"clusterer": {"params": {"k": 3, "backend": "sagemaker"}}})
    assert uses_sagemaker({"trials": [{"clusterer_params": {"backend": ["spark", "sagemaker"]}}]})


def test_unreachable_master_fails_at_once_naming_it():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(
        SparkSetupError, match=rf"cannot reach the Spark master spark://127\.0\.0\.1:{port}"
    ):
        check_master_reachable(f"spark://127.0.0.1:{port}", timeout=2)
    check_master_reachable("yarn")  # only standalone masters are probed
