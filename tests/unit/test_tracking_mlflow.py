"""MLflow backend and leaderboard against a real local MLflow store in a temporary directory.

Everything logged is read back through MLflow's own client.
"""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pandas as pd
import pytest

import spark_clustering
from spark_clustering import cli, tracking
from spark_clustering.tracking import hooks
from spark_clustering.tracking.board import render


def _runs(client, experiment):
    exp = client.get_experiment_by_name(experiment)
    assert exp is not None
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    return parents, children


def test_trial_reads_back_through_mlflow(store, client, tmp_path, monkeypatch):
    monkeypatch.setenv("SPARK_CLUSTERING_GIT_COMMIT", "0123456789abcdef0123456789abcdef01234567")
    plot = tmp_path / "k_distance.png"
    plot.write_bytes(b"\x89PNG\r\n\x1a\n fake plot bytes")
    with tracking.trial(
        "customer-segmentation",
        "umap3-dbscan-eps0.31",
        tags={"owner": "segmentation-team", "db_password": "hunter2"},
        **store,
    ) as t:
        t.log_parameter("seed", 42)
        with t.component("Preprocessing"):
            t.log_parameters({"features": "recency,frequency,monetary", "api_token": "abc"})
            t.log_input("transactions", "s3://bucket/raw/2026-11/", media_type="s3/uri")
        with t.component("Training"):
            t.log_parameters({"eps": 0.31, "minPoints": 20})
            for step in range(3):
                t.log_metric("loss", 1.0 / (step + 1), step=step)
            t.log_metric("silhouette", 0.5)
            t.log_output("assignments", "s3://user:secret@bucket/out/")
            t.log_artifact(plot)
            original = plot.read_bytes()
            plot.write_bytes(b"overwritten by the next plot")  # logged files are copied
        hooks.log_metrics({"davies_bouldin": 0.71})
    assert t.failures == [] and t.status == "completed"

    parents, children = _runs(client, "customer-segmentation")
    assert len(parents) == 1
    parent = parents[0]
    assert parent.info.run_name == "umap3-dbscan-eps0.31"
    assert parent.info.status == "FINISHED"
    assert parent.data.params == {"seed": "42"}
    tags = parent.data.tags
    assert tags["owner"] == "segmentation-team"
    assert tags["db_password"] == "__REDACTED__"
    assert tags["git.commit"] == "0123456789abcdef0123456789abcdef01234567"
    assert tags["mlflow.source.git.commit"] == tags["git.commit"]
    assert tags["spark_clustering.version"] == spark_clustering.__version__

    by_name = {r.info.run_name: r for r in children}
    assert set(by_name) == {"Preprocessing", "Training", "Evaluation"}
    assert all(r.data.tags["mlflow.parentRunId"] == parent.info.run_id for r in children)
    assert all(r.info.status == "FINISHED" for r in children)
    prep, train, evaluation = by_name["Preprocessing"], by_name["Training"], by_name["Evaluation"]
    assert prep.data.params == {
        "features": "recency,frequency,monetary",
        "api_token": "__REDACTED__",
    }
    assert prep.data.tags["input.transactions"] == "s3://bucket/raw/2026-11/"
    assert prep.data.tags["input.transactions.media_type"] == "s3/uri"
    assert train.data.params == {"eps": "0.31", "minPoints": "20"}
    assert train.data.tags["output.assignments"] == "s3://__REDACTED__@bucket/out/"
    history = client.get_metric_history(train.info.run_id, "loss")
    assert [(m.step, m.value) for m in history] == [(0, 1.0), (1, 0.5), (2, 1.0 / 3)]
    assert train.data.metrics["silhouette"] == 0.5
    assert evaluation.data.metrics == {"davies_bouldin": 0.71}
    assert [a.path for a in client.list_artifacts(train.info.run_id)] == ["k_distance.png"]
    local = client.download_artifacts(train.info.run_id, "k_distance.png", str(tmp_path / "dl"))
    assert Path(local).read_bytes() == original


def test_failed_block_marks_runs_failed(store, client):
    with (
        pytest.raises(RuntimeError, match="job broke"),
        tracking.trial("failures", "broken-job", **store) as t,
        t.component("Training"),
    ):
        t.log_metric("silhouette", 0.1)
        raise RuntimeError("job broke")
    parents, children = _runs(client, "failures")
    assert parents[0].info.status == "FAILED"
    assert children[0].info.status == "FAILED"
    assert children[0].data.metrics == {"silhouette": 0.1}
    assert t.status == "failed"


def test_metric_buffer_flushes_in_batches(store, client):
    with (
        tracking.trial("buffered", "many-steps", metric_buffer=5, **store) as t,
        t.component("Training"),
    ):
        for step in range(12):
            t.log_metric("loss", float(step), step=step)
    _, children = _runs(client, "buffered")
    history = client.get_metric_history(children[0].info.run_id, "loss")
    assert sorted(m.step for m in history) == list(range(12))
    assert t.recorded >= 4  # start, component, three buffer flushes, end...


def test_artifact_failure_is_isolated_and_strict_raises(store, client, tmp_path):
    blocker = tmp_path / "artifact-root-is-a-file"
    blocker.write_text("x")
    plot = tmp_path / "plot.png"
    plot.write_bytes(b"png")
    broken = {**store, "artifact_location": str(blocker / "artifacts")}
    with tracking.trial("artifact-failure", "lenient", **broken) as t, t.component("Training"):
        t.log_parameter("eps", 0.2)
        t.log_metric("silhouette", 0.3)
        t.log_artifact(plot)
    assert [f.what for f in t.failures] == ["end component Training"]
    _, children = _runs(client, "artifact-failure")
    assert children[0].data.params == {"eps": "0.2"}
    assert children[0].data.metrics == {"silhouette": 0.3}

    with (
        pytest.raises(tracking.TrackingError, match="end component Training failed"),
        tracking.trial("artifact-failure", "strict", strict=True, **broken) as t2,
        t2.component("Training"),
    ):
        t2.log_artifact(plot)
    assert hooks.active_trial() is None


# ------------------------------------------------------------------------------- leaderboard


@pytest.fixture(scope="module")
def sweep(store):
    """Six trials of a small DBSCAN sweep, logged the way a job would."""
    rows = []
    for i, eps in enumerate([0.1, 0.2, 0.3, 0.4, 0.5, 0.6]):
        silhouette = round(0.2 + 0.1 * i - 0.04 * max(0, i - 3) ** 2, 4)
        davies = round(1.5 - 0.15 * i, 4)
        with tracking.trial("sweep", f"dbscan-eps{eps}", **store) as t:
            with t.component("Preprocessing"):
                t.log_parameters({"scaler": "standard" if i % 2 else "robust", "seed": 1})
            with t.component("Training"):
                t.log_parameters({"eps": eps, "minPoints": 10 + i, "seed": 2})
                for step in range(2):
                    t.log_metric("silhouette", silhouette - 0.1 * (1 - step), step=step)
            with t.component("Evaluation"):
                t.log_metric("davies_bouldin", davies)
        rows.append({"trial": f"dbscan-eps{eps}", "silhouette": silhouette, "db": davies})
    return pd.DataFrame(rows)


def test_leaderboard_sorts_filters_and_takes_top(store, sweep):
    board = tracking.leaderboard("sweep", **store)
    expected = sweep.sort_values("silhouette", ascending=False, kind="stable")
    assert list(board["trial"]) == list(expected["trial"])
    assert board["silhouette"].tolist() == pytest.approx(expected["silhouette"].tolist())
    assert board.attrs["sort"] == "silhouette" and board.attrs["ascending"] is False
    assert set(board.attrs["metrics"]) == {"silhouette", "davies_bouldin"}
    # seed differs between components: one column per component, not a silent overwrite
    assert {"Preprocessing/seed", "Training/seed"} <= set(board.columns)
    assert "seed" not in board.columns
    assert board["eps"].dtype.kind == "f" and str(board["minPoints"].dtype) == "Int64"
    assert set(board["status"]) == {"Completed"}

    top = tracking.leaderboard("sweep", top=2, filters=["eps<0.5", "scaler=standard"], **store)
    kept = sweep[sweep["trial"].isin(["dbscan-eps0.2", "dbscan-eps0.4"])]
    assert list(top["trial"]) == list(kept.sort_values("silhouette", ascending=False)["trial"])

    by_db = tracking.leaderboard("sweep", sort="davies_bouldin", **store)
    assert by_db.attrs["ascending"] is True
    assert by_db["davies_bouldin"].is_monotonic_increasing
    by_eps = tracking.leaderboard("sweep", sort="eps", ascending=True, top=1, **store)
    assert by_eps["trial"].tolist() == ["dbscan-eps0.1"]


def test_leaderboard_bad_arguments(store, sweep):
    with pytest.raises(ValueError, match=r"^filter='eps<<' is not valid"):
        tracking.leaderboard("sweep", filters=["eps<<"], **store)
    with pytest.raises(ValueError, match=r"^top=0 is not valid"):
        tracking.leaderboard("sweep", top=0, **store)
    with pytest.raises(ValueError, match=r"^sort='nope' names no single column; accepted: "):
        tracking.leaderboard("sweep", sort="nope", **store)
    with pytest.raises(ValueError, match=r"^sort='seed' names no single column"):
        tracking.leaderboard("sweep", sort="seed", **store)
    with pytest.raises(ValueError, match=r"backend='none' records nothing to read"):
        tracking.leaderboard("sweep")  # the tests' environment says none
    assert tracking.leaderboard("no-such-experiment", **store).empty


def test_leaderboard_formats(store, sweep):
    board = tracking.leaderboard("sweep", **store)
    csv = pd.read_csv(io.StringIO(render(board, "csv")))
    assert csv["trial"].tolist() == board["trial"].tolist()
    assert csv["silhouette"].tolist() == pytest.approx(board["silhouette"].tolist())
    records = json.loads(render(board, "json"))
    assert [r["trial"] for r in records] == board["trial"].tolist()
    assert records[0]["eps"] == board["eps"].iloc[0]
    table = render(board, "table")
    assert table.splitlines()[0].split()[:3] == ["trial", "status", "davies_bouldin"]
    assert all(name in table for name in board["trial"])
    page = render(board, "html", chart_params=["eps", "minPoints"])
    assert page.startswith("<!DOCTYPE html>")
    assert len(re.findall(r'src="data:image/png;base64,[A-Za-z0-9+/=]{200,}"', page)) == 2
    assert not re.search(r'(src|href)="(https?:)?//', page), "the report must be self-contained"
    assert page.count("<tr") == len(board) + 1
    assert "silhouette against eps, minPoints" in page
    with pytest.raises(ValueError, match=r"^format='xml' is not valid"):
        render(board, "xml")


def test_leaderboard_cli(store, sweep, tmp_path, capsys):
    common = ["--experiment", "sweep", "--backend", "mlflow", "--tracking-uri"]
    common.append(store["tracking_uri"])
    assert cli.main(["leaderboard", *common, "--format", "csv", "--top", "2"]) == 0
    out = pd.read_csv(io.StringIO(capsys.readouterr().out))
    assert out["trial"].tolist() == sweep.nlargest(2, "silhouette")["trial"].tolist()

    target = tmp_path / "board.html"
    args = ["leaderboard", *common, "--format", "html", "--output", str(target)]
    assert cli.main([*args, "--filter", "eps>=0.3", "--sort", "davies_bouldin"]) == 0
    page = target.read_text()
    assert "sorted by davies_bouldin (ascending)" in page and "4 trials" in page

    assert cli.main(["leaderboard", *common, "--format", "json", "--descending"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 6

    assert cli.main(["leaderboard", *common, "--filter", "eps"]) == 2
    assert "filter='eps' is not valid" in capsys.readouterr().err


def test_leaderboard_with_missing_values(store):
    for name, params, metrics in [
        ("full", {"k": 3, "init": "k-means||"}, {"silhouette": 0.4}),
        ("no-k", {"init": "random"}, {"silhouette": 0.6}),
        ("no-metric", {"k": 5}, {}),
    ]:
        with tracking.trial("gaps", name, **store) as t, t.component("Training"):
            t.log_parameters(params)
            t.log_metrics(metrics)
    board = tracking.leaderboard("gaps", **store)
    assert board["trial"].tolist() == ["no-k", "full", "no-metric"]  # missing values go last
    assert board["k"].isna().tolist() == [True, False, False]
    page = render(board, "html", chart_params=["k", "init"])
    assert page.count("data:image/png;base64,") == 1
    assert json.loads(render(board, "json"))[0]["k"] is None
    only = tracking.leaderboard("gaps", filters=["k!=3"], sort=None, **store)
    assert only["trial"].tolist() == ["no-k", "no-metric"]
