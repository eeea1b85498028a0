"""``spark-clustering transitions --output ROOT [--from D1] [--to D2]``: customers moving
between segments from one run date to another.

Rows are the segments of the earlier run (then noise, then ``new``: customers not in it),
columns those of the later run (then noise, then ``lost``: customers not in it). Segment ids
are the lasting ones of :mod:`spark_clustering.jobs.identity`. Default: the last two published
run dates under ``ROOT``. Computed in Spark from the two runs' published assignments.

Examples
--------
``spark-clustering transitions --output data/segments``
``spark-clustering transitions --output s3://bucket/segments --from 2026-11-01 --to 2026-12-01
--format csv``
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import SparkSession

FORMATS = ("table", "csv", "json")


HELP = "customers moving between segments from one run date to another"


def _arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--output", required=True, help="the segment job's [output] path (the root)")
    p.add_argument("--from", dest="from_date", default=None, help="earlier run date (YYYY-MM-DD)")
    p.add_argument("--to", dest="to_date", default=None, help="later run date (YYYY-MM-DD)")
    p.add_argument("--format", choices=FORMATS, default="table")
    p.add_argument("--master", default=None, help="Spark master (default: what spark-submit set)")


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``transitions`` sub-command."""
    from .entry import add_subcommand

    return add_subcommand(
        subparsers,
        "transitions",
        "customers moving between segments from one run date to another",
        __doc__,
        _arguments,
        run,
    )


def resolve_dates(
    dates: Sequence[str], from_date: str | None, to_date: str | None
) -> tuple[str, str]:
    """The two run dates to compare: the given ones, else the last two published ones."""
    if to_date is None:
        later = [d for d in dates if from_date is None or d > from_date]
        if not later:
            raise ValueError(f"no published run date after {from_date}; published: {list(dates)}")
        to_date = later[-1]
    if from_date is None:
        earlier = [d for d in dates if d < to_date]
        if not earlier:
            raise ValueError(
                f"no published run date before {to_date} to compare with; published: {list(dates)}"
            )
        from_date = earlier[-1]
    for name, date in (("--from", from_date), ("--to", to_date)):
        if date not in dates:
            raise ValueError(f"{name} {date}: no published run; published: {list(dates)}")
    if from_date >= to_date:
        raise ValueError(f"--from {from_date} is not before --to {to_date}")
    return from_date, to_date


def transitions(
    spark: SparkSession, root: str, from_date: str | None = None, to_date: str | None = None
) -> dict[str, Any]:
    """``{"from_run_date", "to_run_date", "rows"}``: the transition counts of two run dates.

    Examples
    --------
    >>> transitions(spark, "data/segments")["rows"][:1]  # doctest: +SKIP
    [{'from_segment': None, 'to_segment': 0, 'customers': 212}]
    """
    from .identity import segment_assignments, transition_counts, transition_rows
    from .publish import current_run, run_dates

    root = root.rstrip("/")
    dates = run_dates(spark, root)
    first, second = resolve_dates(dates, from_date, to_date)
    runs = [current_run(spark, root, d) for d in (first, second)]
    assert runs[0] is not None and runs[1] is not None
    a, b = (segment_assignments(spark, r) for r in runs)
    id_col = a.columns[0]
    rows = transition_rows(transition_counts(a, b, id_col))
    return {"from_run_date": first, "to_run_date": second, "rows": rows}


def render(result: Mapping[str, Any], fmt: str) -> str:
    """The result as a plain-text matrix, CSV (one row per pair) or JSON."""
    from .identity import format_matrix

    if fmt == "json":
        return json.dumps(result, indent=2) + "\n"
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(["from_segment", "to_segment", "customers"])
        for r in result["rows"]:
            writer.writerow([r["from_segment"], r["to_segment"], r["customers"]])
        return out.getvalue()
    title = f"customers from {result['from_run_date']} (rows) to {result['to_run_date']} (columns)"
    return format_matrix(result["rows"], title)


def run(args: argparse.Namespace) -> int:
    """Print the transitions: 0 on success, 2 on bad arguments (unknown dates), 1 otherwise."""
    from .entry import guarded, start_spark
    from .segment_config import check_run_date

    try:
        for date in (args.from_date, args.to_date):
            if date is not None:
                check_run_date(date)
    except ValueError as exc:
        print(f"error: transitions: {exc}", file=sys.stderr)
        return 2

    def compute() -> dict[str, Any]:
        spark = start_spark("spark-clustering-transitions", master=args.master)
        return transitions(spark, args.output, args.from_date, args.to_date)

    result, code = guarded("transitions", compute)
    if result is None:
        return code
    sys.stdout.write(render(result, args.format))
    return 0
