"""The ``segment`` job inside a SageMaker training container (``container/train``).

SageMaker's training contract, as this entry point follows it::

    /opt/ml/input/config/hyperparameters.json   {name: "value"} (all strings), see below
    /opt/ml/input/data/features/                Parquet of <id_col>, <features_col>   (or)
    /opt/ml/input/data/transactions/            raw transactions, with a prepare spec
    /opt/ml/input/data/config/                  optional: segment.toml, prepare.toml
    /opt/ml/model/                              the saved pipeline (what ``score`` reapplies)
    /opt/ml/output/data/                        assignments/ (Parquet), report.html,
                                                summary.json, charts
    /opt/ml/output/failure                      why the job failed (SageMaker's FailureReason)

Every folder can be moved by the environment variables SageMaker's training toolkit sets
(``SM_MODEL_DIR``, ``SM_OUTPUT_DATA_DIR``, ``SM_OUTPUT_DIR``, ``SM_INPUT_CONFIG_DIR``,
``SM_CHANNEL_<NAME>``), else they are found under ``--ml-root`` (default ``/opt/ml``).

Hyperparameters are the ``segment`` config's own keys, dotted (:data:`HYPERPARAMETERS`):
``clusterer.algorithm``, ``clusterer.params.k``, ``reducer.params.nComponents``,
``evaluation.sample_size``, ``tracking.tracking_uri``, ``run_date``, ... plus ``gpu``
(``auto``, ``on``, ``off``). They override ``segment.toml`` of the config channel; each value is
parsed to the type the config expects, and a bad one fails the job naming the hyperparameter,
the value and what is accepted. Names SageMaker adds itself (``_tuning_objective_metric``,
``sagemaker_*``) are ignored.

Metrics are printed one per line, ``metric: <name>=<value>;`` (:data:`METRICS`), the format the
training job's metric definitions (:func:`metric_definitions`, generated from the same table)
match. Exit codes: 0 done, 2 bad hyperparameters, config or input, 1 any other failure.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .entry import job_main, root_cause
from .segment_config import _TABLES, CLUSTERER_PARAMS, REDUCER_PARAMS, parse_config, read_toml

log = logging.getLogger(__name__)

__all__ = [
    "HYPERPARAMETERS",
    "METRICS",
    "Paths",
    "config_from_hyperparameters",
    "main",
    "metric_definitions",
    "metric_line",
]

#: the channel of the segment job's input, by ``[input].kind``; ``config`` is optional
INPUT_CHANNELS = {"features": "features", "transactions": "raw"}
CONFIG_CHANNEL = "config"
CONFIG_FILE = "segment.toml"
SPEC_FILE = "prepare.toml"
#: SageMaker shows the first 1024 characters of the failure file as the job's FailureReason
FAILURE_LIMIT = 1024

#: keys the container sets itself: never hyperparameters
_RESERVED = {"input.path", "output.path"}
_IGNORED = re.compile(r"^(_|sagemaker_)")
GPU_CHOICES = ("auto", "on", "off")


def _table_keys() -> dict[str, tuple[type, ...]]:
    keys: dict[str, tuple[type, ...]] = {"run_date": (str,)}
    for table, fields in _TABLES.items():
        for key, kinds in fields.items():
            if kinds != (dict,):
                keys[f"{table}.{key}"] = kinds
    for table, catalogue in (("reducer", REDUCER_PARAMS), ("clusterer", CLUSTERER_PARAMS)):
        for params in catalogue.values():
            for name, kinds in params.items():
                keys.setdefault(f"{table}.params.{name}", kinds)
    return {k: v for k, v in sorted(keys.items()) if k not in _RESERVED}


#: hyperparameter -> the Python type(s) its ``segment`` config key accepts (the config's tables)
HYPERPARAMETERS: dict[str, tuple[type, ...]] = _table_keys()

#: metric printed -> where its value is in the run's summary (``metrics`` first, then the top)
METRICS: tuple[str, ...] = (
    "silhouette",
    "davies_bouldin",
    "calinski_harabasz",
    "noise_fraction",
    "n_clusters",
    "largest_cluster_fraction",
    "customers",
)
#: a number as :func:`metric_line` prints it (``repr`` of a float or an int)
_NUMBER = r"[-+]?[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?"


def metric_line(name: str, value: float) -> str:
    """The line printed for one metric.

    Examples
    --------
    >>> metric_line("silhouette", 0.4213)
    'metric: silhouette=0.4213;'
    """
    return f"metric: {name}={float(value)!r};"


def metric_definitions() -> list[dict[str, str]]:
    """``MetricDefinitions`` of the training job: one regex per :data:`METRICS` entry.

    Examples
    --------
    >>> metric_definitions()[0]["Name"], metric_definitions()[0]["Regex"][:20]
    ('silhouette', 'metric: silhouette=(')
    """
    return [{"Name": name, "Regex": f"metric: {name}=({_NUMBER});"} for name in METRICS]


def summary_metrics(summary: Mapping[str, Any]) -> dict[str, float]:
    """The finite :data:`METRICS` of a segment run's summary."""
    figures = {**summary, **(summary.get("metrics") or {})}
    out = {}
    for name in METRICS:
        value = figures.get(name)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if math.isfinite(value):
            out[name] = float(value)
    return out


# --------------------------------------------------------------------------- hyperparameters


def _parse_value(name: str, text: str, kinds: tuple[type, ...]) -> Any:
    accepted = {int: "an integer", float: "a number", str: "a string", bool: "true or false",
                list: "a comma-separated list"}  # fmt: skip
    if bool in kinds:
        if text.strip().lower() in ("true", "false"):
            return text.strip().lower() == "true"
    elif list in kinds:
        items = [v.strip() for v in text.split(",") if v.strip()]
        if items:
            return items
    else:
        if int in kinds:
            try:
                return int(text)
            except ValueError:
                pass
        if float in kinds:
            try:
                number = float(text)
            except ValueError:
                pass
            else:
                if math.isfinite(number):
                    return number
        if str in kinds:
            return text
    wanted = " or ".join(accepted[k] for k in kinds if k in accepted)
    raise ValueError(f"hyperparameter {name}={text!r} is not valid; accepted: {wanted}")


def parse_hyperparameters(values: Mapping[str, Any]) -> tuple[dict[str, Any], str]:
    """``({config key: value}, gpu)`` from SageMaker's string hyperparameters.

    Raises ``ValueError`` naming the first bad hyperparameter, its value and what is accepted.
    """
    overrides: dict[str, Any] = {}
    gpu = "auto"
    for name, raw in sorted(values.items()):
        if _IGNORED.match(name):
            continue
        text = raw if isinstance(raw, str) else json.dumps(raw)
        if name == "gpu":
            if text not in GPU_CHOICES:
                raise ValueError(
                    f"hyperparameter gpu={text!r} is not valid; accepted: {', '.join(GPU_CHOICES)}"
                )
            gpu = text
            continue
        if name not in HYPERPARAMETERS:
            hint = " (set by the container from its channels)" if name in _RESERVED else ""
            raise ValueError(
                f"hyperparameter {name!r} is unknown{hint}; accepted: gpu, "
                f"{', '.join(HYPERPARAMETERS)}"
            )
        overrides[name] = _parse_value(name, text, HYPERPARAMETERS[name])
    return overrides, gpu


def _set(data: dict[str, Any], dotted: str, value: Any) -> None:
    *tables, key = dotted.split(".")
    target = data
    for table in tables:
        inner = target.get(table)
        if not isinstance(inner, dict):
            inner = target[table] = {}
        target = inner
    target[key] = value


# --------------------------------------------------------------------------- paths


@dataclass(frozen=True)
class Paths:
    """Where the container reads and writes, from ``SM_*`` variables or under ``root``."""

    input_config: str
    model: str
    output: str
    output_data: str
    channels: dict[str, str]

    @property
    def failure(self) -> str:
        return os.path.join(self.output, "failure")

    @classmethod
    def resolve(cls, root: str = "/opt/ml", env: Mapping[str, str] | None = None) -> Paths:
        env = os.environ if env is None else env
        output = env.get("SM_OUTPUT_DIR") or os.path.join(root, "output")
        data_dir = os.path.join(root, "input", "data")
        channels: dict[str, str] = {}
        if os.path.isdir(data_dir):
            channels = {n: os.path.join(data_dir, n) for n in sorted(os.listdir(data_dir))}
        for key, value in env.items():
            if key.startswith("SM_CHANNEL_") and value:
                channels[key[len("SM_CHANNEL_") :].lower()] = value
        return cls(
            input_config=env.get("SM_INPUT_CONFIG_DIR") or os.path.join(root, "input", "config"),
            model=env.get("SM_MODEL_DIR") or os.path.join(root, "model"),
            output=output,
            output_data=env.get("SM_OUTPUT_DATA_DIR") or os.path.join(output, "data"),
            channels=channels,
        )


def config_from_hyperparameters(
    paths: Paths, hyperparameters: Mapping[str, Any], work_dir: str, env: Mapping[str, str]
) -> tuple[Any, str]:
    """The checked :class:`SegmentConfig` of this training job and the ``gpu`` setting.

    ``segment.toml`` of the config channel (if any) is the base; the input channel sets
    ``[input]``, ``work_dir`` is the output, the hyperparameters override the rest. The trial is
    named after the training job (``TRAINING_JOB_NAME``) unless a hyperparameter names it.
    """
    overrides, gpu = parse_hyperparameters(hyperparameters)
    config_dir = paths.channels.get(CONFIG_CHANNEL)
    data: dict[str, Any] = {}
    if config_dir and os.path.isfile(os.path.join(config_dir, CONFIG_FILE)):
        data = read_toml(os.path.join(config_dir, CONFIG_FILE))
    inputs = [c for c in INPUT_CHANNELS if c in paths.channels]
    if len(inputs) != 1:
        raise ValueError(
            f"channels {sorted(paths.channels)}: accepted: exactly one of "
            f"{', '.join(INPUT_CHANNELS)} (plus an optional {CONFIG_CHANNEL!r} channel)"
        )
    channel = inputs[0]
    _set(data, "input.path", paths.channels[channel])
    _set(data, "input.kind", INPUT_CHANNELS[channel])
    if INPUT_CHANNELS[channel] == "raw" and config_dir and "input.spec" not in overrides:
        if os.path.isfile(os.path.join(config_dir, SPEC_FILE)):
            _set(data, "input.spec", os.path.join(config_dir, SPEC_FILE))
    elif INPUT_CHANNELS[channel] != "raw":
        data.get("input", {}).pop("spec", None)
    _set(data, "output.path", work_dir)
    for table in ("reducer", "clusterer"):
        # a sweep over algorithms: the base config's params belong to the base's algorithm
        base = data.get(table)
        if not isinstance(base, dict):
            continue
        chosen = overrides.get(f"{table}.algorithm")
        if chosen is not None and base.get("algorithm") != chosen:
            base.pop("params", None)
    for key, value in overrides.items():
        _set(data, key, value)
    job = env.get("TRAINING_JOB_NAME")
    if job and "tracking.trial" not in overrides:
        _set(data, "tracking.trial", job)
    return parse_config(data, "hyperparameters", base_dir=config_dir), gpu


# --------------------------------------------------------------------------- running


def _copy_outputs(result: Any, paths: Paths) -> None:
    from .io import local_path

    os.makedirs(paths.model, exist_ok=True)
    os.makedirs(paths.output_data, exist_ok=True)
    shutil.copytree(local_path(result.model_path), paths.model, dirs_exist_ok=True)
    run_dir = os.path.dirname(local_path(result.report_path))
    model_dir = os.path.abspath(local_path(result.model_path))
    for name in sorted(os.listdir(run_dir)):
        source = os.path.join(run_dir, name)
        if os.path.abspath(source) == model_dir:
            continue
        target = os.path.join(paths.output_data, name)
        if os.path.isdir(source):
            shutil.copytree(source, target, dirs_exist_ok=True)
        else:
            shutil.copy2(source, target)


def read_hyperparameters(paths: Paths) -> dict[str, Any]:
    """``hyperparameters.json`` (``{}`` when SageMaker wrote none)."""
    path = os.path.join(paths.input_config, "hyperparameters.json")
    try:
        with open(path, encoding="utf-8") as fh:
            values = json.load(fh)
    except FileNotFoundError:
        return {}
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(values, dict):
        raise ValueError(f"{path}: accepted: a JSON object of name -> string value")
    return values


def write_failure(paths: Paths, message: str) -> None:
    """Write ``message`` (cut to SageMaker's 1024 characters) to the failure file."""
    os.makedirs(paths.output, exist_ok=True)
    with open(paths.failure, "w", encoding="utf-8") as fh:
        fh.write(message[:FAILURE_LIMIT])


def train(
    paths: Paths,
    env: Mapping[str, str] | None = None,
    *,
    master: str | None = None,
    printer: Callable[[str], Any] = print,
) -> int:
    """Run the training job described by ``paths``; the exit code (see the module docstring)."""
    from spark_clustering.redact import redact_text

    from .entry import report_failure

    env = os.environ if env is None else env
    with tempfile.TemporaryDirectory(prefix="sc-container-") as work:
        try:
            hyperparameters = read_hyperparameters(paths)
            config, gpu = config_from_hyperparameters(
                paths, hyperparameters, os.path.join(work, "segments"), env
            )
            from .entry import start_spark
            from .segment import run_segment

            spark = start_spark("spark-clustering-sagemaker", master=master, gpu=gpu)
            result = run_segment(spark, config)
            _copy_outputs(result, paths)
        except Exception as exc:
            bad_input = "bad input: " if isinstance(exc, ValueError) else ""
            write_failure(paths, redact_text(bad_input + root_cause(exc)))
            return report_failure("sagemaker-train", exc)
    for name, value in summary_metrics(result.summary).items():
        printer(metric_line(name, value))
    printer(f"segment: {result.summary['tracking']['text']}")
    return 0


def _arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--ml-root", default="/opt/ml", help="SageMaker's folder tree (/opt/ml)")
    p.add_argument("--master", default=None, help="Spark master (default local[*])")
    # SageMaker runs the image as `<image> train`: the word is accepted and ignored
    p.add_argument("mode", nargs="?", default="train", choices=("train",))


def _run(args: argparse.Namespace) -> int:
    return train(Paths.resolve(args.ml_root), master=args.master)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``container/train``; returns the exit code."""
    return job_main("sagemaker-train", __doc__, _arguments, _run, argv)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
