"""What the planner reads back from a profiling run's record, on a literal summary."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from testbed.planner.profiling import read_profile, record_every, wire_bytes
from testbed.spec.planner import ProfileCfg


def test_wire_bytes_are_per_step_not_per_message(tmp_path: Path) -> None:
    # 30 steps: 30 pulls of the model (1000 B each) and a last pull with no step left (12 B)
    replica = {"step": 30, "peers": {"received:ps": {"message_bytes": 30 * 1000 + 12, "messages": 31},
                                     "sent:ps": {"message_bytes": 30 * 900, "messages": 30}}}
    (tmp_path / "summary.json").write_text(json.dumps({"workers": {"replica0": replica}}))
    assert wire_bytes(tmp_path) == (1000, 900)


def _write_profile_run(run: Path, extra_s: float, step_s: float, every: int, total: int) -> None:
    """A one-device profiling run: ready at t=10, the first steps `extra_s` slow (tracing), then
    `step_s` per step, the server recording every `every`-th step; the meter at 10 Hz."""
    started = 10.0
    summary = {"status": "completed", "power": {"devices": {"d": {"quota_cpus": 0.5}}},
               "workers": {"replica0": {"step": total, "totals": {"compute_s": 4.0 + total * 0.15},
                                        "steady": {"process_cpu_per_step_s": 0.2,
                                                   "compute_per_step_s": 0.15}}}}  # fmt: skip
    events = [{"event": "workers_started", "t": 0.0}, {"event": "training_started", "t": started}]
    metrics = [{"kind": "worker", "worker": "ps", "step": s, "t": started + extra_s + s * step_s}
               for s in range(every, total + 1, every)]  # fmt: skip
    metrics += [{"kind": "startup", "worker": w, "cpu_s": 1.0} for w in ("replica0", "ps")]
    end = started + extra_s + total * step_s + 1
    metrics += [{"kind": "power", "device": "d", "t": i / 10, "cpu_s": 0.25 * i / 10,
                 "utilisation": float(i / 10 > started), "power_w": 2 + 8 * (i / 10 > started)}
                for i in range(int(end * 10))]  # fmt: skip
    (run / "summary.json").write_text(json.dumps(summary))
    for name, rows in (("events", events), ("metrics", metrics)):
        (run / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_profile_reads_step_time_and_warm_up_extra_from_sparse_records(tmp_path: Path) -> None:
    windows = ProfileCfg(warmup_steps=5, time_steps=20, power_steps=5)
    every = record_every(windows)
    assert every == 5 and record_every(ProfileCfg(warmup_steps=10, time_steps=30,
                                                  power_steps=20)) == 10  # fmt: skip
    assert record_every(ProfileCfg(warmup_steps=3, time_steps=7, power_steps=5)) == 1
    _write_profile_run(tmp_path, extra_s=3.0, step_s=0.5, every=every, total=windows.total)
    p = read_profile(tmp_path, "d", windows)
    assert p.step_s == pytest.approx(0.5)
    assert p.first_step_s == pytest.approx(3.0)  # not the first record's time less one step
    assert p.trace_s == pytest.approx(4.0)  # the worker's compute over 30 steady steps
    assert p.startup_s == pytest.approx(10.0) and p.quota_cpus == 0.5
    assert p.power.idle_w == pytest.approx(2.0) and p.power.per_util_w == pytest.approx(8.0)
