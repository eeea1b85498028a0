"""examples/notebooks/customer_segmentation.ipynb, executed on local Spark so it cannot rot.

SparkMagic cells are translated to what they mean on a local session:

- ``%%configure -f`` + JSON: checked (Livy session keys, string Spark settings, the zip
  ``build-dist.sh`` makes, the venv Python of ``emr/cpu.json``), its runtime ``spark.sql.*``
  settings applied to the local session (except cluster sizing such as shuffle partitions) and
  restored afterwards, since the session is shared with the rest of the suite;
- ``%%info``, ``%%cleanup``, ``%%help``: session management, nothing to run locally;
- ``%matplot plt``: saves the current figure to a PNG (the test checks the charts exist).

Every other cell runs in order in one namespace holding ``spark`` and ``sc``, as the PySpark
kernel provides them, with the parameters cell's values replaced by local ones. Nothing is
skipped: an API a cell names in ``metadata.spark_clustering.requires`` that does not exist fails
``test_notebook_apis_exist`` (and the run, before the cell), and a cell that raises fails the
run, naming the cell and the error.
"""

from __future__ import annotations

import ast
import importlib
import json
import logging
import re
import time
from pathlib import Path
from typing import Any

import nbformat
import pytest

from spark_clustering.emr import packaging

pytestmark = [pytest.mark.spark, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK = ROOT / "examples" / "notebooks" / "customer_segmentation.ipynb"
#: Livy's session-creation fields that %%configure may set.
LIVY_KEYS = {
    "kind", "proxyUser", "jars", "pyFiles", "files", "driverMemory", "driverCores",
    "executorMemory", "executorCores", "numExecutors", "archives", "queue", "name", "conf",
    "heartbeatTimeoutInSecond",
}  # fmt: skip
log = logging.getLogger(__name__)
#: %%configure settings that size the cluster's session; a local session keeps its own.
CLUSTER_SIZING = {"spark.sql.shuffle.partitions"}
SESSION_MAGICS = ("%%info", "%%cleanup", "%%help", "%%delete", "%%logs")


def load_notebook() -> nbformat.NotebookNode:
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    return nb


def code_cells(nb: nbformat.NotebookNode) -> list[tuple[int, Any]]:
    return [(i, c) for i, c in enumerate(nb.cells) if c.cell_type == "code"]


def api_problem(name: str) -> str | None:
    """Why ``name`` (``pkg.module.attr`` or ``pkg.attr``) cannot be used, or None if it can."""
    parts = name.split(".")
    for cut in range(len(parts), 0, -1):
        module = ".".join(parts[:cut])
        try:
            obj: Any = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name and module.startswith(exc.name):
                continue  # this prefix is not a module: try a shorter one
            return f"{name} (importing {module} fails: {exc})"
        except Exception as exc:  # a module that exists but is broken is reported as such
            return f"{name} (importing {module} fails: {type(exc).__name__}: {exc})"
        try:
            for attr in parts[cut:]:
                obj = getattr(obj, attr)
        except Exception as exc:
            return f"{name} (does not exist: {type(exc).__name__}: {exc})"
        return None
    return f"{name} (no such module)"


def missing_apis(cell: Any) -> list[str]:
    required = cell.metadata.get("spark_clustering", {}).get("requires", [])
    return [p for p in (api_problem(name) for name in required) if p]


def configure_body(cell: Any) -> dict[str, Any]:
    head, _, body = cell.source.partition("\n")
    assert head.split() == ["%%configure", "-f"], head
    return json.loads(body)


def translate(source: str, figures: Path, index: int) -> str:
    """Turn a PySpark-kernel cell into plain Python for a local session."""
    lines = []
    for n, line in enumerate(source.splitlines()):
        if line.strip() == "%matplot plt":
            target = figures / f"cell{index:02d}_{n}.png"
            lines.append(f"plt.savefig({str(target)!r}); plt.close('all')")
        elif line.lstrip().startswith("%"):
            raise AssertionError(f"cell {index}: no local translation for magic {line!r}")
        else:
            lines.append(line)
    return "\n".join(lines)


def assigned_names(source: str) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)
    return names


def loaded_names(source: str) -> set[str]:
    return {
        node.id
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load)
    }


def test_notebook_is_a_sparkmagic_pyspark_notebook() -> None:
    nb = load_notebook()
    assert nb.metadata.kernelspec.name == "pysparkkernel"
    cells = code_cells(nb)
    body = configure_body(cells[0][1])
    assert set(body) <= LIVY_KEYS, set(body) - LIVY_KEYS
    assert all(isinstance(v, str) for v in body["conf"].values()), "Livy conf values are strings"
    assert body["pyFiles"][0].endswith("/dist/" + packaging.pyfiles_zip_name())
    cpu = json.loads((ROOT / "emr" / "cpu.json").read_text())
    defaults = next(c for c in cpu if c["Classification"] == "spark-defaults")["Properties"]
    for key in ("spark.pyspark.python", "spark.pyspark.driver.python"):
        assert body["conf"][key] == defaults[key], key
    # Livy's conf replaces the cluster's value of a key: spark.jars there would drop the GPU
    # cluster's RAPIDS jar
    assert "spark.jars" not in body["conf"] and "jars" not in body
    assert any(c.metadata.get("tags") == ["parameters"] for _, c in cells)
    assert sum(c.source.count("%matplot plt") for _, c in cells) >= 2


class CellFailed(AssertionError):
    """A notebook cell raised, or needs an API that does not exist."""


def run_notebook(
    spark: Any, tmp_path: Path, restore: dict[str, str | None]
) -> tuple[list[int], dict[str, Any]]:
    """Run every runnable cell in order; returns (cells run, namespace). ``restore`` receives
    the session settings %%configure changed, with their previous values.

    Raises :class:`CellFailed` at the first cell that needs a missing API or raises.
    """
    nb = load_notebook()
    figures = tmp_path / "figures"
    figures.mkdir()
    namespace: dict[str, Any] = {"spark": spark, "sc": spark.sparkContext}
    overrides = {
        "OUTPUT": str(tmp_path / "out") + "/",
        "EXPERIMENT": "notebook-test",
        "TRACKING": {"backend": "mlflow", "tracking_uri": f"sqlite:///{tmp_path}/mlflow.db"},
        "GENERATE_DEMO_DATA": 600,
        "SAMPLE_SIZE": 600,
        "MIN_POINTS": 10,
        "UMAP_COMPONENTS": 2,
    }
    ran: list[int] = []
    for index, cell in code_cells(nb):
        source = cell.source
        first = source.lstrip().split("\n", 1)[0]
        if first.startswith("%%configure"):
            for key, value in configure_body(cell).get("conf", {}).items():
                if key.startswith("spark.sql.") and key not in CLUSTER_SIZING:
                    restore.setdefault(key, spark.conf.get(key, None))
                    spark.conf.set(key, value)
            continue
        if first.strip() in SESSION_MAGICS:
            continue
        code = translate(source, figures, index)
        missing = missing_apis(cell)
        if missing:
            raise CellFailed(f"cell {index} needs {', '.join(missing)}")
        started = time.monotonic()
        try:
            exec(compile(code, f"{NOTEBOOK.name}[cell {index}]", "exec"), namespace)
        except Exception as exc:
            raise CellFailed(f"cell {index} failed: {type(exc).__name__}: {exc}") from exc
        log.info("notebook cell %d ran in %.1fs", index, time.monotonic() - started)
        if "parameters" in cell.metadata.get("tags", []):
            namespace.update(overrides)
        ran.append(index)
    namespace["__figures__"] = sorted(figures.glob("*.png"))
    return ran, namespace


def runnable_cells(nb: nbformat.NotebookNode) -> list[int]:
    """The code cells that run locally (all but %%configure and session magics)."""
    out = []
    for index, cell in code_cells(nb):
        first = cell.source.lstrip().split("\n", 1)[0]
        if not first.startswith("%%configure") and first.strip() not in SESSION_MAGICS:
            out.append(index)
    return out


@pytest.fixture(scope="module")
def executed(spark: Any, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest):
    tmp = tmp_path_factory.mktemp("notebook")
    monkey = pytest.MonkeyPatch()
    monkey.chdir(tmp)  # MLflow and matplotlib write nothing into the checkout
    request.addfinalizer(monkey.undo)
    restore: dict[str, str | None] = {}

    def restore_conf() -> None:
        # The session is shared with the rest of the suite: give back what %%configure changed.
        for key, value in restore.items():
            if value is None:
                spark.conf.unset(key)
            else:
                spark.conf.set(key, value)

    request.addfinalizer(restore_conf)
    try:
        return run_notebook(spark, tmp, restore)
    except CellFailed as exc:
        # a failure of the notebook is a failure of the tests that use it, never a skip
        return exc


def _ran(executed: Any) -> tuple[list[int], dict[str, Any]]:
    if isinstance(executed, CellFailed):
        pytest.fail(str(executed), pytrace=False)
    return executed


def test_notebook_cells_run_on_local_spark(executed) -> None:
    ran, ns = _ran(executed)
    nb = load_notebook()
    assert ran == runnable_cells(nb), "every runnable cell runs"
    # What the cells promise, each checked unconditionally.
    assert ns["features"].columns[-1] == "features" and ns["features"].count() > 100
    assert "cluster" in ns["segmented"].columns
    assert (Path(ns["OUTPUT"]) / "segments").exists()
    assert ns["metrics"]["n_clusters"] >= 1
    assert len(ns["board"]) >= 1
    charts = sum(1 for i in ran for _ in re.finditer("%matplot plt", nb.cells[i].source))
    assert charts >= 2
    assert len(ns["__figures__"]) == charts


def test_notebook_apis_exist() -> None:
    """Every API a cell declares it needs exists (checked without running the notebook)."""
    problems = [
        f"cell {i}: {p}" for i, cell in code_cells(load_notebook()) for p in missing_apis(cell)
    ]
    assert not problems, "notebook cells need missing APIs: " + "; ".join(problems)
