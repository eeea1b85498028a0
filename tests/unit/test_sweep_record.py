"""The sweep's record of completed trials (local file system, no Spark): round trip, atomic
replace, leftovers of a killed replace, redaction, and no stale temporary files."""

from __future__ import annotations

import json
import os

import pytest

from spark_clustering.jobs.sweep_record import SweepRecord, record_path
from spark_clustering.redact import REDACTED


def test_round_trip_and_redaction(tmp_path):
    out = str(tmp_path / "out")
    record = SweepRecord.load(None, out, "exp 1")
    assert record.trials == {} and record.metrics() == {}
    record.add("h1", "pca-k2-kmeans-k2", {"silhouette": 0.5},
               {"input.path": "s3a://ana:hunter2@bucket/x", "password": "hunter2"})  # fmt: skip
    record.add("h2", "pca-k2-kmeans-k3", {"silhouette": 0.7}, {"clusterer_params.k": 3})
    path = tmp_path / "out" / "sweep_trials" / "exp_1.json"
    assert record.path == record_path(out, "exp 1") == str(path)
    assert "hunter2" not in path.read_text()
    again = SweepRecord.load(None, out, "exp 1")
    assert again.metrics() == {"h1": {"silhouette": 0.5}, "h2": {"silhouette": 0.7}}
    assert again.trials["h1"]["params"]["password"] == REDACTED
    assert [n for n in os.listdir(path.parent)] == ["exp_1.json"]  # no temporary file left
    assert SweepRecord.load(None, out, "other").trials == {}  # one record per experiment


def test_a_replace_never_shows_a_partial_file(tmp_path, monkeypatch):
    out = str(tmp_path / "out")
    record = SweepRecord.load(None, out, "exp")
    record.add("h1", "a", {"silhouette": 0.5}, {})
    before = (tmp_path / "out" / "sweep_trials" / "exp.json").read_text()

    def killed(src, dst):  # the process dies between writing the new file and the rename
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        record.add("h2", "b", {"silhouette": 0.6}, {})
    monkeypatch.undo()
    assert (tmp_path / "out" / "sweep_trials" / "exp.json").read_text() == before
    assert set(SweepRecord.load(None, out, "exp").trials) == {"h1"}
    SweepRecord.load(None, out, "exp").add("h3", "c", {"silhouette": 0.1}, {})
    assert os.listdir(tmp_path / "out" / "sweep_trials") == ["exp.json"]  # leftover cleaned


def test_leftovers_are_read_when_the_record_is_missing(tmp_path):
    """On HDFS/S3 the old file is deleted before the rename: a kill there leaves only the
    temporary file, which the next run reads."""
    folder = tmp_path / "out" / "sweep_trials"
    folder.mkdir(parents=True)
    doc = {"format_version": 1, "experiment": "exp",
           "trials": {"h1": {"label": "a", "metrics": {"silhouette": 0.5}}}}  # fmt: skip
    (folder / ".exp.json.tmp-0123456789ab").write_text(json.dumps(doc))
    (folder / ".exp.json.tmp-partial00000").write_text('{"format_version": 1, "tri')
    assert SweepRecord.load(None, str(tmp_path / "out"), "exp").metrics() == {
        "h1": {"silhouette": 0.5}
    }
