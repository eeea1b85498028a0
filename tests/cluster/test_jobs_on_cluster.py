"""Every ``spark_jobs/*.py`` on the two-worker standalone cluster, compared with ``local[2]``.

Each case prepares its input once with the test session, submits the same job with the same
arguments to ``local[2]`` and to the cluster (executors import the package only from the
``--py-files`` zip), proves from the event log and the master's JSON that the cluster run was a
cluster application whose tasks ran in both workers' executors, and asserts that both runs wrote
the same results: the same rows and cluster ids, the same eps, the same metrics.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from submit_support import event_logs, spark_submit, tail, tasks_per_executor

pytestmark = [pytest.mark.spark, pytest.mark.slow, pytest.mark.cluster]

ROOT = Path(__file__).resolve().parents[2]
SPARK_JOBS = ROOT / "spark_jobs"
RUN_DATE = "2026-11-01"

#: summary keys that may differ between two runs of the same job (where, when, how long)
VOLATILE = {
    "run_id", "model_version", "elapsed_s", "started", "finished", "timings", "stages_s",
    "assignments_path", "model_path", "report_path", "output", "paths", "spark", "tracking",
    "created", "duration_s", "seconds", "config", "input_path", "output_path", "record",
}  # fmt: skip


@dataclass(frozen=True)
class Case:
    """One job on both masters: its script, its arguments (given the run's own output folder and
    the shared input folder) and a function reading the results to compare."""

    script: str
    args: Callable[[Path, Path], list[str]]
    results: Callable[[Any, Path, Any], dict[str, Any]]
    setup: Callable[[Any, Path], Any] | None = None
    stdout: tuple[str, ...] = field(default=())
    #: also run on local[1]: one task at a time, partitions of another size
    local_1: bool = False


#: Floats may differ in their last bits: Spark merges partial sums (means, the metrics' sums of
#: squares) in the order shuffle blocks arrive, which is not fixed even on one master. Everything
#: else (ids, cluster labels, counts, eps, which rows were sampled) must be identical.
REL_TOL = 1e-9


def same(a: Any, b: Any) -> bool:
    """Equal, with floats equal to :data:`REL_TOL` (NaN equal to NaN)."""
    if isinstance(a, float) and isinstance(b, float):
        return a == b or math.isclose(a, b, rel_tol=REL_TOL) or (a != a and b != b)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def first_difference(a: Any, b: Any, where: str = "") -> str:
    if isinstance(a, dict) and isinstance(b, dict) and a.keys() == b.keys():
        for k in a:
            if not same(a[k], b[k]):
                return first_difference(a[k], b[k], f"{where}.{k}")
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            if not same(x, y):
                return first_difference(x, y, f"{where}[{i}]")
    return f"{where or 'value'}: {a!r} != {b!r}"


def _scrub(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _scrub(v) for k, v in obj.items() if k not in VOLATILE}
    if isinstance(obj, list):
        return [_scrub(v) for v in obj]
    return obj


#: columns of written rows that name the run rather than the result
RUN_COLUMNS = ("run_id", "model_version", "run_date")


def _rows(spark: Any, path: Path) -> list[tuple]:
    df = spark.read.parquet(str(path))
    df = df.select(*[c for c in df.columns if c not in RUN_COLUMNS])
    out = []
    for row in df.collect():
        out.append(tuple(tuple(v.toArray()) if hasattr(v, "toArray") else v for v in row))
    return sorted(out, key=repr)


def _features_input(spark: Any, data: Path) -> None:
    from segment_data import blobs, write_features

    ids, x, _ = blobs(60, seed=4)
    write_features(spark, data / "features", ids, x)


def _segment_config(reducer: str, clusterer: str) -> Callable[[Any, Path], Any]:
    def setup(spark: Any, data: Path) -> None:
        from segment_data import write_config

        _features_input(spark, data)
        write_config(data / "segment.toml", str(data / "features"), str(data / "unused"),
                     reducer=reducer, clusterer=clusterer)  # fmt: skip

    return setup


def _segment_results(spark: Any, out: Path, proc: Any) -> dict[str, Any]:
    from spark_clustering.jobs.publish import current_run

    run = current_run(None, str(out / "segments"), RUN_DATE)
    assert run is not None, f"no published run of {RUN_DATE} under {out / 'segments'}"
    summary = json.loads(Path(run.summary).read_text())
    assignments = Path(run.assignments)
    results = {"summary": _scrub(summary), "rows": _rows(spark, assignments)}
    if (Path(run.path) / "transitions").is_dir():  # a re-fit: its matrix and segment record
        results["transitions"] = _rows(spark, Path(run.path) / "transitions")
        results["segments"] = _scrub(json.loads((Path(run.model) / "segments.json").read_text()))
    return results


def _segment_args(data: Path, out: Path) -> list[str]:
    return ["--config", str(data / "segment.toml"), "--output", str(out / "segments"),
            "--run-date", RUN_DATE, "--gpu", "off"]  # fmt: skip


def _generated(spark: Any, data: Path) -> None:
    from spark_clustering.features.generate import generate_transactions

    generate_transactions(spark, 300, str(data / "generated"), seed=3)


def _raw_segment_setup(spark: Any, data: Path) -> None:
    """The quick start's pipeline at a size where layout noise used to show: transactions of
    3,000 customers, prepared by examples/prepare.toml inside the job, UMAP to 3-D, DBSCAN."""
    from segment_data import write_config
    from spark_clustering.features.generate import generate_transactions

    generate_transactions(spark, 3000, str(data / "generated"), seed=5)
    spec = ROOT / "examples" / "prepare.toml"
    write_config(
        data / "segment.toml", str(data / "generated" / "transactions"), str(data / "unused"),
        input=f'path = "{data / "generated" / "transactions"}"\nkind = "raw"\nspec = "{spec}"',
        reducer='algorithm = "umap"\nparams = { nComponents = 3, nNeighbors = 15, minDist = 0.0,'
        " sampleSize = 1500, seed = 0 }",
        clusterer='algorithm = "dbscan"\nparams = { eps = "auto", minPoints = 10 }',
    )  # fmt: skip


def _refit_setup(spark: Any, data: Path) -> None:
    """A run of an earlier date published (in this process) under each master's output root, so
    that the job re-fits: 90% of the customers again plus 30 new ones, new measurements. The
    re-fit is the recipe's PCA (to 2-D) and KMeans path, segment ids and transitions besides."""
    import numpy as np

    from segment_data import blobs, write_config, write_features
    from spark_clustering.jobs.segment import run_segment
    from spark_clustering.jobs.segment_config import load_config

    ids, x, _ = blobs(60, seed=4)
    write_features(spark, data / "before", ids, x)
    keep = np.random.default_rng(5).random(len(ids)) > 0.1
    _, moved, _ = blobs(60, seed=6)
    write_features(spark, data / "features", np.concatenate([ids[keep], np.arange(900, 930)]),
                   np.vstack([moved[keep], moved[:30]]))  # fmt: skip
    kmeans = 'algorithm = "kmeans"\nparams = { k = 3, seed = 7 }'
    write_config(data / "segment.toml", str(data / "features"), str(data / "unused"),
                 clusterer=kmeans)  # fmt: skip
    for label in ("local", "cluster"):
        root = data.parent / label / "segments"
        config = write_config(data / f"before-{label}.toml", str(data / "before"), str(root))
        run_segment(spark, load_config(config, overrides={"run_date": "2026-10-01"}))


def _refit_results(spark: Any, out: Path, proc: Any) -> dict[str, Any]:
    results = _segment_results(spark, out, proc)
    record = results.get("segments")
    assert record is not None, f"no re-fit under {out}: no transitions/ next to the run"
    assert record["method"] == "overlap" and record["counts"]["kept"] == 3, record
    return results


def _prepare_results(spark: Any, out: Path, proc: Any) -> dict[str, Any]:
    report = json.loads((out / "prepared" / "preparation.json").read_text())
    return {"report": _scrub(report), "rows": _rows(spark, out / "prepared" / "features")}


def _scored_setup(spark: Any, data: Path) -> None:
    """Features and a model fitted once (locally): both masters score with the same model."""
    from segment_data import write_config
    from spark_clustering.jobs.segment import run_segment
    from spark_clustering.jobs.segment_config import load_config

    _features_input(spark, data)
    config = write_config(data / "segment.toml", str(data / "features"), str(data / "model"),
                          reducer='algorithm = "umap"\nparams = { nComponents = 2, '
                          "nNeighbors = 10, sampleSize = 150, seed = 3 }")  # fmt: skip
    run_segment(spark, load_config(config, overrides={"run_date": RUN_DATE}))


def _score_results(spark: Any, out: Path, proc: Any) -> dict[str, Any]:
    return {"rows": _rows(spark, out / "scored" / "run_date=2026-11-02")}


def _sweep_setup(spark: Any, data: Path) -> None:
    _features_input(spark, data)
    (data / "sweep.toml").write_text(
        f'run_date = "{RUN_DATE}"\n[input]\npath = "{data / "features"}"\n'
        '[output]\npath = "unused"\nscatter_sample = 100\n'
        '[search]\nreducers = [{ algorithm = "pca", params = { k = 2 } }]\n'
        'clusterers = [{ algorithm = "kmeans", params = { k = [2, 3], seed = 1 } },\n'
        '  { algorithm = "dbscan", params = { eps_multiples = [1.0, 2.0], minPoints = 5 } }]\n'
    )


def _sweep_results(spark: Any, out: Path, proc: Any) -> dict[str, Any]:
    # "sweep: 4 trials run, 0 skipped, 0 failed; best silhouette=0.7 (label); report: PATH"
    (line,) = [ln for ln in proc.stdout.splitlines() if ln.startswith("sweep: ") and " run, " in ln]
    outcome = line.split("; report: ")[0]
    return {"outcome": [outcome], **_segment_results(spark, out, proc)}


def _demo_results(spark: Any, out: Path, proc: Any) -> dict[str, Any]:
    lines = [ln for ln in proc.stdout.splitlines() if "clusters found" in ln or "Rand" in ln]
    return {"lines": lines}


CASES: dict[str, Case] = {
    "prepare": Case(
        "prepare_features",
        lambda d, o: [
            "--config",
            str(ROOT / "examples" / "prepare.toml"),
            "--input",
            str(d / "generated" / "transactions"),
            "--output",
            str(o / "prepared"),
            "--gpu",
            "off",
        ],
        _prepare_results,
        setup=_generated,
    ),
    "segment-umap-dbscan": Case(
        "segment_customers",
        _segment_args,
        _segment_results,
        setup=_segment_config(
            'algorithm = "umap"\nparams = { nComponents = 2, nNeighbors = 10, sampleSize = 150,'
            " seed = 3 }",
            'algorithm = "dbscan"\nparams = { eps = "auto", minPoints = 5 }',
        ),
        stdout=("segment:", "report:"),
        local_1=True,
    ),
    "segment-from-transactions": Case(
        "segment_customers",
        _segment_args,
        _segment_results,
        setup=_raw_segment_setup,
        stdout=("segment:", "report:"),
    ),
    "segment-refit": Case(
        "segment_customers",
        _segment_args,
        _refit_results,
        setup=_refit_setup,
        stdout=("segment:", "report:"),
    ),
    "segment-gmm": Case(
        "segment_customers",
        # the default --gpu (auto) resolves to the CPU path on both masters
        lambda d, o: _segment_args(d, o)[:-2],
        _segment_results,
        setup=_segment_config(
            'algorithm = "none"', 'algorithm = "gmm"\nparams = { k = 3, seed = 7 }'
        ),
    ),
    "score": Case(
        "score_customers",
        lambda d, o: [
            "--model",
            str(d / "model"),
            "--input",
            str(d / "features"),
            "--output",
            str(o / "scored"),
            "--run-date",
            "2026-11-02",
        ],
        _score_results,
        setup=_scored_setup,
        stdout=("score:",),
    ),
    "sweep": Case(
        "sweep",
        lambda d, o: [
            "--config",
            str(d / "sweep.toml"),
            "--output",
            str(o / "segments"),
            "--gpu",
            "off",
        ],
        _sweep_results,
        setup=_sweep_setup,
        stdout=("sweep: 4 trials run",),
    ),
    "dbscan-demo": Case(
        "dbscan_demo",
        lambda d, o: ["--points", "3000", "--eps", "0.6", "--min-points", "10"],
        _demo_results,
        stdout=("clusters found:",),
    ),
}


def test_every_job_script_runs_on_the_cluster() -> None:
    scripts = {p.stem for p in SPARK_JOBS.glob("*.py") if not p.name.startswith("_")}
    covered = {case.script for case in CASES.values()}
    assert scripts <= covered, f"spark_jobs without a cluster case: {sorted(scripts - covered)}"


@pytest.mark.parametrize("name", sorted(CASES))
def test_job_on_cluster_equals_local(
    name: str, cluster, worker_python: str, pyfiles_zip: Path, spark, tmp_path: Path
) -> None:
    case = CASES[name]
    data = tmp_path / "data"
    data.mkdir()
    if case.setup is not None:
        case.setup(spark, data)
    results = {}
    masters = [("local", "local[2]"), ("cluster", cluster.master_url)]
    if case.local_1:
        masters.append(("local1", "local[1]"))
    for label, master in masters:
        out = tmp_path / label
        out.mkdir(exist_ok=True)  # a setup may have published an earlier run there
        events = tmp_path / f"events-{label}"
        proc = spark_submit(SPARK_JOBS / f"{case.script}.py", case.args(data, out), pyfiles_zip,
                            out, master=master, worker_python=worker_python,
                            event_dir=events)  # fmt: skip
        # spark-submit's PythonRunner merges the driver's stderr into stdout
        output = proc.stdout + proc.stderr
        assert proc.returncode == 0, f"{name} on {label} failed:\n{tail(output, 60)}"
        for text in case.stdout:
            assert text in proc.stdout, f"{name} on {label} did not print {text!r}"
        (log,) = event_logs(events)
        app_id, ran_on, tasks = tasks_per_executor(log)
        assert ran_on == master, f"{name} on {label} ran on {ran_on!r}"
        if label == "cluster":
            assert "driver" not in tasks, f"tasks ran inside the driver: {dict(tasks)}"
            assert len(tasks) >= 2, f"tasks ran in one executor only: {dict(tasks)}"
            finished = {a["id"]: a["state"] for a in cluster.state()["completedapps"]}
            assert finished.get(app_id) == "FINISHED", f"{app_id} not finished: {finished}"
        else:
            assert set(tasks) == {"driver"}, dict(tasks)
        results[label] = case.results(spark, out, proc)
    for label in [m[0] for m in masters[1:]]:
        for key, local in results["local"].items():
            other = results[label][key]
            why = first_difference(local, other)
            assert same(local, other), f"{key} differs between local[2] and {label}: {why}"
