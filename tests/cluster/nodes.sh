#!/usr/bin/env bash
# Two Docker nodes on one machine, for the cluster test (tests/cluster/run.sh) and by hand:
#   bash tests/cluster/nodes.sh up     node 1: a dockerd on the host with its own data root, exec root and
#                                      socket; node 2: a dockerd in the network namespace mscl2 (a veth pair,
#                                      198.18.213.1 <-> .2) and its own UTS namespace (hostname mscl-node2);
#                                      a swarm: init on node 1, join from node 2.
#   bash tests/cluster/nodes.sh down   leaves the swarm, stops each process by its PID, removes the
#                                      namespace and the veth pair (the image cache under $DATA stays).
#   bash tests/cluster/nodes.sh env    prints DOCKER1/DOCKER2/... lines to eval.
# The images reach the nodes with docker save | docker load (tests/cluster/images.sh), and both daemons run
# with DOCKER_SERVICE_PREFER_OFFLINE_IMAGE=1 (as Docker's own integration tests do): a task starts from the
# image the node has instead of first trying a registry (there is none here: that try cost ~20 s per task).
# Needs root, Debian's docker.io and iproute2. Every wait is bounded.
set -euo pipefail
STATE=${CLUSTER_STATE:-/run/mscl}
DATA=${CLUSTER_DATA:-/var/lib/modelserve-cluster}
NS=mscl2
VETH_HOST=mscl0
VETH_NS=mscl1
HOST_IP=198.18.213.1
NODE2_IP=198.18.213.2
NODE2_NAME=mscl-node2
DOCKER=${DOCKER_CLI:-/usr/bin/docker}
D1=unix://$STATE/1/docker.sock
D2=unix://$STATE/2/docker.sock

log() { printf '[nodes] %s\n' "$*" >&2; }

wait_for() {  # wait_for SECONDS DESCRIPTION COMMAND...: poll every 0.5 s, bounded
  local limit=$1 what=$2; shift 2
  local i
  for ((i = 0; i < limit * 2; i++)); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.5
  done
  log "gave up after ${limit} s waiting for: $what"
  return 1
}

start_daemon() {  # start_daemon N PREFIX...: dockerd N with its own roots; PREFIX runs it (nsenter ...)
  local n=$1; shift
  mkdir -p "$STATE/$n" "$DATA/node$n"
  echo '{}' >"$STATE/$n/daemon.json"
  DOCKER_SERVICE_PREFER_OFFLINE_IMAGE=1 "$@" /usr/sbin/dockerd \
    --config-file "$STATE/$n/daemon.json" \
    --data-root "$DATA/node$n" --exec-root "$STATE/$n/x" \
    -H "unix://$STATE/$n/docker.sock" --pidfile "$STATE/$n/dockerd.pid" \
    --cgroup-parent "mscl$n" \
    --log-level warn >"$STATE/$n/dockerd.log" 2>&1 &
  echo $! >"$STATE/$n/pid"
  if ! wait_for 60 "dockerd $n" "$DOCKER" -H "unix://$STATE/$n/docker.sock" info; then
    tail -20 "$STATE/$n/dockerd.log" >&2
    return 1
  fi
}

up() {
  [ "$(id -u)" = 0 ] || { echo "needs root (network namespaces, dockerd)"; exit 2; }
  mkdir -p "$STATE"
  # What node 1's dockerd will change on the host, to put back in `down`: the FORWARD policy (dockerd
  # sets DROP), and whether a docker0 bridge was there before (another Docker). IP forwarding, which
  # dockerd turns on, stays on: podman's networks need it too, and may have come up meanwhile.
  {
    echo "forward_policy=$(iptables -S FORWARD 2>/dev/null | awk '$1 == "-P" {print $3}')"
    if ip link show docker0 >/dev/null 2>&1 || [ -S /var/run/docker.sock ]; then echo other_docker=1; else echo other_docker=0; fi
  } >"$STATE/host.env"
  # Network: a namespace for node 2 and a veth pair between it and the host. No default route in the
  # namespace: node 2 reaches only the host's end of the pair.
  ip netns add "$NS"
  ip link add "$VETH_HOST" type veth peer name "$VETH_NS"
  ip link set "$VETH_NS" netns "$NS"
  ip addr add "$HOST_IP/24" dev "$VETH_HOST"
  ip link set "$VETH_HOST" up
  ip -n "$NS" addr add "$NODE2_IP/24" dev "$VETH_NS"
  ip -n "$NS" link set "$VETH_NS" up
  ip -n "$NS" link set lo up
  # Node 1 on the host; node 2 through nsenter (ip netns exec fails here: "Devices cgroup isn't mounted"),
  # in its own UTS namespace so that the two swarm nodes have different hostnames.
  start_daemon 1
  start_daemon 2 nsenter "--net=/run/netns/$NS" unshare --uts -- sh -c "hostname $NODE2_NAME && exec \"\$0\" \"\$@\""
  "$DOCKER" -H "$D1" swarm init --advertise-addr "$HOST_IP" --listen-addr "$HOST_IP:2377" >/dev/null
  token=$("$DOCKER" -H "$D1" swarm join-token -q worker)
  "$DOCKER" -H "$D2" swarm join --token "$token" --advertise-addr "$NODE2_IP" "$HOST_IP:2377" >/dev/null
  wait_for 60 "node 2 to be Ready in the swarm" sh -c \
    "[ \"\$($DOCKER -H $D1 node ls --format '{{.Status}}' | grep -c Ready)\" = 2 ]"
  "$DOCKER" -H "$D1" node ls >&2
}

stop_pid() {  # stop_pid FILE: SIGTERM the process whose PID FILE holds, wait (bounded), then SIGKILL
  local file=$1 pid i
  [ -f "$file" ] || return 0
  pid=$(cat "$file")
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 60; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    if kill -0 "$pid" 2>/dev/null; then log "PID $pid ignored SIGTERM for 30 s: SIGKILL"; kill -KILL "$pid" 2>/dev/null || true; fi
  fi
  rm -f "$file"
}

down() {
  for n in 2 1; do
    if [ -S "$STATE/$n/docker.sock" ]; then
      timeout 60 "$DOCKER" -H "unix://$STATE/$n/docker.sock" swarm leave --force >/dev/null 2>&1 || true
      # Containers left by the stack (a swarm leave stops the tasks, but not always at once).
      ids=$(timeout 30 "$DOCKER" -H "unix://$STATE/$n/docker.sock" ps -aq 2>/dev/null || true)
      [ -z "$ids" ] || timeout 60 "$DOCKER" -H "unix://$STATE/$n/docker.sock" rm -f $ids >/dev/null 2>&1 || true
    fi
    stop_pid "$STATE/$n/pid"
  done
  # Mounts the daemons left under their roots (netns files, overlay layers), deepest first.
  if command -v findmnt >/dev/null; then
    { findmnt -rn -o TARGET | grep -E "^($STATE|$DATA)/" || true; } | sort -r | while read -r m; do umount -l "$m" 2>/dev/null || true; done
  fi
  ip link del "$VETH_HOST" 2>/dev/null || true
  ip netns del "$NS" 2>/dev/null || true
  [ ! -f "$STATE/host.env" ] || restore_host "$STATE/host.env"
  rm -rf "$STATE"
}

restore_host() {  # restore_host FILE: undo what node 1's dockerd changed on the host (unless another
  # Docker was there before): its iptables rules and chains, its bridges, the FORWARD policy.
  local other_docker=1 forward_policy='' table rule chain
  # shellcheck disable=SC1090
  . "$1"
  [ "$other_docker" = 0 ] || return 0
  if command -v iptables >/dev/null; then
    for table in filter nat; do
      iptables -t "$table" -S 2>/dev/null | grep -E '^-A .*(DOCKER|docker0|docker_gwbridge)' | while read -r rule; do
        # shellcheck disable=SC2086
        iptables -t "$table" ${rule/#-A/-D} 2>/dev/null || true
      done
      for chain in $(iptables -t "$table" -S 2>/dev/null | awk '$1 == "-N" && $2 ~ /^DOCKER/ {print $2}'); do
        iptables -t "$table" -F "$chain" 2>/dev/null || true
        iptables -t "$table" -X "$chain" 2>/dev/null || true
      done
    done
    [ -z "$forward_policy" ] || iptables -P FORWARD "$forward_policy" 2>/dev/null || true
  fi
  ip link del docker_gwbridge 2>/dev/null || true
  ip link del docker0 2>/dev/null || true
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  env)
    echo "DOCKER1=$D1 DOCKER2=$D2 HOST_IP=$HOST_IP NODE2_IP=$NODE2_IP NODE2_NAME=$NODE2_NAME" ;;
  *) echo "usage: $0 up|down|env" >&2; exit 2 ;;
esac
