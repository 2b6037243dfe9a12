#!/usr/bin/env bash
# The cluster test's images, built on node 1 from a local Debian base (no Docker Hub; tests/cluster/nodes.sh
# up first): mscl/modelserve:1 (the Dockerfile), mscl/modelserve:2 (the same plus one label: the rolling
# update's new tag), mscl/modelserve-{haproxy,prometheus,seaweedfs}:1 (deploy/swarm/*/, placed on node 1).
# The modelserve tags reach node 2 with docker save | docker load (no registry: a push to a local one cost
# ~80 s of compression here; on real hosts the stack's IMAGE_PREFIX names your registry).
# The base: podman's (../shared/container/prepare.sh's localhost/ci-python:3.11) when podman has it, else
# one made with mmdebstrap | docker import. CLUSTER_PODMAN_IMAGE=<podman image of this checkout's
# Dockerfile> (.ci/run: the one the container smoke test just built) is loaded instead of building again.
# Layers are cached in node 1's data root, so a second run builds little.
set -euo pipefail
cd "$(dirname "$0")/../.."
eval "$(bash tests/cluster/nodes.sh env)"
DOCKER=${DOCKER_CLI:-/usr/bin/docker}
d1() { "$DOCKER" -H "$DOCKER1" "$@"; }
BASE=mscl/base:bookworm
LOGS=${CLUSTER_LOGS:-/tmp/modelserve-cluster}
mkdir -p "$LOGS"
say() { printf '[images] %s\n' "$*" >&2; }
# BuildKit: the classic builder would also build the Dockerfile's train stage (torch) on the way to runtime.
export DOCKER_BUILDKIT=1
build() {  # build TAG CONTEXT [ARGS...]: quiet unless it fails; --network host: apt and pip reach out
  local tag=$1 context=$2; shift 2
  if ! nice -n 10 "$DOCKER" -H "$DOCKER1" build --network host --build-arg BASE_IMAGE="$BASE" -t "$tag" "$@" "$context" \
      >"$LOGS/build-$(basename "$tag" | tr ':/' '__').log" 2>&1; then
    tail -30 "$LOGS/build-$(basename "$tag" | tr ':/' '__').log" >&2
    say "building $tag failed"
    return 1
  fi
}

t0=$(date +%s)
if ! d1 image inspect "$BASE" >/dev/null 2>&1; then
  if command -v podman >/dev/null && podman image exists localhost/ci-python:3.11 2>/dev/null; then
    say "base: podman's localhost/ci-python:3.11"
    podman save localhost/ci-python:3.11 | d1 load -q >/dev/null
    d1 tag localhost/ci-python:3.11 "$BASE"
  else
    say "base: mmdebstrap bookworm (python3, venv, ca-certificates) | docker import"
    command -v mmdebstrap >/dev/null || apt-get install -y -q mmdebstrap >/dev/null
    # Extra CA certificates of the host (a TLS-intercepting egress proxy) are trusted inside the image too.
    nice -n 10 mmdebstrap --variant=apt --include=python3,python3-venv,ca-certificates \
      --customize-hook='cp /usr/local/share/ca-certificates/*.crt "$1/usr/local/share/ca-certificates/" 2>/dev/null || true; chroot "$1" update-ca-certificates' \
      --customize-hook='rm -f "$1/etc/apt/sources.list"; cp /etc/apt/sources.list.d/debian.sources "$1/etc/apt/sources.list.d/"' \
      bookworm - 2>"$LOGS/mmdebstrap.log" | d1 import --change 'CMD ["python3"]' - "$BASE" >/dev/null
  fi
fi
say "base ready ($(( $(date +%s) - t0 )) s)"

if [ -n "${CLUSTER_PODMAN_IMAGE:-}" ] && command -v podman >/dev/null && podman image exists "$CLUSTER_PODMAN_IMAGE" 2>/dev/null; then
  say "modelserve: podman's $CLUSTER_PODMAN_IMAGE"
  podman save "$CLUSTER_PODMAN_IMAGE" | d1 load -q >/dev/null
  d1 tag "$CLUSTER_PODMAN_IMAGE" "mscl/modelserve:1"
else
  say "modelserve: docker build (the Dockerfile's runtime stage)"
  build "mscl/modelserve:1" . --target runtime
fi
# The rolling update's new tag: the same service with a label (a real update changes more; the test is
# about the swap, not the contents).
printf 'FROM %s\nLABEL org.modelserve.cluster-test-revision=2\n' "mscl/modelserve:1" \
  | d1 build -q -t "mscl/modelserve:2" - >/dev/null
# The three infrastructure images at once: their time goes to apt and pip downloads, not the CPU.
pids=()
for part in haproxy prometheus seaweedfs; do
  build "mscl/modelserve-$part:1" "deploy/swarm/$part" &
  pids+=($!)
done
for pid in "${pids[@]}"; do wait "$pid"; done
say "images built ($(( $(date +%s) - t0 )) s); loading the modelserve tags on node 2"
d1 save mscl/modelserve:1 mscl/modelserve:2 | "$DOCKER" -H "$DOCKER2" load -q >/dev/null
say "images ready ($(( $(date +%s) - t0 )) s)"
