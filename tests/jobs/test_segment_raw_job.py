"""segment on raw transactions (the preparation runs first, its fitted model saved with the
pipeline) and score reapplying that preparation: scoring the training data gives back exactly the
fitted assignments, and the profiles are in the units of the original features."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from spark_clustering.jobs import score, segment
from spark_clustering.jobs.publish import current_run, read_assignments

pytestmark = [pytest.mark.spark, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]


def test_raw_input_segmented_then_scored(spark, tmp_path):
    from spark_clustering.features.generate import generate_transactions

    generate_transactions(spark, 300, str(tmp_path / "gen"), seed=7)
    transactions = str(tmp_path / "gen" / "transactions")
    config = tmp_path / "raw.toml"
    config.write_text(
        f'[input]\npath = "{transactions}"\nkind = "raw"\n'
        f'spec = "{ROOT / "examples" / "prepare.toml"}"\n'
        '[reducer]\nalgorithm = "pca"\nparams = { k = 3 }\n'
        '[clusterer]\nalgorithm = "dbscan"\nparams = { eps = "auto", minPoints = 5 }\n'
        "[evaluation]\nenabled = false\n"
        f'[output]\npath = "{tmp_path / "out"}"\nscatter_sample = 100\n'
    )
    out = tmp_path / "out"
    assert segment.main(["--config", str(config), "--run-date", "2026-11-01", "--gpu", "off"]) == 0
    run = current_run(None, str(out), "2026-11-01")
    assert run is not None
    model = Path(run.model)
    assert (model / "preparation" / "preparation.json").is_file()
    assert json.loads((model / "pipeline.json").read_text())["input_kind"] == "raw"
    summary = json.loads(Path(run.summary).read_text())
    assert summary["profile_features"][:3] == ["recency_days", "frequency", "monetary"]
    # original units: mean spend per customer in currency, not a standardised value
    assert all(p["mean"]["monetary"] > 10 for p in summary["profiles"])
    assert score.main(["--model", str(out), "--input", transactions,
                       "--output", str(tmp_path / "scored"), "--run-date", "2026-11-02",
                       "--gpu", "off"]) == 0  # fmt: skip
    fitted = read_assignments(spark, str(out)).toPandas().set_index("customer_id")
    scored = spark.read.parquet(str(tmp_path / "scored")).toPandas().set_index("customer_id")
    assert len(fitted) == len(scored) == summary["customers"]
    scored = scored.loc[fitted.index]
    assert (scored.cluster == fitted.cluster).all() and (scored.is_core == fitted.is_core).all()
    assert set(scored.model_version) == {summary["model_version"]}
