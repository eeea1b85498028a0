"""``spark-clustering demo``: the embedded default run (local Spark, generated data).

Until the segmentation pipeline lands, the demo is the DBSCAN demo on generated blobs.
"""

from __future__ import annotations

from typing import Any

from .dbscan_demo import add_arguments, run


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "demo", help="run the embedded default on local Spark with generated data"
    )
    add_arguments(parser)
    parser.set_defaults(func=run)
