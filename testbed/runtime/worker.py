"""Worker process entry: `python -m testbed.runtime.worker CONFIG.json` (stage, ps or replica)."""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
import traceback
from pathlib import Path
from types import FrameType

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow is imported

# The environment a worker is started with. glibc serves every allocation over 128 KB with a
# fresh mmap and returns it on free, so each multi-MB tensor copy on the message path (bytes,
# protobuf, gRPC slices) page-faults its way through new memory: a 3.2 MB Forward cost ~11 ms of
# CPU on each side. Keeping such buffers in the heap for reuse cuts that to ~2.5 / 4 ms
# (measured over loopback gRPC; see README, Distributed runs). glibc reads these at start-up.
WORKER_ENV = {
    "TF_CPP_MIN_LOG_LEVEL": "2",
    "PYTHONUNBUFFERED": "1",
    "MALLOC_MMAP_THRESHOLD_": str(128 * 1024 * 1024),
    "MALLOC_TRIM_THRESHOLD_": str(512 * 1024 * 1024),
}

from testbed.runtime.config import WorkerConfig, load_config  # noqa: E402


def write_ready(cfg: WorkerConfig, address: str) -> None:
    """Tell the controller where this worker listens (atomic rename: never a partial file)."""
    path = cfg.path(".ready.json")
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"address": address, "pid": os.getpid(), "role": cfg.role}))
    os.replace(tmp, path)


def write_summary(cfg: WorkerConfig, body: dict[str, object]) -> None:
    path = cfg.path(".summary.json")
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(body, indent=2, sort_keys=True))
    os.replace(tmp, path)


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


def watch_parent(interval_s: float = 0.5, grace_s: float = 5.0) -> None:
    """End this worker when its controller is gone (re-parented), even if it was SIGKILLed."""
    parent = os.getppid()

    def run() -> None:
        while os.getppid() == parent:
            time.sleep(interval_s)
        print(f"controller (pid {parent}) is gone; stopping", file=sys.stderr, flush=True)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(grace_s)
        os._exit(1)

    threading.Thread(target=run, name="watch-parent", daemon=True).start()


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m testbed.runtime.worker CONFIG.json", file=sys.stderr)
        return 2
    cfg = load_config(Path(args[0]))
    signal.signal(signal.SIGTERM, _on_sigterm)
    watch_parent()
    from testbed.runtime.replica import configure_threads

    configure_threads(cfg.spec.training.threads)
    from testbed.runtime.roles import run_role  # imports TensorFlow

    started = time.time()
    run_role(cfg, lambda address: write_ready(cfg, address), lambda b: write_summary(cfg, b))
    print(f"worker {cfg.name} finished after {time.time() - started:.1f} s", file=sys.stderr)
    return 0


def run_and_exit() -> None:
    """main(), then os._exit: everything is flushed by then, and skipping the interpreter's
    TensorFlow teardown saves seconds per worker. SIGTERM (SystemExit) exits 0."""
    code = 1
    try:
        code = main()
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else 0
    except BaseException:  # noqa: BLE001 - reported on stderr, exit code 1
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


if __name__ == "__main__":
    run_and_exit()
