#!/usr/bin/env bash
# A real Spark standalone cluster on this machine: one master and two workers on 127.0.0.1,
# started from the installed pyspark (its pip package has spark-daemon.sh but no start-master.sh).
#
#   scripts/local-cluster.sh start    # prints the master URL (spark://127.0.0.1:PORT)
#   scripts/local-cluster.sh status   # master URL, workers alive, applications
#   scripts/local-cluster.sh stop     # stops the daemons by their pid files
#
# Settings (environment):
#   CLUSTER_DIR      state folder: pids, logs, work dirs, master.url   (default: ./local-cluster)
#   WORKERS          number of workers                                 (default: 2)
#   WORKER_CORES     cores per worker                                  (default: 1)
#   WORKER_MEMORY    memory per worker                                 (default: 2g)
#   PYTHON           the Python whose pyspark is used                  (default: python3)
#
# Ports are free ones chosen at start and written to CLUSTER_DIR/cluster.env. Submit with
#   spark-submit --master "$(cat local-cluster/master.url)" --py-files dist/spark_clustering-*.zip ...
set -euo pipefail

CMD="${1:-}"
CLUSTER_DIR="${CLUSTER_DIR:-${PWD}/local-cluster}"
WORKERS="${WORKERS:-2}"
WORKER_CORES="${WORKER_CORES:-1}"
WORKER_MEMORY="${WORKER_MEMORY:-2g}"
PYTHON="${PYTHON:-python3}"

die() {
  echo "local-cluster: $*" >&2
  exit 1
}

spark_home() {
  "${PYTHON}" -c 'import os, pyspark; print(os.path.dirname(pyspark.__file__))' 2>/dev/null \
    || die "${PYTHON} has no pyspark: install the package first (pip install -e .)"
}

free_port() {
  "${PYTHON}" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

daemon() {
  # SPARK_LOCAL_IP keeps every daemon port, web UIs included, on the loopback address.
  env -u SPARK_NO_DAEMONIZE SPARK_HOME="${SPARK_HOME_DIR}" SPARK_PID_DIR="${CLUSTER_DIR}/pids" \
    SPARK_LOG_DIR="${CLUSTER_DIR}/logs" SPARK_IDENT_STRING=spark-clustering \
    SPARK_CONF_DIR="${CLUSTER_DIR}/conf" SPARK_LOCAL_IP=127.0.0.1 \
    bash "${SPARK_HOME_DIR}/sbin/spark-daemon.sh" "$@"
}

master_json() {
  "${PYTHON}" - "$1" <<'PYEOF'
import json, sys, urllib.request
try:
    with urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/json/", timeout=5) as r:
        print(json.dumps(json.load(r)))
except Exception:
    print("{}")
PYEOF
}

alive_workers() {
  master_json "$1" | "${PYTHON}" -c 'import json, sys; print(json.load(sys.stdin).get("aliveworkers", 0))'
}

start() {
  SPARK_HOME_DIR="$(spark_home)"
  if [ -f "${CLUSTER_DIR}/cluster.env" ]; then
    # shellcheck disable=SC1091
    . "${CLUSTER_DIR}/cluster.env"
    if [ "$(alive_workers "${MASTER_WEBUI_PORT}")" != "0" ]; then
      echo "${MASTER_URL}"
      return 0
    fi
    stop >/dev/null 2>&1 || true
  fi
  mkdir -p "${CLUSTER_DIR}/pids" "${CLUSTER_DIR}/logs" "${CLUSTER_DIR}/conf"
  # An empty conf dir: a spark-defaults.conf elsewhere must not change the daemons.
  local master_port webui_port
  master_port="$(free_port)"
  webui_port="$(free_port)"
  MASTER_URL="spark://127.0.0.1:${master_port}"
  cat >"${CLUSTER_DIR}/cluster.env" <<EOF
MASTER_URL=${MASTER_URL}
MASTER_PORT=${master_port}
MASTER_WEBUI_PORT=${webui_port}
SPARK_HOME_DIR=${SPARK_HOME_DIR}
WORKERS=${WORKERS}
EOF
  echo "${MASTER_URL}" >"${CLUSTER_DIR}/master.url"
  daemon start org.apache.spark.deploy.master.Master 1 \
    --host 127.0.0.1 --port "${master_port}" --webui-port "${webui_port}" >/dev/null
  local i
  for i in $(seq 1 "${WORKERS}"); do
    mkdir -p "${CLUSTER_DIR}/work-${i}"
    daemon start org.apache.spark.deploy.worker.Worker "${i}" \
      --host 127.0.0.1 --cores "${WORKER_CORES}" --memory "${WORKER_MEMORY}" \
      --work-dir "${CLUSTER_DIR}/work-${i}" --webui-port "$(free_port)" \
      --port "$(free_port)" "${MASTER_URL}" >/dev/null
  done
  # Wait (up to 90 s) until every worker has registered with the master.
  local tries=0
  while [ "$(alive_workers "${webui_port}")" != "${WORKERS}" ]; do
    tries=$((tries + 1))
    if [ "${tries}" -gt 180 ]; then
      tail -n 20 "${CLUSTER_DIR}"/logs/*.out >&2 || true
      stop >/dev/null 2>&1 || true
      die "the workers did not register with ${MASTER_URL} within 90 s (logs above)"
    fi
    sleep 0.5
  done
  echo "${MASTER_URL}"
}

stop() {
  [ -f "${CLUSTER_DIR}/cluster.env" ] || {
    echo "local-cluster: nothing started in ${CLUSTER_DIR}"
    return 0
  }
  # shellcheck disable=SC1091
  . "${CLUSTER_DIR}/cluster.env"
  local i
  for i in $(seq 1 "${WORKERS}"); do
    daemon stop org.apache.spark.deploy.worker.Worker "${i}" || true
  done
  daemon stop org.apache.spark.deploy.master.Master 1 || true
  rm -f "${CLUSTER_DIR}/cluster.env" "${CLUSTER_DIR}/master.url"
}

status() {
  [ -f "${CLUSTER_DIR}/cluster.env" ] || die "not started (no ${CLUSTER_DIR}/cluster.env)"
  # shellcheck disable=SC1091
  . "${CLUSTER_DIR}/cluster.env"
  master_json "${MASTER_WEBUI_PORT}" | "${PYTHON}" -c '
import json, sys
state = json.load(sys.stdin)
if not state:
    sys.exit("local-cluster: the master does not answer")
print("master:", state["url"], state["status"])
print("workers alive:", state["aliveworkers"], "cores:", state["cores"])
for app in state.get("activeapps", []) + state.get("completedapps", []):
    print("app:", app["id"], app["name"], app["state"])
'
}

case "${CMD}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) die "usage: $0 start|stop|status" ;;
esac
