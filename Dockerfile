# The testbed's images, one file, two targets (`docker compose up --build` builds both):
#   worker  one emulated device: the testbed package + the `runtime` extra (TensorFlow, gRPC, pyroute2)
#   ps      parameter server, controller and dashboard: the worker plus `report` and `docker`
#
#   docker build --target worker -t testbed-worker:amd64 .
#   docker build --target ps -t testbed-ps:amd64 .
#
# BASE_IMAGE is any Debian-like image with python3.11 (+ venv): python:3.11-slim-bookworm by
# default. Offline hosts (no image registry, CI here) pass the base made from Debian itself by
# docker/make-base-image.sh; docker/build-images.sh does all of it. Dependencies are installed
# with pip's hash checking from requirements/*.lock, from PyPI, or, with no network, from the
# wheelhouse docker/build-wheelhouse.sh puts in docker/wheels/ (or the packages installed on
# the host for a foreign architecture in docker/site/ARCH/). Only the classic builder's features
# are used, so Docker 20.10 without BuildKit builds it too.
ARG BASE_IMAGE=python:3.11-slim-bookworm

FROM ${BASE_IMAGE} AS base
# tc (iproute2) shapes links inside a device; the Debian-made base has it already
RUN command -v tc >/dev/null || { apt-get update \
      && apt-get install -y --no-install-recommends iproute2 \
      && rm -rf /var/lib/apt/lists/*; }
ENV PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PYTHONPATH=/opt/testbed \
    PYTHONUNBUFFERED=1 \
    TF_CPP_MIN_LOG_LEVEL=2 \
    HOME=/tmp
RUN printf '#!/bin/sh\nexec python3 -m testbed "$@"\n' > /usr/local/bin/testbed \
 && chmod 755 /usr/local/bin/testbed

FROM base AS worker-deps
ARG ARCH=amd64
# worker.lock, or worker-gpu.lock for the CUDA build (docker/build-images.sh --gpu)
ARG LOCK=worker.lock
COPY requirements/ /tmp/build/requirements/
COPY docker/wheels/ /tmp/build/wheels/
COPY docker/site/ /tmp/build/site/
# One of three sources, all checked against the lock's hashes (or prebuilt from them):
# packages installed on the host for ARCH (foreign-arch builds, no pip under QEMU), the
# wheelhouse, or the package index. TensorFlow's C++ headers (287 MB) serve only custom-op
# builds and are dropped.
RUN set -e; \
    python3 -m venv /opt/venv; \
    if [ -e /tmp/build/site/$ARCH/.testbed-prebuilt ]; then \
      cp -a /tmp/build/site/$ARCH/. /opt/venv/lib/python3.11/site-packages/; \
      rm /opt/venv/lib/python3.11/site-packages/.testbed-prebuilt; \
    else \
      if ls /tmp/build/wheels/*.whl >/dev/null 2>&1; then src="--no-index --find-links /tmp/build/wheels"; else src=""; fi; \
      /opt/venv/bin/pip install --no-cache-dir --disable-pip-version-check --require-hashes $src \
        -r /tmp/build/requirements/$LOCK; \
    fi; \
    rm -rf /opt/venv/lib/python3.11/site-packages/tensorflow/include
# what this dependency stage is made of: build-images.sh prunes stages of other inputs
ARG DEPS=unset
LABEL testbed.image=build-stage testbed.arch=${ARCH} testbed.deps=${DEPS}

FROM base AS worker
ARG ARCH=amd64
COPY --from=worker-deps /opt/venv /opt/venv
COPY experiments/ /opt/testbed/experiments/
COPY testbed/ /opt/testbed/testbed/
WORKDIR /opt/testbed
LABEL testbed.image=worker testbed.arch=${ARCH} \
      org.opencontainers.image.title="testbed worker" \
      org.opencontainers.image.description="edge-emulation testbed device: testbed package, TensorFlow, gRPC, iproute2"
# A device container idles; the controller runs processes in it with exec.
CMD ["sleep", "infinity"]

FROM worker-deps AS ps-deps
RUN set -e; \
    if ls /tmp/build/wheels/*.whl >/dev/null 2>&1; then src="--no-index --find-links /tmp/build/wheels"; else src=""; fi; \
    /opt/venv/bin/pip install --no-cache-dir --disable-pip-version-check --require-hashes $src \
      -r /tmp/build/requirements/controller.lock; \
    rm -rf /opt/venv/lib/python3.11/site-packages/tensorflow/include

FROM base AS ps
ARG ARCH=amd64
COPY --from=ps-deps /opt/venv /opt/venv
COPY experiments/ /opt/testbed/experiments/
COPY testbed/ /opt/testbed/testbed/
WORKDIR /opt/testbed
LABEL testbed.image=ps testbed.arch=${ARCH} \
      org.opencontainers.image.title="testbed parameter server and controller" \
      org.opencontainers.image.description="edge-emulation testbed: parameter server, controller, dashboard"
EXPOSE 8050
# The parameter server is a worker role: python -m testbed.runtime.worker CONFIG.json (role ps).
CMD ["python3", "-m", "testbed.runtime.worker"]
