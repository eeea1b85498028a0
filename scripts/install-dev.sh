#!/usr/bin/env bash
# Installs the package with its test dependencies. sagemaker-pyspark 1.4.5 pins pyspark 3.3.0,
# so it goes in with --no-deps: otherwise pip falls back to a broken 2017 build.
# The [sagemaker] extra (the sagemaker SDK v3 and sagemaker-mlflow) lets tests/aws/
# test_sagemaker_train.py and the managed-MLflow tests run instead of skipping.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install -q -e ".[test,sagemaker]"
python3 -m pip install -q --no-deps "sagemaker_pyspark==1.4.5"
# lifetimes ships the CDNOW transactions (a real public data set, examples/cdnow); only its data
# file is read, the package is never imported, so its own dependencies are not needed.
python3 -m pip install -q --no-deps "lifetimes==0.11.3"
