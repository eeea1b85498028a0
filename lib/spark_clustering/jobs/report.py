"""The ``segment`` job's self-contained HTML report: one file, charts embedded as base64 PNG.

Sections: run (ids, config), metrics, cluster sizes, segment identities (ids and names kept
from the previous run, lineage), transitions since the previous run, per-cluster profiles of the
original features (mean and median, so a business user can name the segments), the k-distance
graph and a scatter of a sample of the reduced data coloured by cluster. No Spark here.
"""

from __future__ import annotations

import base64
import html
import json
import math
import os
from typing import Any


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return "NaN" if math.isnan(value) else f"{value:.4g}"
    return html.escape(str(value))


def _table(header: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_fmt(v)}</td>" for v in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _image(local_dir: str, name: str, alt: str) -> str:
    path = os.path.join(local_dir, name)
    if not os.path.exists(path):
        return ""
    with open(path, "rb") as fh:
        data = base64.b64encode(fh.read()).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _profiles(summary: dict[str, Any]) -> str:
    profiles = summary.get("profiles")
    if not profiles:
        return "<p>Profiles not computed ([output].profile = false).</p>"
    names = summary.get("profile_features", [])
    parts = []
    for stat in ("mean", "median"):
        rows = [[n, *[p[stat].get(n) for p in profiles]] for n in names]
        header = ["feature", *[_label(p["cluster"], p["size"]) for p in profiles]]
        parts.append(f"<h3>{stat.capitalize()} per segment</h3>{_table(header, rows)}")
    return "".join(parts)


def _label(cluster: int, size: int) -> str:
    return f"{'noise' if cluster == -1 else f'cluster {cluster}'} ({size})"


def _segments(summary: dict[str, Any]) -> str:
    """Segment ids and names per cluster, how they were matched, and the lineage events."""
    record = summary.get("segments")
    if not record:
        return "<p>No segment ids (a run from before segment identities).</p>"
    prev = record.get("previous")
    how = {
        "first": "first run under this output: segment id = cluster id",
        "overlap": "matched by customer overlap (Jaccard index, optimal one-to-one assignment)",
        "profile": "matched by the distance between segment profiles (in standard deviations)",
        "off": "matching off ([segments].match): new ids",
    }[record["method"]]
    since = ""
    if prev:  # runs/run_date=D/run-<id>/report.html, relative to this report in the same root
        link = f"../../run_date={prev['run_date']}/run-{prev['run_id']}/report.html"
        since = (
            f'previous run <a href="{html.escape(link)}">{html.escape(prev["run_date"])} '
            f"({html.escape(prev['run_id'][:8])})</a>; "
        )
    sizes = summary.get("cluster_sizes", {})
    rows = []
    for s in record["segments"]:
        figure = s.get("jaccard", s.get("distance", ""))
        rows.append([s["segment_id"], s["name"], s["cluster"], sizes.get(str(s["cluster"]),
                     sizes.get(s["cluster"], "")), s["status"], figure])  # fmt: skip
    table = _table(["segment", "name", "cluster", "customers", "status", "match figure"], rows)
    events = [e for e in record.get("events", []) if e["event"] != "kept"]
    lines = []
    for e in events:
        parts = e.get("from") or e.get("into") or []
        linked = ", ".join(f"segment {p['segment_id']} ({p['share']:.0%})" for p in parts)
        word = {"new": "new", "split": "split from", "retired": "retired", "merged": "merged into"}
        text = f"segment {e['segment_id']}: {word[e['event']]}"
        if linked:
            text += f" {linked}" if e["event"] in ("split", "merged") else f" (from {linked})"
        lines.append(f"<li>{html.escape(text)}</li>")
    lineage = f"<ul>{''.join(lines)}</ul>" if lines else "<p>No splits, merges or new segments.</p>"
    return f"<p>{since}{html.escape(how)}.</p>{table}<h3>Lineage</h3>{lineage}"


def _transitions(summary: dict[str, Any]) -> str:
    """The transition matrix, each cell shaded by its share of the row."""
    from .identity import transition_matrix

    moves = summary.get("transitions")
    if not moves:
        return "<p>No previous run under this output to compare with.</p>"
    row_labels, col_labels, grid = transition_matrix(moves["rows"])
    head = "".join(f"<th>{html.escape(c)}</th>" for c in ["from \\ to", *col_labels, "total"])
    body = []
    for label, line in zip(row_labels, grid, strict=True):
        total = max(sum(line), 1)
        cells = "".join(
            f'<td style="background: rgba(31, 119, 180, {v / total:.2f})">{v}</td>' for v in line
        )
        body.append(f"<tr><td>{html.escape(label)}</td>{cells}<td>{sum(line)}</td></tr>")
    return (
        f"<p>Customers from {html.escape(moves['from_run_date'])} (rows) to "
        f"{html.escape(moves['to_run_date'])} (columns); new: not in the earlier run, lost: not "
        f"in this one; shading: share of the row.</p>"
        f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
    )


def render_report(summary: dict[str, Any], local_dir: str) -> str:
    """The HTML text of the report of ``summary``; PNGs are read from ``local_dir``."""
    metrics = summary.get("metrics", {})
    sizes = summary.get("cluster_sizes", {})
    total = max(sum(sizes.values()), 1)
    eps = summary.get("eps")
    eps_text = ""
    if eps:
        how = "the knee of the k-distance graph" if eps["auto"] else "given in the config"
        eps_text = (
            f"<p>DBSCAN eps = {_fmt(eps['value'])} ({how}; knee at {_fmt(eps['suggested'])}, "
            f"k = minPoints = {eps['k']}).</p>"
        )
    timings = summary.get("stages", {}).get("seconds", {})
    config = json.dumps(summary.get("config", {}), indent=2, default=str)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>Segmentation {html.escape(summary["model_version"])}</title>
<style>
body {{ font-family: sans-serif; margin: 2em; }}
table {{ border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; }}
td, th {{ border: 1px solid #ccc; padding: 2px 8px; text-align: right; }}
th:first-child, td:first-child {{ text-align: left; }}
img {{ max-width: 48%; margin-right: 1%; }}
</style></head><body>
<h1>Customer segmentation, run date {html.escape(summary["run_date"])}</h1>
<p>run id {html.escape(summary["run_id"])}, model version {html.escape(summary["model_version"])};
{summary.get("customers", 0)} customers, {summary.get("n_clusters", 0)} clusters,
{summary.get("n_noise", 0)} noise.</p>
{eps_text}
<h2>Metrics</h2>
{
        _table(["metric", "value"], [[k, v] for k, v in metrics.items()])
        if metrics
        else "<p>Evaluation off.</p>"
    }
<h2>Cluster sizes</h2>
{
        _table(
            ["cluster", "customers", "share"],
            [[_label(int(c), n).split(" (")[0], n, n / total] for c, n in sizes.items()],
        )
    }
<h2>Segment identities</h2>
{_segments(summary)}
<h2>Transitions since the previous run</h2>
{_transitions(summary)}
<h2>Segment profiles (original features)</h2>
{_profiles(summary)}
<h2>Charts</h2>
{_image(local_dir, "k_distance.png", "k-distance graph")}
{_image(local_dir, "scatter.png", "scatter of a sample coloured by cluster")}
<h2>Stages</h2>
{_table(["stage", "seconds"], [[k, v] for k, v in timings.items()])}
<h2>Configuration</h2>
<pre>{html.escape(config)}</pre>
</body></html>
"""
