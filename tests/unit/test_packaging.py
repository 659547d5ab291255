"""Packaging: pyproject's pins are what the hashed locks hold, the worker image stays lean, and
the compose file and Dockerfile build from a fresh clone (build sections, profiles, no version)."""

from __future__ import annotations

import re
import tomllib

import pytest
import yaml

from testbed.paths import PROJECT_ROOT

LOCKS = PROJECT_ROOT / "requirements"
PYPROJECT = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())
# lock file -> the extras it is compiled from (Makefile `lock`)
LOCKED = {"dev.lock": ["runtime", "report", "notebook", "docker", "dev"], "worker.lock": ["runtime"],
          "controller.lock": ["runtime", "report", "docker"], "worker-gpu.lock": ["gpu"]}
_PIN = re.compile(r"^([A-Za-z0-9_.\-]+)(\[[^\]]*\])?==([^ ;]+)")


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def lock_pins(name: str) -> dict[str, set[str]]:
    """package -> versions pinned in a lock (a package may be pinned per platform)."""
    out: dict[str, set[str]] = {}
    for line in (LOCKS / name).read_text().splitlines():
        m = _PIN.match(line)
        if m:
            out.setdefault(_norm(m.group(1)), set()).add(m.group(3))
    return out


def declared(extras: list[str]) -> dict[str, str]:
    reqs = list(PYPROJECT["project"]["dependencies"])
    for extra in extras:
        reqs += PYPROJECT["project"]["optional-dependencies"][extra]
    out = {}
    for req in reqs:
        m = _PIN.match(req.replace(" ", ""))
        assert m, f"pyproject.toml: {req!r} is not pinned with =="
        out[_norm(m.group(1))] = m.group(3)
    return out


@pytest.mark.parametrize("lock", sorted(LOCKED))
def test_every_declared_pin_is_in_its_lock(lock: str) -> None:
    pins = lock_pins(lock)
    for name, version in declared(LOCKED[lock]).items():
        assert version in pins.get(name, set()), f"{lock}: {name}=={version} missing; run make lock"


@pytest.mark.parametrize("lock", sorted(LOCKED))
def test_every_locked_package_has_hashes(lock: str) -> None:
    text = (LOCKS / lock).read_text()
    entries = re.split(r"\n(?=[A-Za-z0-9])", text.strip())
    assert len(entries) > 10
    for entry in entries:
        if _PIN.match(entry):
            assert "--hash=sha256:" in entry, entry.splitlines()[0]


def test_the_worker_image_lock_is_lean() -> None:
    worker, controller = lock_pins("worker.lock"), lock_pins("controller.lock")
    for heavy in ("matplotlib", "nbclient", "nbconvert", "ipykernel", "grpcio-tools", "flask",
                  "docker", "selenium", "pytest", "influxdb-client"):
        assert heavy not in worker, heavy
    assert {"tensorflow-cpu", "grpcio", "pyroute2"} <= set(worker)
    assert {"matplotlib", "flask", "docker"} <= set(controller)
    assert "nbclient" not in controller


def test_the_core_install_is_the_cli_only() -> None:
    core = {_norm(_PIN.match(r).group(1)) for r in PYPROJECT["project"]["dependencies"]}  # type: ignore[union-attr]
    assert "typer" in core and not core & {"tensorflow-cpu", "tensorflow", "matplotlib", "grpcio"}


COMPOSE = yaml.safe_load((PROJECT_ROOT / "docker-compose.yml").read_text())


def test_compose_builds_every_testbed_image_and_has_no_version_key() -> None:
    assert "version" not in COMPOSE
    for name, service in COMPOSE["services"].items():
        if str(service.get("image", "")).startswith("testbed-"):
            assert service["build"]["context"] == "." and service["build"]["target"] in ("worker", "ps"), name


def test_gpu_and_jetson_are_behind_profiles_and_nothing_needs_them() -> None:
    services = COMPOSE["services"]
    assert services["gpu"]["profiles"] == ["gpu"] and services["jetson"]["profiles"] == ["jetson"]
    default = {n for n, s in services.items() if "profiles" not in s}
    for name in default:
        assert set(services[name].get("depends_on", [])) <= default, name


def test_published_ports_are_on_loopback() -> None:
    ports = [p for s in COMPOSE["services"].values() for p in s.get("ports", [])]
    assert ports and all(p.startswith("127.0.0.1:") for p in ports)
    assert any(p.endswith(":8086") for p in ports)  # InfluxDB, seen from the host


def test_dockerfile_targets_and_default_base() -> None:
    text = (PROJECT_ROOT / "Dockerfile").read_text()
    first_from = text.index("\nFROM ")
    assert "ARG BASE_IMAGE=python:3.11-slim-bookworm" in text[:first_from]
    assert re.search(r"^FROM \S+ AS worker$", text, re.M) and re.search(r"^FROM \S+ AS ps$", text, re.M)
    assert "--require-hashes" in text


def test_dockerignore_is_an_allowlist() -> None:
    lines = (PROJECT_ROOT / ".dockerignore").read_text().splitlines()
    assert "*" in lines and "!testbed/" in lines and not any(line.startswith("!.venv") for line in lines)
    assert not any(line in ("!results/", "!results") for line in lines)


def test_stack_file_drops_profiles_and_build_for_docker_stack_deploy() -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("stack_file", PROJECT_ROOT / "docker" / "stack-file.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    plain = module.stack_doc(COMPOSE, set())
    assert set(plain["services"]) == {"influxdb", "ps", "edge1", "edge2", "edge3", "edge4", "controller"}
    assert not any({"profiles", "build"} & set(s) for s in plain["services"].values())
    assert plain["version"] == "3.9" and not any(k.startswith("x-") for k in plain)
    assert plain["services"]["edge1"]["labels"]["testbed.device"] == "edge1"  # anchors resolved
    with_jetson = module.stack_doc(COMPOSE, {"jetson"})
    assert "jetson" in with_jetson["services"] and "gpu" not in with_jetson["services"]
