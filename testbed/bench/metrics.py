"""Benchmark `metrics`: training it/s with the InfluxDB sink on vs off, same session, one run.

One in-process session (four-layer SG, smoke hyper-parameters) trains in rounds that
alternate sink off / on, each round writing a `train` point every step (log_every 1,
ten times the default rate, so the sink's cost is not hidden). Rounds come in adjacent
off/on pairs (order flipped every pair, ABBA); the ratio is the median over pairs of
on/off it/s, so load that drifts over minutes (other tenants of a shared host) cancels. The server is $INFLUX_URL or a local VictoriaMetrics.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import matplotlib
import yaml

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from testbed.bench import BENCHES, bench_dir, command, write_result
from testbed.metrics import provenance

EXPERIMENT, SCALE = "four-layer-sg", "smoke"
PAIRS, ITERATIONS, TARGET = 8, 150, 0.03


def _session(iterations: int) -> Any:
    from testbed.data import load_dataset
    from testbed.spec.load import apply_scale, parse_spec, resolve_path
    from testbed.training.session import Session, configure_threads

    path = resolve_path(EXPERIMENT)
    raw = apply_scale(yaml.safe_load(path.read_text()), SCALE, str(path))
    raw["training"].update(iterations=iterations, eval_every=iterations, log_every=1, eval_samples=500)
    spec = parse_spec({k: v for k, v in raw.items() if k != "scale"}, f"{path} (bench)", None)
    configure_threads(spec.training.threads)
    return Session.build(spec, load_dataset(spec.data.dataset))


def _round(session: Any, workdir: Path, url: str | None, index: int) -> dict[str, Any]:
    """One training round; with url, every point also goes through an InfluxSink."""
    from testbed.metrics.influx import InfluxSink
    from testbed.metrics.run_dir import RunDir
    from testbed.training.loop import Recorder, train

    run = RunDir(workdir / f"round-{index}-{'on' if url else 'off'}")
    sink = InfluxSink(url, "", "testbed", "bench", run.path, {"run": run.run_id}) if url else None
    tags = {"run": run.run_id, "experiment": EXPERIMENT, "mode": "inprocess"}
    cpu0 = time.process_time()  # all threads of this process, the sink's included
    result = train(session, Recorder(run, tags, [sink] if sink else None), progress=False)
    cpu_s = time.process_time() - cpu0
    counts = sink.close() if sink else {}
    run.close()
    return {"sink": bool(url), "it_s": result["mean_it_s"], "counts": counts,
            "cpu_ms_per_it": 1000 * cpu_s / result["iterations"]}


def measure(url: str, workdir: Path, pairs: int = PAIRS, iterations: int = ITERATIONS) -> dict[str, Any]:
    """Adjacent off/on pairs (order flipped each pair) after one warm-up round."""
    session = _session(iterations)
    _round(session, workdir, None, -1)  # traces the step function; not counted
    out: list[dict[str, Any]] = []
    pair_ratios: list[float] = []
    cpu_ratios: list[float] = []
    for i in range(pairs):
        pair = {on: _round(session, workdir, url if on else None, i)
                for on in ((False, True) if i % 2 == 0 else (True, False))}
        out.extend(pair.values())
        pair_ratios.append(pair[True]["it_s"] / pair[False]["it_s"])
        cpu_ratios.append(pair[True]["cpu_ms_per_it"] / pair[False]["cpu_ms_per_it"])
    off = [r["it_s"] for r in out if not r["sink"]]
    on = [r["it_s"] for r in out if r["sink"]]
    ratio = statistics.median(pair_ratios)
    return {
        "experiment": EXPERIMENT, "scale": SCALE, "iterations_per_round": iterations,
        "points_per_step": 1, "rounds": out, "it_s_off": off, "it_s_on": on,
        "pair_ratios": pair_ratios, "ratio_on_off": ratio,
        "ratio_of_medians": statistics.median(on) / statistics.median(off),
        "overhead_pct": (1 - ratio) * 100,
        "cpu_pair_ratios": cpu_ratios, "cpu_per_it_ratio_on_off": statistics.median(cpu_ratios),
        "load_avg_1m": os.getloadavg()[0], "cpus": os.cpu_count(),
        "target_pct": TARGET * 100, "target_met": ratio >= 1 - TARGET,
        "measured": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def figure(result: dict[str, Any], out: Path) -> list[Path]:
    """it/s of each round in order, sink off vs on, with the medians."""
    fig, ax = plt.subplots(figsize=(7, 3.5))
    for on, colour in ((False, "tab:blue"), (True, "tab:orange")):
        xs = [i for i, r in enumerate(result["rounds"]) if r["sink"] is on]
        ys = [r["it_s"] for r in result["rounds"] if r["sink"] is on]
        ax.scatter(xs, ys, c=colour, label=f"sink {'on' if on else 'off'}")
        ax.axhline(statistics.median(ys), c=colour, ls="--", lw=1)
    ax.set_xlabel("round")
    ax.set_ylabel("training it/s")
    ax.set_title(f"InfluxDB sink on/off: ratio {result['ratio_on_off']:.3f}")
    ax.legend(fontsize=8)
    paths = [out.with_suffix(".png"), out.with_suffix(".svg")]
    for p in paths:
        fig.savefig(p, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return paths


@BENCHES.register("metrics")
def main(results_root: Path | None = None) -> Path:
    """Run the benchmark against $INFLUX_URL or a local VictoriaMetrics; write JSON + figure."""
    from testbed.metrics.influx import InfluxConfig
    from testbed.testing.victoria import local_victoria

    made_by = provenance.start(command("metrics"))
    with ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        env = InfluxConfig.from_env()
        url = env.url if env else stack.enter_context(local_victoria(work))
        result = measure(url, work)
    out = write_result(bench_dir(results_root) / "metrics.json", result, made_by)
    figure(result, out.with_suffix(""))
    print(f"metrics sink on/off it/s ratio {result['ratio_on_off']:.4f} "
          f"(overhead {result['overhead_pct']:.2f}%, target <= {TARGET * 100:.0f}%); "
          f"CPU per iteration on/off {result['cpu_per_it_ratio_on_off']:.4f}; "
          f"load average {result['load_avg_1m']:.1f} on {result['cpus']} CPUs")
    return out
