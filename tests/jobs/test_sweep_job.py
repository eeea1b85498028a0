"""The sweep job: trial planning and config checks without Spark, then sweeps over small
generated features: eps multiples, reductions fitted once, resume, recovery of a failed trial,
the stability score and the best trial's outputs."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import pytest

from segment_data import NAMES, blobs, write_features
from spark_clustering.jobs import score, sweep
from spark_clustering.jobs.publish import current_run, read_assignments
from spark_clustering.jobs.segment_config import ConfigError
from spark_clustering.jobs.sweep import main, run_sweep
from spark_clustering.jobs.sweep_config import (
    expand_params,
    load_sweep_config,
    parse_sweep_config,
    plan_trials,
)

N_PER = 60
RUN_DATE = "2026-11-15"


def _search(tmp_path: Path, **search: object) -> dict:
    (tmp_path / "features").mkdir(exist_ok=True)
    return {
        "input": {"path": str(tmp_path / "features")},
        "output": {"path": str(tmp_path / "out")},
        "search": search,
    }


# --------------------------------------------------------------------------------- no Spark


def test_grid_expansion():
    assert expand_params({"seed": 1, "k": [2, 3]}) == [{"k": 2, "seed": 1}, {"k": 3, "seed": 1}]
    assert expand_params({}) == [{}]
    specs, total = plan_trials(
        [None, ("a", "b")],
        [("none", {}), ("pca", {"k": 2})],
        [("kmeans", {"k": 2}), ("kmeans", {"k": 3}), ("gmm", {"k": 2})],
    )
    assert total == len(specs) == 12
    assert len({(s.select, s.reducer, s.clusterer, tuple(s.clusterer_params.items()))
                for s in specs}) == 12  # fmt: skip
    # trials over one reduction come together: the reduction can be released after them
    keys = [s.reduction_key() for s in specs]
    assert len(set(keys)) == 4
    for key in set(keys):
        where = [i for i, k in enumerate(keys) if k == key]
        assert where == list(range(where[0], where[0] + 3))


def test_dbscan_eps_and_multiples_are_one_dimension(tmp_path):
    data = _search(tmp_path, clusterers=[{"algorithm": "dbscan", "params": {
        "eps": [0.3, "auto"], "eps_multiples": [0.5, 1.0], "minPoints": [5, 10]}}])  # fmt: skip
    config = parse_sweep_config(data)
    eps = sorted(
        (t.clusterer_params["minPoints"], str(t.clusterer_params["eps"]),
         t.clusterer_params.get("epsMultiple"))
        for t in config.trials
    )  # fmt: skip
    # "auto" is the multiple 1.0, counted once
    assert eps == [(m, e, x) for m in (5, 10)
                   for e, x in (("0.3", None), ("auto", 0.5), ("auto", 1.0))]  # fmt: skip


def test_random_sampling(tmp_path):
    clusterers = [{"algorithm": "kmeans", "params": {"k": [2, 3, 4, 5, 6], "seed": [1, 2]}}]
    reducers = [{"algorithm": "pca", "params": {"k": [1, 2, 3]}}]
    config = parse_sweep_config(_search(tmp_path, strategy="random", trials=7, seed=3,
                                        reducers=reducers, clusterers=clusterers))  # fmt: skip
    grid = parse_sweep_config(_search(tmp_path, reducers=reducers, clusterers=clusterers))
    assert config.grid_size == len(grid.trials) == 30
    assert len(config.trials) == len(set(config.trials)) == 7
    assert set(config.trials) <= set(grid.trials)
    again = parse_sweep_config(_search(tmp_path, strategy="random", trials=7, seed=3,
                                       reducers=reducers, clusterers=clusterers))  # fmt: skip
    assert again.trials == config.trials
    other = parse_sweep_config(_search(tmp_path, strategy="random", trials=7, seed=4,
                                       reducers=reducers, clusterers=clusterers))  # fmt: skip
    assert other.trials != config.trials
    everything = parse_sweep_config(_search(tmp_path, strategy="random", trials=100,
                                            reducers=reducers, clusterers=clusterers))  # fmt: skip
    assert set(everything.trials) == set(grid.trials)


def test_config_hash_is_stable_and_ignores_outputs(tmp_path):
    clusterers = [{"algorithm": "kmeans", "params": {"k": [2, 3]}}]
    one = parse_sweep_config(_search(tmp_path, clusterers=clusterers))
    data = _search(tmp_path, clusterers=clusterers)
    data["output"]["path"] = str(tmp_path / "elsewhere")
    data["tracking"] = {"experiment": "other"}
    two = parse_sweep_config(data)
    hashes = [one.config_hash(t) for t in one.trials]
    assert hashes == [two.config_hash(t) for t in two.trials]
    assert len(set(hashes)) == 2 and all(len(h) == 64 for h in hashes)
    data["evaluation"] = {"sample_size": 100}
    assert parse_sweep_config(data).config_hash(one.trials[0]) != hashes[0]


def test_config_errors_are_all_listed_before_spark(tmp_path, capsys, no_spark):
    bad = tmp_path / "bad.toml"
    bad.write_text(
        '[input]\npath = "/nonexistent/features"\n'
        '[clusterer]\nalgorithm = "kmeans"\n'
        "[search]\n"
        'strategy = "random"\n'
        "feature_sets = [[]]\n"
        'reducers = [{ algorithm = "tsne" }, { algorithm = "pca", params = { k = [0, 2] } }]\n'
        'clusterers = [{ algorithm = "dbscan", params = { eps = [-1.0, 0.2], '
        'eps_multiples = [], minPoints = "five", colour = 1 } },\n'
        '  { algorithm = "kmeans", params = { k = [] } }]\n'
        "stability_repeats = 1\n"
    )
    assert main(["--config", str(bad)]) == 2
    err = capsys.readouterr().err
    expected = (
        "unknown key 'clusterer'",
        "'/nonexistent/features' does not exist",
        "[output].path is required",
        "[search].trials is required with strategy = 'random'",
        "feature_sets[0]: []",
        "unknown algorithm 'tsne'",
        "reducers[1].params.k: 0",
        "eps: -1.0",
        "eps_multiples: an empty list",
        "minPoints: expected integer",
        "unknown key 'colour'",
        "clusterers[1].params.k: an empty list",
        "stability_repeats: 1",
    )
    for text in expected:
        assert text in err, (text, err)
    assert f"{len(expected)} problem(s)" in err


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_sweep_config(str(tmp_path / "missing.toml"))


# --------------------------------------------------------------------------------- Spark


@pytest.fixture(scope="module")
def features(spark, tmp_path_factory):
    root = tmp_path_factory.mktemp("sweep")
    ids, x, _ = blobs(N_PER, seed=3)
    return write_features(spark, root / "features", ids, x)


def _write(path: Path, features: str, out: Path, search: str, tracking: str) -> str:
    path.write_text(
        f'run_date = "{RUN_DATE}"\n'
        f'[input]\npath = "{features}"\n'
        "[evaluation]\nsample_size = 200\nrepeats = 1\n"
        f"[tracking]\n{tracking}\n"
        f'[output]\npath = "{out}"\nscatter_sample = 100\n'
        f"[search]\n{search}\n"
    )
    return str(path)


def _mlflow(root: Path, experiment: str) -> str:
    return (
        f'backend = "mlflow"\nexperiment = "{experiment}"\n'
        f'tracking_uri = "sqlite:///{root}/mlflow.db"\nartifact_location = "{root}/artifacts"'
    )


def _runs(root: Path, experiment: str) -> list:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{root}/mlflow.db")
    exp = client.get_experiment_by_name(experiment)
    assert exp is not None
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    return [r for r in runs if r.data.tags.get("spark_clustering.kind") == "trial"]


def _count_calls(monkeypatch, owner, name: str) -> list:
    calls: list = []
    original = getattr(owner, name)

    def spy(*args, **kwargs):
        calls.append(args)
        return original(*args, **kwargs)

    monkeypatch.setattr(owner, name, spy)
    return calls


SEARCH = """\
feature_sets = [["recency", "frequency", "monetary"]]
reducers = [{ algorithm = "pca", params = { k = 2 } }]
clusterers = [
  { algorithm = "kmeans", params = { k = [2, 3], seed = 1 } },
  { algorithm = "dbscan", params = { eps_multiples = [0.5, 1.0], minPoints = 5 } },
]"""


@pytest.mark.spark
@pytest.mark.slow
def test_sweep_runs_resumes_and_writes_the_best(spark, features, tmp_path, monkeypatch, capsys):
    from spark_clustering.reduction.pca import PCA

    config = _write(tmp_path / "sweep.toml", features, tmp_path / "out", SEARCH,
                    _mlflow(tmp_path, "sweep-test"))  # fmt: skip
    pca_fits = _count_calls(monkeypatch, PCA, "_fit")
    graphs = _count_calls(monkeypatch, sweep.segment, "k_distance_graph")
    assert main(["--config", config, "--gpu", "off"]) == 0
    # one reduction and one k-distance graph for the four trials, none refitted for the output
    assert len(pca_fits) == 1 and len(graphs) == 1
    runs = _runs(tmp_path, "sweep-test")
    assert len(runs) == 4 and {r.info.status for r in runs} == {"FINISHED"}
    hashes = {r.data.tags["config_hash"] for r in runs}
    assert len(hashes) == 4
    dbscan = [r for r in runs if r.data.params["clusterer"] == "dbscan"]
    assert len(dbscan) == 2
    for run in dbscan:
        multiple = float(run.data.params["clusterer_params.epsMultiple"])
        suggested = float(run.data.params["eps_suggested"])
        assert float(run.data.params["eps"]) == pytest.approx(multiple * suggested)
        assert suggested > 0
    for run in runs:
        assert {"silhouette", "davies_bouldin", "calinski_harabasz", "n_clusters",
                "noise_fraction"} <= set(run.data.metrics)  # fmt: skip
    best_run = max(runs, key=lambda r: r.data.metrics["silhouette"])
    out = tmp_path / "out"
    run = current_run(None, str(out), RUN_DATE)
    assert run is not None
    summary = json.loads(Path(run.summary).read_text())
    assert summary["sweep"]["config_hash"] == best_run.data.tags["config_hash"]
    assert summary["sweep"]["value"] == pytest.approx(best_run.data.metrics["silhouette"])
    assert summary["metrics"]["silhouette"] == pytest.approx(best_run.data.metrics["silhouette"])
    assert summary["n_clusters"] == 3
    assignments = read_assignments(spark, str(out))
    assert assignments.count() == 3 * N_PER
    meta = json.loads((Path(run.model) / "pipeline.json").read_text())
    assert meta["select"] == ["recency", "frequency", "monetary"]
    # score reapplies the selection, the reduction and the clusterer: the same assignments
    scored = tmp_path / "scored"
    assert score.main(["--model", str(out), "--input", features, "--output", str(scored),
                       "--run-date", "2026-11-16", "--gpu", "off"]) == 0  # fmt: skip
    fitted = {r["customer_id"]: r["cluster"] for r in assignments.collect()}
    again = {r["customer_id"]: r["cluster"] for r in spark.read.parquet(str(scored)).collect()}
    assert again == fitted
    printed = capsys.readouterr()
    assert "4 trials run, 0 skipped, 0 failed" in printed.out
    assert best_run.data.tags["spark_clustering.trial"] in printed.out  # the leaderboard
    assert "4/4 trials" in printed.err  # the progress line

    # the same sweep again: every trial is found completed, none runs
    trials = _count_calls(monkeypatch, sweep, "run_trial")
    assert main(["--config", config, "--gpu", "off"]) == 0
    assert trials == [] and len(_runs(tmp_path, "sweep-test")) == 4
    assert "0 trials run, 4 skipped, 0 failed" in capsys.readouterr().out


@pytest.mark.spark
@pytest.mark.slow
def test_failed_trial_is_the_only_one_rerun(spark, features, tmp_path, monkeypatch, capsys):
    from spark_clustering.clustering.kmeans import KMeans

    search = 'clusterers = [{ algorithm = "kmeans", params = { k = [2, 3, 4], seed = 1 } }]'
    config = _write(tmp_path / "sweep.toml", features, tmp_path / "out", search,
                    _mlflow(tmp_path, "sweep-recovery"))  # fmt: skip
    original = KMeans._fit

    def fail_on_k3(self, dataset):
        if self.getK() == 3:
            raise RuntimeError("injected failure of the k=3 trial")
        return original(self, dataset)

    with monkeypatch.context() as patched:
        patched.setattr(KMeans, "_fit", fail_on_k3)
        assert main(["--config", config, "--gpu", "off"]) == 1
    captured = capsys.readouterr()
    assert "1 trial(s) failed; rerun to retry them" in captured.err
    assert "injected failure" in captured.err
    runs = _runs(tmp_path, "sweep-recovery")
    assert sorted(r.info.status for r in runs) == ["FAILED", "FINISHED", "FINISHED"]
    # the best of the completed trials was written all the same
    assert current_run(None, str(tmp_path / "out"), RUN_DATE) is not None

    trials = _count_calls(monkeypatch, sweep, "run_trial")
    assert main(["--config", config, "--gpu", "off"]) == 0
    assert [spec.clusterer_params["k"] for _, spec, *_ in trials] == [3]
    runs = _runs(tmp_path, "sweep-recovery")
    finished = [r for r in runs if r.info.status == "FINISHED"]
    assert sorted(int(r.data.params["clusterer_params.k"]) for r in finished) == [2, 3, 4]
    run = current_run(None, str(tmp_path / "out"), RUN_DATE)
    assert run is not None
    summary = json.loads(Path(run.summary).read_text())
    assert summary["n_clusters"] == 3  # k=3 on three blobs: now it is the best


@pytest.mark.spark
@pytest.mark.slow
def test_stability_of_separable_blobs(spark, features, tmp_path):
    search = (
        'feature_sets = [["recency", "frequency", "monetary"]]\n'
        'clusterers = [{ algorithm = "kmeans", params = { k = [3, 6], seed = 1 } }]\n'
        "stability_repeats = 3\nstability_fraction = 0.7\nstability_sample = 150"
    )
    path = _write(tmp_path / "sweep.toml", features, tmp_path / "out", search,
                  'backend = "none"')  # fmt: skip
    config = load_sweep_config(path)
    stream = io.StringIO()
    result = run_sweep(spark, config, stream=stream, write_best=False)
    assert result.count("completed") == 2 and result.segment is None
    by_k = {o.spec.clusterer_params["k"]: o.metrics for o in result.outcomes}
    # three well separated blobs: every subsample finds the same three clusters
    assert by_k[3]["stability_ari"] == pytest.approx(1.0)
    assert -1.0 <= by_k[6]["stability_ari"] <= 1.0 and not math.isnan(by_k[6]["stability_ari"])
    assert by_k[3]["silhouette"] > by_k[6]["silhouette"]
    assert result.best is not None and result.best.spec.clusterer_params["k"] == 3
    # not a terminal: one progress line per trial
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2 and lines[-1].startswith("sweep: 2/2 trials (0 skipped, 0 failed)")
    assert "\r" not in stream.getvalue()


@pytest.mark.spark
@pytest.mark.slow
def test_unknown_feature_name_is_a_bad_input(spark, features, tmp_path, capsys):
    search = (
        'feature_sets = [["recency", "colour"]]\n'
        'clusterers = [{ algorithm = "kmeans", params = { k = 3 } }]'
    )
    config = _write(tmp_path / "sweep.toml", features, tmp_path / "out", search,
                    'backend = "none"')  # fmt: skip
    assert main(["--config", config, "--gpu", "off"]) == 2
    err = capsys.readouterr().err
    assert "['colour']" in err and all(name in err for name in NAMES)


def test_progress_on_a_terminal_rewrites_one_line():
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    stream = Terminal()
    progress = sweep.Progress(total=3, skipped=1, metric="silhouette", stream=stream)
    specs, _ = plan_trials([None], [("none", {})], [("kmeans", {"k": 2}), ("kmeans", {"k": 3})])
    first = sweep.TrialOutcome(specs[0], "h1", "completed", {"silhouette": 0.5}, seconds=2.0)
    progress.update(first, first)
    second = sweep.TrialOutcome(specs[1], "h2", "failed", {}, seconds=4.0, error="boom")
    progress.update(second, first)
    progress.close()
    text = stream.getvalue()
    assert text.count("\r") == 2 and text.endswith("\n") and text.count("\n") == 1
    assert "3/3 trials (1 skipped, 1 failed), best silhouette=0.5 (none-kmeans-k2)" in text


@pytest.mark.spark
@pytest.mark.slow
def test_interrupted_sweep_loses_only_the_trial_in_flight(spark, features, tmp_path, monkeypatch):
    search = 'clusterers = [{ algorithm = "kmeans", params = { k = [2, 3, 4], seed = 1 } }]'
    config = _write(tmp_path / "sweep.toml", features, tmp_path / "out", search,
                    _mlflow(tmp_path, "sweep-interrupted"))  # fmt: skip
    original = sweep.segment.fit_clusterer
    fits: list[int] = []

    def interrupt_the_second(cfg, *args, **kwargs):
        fits.append(cfg.clusterer_params["k"])
        if len(fits) == 2:
            raise KeyboardInterrupt
        return original(cfg, *args, **kwargs)

    with monkeypatch.context() as patched:
        patched.setattr(sweep.segment, "fit_clusterer", interrupt_the_second)
        with pytest.raises(KeyboardInterrupt):
            main(["--config", config, "--gpu", "off"])
    assert fits == [2, 3]
    runs = _runs(tmp_path, "sweep-interrupted")
    assert sorted(r.info.status for r in runs) == ["FAILED", "FINISHED"]
    trials = _count_calls(monkeypatch, sweep, "run_trial")
    assert main(["--config", config, "--gpu", "off"]) == 0
    assert [spec.clusterer_params["k"] for _, spec, *_ in trials] == [3, 4]
