"""``spark-clustering prepare --config FILE``: the feature preparation job.

Reads the TOML spec (validated before Spark starts), runs
:func:`spark_clustering.features.prepare.prepare_features`, and writes features, the fitted
``PipelineModel``, ``preparation.json``, the report and ``summary.json`` (the job's run id, the
counts and its tracking run) atomically: into a temporary sibling of the output directory,
renamed into place only when everything is written. Bad input the spec does not allow ends the
job with exit code 2 and one clear error line, no output written.

With ``--tracking`` the run is recorded as a trial: the spec, the raw input as a data set, the
counts and the report (see docs/tracking.md).
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .entry import guarded, job_main

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import DataFrame, SparkSession

log = logging.getLogger(__name__)


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``prepare`` sub-command."""
    p = subparsers.add_parser(
        "prepare",
        help="prepare a features column from raw customer data (declarative TOML spec)",
        description=(
            "Aggregate, clean, scale and assemble raw customer data into (id, features) as the "
            "TOML spec says; write features, the fitted scaling PipelineModel and a report "
            "(correlation, PCA, charts) atomically. See docs/features.md."
        ),
    )
    _arguments(p)
    p.set_defaults(func=run)
    return p


def _arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", required=True, help="the TOML spec (see examples/prepare.toml)")
    p.add_argument("--input", default=None, help="override input.path")
    p.add_argument("--output", default=None, help="override output.path")
    p.add_argument("--master", default=None, help="Spark master (default: spark-submit's)")
    p.add_argument(
        "--gpu",
        choices=("auto", "on", "off"),
        default="auto",
        help="RAPIDS Accelerator: auto (jar and GPU present), on, off (default auto)",
    )
    p.add_argument(
        "--conf", action="append", default=[], metavar="KEY=VALUE", help="extra Spark setting"
    )
    from spark_clustering.tracking.config import BACKEND_CHOICES

    group = p.add_argument_group("experiment tracking (see docs/tracking.md)")
    group.add_argument("--tracking", choices=BACKEND_CHOICES, default=None,
                       help="record the run (default: not recorded)")  # fmt: skip
    group.add_argument("--tracking-uri", default=None, help="MLflow tracking URI")
    group.add_argument("--experiment", default=DEFAULT_EXPERIMENT,
                       help=f"experiment name (default {DEFAULT_EXPERIMENT})")  # fmt: skip
    group.add_argument("--trial", default=None, help="trial name (default prepare-<output>)")


DEFAULT_EXPERIMENT = "customer-segmentation"


def tracking_from_args(args: argparse.Namespace) -> dict[str, Any] | None:
    """The ``tracking`` argument of :func:`run_prepare` the command line gives (None: off)."""
    if getattr(args, "tracking", None) is None:
        return None
    options = {"backend": args.tracking, "experiment": args.experiment, "trial": args.trial,
               "tracking_uri": args.tracking_uri}  # fmt: skip
    return {k: v for k, v in options.items() if v is not None}


def gpu_summary(spark: SparkSession, df: DataFrame | None = None) -> dict[str, Any]:
    """Whether the RAPIDS Accelerator ran this job, and which operators stayed on the CPU.

    The per-operator view comes from the executed plan of ``df`` (``Gpu*`` operators ran on
    the GPU); the plugin's own ``spark.rapids.sql.explain=NOT_ON_GPU`` reasons are in the
    driver log.
    """
    from spark_clustering.session import RAPIDS_PLUGIN, gpu_fallbacks, rapids_enabled

    active = rapids_enabled(spark)
    out: dict[str, Any] = {"rapids_enabled": active}
    if not active:
        log.info("ran on the CPU: the RAPIDS Accelerator plugin is not enabled")
        return out
    if df is not None:
        try:
            plan = df._jdf.queryExecution().executedPlan().toString()
        except Exception as exc:  # a plan string is diagnostics only
            log.debug("could not read the executed plan: %s", exc)
            plan = ""
        on_gpu, on_cpu = gpu_fallbacks(plan)
        out.update(gpu_operators=sorted(set(on_gpu)), cpu_fallbacks=sorted(set(on_cpu)))
        log.info(
            "RAPIDS Accelerator active: %d operator(s) on the GPU; fell back to the CPU: %s "
            "(reasons: spark.rapids.sql.explain=NOT_ON_GPU lines in the driver log)",
            len(on_gpu),
            sorted(set(on_cpu)) or "none",
        )
    else:
        log.info("RAPIDS Accelerator active (spark.plugins=%s)", RAPIDS_PLUGIN)
    return out


def run_prepare(
    config: str,
    *,
    input_path: str | None = None,
    output_path: str | None = None,
    spark: SparkSession | None = None,
    master: str | None = None,
    gpu: str = "auto",
    conf: Mapping[str, str] | None = None,
    tracking: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Run the preparation job; returns a summary. Raises ``ValueError`` on bad spec/input.

    ``tracking``: options of ``spark_clustering.tracking.trial`` (``backend``, ``experiment``,
    ``trial``, ``tracking_uri``...); None records nothing.
    """
    from spark_clustering import tracking as tr
    from spark_clustering.features.prepare import prepare_features
    from spark_clustering.features.spec import load_spec
    from spark_clustering.jobs.entry import start_spark
    from spark_clustering.jobs.io import atomic_output
    from spark_clustering.jobs.segment_config import input_path_problem, output_path_problem
    from spark_clustering.redact import redact
    from spark_clustering.tracking.core import health_scope

    from .lineage import PREPARE_SUMMARY, log_preparation, preparation_counts
    from .pipeline import write_json

    spec = load_spec(config).with_paths(input_path, output_path)  # fails before Spark starts
    # paths too: a missing input or an output that is a file fails now, not after the work
    problems = [
        p
        for p in (
            input_path_problem("input.path", spec.input.path),
            output_path_problem("output.path", spec.output.path),
        )
        if p is not None
    ]
    if problems:
        raise ValueError("; ".join(problems))
    options = dict(tracking or {"backend": "none"})
    experiment = options.pop("experiment", DEFAULT_EXPERIMENT)
    name = options.pop("trial", None) or tr.sanitize_name(
        f"prepare-{spec.output.path.rstrip('/').rsplit('/', 1)[-1]}"
    )
    run_id = uuid.uuid4().hex
    start = time.perf_counter()
    if spark is None:
        spark = start_spark("spark-clustering-prepare", master=master, conf=conf, gpu=gpu)
    with (
        health_scope() as health,
        tr.trial(experiment, name, {"run_id": run_id, "job": "prepare"}, **options) as trial,
    ):
        prepared = prepare_features(spark, spec)
        try:
            table = prepared.customers
            prepared.report["runtime"] = {
                "spark_version": spark.version,
                "master": spark.sparkContext.master,
                **gpu_summary(spark, table),
            }
            log_preparation(trial, spark, prepared, spec.input.path, spec.output.path, None)
            record = {
                "job": "prepare",
                "run_id": run_id,
                "output": spec.output.path,
                "customers": prepared.report["customers"],
                "features": len(prepared.feature_names),
                "counts": preparation_counts(prepared.report),
                # what a segment run reading these features refers to
                "tracking": {"run": trial.reference()},
            }
            with atomic_output(spark, spec.output.path) as tmp:
                prepared.save(spark, tmp)
                write_json(spark, redact(record), tmp, PREPARE_SUMMARY)
            log.info("written (%.1f s)", time.perf_counter() - start)
        finally:
            prepared.unpersist()
    seconds = time.perf_counter() - start
    summary = {
        "run_id": run_id,
        "output": spec.output.path,
        "customers": prepared.report["customers"],
        "features": len(prepared.feature_names),
        "seconds": round(seconds, 2),
        "tracking": {**health.summary(), "text": health.text(), "run": record["tracking"]["run"]},
    }
    log.info(
        "prepared %d customers x %d features into %s in %.1f s",
        summary["customers"],
        summary["features"],
        spec.output.path,
        seconds,
    )
    return summary


def run(args: argparse.Namespace) -> int:
    """Run the sub-command; exit code 2 with one error line on a bad spec or bad input."""
    conf = {}
    for item in args.conf:
        key, sep, value = item.partition("=")
        if not sep:
            print(f"error: --conf {item!r}; accepted: KEY=VALUE", file=sys.stderr)
            return 2
        conf[key] = value
    _, code = guarded(
        "prepare",
        lambda: run_prepare(
            args.config,
            input_path=args.input,
            output_path=args.output,
            master=args.master,
            gpu=args.gpu,
            conf=conf,
            tracking=tracking_from_args(args),
        ),
        ", no output written",
    )
    return code


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``spark_jobs/prepare_features.py`` and ``python -m``; returns exit code."""
    return job_main("prepare_features", __doc__, _arguments, run, argv)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
