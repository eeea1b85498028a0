"""The prepare job end to end through ``main([...])`` on generated data: outputs, reapplying
the saved preparation to new data, atomic output, bad spec/input exit codes, the generate CLI."""

from __future__ import annotations

import itertools
import json
import os
from pathlib import Path

import pytest
from chispa import assert_approx_df_equality
from pyspark.ml.functions import vector_to_array
from pyspark.sql import functions as F

from spark_clustering.features.assemble import feature_names
from spark_clustering.features.prepare import PreparedFeatures, apply_saved_preparation
from spark_clustering.jobs.prepare import main

pytestmark = [pytest.mark.spark, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = str(ROOT / "examples" / "prepare.toml")
CUSTOMERS = 1200


@pytest.fixture(scope="module")
def generated(spark, tmp_path_factory):
    from spark_clustering.cli import main as cli_main

    out = tmp_path_factory.mktemp("prep") / "generated"
    rc = cli_main(["generate", "--customers", str(CUSTOMERS), "--output", str(out), "--seed", "5"])
    assert rc == 0
    return out


@pytest.fixture(scope="module")
def prepared(generated):
    from mlflow import MlflowClient

    out = generated.parent / "prepared"
    db = f"sqlite:///{generated.parent}/mlflow.db"
    # created beforehand to keep MLflow's artifacts out of the working directory (and without
    # the experiment kind tag, which the job adds)
    MlflowClient(db).create_experiment("prep-test", str(generated.parent / "artifacts"))
    rc = main(["--config", EXAMPLE, "--input", str(generated / "transactions"),
               "--output", str(out), "--gpu", "off", "--tracking", "mlflow",
               "--tracking-uri", db, "--experiment", "prep-test"])  # fmt: skip
    assert rc == 0
    return out


def test_the_run_is_tracked(generated, prepared):
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{generated.parent}/mlflow.db")
    exp = client.get_experiment_by_name("prep-test")
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"
    (run,) = client.search_runs([exp.experiment_id])
    record = json.loads((prepared / "summary.json").read_text())
    report = json.loads((prepared / "report" / "report.json").read_text())
    # the job's run id and the MLflow run name each other
    assert record["job"] == "prepare" and run.data.tags["run_id"] == record["run_id"]
    assert record["tracking"]["run"]["run_id"] == run.info.run_id
    assert run.info.run_name == "prepare-prepared" and run.info.status == "FINISHED"
    # the spec, the counts, the raw input as a data set, the report
    assert run.data.params["spec.input.format"] == "parquet"
    metrics = run.data.metrics
    assert metrics["prepare.rows_read"] == report["input"]["rows_read"]
    assert metrics["prepare.rows_kept"] == report["input"]["rows_kept"]
    assert metrics["prepare.customers"] == report["customers"]
    below = report["input"]["range_violations"]["amount"]["below_min"]
    assert metrics["prepare.found_out_of_range"] == below > 0
    assert record["counts"] == metrics
    (given,) = run.inputs.dataset_inputs
    assert json.loads(given.dataset.source)["uri"] == (generated / "transactions").as_uri()
    assert len(given.dataset.digest) == 16
    assert run.data.tags["output.features"] == (prepared / "features").as_uri()
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"report.json", "preparation.json"} <= artifacts


def _listing(root: Path) -> dict[str, int]:
    return {
        str(p.relative_to(root)): p.stat().st_size for p in sorted(root.rglob("*")) if p.is_file()
    }


def _flat(df, d: int):
    """id + one double column per feature, for approximate comparison."""
    arr = vector_to_array(F.col("features"))
    return df.select("customer_id", *[arr[i].alias(f"f{i}") for i in range(d)])


def test_outputs(spark, generated, prepared):
    features = spark.read.parquet(str(prepared / "features"))
    report = json.loads((prepared / "report" / "report.json").read_text())
    meta = json.loads((prepared / "preparation.json").read_text())
    assert features.columns == ["customer_id", "features"]
    # customers left after the range rule (negative amounts dropped) all have a row
    tx = spark.read.parquet(str(generated / "transactions"))
    valid = tx.where("amount IS NULL OR (amount >= 0 AND amount <= 100000)")
    assert features.count() == valid.select("customer_id").distinct().count() == report["customers"]
    names = feature_names(features)
    assert names == report["features"] == meta["feature_names"]
    assert names[:5] == ["recency_days", "frequency", "monetary", "tenure_days", "avg_basket"]
    assert "share_grocery" in names and "country=US" in names
    assert report["input"]["range_violations"]["amount"]["below_min"] > 0
    assert report["runtime"]["rapids_enabled"] is False
    assert set(report["correlation"]) == {"pearson", "spearman"}
    assert report["pca"]["n_components"] == 8
    cumulative = report["pca"]["cumulative_explained_variance"]
    assert all(a <= b + 1e-12 for a, b in itertools.pairwise(cumulative))
    for chart in (
        "correlation_pearson.png",
        "correlation_spearman.png",
        "pca_explained_variance.png",
    ):
        assert (prepared / "report" / chart).stat().st_size > 1000
    assert (prepared / "model" / "metadata").is_dir()
    # no temporary sibling is left behind
    assert [p.name for p in prepared.parent.iterdir() if p.name.startswith(".prepared")] == []
    # standard scaling: every kept feature has unit sample variance
    arr = features.select(vector_to_array("features").alias("a"))
    var = arr.select(*[F.var_samp(F.col("a")[i]) for i in range(len(names))]).first()
    assert all(abs(v - 1.0) < 1e-6 for v in var)


def test_saved_preparation_reapplied_gives_the_same_features(spark, generated, prepared):
    saved = spark.read.parquet(str(prepared / "features"))
    d = len(feature_names(saved))
    tx = spark.read.parquet(str(generated / "transactions"))
    again = apply_saved_preparation(spark, str(prepared), tx)
    assert feature_names(again) == feature_names(saved)
    assert_approx_df_equality(
        _flat(again, d), _flat(saved, d), precision=1e-9, ignore_row_order=True,
        ignore_nullable=True,
    )  # fmt: skip
    # new data: a subset of the customers, as a new batch; the fitted reference date, medians,
    # bounds and scales apply, so these customers get exactly their features again
    subset = tx.where("customer_id % 7 = 0")
    new = apply_saved_preparation(spark, str(prepared / "model"), subset)
    expected = saved.where("customer_id % 7 = 0")
    assert new.count() == expected.count() > 0
    assert_approx_df_equality(
        _flat(new, d), _flat(expected, d), precision=1e-9, ignore_row_order=True,
        ignore_nullable=True,
    )  # fmt: skip


def test_failed_run_leaves_previous_output_intact(generated, prepared, monkeypatch, capsys):
    before = _listing(prepared)
    original = PreparedFeatures.save

    def save_then_fail(self, spark, path, charts=None):
        original(self, spark, path, charts=False)  # half of a new output is written...
        raise RuntimeError("disk full")  # ...then the run dies

    monkeypatch.setattr(PreparedFeatures, "save", save_then_fail)
    rc = main(["--config", EXAMPLE, "--input", str(generated / "transactions"),
               "--output", str(prepared), "--gpu", "off"])  # fmt: skip
    assert rc == 1
    err = capsys.readouterr().err
    # one line: the cause, and where the full trace is (no trace on stderr)
    assert "error: prepare failed, no output written: RuntimeError: disk full (full trace: " in err
    assert "Traceback" not in err
    assert _listing(prepared) == before
    assert [p.name for p in prepared.parent.iterdir() if p.name.startswith(".prepared")] == []


def test_bad_input_and_bad_spec_exit_2_without_output(generated, prepared, tmp_path, capsys):
    before = _listing(prepared)
    rc = main(["--config", EXAMPLE, "--input", str(tmp_path / "missing"),
               "--output", str(prepared), "--gpu", "off"])  # fmt: skip
    assert rc == 2
    assert "does not exist" in capsys.readouterr().err
    assert _listing(prepared) == before
    bad = tmp_path / "bad.toml"
    bad.write_text('[input]\npath = "x"\nformat = "xls"\n[scale]\nmethod = "zscore"\n')
    rc = main(["--config", str(bad)])
    err = capsys.readouterr().err
    assert rc == 2
    assert "input.format='xls'" in err and "scale.method='zscore'" in err
    assert "output.path is missing" in err


def test_misnamed_column_fails_before_any_output(spark, generated, tmp_path, capsys):
    spec = Path(EXAMPLE).read_text().replace('amount_col = "amount"', 'amount_col = "amont"')
    config = tmp_path / "misnamed.toml"
    config.write_text(spec.replace("amount = { min", "amont = { min"))
    out = tmp_path / "out"
    rc = main(["--config", str(config), "--input", str(generated / "transactions"),
               "--output", str(out), "--gpu", "off"])  # fmt: skip
    assert rc == 2
    assert "column 'amont' (numeric) is missing (did you mean 'amount'?)" in capsys.readouterr().err
    assert not out.exists()
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".out")]
