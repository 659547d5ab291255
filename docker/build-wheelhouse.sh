#!/usr/bin/env bash
# Download every pinned wheel for a target architecture, on the host, so image builds need no network.
#
#   docker/build-wheelhouse.sh [amd64|arm64] [gpu]     (default: amd64; gpu: tensorflow[and-cuda])
#
# Writes $TESTBED_DOCKER_CACHE/wheels/ARCH[-gpu]/ (default ~/.cache/testbed/docker) holding the wheels
# and requirements.txt (the repo's pins with markers evaluated for linux/ARCH, see
# target-requirements.py). Binary wheels only, for CPython 3.11 (Debian bookworm's python3) on
# manylinux up to glibc 2.36. A stamp of the resolved pins makes reruns instant.
set -euo pipefail
cd "$(dirname "$0")/.."
ARCH=${1:-amd64}
VARIANT=${2:-}
case "$ARCH" in
  amd64) MACHINE=x86_64 ;;
  arm64) MACHINE=aarch64 ;;
  *) echo "arch '$ARCH' is not supported; expected amd64 or arm64" >&2; exit 2 ;;
esac
PYTHON=${PYTHON:-python3}
CACHE=${TESTBED_DOCKER_CACHE:-$HOME/.cache/testbed/docker}
OUT="$CACHE/wheels/$ARCH${VARIANT:+-$VARIANT}"
mkdir -p "$OUT"

"$PYTHON" docker/target-requirements.py "$ARCH" requirements.txt ${VARIANT:+--$VARIANT} >"$OUT/requirements.txt.new"
if [ -f "$OUT/.stamp" ] && cmp -s "$OUT/requirements.txt.new" "$OUT/.stamp"; then
  rm "$OUT/requirements.txt.new"
  echo "wheelhouse $OUT is up to date ($(find "$OUT" -name '*.whl' | wc -l) wheels)"
  exit 0
fi
mv "$OUT/requirements.txt.new" "$OUT/requirements.txt"

platforms=(--platform "manylinux2014_$MACHINE" --platform "linux_$MACHINE")
for minor in $(seq 17 36); do platforms+=(--platform "manylinux_2_${minor}_$MACHINE"); done
"$PYTHON" -m pip download -q --disable-pip-version-check \
  --only-binary=:all: "${platforms[@]}" \
  --python-version 3.11 --implementation cp --abi cp311 \
  -r "$OUT/requirements.txt" -d "$OUT"
cp "$OUT/requirements.txt" "$OUT/.stamp"
echo "wheelhouse $OUT: $(find "$OUT" -name '*.whl' | wc -l) wheels, $(du -sh "$OUT" | cut -f1)"
