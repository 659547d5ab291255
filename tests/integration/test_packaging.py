"""`pip install .` into an empty venv: the core install (the CLI and specs, no TensorFlow) answers
`testbed --help`, validates a spec and says which extra a run needs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from testbed.paths import PROJECT_ROOT


@pytest.mark.slow
def test_pip_install_dot_in_an_empty_venv_runs_the_cli(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    install = subprocess.run([str(venv / "bin" / "pip"), "install", "-q", str(PROJECT_ROOT)],
                             capture_output=True, text=True, timeout=600)
    assert install.returncode == 0, install.stderr[-3000:]
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["TESTBED_EXPERIMENTS"] = str(PROJECT_ROOT / "experiments")

    def testbed(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(venv / "bin" / "testbed"), *args], capture_output=True, text=True,
                              timeout=120, env=env, cwd=tmp_path)

    helped = testbed("--help")
    assert helped.returncode == 0 and "validate" in helped.stdout, helped.stderr
    valid = testbed("validate", "quickstart")
    assert valid.returncode == 0 and "quickstart: valid sweep of 3 cells" in valid.stdout, valid.stderr
    dry = testbed("run", "four-layer-sg", "--dry-run")
    assert dry.returncode == 1 and "pip install 'testbed[runtime]'" in dry.stdout, dry.stdout
    run = testbed("run", "four-layer-sg")
    assert run.returncode == 2 and "pip install 'testbed[runtime]'" in run.stderr, run.stderr
    freeze = subprocess.run([str(venv / "bin" / "pip"), "freeze"], capture_output=True, text=True).stdout
    assert "tensorflow" not in freeze and "matplotlib" not in freeze
