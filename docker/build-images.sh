#!/usr/bin/env bash
# Build the testbed's images for one architecture on a host without an image registry:
# base (when absent), wheelhouse, then the top-level Dockerfile's worker and ps targets.
#
#   docker/build-images.sh [--arch amd64|arm64] [--role worker|ps|all] [--gpu]
#
# A host that can pull python:3.11-slim needs none of this: `docker compose up --build` (or
# `docker build --target worker .`) builds from the Dockerfile with PyPI. Here the base is made
# from Debian (make-base-image.sh), the locked wheels are downloaded on the host
# (build-wheelhouse.sh) and hard-linked into docker/wheels/, which the Dockerfile installs from
# with --no-index (and which `BASE_IMAGE=testbed-base:bookworm-amd64 docker compose up --build`
# then uses too). For a foreign architecture (arm64 on an x86 engine) the packages are
# installed on the host with `pip install --target --platform` into docker/site/ARCH/ (native
# speed) instead of by pip under QEMU; TESTBED_DOCKER_INSTALL=pip forces the in-image install.
# --gpu (amd64): testbed-worker:amd64-gpu from requirements/worker-gpu.lock (not built in CI).
# Images: testbed-worker:ARCH and testbed-ps:ARCH, labelled testbed.image / testbed.arch /
# testbed.source (a hash of the packaged source). The legacy builder is used (BuildKit is not
# packaged on Debian's docker.io); its layer cache keeps rebuilds after a source change to seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
ARCH=amd64
ROLES="worker ps"
VARIANT=""
while [ $# -gt 0 ]; do
  case "$1" in
    --arch) ARCH=$2; shift 2 ;;
    --role) ROLES=$2; [ "$ROLES" = all ] && ROLES="worker ps"; shift 2 ;;
    --gpu) VARIANT=gpu; ROLES=worker; shift ;;
    *) echo "unknown argument '$1'; expected --arch amd64|arm64 and --role worker|ps|all" >&2; exit 2 ;;
  esac
done
case "$ARCH" in amd64 | arm64) ;; *) echo "arch '$ARCH' is not supported; expected amd64 or arm64" >&2; exit 2 ;; esac
CACHE=${TESTBED_DOCKER_CACHE:-$HOME/.cache/testbed/docker}
TAG="$ARCH${VARIANT:+-$VARIANT}"
WHEELS="$CACHE/wheels/$TAG"
LOCK=worker.lock
[ "$VARIANT" = gpu ] && LOCK=worker-gpu.lock

timed() {
  local name=$1 t0 ms
  shift
  t0=$(date +%s%N)
  "$@"
  ms=$((($(date +%s%N) - t0) / 1000000))
  printf 'build-images: %s %s took %d.%01d s\n' "$name" "$ARCH" $((ms / 1000)) $((ms % 1000 / 100))
}

install_mode() {
  local engine
  engine=$(docker info -f '{{.Architecture}}' | sed 's/x86_64/amd64/; s/aarch64/arm64/')
  if [ -n "${TESTBED_DOCKER_INSTALL:-}" ]; then
    echo "$TESTBED_DOCKER_INSTALL"
  elif [ "$engine" = "$ARCH" ]; then
    echo pip
  else
    echo host
  fi
}

host_install() {
  # installed once per resolved pins into the cache, then hard-linked into docker/site/ARCH, so
  # an unchanged install gives the same COPY checksum and the build cache holds
  local site="$CACHE/site/$TAG" machine=x86_64 platforms=() minor
  if ! { [ -f "$site/.stamp" ] && cmp -s "$site/.stamp" "$WHEELS/requirements.txt"; }; then
    [ "$ARCH" = arm64 ] && machine=aarch64
    for minor in $(seq 17 36); do platforms+=(--platform "manylinux_2_${minor}_$machine"); done
    rm -rf "$site"
    "${PYTHON:-python3}" docker/target-requirements.py "$ARCH" "requirements/$LOCK" >"$CACHE/site-$TAG.txt"
    "${PYTHON:-python3}" -m pip install -q --disable-pip-version-check --no-warn-conflicts \
      --root-user-action=ignore --no-index --require-hashes \
      --find-links "$WHEELS" --only-binary=:all: "${platforms[@]}" \
      --platform "manylinux2014_$machine" --platform "linux_$machine" \
      --python-version 3.11 --implementation cp --abi cp311 \
      --target "$site" -r "$CACHE/site-$TAG.txt"
    rm -rf "$site/bin"
    touch "$site/.testbed-prebuilt"
    cp "$WHEELS/requirements.txt" "$site/.stamp"
  fi
  rm -rf "docker/site/$TAG"
  cp -al "$site" "docker/site/$TAG"
  rm "docker/site/$TAG/.stamp"
}

stage() {
  # docker/wheels/ keeps the wheelhouses (hard links; wheel names carry their platform, so arches
  # share it, and `docker compose up --build` installs from it offline); docker/site/ARCH holds a
  # foreign arch's host install for this build only (unstage removes it: it is 1.3 GB of context)
  if [ "$(install_mode)" = host ]; then
    host_install
  else
    cp -alf "$WHEELS"/*.whl docker/wheels/
  fi
}

unstage() {
  rm -rf "docker/site/$TAG"
}

deps_hash() {
  # what the dependency stages are made of: the Dockerfile, the locks, the install mode
  { cat Dockerfile requirements/*.lock; install_mode; } | sha256sum | cut -c1-12
}

source_hash() {
  find testbed experiments requirements -type f ! -name '*.pyc' | LC_ALL=C sort | xargs sha256sum |
    sha256sum | cut -c1-12
}

build_role() {
  local role=$1
  DOCKER_BUILDKIT=0 docker build -q \
    --target "$role" \
    --build-arg "BASE_IMAGE=testbed-base:bookworm-$ARCH" \
    --build-arg "ARCH=$ARCH" \
    --build-arg "LOCK=$LOCK" \
    --build-arg "DEPS=$(deps_hash)" \
    --label "testbed.source=$(source_hash)" \
    -t "testbed-$role:$TAG" \
    . >/dev/null
  echo "built testbed-$role:$TAG ($(docker image inspect -f '{{.Size}}' "testbed-$role:$TAG" |
    awk '{printf "%.0f MB", $1 / 1e6}'))"
}

timed "base image" docker/make-base-image.sh "$ARCH"
timed "wheelhouse" docker/build-wheelhouse.sh "$ARCH" $VARIANT
timed "stage wheels" stage
trap unstage EXIT
for role in $ROLES; do
  timed "image $role" build_role "$role"
done
prune_stale() {
  # the images these tags pointed to before are dangling now, and so are dependency stages made
  # of other inputs; the current dependency stages stay: they are the build cache
  local role
  for role in worker ps; do
    docker image prune -f --filter "label=testbed.image=$role" >/dev/null
  done
  docker image prune -f --filter label=testbed.image=build-stage --filter "label=testbed.arch=$ARCH" \
    --filter "label!=testbed.deps=$(deps_hash)" >/dev/null
}
timed "prune" prune_stale
