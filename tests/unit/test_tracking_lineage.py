"""What MLflow 3 shows of our trials: the experiment kind, inputs as datasets (absolute URI,
digest, schema, context), each metric once, the run context as MLflow's system tags, and the
job's run id and the MLflow run naming each other. Read back through MlflowClient on a SQLite
store, then through the REST API of a real ``mlflow server`` on that store (what the UI reads).
"""

from __future__ import annotations

import getpass
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import pytest

from spark_clustering import tracking
from spark_clustering.jobs import lineage
from spark_clustering.tracking import hooks

KIND = "mlflow.experimentKind"
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def _write_parts(folder: Path, sizes: list[int]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i, size in enumerate(sizes):
        (folder / f"part-{i:05d}.parquet").write_bytes(b"x" * size)
        (folder / f".part-{i:05d}.parquet.crc").write_bytes(b"crc")
    (folder / "_SUCCESS").write_bytes(b"")


def _schema(**types: str) -> SimpleNamespace:
    """What ``describe`` reads of a DataFrame: ``schema.fields`` with names and types."""
    fields = [
        SimpleNamespace(name=n, dataType=SimpleNamespace(simpleString=lambda t=t: t))
        for n, t in types.items()
    ]
    return SimpleNamespace(schema=SimpleNamespace(fields=fields))


def _parent(client, experiment: str, trial: str):
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id], max_results=100)
    parent = next(r for r in runs if r.info.run_name == trial)
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    return parent, children


def test_experiments_are_tagged_to_open_on_runs(store, client):
    with tracking.trial("kind-new", "t1", **store):
        pass
    assert client.get_experiment_by_name("kind-new").tags[KIND] == "custom_model_development"
    # created before the tag existed: tagged when we log into it
    client.create_experiment("kind-old", artifact_location=store["artifact_location"])
    assert KIND not in client.get_experiment_by_name("kind-old").tags
    with tracking.trial("kind-old", "t1", **store):
        pass
    assert client.get_experiment_by_name("kind-old").tags[KIND] == "custom_model_development"
    # a kind someone chose is kept
    client.create_experiment("kind-genai", tags={KIND: "genai_development"})
    with tracking.trial("kind-genai", "t1", **store):
        pass
    assert client.get_experiment_by_name("kind-genai").tags[KIND] == "genai_development"


def test_digest_follows_the_files_and_the_uri_is_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _write_parts(tmp_path / "features", [100, 200])
    uri, first = lineage.describe(None, "features", _schema(customer_id="bigint"), rows=7)
    assert uri == (tmp_path / "features").as_uri() and uri.startswith("file:///")
    assert first.profile == {"files": 3, "bytes": 300, "rows": 7}  # two parts and _SUCCESS
    assert first.schema == {"customer_id": "bigint"} and first.context == "training"
    assert lineage.describe(None, str(tmp_path / "features"))[1].digest == first.digest
    _write_parts(tmp_path / "features", [100, 201])  # one part rewritten
    assert lineage.describe(None, "features")[1].digest != first.digest
    assert lineage.absolute_uri("s3://bucket/features/") == "s3://bucket/features"


@pytest.mark.spark
def test_a_hadoop_listing_gives_the_same_files(spark, tmp_path):
    """S3 and HDFS paths are listed through Hadoop's FileSystem: here its local one."""
    _write_parts(tmp_path / "features" / "part=1", [10, 20])
    local = sorted((rel, size) for rel, size, _ in lineage._local_files(str(tmp_path / "features")))
    uri = (tmp_path / "features").as_uri()
    listed = sorted((rel, size) for rel, size, _ in lineage._remote_files(spark, uri))
    assert listed == local == [("part=1/_SUCCESS", 0), ("part=1/part-00000.parquet", 10),
                               ("part=1/part-00001.parquet", 20)]  # fmt: skip


def test_inputs_are_mlflow_datasets(store, client, tmp_path):
    _write_parts(tmp_path / "features", [50])
    with tracking.trial("lineage", "datasets", **store) as t:
        lineage.log_input(t, None, "input", str(tmp_path / "features"),
                          _schema(customer_id="bigint", features="vector"), rows=3)  # fmt: skip
        t.log_input("plain", "s3://bucket/x")
    assert t.failures == [], t.summary_text()
    parent, _ = _parent(client, "lineage", "datasets")
    (given,) = parent.inputs.dataset_inputs
    ds = given.dataset
    assert ds.name == "input" and ds.source_type == "local"
    assert json.loads(ds.source) == {"uri": (tmp_path / "features").as_uri()}
    assert ds.digest == lineage.describe(None, str(tmp_path / "features"))[1].digest
    assert json.loads(ds.schema)["mlflow_colspec"] == [
        {"name": "customer_id", "type": "bigint"},
        {"name": "features", "type": "vector"},
    ]
    assert json.loads(ds.profile) == {"files": 2, "bytes": 50, "rows": 3}
    assert {(x.key, x.value) for x in given.tags} == {("mlflow.data.context", "training")}
    # the plain tags stay (the leaderboard and older readers use them)
    assert parent.data.tags["input.input"] == (tmp_path / "features").as_uri()
    assert parent.data.tags["input.plain"] == "s3://bucket/x"


def test_a_metric_the_caller_logs_itself_is_logged_once(store, client):
    with tracking.trial("lineage", "metrics-once", **store) as t:
        with t.own_metrics():
            hooks.log_metrics({"silhouette": 0.5})  # what evaluate() does inside
        t.log_metrics({"silhouette": 0.5})
    parent, children = _parent(client, "lineage", "metrics-once")
    assert parent.data.metrics == {"silhouette": 0.5}
    assert children == []  # no Evaluation child holding a copy
    history = client.get_metric_history(parent.info.run_id, "silhouette")
    assert len(history) == 1
    # outside own_metrics the hook logs as before, to its Evaluation component
    with tracking.trial("lineage", "hook-only", **store):
        hooks.log_metrics({"silhouette": 0.25})
    parent, children = _parent(client, "lineage", "hook-only")
    assert parent.data.metrics == {}
    assert [(c.info.run_name, c.data.metrics) for c in children] == [
        ("Evaluation", {"silhouette": 0.25})
    ]


def test_context_tags_and_cross_reference(store, client, monkeypatch):
    monkeypatch.setenv("SPARK_CLUSTERING_GIT_COMMIT", COMMIT)
    monkeypatch.setattr(sys, "argv", ["/opt/jobs/segment_customers.py", "--config", "x"])
    tags = {"run_id": "job-run-42", "model_version": "2026-11-01-job-run", "prepare.run_id": "p7"}
    with tracking.trial("lineage", "xref", tags, **store) as t:
        ref = t.reference()
    parent, _ = _parent(client, "lineage", "xref")
    got = parent.data.tags
    assert got["mlflow.source.git.commit"] == COMMIT
    assert got["mlflow.user"] == getpass.getuser()
    assert got["mlflow.source.name"] == "segment_customers.py"
    assert got["mlflow.source.type"] == "LOCAL"
    assert got["run_id"] == "job-run-42"
    note = got["mlflow.note.content"]
    assert "job-run-42" in note and parent.info.run_id in note and "p7" in note
    exp_id = parent.info.experiment_id
    assert ref == {
        "backend": "mlflow",
        "tracking_uri": store["tracking_uri"],
        "experiment_id": exp_id,
        "run_id": parent.info.run_id,
        "ui_path": f"#/experiments/{exp_id}/runs/{parent.info.run_id}"
        "?workflowType=machine_learning",
        "experiment_ui_path": f"#/experiments/{exp_id}/runs?workflowType=machine_learning",
    }
    assert t.summary()["run"] == ref
    with tracking.trial("lineage", "off", backend="none") as off:
        assert off.reference() is None


def test_preparation_counts_and_the_prepare_record(tmp_path):
    report = {
        "customers": 5,
        "features": ["a", "b"],
        "input": {
            "rows_read": 12,
            "rows_kept": 9,
            "duplicate_rows_dropped": 1,
            "null_ids": 2,
            "non_numeric": {"amount": 1},
            "range_violations": {"amount": {"below_min": 2, "above_max": 1}},
            "future_timestamps": {"rows": 4},
            "all_null_dropped": ["c"],
        },
        "clean": {"dropped_constant": ["d", "e"]},
        "dropped_correlated": [{"feature": "f"}],
    }
    counts = lineage.preparation_counts(report)
    assert counts["prepare.rows_read"] == 12 and counts["prepare.rows_dropped"] == 3
    assert counts["prepare.found_out_of_range"] == 3
    assert counts["prepare.found_future_timestamps"] == 4
    assert counts["prepare.features_dropped_constant"] == 2
    assert counts["prepare.features_dropped_correlated"] == 1
    assert counts["prepare.features_dropped_all_null"] == 1
    # a segment run reading <prepared>/features finds the prepare run beside it
    (tmp_path / "prepared" / "features").mkdir(parents=True)
    record = {"job": "prepare", "run_id": "p1", "tracking": {"run": {"run_id": "m1"}}}
    (tmp_path / "prepared" / "summary.json").write_text(json.dumps(record))
    found = lineage.prepare_record(None, str(tmp_path / "prepared" / "features"))
    assert lineage.prepare_tags(found) == {"prepare.run_id": "p1", "prepare.tracking_run_id": "m1"}
    assert lineage.prepare_record(None, str(tmp_path / "elsewhere" / "features")) is None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url: str, body: dict | None = None) -> dict:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


@pytest.mark.slow
def test_what_the_mlflow_ui_reads(store, client, tmp_path):
    """The REST API of a real ``mlflow server`` on the store: the calls the UI makes."""
    _write_parts(tmp_path / "features", [10, 20])
    with tracking.trial("ui-view", "kmeans-k4", {"run_id": "job-7"}, **store) as t:
        lineage.log_input(t, None, "input", str(tmp_path / "features"), rows=30)
        with t.own_metrics():
            hooks.log_metrics({"silhouette": 0.61})
        t.log_metrics({"silhouette": 0.61})
        hooks.log_fit("KMeans", {"k": 4})
    port = _free_port()
    db = store["tracking_uri"]
    command = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", db,
               "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]  # fmt: skip
    server = subprocess.Popen(
        command,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                urllib.request.urlopen(f"{base}/health", timeout=2).read()
                break
            except OSError:
                assert server.poll() is None, "mlflow server exited"
                assert time.monotonic() < deadline, "mlflow server did not start in 90 s"
                time.sleep(0.5)
        exp = _get(f"{base}/api/2.0/mlflow/experiments/get-by-name?experiment_name=ui-view")
        exp_tags = {x["key"]: x["value"] for x in exp["experiment"]["tags"]}
        assert exp_tags[KIND] == "custom_model_development"
        found = _get(
            f"{base}/ajax-api/2.0/mlflow/runs/search",
            {"experiment_ids": [exp["experiment"]["experiment_id"]], "max_results": 10},
        )["runs"]
        by_name = {r["info"]["run_name"]: r for r in found}
        assert set(by_name) == {"kmeans-k4", "Training"}  # no Evaluation child
        run = by_name["kmeans-k4"]
        assert run["info"]["run_id"] == t.reference()["run_id"]
        assert [(m["key"], m["value"]) for m in run["data"]["metrics"]] == [("silhouette", 0.61)]
        assert "metrics" not in by_name["Training"]["data"]
        tags = {x["key"]: x["value"] for x in run["data"]["tags"]}
        assert tags["run_id"] == "job-7" and "job-7" in tags["mlflow.note.content"]
        assert tags["mlflow.user"] == getpass.getuser()
        (given,) = run["inputs"]["dataset_inputs"]
        assert given["dataset"]["name"] == "input"
        assert json.loads(given["dataset"]["source"])["uri"] == (tmp_path / "features").as_uri()
        assert given["tags"] == [{"key": "mlflow.data.context", "value": "training"}]
    finally:
        os.killpg(server.pid, 15)
        server.wait(timeout=30)
