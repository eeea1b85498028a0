"""``spark-clustering segment --config FILE``: one segmentation trial end to end.

Features (read, or prepared from raw data with a prepare spec) -> reducer (none, PCA, UMAP) ->
clusterer (DBSCAN with a given eps or the k-distance knee, KMeans, Gaussian mixture) ->
evaluation -> outputs, under ``[output].path``::

    runs/run_date=YYYY-MM-DD/run-<run_id>/   assignments/ (Parquet), model/ (what ``score``
                                             reapplies), summary.json, report.html, charts
    runs/run_date=YYYY-MM-DD/_commits/       which run of the date is the published one

A run takes the run date's lock before any work (a second run of the date fails at once naming
the holder, or waits with ``--wait-lock``), writes its own ``run-<run_id>/`` folder, publishes it
in one atomic step and cleans what killed or superseded runs left
(:mod:`spark_clustering.jobs.publish`): readers see the previous complete run or the new one,
never a mixture. Read a date's assignments with
``spark.read.parquet(current_run(spark, root, date).assignments)`` or all dates with
``read_assignments(spark, root)``. The config is checked before Spark starts; a bad one ends the
job with exit code 2 and every problem listed. See docs/segment.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import os
import sys
import tempfile
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..sampling import uniform
from . import autochoice, drift, explain, identity
from .entry import guarded, job_main
from .faults import fault_point
from .identity import transition_counts, transition_rows
from .lock import WriterLock
from .pipeline import FORMAT_VERSION, PIPELINE_FILE, REDUCED_COL, Stages, fold_into_noise
from .publish import clean, lock_path, publish, run_outputs
from .segment_config import SegmentConfig, load_config

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import DataFrame, SparkSession

log = logging.getLogger(__name__)


@dataclass
class SegmentResult:
    """What a ``segment`` run produced (also written as ``summary.json``)."""

    run_id: str
    model_version: str
    run_date: str
    assignments_path: str
    model_path: str
    report_path: str
    summary: dict[str, Any] = field(default_factory=dict)


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``segment`` sub-command."""
    p = subparsers.add_parser(
        "segment",
        help="one segmentation run: features, reducer, clusterer, report, assignments",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    _arguments(p)
    p.set_defaults(func=run)
    return p


def _arguments(p: argparse.ArgumentParser, example: str = "examples/segment.toml") -> None:
    p.add_argument("--config", required=True, help=f"the TOML config (see {example})")
    p.add_argument("--input", default=None, help="override [input].path")
    p.add_argument("--output", default=None, help="override [output].path")
    p.add_argument("--run-date", default=None, help="override run_date (YYYY-MM-DD)")
    p.add_argument("--tracking", default=None, help="override [tracking].backend")
    p.add_argument("--master", default=None, help="Spark master (default: spark-submit's)")
    p.add_argument("--gpu", choices=("auto", "on", "off"), default="auto", help="RAPIDS plugin")
    p.add_argument(
        "--conf", action="append", default=[], metavar="KEY=VALUE", help="extra Spark setting"
    )
    p.add_argument(
        "--wait-lock",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="wait up to this long for another run of the same run date to finish (default: "
        "fail at once, naming it)",
    )
    p.add_argument(
        "--break-lock",
        action="store_true",
        help="break the run date's lock when its holder cannot be alive: a run on another host "
        "known to be dead (a dead run on this host is detected without it)",
    )


def _features(spark: SparkSession, config: SegmentConfig) -> tuple[DataFrame, str, Any]:
    """``(<id>, features)`` rows, the id column, and the PreparedFeatures (raw input) or None."""
    from pyspark.sql import functions as F

    if config.input_kind == "raw":
        from spark_clustering.features.prepare import prepare_features
        from spark_clustering.features.spec import load_spec

        assert config.spec is not None
        spec = load_spec(config.spec).with_paths(config.input_path, None)
        prepared = prepare_features(spark, spec)
        return prepared.features, spec.input.id_col, prepared
    df = spark.read.parquet(config.input_path)
    missing = [c for c in (config.id_col, config.features_col) if c not in df.columns]
    if missing:
        raise ValueError(
            f"{config.input_path} has no column(s) {missing}; columns: {df.columns} "
            "(set [input].id_col / features_col)"
        )
    features = df.select(config.id_col, F.col(config.features_col).alias("features"))
    return features, config.id_col, None


def _reducer(config: SegmentConfig) -> Any:
    from spark_clustering import PCA, UMAP

    params = dict(config.reducer_params)
    if config.reducer == "umap":
        return UMAP(featuresCol="features", outputCol=REDUCED_COL, **params)
    return PCA(featuresCol="features", outputCol=REDUCED_COL, **params)


def _clusterer(
    config: SegmentConfig,
    features_col: str,
    eps: float | None,
    chosen: Mapping[str, Any] | None = None,
) -> Any:
    """The config's clusterer; ``chosen``: parameters of the automatic choice over the config's."""
    from spark_clustering import DBSCAN, GaussianMixture, KMeans

    params = {**config.clusterer_params, **(chosen or {})}
    if config.clusterer == "dbscan":
        params.pop("epsSampleSize", None)
        params.pop("epsMultiple", None)
        params["eps"] = eps
        return DBSCAN(featuresCol=features_col, predictionCol="cluster", **params)
    if config.clusterer == "kmeans":
        return KMeans(featuresCol=features_col, predictionCol="cluster", **params)
    return GaussianMixture(featuresCol=features_col, predictionCol="cluster", **params)


def _profile_source(features: DataFrame, id_col: str, prepared: Any) -> tuple[DataFrame, list[str]]:
    """Rows of the original (unscaled) features per customer and their column names."""
    from spark_clustering.features.assemble import feature_names
    from spark_clustering.features.vectors import as_array

    if prepared is not None and prepared._cached:
        table = prepared._cached[0]
        names = [c for c in prepared.preparation.get("numeric", []) if c in table.columns]
        if names:
            return table.select(id_col, *names), names
    try:
        names = feature_names(features)
    except ValueError:
        first = features.select("features").first()
        names = [f"f{i}" for i in range(len(first[0]) if first else 0)]
    arr = as_array(features, "features")  # a vector or an array<double> column
    cols = [arr[i].alias(n) for i, n in enumerate(names)]
    return features.select(id_col, *cols), names


class _Persisted:
    """A persisted DataFrame released with the run's other cached work."""

    def __init__(self, df: DataFrame) -> None:
        self.df = df

    def release(self) -> None:
        self.df.unpersist()


def _segment_ids(
    spark: SparkSession,
    config: SegmentConfig,
    assigned: DataFrame,
    id_col: str,
    summary: Mapping[str, Any],
) -> tuple[dict[str, Any], DataFrame | None]:
    """This run's ``segments.json`` record (:mod:`.identity`) and the previous run's
    assignments with their segment ids (None for the first run under the output root)."""
    settings = config.segments
    clusters = [int(c) for c in summary["cluster_sizes"]]
    before_run = identity.previous_run(spark, config.output_path.rstrip("/"), config.run_date)
    suggested = {int(p["cluster"]): p["name"] for p in summary.get("profiles") or [] if "name" in p}
    if before_run is None:
        return identity.assign_ids(clusters, None, settings, suggested=suggested), None
    previous = identity.load_previous(spark, before_run)
    before = identity.segment_assignments(spark, before_run)
    overlap = identity.overlap_counts(assigned, before, id_col) if settings.match != "off" else {}
    customers = int(summary["customers"])
    by_profile = settings.match == "profile" or (
        settings.match == "auto" and sum(overlap.values()) < settings.min_common * customers
    )
    profiles = scale = None
    if by_profile and summary.get("profiles"):
        profiles = {int(p["cluster"]): p["mean"] for p in summary["profiles"]}
        # the profiles stage measured each feature's spread over all customers with them
        scale = {n: float(v["std"]) for n, v in summary["population"].items()}
    record = identity.assign_ids(clusters, previous, settings, overlap=overlap,
                                 customers=customers, profiles=profiles,
                                 scale=scale, suggested=suggested)  # fmt: skip
    log.info(
        "segment: %s matched to %s by %s: %s",
        config.run_date, previous.run_date, record["method"],
        ", ".join(f"{v} {k}" for k, v in record["counts"].items()),
    )  # fmt: skip
    return record, before


def _scatter_png(
    df: DataFrame, col: str, n: int, total: int, seed: int, path: str,
    labels: Mapping[int, str] | None = None, sizes: Mapping[int, int] | None = None,
) -> str:  # fmt: skip
    """A scatter of up to ``n`` sampled rows coloured by segment (:mod:`.charts`: the largest
    ones distinct and named in the legend, the others together, noise grey): in 2-D, and beside
    it in 3-D when the column has three dimensions or more (the first principal axes of the
    sample when it has more than the plot shows)."""
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from spark_clustering.features.vectors import as_array

    from . import charts

    # the n rows with the smallest keys hashed from the seed and the row: the same on any layout
    key = uniform(seed, "scatter", col, "cluster")
    rows = df.orderBy(key).limit(n).select(as_array(df, col).alias("x"), "cluster").collect()
    x = np.array([r["x"] for r in rows], dtype=float).reshape(len(rows), -1)
    cluster = np.array([r["cluster"] for r in rows], dtype=int)
    d = x.shape[1]
    if d == 1:
        x = np.column_stack([x[:, 0], np.zeros(len(x))])
    elif d > 3 and len(x) > 1:
        centred = x - x.mean(axis=0)
        _, _, vt = np.linalg.svd(centred, full_matrices=False)
        x = centred @ vt[:3].T
    axes = "first principal axes of the sample" if d > 3 else "dimensions 1, 2 (and 3)"
    sizes = dict(sizes or {int(c): int((cluster == c).sum()) for c in np.unique(cluster)})
    colour = charts.colours(sizes)
    first = charts.shown(sizes)
    groups = [("noise", cluster == -1, charts.NOISE)]
    groups.append(("other segments", ~np.isin(cluster, [*first, -1]), charts.OTHER))
    groups += [((labels or {}).get(c, str(c))[:30], cluster == c, colour[c]) for c in first]
    panels = 2 if x.shape[1] >= 3 else 1
    fig = Figure(figsize=(7 * panels, 5.5), dpi=100)
    FigureCanvasAgg(fig)
    for k in range(panels):
        # Any: a 3-D Axes' scatter takes a third coordinate, which Axes' stubs do not know
        ax: Any = fig.add_subplot(1, panels, k + 1, **({"projection": "3d"} if k else {}))
        for label, mask, c in groups:
            if mask.any():
                dims = [x[mask, j] for j in range(3 if k else 2)]
                ax.scatter(*dims, s=4, c=c, label=label)
        if k == panels - 1:
            ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=7, markerscale=3)
    fig.suptitle(f"{len(rows)} sampled customers ({col}, {axes})")
    fig.tight_layout()
    fig.savefig(path)
    return path


def _write_summary(summary: dict[str, Any], local_dir: str) -> None:
    """``summary.json`` and ``report.html`` of a run, in ``local_dir``."""
    from .pipeline import write_json

    write_json(None, summary, local_dir, "summary.json")
    _write_report(summary, local_dir)


def _write_report(summary: dict[str, Any], local_dir: str) -> str:
    """The self-contained HTML report (PNGs embedded) of a run; returns its path."""
    from .report import render_report

    path = os.path.join(local_dir, "report.html")
    with open(path, "w") as fh:
        fh.write(render_report(summary, local_dir))
    return path


@dataclass
class Inputs:
    """The customers' ``<id>, features`` rows, read (or prepared) and persisted once; a sweep
    shares them between its trials."""

    features: DataFrame
    id_col: str
    prepared: Any
    rows: int
    #: drift references of the features (:func:`.drift.feature_reference`), per selection
    feature_references: dict[Any, Any] = field(default_factory=dict)

    def release(self) -> None:
        self.features.unpersist()
        if self.prepared is not None:
            self.prepared.unpersist()


@dataclass
class Reduction:
    """A reducer's output (or the features themselves for reducer none), persisted when it was
    computed; ``col`` is the column the clusterer reads."""

    model: Any
    df: DataFrame
    col: str

    def release(self) -> None:
        if self.model is not None:
            self.df.unpersist()


def load_inputs(spark: SparkSession, config: SegmentConfig, stages: Stages) -> Inputs:
    """Read (or prepare) the features, persist them and count them; ``ValueError`` if none."""
    from pyspark import StorageLevel

    with stages.stage("features") as info:
        features, id_col, prepared = _features(spark, config)
        features = features.persist(StorageLevel.MEMORY_AND_DISK)
        inputs = Inputs(features, id_col, prepared, features.count())
        info["rows"] = inputs.rows
    if inputs.rows == 0:
        inputs.release()
        raise ValueError(f"no customers in {config.input_path}")
    return inputs


def reduce_features(features: DataFrame, config: SegmentConfig, stages: Stages) -> Reduction:
    """Fit the config's reducer on ``features`` and persist its output (nothing for none)."""
    from pyspark import StorageLevel

    if config.reducer == "none":
        return Reduction(None, features, "features")
    with stages.stage(f"reduce ({config.reducer})") as info:
        model = _reducer(config).fit(features)
        reduced = model.transform(features).persist(StorageLevel.MEMORY_AND_DISK)
        info["rows"] = reduced.count()
    return Reduction(model, reduced, REDUCED_COL)


def k_distance_graph(reduction: Reduction, config: SegmentConfig, stages: Stages) -> Any:
    """The k-distance graph (``KDistanceGraph``) of DBSCAN's ``minPoints`` over the reduction."""
    from spark_clustering import suggest_eps

    k = int(config.clusterer_params["minPoints"])
    sample = int(config.clusterer_params.get("epsSampleSize", 5000))
    with stages.stage("k-distance graph") as info:
        graph = suggest_eps(reduction.df, k=k, featuresCol=reduction.col, sampleSize=sample)
        info["rows"] = graph.sample_size
    return graph


def resolve_eps(config: SegmentConfig, graph: Any) -> dict[str, Any]:
    """DBSCAN's eps from the config and the k-distance graph: given, the knee (``auto``) or
    ``epsMultiple`` times the knee; returned with how it was chosen (``summary["eps"]``)."""
    given = config.clusterer_params.get("eps", "auto")
    multiple = config.clusterer_params.get("epsMultiple")
    suggested = float(graph.eps)
    if given != "auto":
        eps = float(given)
    else:
        eps = suggested * float(multiple if multiple is not None else 1.0)
    info = {"value": eps, "suggested": suggested, "auto": given == "auto", "k": graph.k}
    if multiple is not None:
        info["multiple"] = float(multiple)
    return info


def fit_clusterer(
    config: SegmentConfig, reduction: Reduction, eps: float | None, stages: Stages
) -> tuple[Any, DataFrame]:
    """Fit the config's clusterer on the reduction; its model and persisted output."""
    from pyspark import StorageLevel

    with stages.stage(f"cluster ({config.clusterer})") as info:
        model = _clusterer(config, reduction.col, eps).fit(reduction.df)
        clustered = model.transform(reduction.df).persist(StorageLevel.MEMORY_AND_DISK)
        info["rows"] = clustered.count()
    return model, clustered


def _preparation(
    spark: SparkSession, config: SegmentConfig, prepared: Any, summary: dict[str, Any], local: str
) -> None:
    """The preparation's figures (``summary["preparation"]``) and charts (in ``local``): from
    this run's own preparation (raw input), or the ``prepare`` job's report.json beside the
    features it wrote (``<prepared>/report``) when there is one."""
    from spark_clustering.features.analysis import write_charts

    from .pipeline import read_json

    if prepared is not None:
        report: Mapping[str, Any] | None = prepared.report
    else:
        parent = config.input_path.rstrip("/").rsplit("/", 1)[0]
        try:
            report = read_json(spark, f"{parent}/report/report.json")
        except Exception as exc:  # a report we cannot read is no reason to fail the run
            log.warning("segment: preparation report not read: %s", exc)
            report = None
    if not report:
        return
    summary["preparation"] = explain.preparation_summary(report)
    try:
        charts = write_charts(report, local)
        summary["preparation"]["charts"] = [os.path.basename(c) for c in charts]
    except Exception as exc:
        log.warning("segment: preparation charts not drawn: %s", exc)


def choose_clustering(
    config: SegmentConfig, reduction: Reduction, n: int, stages: Stages, local: str, trial: Any
) -> Any:
    """The automatic choice (:mod:`.autochoice`) over the persisted reduction: every candidate
    fitted, checked against ``[targets]``, scored; the chosen one's model and output, its
    selection curve in ``local``/choice.png and each candidate logged to the trial."""
    from pyspark import StorageLevel

    from spark_clustering import evaluate, suggest_eps

    def fit(params: dict[str, Any]) -> tuple[Any, DataFrame]:
        """``((model, clusters folded into noise), output)`` of one candidate."""
        model = _clusterer(config, reduction.col, params.get("eps"), params).fit(reduction.df)
        out = model.transform(reduction.df).persist(StorageLevel.MEMORY_AND_DISK)
        folded: list[int] = []
        if config.clusterer == "dbscan":  # clusters no segment: noise (autochoice docstring)
            # sized on the persisted output: the transform (a routing of every row) runs once
            floor = config.targets.min_share * n
            folded = [c for c, size in cluster_sizes(out).items() if c != -1 and size < floor]
            if folded:
                labelled = fold_into_noise(out, folded).persist(StorageLevel.MEMORY_AND_DISK)
                labelled.count()
                out.unpersist()
                out = labelled
        else:
            out.count()
        return (model, folded), out

    def details(fitted: Any) -> dict[str, Any]:
        return {"folded_clusters": len(fitted[1])} if config.clusterer == "dbscan" else {}

    def criterion(fitted: Any, out: DataFrame) -> float:
        if config.clusterer == "gmm":
            return autochoice.gmm_bic(fitted[0], out, reduction.col)
        # the original (prepared) features: a reduction's own space flatters its clusters
        figures = evaluate(out, featuresCol="features", predictionCol="cluster",
                           sampleSize=config.eval_sample_size, repeats=1, seed=config.eval_seed,
                           metrics=["silhouette"], cache=False)  # fmt: skip
        return float(figures["silhouette"])

    def knee(k: int) -> Any:
        sample = int(config.clusterer_params.get("epsSampleSize", 5000))
        return suggest_eps(reduction.df, k=k, featuresCol=reduction.col, sampleSize=sample)

    def release(fitted: Any, out: DataFrame) -> None:
        release_fit(fitted[0], out)

    from spark_clustering.tracking.hooks import muted

    # the candidates' own fits and scores would each log to the trial: the record below says it
    with stages.stage(f"choose ({config.clusterer})") as info, muted():
        choice = autochoice.choose(config.clusterer, config.clusterer_params, n, config.targets,
                                   fit=fit, sizes=cluster_sizes, criterion=criterion,
                                   knee=knee, details=details, release=release)  # fmt: skip
        info["rows"] = len(choice.record["candidates"])
    autochoice.selection_png(choice.record, os.path.join(local, "choice.png"))
    for step, cand in enumerate(choice.record["candidates"]):
        figures = {"auto_segments": cand["n_segments"], "auto_noise_share": cand["noise_share"],
                   "auto_smallest_share": cand["smallest_share"]}  # fmt: skip
        if cand["criterion"] is not None:
            figures["auto_criterion"] = cand["criterion"]
        trial.log_metrics(figures, step=step)
    trial.log_parameters({f"auto.{k}": v for k, v in choice.params.items()})
    log.info("segment: chose %s of %d candidates (%s)", choice.record["params"],
             len(choice.record["candidates"]), choice.record["criterion"])  # fmt: skip
    return choice


def release_fit(model: Any, clustered: DataFrame | None = None) -> None:
    """Free what a fit that is no longer needed keeps cached: its persisted output (when given)
    and, for DBSCAN, the labelled rows the model holds (:meth:`DBSCANModel.unpersist`)."""
    from spark_clustering.clustering.dbscan import DBSCANModel

    if clustered is not None:
        clustered.unpersist()
    if isinstance(model, DBSCANModel):
        model.unpersist()


def cluster_sizes(clustered: DataFrame) -> dict[int, int]:
    """Rows per cluster label (``-1`` is DBSCAN's noise), sorted by label."""
    rows = clustered.groupBy("cluster").count().collect()
    return dict(sorted((int(r["cluster"]), int(r["count"])) for r in rows))


def score_clustering(
    clustered: DataFrame, col: str, config: SegmentConfig, stages: Stages
) -> dict[str, Any]:
    """The scalar figures of :func:`spark_clustering.evaluate` with the config's settings."""
    from spark_clustering import evaluate

    with stages.stage("evaluate") as info:
        metrics = evaluate(
            clustered,
            featuresCol=col,
            predictionCol="cluster",
            sampleSize=config.eval_sample_size,
            repeats=config.eval_repeats,
            seed=config.eval_seed,
        )
        info["rows"] = metrics.get("n_rows")
    out = {k: v for k, v in metrics.items() if _scalar(v)}
    if "silhouette_by_cluster" in metrics:
        out["silhouette_by_cluster"] = metrics["silhouette_by_cluster"]
    return out


def _spark_conf(items: Sequence[str]) -> dict[str, str]:
    conf = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--conf {item!r}; accepted: KEY=VALUE")
        conf[key] = value
    return conf


def tracking_options(config: SegmentConfig) -> dict[str, Any]:
    """The keyword arguments of ``tracking.trial`` the config sets."""
    options: dict[str, Any] = {"backend": config.tracking_backend}
    for name in ("tracking_uri", "artifact_location"):
        if getattr(config, name):
            options[name] = getattr(config, name)
    return options


def run_segment(
    spark: SparkSession,
    config: SegmentConfig,
    *,
    run_id: str | None = None,
    inputs: Inputs | None = None,
    reduction: Reduction | None = None,
    graph: Any = None,
    extra_summary: Mapping[str, Any] | None = None,
    lock: WriterLock | None = None,
    wait_lock: float = 0.0,
    break_lock: bool = False,
) -> SegmentResult:
    """Run one segmentation trial as ``config`` says and publish its outputs.

    Parameters
    ----------
    spark : SparkSession
    config : SegmentConfig
        From :func:`spark_clustering.jobs.segment_config.load_config`.
    run_id : str, optional
        Default: a new random id. The model version is ``<run_date>-<run_id[:8]>``.
    inputs, reduction, graph : optional
        Work already done by the caller (the sweep): the persisted features
        (:func:`load_inputs`), the reduction of ``config.select`` of them
        (:func:`reduce_features`) and DBSCAN's k-distance graph over it
        (:func:`k_distance_graph`). What is given is used as is and left persisted.
    extra_summary : mapping, optional
        More entries for ``summary.json``.
    lock : WriterLock, optional
        The run date's lock (:func:`spark_clustering.jobs.publish.lock_path`), already held by
        the caller (the sweep takes it before its trials); default: taken here, before any work.
    wait_lock, break_lock : optional
        How to take the lock when it is held (:meth:`WriterLock.acquire`).

    Returns
    -------
    SegmentResult

    Raises
    ------
    ValueError
        Bad input data (missing columns, what the preparation rejects); nothing is published.
    spark_clustering.jobs.lock.LockHeld
        Another live run holds the run date's lock.

    Examples
    --------
    >>> result = run_segment(spark, load_config("examples/segment.toml"))  # doctest: +SKIP
    >>> result.summary["metrics"]["n_clusters"]  # doctest: +SKIP
    """
    run_id = run_id or uuid.uuid4().hex
    root = config.output_path.rstrip("/")
    owned_lock = lock is None
    if lock is None:
        lock = WriterLock(spark, lock_path(root, config.run_date), run_id)
        lock.acquire(wait=wait_lock, break_lock=break_lock)
    try:
        fault_point("commit:locked")
        clean(spark, root, config.run_date, writing=run_id)
        return _segment_locked(spark, config, run_id, inputs, reduction, graph, extra_summary)
    finally:
        if owned_lock:
            lock.release()


def _segment_locked(
    spark: SparkSession,
    config: SegmentConfig,
    run_id: str,
    inputs: Inputs | None,
    reduction: Reduction | None,
    graph: Any,
    extra_summary: Mapping[str, Any] | None,
) -> SegmentResult:
    """:func:`run_segment` once the run date's lock is held."""
    from spark_clustering import tracking
    from spark_clustering.redact import redact
    from spark_clustering.tracking.core import health_scope

    from . import lineage
    from .io import delete_path, put_local_dir
    from .pipeline import assignments, select_features, write_json

    version = f"{config.run_date}-{run_id[:8]}"
    run = run_outputs(config.output_path, config.run_date, run_id)
    paths = {"assignments": run.assignments, "model": run.model, "run": run.path}
    published = False
    stages = Stages("segment")
    owned: list[Any] = []
    trial_name = config.trial or f"{config.reducer}-{config.clusterer}-{config.run_date}"
    tags = {"run_id": run_id, "model_version": version, "run_date": config.run_date}
    prepare = None  # the prepare run that wrote the features, when one did
    if config.input_kind == "features":
        prepare = lineage.prepare_record(spark, config.input_path)
    tags.update(lineage.prepare_tags(prepare))
    summary: dict[str, Any] = {
        "run_id": run_id,
        "model_version": version,
        "run_date": config.run_date,
        "config": config.to_dict(),
        "paths": paths,
        **(extra_summary or {}),
    }
    if prepare:
        summary["prepare"] = {k: prepare.get(k) for k in ("run_id", "output", "tracking")}
    with (
        health_scope() as health,
        tempfile.TemporaryDirectory(prefix="sc-segment-") as local,
        tracking.trial(config.experiment, trial_name, tags, **tracking_options(config)) as trial,
    ):
        trial.log_parameters({f"config.{k}": v for k, v in _flat(config.to_dict()).items()})
        trial.log_input("input", lineage.absolute_uri(config.input_path))  # kept if reading fails
        try:
            if inputs is None:
                inputs = load_inputs(spark, config, stages)
                owned.append(inputs)
            n, id_col, prepared = inputs.rows, inputs.id_col, inputs.prepared
            _preparation(spark, config, prepared, summary, local)
            lineage.log_input(trial, spark, "input", config.input_path,
                              None if prepared else inputs.features, rows=n)  # fmt: skip
            if prepared is not None:
                lineage.log_preparation(trial, spark, prepared, config.input_path)
            if reduction is None:
                selected = select_features(inputs.features, config.select)
                reduction = reduce_features(selected, config, stages)
                owned.append(reduction)
            reducer_model, work_col = reduction.model, reduction.col
            eps = None
            noise_clusters: list[int] = []
            if config.auto_choice:
                choice = choose_clustering(config, reduction, n, stages, local, trial)
                summary["auto"] = choice.record
                (clusterer_model, noise_clusters), clustered = choice.model, choice.clustered
                summary["auto"]["noise_clusters"] = noise_clusters
                if config.clusterer == "dbscan":
                    eps = float(choice.params["eps"])
                    graph = choice.graphs.get(int(choice.params["minPoints"]), graph)
                    summary["eps"] = {
                        "value": eps,
                        "auto": True,
                        "k": int(choice.params["minPoints"]),
                    }
                    if graph is not None:
                        graph.plot(os.path.join(local, "k_distance.png"))
                        summary["eps"]["suggested"] = float(graph.eps)
                    if "epsMultiple" in choice.params:
                        summary["eps"]["multiple"] = float(choice.params["epsMultiple"])
            elif config.clusterer == "dbscan":
                if graph is None:
                    graph = k_distance_graph(reduction, config, stages)
                graph.plot(os.path.join(local, "k_distance.png"))
                summary["eps"] = resolve_eps(config, graph)
                eps = summary["eps"]["value"]
                log.info("segment: eps = %g (knee of the %d-distance graph: %g)",
                         eps, graph.k, graph.eps)  # fmt: skip
            if not config.auto_choice:
                clusterer_model, clustered = fit_clusterer(config, reduction, eps, stages)
            owned.append(Reduction(clusterer_model, clustered, work_col))
            assigned = assignments(clustered, id_col, config.clusterer, run_id, version)
            sizes = cluster_sizes(clustered)
            summary["cluster_sizes"] = sizes
            summary["n_clusters"] = len([c for c in sizes if c != -1])
            summary["n_noise"] = sizes.get(-1, 0)
            summary["customers"] = n
            if config.evaluation:
                with trial.own_metrics():  # on the trial, not on an Evaluation child too
                    summary["metrics"] = score_clustering(clustered, work_col, config, stages)
                by_cluster = summary["metrics"].pop("silhouette_by_cluster", None)
                if by_cluster:
                    summary["silhouette_by_cluster"] = {str(k): v for k, v in by_cluster.items()}
                trial.log_metrics({k: v for k, v in summary["metrics"].items() if _number(v)})
            if config.profile:
                with stages.stage("profiles") as info:
                    source, names = _profile_source(inputs.features, id_col, prepared)
                    explained = explain.explain(clustered, source, names, id_col,
                                                seed=config.eval_seed)  # fmt: skip
                    summary["profiles"] = explained.profiles
                    summary["profile_features"] = names
                    summary["population"] = {
                        n: {"mean": m, "std": sd} for n, (m, sd) in explained.population.items()
                    }
                    info["rows"] = len(summary["profiles"])
            with stages.stage("segment ids") as info:
                record, before = _segment_ids(spark, config, assigned, id_col, summary)
                assigned = identity.with_segment_ids(assigned, id_col, record)
                summary["segments"] = record
                # a profile carries the segment's lasting id and the name it goes by
                by_cluster = {int(x["cluster"]): x for x in record["segments"]}
                for p in summary.get("profiles") or []:
                    if int(p["cluster"]) in by_cluster:
                        p["segment_id"] = by_cluster[int(p["cluster"])]["segment_id"]
                        p["name"] = by_cluster[int(p["cluster"])]["name"]
                trial.log_metrics({f"segments_{k}": v for k, v in record["counts"].items()})
                info["rows"] = len(record["segments"])
            if before is not None:
                with stages.stage("transitions") as info:
                    moves = transition_counts(before, assigned, id_col).persist()
                    owned.append(_Persisted(moves))
                    summary["transitions"] = {
                        "from_run_date": record["previous"]["run_date"],
                        "to_run_date": config.run_date,
                        "rows": transition_rows(moves),
                    }
                    info["rows"] = len(summary["transitions"]["rows"])
            with stages.stage("drift reference") as info:
                key = tuple(config.select) if config.select else None
                if key not in inputs.feature_references:  # once per feature set in a sweep
                    model_input = select_features(inputs.features, config.select)
                    inputs.feature_references[key] = drift.feature_reference(
                        model_input, "features"
                    )
                summary_drift = drift.reference(inputs.feature_references[key], "features",
                                                assigned, config.clusterer)  # fmt: skip
                info["rows"] = summary_drift["customers"]
            with stages.stage("scatter") as info:
                labels = {int(s["cluster"]): f"{s['segment_id']}: {s['name']}"
                          for s in summary["segments"]["segments"]}  # fmt: skip
                _scatter_png(clustered, work_col, config.scatter_sample, n, config.eval_seed,
                             os.path.join(local, "scatter.png"), labels,
                             summary["cluster_sizes"])  # fmt: skip
                info["rows"] = min(config.scatter_sample, n)
            # Everything goes into this run's own folder, which no reader follows until
            # publish() names it; a failure or a kill before that leaves the current run as is.
            with stages.stage("write model") as info:
                meta: dict[str, Any] = {
                    "format_version": FORMAT_VERSION,
                    "run_id": run_id,
                    "model_version": version,
                    "run_date": config.run_date,
                    "id_col": id_col,
                    "features_col": config.features_col,
                    "input_kind": config.input_kind,
                    "select": list(config.select) if config.select else None,
                    "reducer": config.reducer,
                    "clusterer": config.clusterer,
                    "eps": eps,
                    # DBSCAN clusters below [targets] min_share, noise wherever it is applied
                    "noise_clusters": noise_clusters,
                }
                if prepared is not None:
                    prepared.model.write().overwrite().save(f"{run.model}/preparation/model")
                    write_json(spark, redact(prepared.preparation), f"{run.model}/preparation",
                               "preparation.json")  # fmt: skip
                if reducer_model is not None:
                    reducer_model.write().overwrite().save(f"{run.model}/reducer")
                clusterer_model.write().overwrite().save(f"{run.model}/clusterer")
                write_json(spark, summary["segments"], run.model, identity.FILE)
                write_json(spark, summary_drift, run.model, drift.FILE)
                write_json(spark, meta, run.model, PIPELINE_FILE)
            with stages.stage("write assignments") as info:
                assigned.write.mode("overwrite").parquet(run.assignments)
                info["rows"] = n
                if "transitions" in summary:
                    moves.coalesce(1).write.mode("overwrite").parquet(f"{run.path}/transitions")
            summary["stages"] = {"seconds": stages.timings, "rows": stages.rows}
            with stages.stage("write report"):
                # the copy sent to the tracking store can only say what was recorded so far
                summary["tracking"] = {"status": "recording", "recorded_calls": trial.recorded,
                                       "not_recorded": len(trial.failures),
                                       "run": trial.reference()}  # fmt: skip
                _write_summary(redact(summary), local)
                for name in (
                    "report.html",
                    "summary.json",
                    "k_distance.png",
                    "scatter.png",
                    "choice.png",
                ):
                    if os.path.exists(os.path.join(local, name)):
                        trial.log_artifact(os.path.join(local, name))
                with tempfile.TemporaryDirectory(prefix="sc-segments-") as extra:
                    with open(os.path.join(extra, identity.FILE), "w") as fh:
                        json.dump(summary["segments"], fh, indent=2)
                    trial.log_artifact(os.path.join(extra, identity.FILE))
                    if "transitions" in summary:
                        from .transitions import render

                        with open(os.path.join(extra, "transitions.csv"), "w") as fh:
                            fh.write(render(summary["transitions"], "csv"))
                        trial.log_artifact(os.path.join(extra, "transitions.csv"))
                uri = lineage.absolute_uri
                trial.log_output("assignments", uri(paths["assignments"]))
                trial.log_output("model", uri(paths["model"]))
                trial.log_output("report", uri(f"{paths['run']}/report.html"))
                # Tracking ends before the commit so that the published summary says truthfully
                # what was recorded (a publication that fails after this leaves the trial
                # completed, and the previous run published).
                trial.end(ok=True)
                summary["tracking"] = {**health.summary(), "text": health.text(),
                                       "run": trial.reference()}  # fmt: skip
                _write_summary(redact(summary), local)
                put_local_dir(spark, local, run.path)
            fault_point("commit:written")
            publish(spark, run, version)
            published = True
            clean(spark, run.root, config.run_date)
            fault_point("commit:cleaned")
        except BaseException:
            if not published:  # no reader can reach it: reclaim its space now
                delete_path(spark, run.path)
            raise
        finally:
            for item in reversed(owned):
                item.release()
    log.info(
        "segment: %d customers, %d clusters, %d noise; assignments %s; report %s/report.html; %s",
        summary["customers"],
        summary["n_clusters"],
        summary["n_noise"],
        paths["assignments"],
        paths["run"],
        summary["tracking"]["text"],
    )
    return SegmentResult(
        run_id=run_id,
        model_version=version,
        run_date=config.run_date,
        assignments_path=paths["assignments"],
        model_path=paths["model"],
        report_path=f"{paths['run']}/report.html",
        summary=summary,
    )


def _scalar(value: Any) -> bool:
    return isinstance(value, (int, float, str, bool)) or value is None


def _number(value: Any) -> bool:
    """A finite number (what a tracking backend accepts as a metric)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return math.isfinite(value)


def _flat(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, Mapping):
            out.update(_flat(value, f"{prefix}{key}."))
        elif value is not None:
            out[f"{prefix}{key}"] = value if _scalar(value) else str(value)
    return out


def run_job(
    args: argparse.Namespace,
    job: str,
    loader: Callable[..., Any],
    runner: Callable[[SparkSession, Any], Any],
    failed_note: str = "",
) -> tuple[Any, Any, int]:
    """Load the job's config (``loader(path, overrides=...)``, the command-line overrides
    applied), start Spark, run ``runner(spark, config)``: ``(config, result, 0)``, or
    ``(config or None, None, code)`` with 2 for a bad config or bad input (``ValueError``), 1 for
    any other failure, the error printed on stderr."""
    from .segment_config import ConfigError

    try:
        conf = _spark_conf(args.conf)
        config = loader(
            args.config,
            overrides={
                "input.path": args.input,
                "output.path": args.output,
                "run_date": args.run_date,
                "tracking.backend": args.tracking,
            },
        )
    except (ConfigError, ValueError) as exc:
        print(f"error: {job} config: {exc}", file=sys.stderr)
        return None, None, 2
    from spark_clustering.session import uses_sagemaker

    from .entry import start_spark

    jars = ("sagemaker",) if uses_sagemaker(dataclasses.asdict(config)) else ()

    def work() -> Any:
        spark = start_spark(
            f"spark-clustering-{job}", master=args.master, conf=conf, gpu=args.gpu, jars=jars
        )
        return runner(spark, config)

    result, code = guarded(job, work, failed_note)
    return config, result, code


def run(args: argparse.Namespace) -> int:
    """Run the sub-command: 0 on success, 2 on a bad config or bad input, 1 on a failure."""

    def runner(spark: SparkSession, config: SegmentConfig) -> SegmentResult:
        return run_segment(spark, config, wait_lock=args.wait_lock, break_lock=args.break_lock)

    _, result, code = run_job(args, "segment", load_config, runner, ", previous outputs kept")
    if code:
        return code
    print(f"segment: {result.summary['n_clusters']} clusters; report: {result.report_path}; "
          f"{result.summary['tracking']['text']}")  # fmt: skip
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``spark_jobs/segment_customers.py``; returns the exit code."""
    return job_main("segment_customers", __doc__, _arguments, run, argv)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
