"""Estimator plumbing shared by every algorithm: parameter checks and the backend registry.

A backend is a module (under ``spark_clustering.backends``) that implements one algorithm's
numeric work. Estimators name what they need as ``(algorithm, backend)`` and the registry
imports the implementation lazily, so cuML, cupy or boto3 are only imported where they run.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import SparkSession

log = logging.getLogger(__name__)

BACKEND_CHOICES = ("auto", "cpu", "gpu")

#: (algorithm, backend) -> "module:attribute" of the implementation, imported on first use.
BACKENDS: dict[tuple[str, str], str] = {
    ("dbscan", "cpu"): "spark_clustering.backends.cpu.dbscan_kernel:CPU_KERNEL",
    ("dbscan", "gpu"): "spark_clustering.backends.gpu.dbscan_kernel:GPU_KERNEL",
    ("umap", "cpu"): "spark_clustering.backends.cpu.umap_kernel:CPU_KERNEL",
    ("umap", "gpu"): "spark_clustering.backends.gpu.umap_kernel:GPU_KERNEL",
}


def register_backend(algorithm: str, backend: str, target: str) -> None:
    """Register ``module:attribute`` as the implementation of ``algorithm`` on ``backend``."""
    BACKENDS[(algorithm, backend)] = target


def load_backend(algorithm: str, backend: str) -> Any:
    """Import and return the implementation registered for ``(algorithm, backend)``."""
    try:
        target = BACKENDS[(algorithm, backend)]
    except KeyError:
        known = sorted(b for a, b in BACKENDS if a == algorithm)
        raise ValueError(
            f"backend={backend!r} is not available for {algorithm}; accepted: {known}"
        ) from None
    module_name, _, attr = target.partition(":")
    return getattr(importlib.import_module(module_name), attr)


# --------------------------------------------------------------------------- parameter checks


class ProblemsError(ValueError):
    """A file (config, spec) with problems, all listed at once; ``problems`` holds each one.

    The message is ``header``, a colon, then one ``  - problem`` line each.
    """

    def __init__(self, problems: list[str], header: str) -> None:
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"{header}:\n{lines}")


def check_choice(param: str, value: Any, choices: Iterable[str]) -> None:
    """Raise ``ValueError`` naming ``param`` when ``value`` is not one of ``choices``."""
    choices = tuple(choices)
    if value not in choices:
        raise ValueError(f"{param}={value!r} is not valid; accepted: {', '.join(choices)}")


def check_range(
    param: str,
    value: float,
    *,
    gt: float | None = None,
    ge: float | None = None,
    le: float | None = None,
) -> None:
    """Raise ``ValueError`` naming ``param``, its value and the accepted range."""
    ok = (gt is None or value > gt) and (ge is None or value >= ge) and (le is None or value <= le)
    if not ok:
        parts = []
        if gt is not None:
            parts.append(f"> {gt}")
        if ge is not None:
            parts.append(f">= {ge}")
        if le is not None:
            parts.append(f"<= {le}")
        raise ValueError(f"{param}={value!r} is out of range; accepted: {' and '.join(parts)}")


# --------------------------------------------------------------------------- GPU detection


#: the GPU libraries each algorithm's gpu backend can run on, any one of them sufficing
GPU_LIBRARIES: dict[str, tuple[str, ...]] = {
    "dbscan": ("cupy", "cuml"),  # its own grid kernel on CuPy, or cuML's DBSCAN
    "umap": ("cuml",),
}
_LIBRARY_NAMES = {"cupy": "CuPy", "cuml": "cuML"}


def importable(module: str) -> bool:
    """True when ``module`` can be imported here (checked without importing it)."""
    return importlib.util.find_spec(module) is not None


def executors_have_gpus(
    spark: SparkSession, libraries: tuple[str, ...] = ("cuml",)
) -> tuple[bool, str]:
    """Whether the executors of ``spark`` can run one of the GPU ``libraries``, with the reason.

    On a cluster this reads the GPU resource settings (``spark.executor.resource.gpu.amount``),
    which is what YARN schedules on; on a local master it looks at this host (one of the
    libraries importable and ``nvidia-smi`` listing a device), since the driver is the executor.
    """
    from .session import gpu_available

    conf = spark.sparkContext.getConf()
    master = conf.get("spark.master", "local[*]") or "local[*]"
    if master.startswith("local"):
        present = [m for m in libraries if importable(m)]
        if not present:
            names = [_LIBRARY_NAMES.get(m, m) for m in libraries]
            if len(names) == 1:
                return False, f"{names[0]} is not installed"
            return False, f"neither {' nor '.join(names)} is installed"
        if not gpu_available():
            return False, "no NVIDIA GPU visible (nvidia-smi)"
        found = ", ".join(_LIBRARY_NAMES.get(m, m) for m in present)
        return True, f"{found} and a GPU are present on this host"
    amount = conf.get("spark.executor.resource.gpu.amount", "0") or "0"
    try:
        gpus = float(amount)
    except ValueError:
        gpus = 0.0
    if gpus <= 0:
        return False, "spark.executor.resource.gpu.amount is not set"
    return True, f"executors have spark.executor.resource.gpu.amount={amount}"


def resolve_backend(algorithm: str, requested: str, spark: SparkSession) -> str:
    """Turn ``auto``/``cpu``/``gpu`` into the backend that will run, logging why.

    ``auto`` picks the GPU when the executors can run one of the algorithm's GPU libraries
    (:data:`GPU_LIBRARIES`) and otherwise the CPU; an explicit
    ``gpu`` without a usable GPU fails here, before any work starts.
    """
    check_choice("backend", requested, BACKEND_CHOICES)
    if requested == "cpu":
        return "cpu"
    has_gpu, why = executors_have_gpus(spark, GPU_LIBRARIES.get(algorithm, ("cuml",)))
    if requested == "gpu":
        if not has_gpu:
            raise ValueError(f"backend='gpu' was requested for {algorithm} but {why}")
        log.info("%s: backend gpu (requested; %s)", algorithm, why)
        return "gpu"
    chosen = "gpu" if has_gpu else "cpu"
    log.info("%s: backend auto -> %s (%s)", algorithm, chosen, why)
    return chosen


# --------------------------------------------------------------------------- tracking hooks


def _hooks() -> Any:
    """The tracking hooks module, or None while tracking is unavailable."""
    try:
        from .tracking import hooks
    except ImportError:
        return None
    return hooks


def log_fit(estimator: Any, *, component: str = "Training") -> None:
    """Log an estimator's Params to the active trial, if one is open (no-op otherwise)."""
    hooks = _hooks()
    if hooks is None:
        return
    params = {p.name: v for p, v in estimator.extractParamMap().items()}
    hooks.log_fit(type(estimator).__name__, params, component=component)


def log_metrics(metrics: dict[str, Any], *, component: str = "Evaluation") -> None:
    """Log numeric metrics to the active trial, if one is open (no-op otherwise)."""
    hooks = _hooks()
    if hooks is None:
        return
    # figures only: flags (e.g. silhouette_exact) and texts are not metrics
    numeric = {
        k: v for k, v in metrics.items() if isinstance(v, int | float) and not isinstance(v, bool)
    }
    hooks.log_metrics(numeric, component=component)
