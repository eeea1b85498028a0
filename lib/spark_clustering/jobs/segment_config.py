"""The ``segment`` job's TOML configuration, read and checked without Spark.

Every problem in a config is collected and reported at once (:class:`ConfigError`), so a user
fixes the file in one pass: unknown tables or keys, wrong types, an unknown algorithm, values out
of range (``eps <= 0`` or not finite, ``k < 2``), local input paths that do not exist, a local
output path that is a file. Non-local paths (``s3://``,
``hdfs://``) are checked by Spark when the job reads them. Keys are documented in
``docs/segment.md``; ``examples/segment.toml`` is a complete example.
"""

from __future__ import annotations

import datetime as dt
import glob
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import tomllib

from ..base import ProblemsError
from ..tracking.config import check_tracking_uri
from .autochoice import AUTO, Targets, check_targets
from .identity import MatchSettings, check_settings
from .io import is_local, local_path

REDUCERS = ("none", "pca", "umap")
CLUSTERERS = ("dbscan", "kmeans", "gmm")
TRACKING_BACKENDS = ("none", "mlflow", "sagemaker")

#: estimator Params a config may set, per algorithm: name -> accepted Python type(s)
_INT, _NUM, _STR = (int,), (int, float), (str,)
REDUCER_PARAMS: dict[str, dict[str, tuple[type, ...]]] = {
    "none": {},
    "pca": {"k": _INT},
    "umap": {
        "nComponents": _INT,
        "nNeighbors": _INT,
        "minDist": _NUM,
        "metric": _STR,
        "seed": _INT,
        "sampleSize": _INT,
        "transformEpochs": _INT,
        "backend": _STR,
    },
}
CLUSTERER_PARAMS: dict[str, dict[str, tuple[type, ...]]] = {
    "dbscan": {
        "eps": (int, float, str),
        "minPoints": _INT,
        "epsMultiple": _NUM,
        "epsSampleSize": _INT,
        "backend": _STR,
        "maxPointsPerPartition": _INT,
    },
    "kmeans": {"k": _INT, "seed": _INT, "maxIter": _INT, "tol": _NUM, "backend": _STR},
    "gmm": {"k": _INT, "seed": _INT, "maxIter": _INT, "tol": _NUM},
}
#: a segment config may also leave the count to the automatic choice (``"auto"``, jobs/autochoice)
_AUTO_PARAMS = {"dbscan": "minPoints", "kmeans": "k", "gmm": "k"}
SEGMENT_CLUSTERER_PARAMS = {
    algorithm: {**params, _AUTO_PARAMS[algorithm]: (int, str)}
    for algorithm, params in CLUSTERER_PARAMS.items()
}
_TABLES: dict[str, dict[str, tuple[type, ...]]] = {
    "input": {
        "path": _STR,
        "kind": _STR,
        "spec": _STR,
        "id_col": _STR,
        "features_col": _STR,
        "select": (list,),
    },
    "reducer": {"algorithm": _STR, "params": (dict,)},
    "clusterer": {"algorithm": _STR, "params": (dict,)},
    "evaluation": {"enabled": (bool,), "sample_size": _INT, "repeats": _INT, "seed": _INT},
    "tracking": {
        "backend": _STR,
        "experiment": _STR,
        "trial": _STR,
        "tracking_uri": _STR,
        "artifact_location": _STR,
    },
    "output": {"path": _STR, "scatter_sample": _INT, "profile": (bool,)},
}
_TOP = {"run_date": (str, dt.date)}


class ConfigError(ProblemsError):
    """A bad ``segment`` config; ``problems`` lists every problem found."""

    def __init__(self, problems: list[str], source: str | None = None) -> None:
        where = f" in {source}" if source else ""
        super().__init__(problems, f"{len(problems)} problem(s){where}")


@dataclass(frozen=True)
class SegmentConfig:
    """A checked ``segment`` config (see ``docs/segment.md``)."""

    input_path: str
    input_kind: str  # "features" | "raw"
    spec: str | None
    id_col: str
    features_col: str
    reducer: str
    reducer_params: dict[str, Any]
    clusterer: str
    clusterer_params: dict[str, Any]
    output_path: str
    run_date: str
    evaluation: bool = True
    eval_sample_size: int = 2000
    eval_repeats: int = 3
    eval_seed: int = 0
    tracking_backend: str = "none"
    experiment: str = "customer-segmentation"
    trial: str | None = None
    tracking_uri: str | None = None
    artifact_location: str | None = None
    scatter_sample: int = 2000
    profile: bool = True
    #: slot names of the features vector kept (``[input].select``); None keeps them all
    select: tuple[str, ...] | None = None
    #: how segment ids are carried over from the previous run (``[segments]``)
    segments: MatchSettings = field(default_factory=MatchSettings)
    #: what the automatic segment count may choose (``[targets]``)
    targets: Targets = field(default_factory=Targets)
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def eps_auto(self) -> bool:
        return self.clusterer == "dbscan" and self.clusterer_params.get("eps") == "auto"

    @property
    def auto_choice(self) -> bool:
        """The job chooses the clustering's parameters within ``targets`` (jobs/autochoice):
        DBSCAN's ``minPoints`` or KMeans'/GMM's ``k`` is ``"auto"`` (the default)."""
        name = _AUTO_PARAMS.get(self.clusterer)
        return name is not None and self.clusterer_params.get(name) == AUTO

    def to_dict(self) -> dict[str, Any]:
        """The config as logged to the trial and the run summary."""
        out = {k: v for k, v in self.__dict__.items() if k != "raw"}
        out["segments"] = self.segments.to_dict()
        out["targets"] = self.targets.to_dict()
        return out


def _type_name(kinds: tuple[type, ...]) -> str:
    names = {int: "integer", float: "number", str: "string", bool: "true/false", dict: "table",
             list: "list"}  # fmt: skip
    return " or ".join(names.get(k, k.__name__) for k in kinds)


def _type_ok(value: Any, kinds: tuple[type, ...]) -> bool:
    if isinstance(value, bool) and bool not in kinds:
        return False  # TOML true is not an integer here
    return isinstance(value, kinds)


def _check_keys(
    problems: list[str], where: str, table: Mapping[str, Any], allowed: Mapping[str, tuple]
) -> dict[str, Any]:
    """The keys of ``table`` with an accepted type; the others are reported."""
    good: dict[str, Any] = {}
    for key, value in table.items():
        if key not in allowed:
            problems.append(
                f"{where}: unknown key {key!r}; accepted: {', '.join(sorted(allowed)) or 'none'}"
            )
        elif not _type_ok(value, allowed[key]):
            problems.append(
                f"{where}.{key}: expected {_type_name(allowed[key])}, got {value!r} "
                f"({type(value).__name__})"
            )
        else:
            good[key] = value
    return good


def _path_exists(path: str) -> bool:
    """False only for a local path (or glob) that matches nothing; remote paths are Spark's."""
    if not is_local(path):
        return True
    plain = local_path(path)
    return os.path.exists(plain) or bool(glob.glob(plain))


def input_path_problem(where: str, path: str) -> str | None:
    """The problem with an input path, checked before Spark starts, or None."""
    if not _path_exists(path):
        return f"{where}: {path!r} does not exist"
    return None


def output_path_problem(where: str, path: str) -> str | None:
    """The problem with a local output directory, or None: the path (or the nearest existing
    folder above it) must be a directory, since the job creates folders under it."""
    if not is_local(path):
        return None
    current = os.path.abspath(local_path(path))
    while not os.path.exists(current):
        parent = os.path.dirname(current)
        if parent == current:
            return None
        current = parent
    if not os.path.isdir(current):
        shown = path if current == os.path.abspath(local_path(path)) else current
        return f"{where}: {shown!r} is a file; accepted: a directory (created when missing)"
    return None


def _algorithm_params(
    problems: list[str],
    where: str,
    table: dict[str, Any],
    choices: tuple[str, ...],
    catalogue: Mapping[str, Mapping[str, tuple[type, ...]]],
    default: str | None,
) -> tuple[str, dict[str, Any]]:
    algorithm = table.get("algorithm", default)
    if algorithm is None:
        problems.append(f"{where}.algorithm is required; accepted: {', '.join(choices)}")
        return "", {}
    if algorithm not in choices:
        problems.append(
            f"{where}.algorithm: unknown algorithm {algorithm!r}; accepted: {', '.join(choices)}"
        )
        return "", {}
    params = _check_keys(problems, f"{where}.params", table.get("params", {}), catalogue[algorithm])
    return str(algorithm), params


def _positive(problems: list[str], where: str, params: dict[str, Any], name: str, low: int) -> None:
    if name in params and params[name] < low:
        problems.append(f"{where}.params.{name}: {params[name]!r}; accepted: >= {low}")


def check_reducer_params(problems: list[str], where: str, params: Mapping[str, Any]) -> None:
    """Range checks of reducer Params already of the right type (any subset of them)."""
    p = dict(params)
    for name in ("k", "nComponents", "sampleSize"):
        _positive(problems, where, p, name, 1)
    _positive(problems, where, p, "nNeighbors", 2)


def check_clusterer_params(problems: list[str], where: str, params: Mapping[str, Any]) -> None:
    """Range checks of clusterer Params already of the right type (any subset of them):
    ``eps`` a number > 0 or ``"auto"``, ``epsMultiple > 0``, ``k >= 2``, counts >= 1."""
    p = dict(params)
    eps = p.get("eps", "auto")
    if isinstance(eps, str) and eps != "auto":
        problems.append(f"{where}.params.eps: {eps!r}; accepted: a number > 0 or 'auto'")
    elif not isinstance(eps, str) and not (eps > 0 and math.isfinite(eps)):
        problems.append(f"{where}.params.eps: {eps!r}; accepted: a finite number > 0 (or 'auto')")
    multiple = p.get("epsMultiple", 1.0)
    if not (multiple > 0 and math.isfinite(multiple)):
        problems.append(f"{where}.params.epsMultiple: {multiple!r}; accepted: a finite number > 0")
    for name in ("minPoints", "epsSampleSize", "maxIter", "maxPointsPerPartition"):
        _positive(problems, where, p, name, 1)
    _positive(problems, where, p, "k", 2)


def check_select(problems: list[str], where: str, names: Any) -> tuple[str, ...] | None:
    """A non-empty list of distinct slot names, or the problem reported."""
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        problems.append(f"{where}: {names!r}; accepted: a non-empty list of feature names")
        return None
    if len(set(names)) != len(names):
        problems.append(f"{where}: {names!r} repeats a name; accepted: distinct names")
        return None
    return tuple(names)


def parse_config(
    data: Mapping[str, Any], source: str | None = None, *, base_dir: str | None = None
) -> SegmentConfig:
    """Check a parsed TOML document; raise :class:`ConfigError` listing every problem.

    Relative local paths are taken relative to ``base_dir`` when given and they do not exist
    relative to the current directory.
    """
    problems: list[str] = []
    allowed_top = {**_TOP, **{k: (dict,) for k in _TABLES}, "segments": (dict,),
                   "targets": (dict,)}  # fmt: skip
    top = _check_keys(problems, "config", data, allowed_top)
    tables = {name: _check_keys(problems, f"[{name}]", top.get(name, {}), _TABLES[name])
              for name in _TABLES}  # fmt: skip
    segments, segment_problems = check_settings(top.get("segments") or {})
    problems += segment_problems
    targets, target_problems = check_targets(top.get("targets") or {})
    problems += target_problems

    def resolve(path: str) -> str:
        relative = base_dir is not None and is_local(path) and not os.path.isabs(local_path(path))
        if relative and not os.path.exists(path):
            candidate = os.path.join(str(base_dir), path)
            if os.path.exists(candidate):
                return candidate
        return path

    inp = tables["input"]
    input_path = inp.get("path")
    if input_path is None:
        problems.append("[input].path is required")
    elif not _path_exists(resolve(input_path)):
        problems.append(f"[input].path: {input_path!r} does not exist")
    kind = inp.get("kind", "features")
    if kind not in ("features", "raw"):
        problems.append(f"[input].kind: {kind!r}; accepted: features, raw")
    spec = inp.get("spec")
    if kind == "raw":
        if spec is None:
            problems.append("[input].spec is required with kind = 'raw' (a prepare TOML spec)")
        elif not _path_exists(resolve(spec)):
            problems.append(f"[input].spec: {spec!r} does not exist")
    elif spec is not None:
        problems.append("[input].spec is only used with kind = 'raw'")

    select = None
    if "select" in inp:
        select = check_select(problems, "[input].select", inp["select"])

    reducer, rparams = _algorithm_params(
        problems, "[reducer]", tables["reducer"], REDUCERS, REDUCER_PARAMS, "none"
    )
    check_reducer_params(problems, "[reducer]", rparams)

    clusterer, cparams = _algorithm_params(
        problems, "[clusterer]", tables["clusterer"], CLUSTERERS, SEGMENT_CLUSTERER_PARAMS, None
    )
    if clusterer in _AUTO_PARAMS:
        name = _AUTO_PARAMS[clusterer]
        value = cparams.setdefault(name, AUTO)  # left out: the automatic choice
        if isinstance(value, str) and value != AUTO:
            problems.append(
                f"[clusterer].params.{name}: {value!r}; accepted: an integer or 'auto' (the "
                "default: chosen within [targets])"
            )
            cparams.pop(name)
        elif value == AUTO and cparams.get("backend") == "sagemaker":
            problems.append(
                f"[clusterer].params.{name}: 'auto' with backend = 'sagemaker' would start one "
                f"SageMaker training job per candidate; accepted: an integer {name} with that "
                "backend (or choose it on another backend first)"
            )
    if clusterer == "dbscan":
        cparams.setdefault("eps", "auto")
        if "epsMultiple" in cparams and cparams["eps"] != "auto":
            problems.append(
                f"[clusterer].params.epsMultiple: {cparams['epsMultiple']!r} with eps = "
                f"{cparams['eps']!r}; accepted: epsMultiple only with eps = 'auto' (the default)"
            )
    check_clusterer_params(
        problems, "[clusterer]", {k: v for k, v in cparams.items() if v != AUTO or k == "eps"}
    )

    ev = tables["evaluation"]
    for name, low in (("sample_size", 2), ("repeats", 1)):
        if name in ev and ev[name] < low:
            problems.append(f"[evaluation].{name}: {ev[name]!r}; accepted: >= {low}")

    tr = tables["tracking"]
    backend = tr.get("backend", "none")
    if backend not in TRACKING_BACKENDS:
        problems.append(
            f"[tracking].backend: {backend!r}; accepted: {', '.join(TRACKING_BACKENDS)}"
        )
    if tr.get("tracking_uri"):
        try:
            check_tracking_uri(tr["tracking_uri"], "[tracking].tracking_uri")
        except ValueError as exc:
            problems.append(str(exc))

    out = tables["output"]
    if "path" not in out:
        problems.append("[output].path is required")
    elif (problem := output_path_problem("[output].path", out["path"])) is not None:
        problems.append(problem)
    if out.get("scatter_sample", 1) < 1:
        problems.append(f"[output].scatter_sample: {out['scatter_sample']!r}; accepted: >= 1")

    run_date = top.get("run_date", dt.datetime.now(dt.timezone.utc).date())
    try:
        run_date = check_run_date(str(run_date))
    except ValueError as exc:
        problems.append(f"run_date: {exc}")

    if problems:
        raise ConfigError(problems, source)
    assert input_path is not None
    return SegmentConfig(
        input_path=resolve(input_path),
        input_kind=kind,
        spec=resolve(spec) if spec else None,
        id_col=inp.get("id_col", "customer_id"),
        features_col=inp.get("features_col", "features"),
        reducer=reducer,
        reducer_params=rparams,
        clusterer=clusterer,
        clusterer_params=cparams,
        output_path=out["path"],
        run_date=str(run_date),
        evaluation=ev.get("enabled", True),
        eval_sample_size=ev.get("sample_size", 2000),
        eval_repeats=ev.get("repeats", 3),
        eval_seed=ev.get("seed", 0),
        tracking_backend=backend,
        experiment=tr.get("experiment", "customer-segmentation"),
        trial=tr.get("trial"),
        tracking_uri=tr.get("tracking_uri"),
        artifact_location=tr.get("artifact_location"),
        scatter_sample=out.get("scatter_sample", 2000),
        profile=out.get("profile", True),
        select=select,
        segments=segments,
        targets=targets,
        raw=dict(data),
    )


def check_run_date(value: str) -> str:
    """``value`` if it is a ``YYYY-MM-DD`` date, else ``ValueError``."""
    try:
        return dt.date.fromisoformat(value).isoformat()
    except ValueError:
        raise ValueError(f"{value!r} is not a date; accepted: YYYY-MM-DD") from None


def load_config(
    path: str,
    *,
    overrides: Mapping[str, Any] | None = None,
) -> SegmentConfig:
    """Read and check a TOML config file; ``overrides`` maps ``table.key`` (or a top-level key)
    to a value that replaces the file's (command-line options)."""
    data = read_toml(path, overrides)
    return parse_config(data, path, base_dir=os.path.dirname(os.path.abspath(path)))


def read_toml(path: str, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A TOML config file as a dict (:class:`ConfigError` when missing or not TOML), with
    ``overrides`` (``table.key`` or top-level key -> value; None values ignored) applied."""
    try:
        with open(path, "rb") as fh:
            data: dict[str, Any] = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError([f"config file {path!r} does not exist"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"not valid TOML: {exc}"], path) from None
    for dotted, value in (overrides or {}).items():
        if value is None:
            continue
        table, _, key = dotted.rpartition(".")
        target = data.setdefault(table, {}) if table else data
        if isinstance(target, dict):
            target[key] = value
    return data
