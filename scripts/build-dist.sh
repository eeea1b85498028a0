#!/usr/bin/env bash
# Builds what EMR runs into dist/ (or the folder given as the first argument):
#   spark_clustering-<version>-py3-none-any.whl  installed on every node by emr/bootstrap.sh
#   spark_clustering-<version>.zip               passed to spark-submit as --py-files
# ZIP_ONLY=1 skips the wheel (pip wheel needs setuptools, fetched into an isolated build env).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-dist}"
ARGS=(--out "${OUT}")
if [ "${ZIP_ONLY:-0}" = "1" ]; then
  ARGS+=(--zip-only)
fi
PYTHONPATH="${PWD}/lib${PYTHONPATH:+:${PYTHONPATH}}" python3 -m spark_clustering.emr.packaging "${ARGS[@]}"
