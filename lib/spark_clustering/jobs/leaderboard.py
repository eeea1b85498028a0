"""``spark-clustering leaderboard``: compare the trials of an experiment, from either backend.

Examples
--------
``spark-clustering leaderboard --experiment customer-segmentation --sort silhouette --top 10``
``spark-clustering leaderboard --experiment customer-segmentation --backend sagemaker \\
--filter 'eps<0.4' --format html --output board.html``
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any

log = logging.getLogger(__name__)

FORMATS = ("table", "csv", "json", "html")


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``leaderboard`` sub-command."""
    from ..tracking.cliargs import add_tracking_arguments

    parser: argparse.ArgumentParser = subparsers.add_parser(
        "leaderboard",
        help="one row per trial of an experiment, with parameters and final metrics, sorted",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_tracking_arguments(parser, trial=False)
    parser.add_argument(
        "--sort",
        default="silhouette",
        help="metric or column to sort by (default silhouette); 'none' keeps start order",
    )
    order = parser.add_mutually_exclusive_group()
    order.add_argument("--ascending", dest="ascending", action="store_true", default=None)
    order.add_argument("--descending", dest="ascending", action="store_false")
    parser.add_argument("--top", type=int, default=None, help="keep the first N rows")
    parser.add_argument(
        "--filter",
        dest="filters",
        action="append",
        default=[],
        metavar="EXPR",
        help="condition such as 'eps<0.4', 'status=Completed', 'features~monetary' (repeatable)",
    )
    parser.add_argument("--format", choices=FORMATS, default="table")
    parser.add_argument(
        "--chart-params",
        default=None,
        help="comma-separated parameters to chart metrics against (html; default: the "
        "numeric parameters that vary, up to 4)",
    )
    parser.add_argument("--output", default="-", help="file to write (default: stdout)")
    parser.add_argument("--region", default=None, help="AWS region (sagemaker)")
    parser.add_argument("--endpoint-url", default=None, help="AWS endpoint URL (sagemaker)")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Build, render and write the leaderboard; 0 on success, 2 on bad arguments."""
    from ..tracking.board import leaderboard, render
    from ..tracking.cliargs import tracking_options

    chart_params = [p.strip() for p in args.chart_params.split(",")] if args.chart_params else None
    try:
        frame = leaderboard(
            args.experiment,
            sort=None if str(args.sort).lower() == "none" else args.sort,
            ascending=args.ascending,
            top=args.top,
            filters=args.filters,
            **tracking_options(args),
            region=args.region,
            endpoint_url=args.endpoint_url,
        )
        text = render(frame, args.format, chart_params)
    except ValueError as exc:
        print(f"spark-clustering leaderboard: error: {exc}", file=sys.stderr)
        return 2
    if args.output == "-":
        sys.stdout.write(text)
    else:
        with open(args.output, "w", encoding="utf-8") as fh:
            fh.write(text)
        log.info("leaderboard of %d trials written to %s", len(frame), args.output)
    return 0
