"""Leases: a run's resources belong to a live controller, or are swept once it is dead."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest

from testbed.emulation import cleanup, lease


@pytest.fixture(autouse=True)
def _lease_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TESTBED_LEASE_DIR", str(tmp_path / "leases"))
    return tmp_path / "leases"


def _taken_by_a_process_that_ended(run_id: str) -> lease.Lease:
    code = f"from testbed.emulation import lease; lease.take({run_id!r})"
    subprocess.run([sys.executable, "-c", code], check=True)
    (found,) = [x for x in lease.leases() if x.run_id == run_id]
    return found


def test_a_lease_lives_exactly_as_long_as_its_controller() -> None:
    mine = lease.take("run-live")
    assert mine.alive()
    ended = _taken_by_a_process_that_ended("run-dead")
    assert not ended.alive()
    assert [x.run_id for x in lease.dead()] == ["run-dead"]
    reused = dataclasses.replace(mine, started=mine.started - 100)  # same pid, older process
    assert not reused.alive()
    elsewhere = dataclasses.replace(ended, host="another-host")  # not ours to judge
    assert elsewhere.alive()
    rebooted = dataclasses.replace(mine, boot="an-earlier-boot")
    assert not rebooted.alive()


def test_sweep_cleans_dead_runs_only(monkeypatch: pytest.MonkeyPatch, _lease_dir: Path) -> None:
    cleaned: list[str] = []
    monkeypatch.setattr(cleanup, "clean", lambda run_id: cleaned.append(run_id) or cleanup.Leftovers(netns=[run_id]))
    lease.take("run-live")
    _taken_by_a_process_that_ended("run-dead")
    (_lease_dir / "run-broken.lease.json").write_text("{not json")
    swept = cleanup.sweep()
    assert cleaned == ["run-dead"] and list(swept) == ["run-dead"]
    assert sorted(p.name for p in _lease_dir.iterdir()) == ["run-broken.lease.json", "run-live.lease.json"]
    assert cleanup.sweep() == {}  # the dead run's lease went with its resources


def test_a_sweep_skips_a_run_another_sweep_is_cleaning(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cleanup, "clean", lambda run_id: pytest.fail("cleaned twice"))
    _taken_by_a_process_that_ended("run-dead")
    with lease.exclusive("run-dead") as mine:
        assert mine
        assert cleanup.sweep() == {}


def test_a_lease_names_its_owner(_lease_dir: Path) -> None:
    taken = lease.take("20260101-000000-smoke-ab12")
    raw = json.loads((_lease_dir / "20260101-000000-smoke-ab12.lease.json").read_text())
    assert raw["pid"] == taken.pid and raw["started"] == taken.started > 0
    lease.release("20260101-000000-smoke-ab12")
    assert lease.leases() == []
    with pytest.raises(ValueError, match="run id '../x' is not usable"):
        lease.take("../x")
