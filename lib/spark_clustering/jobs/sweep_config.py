"""The ``sweep`` job's TOML configuration and its trial plan, both without Spark.

A sweep config is a ``segment`` config without ``[reducer]`` and ``[clusterer]`` (``[input]``,
``[evaluation]``, ``[tracking]``, ``[output]``, ``run_date``, checked by the same code) plus a
``[search]`` table whose lists are expanded into trials: every combination (``strategy =
"grid"``) or ``trials`` of them drawn without replacement (``"random"``). Every problem is
reported at once (:class:`~spark_clustering.jobs.segment_config.ConfigError`). Keys are
documented in ``docs/sweep.md``; ``examples/sweep.toml`` is a complete example.

Examples
--------
>>> grid = expand_params({"k": [2, 3], "seed": 1})
>>> grid
[{'k': 2, 'seed': 1}, {'k': 3, 'seed': 1}]
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import os
import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .segment_config import (
    _TABLES,
    _TOP,
    CLUSTERER_PARAMS,
    CLUSTERERS,
    REDUCER_PARAMS,
    REDUCERS,
    ConfigError,
    SegmentConfig,
    _check_keys,
    _type_name,
    _type_ok,
    check_clusterer_params,
    check_reducer_params,
    check_select,
    parse_config,
    read_toml,
)

STRATEGIES = ("grid", "random")
#: what a sweep can rank trials by (figures of ``evaluate`` and the stability score)
RANK_METRICS = (
    "silhouette",
    "davies_bouldin",
    "calinski_harabasz",
    "n_clusters",
    "noise_fraction",
    "coverage",
    "stability_ari",
)
#: metrics read as lower-is-better, the leaderboard's rule (``tracking.board``)
_LOWER = re.compile(r"davies|bouldin|noise")
_SEARCH: dict[str, tuple[type, ...]] = {
    "strategy": (str,),
    "trials": (int,),
    "seed": (int,),
    "feature_sets": (list,),
    "reducers": (list,),
    "clusterers": (list,),
    "metric": (str,),
    "greater_is_better": (bool,),
    "stability_repeats": (int,),
    "stability_fraction": (int, float),
    "stability_sample": (int,),
}
_ENTRY = {"algorithm": (str,), "params": (dict,)}
#: DBSCAN's eps as multiples of the knee of the k-distance graph: a sweep-only key
EPS_MULTIPLES = "eps_multiples"
#: rows collected to the driver per stability repeat, at most
MAX_STABILITY_SAMPLE = 200_000


@dataclass(frozen=True)
class TrialSpec:
    """One combination of the search: feature subset, reducer and clusterer with their Params.

    ``select`` is None for every feature. DBSCAN's ``clusterer_params`` hold either an absolute
    ``eps`` or ``epsMultiple`` (times the suggested eps, ``eps = "auto"`` being 1.0).
    """

    select: tuple[str, ...] | None
    reducer: str
    reducer_params: Mapping[str, Any]
    clusterer: str
    clusterer_params: Mapping[str, Any]

    def __hash__(self) -> int:
        return hash(_canonical(dataclasses.astuple(self)))

    def reduction(self) -> dict[str, Any]:
        """What determines the reduction: shared by every clusterer trial over it."""
        return {
            "select": list(self.select) if self.select else None,
            "reducer": self.reducer,
            "reducer_params": dict(sorted(self.reducer_params.items())),
        }

    def reduction_key(self) -> str:
        return _canonical(self.reduction())

    def label(self) -> str:
        """A short readable name: ``pca-k2-kmeans-k3``."""
        parts = [self.reducer, *_short(self.reducer_params), self.clusterer,
                 *_short(self.clusterer_params)]  # fmt: skip
        if self.select:
            parts.insert(0, f"f{len(self.select)}")
        return "-".join(parts)


@dataclass(frozen=True)
class SweepConfig:
    """A checked ``sweep`` config (see ``docs/sweep.md``)."""

    base: SegmentConfig
    strategy: str
    seed: int
    trials: tuple[TrialSpec, ...]
    grid_size: int
    metric: str = "silhouette"
    greater_is_better: bool = True
    stability_repeats: int = 0
    stability_fraction: float = 0.8
    stability_sample: int = 20_000

    def segment_config(self, spec: TrialSpec) -> SegmentConfig:
        """The ``segment`` config of one trial (its tracking trial name left to the sweep)."""
        return dataclasses.replace(
            self.base,
            select=spec.select,
            reducer=spec.reducer,
            reducer_params=dict(spec.reducer_params),
            clusterer=spec.clusterer,
            clusterer_params=dict(spec.clusterer_params),
        )

    def effective(self, spec: TrialSpec) -> dict[str, Any]:
        """Everything that decides a trial's result; its canonical JSON is hashed for resume.

        Output paths, tracking and the run date are left out: they do not change the result.
        """
        b = self.base
        out: dict[str, Any] = {
            "input": {
                "path": b.input_path,
                "kind": b.input_kind,
                "spec": b.spec,
                "id_col": b.id_col,
                "features_col": b.features_col,
            },
            **spec.reduction(),
            "clusterer": spec.clusterer,
            "clusterer_params": dict(sorted(spec.clusterer_params.items())),
            "evaluation": {
                "enabled": b.evaluation,
                "sample_size": b.eval_sample_size,
                "repeats": b.eval_repeats,
                "seed": b.eval_seed,
            },
        }
        if self.stability_repeats:
            out["stability"] = {"repeats": self.stability_repeats, "seed": self.seed,
                                "fraction": self.stability_fraction,
                                "sample": self.stability_sample}  # fmt: skip
        return out

    def config_hash(self, spec: TrialSpec) -> str:
        """sha256 of the canonical JSON of :meth:`effective`."""
        return hashlib.sha256(_canonical(self.effective(spec)).encode()).hexdigest()


def _canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def _short(params: Mapping[str, Any]) -> list[str]:
    skip = ("seed", "backend", "sampleSize", "epsSampleSize", "metric", "transformEpochs")
    return [f"{k}{v:g}" if isinstance(v, float) else f"{k}{v}"
            for k, v in sorted(params.items()) if k not in skip and v != "auto"]  # fmt: skip


def expand_params(params: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every combination of the values of ``params`` (a list is a dimension, a scalar is one
    value), keys in sorted order, the last key varying fastest."""
    keys = sorted(params)
    values = [v if isinstance(v, list) else [v] for v in (params[k] for k in keys)]
    return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*values)]


def plan_trials(
    feature_sets: Sequence[tuple[str, ...] | None],
    reducers: Sequence[tuple[str, dict[str, Any]]],
    clusterers: Sequence[tuple[str, dict[str, Any]]],
    strategy: str = "grid",
    trials: int | None = None,
    seed: int = 0,
) -> tuple[list[TrialSpec], int]:
    """The trials of a search and the size of its full grid.

    ``reducers`` and ``clusterers`` are ``(algorithm, params)`` variants, already expanded
    (:func:`expand_params`). ``random`` draws ``trials`` distinct combinations with
    ``random.Random(seed)`` (all of them when the grid is smaller) without building the grid.
    Trials come in grid order, so those sharing a reduction are next to each other.
    """
    sizes = (len(feature_sets), len(reducers), len(clusterers))
    total = sizes[0] * sizes[1] * sizes[2]
    if strategy == "grid":
        chosen: Sequence[int] = range(total)
    else:
        assert trials is not None
        chosen = sorted(random.Random(seed).sample(range(total), min(trials, total)))
    specs = []
    for index in chosen:
        f, rest = divmod(index, sizes[1] * sizes[2])
        r, c = divmod(rest, sizes[2])
        red, cl = reducers[r], clusterers[c]
        specs.append(TrialSpec(feature_sets[f], red[0], red[1], cl[0], cl[1]))
    return specs, total


def _dedupe(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))


def _variants(
    problems: list[str],
    where: str,
    entries: Any,
    choices: tuple[str, ...],
    catalogue: Mapping[str, Mapping[str, tuple[type, ...]]],
    clusterer: bool,
) -> list[tuple[str, dict[str, Any]]]:
    """Check a list of ``{algorithm, params}`` tables and expand each one's params."""
    if not isinstance(entries, list) or not entries:
        problems.append(f"{where}: {entries!r}; accepted: a non-empty list of tables")
        return []
    out: list[tuple[str, dict[str, Any]]] = []
    for i, entry in enumerate(entries):
        at = f"{where}[{i}]"
        if not isinstance(entry, dict):
            problems.append(f"{at}: {entry!r}; accepted: a table {{ algorithm, params }}")
            continue
        table = _check_keys(problems, at, entry, _ENTRY)
        algorithm = table.get("algorithm")
        if algorithm is None:
            problems.append(f"{at}.algorithm is required; accepted: {', '.join(choices)}")
            continue
        if algorithm not in choices:
            problems.append(
                f"{at}.algorithm: unknown algorithm {algorithm!r}; accepted: {', '.join(choices)}"
            )
            continue
        allowed = dict(catalogue[algorithm])
        if clusterer and algorithm == "dbscan":
            allowed.pop("epsMultiple")
            allowed[EPS_MULTIPLES] = (int, float)
        params: dict[str, list[Any]] = {}
        for key, value in table.get("params", {}).items():
            values = value if isinstance(value, list) else [value]
            if key not in allowed:
                problems.append(
                    f"{at}.params: unknown key {key!r}; accepted: {', '.join(sorted(allowed))}"
                )
                continue
            if not values:
                problems.append(f"{at}.params.{key}: an empty list; accepted: one value or more")
                continue
            good = []
            for v in values:
                if not _type_ok(v, allowed[key]):
                    problems.append(
                        f"{at}.params.{key}: expected {_type_name(allowed[key])} (or a list of "
                        f"them), got {v!r} ({type(v).__name__})"
                    )
                    continue
                check = {"epsMultiple": v} if key == EPS_MULTIPLES else {key: v}
                before = len(problems)
                if clusterer:
                    check_clusterer_params(problems, f"{at}", check)
                else:
                    check_reducer_params(problems, f"{at}", check)
                if len(problems) == before:
                    good.append(v)
            params[key] = list(dict.fromkeys(good))
        if clusterer and algorithm == "dbscan":
            params = _eps_dimension(params)
        out.extend((str(algorithm), p) for p in expand_params(params))
    return out


def _eps_dimension(params: dict[str, list[Any]]) -> dict[str, Any]:
    """DBSCAN's ``eps`` values and ``eps_multiples`` as one dimension of choices: an absolute
    eps, or a multiple of the suggested one (``"auto"`` is the multiple 1.0; neither given: 1.0).
    """
    multiples = [float(m) for m in params.pop(EPS_MULTIPLES, [])]
    absolute = []
    for eps in params.pop("eps", []):
        if eps == "auto":
            multiples.append(1.0)
        else:
            absolute.append(float(eps))
    if not absolute and not multiples:
        multiples = [1.0]
    params.setdefault("minPoints", [10])
    choices: list[dict[str, Any]] = [{"eps": e} for e in dict.fromkeys(absolute)]
    choices += [{"eps": "auto", "epsMultiple": m} for m in dict.fromkeys(multiples)]
    # one dimension whose values are small dicts, merged back after expansion
    return {**params, "__eps": choices}


def _merge_eps(variants: list[tuple[str, dict[str, Any]]]) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for algorithm, params in variants:
        eps = params.pop("__eps", None)
        out.append((algorithm, {**params, **(eps or {})}))
    return out


def _feature_sets(problems: list[str], value: Any) -> list[tuple[str, ...] | None]:
    if not isinstance(value, list) or not value:
        problems.append(
            f"[search].feature_sets: {value!r}; accepted: a non-empty list of lists of "
            "feature names"
        )
        return []
    sets = [check_select(problems, f"[search].feature_sets[{i}]", names)
            for i, names in enumerate(value)]  # fmt: skip
    return list(dict.fromkeys(sets))


def parse_sweep_config(
    data: Mapping[str, Any], source: str | None = None, *, base_dir: str | None = None
) -> SweepConfig:
    """Check a parsed sweep TOML document and plan its trials; :class:`ConfigError` lists every
    problem (those of the segment tables included)."""
    problems: list[str] = []
    allowed = {**_TOP, **{k: (dict,) for k in _TABLES if k not in ("reducer", "clusterer")},
               "search": (dict,)}  # fmt: skip
    top = _check_keys(problems, "config", data, allowed)
    base_data = {k: v for k, v in top.items() if k != "search"}
    # a placeholder clusterer: each trial replaces it
    base_data["clusterer"] = {"algorithm": "kmeans"}
    base: SegmentConfig | None = None
    try:
        base = parse_config(base_data, source, base_dir=base_dir)
    except ConfigError as exc:
        problems.extend(exc.problems)

    search = _check_keys(problems, "[search]", top.get("search", {}), _SEARCH)
    strategy = search.get("strategy", "grid")
    if strategy not in STRATEGIES:
        problems.append(f"[search].strategy: {strategy!r}; accepted: {', '.join(STRATEGIES)}")
    trials = search.get("trials")
    if strategy == "random" and trials is None:
        problems.append("[search].trials is required with strategy = 'random'")
    elif trials is not None and strategy != "random":
        problems.append("[search].trials is only used with strategy = 'random'")
    elif trials is not None and trials < 1:
        problems.append(f"[search].trials: {trials!r}; accepted: >= 1")
    feature_sets: list[tuple[str, ...] | None] = [None]
    if "feature_sets" in search:
        feature_sets = _feature_sets(problems, search["feature_sets"])
    reducers: list[tuple[str, dict[str, Any]]] = [("none", {})]
    if "reducers" in search:
        reducers = _variants(problems, "[search].reducers", search["reducers"], REDUCERS,
                             REDUCER_PARAMS, clusterer=False)  # fmt: skip
    clusterers: list[tuple[str, dict[str, Any]]] = []
    if "clusterers" not in search:
        problems.append("[search].clusterers is required (a list of { algorithm, params })")
    else:
        clusterers = _merge_eps(
            _variants(
                problems,
                "[search].clusterers",
                search["clusterers"],
                CLUSTERERS,
                CLUSTERER_PARAMS,
                clusterer=True,
            )
        )
    repeats = search.get("stability_repeats", 0)
    if repeats != 0 and repeats < 2:
        problems.append(
            f"[search].stability_repeats: {repeats!r}; accepted: 0 (off) or >= 2 (pairs of fits)"
        )
    fraction = search.get("stability_fraction", 0.8)
    if not 0 < fraction <= 1:
        problems.append(f"[search].stability_fraction: {fraction!r}; accepted: > 0 and <= 1")
    sample = search.get("stability_sample", 20_000)
    if not 2 <= sample <= MAX_STABILITY_SAMPLE:
        problems.append(
            f"[search].stability_sample: {sample!r}; accepted: 2 to {MAX_STABILITY_SAMPLE}"
        )
    metric = search.get("metric", "silhouette")
    if metric not in RANK_METRICS:
        problems.append(f"[search].metric: {metric!r}; accepted: {', '.join(RANK_METRICS)}")
    elif metric == "stability_ari" and not repeats:
        problems.append("[search].metric = 'stability_ari' needs stability_repeats >= 2")
    elif metric != "stability_ari" and base is not None and not base.evaluation:
        problems.append(f"[search].metric = {metric!r} needs [evaluation].enabled = true")

    if problems:
        raise ConfigError(_dedupe(problems), source)
    assert base is not None
    specs, total = plan_trials(feature_sets, reducers, clusterers, strategy, trials,
                               search.get("seed", 0))  # fmt: skip
    return SweepConfig(
        base=base,
        strategy=strategy,
        seed=search.get("seed", 0),
        trials=tuple(specs),
        grid_size=total,
        metric=metric,
        greater_is_better=search.get("greater_is_better", not _LOWER.search(metric)),
        stability_repeats=repeats,
        stability_fraction=float(fraction),
        stability_sample=sample,
    )


def load_sweep_config(path: str, *, overrides: Mapping[str, Any] | None = None) -> SweepConfig:
    """Read and check a sweep TOML file; ``overrides`` as for
    :func:`spark_clustering.jobs.segment_config.load_config`."""
    data = read_toml(path, overrides)
    return parse_sweep_config(data, path, base_dir=os.path.dirname(os.path.abspath(path)))
