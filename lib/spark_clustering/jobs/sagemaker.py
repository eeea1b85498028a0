"""``spark-clustering sagemaker train``: the segment job as a SageMaker training job.

::

    spark-clustering sagemaker train --config examples/sagemaker-train.toml \\
        --image 123456789012.dkr.ecr.eu-west-1.amazonaws.com/spark-clustering:cpu \\
        [--instance-type ml.g5.xlarge] [--dry-run]

The config (TOML) has a ``[sagemaker]`` table (the fields of ``SageMakerConfig``: region, role,
staging prefix, instances, KMS keys, VPC, network isolation, tags), ``[channels]`` (channel ->
``s3://`` URI: ``features`` or ``transactions``, and optionally ``config``),
``[hyperparameters]`` (the segment config's dotted keys, see
:mod:`spark_clustering.jobs.container`) and ``[job]`` (``base_name``). With a ``[tuning]``
table the trials are a sweep: one hyperparameter tuning job over the container's metric
(``objective``, ``type``, ``max_jobs``, ``max_parallel_jobs``, ``strategy``, ``[tuning.ranges]``).

Everything is checked before AWS is called. ``--dry-run`` prints the request (JSON) and calls
nothing; it needs no SDK. Otherwise the job is created through the ``sagemaker`` SDK v3
(``pip install 'spark-clustering[sagemaker]'``) and its name printed; the job runs on its own.
See docs/sagemaker.md.
"""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .entry import add_subcommand

TABLES = ("sagemaker", "channels", "hyperparameters", "job", "tuning")
TUNING_KEYS = ("objective", "type", "max_jobs", "max_parallel_jobs", "strategy", "ranges")
JOB_NAME = re.compile(r"^[A-Za-z0-9](-*[A-Za-z0-9]){0,15}$")


@dataclass(frozen=True)
class Launch:
    """A checked ``sagemaker train`` config."""

    sagemaker: Any  # SageMakerConfig
    channels: dict[str, str]
    hyperparameters: dict[str, str]
    base_name: str = "segment"
    sweep: Any = None  # training.Sweep or None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)


def _string(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    return str(value)


def _check_ranges(ranges: Any) -> dict[str, Any]:
    from .container import HYPERPARAMETERS, parse_hyperparameters

    if not isinstance(ranges, Mapping) or not ranges:
        raise ValueError("[tuning.ranges]: accepted: a table of hyperparameter -> range")
    for name, spec in ranges.items():
        if name not in HYPERPARAMETERS:
            raise ValueError(
                f"[tuning.ranges] {name!r} is not a hyperparameter; accepted: "
                f"{', '.join(HYPERPARAMETERS)}"
            )
        if isinstance(spec, list) and spec:
            for value in spec:
                parse_hyperparameters({name: _string(value)})
        elif isinstance(spec, Mapping) and {"min", "max"} <= set(spec):
            low, high = spec["min"], spec["max"]
            parse_hyperparameters({name: _string(low)})
            if not isinstance(low, (int, float)) or not isinstance(high, (int, float)):
                raise ValueError(f"[tuning.ranges] {name}: min and max must be numbers")
            if not low < high:
                raise ValueError(f"[tuning.ranges] {name}: min={low!r} must be < max={high!r}")
            if spec.get("scaling", "Auto") not in (
                "Auto", "Linear", "Logarithmic", "ReverseLogarithmic",
            ):  # fmt: skip
                raise ValueError(
                    f"[tuning.ranges] {name}: scaling={spec['scaling']!r}; accepted: Auto, "
                    "Linear, Logarithmic, ReverseLogarithmic"
                )
        else:
            raise ValueError(
                f"[tuning.ranges] {name} = {spec!r}; accepted: a list of values or "
                "{ min = .., max = .. }"
            )
    return dict(ranges)


def _sweep(table: Mapping[str, Any]) -> Any:
    from ..backends.sagemaker.training import OBJECTIVE_TYPES, TUNING_STRATEGIES, Sweep
    from .container import METRICS

    unknown = sorted(set(table) - set(TUNING_KEYS))
    if unknown:
        raise ValueError(f"[tuning]: unknown key(s) {unknown}; accepted: {', '.join(TUNING_KEYS)}")
    objective = table.get("objective", "silhouette")
    if objective not in METRICS:
        raise ValueError(
            f"[tuning].objective={objective!r}; accepted: a metric the container prints: "
            f"{', '.join(METRICS)}"
        )
    kind = table.get("type", "Minimize" if objective == "davies_bouldin" else "Maximize")
    if kind not in OBJECTIVE_TYPES:
        raise ValueError(f"[tuning].type={kind!r}; accepted: {', '.join(OBJECTIVE_TYPES)}")
    strategy = table.get("strategy", "Bayesian")
    if strategy not in TUNING_STRATEGIES:
        raise ValueError(
            f"[tuning].strategy={strategy!r}; accepted: {', '.join(TUNING_STRATEGIES)}"
        )
    counts = {}
    for name, default in (("max_jobs", 10), ("max_parallel_jobs", 2)):
        value = table.get(name, default)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"[tuning].{name}={value!r}; accepted: an integer >= 1")
        counts[name] = value
    return Sweep(
        objective=objective,
        objective_type=kind,
        ranges=_check_ranges(table.get("ranges")),
        strategy=strategy,
        **counts,
    )


def parse_launch(data: Mapping[str, Any], source: str = "config") -> Launch:
    """Check a parsed ``sagemaker train`` config; ``ValueError`` names what is wrong."""
    from ..backends.sagemaker.config import SageMakerConfig
    from .container import CONFIG_CHANNEL, INPUT_CHANNELS, parse_hyperparameters

    unknown = sorted(set(data) - set(TABLES))
    if unknown:
        raise ValueError(f"{source}: unknown table(s) {unknown}; accepted: {', '.join(TABLES)}")
    tables = {}
    for name in TABLES:
        value = data.get(name, {})
        if not isinstance(value, Mapping):
            raise ValueError(f"{source}: [{name}] must be a table")
        tables[name] = dict(value)
    sagemaker = SageMakerConfig.from_mapping(tables["sagemaker"])
    sagemaker.validate()
    if sagemaker.training_instance_count != 1:
        # Spark runs in local mode inside the container: more instances would each run the
        # whole job, not one Spark cluster
        raise ValueError(
            f"[sagemaker].training_instance_count={sagemaker.training_instance_count}; "
            "accepted: 1 (the container runs Spark on one instance; use EMR to scale out)"
        )
    channels = {str(k): str(v) for k, v in tables["channels"].items()}
    for name, uri in channels.items():
        if name not in (*INPUT_CHANNELS, CONFIG_CHANNEL):
            raise ValueError(
                f"[channels] {name!r} is not a channel of the container; accepted: "
                f"{', '.join((*INPUT_CHANNELS, CONFIG_CHANNEL))}"
            )
        if not uri.startswith("s3://"):
            raise ValueError(f"[channels] {name}={uri!r}; accepted: an s3:// URI")
    if sum(c in channels for c in INPUT_CHANNELS) != 1:
        raise ValueError(
            f"[channels]: {sorted(channels)}; accepted: exactly one of "
            f"{', '.join(INPUT_CHANNELS)} (plus an optional {CONFIG_CHANNEL!r})"
        )
    hyperparameters = {str(k): _string(v) for k, v in tables["hyperparameters"].items()}
    parse_hyperparameters(hyperparameters)  # the container's own check, before AWS is called
    base_name = str(tables["job"].get("base_name", "segment"))
    if not JOB_NAME.match(base_name):
        raise ValueError(
            f"[job].base_name={base_name!r}; accepted: 1-16 letters, digits and hyphens "
            "(a timestamp is appended)"
        )
    sweep = _sweep(tables["tuning"]) if "tuning" in data else None
    if sweep is not None:
        clash = sorted(set(sweep.ranges) & set(hyperparameters))
        if clash:
            raise ValueError(f"{clash} are both [hyperparameters] and [tuning.ranges]; keep one")
    return Launch(sagemaker, channels, hyperparameters, base_name, sweep, dict(data))


def load_launch(path: str) -> Launch:
    """Read and check a ``sagemaker train`` config file (TOML)."""
    from .segment_config import read_toml

    data = read_toml(path)
    return parse_launch(data, path)


def spec(launch: Launch, image: str, instance_type: str | None) -> Any:
    """The :class:`~spark_clustering.backends.sagemaker.training.TrainingSpec` of ``launch``."""
    from ..backends.sagemaker.training import TrainingSpec
    from .container import metric_definitions

    return TrainingSpec(
        image=image,
        channels=launch.channels,
        hyperparameters=launch.hyperparameters,
        metric_definitions=metric_definitions(),
        instance_type=instance_type,
        sweep=launch.sweep,
    )


def request(launch: Launch, image: str, instance_type: str | None, name: str) -> dict[str, Any]:
    """The Create* request ``launch`` makes (what ``--dry-run`` prints)."""
    from ..backends.sagemaker.training import build_request

    return build_request(launch.sagemaker, spec(launch, image, instance_type), name)


def submit(launch: Launch, image: str, instance_type: str | None) -> Any:
    """Create the training (or tuning) job through the SDK; the ``LaunchResult``."""
    from ..backends.sagemaker.training import launch as create

    return create(launch.sagemaker, spec(launch, image, instance_type), launch.base_name)


def _arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", required=True, help="launch config (examples/sagemaker-train.toml)")
    p.add_argument("--image", required=True, help="the container image URI (ECR)")
    p.add_argument(
        "--instance-type", default=None, help="overrides [sagemaker].training_instance_type"
    )
    p.add_argument("--dry-run", action="store_true", help="print the request; call nothing")


def run(args: argparse.Namespace) -> int:
    """Check the config, then print the request (``--dry-run``) or create the job."""
    import sys

    from ..backends.sagemaker.training import job_name

    if not re.match(r"^\S+$", args.image or ""):
        print(f"error: sagemaker train: --image {args.image!r} is not an image URI",
              file=sys.stderr)  # fmt: skip
        return 2
    try:
        launch = load_launch(args.config)
    except ValueError as exc:
        print(f"error: sagemaker train config: {exc}", file=sys.stderr)
        return 2
    if args.dry_run:
        body = request(launch, args.image, args.instance_type, job_name(launch.base_name))
        print(json.dumps(body, indent=2, sort_keys=True))
        return 0
    result = submit(launch, args.image, args.instance_type)
    region = launch.sagemaker.region
    page = "hyper-tuning-jobs" if result.kind == "tuning-job" else "jobs"
    print(
        f"{result.kind} {result.name} created; "
        f"https://{region}.console.aws.amazon.com/sagemaker/home?region={region}#/{page}/"
        f"{result.name}"
    )
    return 0


def add_parser(subparsers: Any) -> None:
    """Add ``sagemaker`` and its ``train`` action."""
    parser = subparsers.add_parser("sagemaker", help="run the segment job on SageMaker")
    sub = parser.add_subparsers(dest="sagemaker_command", metavar="ACTION")
    add_subcommand(
        sub,
        "train",
        "the segment job as a SageMaker training job (or a tuning job over a sweep)",
        __doc__,
        _arguments,
        run,
    )
    parser.set_defaults(func=lambda args: parser.print_help() or 2)
