#!/usr/bin/env bash
# Download every locked wheel for a target architecture, on the host, so image builds need no network.
#
#   docker/build-wheelhouse.sh [amd64|arm64] [gpu]     (default: amd64)
#
# Writes $TESTBED_DOCKER_CACHE/wheels/ARCH[-gpu]/ (default ~/.cache/testbed/docker) holding the
# wheels and requirements.txt: the lock's pins and hashes with markers evaluated for linux/ARCH
# (see target-requirements.py). amd64 takes requirements/controller.lock (worker and ps images),
# arm64 requirements/worker.lock (the Jetson worker), gpu requirements/worker-gpu.lock. Binary
# wheels only, for CPython 3.11 on manylinux up to glibc 2.36, each checked against its hash.
# A stamp of the resolved pins makes reruns instant.
set -euo pipefail
cd "$(dirname "$0")/.."
ARCH=${1:-amd64}
VARIANT=${2:-}
case "$ARCH" in
  amd64) MACHINE=x86_64 LOCK=requirements/controller.lock ;;
  arm64) MACHINE=aarch64 LOCK=requirements/worker.lock ;;
  *) echo "arch '$ARCH' is not supported; expected amd64 or arm64" >&2; exit 2 ;;
esac
if [ "$VARIANT" = gpu ]; then
  [ "$ARCH" = amd64 ] || { echo "gpu is for amd64 (tensorflow[and-cuda]); got $ARCH" >&2; exit 2; }
  LOCK=requirements/worker-gpu.lock
fi
PYTHON=${PYTHON:-python3}
CACHE=${TESTBED_DOCKER_CACHE:-$HOME/.cache/testbed/docker}
OUT="$CACHE/wheels/$ARCH${VARIANT:+-$VARIANT}"
mkdir -p "$OUT"

"$PYTHON" docker/target-requirements.py "$ARCH" "$LOCK" >"$OUT/requirements.txt.new"
if [ -f "$OUT/.stamp" ] && cmp -s "$OUT/requirements.txt.new" "$OUT/.stamp"; then
  rm "$OUT/requirements.txt.new"
  echo "wheelhouse $OUT is up to date ($(find "$OUT" -name '*.whl' | wc -l) wheels)"
  exit 0
fi
mv "$OUT/requirements.txt.new" "$OUT/requirements.txt"

platforms=(--platform "manylinux2014_$MACHINE" --platform "linux_$MACHINE")
for minor in $(seq 17 36); do platforms+=(--platform "manylinux_2_${minor}_$MACHINE"); done
"$PYTHON" -m pip download -q --disable-pip-version-check --require-hashes \
  --only-binary=:all: "${platforms[@]}" \
  --python-version 3.11 --implementation cp --abi cp311 \
  -r "$OUT/requirements.txt" -d "$OUT"
cp "$OUT/requirements.txt" "$OUT/.stamp"
echo "wheelhouse $OUT: $(find "$OUT" -name '*.whl' | wc -l) wheels, $(du -sh "$OUT" | cut -f1)"
