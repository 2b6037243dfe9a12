#!/usr/bin/env bash
# make cluster-test: modelserve on a real two-node Docker Swarm on this one machine, behind HAProxy, with
# SeaweedFS as the model store and Prometheus, under load (tests/cluster/scenario.py has the checks).
#   1. Debian's docker.io, mmdebstrap and iproute2 (installed when missing; root).
#   2. tests/cluster/nodes.sh up: node 1 on the host, node 2 in a network namespace.
#   3. tests/cluster/images.sh: the images, from a local Debian base, loaded on both nodes.
#   4. deploy/swarm/stack.yml deployed; the store seeded with the digits model (when the service reads
#      S3); 3 replicas.
#   5. the scenario; then the stack, the daemons, the namespace and the veth pair are removed (trap).
# Skips (exit 0 with the reason) only where this machine cannot run two Docker nodes at all: not root, no
# apt-get for the packages, no network namespaces, or a dockerd that does not start. Everything after the
# swarm is up is a real check. PYTHON: the interpreter with the service's dependencies (make: .venv).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
PYTHON=${PYTHON:-$ROOT/.venv/bin/python}
export CLUSTER_LOGS=${CLUSTER_LOGS:-/tmp/modelserve-cluster}
export DOCKER_CLI=/usr/bin/docker  # Debian's client (20.10), whatever else is first on PATH
export STACK=mscl HTTP_PORT=18080 GRPC_PORT=18081 STATS_PORT=18404 PROMETHEUS_PORT=19090 S3_PORT=18333 POLL_S=5
mkdir -p "$CLUSTER_LOGS"
t0=$(date +%s)
say() { printf '[cluster %3ds] %s\n' "$(( $(date +%s) - t0 ))" "$*"; }
skip() { echo "SKIP cluster test: $*"; exit 0; }

[ "$(id -u)" = 0 ] || skip "it needs root (network namespaces, dockerd)"
need=()
command -v dockerd >/dev/null && [ -x /usr/bin/docker ] || need+=(docker.io)
command -v mmdebstrap >/dev/null || need+=(mmdebstrap)
command -v ip >/dev/null || need+=(iproute2)
command -v curl >/dev/null || need+=(curl)
if [ ${#need[@]} -gt 0 ]; then
  command -v apt-get >/dev/null || skip "it needs ${need[*]} and there is no apt-get to install them"
  say "installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # The package must not start a system dockerd of its own (the test starts its two): a policy-rc.d that
  # refuses service starts, for the install only, where the machine has none.
  policy_made=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; policy_made=1; fi
  installed=1
  { apt-get -o DPkg::Lock::Timeout=300 update -q >/dev/null \
    && apt-get -o DPkg::Lock::Timeout=300 install -y -q --no-install-recommends "${need[@]}" >"$CLUSTER_LOGS/apt.log" 2>&1; } \
    || installed=0
  [ "$policy_made" = 0 ] || rm -f /usr/sbin/policy-rc.d
  [ "$installed" = 1 ] || skip "apt-get could not install ${need[*]} (see $CLUSTER_LOGS/apt.log)"
fi
ip netns add mscl-probe 2>/dev/null && ip netns del mscl-probe || skip "this machine cannot make network namespaces (ip netns add failed)"
"$PYTHON" -c "import grpc, service" 2>/dev/null || { echo "FAIL: $PYTHON cannot import the service (make cluster-test makes .venv)"; exit 1; }

eval "$(bash tests/cluster/nodes.sh env)"
export DOCKER1 DOCKER2 NODE2_NAME
cleanup() {
  local rc=$?
  say "removing the stack, the daemons, the namespace and the veth pair"
  timeout 60 "$DOCKER_CLI" -H "$DOCKER1" stack rm "$STACK" >/dev/null 2>&1 || true
  bash tests/cluster/nodes.sh down || true
  say "done (exit $rc)"
  exit $rc
}
trap cleanup EXIT
# A run that was cut short may have left its nodes: take them down first.
[ ! -d /run/mscl ] || bash tests/cluster/nodes.sh down
say "starting two Docker nodes"
if ! bash tests/cluster/nodes.sh up 2>"$CLUSTER_LOGS/nodes.log"; then
  cat "$CLUSTER_LOGS/nodes.log"
  for n in 1 2; do [ -f "/run/mscl/$n/dockerd.log" ] && tail -15 "/run/mscl/$n/dockerd.log"; done
  if ! "$DOCKER_CLI" -H "$DOCKER1" info >/dev/null 2>&1 || ! "$DOCKER_CLI" -H "$DOCKER2" info >/dev/null 2>&1; then
    trap - EXIT; bash tests/cluster/nodes.sh down || true
    skip "dockerd does not start on this machine (its log is above)"
  fi
  echo "FAIL: the two daemons started but the swarm did not form (above)"; exit 1
fi
cat "$CLUSTER_LOGS/nodes.log"
say "building the images"
bash tests/cluster/images.sh

# The model repository: the store when this checkout's service reads s3:// (issue 21), else the image's.
if grep -rqs 's3://' service/ && "$PYTHON" -c "import boto3" 2>/dev/null; then
  export S3_MODELS=1 MODELS_DIR=s3://models/
else
  export S3_MODELS=0 MODELS_DIR=/models
  export S3_SKIP_REASON="this checkout's service reads models only from a local folder (no s3:// support yet, or no boto3), so the replicas serve the models baked into the image"
fi
say "deploying deploy/swarm/stack.yml (models from $MODELS_DIR)"
# A store that starts empty: the volume a previous run left in node 1's data root goes.
"$DOCKER_CLI" -H "$DOCKER1" volume rm -f "${STACK}_seaweedfs-data" >/dev/null 2>&1 || true
IMAGE_PREFIX=mscl/ MODELSERVE_TAG=1 INFRA_TAG=1 REPLICAS=0 \
  "$DOCKER_CLI" -H "$DOCKER1" stack deploy --prune --resolve-image never -c deploy/swarm/stack.yml "$STACK" >/dev/null
wait_http() {  # wait_http SECONDS URL
  local i
  for ((i = 0; i < $1; i++)); do curl -sf -o /dev/null "$2" && return 0; sleep 1; done
  echo "FAIL: nothing answered $2 within $1 s"; return 1
}
if [ "$S3_MODELS" = 1 ]; then
  wait_http 180 "http://127.0.0.1:$S3_PORT/status" || wait_http 60 "http://127.0.0.1:$S3_PORT/"
  say "seeding s3://models/ with the digits model"
  "$PYTHON" - <<PY
import boto3, pathlib
s3 = boto3.client("s3", endpoint_url="http://127.0.0.1:$S3_PORT", aws_access_key_id="modelserve",
                  aws_secret_access_key="modelserve-secret", region_name="us-east-1")
s3.create_bucket(Bucket="models")
root = pathlib.Path("models/digits")
for path in sorted(root.rglob("*")):
    if path.is_file():
        s3.put_object(Bucket="models", Key=f"digits/{path.relative_to(root)}", Body=path.read_bytes())
for version in (p for p in root.iterdir() if p.is_dir()):  # each version complete: its marker, last
    s3.put_object(Bucket="models", Key=f"digits/{version.name}/_COMPLETE", Body=b"")
PY
fi
"$DOCKER_CLI" -H "$DOCKER1" service scale --detach "${STACK}_modelserve=3" >/dev/null
say "stack deployed; 3 replicas starting"
if [ "${CLUSTER_SETUP_ONLY:-}" = 1 ]; then  # for debugging: leave it all up
  trap - EXIT
  say "left running (CLUSTER_SETUP_ONLY=1): docker -H $DOCKER1 ...; bash tests/cluster/nodes.sh down removes it"
  exit 0
fi
status=0
PYTHONPATH=$ROOT "$PYTHON" -m tests.cluster.scenario || status=$?
if [ "$status" != 0 ]; then
  for svc in modelserve haproxy; do
    echo "--- docker service logs ${STACK}_$svc (last 30 lines)"
    timeout 30 "$DOCKER_CLI" -H "$DOCKER1" service logs --tail 30 "${STACK}_$svc" 2>&1 | tail -30 || true
  done
fi
say "cluster test finished (exit $status)"
exit "$status"
