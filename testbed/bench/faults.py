"""Benchmark `faults`: injected faults on 4 emulated edge devices, survived under `restart`.

Four-layer sg and bp-pipeline, stage i on edge<i> (0.4 CPU / 1 GB, 1 Gbit links, local backend:
needs root), `job.on_failure: restart`, a checkpoint every CHECKPOINT_EVERY steps. Per mode one
fault-free run, then one run per fault with the fault at a random time (seeded) in the middle
third of the fault-free run's training time: SIGKILL of edge1's processes, edge1 paused for
OUTAGE_S, edge1's link down for OUTAGE_S, the parameter server killed. Per fault: completed or
not, detection time (fault -> the controller's first notice), recovery time (notice -> the
first training step logged after it, and after the outage), steps lost, final accuracy against
the fault-free run (full 10,000-image test set), leftovers after the run. Last, the controller
itself is SIGKILLed mid-run: how long its workers live on, and what the next command's sweep
leaves.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import yaml  # noqa: E402

from testbed.bench import bench_dir, command, write_result  # noqa: E402
from testbed.controller.experiment import run_experiment  # noqa: E402
from testbed.metrics import provenance  # noqa: E402
from testbed.metrics.run_dir import read_metrics, read_summary  # noqa: E402
from testbed.processes import pid_alive  # noqa: E402
from testbed.spec.experiment import Spec  # noqa: E402
from testbed.spec.load import parse_spec  # noqa: E402

CPUS, MEMORY, DEVICES, BATCH = 0.4, "1g", 4, 64
STEPS = {"sg": 400, "bp-pipeline": 240}
CHECKPOINT_EVERY = 20
OUTAGE_S = 5.0  # pause and link-down last this long (under job.hang_timeout_s: ridden out)
TARGET = "edge1"  # the device faults hit: the fc1 stage, the largest state
FAULTS = ("kill", "pause", "link-down", "ps-kill")
TARGETS = {"detection_s": 2.0, "recovery_s": 15.0, "steps_lost": CHECKPOINT_EVERY,
           "accuracy_points": 0.5, "leftovers": 0}  # fmt: skip
SEED = 17
NOTICES = ("worker_failed", "worker_unresponsive")


def schedule(fault: str, at_s: float) -> list[dict[str, Any]]:
    """The cluster.schedule entries of one fault at `at_s` (an outage ends OUTAGE_S later)."""
    if fault == "ps-kill":
        return [{"at_s": at_s, "worker": "ps", "fault": "kill"}]
    if fault == "kill":
        return [{"at_s": at_s, "device": TARGET, "fault": "kill"}]
    end = {"pause": "resume", "link-down": "link-up"}[fault]
    return [{"at_s": at_s, "device": TARGET, "fault": fault},
            {"at_s": at_s + OUTAGE_S, "device": TARGET, "fault": end}]  # fmt: skip


def make_spec(mode: str, entries: list[dict[str, Any]], label: str) -> Spec:
    names = [f"edge{i}" for i in range(DEVICES)]
    steps = STEPS[mode]
    raw = {
        "name": f"faults-{mode}-{label}",
        "model": {"name": "four-layer"},
        "algorithm": {"name": "sg" if mode == "sg" else "bp", "sg": {"lr": 3.0e-3}},
        "training": {"batch_size": BATCH, "lr": 1.0e-3, "iterations": steps, "eval_every": steps,
                     "log_every": 5, "threads": 1, "checkpoint_every": CHECKPOINT_EVERY},
        "job": {"mode": mode, "micro_batches": 4, "startup_timeout_s": 300,
                "on_failure": "restart", "hang_timeout_s": 10},
        "cluster": {
            "backend": "local",
            "devices": [{"name": n, "profile": "edge", "cpus": CPUS, "memory": MEMORY} for n in names],
            "links": [{"device": n, "rate": "1gbit"} for n in names],
            "schedule": entries,
        },
        "placement": {str(i): n for i, n in enumerate(names)},
    }  # fmt: skip
    return parse_spec(raw, f"bench faults {mode} {label}")


def timings(events: list[dict[str, Any]], trains: list[dict[str, Any]]) -> dict[str, Any]:
    """Detection and recovery of the run's first fault, from its events and train records.

    detection: the fault -> the controller's first notice (a death or a missed health check);
    recovery: that notice -> the first train record logged after it and after the outage
    ended (the last fault entry), i.e. training runs again.
    """
    injected = [e for e in events if e["event"] == "fault_injected"]
    if not injected:
        return {"detection_s": None, "recovery_s": None}
    fault_t, outage_end = injected[0]["t"], injected[-1]["t"]
    notice = next((e for e in events if e["event"] in NOTICES and e["t"] >= fault_t), None)
    if notice is None:
        return {"detection_s": None, "recovery_s": None, "noticed": False}
    since = max(notice["t"], outage_end)
    back = next((r["t"] for r in trains if r["t"] > since), None)
    return {"detection_s": notice["t"] - fault_t, "noticed_by": notice["event"],
            "recovery_s": None if back is None else back - notice["t"]}  # fmt: skip


def leftovers(run_path: Path) -> dict[str, Any]:
    """What a finished run left: live worker processes, labelled resources, its lease."""
    from testbed.emulation import lease
    from testbed.emulation.cleanup import find

    pids = [json.loads(p.read_text())["pid"] for p in (run_path / "workers").glob("*.ready.json")]
    found = find(run_path.name)
    left = {k: v for k, v in vars(found).items() if v}
    alive = [p for p in pids if pid_alive(p)]
    leased = run_path.name in [x.run_id for x in lease.leases()]
    return {"processes": alive, "resources": left, "lease": leased,
            "count": len(alive) + sum(len(v) for v in left.values()) + int(leased)}  # fmt: skip


def _events(run_path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run_path / "events.jsonl").read_text().splitlines()]


def measure(spec: Spec, root: Path | None, fault_free: dict[str, Any] | None) -> dict[str, Any]:
    """One run: completion, timings, steps lost, accuracy against the fault-free run, leftovers."""
    try:
        run_path = run_experiment(spec, root, progress=False).path
    except Exception as err:  # noqa: BLE001 - a fault not survived is a result, not a crash
        run_path = max((root or Path("results")).glob(f"{spec.name}/*"), key=lambda p: p.name)
        print(f"faults: {spec.name} failed: {err}", flush=True)
    s = read_summary(run_path)
    trains = list(read_metrics(run_path, "train"))
    row: dict[str, Any] = {
        "run": str(run_path), "status": s["status"], "reason": s.get("reason"),
        "completed": s["status"] == "completed" and s.get("iterations") == spec.training.iterations,
        "final_test_accuracy": s.get("final_test_accuracy"), "train_time_s": s.get("train_time_s"),
        "wall_time_s": s.get("wall_time_s"), "it_s": s.get("mean_it_s"),
        "restarts": s.get("resilience", {}).get("restarts"),
        "steps_lost": s.get("resilience", {}).get("steps_lost"),
        "failures": s.get("resilience", {}).get("failures"),
        **timings(_events(run_path), trains), "leftovers": leftovers(run_path),
        "train_curve": [[r["wall_s"], r["loss"]] for r in trains],
    }  # fmt: skip
    if fault_free is not None and row["final_test_accuracy"] is not None:
        row["accuracy_points"] = 100 * (row["final_test_accuracy"] - fault_free["final_test_accuracy"])
    return row


def one_mode(mode: str, root: Path | None, rng: random.Random) -> dict[str, Any]:
    free = measure(make_spec(mode, [], "none"), root, None)
    train_s = float(free["train_time_s"] or 30.0)
    out: dict[str, Any] = {"fault_free": free, "faults": {}}
    for fault in FAULTS:
        at = round(rng.uniform(train_s / 3, 2 * train_s / 3), 2)
        row = measure(make_spec(mode, schedule(fault, at), fault), root, free)
        out["faults"][fault] = {"at_s": at, **row}
        print(f"faults {mode} {fault} at {at} s: {row['status']}, detect {row['detection_s']}, "
              f"recover {row['recovery_s']}, lost {row['steps_lost']}, "
              f"acc {row.get('accuracy_points')}", flush=True)  # fmt: skip
    return out


def controller_sigkill(root: Path) -> dict[str, Any]:
    """SIGKILL `testbed run` mid-training: worker lifetime after it, leftovers, the sweep."""
    from testbed.emulation.cleanup import find

    spec = make_spec("sg", [], "controller-sigkill")
    results = root / "controller-sigkill"
    path = results / "spec.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = spec.model_dump(mode="json", exclude={"scale"})
    raw["training"]["iterations"] = 100_000
    path.write_text(yaml.safe_dump(raw))
    argv = [sys.executable, "-m", "testbed", "run", str(path), "--results", str(results),
            "--no-progress"]  # fmt: skip
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while not any('"kind": "train"' in p.read_text() for p in results.glob("*/*/metrics.jsonl")):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            return {"error": "the run never trained"}
        time.sleep(0.1)
    run_path = next(results.glob("*/*/metrics.jsonl")).parent
    pids = [json.loads(p.read_text())["pid"] for p in (run_path / "workers").glob("*.ready.json")]
    killed = time.monotonic()
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    while any(pid_alive(p) for p in pids) and time.monotonic() - killed < 30:
        time.sleep(0.02)
    exit_s = time.monotonic() - killed
    before = {k: len(v) for k, v in vars(find(run_path.name)).items() if v}
    swept = subprocess.run([sys.executable, "-m", "testbed.emulation.cleanup"], capture_output=True,
                           text=True, timeout=120)  # fmt: skip
    after = {k: v for k, v in vars(find(run_path.name)).items() if v}
    return {"workers": len(pids), "workers_alive_after_s": exit_s,
            "workers_left": [p for p in pids if pid_alive(p)], "left_before_sweep": before,
            "sweep_output": swept.stdout.strip(), "left_after_sweep": after,
            "leftovers": len([p for p in pids if pid_alive(p)]) + sum(len(v) for v in after.values())}  # fmt: skip


def verdict(modes: dict[str, Any], sigkill: dict[str, Any]) -> dict[str, Any]:
    """Each target against the worst measured value."""
    rows = [r for m in modes.values() for r in m["faults"].values()]

    def worst(key: str) -> float | None:
        vals = [abs(r[key]) if key == "accuracy_points" else r[key] for r in rows]
        return None if any(v is None for v in vals) else max(vals)  # type: ignore[type-var]

    left = max(r["leftovers"]["count"] for r in rows) + int(sigkill.get("leftovers", 1))
    measured = {"completed": all(r["completed"] for r in rows), "detection_s": worst("detection_s"),
                "recovery_s": worst("recovery_s"), "steps_lost": worst("steps_lost"),
                "accuracy_points": worst("accuracy_points"), "leftovers": left}  # fmt: skip
    met = {k: (measured[k] is not None and measured[k] <= t) for k, t in TARGETS.items()}
    met["completed"] = measured["completed"]
    return {"measured_worst": measured, "met": met}


def figure(modes: dict[str, Any], out: Path) -> Path:
    fig, axes = plt.subplots(1, 1 + len(modes), figsize=(5 * (1 + len(modes)), 4))
    width = 0.35
    for k, (mode, m) in enumerate(modes.items()):
        xs = [i + k * width for i in range(len(FAULTS))]
        det = [m["faults"][f]["detection_s"] or 0 for f in FAULTS]
        rec = [m["faults"][f]["recovery_s"] or 0 for f in FAULTS]
        axes[0].bar(xs, rec, width, bottom=det, label=f"{mode} recovery", alpha=0.6)
        axes[0].bar(xs, det, width, label=f"{mode} detection")
    axes[0].axhline(TARGETS["recovery_s"], ls="--", c="gray", lw=0.8)
    axes[0].set_xticks([i + width / 2 for i in range(len(FAULTS))], FAULTS)
    axes[0].set_ylabel("seconds after the fault")
    axes[0].set_title("detection + recovery")
    axes[0].legend(fontsize=7)
    for ax, (mode, m) in zip(axes[1:], modes.items(), strict=True):
        for label, row in [("no fault", m["fault_free"]), *m["faults"].items()]:
            curve = row["train_curve"]
            ax.plot([c[0] for c in curve], [c[1] for c in curve], lw=0.8, label=label)
        ax.set_title(f"{mode}: training loss vs wall time")
        ax.set_xlabel("wall s")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def main(results_root: Path | None = None) -> Path:
    """Faults on 4 edge devices under restart: detection, recovery, steps lost, accuracy, leftovers."""
    made_by = provenance.start(command("faults"))
    if os.geteuid() != 0:
        raise SystemExit("make bench NAME=faults needs root (namespaces, cgroups, tc)")
    rng = random.Random(SEED)
    out = bench_dir(results_root)
    root = out / "faults-runs"
    modes = {mode: one_mode(mode, root, rng) for mode in STEPS}
    sigkill = controller_sigkill(root)
    body = {"modes": modes, "controller_sigkill": sigkill, "targets": TARGETS,
            **verdict(modes, sigkill), "devices": DEVICES, "cpus": CPUS, "memory": MEMORY,
            "batch_size": BATCH, "steps": STEPS, "checkpoint_every": CHECKPOINT_EVERY,
            "outage_s": OUTAGE_S, "seed": SEED}  # fmt: skip
    figure(modes, out / "faults.png")
    return write_result(out / "faults.json", body, made_by)

