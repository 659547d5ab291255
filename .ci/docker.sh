#!/usr/bin/env bash
# CI helper for the docker tier: packages, a running engine, arm64 emulation, then the images.
#
#   bash .ci/docker.sh            # everything: packages, engine, binfmt, base images, images
#   bash .ci/docker.sh engine     # only packages + a running engine (+ arm64 emulation)
#
# TESTBED_DOCKER_ARCHES (default "amd64 arm64") picks the architectures to build.
# Every step prints "docker-ci: STEP took N s". Caches live in ~/.cache/testbed/docker
# (rootfs tarballs, wheelhouses); images are reused by tag when their inputs did not change.
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive
ARCHES=${TESTBED_DOCKER_ARCHES:-"amd64 arm64"}
ENGINE_DEADLINE_S=${TESTBED_DOCKER_ENGINE_DEADLINE_S:-60}
DOCKERD_LOG=${TESTBED_DOCKERD_LOG:-/var/log/testbed-dockerd.log}

step() {
  local name=$1 t0
  shift
  t0=$(date +%s%N)
  "$@"
  local ms=$((($(date +%s%N) - t0) / 1000000))
  printf 'docker-ci: %s took %d.%01d s\n' "$name" $((ms / 1000)) $((ms % 1000 / 100))
}

install_packages() {
  local need=()
  command -v dockerd >/dev/null || need+=(docker.io)
  command -v docker-compose >/dev/null || need+=(docker-compose)
  command -v debootstrap >/dev/null || need+=(debootstrap)
  if [[ " $ARCHES " == *" arm64 "* ]]; then
    [ -x /usr/bin/qemu-aarch64-static ] || need+=(qemu-user-static)
    command -v update-binfmts >/dev/null || need+=(binfmt-support)
  fi
  if [ ${#need[@]} -gt 0 ]; then
    apt-get update -qq
    apt-get install -y -qq "${need[@]}" >/dev/null
  fi
}

engine_answers() { docker info >/dev/null 2>&1; }

start_engine() {
  engine_answers && return 0
  echo "docker-ci: no engine answers; starting dockerd (log: $DOCKERD_LOG)"
  setsid nohup dockerd >"$DOCKERD_LOG" 2>&1 </dev/null &
  local deadline=$((SECONDS + ENGINE_DEADLINE_S))
  until engine_answers; do
    if [ $SECONDS -ge $deadline ]; then
      echo "docker-ci: dockerd did not answer within ${ENGINE_DEADLINE_S} s; last log lines:" >&2
      tail -n 20 "$DOCKERD_LOG" >&2 || true
      return 1
    fi
    sleep 0.5  # polling interval while waiting on `docker info`, not a readiness guess
  done
}

enable_arm64() {
  [[ " $ARCHES " == *" arm64 "* ]] || return 0
  if [ ! -e /proc/sys/fs/binfmt_misc/register ]; then
    mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
  fi
  [ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ] || update-binfmts --enable qemu-aarch64
  grep -q '^enabled' /proc/sys/fs/binfmt_misc/qemu-aarch64
}

build_images() {
  local arch roles
  for arch in $ARCHES; do
    roles=all
    [ "$arch" = arm64 ] && roles=worker  # the jetson device; the ps/controller run on amd64
    step "images $arch (base, wheelhouse, $roles)" docker/build-images.sh --arch "$arch" --role "$roles"
  done
}

step "packages" install_packages
step "engine" start_engine
step "arm64 emulation" enable_arm64
if [ "${1:-all}" != engine ]; then
  build_images
  docker image ls --filter label=testbed.image --format 'docker-ci: image {{.Repository}}:{{.Tag}} {{.Size}}'
fi
