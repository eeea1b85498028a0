"""The ``segment`` job's self-contained HTML report: one file, charts embedded as base64 PNG.

Sections: run (ids, config), metrics, cluster sizes, per-cluster profiles of the original
features (mean and median, so a business user can name the segments), the k-distance graph and
a scatter of a sample of the reduced data coloured by cluster. No Spark here.
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
