"""The ``segment`` job's self-contained HTML report: one file, charts embedded as base64 PNG.

Sections: run (ids, tracking), the segments (size chart; the named segments with their size,
silhouette, the features that set them apart and their rule; the lift heatmap), the automatic
choice (targets, candidates, selection curve), metrics (with a caveat where they are measured in
a reduced space), segment identities (ids and names kept from the previous run, lineage),
transitions since the previous run, profiles of the original features, the preparation (rows read,
kept, dropped and why; correlation and PCA charts), a scatter of a sample coloured by segment,
the k-distance graph, stages and config. The largest ``charts.TOP`` segments are shown one by
one and the others grouped, so the page reads the same at 3 or 300 segments; wide tables scroll
inside the page. No Spark here.
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
    return f"<p>{since}{html.escape(how)}.</p>{_wide(table)}<h3>Lineage</h3>{lineage}"


def _auto(summary: dict[str, Any], local_dir: str) -> str:
    """The automatic choice: targets, the candidates (chosen one marked) and the curve."""
    auto = summary.get("auto")
    if not auto:
        return ""
    t = auto["targets"]
    verdict = (
        "within the targets"
        if auto["within_targets"]
        else "<strong>no candidate met the targets: the closest was taken</strong>"
    )
    rows = []
    for i, (c, label) in enumerate(zip(auto["candidates"], auto["labels"], strict=True)):
        mark = "&#9654; " if i == auto["chosen"] else ""
        rows.append([label, c["n_segments"], c["noise_share"], c["smallest_share"],
                     "yes" if c["within_targets"] else "no", c["criterion"]])  # fmt: skip
        rows[-1][0] = mark + html.escape(label)
    body = "".join(
        "<tr>" + "".join(f"<td>{v if j == 0 else _fmt(v)}</td>" for j, v in enumerate(r)) + "</tr>"
        for r in rows
    )
    head = "".join(
        f"<th>{h}</th>"
        for h in [
            "candidate",
            "segments",
            "noise share",
            "smallest share",
            "within targets",
            html.escape(auto["criterion"]),
        ]
    )
    return (
        f"<h2>Automatic choice</h2><p>Targets: each segment at least {t['min_share']:.1%} of "
        f"customers, {t.get('min_segments', 2)} to {t['max_segments']} segments, at most "
        f"{t['max_noise']:.0%} noise. "
        f"{len(rows)} candidates; chosen {html.escape(auto['labels'][auto['chosen']])}, "
        f"{verdict}, by {html.escape(auto['criterion'])}."
        + (
            f" {len(auto['noise_clusters'])} DBSCAN clusters smaller than {t['min_share']:.1%} "
            "of the customers were folded into noise (they are noise when scoring too)."
            if auto.get("noise_clusters")
            else ""
        )
        + "</p>"
        f'<div class="wide"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'
        f"</div>{_image(local_dir, 'choice.png', 'selection curve of the automatic choice')}"
    )


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
        f'<div class="wide"><table><thead><tr>{head}</tr></thead><tbody>{"".join(body)}'
        "</tbody></table></div>"
    )


def _wide(inner: str) -> str:
    """A block that scrolls sideways inside the page instead of widening it."""
    return f'<div class="wide">{inner}</div>'


def _swatch(colour: str) -> str:
    return f'<span class="sw" style="background:{colour}"></span>'


def _explained(summary: dict[str, Any], colour: dict[int, str]) -> str:
    """The named segments: size, share, silhouette, what sets them apart, their rule; the
    largest ``charts.TOP`` one by one, the others grouped (listed in a fold)."""
    from . import charts

    profiles = summary.get("profiles") or []
    if not profiles or "lift" not in profiles[0]:
        return "<p>Segments not explained ([output].profile = false).</p>"
    sizes = {int(p["cluster"]): int(p["size"]) for p in profiles}
    first = charts.shown(sizes)
    by = {int(p["cluster"]): p for p in profiles}
    sil = summary.get("silhouette_by_cluster") or {}
    rows = []
    for c in first:
        p = by[c]
        apart = ", ".join(f"{f} {p['lift'][f]:+.1f}" for f in p["top_features"]) or "-"
        rule = p.get("rule")
        fit = (f"{html.escape(rule)} <small>(precision {p['precision']:.0%}, recall "
               f"{p['recall']:.0%})</small>" if rule else "-")  # fmt: skip
        rows.append(
            f"<tr><td>{_swatch(colour[c])}{html.escape(str(p.get('segment_id', c)))}</td>"
            f'<td class="text">{html.escape(p["name"])}</td><td>{p["size"]}</td>'
            f"<td>{p['share']:.1%}</td><td>{_fmt(sil.get(str(c), ''))}</td>"
            f'<td class="text">{html.escape(apart)}</td>'
            f'<td class="text">{fit}</td></tr>'
        )
    rest = [c for c in sizes if c != -1 and c not in first]
    if rest:
        n = sum(sizes[c] for c in rest)
        rows.append(
            f"<tr><td>{_swatch(charts.OTHER)}</td><td>{len(rest)} other segments</td><td>{n}</td>"
            f"<td>{n / max(sum(sizes.values()), 1):.1%}</td><td></td><td></td><td></td></tr>"
        )
    if -1 in sizes:
        rows.append(
            f"<tr><td>{_swatch(charts.NOISE)}</td><td>noise</td><td>{sizes[-1]}</td>"
            f"<td>{by[-1]['share']:.1%}</td><td></td><td></td><td></td></tr>"
        )
    header = ["segment", "name", "customers", "share", "silhouette", "sets it apart (lift)", "rule"]
    head = "".join(f"<th>{h}</th>" for h in header)
    table = _wide(f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>")
    fold = ""
    if rest:
        lines = [
            [p.get("segment_id", c), p["name"], p["size"], p["share"],
             ", ".join(p["top_features"])]
            for c in sorted(rest, key=lambda c: -sizes[c])
            for p in [by[c]]
        ]  # fmt: skip
        fold = (f"<details><summary>The {len(rest)} other segments</summary>"
                f"{_wide(_table(['segment', 'name', 'customers', 'share', 'top features'], lines))}"
                "</details>")  # fmt: skip
    return (
        "<p>Lift: how many population standard deviations a segment's mean is from the mean of "
        "all customers. Rule: the leaf of a depth-3 decision tree (this segment against the "
        "rest) holding most of the segment; precision: share of the customers it selects that "
        "are in the segment; recall: share of the segment it selects.</p>" + table + fold
    )


def _profiles(summary: dict[str, Any]) -> str:
    """Mean and median of each original feature: the population, then the shown segments."""
    from . import charts

    profiles = summary.get("profiles")
    if not profiles:
        return "<p>Profiles not computed ([output].profile = false).</p>"
    names = summary.get("profile_features", [])
    sizes = {int(p["cluster"]): int(p["size"]) for p in profiles}
    by = {int(p["cluster"]): p for p in profiles}
    first = charts.shown(sizes)
    total = sum(sizes.values())
    parts = []
    for stat in ("mean", "median"):
        header = ["feature", *[f"{by[c].get('segment_id', c)} ({sizes[c]})" for c in first]]
        rows = []
        for n in names:
            rows.append([n, *[by[c][stat].get(n) for c in first]])
        if stat == "mean" and total:
            header.insert(1, "all customers")
            for row, n in zip(rows, names, strict=True):
                row.insert(1, _population(by, n))
        parts.append(f"<h3>{stat.capitalize()} per segment</h3>{_wide(_table(header, rows))}")
    more = len([c for c in sizes if c != -1]) - len(first)
    note = (
        f"<p>The {len(first)} largest segments; {more} more in the table above.</p>"
        if more > 0
        else ""
    )
    return note + "".join(parts)


def _population(by: dict[int, dict[str, Any]], name: str) -> float | None:
    """The mean of ``name`` over every customer, from the per-cluster means and sizes."""
    pairs = [(p["mean"].get(name), p["size"]) for p in by.values()]
    pairs = [(m, n) for m, n in pairs if m is not None]
    total = sum(n for _, n in pairs)
    return sum(m * n for m, n in pairs) / total if total else None


def _preparation(summary: dict[str, Any], local_dir: str) -> str:
    prep = summary.get("preparation")
    if not prep:
        return "<p>No preparation report (features given ready-made).</p>"
    rows = [["rows read", prep.get("rows_read")], ["rows kept", prep.get("rows_kept")]]
    rows += [[f"dropped: {why}", n] for why, n in prep.get("dropped", {}).items()]
    rows += [["customers", prep.get("customers")], ["features", prep.get("features")]]
    dropped = prep.get("dropped_constant", []) + prep.get("dropped_correlated", [])
    extra = f"<p>Features dropped: {html.escape('; '.join(dropped))}.</p>" if dropped else ""
    charts = "".join(_image(local_dir, c, c.removesuffix(".png").replace("_", " "))
                     for c in prep.get("charts", []))  # fmt: skip
    return _table(["", "count"], rows) + extra + charts


def _caveat(summary: dict[str, Any]) -> str:
    config = summary.get("config", {})
    reducer = config.get("reducer", "none")
    if reducer == "none":
        return "<p>Measured in the prepared feature space.</p>"
    dims = (config.get("reducer_params") or {}).get("nComponents") or (
        config.get("reducer_params") or {}
    ).get("k")
    where = f"{reducer.upper()} space" + (f" ({dims} dimensions)" if dims else "")
    return (
        f'<p class="caveat">These figures are measured in the {html.escape(where)}, where the '
        "clusters were found: a reduction such as UMAP packs clusters tighter than the "
        "customers really are, so the silhouette here flatters them. The automatic choice "
        "(when used) measured the silhouette in the original features.</p>"
    )


def _tracking(summary: dict[str, Any]) -> str:
    """The tracking status and where the run is: a link when the store is a server, else the
    ids and the path to open in ``mlflow ui`` (SageMaker: the trial)."""
    t = summary.get("tracking") or {}
    text = html.escape(str(t.get("text", "tracking: off")))
    ref = t.get("run") or {}
    if ref.get("backend") == "mlflow" and ref.get("run_id"):
        uri = str(ref.get("tracking_uri", ""))
        path = str(ref.get("ui_path", ""))
        if uri.startswith(("http://", "https://")) and path:
            link = uri.rstrip("/") + "/" + path.lstrip("/")
            run = html.escape(ref["run_id"])
            text += f' &mdash; <a href="{html.escape(link)}">tracking run {run}</a>'
        else:
            text += (
                f" &mdash; MLflow run {html.escape(ref['run_id'])} in {html.escape(uri)} "
                f"(<code>mlflow ui --backend-store-uri {html.escape(uri)}</code>, then "
                f"{html.escape(path)})"
            )
    elif ref:
        ids = ", ".join(f"{k} {v}" for k, v in ref.items() if k != "backend")
        text += f" &mdash; {html.escape(ids)}"
    return f"<p>{text}</p>"


def render_report(summary: dict[str, Any], local_dir: str) -> str:
    """The HTML text of the report of ``summary``; PNGs are read from ``local_dir`` (the size
    chart and the lift heatmap are drawn there first)."""
    from . import charts

    metrics = summary.get("metrics", {})
    sizes = {int(c): int(n) for c, n in summary.get("cluster_sizes", {}).items()}
    colour = charts.colours(sizes)
    profiles = summary.get("profiles") or []
    names = {int(p["cluster"]): f"{p.get('segment_id', p['cluster'])}: {p.get('name', '')}"
             for p in profiles}  # fmt: skip
    if sizes:
        charts.sizes_png(sizes, names, os.path.join(local_dir, "sizes.png"))
    if profiles and "lift" in profiles[0] and summary.get("profile_features"):
        charts.lifts_png(
            profiles, summary["profile_features"], os.path.join(local_dir, "lifts.png")
        )
    eps = summary.get("eps")
    eps_text = ""
    if eps:
        how = "the knee of the k-distance graph" if eps["auto"] else "given in the config"
        if "multiple" in eps:
            how = f"{eps['multiple']:g} x the knee of the k-distance graph"
        knee = f"; knee at {_fmt(eps['suggested'])}" if "suggested" in eps else ""
        eps_text = (
            f"<p>DBSCAN eps = {_fmt(eps['value'])} ({how}{knee}, k = minPoints = {eps['k']}).</p>"
        )
    timings = summary.get("stages", {}).get("seconds", {})
    config = json.dumps(summary.get("config", {}), indent=2, default=str)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Segmentation {html.escape(summary["model_version"])}</title>
<style>
body {{ font-family: sans-serif; margin: 1.5em auto; max-width: 1200px; padding: 0 1em; }}
table {{ border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.85em; }}
td, th {{ border: 1px solid #ccc; padding: 2px 8px; text-align: right; }}
th:first-child, td:first-child, td.text {{ text-align: left; }}
td.text {{ max-width: 30em; }}
.wide {{ max-width: 100%; overflow-x: auto; }}
img {{ max-width: 100%; height: auto; display: block; margin: 0.5em 0; }}
pre {{ white-space: pre-wrap; word-break: break-all; font-size: 0.8em; }}
.sw {{ display: inline-block; width: 0.9em; height: 0.9em; margin-right: 0.4em;
       vertical-align: middle; border: 1px solid #999; }}
.caveat {{ color: #8a4b00; }}
</style></head><body>
<h1>Customer segmentation, run date {html.escape(summary["run_date"])}</h1>
<p>run id {html.escape(summary["run_id"])}, model version {html.escape(summary["model_version"])};
{summary.get("customers", 0)} customers, {summary.get("n_clusters", 0)} segments,
{summary.get("n_noise", 0)} noise.</p>
{_tracking(summary)}
{eps_text}
<h2>Segments</h2>
{_image(local_dir, "sizes.png", "segment sizes")}
{_explained(summary, colour)}
{_image(local_dir, "lifts.png", "heatmap of feature lifts per segment")}
{_auto(summary, local_dir)}
<h2>Metrics</h2>
{_caveat(summary) if metrics else ""}
{
        _table(["metric", "value"], [[k, v] for k, v in metrics.items()])
        if metrics
        else "<p>Evaluation off.</p>"
    }
<h2>Segment identities</h2>
{_segments(summary)}
<h2>Transitions since the previous run</h2>
{_transitions(summary)}
<h2>Segment profiles (original features)</h2>
{_profiles(summary)}
<h2>Preparation</h2>
{_preparation(summary, local_dir)}
<h2>Charts</h2>
{_image(local_dir, "scatter.png", "scatter of a sample coloured by segment")}
{_image(local_dir, "k_distance.png", "k-distance graph")}
<h2>Stages</h2>
{_table(["stage", "seconds"], [[k, v] for k, v in timings.items()])}
<h2>Configuration</h2>
<pre>{html.escape(config)}</pre>
</body></html>
"""
