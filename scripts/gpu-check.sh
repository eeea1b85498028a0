#!/usr/bin/env bash
# The prepared GPU check (bench/gpu_check.py): on a machine with an NVIDIA GPU, CUDA, Python with
# numpy, numba, CuPy, scikit-learn, pandas and pyarrow, offline and without Spark or cuML, it
# checks the grid DBSCAN kernel on the device against the CPU kernel and scikit-learn (exact),
# times it at 1M and 10M 3-D points beside the CPU kernel and the `dbscan` package, and times
# UMAP's transform k-NN on the device, all in under 8 minutes.
#
# Brings: this source tree and .gpu-check/ (made by scripts/gpu-prepare.sh; carry ".gpu-check"
# with the device tool, which sets $OUT). Writes $OUT/gpu-check.md (results) and
# $OUT/gpu-check.log (every step's output).
#
# Usage: scripts/gpu-check.sh [--dry-run] [--out DIR]
#   --dry-run  print the plan and run what needs no GPU (imports, parity with numpy, a small
#              timing); a test runs it.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT_DIR=${OUT:-gpu-check-out}
ARGS=()
while (($#)); do
  case "$1" in
    --dry-run) ARGS+=(--dry-run) ;;
    --out) OUT_DIR=$2; shift ;;
    *) echo "usage: $0 [--dry-run] [--out DIR]" >&2; exit 2 ;;
  esac
  shift
done
mkdir -p "$OUT_DIR"
SITE=.gpu-check/site
shopt -s nullglob
wheels=(.gpu-check/wheels/*.whl)
if ((${#wheels[@]})); then
  # wheels are zip files: unpacking needs neither pip nor network
  mkdir -p "$SITE"
  for w in "${wheels[@]}"; do python -m zipfile -e "$w" "$SITE"; done
  echo "gpu-check: unpacked ${#wheels[@]} prepared wheel(s) into $SITE"
else
  echo "gpu-check: no prepared wheels (.gpu-check/wheels); the dbscan package is not timed"
fi
export PYTHONPATH="$PWD/lib:$PWD/tests:$PWD/$SITE${PYTHONPATH:+:$PYTHONPATH}"
python -c 'import numpy, numba, sklearn' || { echo "gpu-check: numpy, numba, sklearn needed" >&2; exit 1; }
# the check's own budget is 450 s; this outer limit only catches a hang of the orchestrator
exec timeout --kill-after=10 465 python bench/gpu_check.py --out "$OUT_DIR" "${ARGS[@]}"
