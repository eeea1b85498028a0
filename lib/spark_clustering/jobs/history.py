"""``spark-clustering history --output ROOT [--scored PATH]``: the segments across run dates.

One column per published run date under ``ROOT`` (oldest first), one row per segment id ever
given: the segment's customers in that run, marked ``+`` when it was new (``+<`` when split from
another), ``=`` for the first run, nothing when kept, and ``x`` in the run that retired it
(``>`` when merged into another). Below: how each run was matched (first, overlap, profile, off)
and its lineage counts. With ``--scored`` (the ``score`` job's output), the scoring runs follow,
with their drift flags. Reads only the small JSON files the jobs publish, through the publication
records (:mod:`spark_clustering.jobs.publish`).

Examples
--------
``spark-clustering history --output data/segments``
``spark-clustering history --output s3://bucket/segments --scored s3://bucket/scored --format json``
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import SparkSession

FORMATS = ("table", "json")


HELP = "segments across run dates: sizes, ids, names, matches, drift flags"


def _arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--output", required=True, help="the segment job's [output] path (the root)")
    p.add_argument("--scored", default=None, help="the score job's --output, for drift flags")
    p.add_argument("--format", choices=FORMATS, default="table")
    p.add_argument("--master", default=None, help="Spark master (only for S3 or HDFS paths)")


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``history`` sub-command."""
    from .entry import add_subcommand

    return add_subcommand(
        subparsers,
        "history",
        "segments across run dates: sizes, ids, names, matches, drift flags",
        __doc__,
        _arguments,
        run,
    )


def history(spark: SparkSession | None, root: str, scored: str | None = None) -> dict[str, Any]:
    """``{"runs": [...], "scores": [...]}``: each published segment run (date, id, method,
    segments with sizes and status, lineage counts) and each scoring run with its drift.

    Examples
    --------
    >>> [r["run_date"] for r in history(None, "data/segments")["runs"]]  # doctest: +SKIP
    ['2026-11-01', '2026-12-01']
    """
    from .identity import FILE
    from .io import list_dir
    from .pipeline import read_json
    from .publish import current_run, run_dates

    root = root.rstrip("/")
    runs = []
    for date in run_dates(spark, root):
        run = current_run(spark, root, date)
        assert run is not None
        summary = read_json(spark, run.summary) or {}
        record = read_json(spark, f"{run.model}/{FILE}")
        sizes = {int(k): int(v) for k, v in (summary.get("cluster_sizes") or {}).items()}
        if record is None:  # a run from before segment ids: segment id = cluster id
            segments = [
                {"segment_id": c, "name": f"segment {c}", "status": "first", "customers": n}
                for c, n in sorted(sizes.items()) if c != -1
            ]  # fmt: skip
            record = {"method": "first", "events": [], "counts": {}}
        else:
            segments = [
                {"segment_id": s["segment_id"], "name": s["name"], "status": s["status"],
                 "customers": sizes.get(int(s["cluster"]), 0)}
                for s in record["segments"]
            ]  # fmt: skip
        runs.append({
            "run_date": date,
            "run_id": run.run_id,
            "method": record["method"],
            "segments": segments,
            "noise": sizes.get(-1, 0),
            "events": record.get("events", []),
            "counts": record.get("counts", {}),
            "report": run.report,
        })  # fmt: skip
    scores = []
    if scored:
        base = scored.rstrip("/")
        for name in sorted(list_dir(spark, base)):
            if not name.startswith("run_date="):
                continue
            found = read_json(spark, f"{base}/{name}/_score_summary.json")
            if found is None:
                continue
            drift = found.get("drift") or {}
            scores.append({
                "run_date": name.split("=", 1)[1],
                "model_version": found.get("model_version"),
                "customers": found.get("customers"),
                "drifted": drift.get("drifted"),
                "reasons": drift.get("reasons", []),
            })  # fmt: skip
    return {"runs": runs, "scores": scores}


def _mark(run: Mapping[str, Any], segment_id: int) -> str | None:
    for s in run["segments"]:
        if s["segment_id"] == segment_id:
            split = any(
                e["event"] == "split" and e["segment_id"] == segment_id for e in run["events"]
            )
            tag = {"first": "=", "kept": "", "new": "+<" if split else "+"}.get(s["status"], "")
            return f"{s['customers']}{tag}"
    for e in run["events"]:
        if e["segment_id"] == segment_id and e["event"] in ("retired", "merged"):
            return "x" if e["event"] == "retired" else ">"
    return None


def render(result: Mapping[str, Any], fmt: str) -> str:
    """The history as a plain-text timeline, or JSON."""
    if fmt == "json":
        return json.dumps(result, indent=2) + "\n"
    runs: Sequence[Mapping[str, Any]] = result["runs"]
    if not runs:
        return "no published segment run\n"
    names: dict[int, str] = {}
    for run in runs:
        for s in run["segments"]:
            names[int(s["segment_id"])] = str(s["name"])
    head = ["segment", "name", *[r["run_date"] for r in runs]]
    rows = []
    for sid in sorted(names):
        cells = [_mark(run, sid) for run in runs]
        rows.append([str(sid), names[sid], *[c if c is not None else "" for c in cells]])
    rows.append(["noise", "", *[str(r["noise"]) for r in runs]])
    rows.append(["matched by", "", *[r["method"] for r in runs]])
    widths = [max(len(line[i]) for line in [head, *rows]) for i in range(len(head))]
    lines = [
        "  ".join(x.ljust(w) for x, w in zip(line, widths, strict=True)) for line in [head, *rows]
    ]
    lines.append("customers per segment; = first run, + new, +< split off, x retired, > merged")
    for score in result.get("scores", []):
        flag = "DRIFT: " + "; ".join(score["reasons"]) if score["drifted"] else "no drift"
        if score["drifted"] is None:
            flag = "drift not checked"
        lines.append(
            f"scored {score['run_date']} with {score['model_version']}: "
            f"{score['customers']} customers, {flag}"
        )
    return "\n".join(lines) + "\n"


def run(args: argparse.Namespace) -> int:
    """Print the history: 0 on success, 2 when nothing is published, 1 otherwise."""
    from .entry import guarded
    from .io import is_local

    def compute() -> dict[str, Any]:
        spark = None
        if not (is_local(args.output) and (args.scored is None or is_local(args.scored))):
            from .entry import start_spark

            spark = start_spark("spark-clustering-history", master=args.master)
        result = history(spark, args.output, args.scored)
        if not result["runs"]:
            raise ValueError(f"--output {args.output}: no published segment run under it")
        return result

    result, code = guarded("history", compute)
    if result is None:
        return code
    sys.stdout.write(render(result, args.format))
    return 0
