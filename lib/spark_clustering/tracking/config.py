"""Which tracking backend to use and how: arguments, then environment, then a config file.

Precedence, highest first: keyword arguments, environment variables, the config file named by
``config=`` or ``SPARK_CLUSTERING_TRACKING_CONFIG``, the defaults below.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

BACKEND_CHOICES = ("mlflow", "sagemaker", "none")
DEFAULT_MLFLOW_URI = "sqlite:///mlflow.db"

#: environment variable -> option it sets
ENV_VARS: dict[str, str] = {
    "SPARK_CLUSTERING_TRACKING": "backend",
    "SPARK_CLUSTERING_TRACKING_URI": "tracking_uri",
    "SPARK_CLUSTERING_TRACKING_STRICT": "strict",
    "SPARK_CLUSTERING_TRACKING_ARTIFACTS": "artifact_uri",
}
CONFIG_ENV = "SPARK_CLUSTERING_TRACKING_CONFIG"

#: SageMaker's managed MLflow: a tracking server's ARN is the tracking URI (sagemaker-mlflow)
MLFLOW_ARN = re.compile(
    r"^arn:aws[a-z-]*:sagemaker:[a-z]{2}(-[a-z]+)+-\d:\d{12}:mlflow-tracking-server/"
    r"[A-Za-z0-9](-*[A-Za-z0-9]){0,255}$"
)
MLFLOW_PLUGIN = "sagemaker_mlflow"

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off", "")


@dataclasses.dataclass(frozen=True)
class TrackingConfig:
    """Resolved tracking settings (see ``docs/tracking.md`` for each option).

    Parameters
    ----------
    backend : {"mlflow", "sagemaker", "none"}
        Where trials are recorded.
    strict : bool
        Fail the job when the tracking backend fails (default: log, count and carry on).
    tracking_uri : str, optional
        MLflow tracking URI; default ``MLFLOW_TRACKING_URI`` or ``sqlite:///mlflow.db``.
    artifact_location : str, optional
        MLflow artifact root for experiments this package creates.
    region, endpoint_url, profile : str, optional
        boto3 settings for the SageMaker backend (default: boto3's own resolution, which reads
        ``AWS_REGION``/``AWS_DEFAULT_REGION``, ``AWS_ENDPOINT_URL`` and ``AWS_PROFILE``).
    artifact_uri : str, optional
        ``s3://bucket/prefix`` where the SageMaker backend uploads files given to
        ``log_artifact``.
    max_trials_per_experiment, max_components_per_trial : int
        SageMaker quotas (300 and 50); past them runs spill into numbered experiments / trials.
    max_attempts : int
        botocore attempts per call, throttling included (standard retry mode, backoff); with
        the 5 s connect and 30 s read timeouts of the SageMaker backend's clients.
    metric_buffer : int
        Metrics kept before a flush (flushes also happen when a component or trial ends).
    """

    backend: str = "mlflow"
    strict: bool = False
    tracking_uri: str | None = None
    artifact_location: str | None = None
    region: str | None = None
    endpoint_url: str | None = None
    profile: str | None = None
    artifact_uri: str | None = None
    max_trials_per_experiment: int = 300
    max_components_per_trial: int = 50
    max_attempts: int = 5
    metric_buffer: int = 100

    def mlflow_uri(self) -> str:
        """The MLflow tracking URI this configuration points at."""
        return self.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_MLFLOW_URI

    def target(self) -> str:
        """The store written to, in words (credentials redacted): what an outage switches off.

        Examples
        --------
        >>> TrackingConfig("mlflow", tracking_uri="http://u:pw@host:5000").target()
        'mlflow http://__REDACTED__@host:5000'
        """
        from ..redact import redact_text

        if self.backend == "mlflow":
            return redact_text(f"mlflow {self.mlflow_uri()}")
        if self.backend == "sagemaker":
            where = self.endpoint_url or self.region or os.environ.get("AWS_REGION") or "default"
            profile = f" ({self.profile})" if self.profile else ""
            return redact_text(f"sagemaker {where}{profile}")
        return self.backend


_FIELDS = {f.name: f for f in dataclasses.fields(TrackingConfig)}
_INT_LIMITS = {
    "max_trials_per_experiment": 1,
    "max_components_per_trial": 2,
    "max_attempts": 1,
    "metric_buffer": 1,
}


def check_tracking_uri(value: str, name: str = "tracking_uri") -> str:
    """``value`` if it is a usable MLflow tracking URI, else ``ValueError`` naming ``name``.

    An ARN must be a SageMaker MLflow tracking server's,
    ``arn:aws:sagemaker:<region>:<account>:mlflow-tracking-server/<name>``, and needs the
    ``sagemaker-mlflow`` plugin, which signs MLflow's requests with the AWS credentials; other
    URIs (``sqlite:///...``, ``http(s)://...``, ``databricks``, a path) are MLflow's to check.

    Examples
    --------
    >>> check_tracking_uri("sqlite:///mlflow.db")
    'sqlite:///mlflow.db'
    >>> check_tracking_uri("arn:aws:sagemaker:eu-west-1:123456789012:training-job/x")
    Traceback (most recent call last):
    ...
    ValueError: tracking_uri='arn:aws:sagemaker:eu-west-1:123456789012:training-job/x' is not \
valid; accepted: a SageMaker MLflow tracking server ARN \
'arn:aws:sagemaker:<region>:<12-digit account>:mlflow-tracking-server/<name>' or an MLflow \
tracking URI (sqlite:///..., http(s)://..., databricks)
    """
    if not value.startswith("arn:"):
        return value
    if not MLFLOW_ARN.match(value):
        raise ValueError(
            f"{name}={value!r} is not valid; accepted: a SageMaker MLflow tracking server ARN "
            "'arn:aws:sagemaker:<region>:<12-digit account>:mlflow-tracking-server/<name>' or an "
            "MLflow tracking URI (sqlite:///..., http(s)://..., databricks)"
        )
    if importlib.util.find_spec(MLFLOW_PLUGIN) is None:
        raise ValueError(
            f"{name}={value!r} is a SageMaker managed MLflow tracking server, which needs the "
            "sagemaker-mlflow package (not installed): pip install "
            "'spark-clustering[sagemaker-mlflow]'"
        )
    return value


def _to_bool(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(f"{name}={value!r} is not valid; accepted: true/false, 1/0, yes/no, on/off")


def _check(name: str, value: Any) -> Any:
    if name not in _FIELDS:
        raise ValueError(
            f"tracking option {name!r} is unknown; accepted: {', '.join(sorted(_FIELDS))}"
        )
    if name == "backend":
        text = str(value).strip().lower()
        if text not in BACKEND_CHOICES:
            raise ValueError(
                f"backend={value!r} is not valid; accepted: {', '.join(BACKEND_CHOICES)}"
            )
        return text
    if name == "strict":
        return _to_bool(name, value)
    if name in _INT_LIMITS:
        try:
            number = int(value)
        except (TypeError, ValueError):
            raise ValueError(f"{name}={value!r} is not an integer") from None
        if (isinstance(value, float) and value != number) or isinstance(value, bool):
            raise ValueError(f"{name}={value!r} is not an integer")
        if number < _INT_LIMITS[name]:
            raise ValueError(f"{name}={value!r} is out of range; accepted: >= {_INT_LIMITS[name]}")
        return number
    if value is not None and not isinstance(value, str):
        raise ValueError(f"{name}={value!r} is not valid; accepted: a string")
    if name == "tracking_uri" and value:
        check_tracking_uri(value)
    if name == "artifact_uri" and value and not value.startswith("s3://"):
        raise ValueError(f"artifact_uri={value!r} is not valid; accepted: s3://bucket/prefix")
    return value or None


def read_config_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The ``[tracking]`` table of a TOML file, or the ``"tracking"`` object of a JSON file."""
    file = Path(path)
    if not file.is_file():
        raise ValueError(f"config={str(path)!r} is not a readable file")
    text = file.read_text(encoding="utf-8")
    if file.suffix.lower() == ".json":
        data = json.loads(text)
    elif file.suffix.lower() == ".toml":
        if sys.version_info >= (3, 11):
            import tomllib
        else:  # pragma: no cover - Python 3.10 needs the tomli package for TOML files
            import tomli as tomllib
        data = tomllib.loads(text)
    else:
        raise ValueError(f"config={str(path)!r} is not valid; accepted: a .toml or .json file")
    section = data.get("tracking", {}) if isinstance(data, dict) else None
    if not isinstance(section, dict):
        raise ValueError(f"config={str(path)!r}: 'tracking' must be a table/object of options")
    return section


def resolve_config(
    backend: str | None = None,
    *,
    config: str | os.PathLike[str] | Mapping[str, Any] | TrackingConfig | None = None,
    strict: bool | None = None,
    env: Mapping[str, str] | None = None,
    **options: Any,
) -> TrackingConfig:
    """Build the :class:`TrackingConfig` from arguments, environment and config file.

    Every value is checked before anything is contacted; a bad one raises ``ValueError``
    naming the option, the value and what is accepted.

    Examples
    --------
    >>> resolve_config("none", env={}).backend
    'none'
    >>> resolve_config(env={"SPARK_CLUSTERING_TRACKING": "sagemaker"}).backend
    'sagemaker'
    """
    env = os.environ if env is None else env
    if isinstance(config, TrackingConfig):
        values: dict[str, Any] = dataclasses.asdict(config)
    else:
        values = {}
        source: Any = config if config is not None else env.get(CONFIG_ENV)
        if isinstance(source, Mapping):
            values.update(source)
        elif source:
            values.update(read_config_file(source))
        for var, name in ENV_VARS.items():
            if env.get(var) is not None and env.get(var) != "":
                values[name] = env[var]
    explicit = {"backend": backend, "strict": strict, **options}
    values.update({k: v for k, v in explicit.items() if v is not None})
    return TrackingConfig(**{name: _check(name, value) for name, value in values.items()})
