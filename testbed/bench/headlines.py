"""The README's headline results, as pure functions of each benchmark's JSON.

One function per results/bench/<name>.json, registered in the order the README lists them; each
returns `Headline` rows (what was measured, the number, the target, whether it was met). The
command comes from the JSON's provenance. `testbed.report.readme` renders them; a benchmark
that adds a headline registers its function here (see docs/benchmarks.md).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Headline:
    result: str
    measured: str
    target: str = ""
    met: bool | None = None  # None: no target
    commands: tuple[str, ...] = ()  # what made this row, where not the result's one command


Rows = Callable[[dict[str, Any]], list[Headline]]
HEADLINES: dict[str, Rows] = {}  # in the README's order


def headline(name: str) -> Callable[[Rows], Rows]:
    """Register the rows of results/bench/<name>.json (in the order of registration)."""

    def add(fn: Rows) -> Rows:
        if name in HEADLINES:
            raise ValueError(f"headline {name!r} is registered twice")
        HEADLINES[name] = fn
        return fn

    return add


def _all(flags: Sequence[bool | None]) -> bool | None:
    known = [f for f in flags if f is not None]
    return all(known) if known else None


def _slash(values: Sequence[str]) -> str:
    return " / ".join(values)


def _mark(text: str, met: bool | None) -> str:
    """A value in bold where it misses its target."""
    return f"**{text}**" if met is False else text


@headline("accuracy")
def accuracy(doc: dict[str, Any]) -> list[Headline]:
    """BP − SG per model with both cells; BP − local losses per model with a local cell; each
    row names the commands (chunks) that measured its cells."""
    out = []
    for key, method, label in (("gap", "sg", "SG"), ("local_gap", "local", "local losses")):
        rows = [r for r in doc["rows"] if r.get(key) is not None]
        if not rows:
            continue
        names = _slash(r["model"].replace("vgg16", "VGG16 (¼ width)") for r in rows)
        cells = [doc.get("cells", {}).get(r["model"], {}).get(m, {})
                 for r in rows for m in ("bp", method)]  # fmt: skip
        out.append(Headline(
            f"BP − {label} test accuracy after the bench budget, {names}",
            _slash(_mark(f"{100 * r[key]:.2f}", r[f"{key}_met"]) for r in rows) + " pt",
            "≤ " + _slash(f"{100 * r[f'{key}_target']:.0f}" for r in rows) + " pt",
            _all([r[f"{key}_met"] for r in rows]),
            tuple(dict.fromkeys(c["command"] for c in cells if c.get("command"))),
        ))  # fmt: skip
    return out


def _cell_name(row: dict[str, Any]) -> str:
    return f"{row['model']} x{row['stages']}"


def _vs_bp(ratio: dict[str, Any]) -> str:
    it_s = ratio["it_s"]
    spread = f" ({it_s['min']:.2f}–{it_s['max']:.2f}, n={it_s['n']})" if it_s["n"] > 1 else ""
    return f"{it_s['median']:.2f} vs {ratio['bp']}{spread}"


def _accuracy_pair(ratio: dict[str, Any]) -> str:
    acc = ratio["accuracy"]
    return f"{acc['sg']:.3f} vs {acc[ratio['bp']]:.3f}"


def _at_least(result: str, ratios: Sequence[float], target: float) -> Headline:
    """One row of ratios against the same lower target."""
    return Headline(result, _slash(_mark(f"{x:.2f}", x >= target) for x in ratios),
                    f"≥ {target}", _all([x >= target for x in ratios]))  # fmt: skip


def _sg_rows(
    vs_bp: Sequence[dict[str, Any]], bound: Sequence[float], targets: dict[str, float],
    names: str, steps: str, same: str, bound_name: str,
) -> list[Headline]:
    """sg against the strongest BP with the `same` resources (it/s, then test accuracy after
    the same steps) and against its profile bound."""
    target = targets["sg_vs_bp"]
    return [
        Headline(f"sg / strongest BP with the same {same}: {names}",
                 _slash(_mark(_vs_bp(v), v["it_s"]["median"] >= target) for v in vs_bp),
                 f"≥ {target}", _all([v["it_s"]["median"] >= target for v in vs_bp])),
        Headline(f"test accuracy after the same {steps} steps, sg vs that BP: {names}",
                 _slash(_accuracy_pair(v) for v in vs_bp)),
        _at_least(f"sg / {bound_name}: {names}", bound, targets["sg_vs_bound"]),
    ]  # fmt: skip


@headline("pipeline")
def pipeline(doc: dict[str, Any]) -> list[Headline]:
    rows, targets = doc["rows"], doc["targets"]
    names = _slash(_cell_name(r) for r in rows)
    bound = [r["ratios"]["sg_vs_bound"]["median"] for r in rows]
    vs_bp = [r["ratios"]["sg_vs_bp"] for r in rows]
    steps = _slash(sorted({str(r["steps"]) for r in rows}, key=int))
    return _sg_rows(vs_bp, bound, targets, names, steps, "cores, worker processes", "profile bound")


@headline("edge-pipeline")
def edge_pipeline(doc: dict[str, Any]) -> list[Headline]:
    cells, slow, targets = doc["cells"], doc["slow_links"], doc["targets"]
    names = _slash(c["model"] for c in cells)
    vs_bp = [c["ratios"]["sg_vs_bp"] for c in cells]
    bound = [c["ratios"]["sg_vs_bound"]["median"] for c in cells]
    link = [s["sg_vs_link_bound"]["median"] for s in slow]
    one = [c["diagnostics"]["sg_vs_bp_local_one_device"] for c in cells]
    one_target = cells[0]["diagnostics"]["one_device_target"]
    where = f"{doc['devices']} edge devices at {doc['cpus']} CPU, 1 Gbit"
    return [
        *_sg_rows(vs_bp, bound, targets, names, str(doc["steps"]), f"resources, {where}",
                  "profile bound (stages profiled inside a device)"),
        _at_least("sg / link bound, four-layer at " + _slash(s["rate"] for s in slow), link,
                  targets["sg_vs_link_bound"]),
        _at_least(f"sg on {doc['devices']} devices / bp-local on one (the seed paper's "
                  f"comparison, {doc['devices']}x the resources): {names}", one, one_target),
    ]  # fmt: skip


@headline("transport")
def transport(doc: dict[str, Any]) -> list[Headline]:
    r = doc["runtime_over_raw_grpc"]["3.2 MB"]
    return [Headline("runtime / raw gRPC CPU per 3.2 MB message, client / server",
                     f"{r['client_cpu_ms']:.2f} / {r['server_cpu_ms']:.2f}")]


@headline("links")
def links(doc: dict[str, Any]) -> list[Headline]:
    res = doc["results"]
    return [Headline(
        "link achieved / configured, " + _slash(r["rate"] for r in res),
        _slash(_mark(f"{r['median_ratio']:.3f}", r["within_target"]) for r in res),
        f"within {100 * doc['target']:.0f}%",
        _all([r["within_target"] for r in res]),
    )]  # fmt: skip


@headline("metrics")
def metrics(doc: dict[str, Any]) -> list[Headline]:
    return [Headline("training it/s with the InfluxDB sink on / off", f"{doc['ratio_on_off']:.4f}",
                     f"≥ {1 - doc['target_pct'] / 100:.2f}", doc["target_met"])]


@headline("kt")
def kt(doc: dict[str, Any]) -> list[Headline]:
    t = doc["targets"]
    decoupled = _mark(f"−{t['section_kt_gap_pt']:.2f}", t["section_kt_within_met"])
    tuned = _mark(f"−{t['finetuned_gap_pt']:.2f}", t["finetuned_within_met"])
    cells = [decoupled, tuned]
    where = f"after {doc['budget']['finetune_steps']} joint fine-tune steps"
    met = t["section_kt_within_met"] and t["finetuned_within_met"]
    if "tolerant_best" in t:  # sections trained to tolerate upstream error (issue 15), no fine-tune
        tolerant = t["tolerant_within_met"] and t["tolerant_above_kd"]
        cells.insert(1, _mark(f"−{t['tolerant_gap_pt']:.2f}", tolerant))
        where = f"best tolerating upstream error, no fine-tune ({t['tolerant_best']}) / {where}"
        met = tolerant
    return [Headline(
        f"section-kt student − teacher (MNIST, {t['smaller_pct']:.1f}% smaller): decoupled / "
        f"{where}",
        f"{_slash(cells)} pt", f"within {doc['target_values']['section_kt_gap_max_pt']} pt, "
        "above kd", met,
    )]  # fmt: skip


@headline("kt-edge")
def kt_edge(doc: dict[str, Any]) -> list[Headline]:
    return [Headline("kt-sections on 4 edge devices vs 1, training wall time",
                     f"{doc['speedup_wall']:.2f}x faster", "faster", doc["target_met"])]


@headline("dashboard")
def dashboard(doc: dict[str, Any]) -> list[Headline]:
    return [Headline(f"dashboard run page + charts of a {round(doc['metric_points'], -3) // 1000}k-point run, "
                     "first view as served", f"{doc['first_view_as_served_s']:.2f} s",
                     f"< {doc['target_s']:.0f} s", doc["meets_target"])]  # fmt: skip


@headline("devices")
def devices(doc: dict[str, Any]) -> list[Headline]:
    classes = {c: v for c, v in doc["classes"].items() if c != doc["setup"]["reference"]}
    names = _slash(c.replace("jetson-", "").upper() for c in classes)
    got = _slash(_mark(f"{v['achieved_median'] / v['stated']:.3f}", v["within"])
                 for v in classes.values())  # fmt: skip
    worst = _slash(f"{100 * v['worst_error']:+.1f}%" for v in classes.values())
    return [Headline(
        f"device classes: achieved / stated training speed vs the desktop, {names} (median of "
        f"{len(doc['cells'])} CIFAR models; worst model)",
        f"{got} ({worst})", "within ±10%", doc["target_met"],
    )]  # fmt: skip


def _planner(doc: dict[str, Any]) -> list[Headline]:
    t, cells = doc["totals"], doc["cells"]
    where = f"{len(cells)} cell{'s' * (len(cells) > 1)} ({t['decisions']} decisions, synthetic data)"
    pct = lambda x: f"{100 * x:.1f}%"  # noqa: E731
    rows = [
        Headline(f"planner best pick, {where}; the seed: 76.67% of 240",
                 pct(t["best_pick"]), "≥ 95%", t["best_pick"] >= 0.95),
        Headline("planner median regret (pick vs true best)", pct(t["median_regret"]), "≤ 3%",
                 t["median_regret"] <= 0.03),
        Headline("planner step-time error, median / worst; the seed: 0.98–16.01%",
                 f"{pct(t['step_error_median'])} / {pct(t['step_error_worst'])}", "≤ 5% / 10%",
                 t["step_error_median"] <= 0.05 and t["step_error_worst"] <= 0.10),
        Headline("planner energy error against the meter, median", pct(t["energy_error_median"]),
                 "≤ 5%", t["energy_error_median"] <= 0.05),
    ]  # fmt: skip
    if "estimation_5_devices_s_max" in t:
        s5 = t["estimation_5_devices_s_max"]
        rows.append(Headline("planner: ranking 31 configurations of 5 devices",
                             f"{1e3 * s5:.0f} ms", "< 1 s", s5 < 1.0))
    return rows


headline("planner")(_planner)
headline("planner-quick")(_planner)


def planner_noise(doc: dict[str, Any]) -> list[Headline]:
    """The ceiling the ground truth's own spread leaves (the oracle), beside the planner."""
    o, p = doc["oracle"], doc["planner"]
    pct = lambda x: f"{100 * x:.1f}%"  # noqa: E731
    where = f"{doc['model']} {doc['rate']}, {doc['repeats']} repetitions of {doc['steps']} steps"
    return [Headline(
        f"planner ground truth repeated ({where}): best pick / step-time error median / worst of "
        "the oracle (each configuration's mean of its other repetitions), then the planner",
        f"oracle {pct(o['best_pick'])} / {pct(o['step_error_median'])} / "
        f"{pct(o['step_error_worst'])}; planner {pct(p['best_pick'])} / "
        f"{pct(p['step_error_median'])} / {pct(p['step_error_worst'])}",
    )]  # fmt: skip


headline("planner-noise")(planner_noise)
headline("planner-noise-100")(planner_noise)


@headline("time-to-accuracy")
def time_to_accuracy(doc: dict[str, Any]) -> list[Headline]:
    rows = []
    for model, t in doc["targets"].items():
        if t.get("met") is None:
            continue
        r = t["ratio"]
        where = ("the quick form: four-layer cut after fc1 on 2" if model == "quick"
                 else f"{model} on {doc['devices']}")
        local = f"{model}/1gbit/bp-local" if t.get("bp_local_s") is not None else None
        cells = [c for k, c in doc["cells"].items()
                 if k.startswith(f"{model}/{t['rate']}/") or k == local]
        rows.append(Headline(
            f"time to {t['level']} at {t['rate']}, best decoupled ({t['best_decoupled']}) / "
            f"strongest distributed BP ({t['strongest_bp']}), {where} edge devices at "
            f"{doc['cpus']} CPU",
            _mark(f"{'≤ ' if r['kind'] == '<=' else ''}{r['value']:.2f}x", t["met"]),
            f"≤ {t['target']}x", t["met"],
            tuple(dict.fromkeys(c["command"] for c in cells if c.get("command"))),
        ))  # fmt: skip
    return rows


@headline("faults")
def faults(doc: dict[str, Any]) -> list[Headline]:
    w, met, tg = doc["measured_worst"], doc["met"], doc["targets"]
    modes = _slash(doc["modes"])
    num = lambda v, unit: "—" if v is None else f"{v:.{0 if unit == '' else 1}f}{unit}"  # noqa: E731
    return [
        Headline(f"faults survived under restart ({modes}, kill / pause / link-down / "
                 "ps-kill on 4 edge devices)", "all completed" if w["completed"] else
                 "**not all completed**", "all", met["completed"]),
        Headline("fault → noticed, worst", _mark(num(w["detection_s"], " s"), met["detection_s"]),
                 f"≤ {tg['detection_s']:.0f} s", met["detection_s"]),
        Headline("noticed → training again, worst", _mark(num(w["recovery_s"], " s"),
                 met["recovery_s"]), f"≤ {tg['recovery_s']:.0f} s", met["recovery_s"]),
        Headline("steps lost per fault, worst", _mark(num(w["steps_lost"], ""), met["steps_lost"]),
                 f"≤ {tg['steps_lost']}", met["steps_lost"]),
        Headline("final accuracy vs the fault-free run, worst absolute difference (one run each; docs/resilience.md)",
                 _mark(num(w["accuracy_points"], " pt"), met["accuracy_points"]),
                 f"≤ {tg['accuracy_points']} pt", met["accuracy_points"]),
        Headline("leftovers after the runs and a SIGKILLed controller's sweep",
                 _mark(str(w["leftovers"]), met["leftovers"]), "0", met["leftovers"]),
    ]  # fmt: skip
