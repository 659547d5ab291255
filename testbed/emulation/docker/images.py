"""The project's images: which tag a device runs, and a clear error when it was not built.

Images are built by ``docker/build-images.sh --arch ARCH`` and carry the labels
``testbed.image`` (base, worker, ps) and ``testbed.arch`` (amd64, arm64). Docker
20.10 records an imported arm64 base (and so the images built on it) as the
host's architecture, so the label, not the image's Architecture field, is what
says which instruction set the image holds. Override a tag per architecture with
``TESTBED_DOCKER_IMAGE_AMD64`` / ``_ARM64`` / ``_AMD64_GPU`` (e.g. a registry image on
a real cluster) or the backend's ``images`` argument. Devices with GPUs get the CUDA build
``testbed-worker:amd64-gpu`` (``docker/build-images.sh --arch amd64 --gpu``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

ARCH_LABEL = "testbed.arch"
ROLE_LABEL = "testbed.image"
CONTAINER_PACKAGE_ROOT = "/opt/testbed"  # PYTHONPATH inside the images; the package is below
CONTAINER_PYTHON = "python3"  # the image's venv python, first on PATH


class ImageMissing(RuntimeError):
    """A device needs an image that the engine does not have."""


def default_image(arch: str, role: str = "worker") -> str:
    """testbed-<role>:<arch>, unless TESTBED_DOCKER_IMAGE_<ARCH> names another (worker role)."""
    override = os.environ.get(f"TESTBED_DOCKER_IMAGE_{arch.upper().replace('-', '_')}")
    return override if override and role == "worker" else f"testbed-{role}:{arch}"


def image_for(arch: str, images: Mapping[str, str] | None = None, gpu: bool = False) -> str:
    """The worker image for an architecture (``<arch>-gpu``: the CUDA build for GPU devices).

    The caller's mapping first, then TESTBED_DOCKER_IMAGE_<ARCH>[_GPU], then testbed-worker:<key>.
    """
    key = f"{arch}-gpu" if gpu else arch
    if images and key in images:
        return images[key]
    return default_image(key)


def check_image(client: Any, tag: str, arch: str) -> None:
    """Raise ImageMissing (with the build command) unless `tag` exists for `arch`."""
    import docker.errors

    try:
        image = client.images.get(tag)
    except docker.errors.ImageNotFound:
        raise ImageMissing(
            f"image {tag!r} for arch {arch} is not in the engine; build it with "
            f"docker/build-images.sh --arch {arch}{' --gpu' if tag.endswith('-gpu') else ''} "
            f"(or set TESTBED_DOCKER_IMAGE_{arch.upper()})"
        ) from None
    labels = image.labels or {}
    recorded = labels.get(ARCH_LABEL) or _engine_arch(image.attrs.get("Architecture", ""))
    if recorded != arch:
        raise ImageMissing(
            f"image {tag!r} holds arch {recorded!r} (label {ARCH_LABEL}), but the device "
            f"needs {arch}; rebuild it with docker/build-images.sh --arch {arch}"
        )


def _engine_arch(arch: str) -> str:
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(arch, arch)


def engine_arch(client: Any) -> str:
    """The engine host's architecture, as amd64/arm64."""
    return _engine_arch(str(client.info().get("Architecture", "")))
