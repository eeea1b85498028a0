"""Leaderboard: one row per trial with its parameters and final metrics, read from a backend.

The final value of a metric is its value at the last step. A parameter or metric logged under
the same name by several components of one trial with different values gets one column per
component, ``<component>/<name>`` (``trial/<name>`` for trial-level values); otherwise the
column is the plain name. A parameter named like a metric is shown as ``param.<name>``.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import io
import json
import math
import re
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from .config import resolve_config
from .core import TrialRecord, make_backend
from .names import validate_name

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

FORMATS = ("table", "csv", "json", "html")
BASE_COLUMNS = ("trial", "status", "start_time", "run_id")
#: metric names matching this are better when lower (sorted ascending by default)
LOWER_IS_BETTER = re.compile(
    r"davies|bouldin|noise|loss|error|inertia|cost|time|seconds|bic|aic", re.I
)
_FILTER_RE = re.compile(
    r"^\s*(?P<col>[^<>=!~]+?)\s*(?P<op><=|>=|!=|==|=|<|>|~)\s*(?P<val>[^<>=!~\s].*?)?\s*$"
)


def parse_filter(text: str) -> tuple[str, str, str]:
    """``"eps<=0.4"`` -> ``("eps", "<=", "0.4")``; operators ``< <= > >= = == != ~`` (contains)."""
    match = _FILTER_RE.match(text) if isinstance(text, str) else None
    if not match or not match.group("val"):
        raise ValueError(
            f"filter={text!r} is not valid; accepted: COLUMN OP VALUE with OP one of "
            "< <= > >= = == != ~ (contains), e.g. 'eps<0.4' or 'status=Completed'"
        )
    op = "==" if match.group("op") == "=" else match.group("op")
    return match.group("col"), op, match.group("val")


def _numeric(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _spread(records: Sequence[TrialRecord], metrics: bool) -> tuple[list[dict[str, Any]], set[str]]:
    """Per trial, name -> value for params or metrics, split by component on conflicts."""
    per_trial: list[dict[str, dict[str, Any]]] = []
    conflicting: set[str] = set()
    for record in records:
        seen: dict[str, dict[str, Any]] = {}
        for name, params, final in record.components:
            label = name or "trial"
            values: dict[str, Any] = final if metrics else params
            for key, value in values.items():
                if key.startswith("spark-clustering:"):
                    continue
                seen.setdefault(key, {})[label] = value
        for key, by_comp in seen.items():
            if len({json.dumps(v, default=str) for v in by_comp.values()}) > 1:
                conflicting.add(key)
        per_trial.append(seen)
    rows = []
    names: set[str] = set()
    for seen in per_trial:
        row: dict[str, Any] = {}
        for key, by_comp in seen.items():
            if key in conflicting:
                for label, value in by_comp.items():
                    row[f"{label}/{key}"] = value
            else:
                row[key] = next(iter(by_comp.values()))
        names.update(row)
        rows.append(row)
    return rows, names


def records_to_frame(records: Sequence[TrialRecord]) -> pd.DataFrame:
    """The leaderboard table (unsorted) for trial records; attrs list metric/param columns."""
    import pandas as pd

    metric_rows, metric_names = _spread(records, metrics=True)
    param_rows, param_names = _spread(records, metrics=False)
    renamed = {
        p: (f"param.{p}" if p in metric_names or p in BASE_COLUMNS else p) for p in param_names
    }
    rows = []
    for record, metrics, params in zip(records, metric_rows, param_rows, strict=True):
        row: dict[str, Any] = {
            "trial": record.trial,
            "status": record.status,
            "start_time": pd.Timestamp(round(record.start_time * 1000), unit="ms", tz="UTC")
            if record.start_time is not None
            else pd.NaT,
            "run_id": record.run_id,
        }
        row.update(metrics)
        row.update({renamed[k]: v for k, v in params.items()})
        rows.append(row)
    metric_cols = sorted(metric_names)
    param_cols = sorted(renamed.values())
    frame = pd.DataFrame(
        rows, columns=["trial", "status", *metric_cols, *param_cols, "start_time", "run_id"]
    )
    for col in param_cols:
        values = frame[col].dropna()
        numbers = [_numeric(v) for v in values]
        if len(values) and all(n is not None for n in numbers):
            converted = pd.to_numeric(frame[col], errors="coerce")
            if all(float(n).is_integer() for n in converted.dropna()):
                converted = converted.astype("Int64")
            frame[col] = converted
    for col in metric_cols:
        frame[col] = pd.to_numeric(frame[col], errors="coerce")
    frame.attrs["metrics"] = metric_cols
    frame.attrs["params"] = param_cols
    return frame


def _resolve_column(frame: pd.DataFrame, name: str, param: str) -> str:
    if name in frame.columns:
        return name
    matches = [c for c in frame.columns if str(c).endswith(f"/{name}") or c == f"param.{name}"]
    if len(matches) == 1:
        return str(matches[0])
    accepted = ", ".join(str(c) for c in frame.columns)
    raise ValueError(f"{param}={name!r} names no single column; accepted: {accepted}")


def apply_filters(frame: pd.DataFrame, filters: Iterable[str]) -> pd.DataFrame:
    """Keep the rows matching every filter (numeric comparison when both sides are numbers)."""
    import pandas as pd

    for text in filters:
        col, op, raw = parse_filter(text)
        col = _resolve_column(frame, col, "filter")
        target = _numeric(raw)
        values = frame[col]

        def keep(value: Any, op: str = op, raw: str = raw, target: float | None = target) -> bool:
            if value is None or (not isinstance(value, str) and pd.isna(value)):
                return op == "!="
            if op == "~":
                return raw in str(value)
            number = _numeric(value)
            left: Any
            right: Any
            left, right = (
                (number, target)
                if number is not None and target is not None
                else (
                    str(value),
                    raw,
                )
            )
            return {
                "<": left < right,
                "<=": left <= right,
                ">": left > right,
                ">=": left >= right,
                "==": left == right,
                "!=": left != right,
            }[op]

        frame = frame[values.map(keep).astype(bool)]
    return frame


def leaderboard(
    experiment: str,
    *,
    sort: str | None = "silhouette",
    ascending: bool | None = None,
    top: int | None = None,
    filters: Iterable[str] = (),
    backend: str | None = None,
    config: Any = None,
    **options: Any,
) -> pd.DataFrame:
    """One row per trial of ``experiment`` with parameters and final metrics, sorted.

    Parameters
    ----------
    experiment : str
        Logical experiment name (as given to :func:`spark_clustering.tracking.trial`).
    sort : str, optional
        Metric (or any column) to sort by; ``None`` keeps start order. Missing values go last.
    ascending : bool, optional
        Default: ascending for names that read as lower-is-better (Davies-Bouldin, noise,
        loss, inertia, BIC...), descending otherwise (silhouette, Calinski-Harabasz).
    top : int, optional
        Keep the first ``top`` rows after sorting.
    filters : iterable of str
        Conditions such as ``"eps<0.4"``, ``"status=Completed"``, ``"features~monetary"``.
    backend, config, **options
        As for :func:`spark_clustering.tracking.trial` (``tracking_uri``, ``region``...).

    Returns
    -------
    pandas.DataFrame
        Columns ``trial``, ``status``, the metrics, the parameters, ``start_time``, ``run_id``;
        ``attrs["metrics"]`` and ``attrs["params"]`` list the metric and parameter columns.

    Examples
    --------
    >>> from spark_clustering.tracking import leaderboard
    >>> board = leaderboard("customer-segmentation", top=10)  # doctest: +SKIP
    """
    validate_name("experiment", experiment)
    filters = list(filters or ())
    for text in filters:
        parse_filter(text)
    if top is not None and (isinstance(top, bool) or not isinstance(top, int) or top < 1):
        raise ValueError(f"top={top!r} is not valid; accepted: an integer >= 1")
    cfg = resolve_config(backend, config=config, **options)
    if cfg.backend == "none":
        raise ValueError("backend='none' records nothing to read; accepted: mlflow, sagemaker")
    frame = records_to_frame(make_backend(cfg).read_trials(experiment))
    attrs = dict(frame.attrs)
    if frame.empty:
        return frame
    frame = apply_filters(frame, filters)
    if sort is not None:
        column = _resolve_column(frame, sort, "sort")
        if ascending is None:
            ascending = bool(LOWER_IS_BETTER.search(column))
        frame = frame.sort_values(column, ascending=ascending, na_position="last", kind="stable")
        attrs["sort"] = column
        attrs["ascending"] = ascending
    if top is not None:
        frame = frame.head(top)
    frame = frame.reset_index(drop=True)
    frame.attrs.update(attrs)
    frame.attrs["experiment"] = experiment
    return frame


# --------------------------------------------------------------------------------- rendering


def render(
    frame: pd.DataFrame, fmt: str = "table", chart_params: Sequence[str] | None = None
) -> str:
    """The leaderboard as text: ``table``, ``csv``, ``json`` or a self-contained ``html`` report."""
    if fmt not in FORMATS:
        raise ValueError(f"format={fmt!r} is not valid; accepted: {', '.join(FORMATS)}")
    if fmt == "csv":
        return str(frame.to_csv(index=False))
    if fmt == "json":
        return str(frame.to_json(orient="records", date_format="iso", indent=2)) + "\n"
    if fmt == "table":
        if frame.empty:
            return "(no trials)\n"
        return str(frame.to_string(index=False, float_format=lambda v: f"{v:.4g}")) + "\n"
    return render_html(frame, chart_params)


def _png(fig: Any) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _plottable(column: pd.Series) -> pd.Series:
    """Floats (NaN for missing) for numeric columns, strings otherwise: what matplotlib takes."""
    import pandas as pd

    if pd.api.types.is_numeric_dtype(column):
        return pd.to_numeric(column, errors="coerce").astype(float)
    return column.astype(str)


def _varying_numeric_params(frame: pd.DataFrame) -> list[str]:
    import pandas as pd

    chosen = []
    for col in frame.attrs.get("params", []):
        numeric = col in frame.columns and pd.api.types.is_numeric_dtype(frame[col])
        if numeric and frame[col].dropna().nunique() > 1:
            chosen.append(col)
    return chosen[:4]


def render_html(frame: pd.DataFrame, chart_params: Sequence[str] | None = None) -> str:
    """A self-contained HTML report: the table, each metric against the chosen parameters, and
    each metric's distribution across trials (charts embedded as PNG data URIs)."""
    from matplotlib.figure import Figure

    metrics = [m for m in frame.attrs.get("metrics", []) if m in frame.columns][:8]
    if chart_params:
        params = [_resolve_column(frame, p, "chart_params") for p in chart_params]
    else:
        params = _varying_numeric_params(frame)
    charts: list[str] = []
    for metric in metrics:
        values = frame[metric]
        if values.dropna().empty:
            continue
        panels = len(params) + 1
        fig = Figure(figsize=(3.6 * panels, 3.0))
        axes = fig.subplots(1, panels, squeeze=False)[0]
        for ax, param in zip(axes, params, strict=False):
            ax.scatter(_plottable(frame[param]), values.astype(float), s=18, alpha=0.8)
            ax.set_xlabel(param)
            ax.set_ylabel(metric)
        hist = axes[-1]
        hist.hist(
            values.dropna().astype(float),
            bins=min(20, max(5, int(values.notna().sum() ** 0.5) + 1)),
        )
        hist.set_xlabel(metric)
        hist.set_ylabel("trials")
        fig.suptitle(metric)
        against = ", ".join(map(html.escape, params)) or "no varying parameter"
        charts.append(
            f'<figure><img alt="{html.escape(metric)}" src="data:image/png;base64,{_png(fig)}">'
            f"<figcaption>{html.escape(metric)} against {against}, and its distribution across "
            "trials</figcaption></figure>"
        )
    title = f"Leaderboard: {frame.attrs.get('experiment', '')}"
    sort = frame.attrs.get("sort")
    order = "ascending" if frame.attrs.get("ascending") else "descending"
    meta = f"{len(frame)} trials" + (f", sorted by {sort} ({order})" if sort else "")
    generated = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    table = frame.to_html(index=False, escape=True, float_format=lambda v: f"{v:.4g}", na_rep="")
    return (
        "<!DOCTYPE html>\n<html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>"
        "body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;font-size:13px}"
        "td,th{border:1px solid #ccc;padding:3px 6px;text-align:right}"
        "figure{margin:1.5em 0}img{max-width:100%}"
        "</style></head><body>"
        f"<h1>{html.escape(title)}</h1><p>{html.escape(meta)}; generated {generated}</p>"
        f"{table}<h2>Charts</h2>{''.join(charts) or '<p>No metrics to chart.</p>'}"
        "</body></html>\n"
    )
