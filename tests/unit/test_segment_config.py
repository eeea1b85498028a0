"""The segment config: defaults, overrides, and every bad-config case rejected with all its
problems listed (no Spark)."""

from __future__ import annotations

import pytest

from spark_clustering.jobs.autochoice import Targets
from spark_clustering.jobs.segment_config import ConfigError, load_config, parse_config


@pytest.fixture
def good(tmp_path):
    features = tmp_path / "features"
    features.mkdir()
    return {
        "run_date": "2026-11-01",
        "input": {"path": str(features)},
        "clusterer": {"algorithm": "dbscan"},
        "output": {"path": str(tmp_path / "out")},
    }


def _problems(data) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(data, "test.toml")
    return info.value.problems


def test_defaults(good):
    config = parse_config(good)
    assert config.reducer == "none" and config.reducer_params == {}
    # left out: the automatic choice within the default targets
    assert config.clusterer_params == {"eps": "auto", "minPoints": "auto"}
    assert config.auto_choice and config.targets == Targets()
    assert config.eps_auto and config.input_kind == "features" and config.id_col == "customer_id"
    assert config.tracking_backend == "none" and config.run_date == "2026-11-01"


def test_example_config_parses():
    config = load_config("examples/segment.toml", overrides={"input.path": "."})
    assert (config.input_kind, config.reducer, config.clusterer) == ("raw", "umap", "dbscan")
    assert config.reducer_params["nComponents"] == 3 and config.eps_auto


def test_overrides_replace_file_values(good, tmp_path):
    path = tmp_path / "c.toml"
    path.write_text(
        f'[input]\npath = "{good["input"]["path"]}"\n[clusterer]\nalgorithm = "kmeans"\n'
        '[output]\npath = "a"\n'
    )
    config = load_config(str(path), overrides={"output.path": "b", "run_date": "2026-01-02"})
    assert config.output_path == "b" and config.run_date == "2026-01-02"
    assert config.clusterer_params == {"k": "auto"}


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"colour": "red"}, "config: unknown key 'colour'"),
        ({"input": {"path": "/nonexistent/x"}}, "[input].path: '/nonexistent/x' does not exist"),
        ({"input": {}}, "[input].path is required"),
        ({"input": {"path": 3}}, "[input].path: expected string, got 3"),
        ({"input": {"kind": "raw"}}, "[input].spec is required with kind = 'raw'"),
        ({"input": {"kind": "raw", "spec": "/no/spec.toml"}}, "'/no/spec.toml' does not exist"),
        ({"input": {"kind": "csv"}}, "[input].kind: 'csv'; accepted: features, raw"),
        ({"reducer": {"algorithm": "tsne"}}, "unknown algorithm 'tsne'; accepted: none, pca, umap"),
        (
            {"reducer": {"algorithm": "umap", "params": {"n_components": 3}}},
            "[reducer].params: unknown key 'n_components'",
        ),
        ({"reducer": {"algorithm": "pca", "params": {"k": 0}}}, "[reducer].params.k: 0"),
        ({"clusterer": {"algorithm": "hdbscan"}}, "unknown algorithm 'hdbscan'"),
        ({"clusterer": {}}, "[clusterer].algorithm is required"),
        (
            {"clusterer": {"algorithm": "dbscan", "params": {"eps": 0}}},
            "eps: 0; accepted: a finite number > 0",
        ),
        ({"clusterer": {"algorithm": "dbscan", "params": {"eps": -0.5}}}, "eps: -0.5"),
        (
            {"clusterer": {"algorithm": "dbscan", "params": {"eps": "knee"}}},
            "eps: 'knee'; accepted: a number > 0 or 'auto'",
        ),
        (
            {"clusterer": {"algorithm": "dbscan", "params": {"minPoints": 2.5}}},
            "minPoints: expected integer or string, got 2.5",
        ),
        (
            {"clusterer": {"algorithm": "dbscan", "params": {"minPoints": True}}},
            "minPoints: expected integer or string, got True",
        ),
        ({"clusterer": {"algorithm": "kmeans", "params": {"k": 1}}}, "params.k: 1; accepted: >= 2"),
        (
            {"clusterer": {"algorithm": "kmeans", "params": {"backend": "sagemaker"}}},
            "[clusterer].params.k: 'auto' with backend = 'sagemaker' would start one SageMaker",
        ),
        (
            {"clusterer": {"algorithm": "dbscan", "params": {"minPoints": "many"}}},
            "[clusterer].params.minPoints: 'many'; accepted: an integer or 'auto'",
        ),
        ({"targets": {"max_noise": 1.0}}, "[targets].max_noise: 1.0; accepted: in [0, 1)"),
        (
            {"clusterer": {"algorithm": "gmm", "params": {"eps": 1.0}}},
            "[clusterer].params: unknown key 'eps'",
        ),
        ({"clusterer": "dbscan"}, "config.clusterer: expected table"),
        ({"evaluation": {"repeats": 0}}, "[evaluation].repeats: 0"),
        ({"evaluation": {"enabled": "yes"}}, "[evaluation].enabled: expected true/false"),
        ({"tracking": {"backend": "wandb"}}, "[tracking].backend: 'wandb'"),
        ({"output": {}}, "[output].path is required"),
        ({"output": {"path": "o", "scatter_sample": 0}}, "[output].scatter_sample: 0"),
        ({"run_date": "yesterday"}, "run_date: 'yesterday' is not a date"),
    ],
)
def test_each_bad_config_is_rejected(good, change, expected):
    data = {**good}
    for key, value in change.items():
        data[key] = {**good[key], **value} if isinstance(value, dict) and key in good else value
    if change.get("input") == {}:
        data["input"] = {}
    if change.get("output") == {}:
        data["output"] = {}
    if change.get("clusterer") == {}:
        data["clusterer"] = {}
    problems = _problems(data)
    assert any(expected in p for p in problems), problems


def test_every_problem_listed_at_once(good):
    data = {
        **good,
        "input": {"path": "/nonexistent/x", "extra": 1},
        "clusterer": {"algorithm": "dbscan", "params": {"eps": -1.0}},
        "tracking": {"backend": "wandb"},
        "output": {},
    }
    with pytest.raises(ConfigError) as info:
        parse_config(data, "bad.toml")
    assert len(info.value.problems) == 5, info.value.problems
    assert str(info.value).startswith("5 problem(s) in bad.toml:")


def test_missing_or_invalid_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(str(tmp_path / "none.toml"))
    bad = tmp_path / "bad.toml"
    bad.write_text("[input\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(str(bad))
