"""Experiments started from the dashboard: tracked subprocesses, stopped by SIGINT, reaped."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from testbed.dashboard.paths import BadName, OutsideRoot, check_name, contained
from testbed.dashboard.runs import is_run_dir

# SIGINT must raise KeyboardInterrupt in the child even when this process was started with SIGINT
# ignored (background jobs of a non-interactive shell), so the run records "interrupted".
CHILD_BOOT = (
    "import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
    "sys.argv[0] = 'testbed'; from testbed.cli import main; main()"
)
LOG_TAIL_BYTES = 4000


class JobRefused(Exception):
    """A start or stop request that cannot be carried out; `status` is the HTTP status to answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class Job:
    """One `testbed run` subprocess and the run directory it turned out to write."""

    id: str
    experiment: str
    scale: str | None
    proc: subprocess.Popen[bytes]
    log_path: Path
    before: frozenset[str]
    started: float = field(default_factory=time.time)
    run: str | None = None
    stop_requested: float | None = None

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "experiment": self.experiment,
            "scale": self.scale,
            "pid": self.proc.pid,
            "started": self.started,
            "run": self.run,
            "alive": self.alive,
            "exit_code": self.proc.returncode,
            "stop_requested": self.stop_requested,
            "log_tail": _tail(self.log_path),
        }


def _tail(path: Path) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(max(0, path.stat().st_size - LOG_TAIL_BYTES))
            return f.read().decode(errors="replace")
    except OSError:
        return ""


def _load_yaml(path: Path) -> dict[str, Any]:
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as err:
        raise JobRefused(400, f"{path.name}: not a readable YAML spec: {err}") from None
    if not isinstance(raw, dict):
        raise JobRefused(400, f"{path.name}: expected a YAML mapping at the top level")
    return raw


def _scales(raw: dict[str, Any]) -> list[str]:
    """The scale names a spec defines (besides 'paper')."""
    scales = raw.get("scales")
    return [str(k) for k in scales] if isinstance(scales, dict) else []


class JobManager:
    """Starts specs from one experiments directory into one results root, `max_running` at most."""

    def __init__(self, results_root: Path, experiments_dir: Path, max_running: int = 2) -> None:
        self.results_root = results_root.resolve()
        self.experiments_dir = experiments_dir.resolve()
        self.max_running = max_running
        self._log_dir: Path | None = None
        self._jobs: dict[str, Job] = {}
        self._reapers: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._closed = False

    def log_dir(self) -> Path:
        """Where the started runs' output goes (a temporary directory, made on first use)."""
        if self._log_dir is None:
            self._log_dir = Path(tempfile.mkdtemp(prefix="testbed-dashboard-logs-"))
        return self._log_dir

    def experiment_names(self) -> list[str]:
        return sorted(p.stem for p in self.experiments_dir.glob("*.yaml") if p.is_file())

    def experiments(self) -> list[dict[str, Any]]:
        """Startable experiments: name, description, scales; suites flagged (not startable here)."""
        out = []
        for name in self.experiment_names():
            try:
                raw = _load_yaml(self.experiments_dir / f"{name}.yaml")
            except JobRefused:
                continue
            out.append(
                {
                    "name": name,
                    "description": str(raw.get("description", "")),
                    "scales": ["paper", *_scales(raw)],
                    "suite": "suite" in raw,
                }
            )
        return out

    def spec_file(self, name: str, scale: str | None) -> tuple[Path, str]:
        """The spec file and the experiment (results sub-directory) a start request names."""
        try:
            check_name("experiment", name)
            if scale is not None:
                check_name("scale", scale)
        except BadName as err:
            raise JobRefused(400, str(err)) from None
        if name not in self.experiment_names():
            known = ", ".join(self.experiment_names())
            raise JobRefused(404, f"unknown experiment {name!r}; known experiments: {known}")
        try:
            path = contained(self.experiments_dir, f"{name}.yaml")
        except OutsideRoot as err:
            raise JobRefused(400, f"experiment {name!r} refused: {err}") from None
        raw = _load_yaml(path)
        if "suite" in raw:
            raise JobRefused(400, f"{name!r} is a suite; start its member experiments one by one")
        scales = _scales(raw)
        if scale not in (None, "paper", *scales):
            raise JobRefused(
                400, f"{name}: scale {scale!r} is not defined; known: paper, {', '.join(scales)}"
            )
        experiment = str(raw.get("name", name))
        try:
            check_name("spec name", experiment)
        except BadName as err:
            raise JobRefused(400, f"{name}: {err}") from None
        return path, experiment

    def start(self, name: str, scale: str | None) -> Job:
        """Spawn `testbed run SPEC.yaml [--scale S] --results ROOT` in its own process group."""
        spec_path, experiment = self.spec_file(name, scale)
        with self._lock:
            self._check_capacity(experiment)
            job_id = secrets.token_hex(6)
            log_path = self.log_dir() / f"{job_id}.log"
            cmd = [
                sys.executable,
                "-c",
                CHILD_BOOT,
                "run",
                str(spec_path),  # the validated file itself, never a name the child re-resolves
                "--results",
                str(self.results_root),
                "--no-progress",
                *(["--scale", scale] if scale else []),
            ]
            env = {
                **os.environ,
                "TESTBED_EXPERIMENTS": str(self.experiments_dir),
                "TESTBED_RESULTS": str(self.results_root),
            }
            with open(log_path, "wb") as log:
                proc = subprocess.Popen(
                    cmd,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=env,
                    start_new_session=True,
                )
            job = Job(
                job_id, experiment, scale, proc, log_path, frozenset(self._run_ids(experiment))
            )
            self._jobs[job_id] = job
            reaper = threading.Thread(target=proc.wait, name=f"reap-{job_id}", daemon=True)
            reaper.start()
            self._reapers.append(reaper)
        return job

    def _check_capacity(self, experiment: str) -> None:
        if self._closed:
            raise JobRefused(503, "the dashboard is shutting down")
        alive = [j for j in self._jobs.values() if j.alive]
        if len(alive) >= self.max_running:
            raise JobRefused(
                409, f"{len(alive)} runs already going (max {self.max_running}); stop one first"
            )
        for job in alive:
            if job.experiment == experiment and self._bind(job) is None:
                raise JobRefused(
                    409, f"a start of {experiment!r} is still initialising; try again shortly"
                )

    def _run_ids(self, experiment: str) -> set[str]:
        exp_dir = self.results_root / experiment
        return {p.name for p in exp_dir.iterdir() if p.is_dir()} if exp_dir.is_dir() else set()

    def _bind(self, job: Job) -> str | None:
        """The run id the job created: its experiment's run directory that was not there before."""
        if job.run is None:
            new = sorted(self._run_ids(job.experiment) - job.before)
            new = [r for r in new if is_run_dir(self.results_root / job.experiment / r)]
            if new:
                job.run = new[0]
        return job.run

    def jobs(self) -> list[Job]:
        with self._lock:
            for job in self._jobs.values():
                self._bind(job)
            return sorted(self._jobs.values(), key=lambda j: j.started, reverse=True)

    def get(self, job_id: str) -> Job | None:
        return next((j for j in self.jobs() if j.id == job_id), None)

    def job_for_run(self, run_path: Path) -> Job | None:
        """The job that wrote this run directory, if this dashboard started it."""
        for job in self.jobs():
            if (
                job.run
                and (self.results_root / job.experiment / job.run).resolve() == run_path.resolve()
            ):
                return job
        return None

    def tracker(self, run_path: Path) -> bool | None:
        """Whether the run's process is alive, when this dashboard started it; else None."""
        job = self.job_for_run(run_path)
        return None if job is None else job.alive

    def stop(self, job: Job) -> None:
        """Send SIGINT to the run's process group (like Ctrl-C), so it records 'interrupted'."""
        if job.alive:
            job.stop_requested = time.time()
            _signal_group(job.proc, signal.SIGINT)

    def shutdown(self, grace_s: float = 20.0) -> None:
        """Stop every live job (SIGINT, then SIGTERM, then SIGKILL) and reap all. Idempotent."""
        with self._lock:
            self._closed = True
            jobs = list(self._jobs.values())
        for sig, wait_s in ((signal.SIGINT, grace_s), (signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
            live = [j for j in jobs if j.alive]
            for job in live:
                _signal_group(job.proc, sig)
            deadline = time.monotonic() + wait_s
            for job in live:
                try:
                    job.proc.wait(timeout=max(0.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    pass
        for reaper in self._reapers:
            reaper.join(timeout=1.0)


def _signal_group(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass
