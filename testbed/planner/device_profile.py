"""Profile a model's units inside an emulated device (its cgroup and namespace), not on the host.

`python -m testbed.planner.device_profile SPEC.json OUT.json` runs `chain_profile.profile_chain`
and writes the unit, SG-module, per-stage and transport times (`ChainTimes`);
`profile_on_device` brings up a one-device cluster from the spec's device, runs that command
inside it (with the workers' environment) and reads the result back; `profile_on_host` runs it
in a plain subprocess.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from testbed.controller.cluster_run import run_cluster
from testbed.runtime.workdir import WORKER_ENV
from testbed.spec.experiment import Spec
from testbed.spec.load import spec_to_dict

_TIMEOUT_S = 900.0


def profile_on_device(spec: Spec, device: str) -> dict[str, Any]:
    """Per-unit sg step seconds measured inside `device` of spec.cluster (root backends: capped)."""
    if spec.cluster is None:
        raise ValueError("profile_on_device: the spec has no cluster; expected one naming "
                         f"device {device!r}")
    one = spec.cluster.model_copy(update={
        "devices": [d for d in spec.cluster.devices if d.name == device], "links": [],
        "schedule": []})
    if not one.devices:
        raise ValueError(f"profile_on_device: no device {device!r}; known: "
                         f"{', '.join(d.name for d in spec.cluster.devices)}")
    unit_spec = spec.model_copy(update={"cluster": one})
    run_id = f"profile-{secrets.token_hex(3)}"
    with tempfile.TemporaryDirectory() as tmp, run_cluster(unit_spec, run_id, _quiet) as cluster:
        assert cluster is not None
        src, out = Path(tmp) / "spec.json", Path(tmp) / "profile.json"
        src.write_text(json.dumps(spec_to_dict(spec)))
        proc = cluster.handle.spawn(device, [sys.executable, "-m", __name__, str(src), str(out)],
                                    env=dict(WORKER_ENV))
        try:
            code = proc.wait(timeout=_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise RuntimeError(f"profiling on {device!r} took over {_TIMEOUT_S:.0f} s") from None
        if code != 0:
            raise RuntimeError(f"profiling on {device!r} exited with {code}")
        result: dict[str, Any] = json.loads(out.read_text())
        return {**result, "device": device, "run_id": run_id,
                "fidelity_level": cluster.handle.fidelity_level}


def profile_on_host(spec: Spec) -> dict[str, Any]:
    """The same profile in a subprocess on the host (uncapped; the spec's threads)."""
    with tempfile.TemporaryDirectory() as tmp:
        src, out = Path(tmp) / "spec.json", Path(tmp) / "profile.json"
        src.write_text(json.dumps(spec_to_dict(spec)))
        subprocess.run([sys.executable, "-m", __name__, str(src), str(out)], check=True,
                       env={**os.environ, **WORKER_ENV}, timeout=_TIMEOUT_S)
        result: dict[str, Any] = json.loads(out.read_text())
        return {**result, "device": None}


def _quiet(event: str, **fields: Any) -> None:
    """The cluster's event reports (no run directory here)."""


def main(argv: list[str]) -> int:
    from testbed.planner.chain_profile import profile_chain
    from testbed.training.tfsetup import configure_threads

    if len(argv) != 2:
        print("usage: python -m testbed.planner.device_profile SPEC.json OUT.json",
              file=sys.stderr)
        return 2
    spec = Spec.model_validate(json.loads(Path(argv[0]).read_text()))
    configure_threads(spec.training.threads or 1)
    Path(argv[1]).write_text(json.dumps(profile_chain(spec).as_dict()))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
