"""``spark-clustering score --model PATH --input PATH --output PATH``: scheduled scoring.

Reapplies a pipeline saved by ``segment`` (preparation when it ran on raw data, reducer,
clusterer) to new data and writes assignments the way ``segment`` does, into
``<output>/run_date=YYYY-MM-DD/`` (pass ``<segment output>/assignments`` to extend that table):
the partition is written into a hidden temporary sibling and renamed into place, so a rerun of a
run date replaces it and a failed run leaves the previous one. DBSCAN places each customer in the
cluster of its closest core point within eps (noise otherwise), KMeans in its closest centre,
the Gaussian mixture in its most probable component. Exit code 0 on success, 2 on bad arguments
or input (missing model, missing columns), 1 on any other failure, with one ``error:`` line.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import sys
import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .drift import EXIT_DRIFT, Thresholds
from .entry import guarded, job_main
from .pipeline import Stages

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import DataFrame, SparkSession

log = logging.getLogger(__name__)


DEFAULT_THRESHOLDS = Thresholds()


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``score`` sub-command."""
    p = subparsers.add_parser(
        "score",
        help="place new customers into the segments of a saved segment pipeline",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    _arguments(p)
    p.set_defaults(func=run)
    return p


def _arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--model",
        required=True,
        help="a segment output directory (its latest models/run_date=...) or one such directory",
    )
    p.add_argument(
        "--input",
        required=True,
        help="new data: features Parquet (<id>, features) or, for a pipeline fitted on raw "
        "data, raw data in the format of its preparation spec",
    )
    p.add_argument("--output", required=True, help="assignments table (partitioned by run_date)")
    p.add_argument("--run-date", default=None, help="partition to write (default: today, UTC)")
    p.add_argument("--master", default=None, help="Spark master (default: spark-submit's)")
    p.add_argument("--gpu", choices=("auto", "on", "off"), default="auto", help="RAPIDS plugin")
    p.add_argument(
        "--drift-psi",
        type=float,
        default=DEFAULT_THRESHOLDS.psi,
        help="a feature (or the distance to the segment) drifts above this PSI "
        f"(default {DEFAULT_THRESHOLDS.psi})",
    )
    p.add_argument(
        "--drift-noise",
        type=float,
        default=DEFAULT_THRESHOLDS.noise_increase,
        help="drift when the noise share exceeds the fit's by more than this "
        f"(default {DEFAULT_THRESHOLDS.noise_increase})",
    )
    p.add_argument("--no-drift-check", action="store_true",
                   help="do not compare the input with the model's drift reference")  # fmt: skip


def _read_input(
    spark: SparkSession, root: str, meta: dict[str, Any], path: str
) -> tuple[DataFrame, str]:
    """``(<id>, features)`` rows of the new data, and the id column."""
    from pyspark.sql import functions as F

    id_col = meta["id_col"]
    if meta["input_kind"] == "raw":
        from spark_clustering.features.io import read_input
        from spark_clustering.features.prepare import apply_saved_preparation, load_preparation
        from spark_clustering.features.spec import InputSpec
        from spark_clustering.redact import REDACTED

        _, prep = load_preparation(spark, f"{root}/preparation")
        source = prep["spec"]["input"]
        # credentials were never saved: the Spark / Hadoop configuration supplies them
        options = {k: v for k, v in (source.get("options") or {}).items() if v != REDACTED}
        # read as prepare reads (Parquet timestamps of any unit, a missing path named)
        raw = read_input(spark, InputSpec(path=path, format=source.get("format") or "parquet",
                                          options=options))  # fmt: skip
        return apply_saved_preparation(spark, f"{root}/preparation", raw), id_col
    df = spark.read.parquet(path)
    features_col = meta.get("features_col", "features")
    missing = [c for c in (id_col, features_col) if c not in df.columns]
    if missing:
        raise ValueError(f"{path} has no column(s) {missing}; columns: {df.columns}")
    return df.select(id_col, F.col(features_col).alias("features")), id_col


def run_score(
    spark: SparkSession,
    model: str,
    input_path: str,
    output: str,
    *,
    run_date: str | None = None,
    run_id: str | None = None,
    thresholds: Thresholds | None = DEFAULT_THRESHOLDS,
) -> dict[str, Any]:
    """Score ``input_path`` with the saved pipeline ``model``; returns a summary.

    The scored features are compared with the model's drift reference
    (:mod:`spark_clustering.jobs.drift`) unless ``thresholds`` is None; ``summary["drift"]``
    says what was found (``drifted``, ``reasons``, every PSI). Drift never stops the scoring.

    Raises ``ValueError`` on a path that holds no saved pipeline or input without the columns
    it needs; nothing is committed then.

    Examples
    --------
    >>> run_score(spark, "s3://b/segments", "s3://b/features/2026-12/",
    ...           "s3://b/segments/assignments", run_date="2026-12-01")  # doctest: +SKIP
    """
    from pyspark import StorageLevel

    from . import drift
    from .identity import FILE, with_segment_ids
    from .io import atomic_output
    from .pipeline import (
        apply_pipeline,
        assignments,
        load_pipeline,
        read_json,
        select_features,
        write_json,
    )
    from .segment_config import check_run_date

    run_date = check_run_date(run_date or dt.datetime.now(dt.timezone.utc).date().isoformat())
    run_id = run_id or uuid.uuid4().hex
    stages = Stages("score")
    with stages.stage("load pipeline"):
        root, meta = load_pipeline(spark, model)
    target = f"{output.rstrip('/')}/run_date={run_date}"
    with stages.stage("read and prepare input") as info:
        features, id_col = _read_input(spark, root, meta, input_path)
        features = features.persist(StorageLevel.MEMORY_AND_DISK)
        info["rows"] = n = features.count()
    try:
        with stages.stage(f"apply {meta['reducer']} + {meta['clusterer']}") as info:
            clustered = apply_pipeline(spark, root, meta, features)
            version = meta["model_version"]
            assigned = assignments(clustered, id_col, meta["clusterer"], run_id, version)
            # the fitted run's segment ids (a model from before segment ids: the cluster id)
            record = read_json(spark, f"{root}/{FILE}")
            assigned = with_segment_ids(assigned, id_col, record)
            assigned = assigned.persist(StorageLevel.MEMORY_AND_DISK)
            info["rows"] = assigned.count()
        reference = read_json(spark, f"{root}/{drift.FILE}")
        checked = None
        if reference is not None and thresholds is not None:
            with stages.stage("drift") as info:
                model_input = select_features(features, meta.get("select"))
                checked = drift.compare(reference, model_input, "features", assigned, thresholds)
                info["rows"] = n
        counts = assigned.groupBy("cluster").count().collect()
        sizes = {int(r["cluster"]): int(r["count"]) for r in counts}
        summary = {
            "run_id": run_id,
            "run_date": run_date,
            "model": root,
            "model_version": meta["model_version"],
            "input": input_path,
            "output": target,
            "customers": n,
            "cluster_sizes": dict(sorted(sizes.items())),
            "n_noise": sizes.get(-1, 0),
            "drift": checked
            if checked is not None
            else {"checked": False, "why": "off" if thresholds is None else "no reference"},
        }
        with atomic_output(spark, target) as tmp, stages.stage("write assignments") as info:
            from spark_clustering.redact import redact

            assigned.write.mode("overwrite").parquet(tmp)
            summary["stages"] = {"seconds": stages.timings, "rows": stages.rows}
            write_json(spark, redact(summary), tmp, "_score_summary.json")
            info["rows"] = n
        assigned.unpersist()
    finally:
        features.unpersist()
    log.info(
        "score: %d customers into %d clusters (%d noise) with model %s; wrote %s",
        n,
        len([c for c in sizes if c != -1]),
        summary["n_noise"],
        meta["model_version"],
        target,
    )
    return summary


def run(args: argparse.Namespace) -> int:
    """Run the sub-command: 0 on success, 2 on bad arguments or input, 1 on any failure."""
    from .segment_config import check_run_date

    try:
        if args.run_date is not None:
            check_run_date(args.run_date)
    except ValueError as exc:
        print(f"error: score: --run-date {exc}", file=sys.stderr)
        return 2
    thresholds = None if args.no_drift_check else Thresholds(args.drift_psi, args.drift_noise)
    try:
        if thresholds is not None:
            thresholds.check()
    except ValueError as exc:
        print(f"error: score: {exc}", file=sys.stderr)
        return 2
    from .entry import start_spark

    def score() -> dict[str, Any]:
        spark = start_spark("spark-clustering-score", master=args.master, gpu=args.gpu)
        return run_score(spark, args.model, args.input, args.output, run_date=args.run_date,
                         thresholds=thresholds)  # fmt: skip

    summary, code = guarded("score", score, ", previous outputs kept")
    if summary is None:
        return code
    print(f"score: {summary['customers']} customers written to {summary['output']}")
    found = summary.get("drift") or {}
    if found.get("drifted"):
        print(f"score: drift: {'; '.join(found['reasons'])} (exit code {EXIT_DRIFT})")
        return EXIT_DRIFT
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``spark_jobs/score_customers.py``; returns the exit code."""
    return job_main("score_customers", __doc__, _arguments, run, argv)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
