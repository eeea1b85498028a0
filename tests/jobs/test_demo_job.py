"""``spark-clustering demo``: generated customers segmented with the packaged defaults, the ARI
against the generator's segments, bad options refused before Spark starts."""

from __future__ import annotations

import fnmatch
import json
from pathlib import Path

import numpy as np
import pytest

try:  # Python >= 3.11
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python 3.10
    import tomli as tomllib

from spark_clustering import cli
from spark_clustering.jobs import demo

ROOT = Path(__file__).resolve().parents[2]


def test_ari_from_counts_equals_sklearn(rng: np.random.Generator) -> None:
    from sklearn.metrics import adjusted_rand_score

    cases = [
        (rng.integers(0, 5, 500), rng.integers(-1, 7, 500)),
        (np.repeat([0, 1, 2], 50), np.repeat([5, 3, 1], 50)),  # same partition, other names
        (np.zeros(20, int), np.zeros(20, int)),  # one cluster each
        (np.arange(30), np.arange(30)),  # all singletons
        (np.zeros(30, int), np.arange(30)),
    ]
    truth = np.repeat(np.arange(4), 40)
    noisy = truth.copy()
    noisy[rng.choice(truth.size, 30, replace=False)] = -1
    cases.append((truth, noisy))
    for a, b in cases:
        _, ai = np.unique(a, return_inverse=True)
        _, bi = np.unique(b, return_inverse=True)
        counts = np.zeros((ai.max() + 1, bi.max() + 1))
        np.add.at(counts, (ai, bi), 1)
        assert demo.adjusted_rand_index_from_counts(counts) == pytest.approx(
            adjusted_rand_score(a, b), abs=1e-12
        )


def test_packaged_prepare_spec_is_the_example_on_behaviour_only() -> None:
    """The demo's spec is examples/prepare.toml with only the five behavioural aggregates."""
    from spark_clustering.features.spec import load_spec

    packaged = tomllib.loads(demo.default_file("prepare.toml"))
    example = tomllib.loads((ROOT / "examples" / "prepare.toml").read_text())
    behaviour = ["recency", "frequency", "monetary", "tenure", "avg_basket"]
    assert packaged["transactions"].pop("aggregates") == behaviour
    example["transactions"].pop("aggregates")
    example.pop("columns")
    assert packaged == example
    spec_file = ROOT / "lib" / "spark_clustering" / "jobs" / "defaults" / "prepare.toml"
    names = load_spec(str(spec_file)).static_feature_names()
    assert names == ["recency_days", "frequency", "monetary", "tenure_days", "avg_basket"]


def test_defaults_are_package_data() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["package-data"]["spark_clustering"]
    for name in demo.DEFAULT_FILES:
        assert any(fnmatch.fnmatch(f"jobs/defaults/{name}", p) for p in patterns), name
    with pytest.raises(ValueError, match=r"accepted: demo\.toml, prepare\.toml"):
        demo.default_file("nope.toml")


@pytest.mark.parametrize(
    ("argv", "message"),
    [(["--customers", "0"], "--customers=0; accepted: >= 1"),
     (["--customers", "-5"], "--customers=-5; accepted: >= 1"),
     (["--output", "FILE"], "is a file; accepted: a folder")],
)  # fmt: skip
def test_bad_option_exits_2_before_spark(tmp_path, capsys, argv, message) -> None:
    afile = tmp_path / "a-file"
    afile.write_text("x")
    argv = [str(afile) if a == "FILE" else a for a in argv]
    if "--output" not in argv:
        argv += ["--output", str(tmp_path / "out")]
    assert cli.main(["demo", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and err.startswith("error: demo:")
    assert not (tmp_path / "out").exists()


@pytest.mark.spark
@pytest.mark.slow
def test_demo_generates_segments_and_scores_against_the_truth(spark, tmp_path, capsys) -> None:
    from sklearn.metrics import adjusted_rand_score

    out = tmp_path / "demo"
    assert cli.main(["demo", "--customers", "600", "--output", str(out), "--seed", "3"]) == 0
    printed = capsys.readouterr().out
    summary = json.loads((out / demo.SUMMARY_FILE).read_text())
    assert summary["customers"] == 600 and summary["seed"] == 3
    assert Path(summary["report"]).is_file() and Path(summary["report"]).name == "report.html"
    assert (out / "demo.toml").read_text() == demo.default_file("demo.toml")
    # the ARI printed and saved is sklearn's on the written assignments and the generator's truth
    assigned = spark.read.parquet(summary["assignments"]).toPandas()
    truth = spark.read.parquet(str(out / "generated" / "segments")).toPandas()
    joined = assigned.merge(truth, on="customer_id")
    assert len(joined) == summary["ari_customers"] == summary["segmented"] > 0
    expected = adjusted_rand_score(joined["segment"], joined["cluster"])
    assert summary["adjusted_rand_index"] == pytest.approx(expected, abs=1e-12)
    assert f"adjusted Rand index against the generator's latent segments: {expected:.3f}" in (
        printed
    )
    assert f"clusters found: {summary['n_clusters']}" in printed
    assert f"report: {summary['report']}" in printed
    assert set(summary["stage_seconds"]) >= {"features", "reduce (umap)", "cluster (dbscan)"}
    assert summary["eps"]["auto"] is True
    # recorded in the MLflow store under the output folder
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=summary["tracking_uri"])
    experiment = client.get_experiment_by_name("spark-clustering-demo")
    assert experiment is not None
    assert summary["tracking_uri"] == f"sqlite:///{out / 'mlflow.db'}"
    assert client.search_runs([experiment.experiment_id])
