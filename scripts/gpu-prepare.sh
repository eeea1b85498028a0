#!/usr/bin/env bash
# Prepare what scripts/gpu-check.sh brings to an offline GPU machine (Python 3.12, x86_64):
# the wheel of the `dbscan` package (a CPU reference timed beside our kernels), downloaded into
# the ignored folder .gpu-check/wheels. The whole folder must stay under 60 MiB, the most the
# device tool carries beside the source tree; cuML's wheels are far larger and are not brought.
#
# Usage: scripts/gpu-prepare.sh            (needs PyPI; run on a machine with network)
# Then:  carry ".gpu-check" with the device run of scripts/gpu-check.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
DIR=.gpu-check/wheels
LIMIT_MIB=60
PY=${PYTHON_VERSION:-3.12}
mkdir -p "$DIR"
python -m pip download --quiet --only-binary=:all: --no-deps --implementation cp \
  --python-version "$PY" --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 \
  -d "$DIR" dbscan
ls "$DIR"/dbscan-*.whl >/dev/null  # the wheel exists for this Python and platform
size_kib=$(du -sk .gpu-check | cut -f1)
if (( size_kib > LIMIT_MIB * 1024 )); then
  echo "gpu-prepare: .gpu-check is $((size_kib / 1024)) MiB, over the ${LIMIT_MIB} MiB limit" >&2
  exit 1
fi
echo "gpu-prepare: .gpu-check holds $(ls "$DIR" | wc -l) wheel(s), $((size_kib / 1024)) MiB (limit ${LIMIT_MIB} MiB):"
ls -1 "$DIR"
