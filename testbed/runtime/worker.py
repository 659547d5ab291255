"""Worker process entry: `python -m testbed.runtime.worker CONFIG.json` (stage, ps or replica)."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
import traceback
from pathlib import Path
from types import FrameType

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow is imported

from testbed.metrics.run_dir import write_json_atomic  # noqa: E402
from testbed.processes import die_with_parent  # noqa: E402
from testbed.runtime import workdir  # noqa: E402
from testbed.runtime.config import WorkerConfig, load_config  # noqa: E402


def write_ready(cfg: WorkerConfig, address: str) -> None:
    """Tell the controller where this worker listens (atomic rename: never a partial file)."""
    body = {"address": address, "pid": os.getpid(), "role": cfg.role}
    write_json_atomic(cfg.path(workdir.READY), body)


def write_summary(cfg: WorkerConfig, body: dict[str, object]) -> None:
    write_json_atomic(cfg.path(workdir.SUMMARY), body)


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
    parent = os.getppid()
    signal.signal(signal.SIGTERM, _on_sigterm)
    die_with_parent(signal.SIGTERM)  # at once when the controller ends, even by SIGKILL
    if os.getppid() != parent:  # it ended before the kernel was asked
        return 1
    watch_parent()  # the fallback where prctl is missing, or SIGTERM cannot end the main thread
    cfg = load_config(Path(args[0]))
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
