"""Name rules, deterministic SageMaker names, value coercion and redaction.

Every name is checked here before any backend is called, against the strictest rules of the
backends we write to, so a sweep that works on MLflow also works on SageMaker Experiments.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping
from typing import Any

# the redaction is shared with everything else the package saves; re-exported for old imports
from ..redact import REDACTED, is_secret_key, redact, redact_text

#: Logical names (experiment, trial, component): what users see in MLflow and as SageMaker tags.
#: The character set is the ASCII part of what SageMaker accepts in a tag value.
NAME_MAX = 120
_NAME_RE = re.compile(r"^[A-Za-z0-9 _.:/=+\-@]+$")
NAME_RULE = (
    f"1-{NAME_MAX} characters from A-Z a-z 0-9 space _ . : / = + - @, "
    "not blank, not starting or ending with a space"
)

#: SageMaker entity names (ExperimentName, TrialName, TrialComponentName, DisplayName).
SAGEMAKER_NAME_RE = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,119}$")

#: Parameter, metric, tag, input and output keys: MLflow's key rule (the stricter one), capped at
#: the shortest limit among MLflow (250) and SageMaker (metric 255, parameter 320, artifact 128).
KEY_MAX = 128
_KEY_RE = re.compile(r"^[A-Za-z0-9_.\- :/]+$")
KEY_RULE = (
    f"1-{KEY_MAX} characters from A-Z a-z 0-9 _ . - space : /, "
    "not starting with '/' and without '..'"
)

#: SageMaker artifact MediaType.
_MEDIA_TYPE_RE = re.compile(r"^[-\w]+/[-\w+]+$")

#: SageMaker's StringValue limit for parameters (MLflow allows 6000).
PARAM_VALUE_MAX = 2500


def validate_name(param: str, value: Any) -> str:
    """Check a logical experiment, trial or component name; return it unchanged.

    Raises
    ------
    ValueError
        Naming ``param``, the value and the accepted rule.

    Examples
    --------
    >>> validate_name("trial", "umap3-dbscan-eps0.31")
    'umap3-dbscan-eps0.31'
    """
    if (
        not isinstance(value, str)
        or not 1 <= len(value) <= NAME_MAX
        or not _NAME_RE.match(value)
        or value != value.strip()
    ):
        hint = ""
        if isinstance(value, str) and value.strip():
            hint = f" (sanitize_name gives {sanitize_name(value)!r})"
        raise ValueError(f"{param}={value!r} is not a valid name; accepted: {NAME_RULE}{hint}")
    return value


def sanitize_name(value: str) -> str:
    """Deterministically turn any string into a valid logical name.

    Runs of other characters become ``-``; when anything changed (or the name was cut to fit),
    an 8-character hash of the original is appended, so two different inputs never collide.

    Examples
    --------
    >>> sanitize_name("eps=0.31 [run#2]")
    'eps=0.31 -run-2-5492a3df'
    """
    cleaned = re.sub(r"[^A-Za-z0-9 _.:/=+\-@]+", "-", value).strip()
    if cleaned == value and 1 <= len(cleaned) <= NAME_MAX:
        return cleaned
    digest = hashlib.sha1(value.encode("utf-8")).hexdigest()[:8]
    base = cleaned[: NAME_MAX - 9].strip(" -")
    return f"{base}-{digest}" if base else digest


def sagemaker_name(value: str, max_len: int = NAME_MAX) -> str:
    """A SageMaker entity name for ``value``: deterministic, within ``max_len``, collision-safe.

    Characters outside ``[a-zA-Z0-9]`` become ``-``. If that changed the name or it has to be
    shortened, an 8-character hash of the original is appended, so ``eps0.31`` and ``eps0-31``
    map to different names.

    Examples
    --------
    >>> sagemaker_name("umap3-dbscan-eps0.31")
    'umap3-dbscan-eps0-31-5e7696d0'
    """
    if max_len < 10:
        raise ValueError(f"max_len={max_len!r} is out of range; accepted: >= 10")
    cleaned = re.sub(r"[^A-Za-z0-9]+", "-", value).strip("-")
    if cleaned == value and len(cleaned) <= max_len and SAGEMAKER_NAME_RE.match(cleaned):
        return cleaned
    digest = hashlib.sha1(value.encode("utf-8")).hexdigest()[:8]
    base = cleaned[: max_len - 9].strip("-")
    return f"{base}-{digest}" if base else digest


def sagemaker_tag_value(value: str) -> str:
    """Tag values may hold letters, digits, spaces and ``_.:/=+-@`` only, up to 256 characters."""
    return re.sub(r"[^\w .:/=+\-@]", "_", value)[:256]


def validate_key(param: str, value: Any) -> str:
    """Check a parameter, metric, tag, input or output key; return it unchanged."""
    if (
        not isinstance(value, str)
        or not 1 <= len(value) <= KEY_MAX
        or not _KEY_RE.match(value)
        or value.startswith("/")
        or ".." in value
    ):
        raise ValueError(f"{param}={value!r} is not a valid key; accepted: {KEY_RULE}")
    return value


def validate_media_type(value: Any) -> str | None:
    """Check an artifact media type such as ``s3/uri`` or ``image/png`` (or None)."""
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > 64 or not _MEDIA_TYPE_RE.match(value):
        raise ValueError(
            f"media_type={value!r} is not valid; accepted: 'type/subtype' of letters, digits, "
            "'_' and '-' (subtype may hold '+'), at most 64 characters, e.g. 's3/uri'"
        )
    return value


def coerce_param(key: str, value: Any) -> str | int | float:
    """A parameter value as a backend can store it, with credentials redacted.

    Numbers stay numbers (SageMaker stores them as ``NumberValue``); booleans, ``None``,
    sequences and other objects become strings (JSON where possible). Strings longer than
    SageMaker's 2500-character limit are cut with a visible ``...[+N chars]`` marker.
    """
    if is_secret_key(key):
        return REDACTED
    if isinstance(value, bool) or value is None:
        return str(value).lower() if isinstance(value, bool) else "None"
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    number = _as_number(value)
    if number is not None:
        return number
    if isinstance(value, str):
        text = value
    else:
        try:
            text = json.dumps(_jsonable(value), sort_keys=True)
        except (TypeError, ValueError):
            text = str(value)
    text = redact_text(text)
    if len(text) > PARAM_VALUE_MAX:
        cut = len(text) - (PARAM_VALUE_MAX - 20)
        text = f"{text[: PARAM_VALUE_MAX - 20]}...[+{cut} chars]"
    return text


def coerce_metric(value: Any) -> float:
    """A finite float, or ``ValueError`` saying why the value cannot be a metric."""
    if isinstance(value, bool):
        raise ValueError(f"metric value {value!r} is a bool, not a number")
    number = _as_number(value)
    if number is None:
        raise ValueError(f"metric value {value!r} is not a number")
    number = float(number)
    if not math.isfinite(number):
        raise ValueError(f"metric value {value!r} is not finite")
    return number


def redact_tags(tags: Mapping[str, Any]) -> dict[str, str]:
    """Tags as strings, with credential-like keys redacted and URLs cleaned."""
    return {str(k): str(v) for k, v in redact(dict(tags)).items()}


def _as_number(value: Any) -> int | float | None:
    """numpy scalars and other number-likes as int/float; None for anything else."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value
    kind = getattr(getattr(value, "dtype", None), "kind", None)
    if kind in ("i", "u") and getattr(value, "shape", None) == ():
        return int(value)
    if kind == "f" and getattr(value, "shape", None) == ():
        return float(value)
    return None


def _jsonable(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    raise TypeError(type(value).__name__)
