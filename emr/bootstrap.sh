#!/usr/bin/env bash
# EMR bootstrap action for spark-clustering: runs on every node before YARN and Spark start.
#
#   bootstrap.sh --wheel s3://BUCKET/PREFIX/dist/spark_clustering-X-py3-none-any.whl \
#                [--jars s3://BUCKET/PREFIX/jars/] [--python 3.11] [--gpu off|auto|workers] \
#                [--cuml-version 25.10] [--cuda 12] [--rapids-jar s3://BUCKET/PREFIX/jars/rapids-4-spark.jar]
#
# What it does, on every node:
#   1. installs Python ${PYTHON_VERSION} from the distribution (EMR 7 runs Amazon Linux 2023,
#      whose system python3 is 3.9) and makes a virtualenv at ${PREFIX}/venv;
#   2. installs the spark-clustering wheel from S3 with its dependencies, except pyspark
#      (EMR's own Spark Python libraries are on PYTHONPATH for every Spark process);
#   3. installs sagemaker_pyspark==1.4.5 with --no-deps (it pins pyspark 3.3.0);
#   4. copies the jars under --jars (protobuf-java, which sagemaker-pyspark needs on Spark 3.5)
#      to ${PREFIX}/jars, where the cluster configuration's spark.jars points with local://;
# and on GPU nodes:
#   5. mounts the cgroup v1 devices hierarchy YARN's GPU isolation needs on EMR 7;
#   6. installs CuPy for the instance's CUDA major version (--cuda, from the launcher's table of
#      GPU instance types; the grid DBSCAN kernel runs on it) and cuML into the same virtualenv;
#   7. with --rapids-jar, installs that RAPIDS Accelerator jar (otherwise EMR installs its own
#      build because the cluster configuration sets enableSparkRapids).
#
# Idempotent: each step checks what is already there, so a rerun on the same node changes
# nothing. Fails loudly: any failing command stops the script with the line and the command,
# which EMR shows as the bootstrap failure. DRY_RUN=1 prints every command instead of running it.
set -Eeuo pipefail

PREFIX="${SPARK_CLUSTERING_PREFIX:-/opt/spark-clustering}"
PYTHON_VERSION="3.11"
WHEEL=""
JARS_URI=""
GPU_MODE="auto"
CUML_VERSION="25.10"
CUDA_MAJOR="12"
RAPIDS_JAR=""
DRY_RUN="${DRY_RUN:-0}"
# EMR writes the node's role here; tests point it elsewhere.
INSTANCE_INFO="${EMR_INSTANCE_INFO:-/mnt/var/lib/info/instance.json}"
CGROUP_ROOT="/spark-rapids-cgroup"

trap 'echo "spark-clustering bootstrap FAILED at line ${LINENO}: ${BASH_COMMAND}" >&2' ERR

die() {
  echo "spark-clustering bootstrap: $*" >&2
  exit 2
}

log() {
  echo "[spark-clustering bootstrap] $*"
}

# Runs a command, or prints it (shell-quoted) when DRY_RUN=1.
run() {
  if [ "${DRY_RUN}" = "1" ]; then
    printf '+'
    printf ' %q' "$@"
    printf '\n'
  else
    local rc=0
    "$@" || rc=$?
    if [ "${rc}" -ne 0 ]; then
      echo "spark-clustering bootstrap: command failed (exit ${rc}): $*" >&2
      return "${rc}"
    fi
  fi
}

usage() {
  sed -n '2,6p' "$0" | sed 's/^# \{0,1\}//'
}

while [ "$#" -gt 0 ]; do
  case "$1" in
    --wheel) WHEEL="${2:-}"; shift 2 ;;
    --jars) JARS_URI="${2:-}"; shift 2 ;;
    --python) PYTHON_VERSION="${2:-}"; shift 2 ;;
    --gpu) GPU_MODE="${2:-}"; shift 2 ;;
    --cuml-version) CUML_VERSION="${2:-}"; shift 2 ;;
    --cuda) CUDA_MAJOR="${2:-}"; shift 2 ;;
    --rapids-jar) RAPIDS_JAR="${2:-}"; shift 2 ;;
    -h | --help) usage; exit 0 ;;
    *) die "unknown argument '$1' (accepted: --wheel --jars --python --gpu --cuml-version --cuda --rapids-jar)" ;;
  esac
done

[ -n "${WHEEL}" ] || die "--wheel is required (s3:// URI or local path of the spark-clustering wheel)"
case "${WHEEL}" in
  *.whl) ;;
  *) die "--wheel '${WHEEL}' is not a .whl file" ;;
esac
case "${PYTHON_VERSION}" in
  3.1[0-9]) ;;
  *) die "--python '${PYTHON_VERSION}' is not supported (accepted: 3.10 or newer, e.g. 3.11)" ;;
esac
case "${CUDA_MAJOR}" in
  12) ;;  # cuml-cu12, cudf-cu12 and cupy-cuda12x; the EMR 7 GPU AMIs' drivers run CUDA 12
  *) die "--cuda '${CUDA_MAJOR}' is not supported (accepted: 12)" ;;
esac
case "${GPU_MODE}" in
  off | auto | workers) ;;
  *) die "--gpu '${GPU_MODE}' is not valid (accepted: off, auto, workers)" ;;
esac
if [ -n "${JARS_URI}" ]; then
  case "${JARS_URI}" in
    */) ;;
    *) die "--jars '${JARS_URI}' must end with '/' (a prefix holding the jars)" ;;
  esac
fi

is_master() {
  [ -r "${INSTANCE_INFO}" ] && grep -Eq '"isMaster"[[:space:]]*:[[:space:]]*true' "${INSTANCE_INFO}"
}

has_gpu() {
  command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L 2>/dev/null | grep -q '^GPU'
}

# Copies from S3 (aws cli) or a local path; a local path keeps DRY_RUN tests and reruns simple.
fetch() {
  local src="$1" dest="$2"
  case "${src}" in
    s3://*) run aws s3 cp --only-show-errors "${src}" "${dest}" ;;
    *) run cp "${src}" "${dest}" ;;
  esac
}

fetch_dir() {
  local src="$1" dest="$2"
  case "${src}" in
    s3://*) run aws s3 cp --only-show-errors --recursive --exclude '*' --include '*.jar' "${src}" "${dest}" ;;
    *) run find "${src}" -maxdepth 1 -name '*.jar' -exec cp {} "${dest}/" ';' ;;
  esac
}

PY="python${PYTHON_VERSION}"
VENV="${PREFIX}/venv"
VPY="${VENV}/bin/python"

# Decide once whether this node gets the GPU stack.
GPU_NODE=0
case "${GPU_MODE}" in
  off) GPU_NODE=0 ;;
  auto) if has_gpu; then GPU_NODE=1; fi ;;
  workers)
    if is_master; then
      if has_gpu; then GPU_NODE=1; fi
    elif has_gpu; then
      GPU_NODE=1
    else
      echo "spark-clustering bootstrap: --gpu workers but this core/task node has no NVIDIA GPU" \
        "(nvidia-smi -L lists none); use g4dn, g5 or p3 instance types" >&2
      exit 1
    fi
    ;;
esac
log "prefix=${PREFIX} python=${PYTHON_VERSION} gpu_mode=${GPU_MODE} gpu_node=${GPU_NODE} dry_run=${DRY_RUN}"

# 1. Python and the virtualenv.
if command -v "${PY}" >/dev/null 2>&1; then
  log "${PY} already installed: $(command -v "${PY}")"
else
  run sudo dnf install -y -q "python${PYTHON_VERSION}" "python${PYTHON_VERSION}-pip" \
    "python${PYTHON_VERSION}-devel"
fi
run sudo mkdir -p "${PREFIX}/jars" "${PREFIX}/cache"
run sudo chown -R "$(id -un):$(id -gn)" "${PREFIX}"
if [ -x "${VPY}" ]; then
  log "virtualenv ${VENV} already exists"
else
  run "${PY}" -m venv "${VENV}"
  run "${VPY}" -m pip install -q --upgrade pip
fi

# 2. The wheel, its dependencies without pyspark, then the wheel itself.
WHEEL_LOCAL="${PREFIX}/cache/$(basename "${WHEEL}")"
fetch "${WHEEL}" "${WHEEL_LOCAL}"
run "${VPY}" -m pip install -q --no-deps --force-reinstall "${WHEEL_LOCAL}"
REQS="${PREFIX}/cache/requirements.txt"
if [ "${DRY_RUN}" = "1" ]; then
  printf '+ %s\n' "write ${REQS}: the wheel's Requires-Dist without pyspark and extras"
else
  "${VPY}" - "${REQS}" <<'PYEOF'
import re
import sys
from importlib.metadata import requires

wanted = []
for req in requires("spark-clustering") or []:
    if "extra ==" in req:
        continue
    name = re.split(r"[\s<>=!~;\[(]", req, maxsplit=1)[0].lower()
    if name == "pyspark":
        continue
    wanted.append(req)
with open(sys.argv[1], "w") as handle:
    handle.write("\n".join(wanted) + "\n")
PYEOF
fi
run "${VPY}" -m pip install -q -r "${REQS}" "boto3>=1.28"

# 3. sagemaker-pyspark without its pyspark 3.3.0 pin.
run "${VPY}" -m pip install -q --no-deps "sagemaker_pyspark==1.4.5"

# 4. Extra jars (protobuf-java).
if [ -n "${JARS_URI}" ]; then
  fetch_dir "${JARS_URI}" "${PREFIX}/jars"
fi

# 5-7. GPU nodes.
if [ "${GPU_NODE}" = "1" ]; then
  if mountpoint -q "${CGROUP_ROOT}/devices" 2>/dev/null; then
    log "cgroup v1 devices already mounted at ${CGROUP_ROOT}/devices"
  else
    run sudo mkdir -p "${CGROUP_ROOT}/devices"
    run sudo mount -t cgroup -o devices cgroupv1-devices "${CGROUP_ROOT}/devices"
  fi
  run sudo chmod a+rwx -R "${CGROUP_ROOT}"
  # one resolve, so CuPy is the version cuML accepts
  run "${VPY}" -m pip install -q --extra-index-url=https://pypi.nvidia.com \
    "cupy-cuda${CUDA_MAJOR}x>=13.6" \
    "cuml-cu${CUDA_MAJOR}~=${CUML_VERSION}.0" "cudf-cu${CUDA_MAJOR}~=${CUML_VERSION}.0"
  if [ -n "${RAPIDS_JAR}" ]; then
    fetch "${RAPIDS_JAR}" "${PREFIX}/jars/rapids-4-spark.jar"
  fi
fi

# Tell the operator what is there; a broken import fails here, at bootstrap, not in a job.
# (pyspark itself comes with EMR's Spark, installed after bootstrap actions, so it is not imported.)
CHECK="import importlib.util as u, spark_clustering as s; print('spark_clustering', s.__version__)"
CHECK="${CHECK}; assert u.find_spec('sagemaker_pyspark'), 'sagemaker_pyspark missing'"
if [ "${GPU_NODE}" = "1" ]; then
  CHECK="${CHECK}; assert u.find_spec('cuml'), 'cuml missing'"
  CHECK="${CHECK}; assert u.find_spec('cupy'), 'cupy missing'"
fi
run "${VPY}" -c "${CHECK}"
log "done"
