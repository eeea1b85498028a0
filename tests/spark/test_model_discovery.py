"""score --model ROOT finds the newest published saved pipeline under ROOT (run folders
published by their records, and dates of the layout before them under ROOT/models), locally and
through Hadoop's FileSystem (the path taken for s3:// and hdfs:// roots); publishing and cleaning
keep the current run and the one it replaced."""

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


def _run_folder(root, date, run_id, version="v"):
    """A complete run folder of the current layout (unpublished until publish())."""
    from spark_clustering.jobs.publish import run_outputs

    run = run_outputs(str(root), date, run_id)
    model = root / "runs" / f"run_date={date}" / f"run-{run_id}" / "model"
    model.mkdir(parents=True)
    (model / PIPELINE_FILE).write_text(f'{{"run_id": "{run_id}", "model_version": "{version}"}}')
    return run


def _layouts(spark, root, prefix):
    """Two published dates, a newer date never published, a newer unpublished run of a
    published date, and a date of the layout before run folders."""
    from spark_clustering.jobs.publish import publish

    for date, run_id in (("2026-04-06", "a1"), ("2026-05-04", "b1")):
        run = _run_folder(root, date, run_id)
        publish(spark, _at(run, prefix), f"{date}-x")
    _run_folder(root, "2026-05-04", "b2")  # killed before its publication
    _run_folder(root, "2026-06-01", "c1")  # a whole date killed before its publication
    legacy = root / "models" / "run_date=2026-01-05"
    legacy.mkdir(parents=True)
    (legacy / PIPELINE_FILE).write_text('{"run_id": "old"}')


def _at(run, prefix):
    from spark_clustering.jobs.publish import run_outputs

    return run_outputs(prefix, run.run_date, run.run_id)


@pytest.mark.parametrize("through_hadoop", [False, True])
def test_published_runs_are_found_and_unpublished_ones_ignored(
    spark, tmp_path, monkeypatch, through_hadoop
):
    from spark_clustering.jobs.publish import current_run, run_dates

    prefix = str(tmp_path)
    if through_hadoop:
        monkeypatch.setattr(io, "is_local", lambda path: not path.startswith("file:"))
        prefix = f"file://{tmp_path}"
    _layouts(spark, tmp_path, prefix)
    assert run_dates(spark, prefix) == ["2026-01-05", "2026-04-06", "2026-05-04"]
    newest = f"{prefix}/runs/run_date=2026-05-04/run-b1/model"
    assert resolve_model_dir(spark, prefix) == newest
    assert resolve_model_dir(spark, f"{prefix}/runs/run_date=2026-04-06") == (
        f"{prefix}/runs/run_date=2026-04-06/run-a1/model"
    )
    legacy = current_run(spark, prefix, "2026-01-05")
    assert legacy is not None and legacy.layout == "legacy" and legacy.run_id == "old"
    assert legacy.model == f"{prefix}/models/run_date=2026-01-05"
    assert current_run(spark, prefix, "2026-06-01") is None


@pytest.mark.parametrize("through_hadoop", [False, True])
def test_publish_and_clean_keep_the_current_and_the_replaced_run(
    spark, tmp_path, monkeypatch, through_hadoop
):
    from spark_clustering.jobs.publish import clean, current_run, publish

    prefix = str(tmp_path)
    if through_hadoop:
        monkeypatch.setattr(io, "is_local", lambda path: not path.startswith("file:"))
        prefix = f"file://{tmp_path}"
    date = "2026-05-04"
    folder = tmp_path / "runs" / f"run_date={date}"
    for run_id in ("r1", "r2", "r3"):
        publish(spark, _at(_run_folder(tmp_path, date, run_id), prefix), run_id)
        run = current_run(spark, prefix, date)
        assert run is not None and run.run_id == run_id
    _run_folder(tmp_path, date, "dead")  # a killed run's folder
    (folder / "_commits" / ".tmp-0123456789ab.json").write_text("{")  # a killed publication
    writing = _run_folder(tmp_path, date, "mine")  # the caller's own run, not yet published
    removed = clean(spark, prefix, date, writing="mine")
    assert sorted(p.rsplit("/", 1)[1] for p in removed) == [
        ".tmp-0123456789ab.json", "0000000001.json", "run-dead", "run-r1",
    ]  # fmt: skip
    assert sorted(p.name for p in folder.glob("run-*")) == ["run-mine", "run-r2", "run-r3"]
    # (Hadoop's local file system adds hidden .crc files beside what it writes)
    records = (folder / "_commits").iterdir()
    assert sorted(p.name for p in records if not p.name.endswith(".crc")) == [
        "0000000002.json", "0000000003.json",
    ]  # fmt: skip
    publish(spark, _at(writing, prefix), "mine")
    clean(spark, prefix, date)
    assert sorted(p.name for p in folder.glob("run-*")) == ["run-mine", "run-r3"]
    run = current_run(spark, prefix, date)
    assert run is not None and run.run_id == "mine"


def test_republishing_a_date_of_the_old_layout_removes_its_old_directories(tmp_path):
    from spark_clustering.jobs.publish import clean, current_run, publish

    date, other = "2026-01-05", "2026-01-12"
    for d in (date, other):
        (tmp_path / "models" / f"run_date={d}").mkdir(parents=True)
        (tmp_path / "models" / f"run_date={d}" / PIPELINE_FILE).write_text('{"run_id": "old"}')
        (tmp_path / "assignments" / f"run_date={d}").mkdir(parents=True)
        (tmp_path / "runs" / f"run_date={d}").mkdir(parents=True)
        (tmp_path / "runs" / f"run_date={d}" / "summary.json").write_text("{}")
    (tmp_path / "models" / f".run_date={date}.old-0123456789ab").mkdir()  # the old code's kill
    scored = tmp_path / "assignments" / "run_date=2026-01-19"  # score's own partition
    scored.mkdir()
    (scored / "_score_summary.json").write_text("{}")
    old = current_run(None, str(tmp_path), date)
    assert old is not None and old.layout == "legacy"
    assert old.summary == f"{tmp_path}/runs/run_date={date}/summary.json"
    clean(None, str(tmp_path), date)  # nothing published in the new layout: nothing removed
    assert (tmp_path / "models" / f"run_date={date}").is_dir()
    publish(None, _run_folder(tmp_path, date, "new"), "v")
    clean(None, str(tmp_path), date)
    run = current_run(None, str(tmp_path), date)
    assert run is not None and run.run_id == "new" and run.layout == "run"
    left = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if "run-new" not in
                  str(p) and "_commits" not in str(p))  # fmt: skip
    assert left == sorted([
        "assignments", f"assignments/run_date={other}", "assignments/run_date=2026-01-19",
        "assignments/run_date=2026-01-19/_score_summary.json",
        "models", f"models/run_date={other}", f"models/run_date={other}/{PIPELINE_FILE}",
        "runs", f"runs/run_date={date}", f"runs/run_date={other}",
        f"runs/run_date={other}/summary.json",
    ])  # fmt: skip
