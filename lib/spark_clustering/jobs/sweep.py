"""``spark-clustering sweep --config FILE``: hundreds of segmentation trials, resumable.

The ``[search]`` lists of the config are expanded into trials (grid or random, see
:mod:`spark_clustering.jobs.sweep_config`). Work is shared between trials: the features are read
(or prepared) and persisted once; each distinct reduction (feature subset + reducer + Params) is
fitted once and its output persisted for every clusterer trial over it; DBSCAN's k-distance graph
is computed once per reduction and ``minPoints``. Each trial logs its parameters, its metrics and
its config hash to one tracking trial; nothing else is written per trial. At the end the best
trial (by ``[search].metric``) is written in full as ``segment`` writes a run (assignments,
model, report under ``[output].path``), and the experiment's leaderboard is printed.

Tracking never stops the sweep: the sweep keeps its own record of completed trials under
``[output].path`` (:mod:`spark_clustering.jobs.sweep_record`), and a store that fails is
reported once and switched off for the rest of the sweep. A rerun skips every trial whose config
hash the record or the experiment holds as completed, so an interrupted sweep loses at most the
trial in flight, with or without its tracking store. See docs/sweep.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import logging
import math
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Any

from ..sampling import uniform
from . import segment
from .entry import job_main, root_cause
from .pipeline import Stages
from .sweep_config import SweepConfig, TrialSpec, load_sweep_config

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd
    from pyspark.sql import SparkSession

    from .segment_config import SegmentConfig

log = logging.getLogger(__name__)

#: the tag holding a trial's config hash (what a rerun matches completed trials on)
HASH_TAG = "config_hash"
#: the figures shown in the final leaderboard, when logged
HEADLINE = (
    "silhouette",
    "davies_bouldin",
    "calinski_harabasz",
    "n_clusters",
    "noise_fraction",
    "stability_ari",
)


@dataclass
class TrialOutcome:
    """One trial of the sweep: its spec, hash, status and metrics (``skipped``: read back from
    an earlier run of the sweep)."""

    spec: TrialSpec
    config_hash: str
    status: str  # "completed" | "skipped" | "failed"
    metrics: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0
    error: str | None = None


@dataclass
class SweepResult:
    """What a sweep did; ``best`` is the outcome whose outputs were written (``segment``);
    ``tracking`` what its trials recorded (``TrackingHealth.summary()`` and its ``text``)."""

    outcomes: list[TrialOutcome]
    best: TrialOutcome | None
    segment: segment.SegmentResult | None
    tracking: dict[str, Any] = field(default_factory=dict)

    def count(self, status: str) -> int:
        return sum(o.status == status for o in self.outcomes)


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``sweep`` sub-command."""
    p = subparsers.add_parser(
        "sweep",
        help="many segmentation trials (grid or random search), resumable; best one written",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    _arguments(p)
    p.set_defaults(func=run)
    return p


def _arguments(p: argparse.ArgumentParser) -> None:
    segment._arguments(p, example="examples/sweep.toml")
    p.add_argument("--top", type=int, default=20, help="leaderboard rows printed (default 20)")


# --------------------------------------------------------------------------------- progress


def _clock(seconds: float) -> str:
    seconds = round(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class Progress:
    """One line of progress on ``stream``: rewritten in place (``\\r``) on a terminal, one line
    per trial otherwise (logs, CI)."""

    def __init__(self, total: int, skipped: int, metric: str, stream: IO[str] | None = None):
        self.stream = stream if stream is not None else sys.stderr
        isatty = getattr(self.stream, "isatty", None)
        self.tty = bool(isatty and isatty())
        self.total, self.skipped, self.metric = total, skipped, metric
        self.done = self.failed = 0
        self.durations: list[float] = []
        self.started = time.perf_counter()
        self.width = 0

    def line(self, best: TrialOutcome | None) -> str:
        elapsed = time.perf_counter() - self.started
        remaining = self.total - self.skipped - self.done
        mean = sum(self.durations) / len(self.durations) if self.durations else None
        eta = f"~{_clock(mean * remaining)} left" if mean is not None else "remaining unknown"
        text = (
            f"sweep: {self.skipped + self.done}/{self.total} trials "
            f"({self.skipped} skipped, {self.failed} failed)"
        )
        if best is not None:
            text += f", best {self.metric}={best.metrics[self.metric]:.4g} ({best.spec.label()})"
        return f"{text}, {_clock(elapsed)} elapsed, {eta}"

    def update(self, outcome: TrialOutcome, best: TrialOutcome | None) -> None:
        self.done += 1
        self.failed += outcome.status == "failed"
        self.durations.append(outcome.seconds)
        self._write(self.line(best))

    def _write(self, text: str) -> None:
        if self.tty:
            self.stream.write("\r" + text.ljust(self.width))
            self.width = len(text)
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.tty and self.width:
            self.stream.write("\n")
            self.stream.flush()


# --------------------------------------------------------------------------------- work cache


class Workspace:
    """What trials share: the persisted inputs, reductions by key, k-distance graphs by key.

    A reduction that failed is remembered as its exception, so the trials over it fail at once
    instead of fitting it again.
    """

    def __init__(self, spark: SparkSession, config: SweepConfig, stages: Stages) -> None:
        self.spark, self.config, self.stages = spark, config, stages
        self.inputs: segment.Inputs | None = None
        self.reductions: dict[str, segment.Reduction | Exception] = {}
        self.graphs: dict[tuple[str, int, int], Any] = {}

    def get_inputs(self) -> segment.Inputs:
        if self.inputs is None:
            from spark_clustering.features.assemble import feature_names

            self.inputs = segment.load_inputs(self.spark, self.config.base, self.stages)
            wanted = {n for t in self.config.trials for n in t.select or ()}
            if wanted:
                available = feature_names(self.inputs.features)
                unknown = sorted(wanted - set(available))
                if unknown:
                    raise ValueError(
                        f"[search].feature_sets names {unknown}, not in the features vector; "
                        f"accepted: {available}"
                    )
        return self.inputs

    def reduction(self, spec: TrialSpec, cfg: SegmentConfig) -> segment.Reduction:
        key = spec.reduction_key()
        if key not in self.reductions:
            from .pipeline import select_features

            try:
                selected = select_features(self.get_inputs().features, spec.select)
                self.reductions[key] = segment.reduce_features(selected, cfg, self.stages)
            except Exception as exc:
                self.reductions[key] = exc
                raise
        found = self.reductions[key]
        if isinstance(found, Exception):
            raise RuntimeError(f"the reduction of this trial failed earlier: {found}") from found
        return found

    def graph_key(self, spec: TrialSpec) -> tuple[str, int, int]:
        params = spec.clusterer_params
        return (
            spec.reduction_key(),
            int(params["minPoints"]),
            int(params.get("epsSampleSize", 5000)),
        )

    def graph(self, spec: TrialSpec, cfg: SegmentConfig, reduction: segment.Reduction) -> Any:
        key = self.graph_key(spec)
        if key not in self.graphs:
            self.graphs[key] = segment.k_distance_graph(reduction, cfg, self.stages)
        return self.graphs[key]

    def keep_only(self, keys: set[str]) -> None:
        """Release the persisted reductions not in ``keys``."""
        for key in [k for k in self.reductions if k not in keys]:
            found = self.reductions.pop(key)
            if isinstance(found, segment.Reduction):
                found.release()

    def release(self) -> None:
        self.keep_only(set())
        if self.inputs is not None:
            self.inputs.release()
            self.inputs = None


# --------------------------------------------------------------------------------- one trial


def stability_ari(
    cfg: SegmentConfig,
    reduction: segment.Reduction,
    eps: float | None,
    id_col: str,
    rows: int,
    *,
    repeats: int,
    fraction: float,
    sample: int,
    seed: int,
) -> float:
    """Mean adjusted Rand index between the clusterings of ``repeats`` subsamples.

    Each repeat fits the clusterer on a ``fraction`` subsample of the reduction (the rows whose
    id hashes, with seed ``seed + i``, below ``fraction``: the same rows on any partitioning),
    which is not refitted. The labels compared are those of the rows common to both subsamples
    among a fixed probe set: rows whose id hashes into the first ``sample / (rows * fraction)``
    of the hash range, the ``sample`` smallest ids of them collected per repeat.
    NaN when no pair has two rows in common.
    """
    from pyspark.sql import functions as F
    from sklearn.metrics import adjusted_rand_score

    modulus = 1 << 30
    bound = math.ceil(modulus * min(1.0, sample / max(rows * fraction, 1.0)))
    in_probe = F.pmod(F.xxhash64(F.col(id_col)), F.lit(modulus)) < F.lit(bound)
    labels = []
    for i in range(repeats):
        # drawn by a hash of the id, not rand(): the same subsamples on any partitioning
        part = reduction.df.where(uniform(seed + i, "stability", id_col) < fraction)
        model = segment._clusterer(cfg, reduction.col, eps).fit(part)
        picked = (
            model.transform(part).where(in_probe).select(id_col, "cluster")
            .orderBy(id_col).limit(sample)
        )  # fmt: skip
        labels.append({r[0]: int(r[1]) for r in picked.collect()})
        segment.release_fit(model)  # DBSCAN's cached rows: one copy of the subsample per repeat
    scores = []
    for a, b in itertools.combinations(labels, 2):
        common = sorted(set(a) & set(b))
        if len(common) >= 2:
            scores.append(
                float(adjusted_rand_score([a[i] for i in common], [b[i] for i in common]))
            )
    return sum(scores) / len(scores) if scores else math.nan


def run_trial(
    config: SweepConfig, spec: TrialSpec, config_hash: str, work: Workspace
) -> dict[str, float]:
    """Fit and score one trial inside its tracking trial; its metrics."""
    from spark_clustering import tracking

    cfg = config.segment_config(spec)
    base = config.base
    name = tracking.sanitize_name(f"{base.trial or 'sweep'}-{spec.label()}-{config_hash[:8]}")
    tags = {HASH_TAG: config_hash, "sweep.run_date": base.run_date}
    options = segment.tracking_options(base)
    with tracking.trial(base.experiment, name, tags, **options) as trial:
        params = segment._flat(config.effective(spec))
        trial.log_parameters({**params, HASH_TAG: config_hash})
        inputs = work.get_inputs()
        reduction = work.reduction(spec, cfg)
        eps = None
        if spec.clusterer == "dbscan":
            chosen = segment.resolve_eps(cfg, work.graph(spec, cfg, reduction))
            eps = chosen["value"]
            trial.log_parameters({"eps": eps, "eps_suggested": chosen["suggested"]})
        model, clustered = segment.fit_clusterer(cfg, reduction, eps, work.stages)
        try:
            sizes = segment.cluster_sizes(clustered)
            metrics: dict[str, Any] = {
                "n_clusters": len([c for c in sizes if c != -1]),
                "noise_fraction": sizes.get(-1, 0) / max(inputs.rows, 1),
            }
            if base.evaluation:
                with trial.own_metrics():  # logged once below, on the trial
                    scores = segment.score_clustering(clustered, reduction.col, cfg, work.stages)
                metrics.update(scores)
                metrics.pop("silhouette_by_cluster", None)  # a trial's figures are scalars
        finally:
            segment.release_fit(model, clustered)
        if config.stability_repeats:
            metrics["stability_ari"] = stability_ari(
                cfg,
                reduction,
                eps,
                inputs.id_col,
                inputs.rows,
                repeats=config.stability_repeats,
                fraction=config.stability_fraction,
                sample=config.stability_sample,
                seed=config.seed,
            )
        numbers = {k: float(v) for k, v in metrics.items() if segment._number(v)}
        trial.log_metrics(numbers)
    return numbers


# --------------------------------------------------------------------------------- the sweep


def _tracking_config(config: SweepConfig) -> Any:
    from spark_clustering.tracking.config import resolve_config

    options = segment.tracking_options(config.base)
    return resolve_config(options.pop("backend"), **options)


def completed_trials(config: SweepConfig) -> dict[str, dict[str, float]] | None:
    """Config hash -> final metrics of the experiment's completed trials in the tracking store
    (none without a tracking backend to read); None when the store cannot be read, which is
    reported once and switches it off for the rest of the sweep."""
    if config.base.tracking_backend == "none":
        return {}
    from spark_clustering.tracking.core import read_trials_safely

    records = read_trials_safely(_tracking_config(config), config.base.experiment)
    if records is None:
        return None
    done: dict[str, dict[str, float]] = {}
    for record in records:
        config_hash = record.tags.get(HASH_TAG)
        if config_hash and record.status == "Completed":
            root = [metrics for name, _, metrics in record.components if name is None]
            done[config_hash] = dict(root[0]) if root else {}
    return done


def _better(config: SweepConfig, a: TrialOutcome, b: TrialOutcome | None) -> bool:
    """Whether ``a`` ranks above ``b`` (a trial without a finite metric never does)."""
    value = a.metrics.get(config.metric)
    if a.status == "failed" or value is None or not math.isfinite(value):
        return False
    if b is None:
        return True
    other = b.metrics[config.metric]
    return value > other if config.greater_is_better else value < other


def run_sweep(
    spark: SparkSession,
    config: SweepConfig,
    *,
    stream: IO[str] | None = None,
    write_best: bool = True,
    wait_lock: float = 0.0,
    break_lock: bool = False,
) -> SweepResult:
    """Run the trials of ``config`` not yet completed, then write the best one's outputs.

    Parameters
    ----------
    spark : SparkSession
    config : SweepConfig
        From :func:`spark_clustering.jobs.sweep_config.load_sweep_config`.
    stream : file, optional
        Where the progress line goes (default stderr).
    write_best : bool
        Write the best trial's assignments, model and report (as ``segment`` does). The run
        date's lock is then taken before the first trial, so a concurrent run of the date
        fails before the sweep's work, not after it.
    wait_lock, break_lock : optional
        How to take that lock when it is held
        (:meth:`spark_clustering.jobs.lock.WriterLock.acquire`).

    Returns
    -------
    SweepResult
        Every trial's outcome (``completed``, ``skipped``, ``failed``) and the best one.

    Raises
    ------
    ValueError
        Bad input data (missing columns, unknown feature names); no trial is run.

    Examples
    --------
    >>> result = run_sweep(spark, load_sweep_config("examples/sweep.toml"))  # doctest: +SKIP
    >>> result.best.metrics["silhouette"]  # doctest: +SKIP
    """
    lock = None
    if write_best:
        from .lock import WriterLock
        from .publish import lock_path

        lock = WriterLock(spark, lock_path(config.base.output_path, config.base.run_date),
                          uuid.uuid4().hex, job="sweep")  # fmt: skip
        lock.acquire(wait=wait_lock, break_lock=break_lock)
    from spark_clustering.tracking.core import health_scope

    try:
        with health_scope() as health:
            result = _run_sweep(spark, config, stream, write_best, lock)
            result.tracking = {**health.summary(), "text": health.text()}
        return result
    finally:
        if lock is not None:
            lock.release()


def _run_sweep(
    spark: SparkSession,
    config: SweepConfig,
    stream: IO[str] | None,
    write_best: bool,
    lock: Any,
) -> SweepResult:
    """:func:`run_sweep` once the run date's lock (if any) is held."""
    from .sweep_record import SweepRecord

    hashes = [config.config_hash(spec) for spec in config.trials]
    record = SweepRecord.load(spark, config.base.output_path, config.base.experiment)
    stored = completed_trials(config)
    # either source is enough: the record holds what ran while the store was down, the store
    # what ran before the record existed (or from another output path)
    done = {**record.metrics(), **(stored or {})}
    outcomes = [
        TrialOutcome(spec, h, "skipped", done[h]) if h in done else TrialOutcome(spec, h, "todo")
        for spec, h in zip(config.trials, hashes, strict=True)
    ]
    best: TrialOutcome | None = None
    for outcome in outcomes:
        if outcome.status == "skipped" and _better(config, outcome, best):
            best = outcome
    todo = [o for o in outcomes if o.status == "todo"]
    log.info(
        "sweep: %d trials (%s of a grid of %d), %d already completed (%d in the sweep's record, "
        "%s in the tracking store), %d to run",
        len(outcomes), "all" if config.strategy == "grid" else "a random draw",
        config.grid_size, len(outcomes) - len(todo), len(set(record.trials) & set(hashes)),
        "unknown" if stored is None else len(set(stored) & set(hashes)), len(todo),
    )  # fmt: skip
    progress = Progress(len(outcomes), len(outcomes) - len(todo), config.metric, stream)
    stages = Stages("sweep", level=logging.DEBUG)
    work = Workspace(spark, config, stages)
    written = None
    try:
        if todo:
            work.get_inputs()  # bad input data ends the sweep here (ValueError), not per trial
        for outcome in todo:
            keep = {outcome.spec.reduction_key()}
            if best is not None:
                keep.add(best.spec.reduction_key())
            work.keep_only(keep)
            started = time.perf_counter()
            try:
                outcome.metrics = run_trial(config, outcome.spec, outcome.config_hash, work)
                outcome.status = "completed"
            except Exception as exc:
                # the cause in one line (no Java trace on the console); the trace at DEBUG
                log.debug("sweep: trial %s failed", outcome.spec.label(), exc_info=exc)
                outcome.status, outcome.error = "failed", root_cause(exc)
            if outcome.status == "completed":
                params = segment._flat(config.effective(outcome.spec))
                record.add(outcome.config_hash, outcome.spec.label(), outcome.metrics, params)
            outcome.seconds = time.perf_counter() - started
            if outcome.error:
                log.warning("sweep: trial %s failed: %s", outcome.spec.label(), outcome.error)
            if _better(config, outcome, best):
                best = outcome
            progress.update(outcome, best)
        progress.close()
        if best is not None and write_best:
            written = _write_best(spark, config, best, work, lock)
    finally:
        progress.close()
        work.release()
    return SweepResult(outcomes, best, written)


def _write_best(
    spark: SparkSession, config: SweepConfig, best: TrialOutcome, work: Workspace, lock: Any
) -> segment.SegmentResult:
    """The best trial's outputs, written by ``segment``'s code over the shared work (its
    clusterer is fitted once more, the reduction and the k-distance graph are reused)."""
    from .sweep_record import record_path

    cfg = dataclasses.replace(config.segment_config(best.spec), tracking_backend="none")
    reduction = work.reductions.get(best.spec.reduction_key())
    graph = work.graphs.get(work.graph_key(best.spec)) if best.spec.clusterer == "dbscan" else None
    extra = {
        "sweep": {
            "config_hash": best.config_hash,
            "trial": best.spec.label(),
            "metric": config.metric,
            "greater_is_better": config.greater_is_better,
            "value": best.metrics[config.metric],
            "trial_metrics": best.metrics,
            "trials": len(config.trials),
            "grid_size": config.grid_size,
            "record": record_path(config.base.output_path, config.base.experiment),
        }
    }
    log.info("sweep: writing the outputs of the best trial %s", best.spec.label())
    return segment.run_segment(
        spark,
        cfg,
        inputs=work.get_inputs(),
        reduction=reduction if isinstance(reduction, segment.Reduction) else None,
        graph=graph,
        extra_summary=extra,
        lock=lock,
    )


# --------------------------------------------------------------------------------- leaderboard


def leaderboard_frame(config: SweepConfig, result: SweepResult, top: int) -> pd.DataFrame:
    """The experiment's leaderboard (``tracking.board``), sorted by the sweep's metric, with the
    headline metrics and the parameters that vary; from the sweep's own outcomes when there is
    no tracking backend to read."""
    from spark_clustering.tracking import board
    from spark_clustering.tracking.core import TrialRecord

    base = config.base
    frame = None
    if base.tracking_backend != "none" and result.tracking.get("status") != "failed":
        try:
            options = segment.tracking_options(base)
            frame = board.leaderboard(
                base.experiment,
                sort=config.metric,
                ascending=not config.greater_is_better,
                backend=options.pop("backend"),
                **options,
            )
        except Exception as exc:
            from spark_clustering.tracking.core import root_cause

            log.warning("sweep: leaderboard from this sweep's own record: the tracking store "
                        "could not be read (%s)", root_cause(exc))  # fmt: skip
        if frame is not None:
            ran = {o.config_hash for o in result.outcomes if o.status != "failed"}
            held = set(frame[HASH_TAG].astype(str)) if HASH_TAG in frame.columns else set()
            if not ran <= held:
                # trials run while the store was down are only in the sweep's record
                log.info("sweep: leaderboard from this sweep's own record: the tracking store "
                         "lacks %d of its trials", len(ran - held))  # fmt: skip
                frame = None
    if frame is None:
        # no store to read (none, or switched off after a failure): the sweep's own outcomes,
        # which hold the skipped trials' metrics from the record or the store
        records = [
            TrialRecord(base.experiment, o.spec.label(), o.config_hash[:12],
                        "Completed" if o.status != "failed" else "Failed", None, {},
                        [(None, segment._flat(config.effective(o.spec)), o.metrics)])
            for o in result.outcomes
        ]  # fmt: skip
        frame = board.records_to_frame(records)
        if config.metric in frame.columns:
            frame = frame.sort_values(
                config.metric, ascending=not config.greater_is_better, na_position="last"
            )
    if frame.empty:
        return frame
    params = [
        c
        for c in frame.attrs.get("params", [])
        if frame[c].astype(str).nunique() > 1 and c != HASH_TAG
    ]
    columns = ["trial", "status", *[m for m in HEADLINE if m in frame.columns], *params]
    return frame[columns].head(top).reset_index(drop=True)


# --------------------------------------------------------------------------------- CLI


def run(args: argparse.Namespace) -> int:
    """Run the sub-command: 0 when every trial completed, 2 on a bad config or bad input, 1 when
    a trial failed (rerun to retry only those) or on any other failure."""

    def runner(spark: SparkSession, config: SweepConfig) -> SweepResult:
        return run_sweep(spark, config, wait_lock=args.wait_lock, break_lock=args.break_lock)

    config, result, code = segment.run_job(args, "sweep", load_sweep_config, runner)
    if code:
        return code
    from spark_clustering.tracking.board import render

    try:
        print(render(leaderboard_frame(config, result, args.top), "table"), end="")
    except Exception as exc:  # the sweep itself is done; a board that cannot be read is not fatal
        log.warning("sweep: leaderboard not shown: %s", exc)
    failed = result.count("failed")
    line = (
        f"sweep: {result.count('completed')} trials run, {result.count('skipped')} skipped, "
        f"{failed} failed"
    )
    if result.best is not None:
        value = result.best.metrics[config.metric]
        line += f"; best {config.metric}={value:.4g} ({result.best.spec.label()})"
    if result.segment is not None:
        line += f"; report: {result.segment.report_path}"
    print(line)
    print(result.tracking.get("text", "tracking: unknown"))
    if result.best is None:
        print("error: sweep: no trial completed with a finite metric", file=sys.stderr)
        return 1
    for outcome in result.outcomes:
        if outcome.status == "failed":
            print(f"error: sweep: trial {outcome.spec.label()} ({outcome.config_hash[:12]}) "
                  f"failed: {outcome.error}", file=sys.stderr)  # fmt: skip
    if failed:
        print(f"error: sweep: {failed} trial(s) failed; rerun to retry them", file=sys.stderr)
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``spark_jobs/sweep.py``; returns the exit code."""
    return job_main("sweep", __doc__, _arguments, run, argv)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
