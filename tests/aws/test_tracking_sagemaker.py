"""SageMaker Experiments backend against moto's server on 127.0.0.1.

Entities and associations are read back through boto3. Throttling and quota errors are injected
by a small HTTP proxy in front of moto that answers chosen calls with the error AWS sends, then
forwards the retries: botocore's real retry path runs, nothing is faked on the client side.
"""

from __future__ import annotations

import http.client
import json
import re
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import boto3
import pytest

from spark_clustering import tracking
from spark_clustering.tracking import hooks
from spark_clustering.tracking.sagemaker_backend import SageMakerBackend

pytestmark = pytest.mark.aws

SAGEMAKER_NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,119}$")


class ErrorInjectingProxy:
    """Forwards every request to moto, except that queued errors answer the named operations."""

    def __init__(self, upstream: str) -> None:
        self.upstream = urlsplit(upstream)
        self.plan: dict[str, list[tuple[str, str]]] = {}
        self.seen: Counter[str] = Counter()
        self.injected: Counter[str] = Counter()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep pytest output clean
                pass

            def _handle(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                target = self.headers.get("X-Amz-Target", "")
                operation = target.rsplit(".", 1)[-1] if target else self.path.rsplit("/", 1)[-1]
                proxy.seen[operation] += 1
                queued = proxy.plan.get(operation)
                if queued:
                    code, message = queued.pop(0)
                    proxy.injected[operation] += 1
                    payload = json.dumps({"__type": code, "message": message}).encode()
                    self.send_response(400)
                    self.send_header("Content-Type", "application/x-amz-json-1.1")
                    self.send_header("x-amzn-ErrorType", code)
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                conn = http.client.HTTPConnection(
                    proxy.upstream.hostname, proxy.upstream.port, timeout=30
                )
                headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
                conn.request(self.command, self.path, body=body, headers=headers)
                response = conn.getresponse()
                data = response.read()
                self.send_response(response.status)
                for key, value in response.getheaders():
                    if key.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                conn.close()

            do_GET = do_POST = do_PUT = do_HEAD = do_DELETE = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> ErrorInjectingProxy:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture()
def sm(aws_endpoint):
    return boto3.client("sagemaker", endpoint_url=aws_endpoint)


@pytest.fixture()
def proxy(aws_endpoint):
    with ErrorInjectingProxy(aws_endpoint) as p:
        yield p


def _components(sm, trial_name):
    names = [
        s["TrialComponentName"]
        for s in sm.list_trial_components(TrialName=trial_name, MaxResults=100)[
            "TrialComponentSummaries"
        ]
    ]
    out = {}
    for name in names:
        desc = sm.describe_trial_component(TrialComponentName=name)
        label = desc["Parameters"]["spark-clustering:component"]["StringValue"]
        out[label] = desc
    return out


def test_entities_read_back_through_boto3(aws_endpoint, sm, tmp_path, monkeypatch):
    monkeypatch.setenv("SPARK_CLUSTERING_GIT_COMMIT", "0123456789abcdef0123456789abcdef01234567")
    s3 = boto3.client("s3", endpoint_url=aws_endpoint)
    s3.create_bucket(Bucket="tracking-artifacts")
    plot = tmp_path / "k_distance.png"
    plot.write_bytes(b"\x89PNG\r\n\x1a\n k-distance")
    with tracking.trial(
        "customer-segmentation",
        "umap3-dbscan-eps0.31",
        tags={"owner": "segmentation", "db_password": "hunter2"},
        backend="sagemaker",
        artifact_uri="s3://tracking-artifacts/runs",
    ) as t:
        with t.component("Preprocessing"):
            t.log_parameters({"features": "recency,frequency,monetary", "scaler": "standard"})
            t.log_input("transactions", "s3://bucket/raw/2026-11/", media_type="s3/uri")
        with t.component("Training"):
            t.log_parameters({"eps": 0.31, "minPoints": 20, "aws_secret_access_key": "x"})
            for step in range(3):
                t.log_metric("loss", 1.0 / (step + 1), step=step)
            t.log_metric("silhouette", 0.5)
            t.log_output("assignments", "s3://bucket/out/assignments/")
            t.log_artifact(plot)
        hooks.log_metrics({"davies_bouldin": 0.71})
    assert t.failures == [], t.summary_text()

    experiments = sm.search(Resource="Experiment")["Results"]
    assert [e["Experiment"]["ExperimentName"] for e in experiments] == ["customer-segmentation"]
    exp_tags = {x["Key"]: x["Value"] for x in experiments[0]["Experiment"]["Tags"]}
    assert exp_tags["spark-clustering:experiment"] == "customer-segmentation"

    trials = sm.list_trials(ExperimentName="customer-segmentation")["TrialSummaries"]
    assert len(trials) == 1
    trial_name = trials[0]["TrialName"]
    assert SAGEMAKER_NAME.match(trial_name) and trial_name.startswith("umap3-dbscan-eps0-31-")
    tags = {x["Key"]: x["Value"] for x in sm.list_tags(ResourceArn=trials[0]["TrialArn"])["Tags"]}
    assert tags["spark-clustering:trial"] == "umap3-dbscan-eps0.31"
    assert tags["spark-clustering:status"] == "Completed"
    assert tags["owner"] == "segmentation"
    assert tags["db_password"] == "__REDACTED__"
    assert tags["git.commit"] == "0123456789abcdef0123456789abcdef01234567"
    assert tags["spark_clustering.version"]

    comps = _components(sm, trial_name)
    assert set(comps) == {"Preprocessing", "Training", "Evaluation"}
    assert all(c["Status"]["PrimaryStatus"] == "Completed" for c in comps.values())
    assert all(SAGEMAKER_NAME.match(c["TrialComponentName"]) for c in comps.values())
    prep, train = comps["Preprocessing"], comps["Training"]
    assert prep["Parameters"]["features"] == {"StringValue": "recency,frequency,monetary"}
    assert prep["InputArtifacts"] == {
        "transactions": {"MediaType": "s3/uri", "Value": "s3://bucket/raw/2026-11/"}
    }
    assert train["Parameters"]["eps"] == {"NumberValue": 0.31}
    assert train["Parameters"]["minPoints"] == {"NumberValue": 20.0}
    assert train["Parameters"]["aws_secret_access_key"] == {"StringValue": "__REDACTED__"}
    metrics = {m["MetricName"]: m for m in train["Metrics"]}
    assert metrics["loss"]["Count"] == 3
    assert metrics["loss"]["Last"] == pytest.approx(1.0 / 3)
    assert metrics["silhouette"]["Last"] == 0.5
    assert {m["MetricName"] for m in comps["Evaluation"]["Metrics"]} == {"davies_bouldin"}
    outputs = train["OutputArtifacts"]
    assert outputs["assignments"]["Value"] == "s3://bucket/out/assignments/"
    uri = outputs["k_distance.png"]["Value"]
    assert outputs["k_distance.png"]["MediaType"] == "image/png"
    bucket, key = uri[len("s3://") :].split("/", 1)
    assert bucket == "tracking-artifacts" and key.startswith("runs/")
    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == plot.read_bytes()

    board = tracking.leaderboard("customer-segmentation", backend="sagemaker")
    assert board["trial"].tolist() == ["umap3-dbscan-eps0.31"]
    row = board.iloc[0]
    assert (row["eps"], row["minPoints"], row["silhouette"]) == (0.31, 20, 0.5)
    assert row["loss"] == pytest.approx(1.0 / 3) and row["davies_bouldin"] == 0.71
    assert row["status"] == "Completed"


@pytest.mark.slow
def test_sweep_of_120_trials_lands_whole(aws_endpoint, sm):
    logged = {}
    for i in range(120):
        name = f"kmeans-k{2 + i % 10}-seed{i}"
        silhouette = round(0.1 + (i * 37 % 100) / 200, 4)
        with (
            tracking.trial(
                "sweep-120", name, backend="sagemaker", max_trials_per_experiment=50
            ) as t,
            t.component("Training"),
        ):
            t.log_parameters({"k": 2 + i % 10, "seed": i})
            t.log_metric("silhouette", silhouette)
        assert t.failures == [], t.summary_text()
        logged[name] = silhouette

    backend = SageMakerBackend(tracking.resolve_config("sagemaker"))
    shards = backend.find_shards("sweep-120")
    assert [s[1] for s in shards] == ["sweep-120", "sweep-120-2", "sweep-120-3"]
    counts = [
        len(sm.list_trials(ExperimentName=name, MaxResults=100)["TrialSummaries"])
        for _, name in shards
    ]
    assert counts == [50, 50, 20]

    board = tracking.leaderboard("sweep-120", backend="sagemaker")
    assert len(board) == 120
    assert dict(zip(board["trial"], board["silhouette"], strict=True)) == logged
    assert board["silhouette"].is_monotonic_decreasing
    assert sorted(board["seed"]) == list(range(120))


def test_components_past_the_quota_continue_in_part_trials(aws_endpoint, sm):
    with tracking.trial(
        "many-steps", "pipeline", backend="sagemaker", max_components_per_trial=3
    ) as t:
        for i in range(7):
            with t.component(f"Step{i}"):
                t.log_parameter(f"p{i}", i)
                t.log_metric(f"m{i}", i / 10)
    assert t.failures == [], t.summary_text()
    trials = sm.list_trials(ExperimentName="many-steps")["TrialSummaries"]
    assert len(trials) == 3
    sizes = sorted(
        len(sm.list_trial_components(TrialName=x["TrialName"])["TrialComponentSummaries"])
        for x in trials
    )
    assert sizes == [1, 3, 3]
    run_ids = {
        {y["Key"]: y["Value"] for y in sm.list_tags(ResourceArn=x["TrialArn"])["Tags"]}[
            "spark-clustering:run-id"
        ]
        for x in trials
    }
    assert len(run_ids) == 1
    board = tracking.leaderboard("many-steps", backend="sagemaker", sort="m6")
    assert len(board) == 1
    assert [board.iloc[0][f"p{i}"] for i in range(7)] == list(range(7))
    assert board.iloc[0]["m6"] == pytest.approx(0.6)


def test_throttled_calls_are_retried(proxy, sm):
    proxy.plan = {
        "CreateTrialComponent": [("ThrottlingException", "Rate exceeded")],
        "BatchPutMetrics": [("ThrottlingException", "Rate exceeded")] * 2,
        "UpdateTrialComponent": [("ThrottlingException", "Rate exceeded")],
    }
    with (
        tracking.trial(
            "throttled", "retry", backend="sagemaker", endpoint_url=proxy.url, max_attempts=5
        ) as t,
        t.component("Training"),
    ):
        t.log_parameter("eps", 0.2)
        for step in range(12):  # two BatchPutMetrics calls of at most 10 values
            t.log_metric("loss", float(step), step=step)
    assert t.failures == [], t.summary_text()
    assert proxy.injected == Counter(
        {"CreateTrialComponent": 1, "BatchPutMetrics": 2, "UpdateTrialComponent": 1}
    )
    assert proxy.seen["BatchPutMetrics"] == 2 + 2
    assert proxy.seen["CreateTrialComponent"] == 1 + 1
    trial_name = sm.list_trials(ExperimentName="throttled")["TrialSummaries"][0]["TrialName"]
    train = _components(sm, trial_name)["Training"]
    assert train["Parameters"]["eps"] == {"NumberValue": 0.2}
    loss = next(m for m in train["Metrics"] if m["MetricName"] == "loss")
    assert (loss["Count"], loss["Last"]) == (12, 11.0)


def test_throttling_past_max_attempts_is_counted_then_strict_raises(proxy, sm):
    proxy.plan = {"BatchPutMetrics": [("ThrottlingException", "Rate exceeded")] * 2}
    with (
        tracking.trial(
            "throttled", "gives-up", backend="sagemaker", endpoint_url=proxy.url, max_attempts=2
        ) as t,
        t.component("Training"),
    ):
        t.log_parameter("eps", 0.2)
        t.log_metric("silhouette", 0.4)
    assert [f.what for f in t.failures] == ["end component Training"]
    assert "ThrottlingException" in t.failures[0].error
    assert t.status == "completed"
    trial_name = sm.list_trials(ExperimentName="throttled")["TrialSummaries"][0]["TrialName"]
    train = _components(sm, trial_name)["Training"]
    assert train["Parameters"]["eps"] == {"NumberValue": 0.2}  # what could be written, was
    assert train["Metrics"] == []

    proxy.plan = {"BatchPutMetrics": [("ThrottlingException", "Rate exceeded")] * 2}
    with (
        pytest.raises(tracking.TrackingError, match="ThrottlingException"),
        tracking.trial(
            "throttled",
            "strict",
            backend="sagemaker",
            endpoint_url=proxy.url,
            max_attempts=2,
            strict=True,
        ) as t2,
        t2.component("Training"),
    ):
        t2.log_metric("silhouette", 0.4)


def test_trial_quota_error_moves_to_the_next_experiment(proxy, sm):
    with tracking.trial("quota", "first", backend="sagemaker", endpoint_url=proxy.url):
        pass
    message = (
        "The account-level service limit 'Total number of trials allowed in a single "
        "experiment' is 300 Trials"
    )
    proxy.plan = {"CreateTrial": [("ResourceLimitExceeded", message)]}
    with tracking.trial("quota", "second", backend="sagemaker", endpoint_url=proxy.url) as t:
        t.log_metric("silhouette", 0.3)
    assert t.failures == [], t.summary_text()
    assert proxy.injected["CreateTrial"] == 1
    assert [
        len(sm.list_trials(ExperimentName=n)["TrialSummaries"]) for n in ("quota", "quota-2")
    ] == [
        1,
        1,
    ]
    board = tracking.leaderboard("quota", backend="sagemaker", sort="trial", ascending=True)
    assert board["trial"].tolist() == ["first", "second"]


def test_artifact_needs_an_s3_location(aws_endpoint, sm, tmp_path):
    plot = tmp_path / "plot.png"
    plot.write_bytes(b"png")
    with tracking.trial("no-bucket", "t", backend="sagemaker") as t, t.component("Training"):
        t.log_metric("silhouette", 0.2)
        t.log_artifact(plot)
    assert len(t.failures) == 1 and "needs artifact_uri" in t.failures[0].error
    trial_name = sm.list_trials(ExperimentName="no-bucket")["TrialSummaries"][0]["TrialName"]
    assert _components(sm, trial_name)["Training"]["Metrics"][0]["Last"] == 0.2


def test_missing_region_is_a_clear_error(aws_endpoint, monkeypatch, tmp_path):
    for var in ("AWS_REGION", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    with tracking.trial("no-region", "t", backend="sagemaker") as t:
        hooks.log_metrics({"silhouette": 0.1})
    assert t.failures[0].what == "open backend"
    assert "region=None is not valid" in t.failures[0].error
    with pytest.raises(ValueError, match="region=None is not valid"):
        tracking.leaderboard("no-region", backend="sagemaker")


def test_experiment_created_meanwhile_is_adopted(proxy, sm):
    # a parallel job of the sweep created the shard after our Search: AWS answers CreateExperiment
    # with "already exists" (moto would overwrite, so the proxy gives AWS's answer)
    sm.create_experiment(ExperimentName="parallel")
    message = "Experiment 'parallel' already exists."
    proxy.plan = {"CreateExperiment": [("ValidationException", message)]}
    with tracking.trial("parallel", "joins", backend="sagemaker", endpoint_url=proxy.url) as t:
        t.log_metric("silhouette", 0.3)
    assert t.failures == [], t.summary_text()
    assert proxy.injected["CreateExperiment"] == 1
    arn = sm.describe_experiment(ExperimentName="parallel")["ExperimentArn"]
    tags = {x["Key"]: x["Value"] for x in sm.list_tags(ResourceArn=arn)["Tags"]}
    assert tags["spark-clustering:experiment"] == "parallel"
    assert len(sm.list_trials(ExperimentName="parallel")["TrialSummaries"]) == 1


def test_datasets_metrics_once_and_cross_reference(aws_endpoint, sm, monkeypatch):
    import getpass

    monkeypatch.setattr("sys.argv", ["/opt/jobs/segment_customers.py"])
    dataset = tracking.Dataset("0f1e2d3c4b5a6978", {"customer_id": "bigint"}, {"rows": 3})
    with tracking.trial("lineage", "kmeans-k4", {"run_id": "job-9"}, backend="sagemaker") as t:
        t.log_dataset("input", "s3://bucket/prepared/features", dataset)
        with t.own_metrics():
            hooks.log_metrics({"silhouette": 0.6})  # what evaluate() does inside
        t.log_metric("silhouette", 0.6)
        ref = t.reference()
    assert t.failures == [], t.summary_text()

    (summary,) = sm.list_trials(ExperimentName="lineage")["TrialSummaries"]
    assert ref is not None and ref["backend"] == "sagemaker"
    assert (ref["trial_name"], ref["trial_arn"]) == (summary["TrialName"], summary["TrialArn"])
    assert ref["experiment_name"] == "lineage"
    # the job's run id and the run context as tags of the trial
    tags = {x["Key"]: x["Value"] for x in sm.list_tags(ResourceArn=summary["TrialArn"])["Tags"]}
    assert tags["run_id"] == "job-9" and tags["spark-clustering:run-id"] == ref["run_id"]
    assert tags["user"] == getpass.getuser() and tags["source.name"] == "segment_customers.py"
    # one component: the trial's own, holding the input, its digest and the metric once
    comps = _components(sm, summary["TrialName"])
    assert set(comps) == {"Trial"}
    trial = comps["Trial"]
    assert trial["InputArtifacts"] == {"input": {"Value": "s3://bucket/prepared/features"}}
    assert trial["Parameters"]["input.input.digest"] == {"StringValue": "0f1e2d3c4b5a6978"}
    (metric,) = trial["Metrics"]
    assert (metric["MetricName"], metric["Count"], metric["Last"]) == ("silhouette", 1, 0.6)
