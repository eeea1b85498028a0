"""``spark-clustering emr``: create EMR clusters and submit spark_jobs as steps.

::

    spark-clustering emr launch --config emr/launch-cpu.json [--build] [--dry-run]
    spark-clustering emr submit --cluster-id j-XXXX --job segment --config emr/launch-cpu.json \\
        [--job-config examples/segment.json] [--conf spark.x=y] [--wait] [--dry-run] [-- ARGS]

``--dry-run`` prints the exact requests (JSON) and calls nothing. The logic lives in
:mod:`spark_clustering.emr`; this module only parses arguments and prints results.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

log = logging.getLogger(__name__)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("emr", help="create EMR clusters and submit jobs as steps")
    sub = parser.add_subparsers(dest="emr_command", metavar="ACTION")

    launch = sub.add_parser("launch", help="upload artifacts and create a cluster")
    launch.add_argument("--config", required=True, help="launcher configuration (JSON)")
    launch.add_argument("--dry-run", action="store_true", help="print the requests; call nothing")
    launch.add_argument(
        "--build", action="store_true", help="build the wheel and zip into dist_dir first"
    )
    launch.set_defaults(func=run)

    submit = sub.add_parser("submit", help="add a spark-submit step for spark_jobs/<JOB>.py")
    submit.add_argument("--cluster-id", required=True, help="EMR cluster id (j-...)")
    submit.add_argument("--job", required=True, help="job name: spark_jobs/<job>.py")
    submit.add_argument("--config", required=True, help="launcher configuration (JSON)")
    submit.add_argument("--job-config", help="job configuration file to upload and pass")
    submit.add_argument(
        "--conf", action="append", default=[], metavar="KEY=VALUE", help="extra Spark setting"
    )
    submit.add_argument("--dry-run", action="store_true", help="print the requests; call nothing")
    submit.add_argument("--wait", action="store_true", help="wait for the step to finish")
    submit.add_argument("--timeout", type=float, default=3600.0, help="seconds to wait (3600)")
    submit.add_argument("--poll", type=float, default=30.0, help="seconds between checks (30)")
    submit.add_argument(
        "job_args", nargs=argparse.REMAINDER, help="arguments after -- go to the job"
    )
    submit.set_defaults(func=run)
    parser.set_defaults(func=lambda args: parser.print_help() or 2)


def _parse_conf(items: list[str]) -> dict[str, str]:
    conf = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--conf {item!r} is not valid; accepted: KEY=VALUE")
        conf[key] = value
    return conf


def run(args: argparse.Namespace) -> int:
    from spark_clustering.emr import launcher, packaging
    from spark_clustering.emr.config import load_launch_config

    try:
        config = load_launch_config(args.config)
        if args.emr_command == "launch":
            if args.build:
                packaging.build_dist(config.dist_dir)
            plan = launcher.plan_launch(config)
        else:
            extra = list(args.job_args)
            if extra[:1] == ["--"]:
                extra = extra[1:]
            plan = launcher.plan_submit(
                config,
                args.cluster_id,
                args.job,
                Path(args.job_config) if args.job_config else None,
                extra,
                _parse_conf(args.conf),
            )
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.dry_run:
        print(plan.to_json())
        return 0
    clients = launcher.make_clients(config)
    if args.emr_command == "launch":
        cluster_id = launcher.execute_launch(plan, clients)
        print(f"cluster {cluster_id} created; logs: {config.log_uri.rstrip('/')}/{cluster_id}/")
        return 0
    report = launcher.execute_submit(
        plan, clients, config.log_uri, wait=args.wait, timeout_s=args.timeout, poll_s=args.poll
    )
    print(report.describe())
    if not args.wait:
        return 0
    return 0 if report.ok else 1
