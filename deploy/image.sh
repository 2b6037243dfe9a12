#!/usr/bin/env bash
# `make image`: build the Dockerfile with docker when its daemon answers, else with podman (through the
# CI machine's ../shared/container/prepare.sh when it is there: it installs podman and a local base image),
# else say what to install. Extra arguments go to the build (e.g. --target runtime).
set -euo pipefail
TAG=${IMAGE_TAG:-modelserve}
PREPARE=${PREPARE_SCRIPT:-../shared/container/prepare.sh}

if command -v docker >/dev/null 2>&1; then
  if docker info >/dev/null 2>&1; then
    exec docker build -t "$TAG" "$@" .
  fi
  docker_note="docker is installed but its daemon does not answer (docker info failed); "
fi
if [ -f "$PREPARE" ]; then
  if ! env_lines=$(bash "$PREPARE"); then
    echo "make image: $PREPARE failed (it installs podman and the base image); see its output above" >&2
    exit 1
  fi
  eval "$env_lines"
  exec podman build --format docker --build-arg BASE_IMAGE="$BASE_IMAGE" -t "$TAG" "$@" .
fi
if command -v podman >/dev/null 2>&1; then
  exec podman build --format docker -t "$TAG" "$@" .
fi
echo "make image: ${docker_note:-}no container engine found. Install one of:" >&2
echo "  Docker: https://docs.docker.com/engine/install/ (then start the daemon)" >&2
echo "  Podman: apt-get install podman (Debian/Ubuntu), dnf install podman (Fedora)" >&2
exit 1
