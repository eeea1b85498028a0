"""Segment identities that last across re-fits: this run's clusters matched to the last run's
segments.

A clusterer numbers its clusters afresh at every fit (DBSCAN by size, KMeans by its centres), so
"cluster 1" of this week need not be last week's. Each ``segment`` run therefore gives every
cluster a *segment id* and records, in ``model/segments.json``, how it got it:

* the first run under an output root: segment id = cluster id;
* a later run (the latest published run date before this one is *the previous run*) matches its
  clusters to the previous run's segments

  - by **overlap** when enough customers are in both runs (``min_common``, a share of this run's
    customers): the Jaccard index of each (cluster, segment) pair over the common customers, and
    the one-to-one assignment that maximises its sum (Hungarian algorithm); a pair is a match
    at ``min_jaccard`` or more;
  - else by **profile**: the distance between segment means of the original features, each
    divided by the feature's standard deviation over all customers of this run (root mean square
    over the features, so "in standard deviations"); a pair is a match at
    ``max_profile_distance`` or less;

* a matched cluster keeps the segment's id and name; an unmatched one gets the next unused id;
  an unmatched previous segment is retired. Noise (-1) stays -1 and is never matched.

Lineage events are recorded with their figures: ``kept`` (Jaccard or distance), ``new`` (with
the previous segments that gave it at least ``split_share`` of its common customers; ``split``
when one of those is kept elsewhere) and ``retired`` (with the clusters that received at least
``split_share`` of its common customers; ``merged`` when one of them is a kept segment).

The matching itself is pure Python on small tables (clusters x segments); the overlap counts
and profiles come from Spark (:func:`overlap_counts`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import DataFrame

FORMAT_VERSION = 1
NOISE = -1
FILE = "segments.json"
METHODS = ("auto", "overlap", "profile", "off")


@dataclass(frozen=True)
class MatchSettings:
    """The ``[segments]`` table of the segment config (docs/segment.md)."""

    match: str = "auto"
    min_jaccard: float = 0.3
    min_common: float = 0.5
    max_profile_distance: float = 0.5
    split_share: float = 0.2
    names: Mapping[int, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "match": self.match,
            "min_jaccard": self.min_jaccard,
            "min_common": self.min_common,
            "max_profile_distance": self.max_profile_distance,
            "split_share": self.split_share,
            "names": {str(k): v for k, v in self.names.items()},
        }


def check_settings(table: Mapping[str, Any]) -> tuple[MatchSettings, list[str]]:
    """The settings of a ``[segments]`` table and the problems found (each names key and value)."""
    problems: list[str] = []
    known = {"match", "min_jaccard", "min_common", "max_profile_distance", "split_share", "names"}
    for key in sorted(set(table) - known):
        problems.append(f"[segments].{key}: unknown key; accepted: {', '.join(sorted(known))}")
    match = table.get("match", "auto")
    if match not in METHODS:
        problems.append(f"[segments].match: {match!r}; accepted: {', '.join(METHODS)}")
    shares: dict[str, float] = {}
    for key, default, low, high in (
        ("min_jaccard", 0.3, 0.0, 1.0),
        ("min_common", 0.5, 0.0, 1.0),
        ("split_share", 0.2, 0.0, 1.0),
        ("max_profile_distance", 0.5, 0.0, math.inf),
    ):
        value = table.get(key, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            problems.append(f"[segments].{key}: {value!r}; accepted: a number")
            continue
        if not (low < float(value) <= high) or math.isnan(float(value)):
            upper = "1" if high == 1.0 else "inf"
            problems.append(f"[segments].{key}: {value!r}; accepted: in ({low:g}, {upper}]")
            continue
        shares[key] = float(value)
    names: dict[int, str] = {}
    raw_names = table.get("names", {})
    if not isinstance(raw_names, Mapping):
        problems.append(f'[segments].names: {raw_names!r}; accepted: a table of id = "name"')
    else:
        for key, value in raw_names.items():
            try:
                sid = int(key)
            except (TypeError, ValueError):
                sid = -2
            if sid < 0 or not isinstance(value, str) or not value.strip():
                problems.append(
                    f"[segments].names.{key}: {value!r}; accepted: a segment id >= 0 = a "
                    "non-empty name"
                )
                continue
            names[sid] = value.strip()
    if problems:
        return MatchSettings(), problems
    return (
        MatchSettings(
            match=str(match),
            min_jaccard=shares["min_jaccard"],
            min_common=shares["min_common"],
            max_profile_distance=shares["max_profile_distance"],
            split_share=shares["split_share"],
            names=names,
        ),
        [],
    )


@dataclass
class Previous:
    """What the previous run's ``segments.json`` and summary say about its segments."""

    run_date: str
    run_id: str
    #: segment id -> name
    names: dict[int, str]
    #: segment id -> mean of each original feature (empty without profiles)
    profiles: dict[int, dict[str, float]]
    next_id: int


def default_name(segment_id: int) -> str:
    return f"segment {segment_id}"


def assign_ids(
    clusters: Sequence[int],
    previous: Previous | None,
    settings: MatchSettings,
    *,
    overlap: Mapping[tuple[int, int], int] | None = None,
    customers: int = 0,
    profiles: Mapping[int, Mapping[str, float]] | None = None,
    scale: Mapping[str, float] | None = None,
    suggested: Mapping[int, str] | None = None,
) -> dict[str, Any]:
    """The segment id of each cluster and the lineage, as ``segments.json`` stores them.

    Parameters
    ----------
    clusters : sequence of int
        This run's cluster ids (noise, -1, is left out if present).
    previous : Previous or None
        The previous run's segments; None for the first run under an output root.
    settings : MatchSettings
    overlap : mapping, optional
        ``(cluster, previous segment) -> customers in both`` over the customers of both runs,
        noise included as -1 on either side (:func:`overlap_counts`).
    customers : int
        This run's number of customers (for ``min_common``).
    profiles, scale : mapping, optional
        This run's per-cluster feature means, and each feature's standard deviation over all
        of this run's customers (the profile match).
    suggested : mapping, optional
        ``cluster -> name`` from its features (:mod:`.explain`), the name of a segment that is
        new (neither ``settings.names`` nor the previous run names it).

    Examples
    --------
    >>> out = assign_ids([0, 1], None, MatchSettings())
    >>> [(s["cluster"], s["segment_id"]) for s in out["segments"]]
    [(0, 0), (1, 1)]
    """
    clusters = sorted({int(c) for c in clusters if int(c) != NOISE})
    overlap = dict(overlap or {})
    common = sum(overlap.values())
    result: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "settings": settings.to_dict(),
        "previous": None,
        "method": "first",
        "common_customers": common,
    }
    ids: dict[int, int]
    if previous is None or settings.match == "off":
        ids = {c: c for c in clusters}
        next_id = max([*clusters, -1]) + 1
        if previous is not None:  # matching off: ids continue after the previous run's
            ids = {c: previous.next_id + i for i, c in enumerate(clusters)}
            next_id = previous.next_id + len(clusters)
            result["previous"] = {"run_date": previous.run_date, "run_id": previous.run_id}
            result["method"] = "off"
        return _finish(result, clusters, ids, {}, next_id, previous, settings, overlap, suggested)
    result["previous"] = {"run_date": previous.run_date, "run_id": previous.run_id}
    method = settings.match
    if method == "auto":
        enough = customers > 0 and common >= settings.min_common * customers
        method = "overlap" if enough else "profile"
    result["method"] = method
    prev_ids = sorted(previous.names)
    if method == "overlap":
        scores = _jaccard(clusters, prev_ids, overlap)
        matches = _assign(scores, lambda v: v >= settings.min_jaccard, maximise=True)
    else:
        scores = _profile_distance(clusters, prev_ids, profiles or {}, previous.profiles, scale)
        matches = _assign(scores, lambda v: v <= settings.max_profile_distance, maximise=False)
    ids = {c: p for c, (p, _) in matches.items()}
    next_id = previous.next_id
    for c in clusters:
        if c not in ids:
            ids[c] = next_id
            next_id += 1
    figures = {c: v for c, (_, v) in matches.items()}
    return _finish(result, clusters, ids, figures, next_id, previous, settings, overlap,
                   suggested)  # fmt: skip


def _finish(
    result: dict[str, Any],
    clusters: list[int],
    ids: dict[int, int],
    figures: dict[int, float],
    next_id: int,
    previous: Previous | None,
    settings: MatchSettings,
    overlap: Mapping[tuple[int, int], int],
    suggested: Mapping[int, str] | None = None,
) -> dict[str, Any]:
    prev_names = previous.names if previous is not None else {}
    suggested = suggested or {}
    score_key = "jaccard" if result["method"] == "overlap" else "distance"
    cur_common = _totals(overlap, 0)
    prev_common = _totals(overlap, 1)
    kept_ids = {ids[c] for c in figures}
    segments, events = [], []
    for c in clusters:
        sid = ids[c]
        # the config's name, else the name it had, else the one its features suggest (.explain)
        name = (settings.names.get(sid) or prev_names.get(sid) or suggested.get(c)
                or default_name(sid))  # fmt: skip
        entry: dict[str, Any] = {"cluster": c, "segment_id": sid, "name": name}
        if c in figures:
            entry["status"] = "kept"
            entry[score_key] = figures[c]
            events.append({"event": "kept", "segment_id": sid, score_key: figures[c]})
        elif previous is None or result["method"] == "off":
            entry["status"] = "first" if previous is None else "new"
        else:
            entry["status"] = "new"
            origins = [
                {"segment_id": p, "share": n / cur_common[c]}
                for (cc, p), n in sorted(overlap.items())
                if cc == c
                and p != NOISE
                and cur_common.get(c)
                and n / cur_common[c] >= settings.split_share
            ]
            split = any(o["segment_id"] in kept_ids for o in origins)
            events.append(
                {"event": "split" if split else "new", "segment_id": sid, "from": origins}
            )
        segments.append(entry)
    if previous is not None and result["method"] != "off":
        seg_of = {c: ids[c] for c in clusters}
        for p in sorted(previous.names):
            if p in kept_ids:
                continue
            into = [
                {"segment_id": seg_of[c], "share": n / prev_common[p]}
                for (c, pp), n in sorted(overlap.items())
                if pp == p and c != NOISE and c in seg_of and prev_common.get(p)
                and n / prev_common[p] >= settings.split_share
            ]  # fmt: skip
            merged = any(i["segment_id"] in kept_ids for i in into)
            events.append(
                {"event": "merged" if merged else "retired", "segment_id": p,
                 "name": previous.names[p], "into": into}
            )  # fmt: skip
    result["segments"] = segments
    result["events"] = events
    result["next_id"] = next_id
    result["counts"] = {
        kind: sum(1 for e in events if e["event"] == kind)
        for kind in ("kept", "new", "split", "retired", "merged")
    }
    return result


def _totals(overlap: Mapping[tuple[int, int], int], side: int) -> dict[int, int]:
    out: dict[int, int] = {}
    for key, n in overlap.items():
        out[key[side]] = out.get(key[side], 0) + n
    return out


def _jaccard(
    clusters: list[int], segments: list[int], overlap: Mapping[tuple[int, int], int]
) -> dict[tuple[int, int], float]:
    """Jaccard index of each (cluster, segment) pair over the customers of both runs."""
    cur, prev = _totals(overlap, 0), _totals(overlap, 1)
    out = {}
    for c in clusters:
        for p in segments:
            both = overlap.get((c, p), 0)
            union = cur.get(c, 0) + prev.get(p, 0) - both
            if both and union:
                out[(c, p)] = both / union
    return out


def _profile_distance(
    clusters: list[int],
    segments: list[int],
    current: Mapping[int, Mapping[str, float]],
    previous: Mapping[int, Mapping[str, float]],
    scale: Mapping[str, float] | None,
) -> dict[tuple[int, int], float]:
    """RMS over the shared features of (mean difference / this run's standard deviation)."""
    out = {}
    for c in clusters:
        for p in segments:
            a, b = current.get(c), previous.get(p)
            if not a or not b:
                continue
            terms = []
            for name in sorted(set(a) & set(b)):
                sd = (scale or {}).get(name) or 0.0
                x, y = a[name], b[name]
                if sd > 0 and x is not None and y is not None:
                    terms.append(((x - y) / sd) ** 2)
            if terms:
                out[(c, p)] = math.sqrt(sum(terms) / len(terms))
    return out


def _assign(
    scores: Mapping[tuple[int, int], float], accept: Any, maximise: bool
) -> dict[int, tuple[int, float]]:
    """The one-to-one pairing with the best total score (Hungarian), cut to accepted pairs."""
    if not scores:
        return {}
    import numpy as np
    from scipy.optimize import linear_sum_assignment

    rows = sorted({c for c, _ in scores})
    cols = sorted({p for _, p in scores})
    # pairs that could not be a match count as no pair at all: the best total is taken over
    # acceptable pairs only (else a far pair forced on one cluster could cost another its match)
    worst = 0.0 if maximise else max(scores.values()) * 10 + 1.0
    cost = np.full((len(rows), len(cols)), worst)
    for (c, p), v in scores.items():
        if accept(v):
            cost[rows.index(c), cols.index(p)] = v
    r, k = linear_sum_assignment(cost, maximize=maximise)
    out = {}
    for i, j in zip(r, k, strict=True):
        key = (rows[i], cols[j])
        if key in scores and accept(scores[key]):
            out[rows[i]] = (cols[j], float(scores[key]))
    return out


def overlap_counts(
    current: DataFrame, previous: DataFrame, id_col: str
) -> dict[tuple[int, int], int]:
    """``(cluster, previous segment_id) -> customers`` over the customers of both runs."""
    from pyspark.sql import functions as F

    joined = current.select(id_col, F.col("cluster").alias("__c")).join(
        previous.select(id_col, F.col("segment_id").alias("__p")), id_col
    )
    rows = joined.groupBy("__c", "__p").count().collect()
    return {(int(r["__c"]), int(r["__p"])): int(r["count"]) for r in rows}


def segment_column(ids: Mapping[int, int]) -> Any:
    """A Spark column: the segment id of the row's ``cluster`` (-1 for noise)."""
    from pyspark.sql import functions as F

    mapping = F.create_map(*[F.lit(x) for c, s in sorted(ids.items()) for x in (int(c), int(s))])
    cluster = F.col("cluster").cast("int")
    if not ids:
        return F.when(cluster == NOISE, F.lit(NOISE)).otherwise(F.lit(None).cast("int"))
    return F.when(cluster == NOISE, F.lit(NOISE)).otherwise(F.element_at(mapping, cluster))


def with_segment_ids(
    assigned: DataFrame, id_col: str, record: Mapping[str, Any] | None
) -> DataFrame:
    """Assignments with ``segment_id`` after ``cluster``, as ``record`` (``segments.json``)
    gives it; a model from before segment ids (``record`` None): the cluster id."""
    from pyspark.sql import functions as F

    ids = segment_column(ids_of(record)) if record else F.col("cluster")
    rest = [c for c in assigned.columns if c not in (id_col, "cluster")]
    return assigned.select(id_col, "cluster", ids.cast("int").alias("segment_id"), *rest)


def ids_of(record: Mapping[str, Any]) -> dict[int, int]:
    """cluster -> segment id from a ``segments.json`` record."""
    return {int(s["cluster"]): int(s["segment_id"]) for s in record.get("segments", [])}


def previous_run(spark: Any, root: str, run_date: str) -> Any:
    """The published run of the latest run date before ``run_date`` under ``root``, or None."""
    from .publish import current_run, run_dates

    earlier = [d for d in run_dates(spark, root) if d < run_date]
    return current_run(spark, root, earlier[-1]) if earlier else None


def read_record(spark: Any, run: Any) -> dict[str, Any] | None:
    """A run's ``segments.json`` (None for a run from before segment ids)."""
    from .pipeline import read_json

    return read_json(spark, f"{run.model}/{FILE}")


def segment_assignments(spark: Any, run: Any) -> DataFrame:
    """A run's assignments with a ``segment_id`` (its ``cluster`` for runs before segment ids)."""
    from pyspark.sql import functions as F

    df = spark.read.parquet(run.assignments)
    if "segment_id" not in df.columns:
        df = df.withColumn("segment_id", F.col("cluster").cast("int"))
    return df


def load_previous(spark: Any, run: Any) -> Previous:
    """:class:`Previous` from a published run: its segments, names, profiles and next id."""
    from .pipeline import read_json

    record = read_record(spark, run)
    summary: dict[str, Any] = {}
    try:
        summary = read_json(spark, run.summary) or {}
    except Exception:  # a legacy run keeps its summary elsewhere: profiles are optional
        summary = {}
    if record is None:  # a run from before segment ids: segment id = cluster id
        clusters = [int(c) for c in (summary.get("cluster_sizes") or {}) if int(c) != NOISE]
        ids = {c: c for c in clusters}
        names = {c: default_name(c) for c in clusters}
        next_id = max([*clusters, -1]) + 1
    else:
        ids = ids_of(record)
        names = {int(s["segment_id"]): str(s["name"]) for s in record["segments"]}
        next_id = int(record["next_id"])
    profiles = {
        ids[int(p["cluster"])]: dict(p["mean"])
        for p in summary.get("profiles") or []
        if int(p["cluster"]) in ids
    }
    return Previous(run.run_date, run.run_id, names, profiles, next_id)


def transition_counts(previous: DataFrame, current: DataFrame, id_col: str) -> DataFrame:
    """Customers moving between the segments of two runs, computed in Spark.

    Columns: ``from_segment``, ``to_segment`` (int: a segment id, -1 for noise, null for a
    customer absent from that run: new in ``current`` or lost from ``previous``) and
    ``customers`` (long), one row per pair that occurs, sorted.
    """
    from pyspark.sql import functions as F

    a = previous.select(id_col, F.col("segment_id").cast("int").alias("from_segment"))
    b = current.select(id_col, F.col("segment_id").cast("int").alias("to_segment"))
    return (
        a.join(b, id_col, "full_outer")
        .groupBy("from_segment", "to_segment")
        .agg(F.count(F.lit(1)).alias("customers"))
        .orderBy(F.col("from_segment").asc_nulls_first(), F.col("to_segment").asc_nulls_last())
    )


def transition_rows(counts: DataFrame) -> list[dict[str, Any]]:
    """:func:`transition_counts` collected as plain dicts (a small table)."""
    return [
        {"from_segment": r["from_segment"], "to_segment": r["to_segment"],
         "customers": int(r["customers"])}
        for r in counts.collect()
    ]  # fmt: skip


def transition_matrix(
    rows: Sequence[Mapping[str, Any]],
) -> tuple[list[str], list[str], list[list[int]]]:
    """(row labels, column labels, counts): previous segments (then noise, then "new") as rows,
    current segments (then noise, then "lost") as columns."""

    def label(value: Any, absent: str) -> str:
        if value is None:
            return absent
        return "noise" if int(value) == NOISE else str(int(value))

    def order(labels: set[str], absent: str) -> list[str]:
        numbers = sorted(int(x) for x in labels if x not in ("noise", absent))
        return [str(n) for n in numbers] + [x for x in ("noise", absent) if x in labels]

    froms = {label(r["from_segment"], "new") for r in rows}
    tos = {label(r["to_segment"], "lost") for r in rows}
    row_labels, col_labels = order(froms, "new"), order(tos, "lost")
    grid = [[0] * len(col_labels) for _ in row_labels]
    for r in rows:
        i = row_labels.index(label(r["from_segment"], "new"))
        j = col_labels.index(label(r["to_segment"], "lost"))
        grid[i][j] += int(r["customers"])
    return row_labels, col_labels, grid


def format_matrix(rows: Sequence[Mapping[str, Any]], title: str = "") -> str:
    """The transition matrix as a plain-text table (rows: from, columns: to)."""
    row_labels, col_labels, grid = transition_matrix(rows)
    head = ["from \\ to", *col_labels, "total"]
    body = [
        [r, *[str(v) for v in line], str(sum(line))]
        for r, line in zip(row_labels, grid, strict=True)
    ]
    totals = [sum(line[j] for line in grid) for j in range(len(col_labels))]
    body.append(["total", *[str(t) for t in totals], str(sum(totals))])
    widths = [max(len(x[i]) for x in [head, *body]) for i in range(len(head))]
    lines = [title] if title else []
    for line in [head, *body]:
        lines.append("  ".join(x.rjust(w) for x, w in zip(line, widths, strict=True)))
    return "\n".join(lines) + "\n"
