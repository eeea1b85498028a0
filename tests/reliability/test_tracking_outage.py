"""Tracking never stops the clustering: ``segment`` and ``sweep`` with an MLflow server that
refuses connections, one that accepts them and never answers (a socket server on 127.0.0.1 in
this test) and a read-only SQLite store. Each job exits 0 with its outputs written, reports the
failure once with its root cause, says in its summary what was and was not recorded, and waits
seconds, not minutes: the short HTTP timeouts and retries are asserted as applied (no timing
assertions). The sweep keeps its own record of completed trials, so a rerun against a store that
is back skips them.

A read-only store as root: ``chmod`` does not stop root from writing, so the store is opened
through SQLite's URI form with ``mode=ro`` (``sqlite:///file:<path>?mode=ro&uri=true``), which
MLflow accepts and which fails every write with SQLite's own "attempt to write a readonly
database", wrapped by SQLAlchemy in its autoflush note, exactly as a read-only file does.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from segment_data import blobs, write_config, write_features
from spark_clustering.jobs import segment, sweep
from spark_clustering.jobs.publish import current_run
from spark_clustering.tracking.mlflow_backend import HTTP_DEFAULTS

pytestmark = [pytest.mark.spark, pytest.mark.slow, pytest.mark.timeout(600)]

RUN_DATE = "2026-11-20"
EXPERIMENT = "outage"
#: what each kind of outage must be reported as (the root cause, not a wrapper's text)
CAUSES = {
    "refused": "Connection refused",
    "silent": "timed out",
    "readonly": "attempt to write a readonly database",
}


@pytest.fixture(scope="module")
def features(spark, tmp_path_factory) -> str:
    root = tmp_path_factory.mktemp("outage")
    ids, x, _ = blobs(40, seed=11)
    return write_features(spark, root / "features", ids, x)


@pytest.fixture
def http_env(monkeypatch) -> None:
    """MLflow's HTTP variables unset, as for a user who never heard of them (restored after)."""
    for name in HTTP_DEFAULTS:
        monkeypatch.delenv(name, raising=False)


def _refused_uri() -> str:
    with socket.socket() as s:  # bound then closed: nothing listens on the port
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@pytest.fixture
def silent_uri() -> Iterator[str]:
    """An HTTP server on 127.0.0.1 that accepts connections and never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    server.settimeout(0.2)
    stop = threading.Event()
    held: list[socket.socket] = []

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            held.append(conn)  # read nothing, answer nothing

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}"
    stop.set()
    thread.join(timeout=5)
    for conn in held:
        conn.close()
    server.close()


def _readonly_uri(root: Path) -> str:
    """A SQLite MLflow store created (tables and all) then opened read-only."""
    from mlflow import MlflowClient

    root.mkdir(parents=True, exist_ok=True)
    db = root / "readonly.db"
    MlflowClient(tracking_uri=f"sqlite:///{db}").search_experiments()
    return f"sqlite:///file:{db}?mode=ro&uri=true"


@pytest.fixture(params=["refused", "silent", "readonly"])
def outage(request, http_env, tmp_path, monkeypatch) -> tuple[str, str]:
    """``(kind, tracking URI)`` of a store that fails."""
    kind = request.param
    if kind == "refused":
        return kind, _refused_uri()
    if kind == "silent":
        # a user who set one variable keeps it; ours fill in the others
        monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
        return kind, request.getfixturevalue("silent_uri")
    # MLflow creates the parent folder of a ``sqlite:///`` path, and reads this URI form's path
    # (``file:/...``) as relative: run from tmp_path so that folder lands there, not in the checkout
    monkeypatch.chdir(tmp_path)
    return kind, _readonly_uri(tmp_path / "store")


def _tracking(uri: str, root: Path) -> str:
    return (
        f'backend = "mlflow"\nexperiment = "{EXPERIMENT}"\n'
        f'tracking_uri = "{uri}"\nartifact_location = "{root / "artifacts"}"'
    )


def _assert_bounded_http(kind: str) -> None:
    """The job could not wait minutes: MLflow's HTTP settings were ours or the user's."""
    expected = dict(HTTP_DEFAULTS)
    if kind == "silent":
        expected["MLFLOW_HTTP_REQUEST_TIMEOUT"] = "2"
    for name, value in expected.items():
        assert os.environ.get(name) == value, name
    from mlflow.environment_variables import (
        MLFLOW_HTTP_REQUEST_MAX_RETRIES,
        MLFLOW_HTTP_REQUEST_TIMEOUT,
    )

    assert MLFLOW_HTTP_REQUEST_MAX_RETRIES.get() == 2
    assert MLFLOW_HTTP_REQUEST_TIMEOUT.get() <= 10


def _switched_off_warnings(caplog) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno >= logging.WARNING and "switched off" in r.getMessage()
    ]


def _assert_failed_summary(kind: str, tracking: dict) -> str:
    assert tracking["status"] == "failed", tracking
    (cause,) = tracking["causes"].values()
    assert CAUSES[kind] in cause, cause
    assert "autoflush" not in cause and "[SQL:" not in cause
    assert tracking["recorded_calls"] == 0
    assert tracking["not_recorded"] == tracking["calls"] > 0
    assert tracking["text"].startswith("tracking: failed (")
    assert f"0 of {tracking['calls']} calls recorded" in tracking["text"]
    return cause


# --------------------------------------------------------------------------------- segment


def test_segment_runs_through_a_tracking_outage(spark, features, outage, tmp_path, caplog, capsys):
    kind, uri = outage
    out = tmp_path / "out"
    config = write_config(tmp_path / "segment.toml", features, str(out),
                          tracking=_tracking(uri, tmp_path))  # fmt: skip
    with caplog.at_level(logging.INFO):
        rc = segment.main(["--config", config, "--run-date", RUN_DATE, "--gpu", "off"])
    assert rc == 0
    run = current_run(spark, str(out), RUN_DATE)
    assert spark.read.parquet(run.assignments).count() == 120
    assert Path(run.model, "pipeline.json").is_file()
    summary = json.loads(Path(run.summary).read_text())
    cause = _assert_failed_summary(kind, summary["tracking"])
    printed = capsys.readouterr().out
    assert summary["tracking"]["text"] in printed and "clusters" in printed
    warnings = _switched_off_warnings(caplog)
    assert len(warnings) == 1 and cause in warnings[0]  # reported once, with the cause
    if kind != "readonly":
        _assert_bounded_http(kind)


# --------------------------------------------------------------------------------- sweep

SEARCH = 'clusterers = [{ algorithm = "kmeans", params = { k = [2, 3], seed = 1 } }]'


def _sweep_config(path: Path, features: str, out: Path, tracking: str) -> str:
    path.write_text(
        f'run_date = "{RUN_DATE}"\n'
        f'[input]\npath = "{features}"\n'
        "[evaluation]\nsample_size = 200\nrepeats = 1\n"
        f"[tracking]\n{tracking}\n"
        f'[output]\npath = "{out}"\nscatter_sample = 100\n'
        f"[search]\n{SEARCH}\n"
    )
    return str(path)


def _spy_trials(monkeypatch) -> list:
    calls: list = []
    original = sweep.run_trial

    def spy(*args, **kwargs):
        calls.append(args[1].label())
        return original(*args, **kwargs)

    monkeypatch.setattr(sweep, "run_trial", spy)
    return calls


def test_sweep_runs_through_a_tracking_outage_and_resumes(
    spark, features, outage, tmp_path, caplog, capsys, monkeypatch
):
    kind, uri = outage
    out = tmp_path / "out"
    config = _sweep_config(tmp_path / "sweep.toml", features, out, _tracking(uri, tmp_path))
    trials = _spy_trials(monkeypatch)
    with caplog.at_level(logging.INFO):
        rc = sweep.main(["--config", config, "--gpu", "off"])
    assert rc == 0
    assert sorted(trials) == ["none-kmeans-k2", "none-kmeans-k3"]  # every trial ran
    printed = capsys.readouterr().out
    assert "2 trials run, 0 skipped, 0 failed" in printed
    # the leaderboard comes from the sweep's own outcomes: both trials are on it
    assert "none-kmeans-k2" in printed and "none-kmeans-k3" in printed
    warnings = _switched_off_warnings(caplog)
    assert len(warnings) == 1, warnings  # once for the whole sweep, not once per trial
    record = json.loads((out / "sweep_trials" / f"{EXPERIMENT}.json").read_text())
    assert len(record["trials"]) == 2
    assert all("silhouette" in t["metrics"] for t in record["trials"].values())
    summary = json.loads(Path(current_run(None, str(out), RUN_DATE).summary).read_text())
    assert summary["sweep"]["config_hash"] in record["trials"]
    cause = _assert_failed_summary(kind, summary["tracking"])
    assert summary["tracking"]["trials"] == 2
    assert cause in warnings[0] and summary["tracking"]["text"] in printed
    if kind != "readonly":
        _assert_bounded_http(kind)

    # the store is back (a fresh one): the rerun skips what the sweep's record lists
    caplog.clear()
    fresh = f"sqlite:///{tmp_path / 'back' / 'mlflow.db'}"
    (tmp_path / "back").mkdir()
    config = _sweep_config(tmp_path / "sweep.toml", features, out, _tracking(fresh, tmp_path))
    trials.clear()
    assert sweep.main(["--config", config, "--gpu", "off"]) == 0
    assert trials == []
    printed = capsys.readouterr().out
    assert "0 trials run, 2 skipped, 0 failed" in printed
    assert "none-kmeans-k2" in printed and "none-kmeans-k3" in printed
    assert "tracking: failed" not in printed and not _switched_off_warnings(caplog)
    rerun = json.loads(Path(current_run(None, str(out), RUN_DATE).summary).read_text())
    assert rerun["sweep"]["config_hash"] == summary["sweep"]["config_hash"]
