"""Tracking core: the trial API, hooks, failure isolation and strict mode.

Backend failures here are real ones: an MLflow SQLite store whose directory cannot be created,
an artifact root that is a file.
"""

from __future__ import annotations

import logging

import pytest

from spark_clustering import base, tracking
from spark_clustering.tracking import hooks


@pytest.fixture()
def broken_uri(tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where MLflow wants a directory")
    return f"sqlite:///{blocker}/mlflow.db"


def test_hooks_are_noops_without_a_trial(tmp_path):
    assert hooks.active_trial() is None
    hooks.log_fit("DBSCAN", {"eps": 0.3})
    hooks.log_metrics({"silhouette": 0.5})
    hooks.log_input("x", "s3://b/x")
    hooks.log_output("y", "s3://b/y")
    hooks.log_artifact(tmp_path / "missing.png")
    hooks.set_tags({"a": "b"})
    base.log_metrics({"silhouette": 0.5})
    assert hooks.active_trial() is None


def test_trial_is_active_inside_the_block_only():
    with tracking.trial("exp", "outer", backend="none") as outer:
        assert hooks.active_trial() is outer
        with tracking.trial("exp", "inner", backend="none") as inner:
            assert tracking.active_trial() is inner
        assert hooks.active_trial() is outer
    assert hooks.active_trial() is None
    assert outer.status == "completed"


def test_start_trial_without_with_block():
    t = tracking.start_trial("exp", "notebook", backend="none")
    try:
        assert hooks.active_trial() is t
    finally:
        t.end()
    assert hooks.active_trial() is None
    t.end()  # a second end is a no-op


def test_user_exception_marks_trial_failed_and_propagates():
    with (
        pytest.raises(ZeroDivisionError),
        tracking.trial("exp", "boom", backend="none") as t,
        t.component("Training"),
    ):
        _ = 1 / 0
    assert t.status == "failed"
    assert hooks.active_trial() is None


def test_bad_input_raises_before_any_backend_call(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match=r"^experiment='bad\|name'"):
        tracking.trial("bad|name", "t", backend="mlflow").__enter__()
    with pytest.raises(ValueError, match=r"^backend='wandb' is not valid"):
        tracking.Trial("exp", "t", backend="wandb")
    with pytest.raises(ValueError, match=r"^tags="):
        tracking.Trial("exp", "t", tags={"bad key!": 1}, backend="mlflow")
    with pytest.raises(ValueError, match=r"^tags: 36 user tags on one trial is too many"):
        tracking.Trial("exp", "t", tags={f"k{i}": i for i in range(36)}, backend="none")
    assert not (tmp_path / "mlflow.db").exists()
    with tracking.trial("exp", "t", backend="none") as t:
        with pytest.raises(ValueError, match=r"^metric="):
            t.log_metric("bad/../name", 1.0)
        with pytest.raises(ValueError, match=r"^step=-1"):
            t.log_metric("loss", 1.0, step=-1)
        with pytest.raises(ValueError, match=r"^media_type="):
            t.log_input("raw", "s3://b/raw", media_type="uri")
        with pytest.raises(ValueError, match=r"^path="):
            t.log_artifact(tmp_path / "absent.png")
        with pytest.raises(ValueError, match=r"^component="):
            t.open_component("Train#1")


def test_parameter_keeps_one_value_per_component():
    with tracking.trial("exp", "params", backend="none") as t:
        with t.component("Training"):
            t.log_parameters({"eps": 0.3})
            t.log_parameters({"eps": 0.3})  # same value again is fine
            with pytest.raises(tracking.ParameterConflict, match="'eps' was already logged"):
                t.log_parameter("eps", 0.4)
        with t.component("Training"):
            t.log_parameter("eps", 0.4)  # a new component may hold another value


def test_hooks_open_implicit_components_and_refit_moves_on():
    with tracking.trial("exp", "hooks", backend="none") as t:
        hooks.log_fit("KMeans", {"k": 3})
        first = t.current_component()
        assert first is not None and first.name == "Training" and not first.explicit
        hooks.log_fit("UMAP", {"nNeighbors": 15})
        assert t.current_component() is first
        assert first.logged_params == {"KMeans.k": 3, "UMAP.nNeighbors": 15}
        hooks.log_fit("KMeans", {"k": 4})  # refit with another k: a new Training component
        second = t.current_component()
        assert second is not first and second.logged_params == {"KMeans.k": 4}
        hooks.log_metrics({"silhouette": 0.4})
        assert t.current_component().name == "Evaluation"
        with t.component("Preprocessing") as prep:
            hooks.log_fit("StandardScaler", {"withMean": True})
            assert prep.logged_params == {"StandardScaler.withMean": "true"}
    assert t.failures == []


def test_base_seam_logs_estimator_params():
    from pyspark.ml.param.shared import HasMaxIter, HasSeed

    class Toy(HasSeed, HasMaxIter):
        pass

    toy = Toy()
    toy._set(maxIter=7)
    with tracking.trial("exp", "seam", backend="none") as t:
        base.log_fit(toy)
        base.log_metrics({"silhouette": 0.25, "n_clusters": 4})
    training = next(c for c in t._components if c.name == "Training")
    assert training.logged_params["Toy.maxIter"] == 7
    assert "Toy.seed" in training.logged_params
    assert t.failures == []


def test_hook_problems_are_counted_not_raised(caplog):
    with tracking.trial("exp", "counted", backend="none") as t, caplog.at_level(logging.WARNING):
        hooks.log_metrics({"silhouette": 0.5, "sizes": [3, 4], "bad": float("nan")})
        hooks.log_input("bad name!", "s3://b/x")
    whats = [f.what for f in t.failures]
    assert whats == ["log_metrics", "log_input bad name!"]
    assert "sizes" in t.failures[0].error and "bad" in t.failures[0].error
    assert t.summary()["not_recorded"] == 2
    assert "2 not recorded" in t.summary_text()


def test_strict_trial_makes_hooks_raise():
    with (
        tracking.trial("exp", "strict", backend="none", strict=True),
        pytest.raises(tracking.TrackingError, match="log_metrics failed"),
    ):
        hooks.log_metrics({"sizes": [1, 2]})


def test_backend_failure_never_kills_the_job(broken_uri, caplog):
    with (
        caplog.at_level(logging.WARNING),
        tracking.trial("exp", "isolated", backend="mlflow", tracking_uri=broken_uri) as t,
    ):
        with t.component("Training"):
            t.log_parameters({"eps": 0.3})
            t.log_metric("silhouette", 0.5)
        hooks.log_fit("DBSCAN", {"eps": 0.3})
        hooks.log_metrics({"silhouette": 0.5})
        result = "job finished"
    assert result == "job finished"
    assert t.status == "completed"
    assert t.recorded == 0
    assert t.failures[0].what == "open backend"
    assert "not-a-dir" in t.failures[0].error
    summary = t.summary()
    assert summary["not_recorded"] == len(t.failures) >= 3
    assert summary["switched_off"] and "not-a-dir" in summary["switched_off"]
    # reported once, with the cause; every later call is only counted
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "switched off" in warnings[0] and "not-a-dir" in warnings[0]


def test_strict_backend_failure_fails_the_job(broken_uri):
    with (
        pytest.raises(tracking.TrackingError, match="open backend failed"),
        tracking.trial("exp", "strict", backend="mlflow", tracking_uri=broken_uri, strict=True),
    ):
        pytest.fail("the block must not run when a strict trial cannot open")
    assert hooks.active_trial() is None


def test_strict_from_environment(broken_uri, monkeypatch):
    monkeypatch.setenv("SPARK_CLUSTERING_TRACKING_STRICT", "1")
    with pytest.raises(tracking.TrackingError):
        tracking.start_trial("exp", "strict-env", backend="mlflow", tracking_uri=broken_uri)
    assert hooks.active_trial() is None


@pytest.mark.spark
def test_run_context_names_the_active_spark_application(spark):
    from spark_clustering.tracking.context import run_context

    tags = run_context()
    assert tags["spark.app_id"] == spark.sparkContext.applicationId
    assert tags["spark.master"] == spark.sparkContext.master == "local[2]"
    with tracking.trial("exp", "on-spark", backend="none") as t:
        hooks.log_metrics({"silhouette": 0.5})
    assert t.failures == []


def test_job_tracking_arguments_open_the_described_trial(tmp_path):
    import argparse

    from spark_clustering.tracking.cliargs import add_tracking_arguments, trial_from_args

    parser = argparse.ArgumentParser()
    add_tracking_arguments(parser, experiment="customer-segmentation")
    args = parser.parse_args(["--tracking", "none", "--tracking-strict"])
    t = trial_from_args(args, default_trial="segment-kmeans", tags={"job": "segment"})
    assert (t.experiment, t.name, t.config.backend, t.strict) == (
        "customer-segmentation",
        "segment-kmeans",
        "none",
        True,
    )
    with t:
        assert hooks.active_trial() is t
    config = tmp_path / "tracking.json"
    config.write_text('{"tracking": {"backend": "none", "metric_buffer": 3}}')
    args = parser.parse_args(["--config", str(config), "--trial", "k4", "--experiment", "other"])
    t = trial_from_args(args, default_trial="unused")
    assert (t.experiment, t.name, t.config.metric_buffer, t.strict) == ("other", "k4", 3, False)
    with pytest.raises(SystemExit):
        parser.parse_args(["--tracking", "wandb"])
    bare = argparse.ArgumentParser()
    add_tracking_arguments(bare, trial=False)
    with pytest.raises(SystemExit):
        bare.parse_args([])  # --experiment is required when there is no default


def test_missing_mlflow_is_reported_with_the_extra_to_install(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "mlflow", None)  # as if the extra were not installed
    with tracking.trial("exp", "no-mlflow", backend="mlflow") as t:
        hooks.log_metrics({"silhouette": 0.5})
    assert t.failures[0].what == "open backend"
    assert "pip install 'spark-clustering[mlflow]'" in t.failures[0].error


# --------------------------------------------------------------------------------- outages


class ReadOnlyError(Exception):
    pass


def test_root_cause_is_the_innermost_exception_on_one_line():
    from spark_clustering.tracking.core import root_cause

    class Wrapper(Exception):  # as SQLAlchemy wraps sqlite3's error
        pass

    try:
        try:
            raise ReadOnlyError("attempt to write a readonly database")
        except ReadOnlyError as inner:
            raise Wrapper(
                "(raised as a result of Query-invoked autoflush; consider using a session."
                "no_autoflush block)\n(sqlite3.OperationalError) attempt to write a readonly "
                "database\n[SQL: INSERT INTO runs ...]"
            ) from inner
    except Wrapper as exc:
        assert root_cause(exc) == "ReadOnlyError: attempt to write a readonly database"
    # implicit chaining (raised while handling another) is followed too
    try:
        try:
            raise ConnectionRefusedError(111, "Connection refused")
        except OSError:
            raise RuntimeError("API request to http://u:pw@h/api failed") from None
    except RuntimeError as exc:  # `from None` ends the chain: the outer one, redacted
        assert root_cause(exc) == "RuntimeError: API request to http://__REDACTED__@h/api failed"
    try:
        try:
            raise ConnectionRefusedError(111, "Connection refused")
        except OSError as inner:
            raise RuntimeError(f"API request failed with exception {inner}")  # noqa: B904
    except RuntimeError as exc:
        assert root_cause(exc) == "ConnectionRefusedError: [Errno 111] Connection refused"


def test_one_outage_switches_the_store_off_for_the_run(broken_uri, caplog, monkeypatch):
    from spark_clustering.tracking import core

    opened = []
    real = core.make_backend

    def counting(config):
        opened.append(config.target())
        return real(config)

    monkeypatch.setattr(core, "make_backend", counting)
    with caplog.at_level(logging.INFO), core.health_scope() as health:
        for name in ("first", "second", "third"):
            with tracking.trial("exp", name, backend="mlflow", tracking_uri=broken_uri) as t:
                t.log_metric("silhouette", 0.5)
    assert len(opened) == 1  # the later trials did not try the store again
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "not-a-dir" in warnings[0]
    summary = health.summary()
    assert summary["status"] == "failed" and summary["trials"] == 3
    assert summary["recorded_calls"] == 0 and summary["not_recorded"] == summary["calls"] >= 6
    assert "not-a-dir" in next(iter(summary["causes"].values()))
    assert health.text().startswith("tracking: failed (mlflow sqlite:")
    assert health.text().endswith(f"0 of {summary['calls']} calls recorded")
    # a new run tries the store again
    with core.health_scope(), tracking.trial("exp", "later", backend="mlflow",
                                             tracking_uri=broken_uri):  # fmt: skip
        pass
    assert len(opened) == 2


def test_health_of_a_run_without_failures_and_without_tracking(tmp_path):
    from spark_clustering.tracking import core

    with core.health_scope() as off, tracking.trial("exp", "quiet", backend="none"):
        pass
    assert off.summary()["status"] == "off" and off.text() == "tracking: off"
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    with core.health_scope() as ok:
        with tracking.trial("exp", "fine", backend="mlflow", tracking_uri=uri) as t:
            t.log_metric("silhouette", 0.5)
        with core.health_scope() as nested:  # nested scopes are one run
            assert nested is ok
    summary = ok.summary()
    assert summary["status"] == "ok" and summary["recorded_calls"] == summary["calls"] > 0
    assert ok.text() == f"tracking: ok - {summary['calls']} of {summary['calls']} calls recorded"
    assert core.read_trials_safely(t.config, "exp")[0].trial == "fine"


def test_unreadable_store_is_none_and_switched_off(broken_uri, caplog):
    from spark_clustering.tracking import core
    from spark_clustering.tracking.config import resolve_config

    config = resolve_config("mlflow", tracking_uri=broken_uri)
    with caplog.at_level(logging.WARNING), core.health_scope() as health:
        assert core.read_trials_safely(config, "exp") is None
        assert core.read_trials_safely(config, "exp") is None
    assert len(caplog.records) == 1 and health.outage(config.target()) is not None
    with pytest.raises(tracking.TrackingError):
        core.read_trials_safely(resolve_config("mlflow", tracking_uri=broken_uri, strict=True), "e")


def test_mlflow_http_defaults_keep_what_the_user_set():
    from spark_clustering.tracking.mlflow_backend import HTTP_DEFAULTS, apply_http_defaults

    env = {"MLFLOW_HTTP_REQUEST_TIMEOUT": "60", "MLFLOW_HTTP_REQUEST_MAX_RETRIES": ""}
    applied = apply_http_defaults(env)
    assert env["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "60"  # the user's
    assert set(applied) == set(HTTP_DEFAULTS) - {"MLFLOW_HTTP_REQUEST_TIMEOUT"}
    assert env["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "2"
    assert int(HTTP_DEFAULTS["MLFLOW_HTTP_REQUEST_TIMEOUT"]) <= 10
