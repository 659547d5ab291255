"""`testbed cluster`: hold an emulated cluster up and run your own programs in it.

    testbed cluster up four-layer-sg-edge ['cluster.links.*.rate=10mbit'] [--name edge]
    testbed cluster exec edge0 -- iperf3 -s
    testbed cluster shape edge0 rate=10mbit delay=5ms       (a pair: shape edge0 edge1 rate=...)
    testbed cluster status
    testbed cluster down

A holder process (testbed.controller.cluster_hold) owns the cluster; these commands talk to it.
Everything is labelled with the run id cluster-<name> and removed by `down`, also after a crash.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from testbed.cli.common import OverridesArg, ResultsOpt, fail, load, table

app = typer.Typer(no_args_is_help=True, help=__doc__.split("\n\n")[0])
NameOpt = Annotated[Optional[str], typer.Option("--name", "-n", help="which held cluster (default: the only one)")]
UP_TIMEOUT_S = 300.0
LINK_FIELDS = ("rate", "delay", "jitter", "loss")


def _root(results: Path | None) -> Path:
    from testbed.metrics.run_dir import default_results_root

    return (results or default_results_root()) / "clusters"


def _held(results: Path | None) -> dict[str, dict[str, Any]]:
    """name -> state of every cluster whose holder wrote its state."""
    from testbed.controller.cluster_hold import STATE_FILE

    root = _root(results)
    out = {}
    for path in sorted(root.glob(f"*/{STATE_FILE}")) if root.is_dir() else []:
        try:
            out[path.parent.name] = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
    return out


def _pick(name: str | None, results: Path | None) -> dict[str, Any]:
    held = _held(results)
    if name is not None:
        if name not in held:
            fail(f"no cluster {name!r} is up; held: {', '.join(held) or 'none'} (testbed cluster up SPEC)")
        return held[name]
    if len(held) != 1:
        fail(f"{len(held)} clusters are up ({', '.join(held) or 'none'}); name one with --name"
             if held else "no cluster is up: testbed cluster up SPEC")
    return next(iter(held.values()))


def _ask(state: dict[str, Any], message: dict[str, Any], **kw: Any) -> dict[str, Any]:
    from testbed.controller.cluster_hold import HolderGone, request

    try:
        answer = request(state, message, **kw)
    except HolderGone as err:
        fail(f"{err}; remove what it left: testbed cluster down --name {state['name']}", code=1)
    if "error" in answer:
        fail(f"cluster {state['name']!r}: {answer['error']}")
    return answer


@app.command()
def up(
    spec: Annotated[str, typer.Argument(help="experiment name or spec file whose cluster: section to bring up")],
    overrides: OverridesArg = None,
    name: NameOpt = None,
    results: ResultsOpt = None,
) -> None:
    """Bring a spec's cluster up and keep it until `testbed cluster down`."""
    from testbed.controller.cluster_hold import LOG_FILE, SPEC_FILE, STATE_FILE, run_id_of
    from testbed.emulation.naming import check_run_id

    doc = load(spec, "paper", overrides)
    chosen = doc.specs[0]
    if doc.kind != "experiment" or chosen.cluster is None:
        fail(f"{spec}: expected an experiment spec with a cluster: section (devices, links)")
    name = name or chosen.name
    try:
        check_run_id(run_id_of(name))
    except ValueError as err:
        fail(f"--name {name!r}: {err}")
    if name in _held(results):
        fail(f"cluster {name!r} is already up; testbed cluster down --name {name} first")
    folder = _root(results) / name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / SPEC_FILE).write_text(json.dumps({"name": name, "cluster": chosen.cluster.model_dump(mode="json")}))
    with open(folder / LOG_FILE, "ab") as log:
        holder = subprocess.Popen([sys.executable, "-m", "testbed.controller.cluster_hold", str(folder)],
                                  stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
    deadline = time.monotonic() + UP_TIMEOUT_S
    while not (folder / STATE_FILE).is_file():
        if holder.poll() is not None or time.monotonic() > deadline:
            if holder.poll() is None:
                holder.terminate()
            tail = (folder / LOG_FILE).read_text()[-3000:]
            fail(f"cluster {name!r} did not come up; holder log ({folder / LOG_FILE}):\n{tail}", code=1)
        time.sleep(0.1)  # polling for the holder's state file, written once the cluster is up
    _print_state(json.loads((folder / STATE_FILE).read_text()))


def _print_state(state: dict[str, Any], processes: list[dict[str, Any]] | None = None) -> None:
    typer.echo(f"cluster {state['name']} ({state['backend']}, run id {state['run_id']}, holder pid "
               f"{state['pid']}): {state['fidelity_level']}")
    rows = [(n, d["address"], d["cpus"] if d["cpus"] is not None else "-",
             d["memory_bytes"] if d["memory_bytes"] is not None else "-", d["arch"])
            for n, d in state["devices"].items()]
    typer.echo(table(rows, ("device", "address", "cpus", "memory", "arch")))
    if state["links"]:
        typer.echo(table([(k, ", ".join(f"{f}={v}" for f, v in s.items())) for k, s in state["links"].items()],
                         ("link", "settings")))
    for note in state.get("fidelity_notes", []):
        typer.echo(f"note: {note}")
    if processes:
        typer.echo(table([(p["pid"], p["device"], "running" if p["running"] else f"exit {p['exit']}",
                           " ".join(p["argv"])) for p in processes], ("pid", "device", "state", "command")))


@app.command("exec", context_settings={"allow_interspersed_args": False})
def exec_cmd(
    device: Annotated[str, typer.Argument(help="device to run in")],
    command: Annotated[list[str], typer.Argument(help="program and arguments (after --)")],
    name: NameOpt = None,
    results: ResultsOpt = None,
) -> None:
    """Run a program as DEVICE (its namespace and cgroup, or its container); exit with its status."""
    command = command[1:] if command[:1] == ["--"] else command
    if not command:
        fail("expected a program after the device: testbed cluster exec DEVICE -- PROGRAM [ARGS]")
    state = _pick(name, results)
    if device not in state["devices"]:
        fail(f"unknown device {device!r}; cluster {state['name']!r} has {', '.join(state['devices'])}")
    message = {"op": "exec", "device": device, "argv": command, "env": dict(os.environ), "cwd": os.getcwd()}
    answer = _ask(state, message, fds=[0, 1, 2], timeout_s=None)
    raise typer.Exit(int(answer["exit"]))


@app.command()
def shape(
    args: Annotated[list[str], typer.Argument(help="DEVICE [DEVICE2] then rate=, delay=, jitter=, loss=")],
    name: NameOpt = None,
    results: ResultsOpt = None,
) -> None:
    """Change a device's access link (or the path between two devices) while the cluster runs."""
    devices = [a for a in args if "=" not in a]
    settings = dict(a.split("=", 1) for a in args if "=" in a)
    if not 1 <= len(devices) <= 2 or not settings or set(settings) - set(LINK_FIELDS):
        fail(f"expected DEVICE [DEVICE2] and settings among {', '.join(f + '=' for f in LINK_FIELDS)}; "
             f"got {' '.join(args)}")
    state = _pick(name, results)
    unknown = [d for d in devices if d not in state["devices"]]
    if unknown:
        fail(f"unknown device {unknown[0]!r}; cluster {state['name']!r} has {', '.join(state['devices'])}")
    target: Any = devices[0] if len(devices) == 1 else devices
    link = _ask(state, {"op": "shape", "target": target, "settings": settings})["link"]
    typer.echo(f"{'-'.join(devices)}: {', '.join(f'{k}={v}' for k, v in link.items())}")


@app.command()
def status(name: NameOpt = None, results: ResultsOpt = None) -> None:
    """The held clusters: devices, addresses, links, fidelity and the programs started in them."""
    held = _held(results)
    if name is not None:
        held = {name: _pick(name, results)}
    if not held:
        typer.echo("no cluster is up")
    from testbed.controller.cluster_hold import HolderGone, request

    for state in held.values():
        try:
            answer = request(state, {"op": "status"})
        except HolderGone:
            typer.echo(f"cluster {state['name']}: holder gone (pid {state['pid']}); testbed cluster down --name {state['name']}")
            continue
        _print_state(answer, answer.get("processes"))


@app.command()
def down(name: NameOpt = None, results: ResultsOpt = None) -> None:
    """Stop every program, take the cluster down and remove everything labelled with its run id."""
    from testbed.controller.cluster_hold import STATE_FILE, HolderGone, request, run_id_of
    from testbed.emulation import cleanup

    state = _pick(name, results) if name is None else _held(results).get(name, {"name": name})
    name = str(state["name"])
    folder = _root(results) / name
    if "socket" in state:
        try:
            request(state, {"op": "down"})
            _wait_gone(folder / STATE_FILE)
        except HolderGone:  # crashed: the labelled sweep below removes what it left
            sock = Path(state["socket"])
            sock.unlink(missing_ok=True)
            if sock.parent.is_dir():
                sock.parent.rmdir()
    removed = cleanup.clean(run_id_of(name))
    (folder / STATE_FILE).unlink(missing_ok=True)
    left = [f"{k}: {', '.join(map(str, v))}" for k, v in vars(removed).items() if v]
    typer.echo(f"cluster {name} is down" + (f"; also removed {'; '.join(left)}" if left else ""))


def _wait_gone(path: Path, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while path.exists() and time.monotonic() < deadline:
        time.sleep(0.1)  # polling for the holder to remove its state file after tearing down


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="cluster")
