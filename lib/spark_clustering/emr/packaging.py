"""Build what EMR runs: the wheel (installed on every node) and the ``--py-files`` zip.

The zip holds the ``spark_clustering`` package at its root, so ``spark-submit --py-files
spark_clustering-X.zip`` makes ``import spark_clustering`` resolve to exactly the submitted code,
ahead of whatever version the bootstrap action installed. The wheel is built by pip from a copy
of the sources in a temporary folder, so the checkout gets no ``build/`` tree and two builds
running at once cannot mix their files.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

PACKAGE = "spark_clustering"
#: Files and folders never shipped: caches and build leftovers.
_SKIP_DIRS = {"__pycache__", ".mypy_cache", ".pytest_cache", ".ruff_cache"}
_SKIP_SUFFIXES = (".pyc", ".pyo")


@dataclass(frozen=True)
class Dist:
    """Paths of one build's artifacts."""

    wheel: Path
    pyfiles_zip: Path
    version: str


def repo_root() -> Path:
    """The checkout this module lives in (``lib/spark_clustering/emr`` -> the repository)."""
    return Path(__file__).resolve().parents[3]


def package_version() -> str:
    from spark_clustering import __version__

    return __version__


def wheel_name(version: str | None = None) -> str:
    return f"{PACKAGE}-{version or package_version()}-py3-none-any.whl"


def pyfiles_zip_name(version: str | None = None) -> str:
    return f"{PACKAGE}-{version or package_version()}.zip"


def _package_files(package_dir: Path) -> list[Path]:
    files = []
    for path in sorted(package_dir.rglob("*")):
        rel = path.relative_to(package_dir)
        if any(part in _SKIP_DIRS or part.endswith(".egg-info") for part in rel.parts):
            continue
        if path.is_file() and not path.name.endswith(_SKIP_SUFFIXES):
            files.append(path)
    return files


def build_pyfiles_zip(dest_dir: Path, root: Path | None = None) -> Path:
    """Zip ``lib/spark_clustering`` (package at the zip's root) into ``dest_dir``.

    Entries get a fixed timestamp so the same sources give the same bytes.
    """
    root = root or repo_root()
    package_dir = root / "lib" / PACKAGE
    if not (package_dir / "__init__.py").is_file():
        raise ValueError(
            f"no package at {package_dir}: root={root} is not a spark-clustering checkout"
        )
    dest_dir.mkdir(parents=True, exist_ok=True)
    target = dest_dir / pyfiles_zip_name()
    tmp = target.with_suffix(".zip.tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for path in _package_files(package_dir):
            arcname = f"{PACKAGE}/{path.relative_to(package_dir).as_posix()}"
            info = zipfile.ZipInfo(arcname, date_time=(2020, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, path.read_bytes())
    os.replace(tmp, target)
    return target


def build_wheel(dest_dir: Path, root: Path | None = None) -> Path:
    """Build the wheel with ``pip wheel --no-deps`` from a temporary copy of the sources."""
    root = root or repo_root()
    dest_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="spark-clustering-build-") as tmp:
        src = Path(tmp) / "src"
        src.mkdir()
        for name in ("pyproject.toml", "README.md"):
            shutil.copy2(root / name, src / name)
        shutil.copytree(
            root / "lib",
            src / "lib",
            ignore=shutil.ignore_patterns(*_SKIP_DIRS, "*.egg-info", "*.pyc"),
        )
        out = Path(tmp) / "out"
        cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(src)]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise RuntimeError(
                f"pip wheel failed ({proc.returncode}): {' '.join(cmd)}\n"
                f"{proc.stdout}\n{proc.stderr}"
            )
        wheels = sorted(out.glob(f"{PACKAGE}-*.whl"))
        if len(wheels) != 1:
            raise RuntimeError(f"pip wheel produced {[w.name for w in wheels]} in {out}")
        target = dest_dir / wheels[0].name
        shutil.copy2(wheels[0], target)
    return target


def build_dist(dest_dir: Path, root: Path | None = None, wheel: bool = True) -> Dist:
    """Build the ``--py-files`` zip and (unless ``wheel=False``) the wheel into ``dest_dir``."""
    version = package_version()
    zip_path = build_pyfiles_zip(dest_dir, root)
    wheel_path = build_wheel(dest_dir, root) if wheel else dest_dir / wheel_name(version)
    return Dist(wheel=wheel_path, pyfiles_zip=zip_path, version=version)


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description="Build the wheel and the --py-files zip.")
    parser.add_argument("--out", default=str(repo_root() / "dist"), help="output folder")
    parser.add_argument("--zip-only", action="store_true", help="skip the wheel")
    args = parser.parse_args(argv)
    dist = build_dist(Path(args.out), wheel=not args.zip_only)
    print(dist.pyfiles_zip)
    if not args.zip_only:
        print(dist.wheel)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
