#!/usr/bin/env bash
# Build the testbed's images for one architecture: base (when absent), wheelhouse, worker, ps.
#
#   docker/build-images.sh [--arch amd64|arm64] [--role worker|ps|all] [--gpu]
#
# --gpu (amd64): testbed-worker:amd64-gpu with tensorflow[and-cuda] for the `gpu` profile on a
# host with the NVIDIA container toolkit (a ~3 GB wheelhouse; not built in CI).
# Images: testbed-worker:ARCH and testbed-ps:ARCH, labelled testbed.image / testbed.arch /
# testbed.source (a hash of the packaged source). The build context is staged under
# $TESTBED_DOCKER_CACHE/context-ARCH (wheels hard-linked, the testbed package copied), never
# the repository itself (.venv, results). The legacy builder is used (BuildKit is not packaged
# on Debian's docker.io); its layer cache keeps rebuilds after a source change to seconds.
# For a foreign architecture (arm64 on an x86 engine) the packages are installed on the host
# with `pip install --target --platform` (native speed) instead of by pip under QEMU in the
# build; TESTBED_DOCKER_INSTALL=pip forces the in-image install, =host the host-side one.
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
CONTEXT="$CACHE/context-$TAG"

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
  # installed once per resolved pins into the cache, then hard-linked into the context, so an
  # unchanged install gives the same COPY checksum and the build cache holds
  local site="$CACHE/site/$TAG" machine=x86_64 platforms=() minor
  if ! { [ -f "$site/.stamp" ] && cmp -s "$site/.stamp" "$CONTEXT/requirements.txt"; }; then
    [ "$ARCH" = arm64 ] && machine=aarch64
    for minor in $(seq 17 36); do platforms+=(--platform "manylinux_2_${minor}_$machine"); done
    rm -rf "$site"
    "${PYTHON:-python3}" -m pip install -q --disable-pip-version-check --no-warn-conflicts \
      --root-user-action=ignore --no-index \
      --find-links "$CACHE/wheels/$TAG" --only-binary=:all: "${platforms[@]}" \
      --platform "manylinux2014_$machine" --platform "linux_$machine" \
      --python-version 3.11 --implementation cp --abi cp311 \
      --target "$site" -r "$CONTEXT/requirements.txt"
    rm -rf "$site/bin"
    touch "$site/.testbed-prebuilt"
    cp "$CONTEXT/requirements.txt" "$site/.stamp"
  fi
  rm -rf "$CONTEXT/site"
  cp -al "$site" "$CONTEXT/site"
  rm "$CONTEXT/site/.stamp"
}

stage_context() {
  rm -rf "$CONTEXT"
  mkdir -p "$CONTEXT/site" "$CONTEXT/wheels"
  cp "$CACHE/wheels/$TAG/requirements.txt" "$CONTEXT/requirements.txt"
  if [ "$(install_mode)" = host ]; then
    host_install
  else
    rm -rf "$CONTEXT/wheels"
    cp -al "$CACHE/wheels/$TAG" "$CONTEXT/wheels"
  fi
  tar --exclude=__pycache__ --exclude='*.pyc' -cf - testbed experiments | tar -xf - -C "$CONTEXT"
}

source_hash() {
  (cd "$CONTEXT" && find testbed experiments requirements.txt -type f | LC_ALL=C sort |
    xargs sha256sum) |
    sha256sum | cut -c1-12
}

deps_hash() {
  # what the dependency stage is made of: its Dockerfile lines, the pins, the install mode
  { sed -n '/AS deps/,/^FROM /p' "docker/Dockerfile.$1"; cat "$CONTEXT/requirements.txt"
    install_mode; } | sha256sum | cut -c1-12
}

build_role() {
  local role=$1 deps
  deps=$(deps_hash "$role")
  DOCKER_BUILDKIT=0 docker build -q \
    --build-arg "DEPS_HASH=$deps" \
    -f "docker/Dockerfile.$role" \
    --build-arg "BASE_IMAGE=testbed-base:bookworm-$ARCH" \
    --build-arg "ARCH=$ARCH" \
    --label "testbed.source=$(source_hash)" \
    -t "testbed-$role:$TAG" \
    "$CONTEXT" >/dev/null
  echo "built testbed-$role:$TAG ($(docker image inspect -f '{{.Size}}' "testbed-$role:$TAG" |
    awk '{printf "%.0f MB", $1 / 1e6}'))"
}

timed "base image" docker/make-base-image.sh "$ARCH"
timed "wheelhouse" docker/build-wheelhouse.sh "$ARCH" $VARIANT
timed "context + install" stage_context
prune_stale() {
  # the images these tags pointed to before are dangling now, and so are dependency stages made
  # of other inputs; the current dependency stage stays: it is the build cache
  local role=$1 deps=$2
  docker image prune -f --filter "label=testbed.image=$role" >/dev/null
  docker image prune -f --filter label=testbed.image=build-stage --filter "label=testbed.arch=$ARCH" \
    --filter "label!=testbed.deps=$deps" >/dev/null
}

for role in $ROLES; do
  timed "image $role" build_role "$role"
  timed "prune $role" prune_stale "$role" "$(deps_hash "$role")"
done
rm -rf "$CONTEXT"
