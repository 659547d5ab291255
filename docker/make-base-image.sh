#!/usr/bin/env bash
# Make testbed-base:bookworm-ARCH from Debian itself (no image registry needed), when absent.
#
#   docker/make-base-image.sh [amd64|arm64]      (default: amd64)
#
# debootstrap --variant=minbase bookworm (python3, venv, pip, iproute2, ca-certificates)
# into a temporary root, trimmed, tarred once into the cache
# ($TESTBED_DOCKER_CACHE, default ~/.cache/testbed/docker/rootfs-bookworm-ARCH.tar)
# and `docker import`ed with testbed.* labels. Reruns reuse the image, else the tarball.
# arm64 on an x86 host needs qemu-user-static + binfmt (see .ci/docker.sh); Docker 20.10
# records an imported image as the host's architecture, so the arm64 image is told apart
# by its label testbed.arch=arm64 (run it without --platform).
set -euo pipefail
ARCH=${1:-amd64}
case "$ARCH" in amd64 | arm64) ;; *) echo "arch '$ARCH' is not supported; expected amd64 or arm64" >&2; exit 2 ;; esac
SUITE=bookworm
TAG="testbed-base:$SUITE-$ARCH"
MIRROR=${TESTBED_DEBIAN_MIRROR:-http://deb.debian.org/debian}
CACHE=${TESTBED_DOCKER_CACHE:-$HOME/.cache/testbed/docker}
TARBALL="$CACHE/rootfs-$SUITE-$ARCH.tar"
PACKAGES=python3,python3-venv,python3-pip,iproute2,ca-certificates

if docker image inspect "$TAG" >/dev/null 2>&1; then
  echo "base image $TAG exists"
  exit 0
fi

make_rootfs() {
  local root
  mkdir -p "$CACHE"
  root=$(mktemp -d "$CACHE/rootfs-$ARCH.XXXXXX")
  # shellcheck disable=SC2064  # expand now: the trap must remove this very directory
  trap "rm -rf '$root'" EXIT
  echo "debootstrap $SUITE $ARCH into $root (takes ~1 min for amd64, ~3 min for arm64 under QEMU)"
  debootstrap --arch="$ARCH" --variant=minbase --include="$PACKAGES" "$SUITE" "$root" "$MIRROR" \
    >"$CACHE/debootstrap-$ARCH.log" 2>&1 || {
    tail -n 30 "$CACHE/debootstrap-$ARCH.log" >&2
    echo "debootstrap failed; full log: $CACHE/debootstrap-$ARCH.log" >&2
    exit 1
  }
  rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb \
    "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/info/* "$root"/usr/share/locale/*
  tar -C "$root" --numeric-owner -cf "$TARBALL.tmp" .
  mv "$TARBALL.tmp" "$TARBALL"
  rm -rf "$root"
  trap - EXIT
}

[ -s "$TARBALL" ] || make_rootfs
docker import \
  --change "LABEL testbed.image=base" \
  --change "LABEL testbed.arch=$ARCH" \
  --change "LABEL testbed.suite=$SUITE" \
  --change "ENV LANG=C.UTF-8" \
  --change 'CMD ["/bin/bash"]' \
  "$TARBALL" "$TAG" >/dev/null
echo "imported $TAG from $TARBALL"
