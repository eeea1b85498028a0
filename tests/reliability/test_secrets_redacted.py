"""Secrets in a preparation spec's reader options are saved nowhere: ``prepare`` and ``segment``
on raw data (with MLflow tracking) write no password, JDBC password, S3 secret or access key in
any file of their outputs or of the tracking store, and ``score`` still reads the raw data."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from spark_clustering.jobs import prepare, score, segment
from spark_clustering.jobs.publish import current_run
from spark_clustering.redact import REDACTED

pytestmark = [pytest.mark.spark, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
#: every value below must appear in no written file
SECRETS = {
    "password": "pw-hunter2-SECRET",
    "url": "jdbc:postgresql://db:5432/shop?user=ana&password=jdbc-hunter2-SECRET",
    "jdbc_props": "jdbc:sqlserver://db;user=sa;password=sqlserver-hunter2-SECRET",
    "dsn": "postgresql://ana:userinfo-hunter2-SECRET@db/shop",
    "fs.s3a.secret.key": "s3a-secret-hunter2-SECRET",
    "fs.s3a.access.key": "AKIAABCDEFGHIJKLMNOP",
    "fs.s3a.session.token": "session-hunter2-SECRET",
}
NEEDLES = [b"hunter2", b"AKIAABCDEFGHIJKLMNOP"]


def _spec(tmp_path: Path) -> Path:
    """examples/prepare.toml with the secrets as [input] reader options."""
    text = (ROOT / "examples" / "prepare.toml").read_text()
    options = ", ".join(f'"{k}" = "{v}"' for k, v in SECRETS.items())
    text = re.sub(r"^\[input\]\n", f"[input]\noptions = {{ {options} }}\n", text, flags=re.M)
    spec = tmp_path / "prepare.toml"
    spec.write_text(text)
    return spec


def _leaks(root: Path) -> list[str]:
    found = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        data = path.read_bytes()
        found += [f"{path}: {n.decode()}" for n in NEEDLES if n in data]
    return found


def test_no_secret_in_any_written_file(spark, tmp_path, capsys):
    from spark_clustering.features.generate import generate_transactions

    generate_transactions(spark, 200, str(tmp_path / "gen"), seed=3)
    transactions = str(tmp_path / "gen" / "transactions")
    spec = _spec(tmp_path)

    prepared = tmp_path / "prepared"
    rc = prepare.main(["--config", str(spec), "--input", transactions,
                       "--output", str(prepared), "--gpu", "off"])  # fmt: skip
    assert rc == 0
    meta = json.loads((prepared / "preparation.json").read_text())
    options = meta["spec"]["input"]["options"]
    assert options["password"] == options["fs.s3a.secret.key"] == REDACTED
    assert options["url"].endswith(f"password={REDACTED}")
    assert options["dsn"] == f"postgresql://{REDACTED}@db/shop"

    store = tmp_path / "mlflow"
    store.mkdir()
    out = tmp_path / "out"
    config = tmp_path / "raw.toml"
    config.write_text(
        f'[input]\npath = "{transactions}"\nkind = "raw"\nspec = "{spec}"\n'
        '[reducer]\nalgorithm = "pca"\nparams = { k = 2 }\n'
        '[clusterer]\nalgorithm = "kmeans"\nparams = { k = 3, seed = 1 }\n'
        "[evaluation]\nenabled = false\n"
        f'[tracking]\nbackend = "mlflow"\nexperiment = "secrets"\n'
        f'tracking_uri = "sqlite:///{store}/mlflow.db"\nartifact_location = "{store}/artifacts"\n'
        f'[output]\npath = "{out}"\nscatter_sample = 100\n'
    )
    assert segment.main(["--config", str(config), "--run-date", "2026-11-01", "--gpu", "off"]) == 0
    run = current_run(None, str(out), "2026-11-01")
    saved = Path(run.model) / "preparation" / "preparation.json"
    assert json.loads(saved.read_text())["spec"]["input"]["options"]["password"] == REDACTED
    summary = json.loads(Path(run.summary).read_text())
    assert summary["tracking"]["status"] == "ok", summary["tracking"]
    # score reads the raw data again from the saved spec, without the credentials
    assert score.main(["--model", str(out), "--input", transactions,
                       "--output", str(tmp_path / "scored"), "--run-date", "2026-11-02",
                       "--gpu", "off"]) == 0  # fmt: skip

    printed = capsys.readouterr()
    assert "hunter2" not in printed.out + printed.err
    leaks = _leaks(prepared) + _leaks(out) + _leaks(store) + _leaks(tmp_path / "scored")
    assert leaks == []
    assert (store / "mlflow.db").stat().st_size > 0  # the store was written, and holds none
