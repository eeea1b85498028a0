"""``spark-clustering`` command line: one sub-command per job.

Each sub-command lives in its own module that defines ``add_parser(subparsers)``; the parser
sets ``func`` to a callable taking the parsed arguments and returning an exit code. Modules are
imported only when the CLI starts, and none of them imports Spark at module level.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import logging
import sys
from collections.abc import Sequence

#: sub-command -> module defining ``add_parser``; a module not (yet) present is left out.
COMMANDS: dict[str, str] = {
    "demo": "spark_clustering.jobs.demo",
    "dbscan-demo": "spark_clustering.jobs.dbscan_demo",
    "generate": "spark_clustering.jobs.generate",
    "prepare": "spark_clustering.jobs.prepare",
    "segment": "spark_clustering.jobs.segment",
    "sweep": "spark_clustering.jobs.sweep",
    "score": "spark_clustering.jobs.score",
    "leaderboard": "spark_clustering.jobs.leaderboard",
    "transitions": "spark_clustering.jobs.transitions",
    "history": "spark_clustering.jobs.history",
    "emr": "spark_clustering.jobs.emr",
    "sagemaker": "spark_clustering.jobs.sagemaker",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="spark-clustering",
        description="Customer segmentation on Apache Spark.",
    )
    parser.add_argument("--log-level", default="INFO", help="Python log level (default INFO)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in COMMANDS.values():
        if importlib.util.find_spec(module_name) is None:
            continue
        importlib.import_module(module_name).add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, str(args.log_level).upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    from spark_clustering.jobs.entry import run_reported

    # one 'error:' line and no stack trace for anything a sub-command lets through
    return run_reported(str(args.command), args.func, args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
