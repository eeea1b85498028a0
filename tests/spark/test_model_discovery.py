"""score --model ROOT finds the newest complete saved pipeline under ROOT/models, locally and
through Hadoop's FileSystem (the path taken for s3:// and hdfs:// roots)."""

from __future__ import annotations

import pytest

from spark_clustering.jobs import io
from spark_clustering.jobs.pipeline import PIPELINE_FILE, resolve_model_dir

pytestmark = pytest.mark.spark


def _segment_output(root):
    for date, complete in (("2026-01-05", True), ("2026-02-02", True), ("2026-03-02", False)):
        run = root / "models" / f"run_date={date}"
        run.mkdir(parents=True)
        if complete:  # a run killed before its commit has no pipeline file
            (run / PIPELINE_FILE).write_text("{}")
    (root / "models" / "_tmp").mkdir()


def test_newest_complete_run_date_locally(spark, tmp_path):
    _segment_output(tmp_path)
    assert resolve_model_dir(spark, str(tmp_path)) == f"{tmp_path}/models/run_date=2026-02-02"
    exact = f"{tmp_path}/models/run_date=2026-01-05"
    assert resolve_model_dir(spark, exact) == exact


def test_newest_complete_run_date_through_hadoop_filesystem(spark, tmp_path, monkeypatch):
    _segment_output(tmp_path)
    # a file: URI treated as remote runs the same Hadoop FileSystem calls as s3a:// would
    monkeypatch.setattr(io, "is_local", lambda path: not path.startswith("file:"))
    root = f"file://{tmp_path}"
    assert io.list_dir(spark, f"{root}/models") == [
        "_tmp", "run_date=2026-01-05", "run_date=2026-02-02", "run_date=2026-03-02",
    ]  # fmt: skip
    assert io.list_dir(spark, f"{root}/missing") == []
    assert resolve_model_dir(spark, root) == f"{root}/models/run_date=2026-02-02"


def test_no_saved_pipeline_is_a_clear_error(spark, tmp_path):
    (tmp_path / "models").mkdir()
    with pytest.raises(ValueError, match="not a saved segmentation pipeline"):
        resolve_model_dir(spark, str(tmp_path))
