"""Benchmark `mutation`: plant known learning bugs in a copy of the tree; do the tests catch them?

Each mutant is one small source edit (a regular expression that must match exactly once) that
reproduces a bug a reviewer planted by hand (issue 13). For each, the tree is copied to a
temporary directory, the bug planted, and the fast test tier run there (the tests named for
the bug first, then the rest unless they failed; stopping at the first failure); mutants of the
distributed runtime also run the slow tests named for them. A mutant is *caught* when the tier
fails. The unmutated copy runs first and must pass, or nothing is counted.
Results: results/bench/mutation.json and docs/mutation.md (the table).

    testbed bench mutation         # or: make bench NAME=mutation  (~10 min on 2 cores)
    python -m testbed.bench.mutation --only gpipe-sums-micro-batches --no-control
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from testbed.bench import BENCHES, bench_dir, command, write_result
from testbed.metrics import provenance
from testbed.paths import PROJECT_ROOT

FAST_TIER = "not slow and not privileged and not integration and not docker"
OWN_TEST = "tests/unit/bench/test_mutation.py"
RUN_TIMEOUT_S = 1200.0


@dataclass(frozen=True)
class Mutant:
    """One planted bug: in `path`, `pattern` (must match exactly once) becomes `replacement`."""

    key: str
    bug: str
    path: str
    pattern: str
    replacement: str
    first: tuple[str, ...] = ()  # tests run first (the tier is the same; it fails sooner)
    slow: tuple[str, ...] = ()  # slow tests that must catch it too (distributed bugs)
    count: int = 1  # how many times the pattern matches


_SG = "testbed/algorithms/sg.py"
_KT = "testbed/algorithms/kt.py"
_T_SG, _T_KT = "tests/unit/algorithms/test_sg.py", "tests/unit/algorithms/test_kt.py"
_T_LOOPS = "tests/unit/runtime/loops"
_REFERENCE = "tests/integration/test_distributed_reference.py"

MUTANTS: tuple[Mutant, ...] = (
    Mutant("sg-target-not-per-sample",
           "last stage's SG target not multiplied by the batch size (SG predicts 1/B of it)",
           _SG, r"g_in \* _batch\(h_in\)", "g_in", (_T_SG,)),
    Mutant("sg-update-not-divided-by-batch",
           "stage update from the SG prediction not divided by the batch size (B x too large)",
           _SG, r"scale = grad_scale / _batch\(h_in\)", "scale = grad_scale", (_T_SG,)),
    Mutant("sg-module-never-updated",
           "distributed SG module never regressed onto its targets (stage 0 never learns)",
           "testbed/runtime/loops/sg.py", r"self\.module_step\(", "(lambda *a: 0.0)(",
           (f"{_T_LOOPS}/test_sg.py",), (f"{_REFERENCE}::test_sg_matches_in_process_every_stage",)),
    # one call (_learn) serves every step, a re-split's drain and the settle after the last batch
    Mutant("gpipe-sums-micro-batches",
           "GPipe sums micro-batch gradients instead of averaging them (M x too large)",
           "testbed/runtime/loops/bp.py", r"1\.0 / micro_batches", "1.0",
           (f"{_T_LOOPS}/test_bp.py",),
           (f"{_REFERENCE}::test_bp_modes_give_the_in_process_weights[bp-pipeline]",)),
    Mutant("section-kt-loss-sign",
           "section-kt representation loss with its sign flipped (loss runs to -inf)",
           _KT, r"return tf\.reduce_mean\(tf\.square\(err\)\)",
           "return -tf.reduce_mean(tf.square(err))", (_T_KT,)),
    Mutant("kd-without-t-squared", "KD soft term without the T^2 factor",
           _KT, r"kd_weight \* t \* t \* kl", "kd_weight * kl", (_T_KT,)),
    Mutant("kd-kl-reversed", "KD with KL(student || teacher) instead of KL(teacher || student)",
           _KT, r"p_teacher \* \(log_teacher - log_student\)",
           "tf.exp(log_student) * (log_student - log_teacher)", (_T_KT,)),
    Mutant("section-kt-ignores-teacher-inputs",
           "section-kt sections read the previous student section, not the teacher's input",
           _KT, r"student_path\(h, teacher_outs\[(?:i|-2)\], student_share\)", "h", (_T_KT,),
           count=2),
    # bugs the first review's tests already caught (kept so they stay caught)
    Mutant("sg-sign-flipped", "stage update ascends the synthetic gradient",
           _SG, r"scale = grad_scale / ", "scale = -grad_scale / ", (_T_SG,)),
    Mutant("sg-module-ascends", "SG module regression ascends its loss",
           _SG, r"apply_gradients\(zip\(grads, sg\.trainable_variables",
           "apply_gradients(zip([-g for g in grads], sg.trainable_variables", (_T_SG,)),
    Mutant("sg-label-conditioning-dropped", "cDNI label projection never added",
           "testbed/algorithms/sg_module.py", r"if self\.cond is None:", "if True:", (_T_SG,)),
    Mutant("sg-zero-target", "last stage sends a zero SG target",
           _SG, r"return loss, logits, g_in \* _batch\(h_in\)",
           "return loss, logits, 0.0 * g_in", (_T_SG,)),
)


class PlantError(ValueError):
    """A mutant's pattern does not match its file exactly once (the source moved on)."""


def plant(source: str, mutant: Mutant) -> str:
    """`source` with the bug planted; PlantError unless the pattern matches `count` times."""
    found = len(re.findall(mutant.pattern, source))
    if found != mutant.count:
        raise PlantError(f"{mutant.key}: {mutant.path}: pattern {mutant.pattern!r} matches "
                         f"{found} times; expected {mutant.count}")
    return re.sub(mutant.pattern, mutant.replacement, source)


def copy_tree(root: Path, dest: Path) -> None:
    """The files git knows in `root` (tracked and untracked-not-ignored; not the run
    directories git ignores), committed in a fresh repository at `dest`."""
    listed = subprocess.run(["git", "-C", str(root), "ls-files", "-co", "--exclude-standard", "-z"],
                            capture_output=True, check=True).stdout.decode().split("\0")
    for rel in filter(None, listed):
        src = root / rel
        if not src.is_file():
            continue
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dest / rel)
    _commit_copy(dest)


def _commit_copy(tree: Path) -> None:
    """The copy as a one-commit git repository: the tests that read a run's provenance (its
    commit) need one, as in any checkout."""
    env = {**os.environ, "GIT_AUTHOR_NAME": "mutation", "GIT_AUTHOR_EMAIL": "mutation@localhost",
           "GIT_COMMITTER_NAME": "mutation", "GIT_COMMITTER_EMAIL": "mutation@localhost"}
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-q", "--no-verify", "-m", "copy"]):
        subprocess.run(["git", "-C", str(tree), *args], env=env, capture_output=True, check=True)


def _env(tree: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(tree), "PYTHONDONTWRITEBYTECODE": "1",
            "TESTBED_RESULTS": str(tree / "results")}


def _python(root: Path, tree: Path) -> str:
    """The interpreter to test the copy with: where it is the project's own venv, that venv
    linked into the copy (as in a checkout, so paths a run records stay inside the project)."""
    exe = Path(sys.executable)
    if not exe.is_relative_to(root):
        return sys.executable
    venv = exe.relative_to(root).parts[0]
    if not (tree / venv).exists():
        (tree / venv).symlink_to(root / venv, target_is_directory=True)
    return str(tree / exe.relative_to(root))


def check_imports_copy(tree: Path, python: str) -> None:
    """The copy's `testbed` must be the one imported there (not the editable install's)."""
    out = subprocess.run([python, "-c", "import testbed; print(testbed.__file__)"],
                         cwd=tree, env=_env(tree), capture_output=True, text=True, check=True)
    if not Path(out.stdout.strip()).resolve().is_relative_to(tree.resolve()):
        raise RuntimeError(f"the copy imports testbed from {out.stdout.strip()}, not {tree}")


def _first_failure(output: str) -> str | None:
    match = re.search(r"^(?:FAILED|ERROR) (\S+)", output, re.MULTILINE)
    return match.group(1) if match else None


def _scrub(text: str, tree: Path) -> str:
    """Test output without machine paths: the copy as '.', other absolute paths (pytest's
    tmp_path, the venv) as '<path>'."""
    text = text.replace(str(tree), ".")
    for path in sorted(set(provenance.absolute_paths(text)), key=len, reverse=True):
        text = text.replace(path, "<path>")
    return text


def run_tier(tree: Path, python: str, marker: str | None,
             paths: tuple[str, ...]) -> dict[str, Any]:
    """pytest in the copy, stopping at the first failure: passed / caught / timeout / error."""
    cmd = [python, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *paths]
    if marker:
        cmd += ["-m", marker]
    started = time.monotonic()
    try:
        done = subprocess.run(cmd, cwd=tree, env=_env(tree), capture_output=True, text=True,
                              timeout=RUN_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return {"result": "timeout", "seconds": round(time.monotonic() - started, 1)}
    tail = _scrub((done.stdout + done.stderr)[-4000:], tree)
    # 1: a test failed; 2: collection failed (the bug broke an import); 4/5: bad paths, no tests
    result = {0: "passed", 1: "caught", 2: "caught"}.get(done.returncode, "error")
    return {"result": result, "exit_code": done.returncode,
            "first_failure": _first_failure(tail), "seconds": round(time.monotonic() - started, 1),
            **({"output_tail": tail[-1500:]} if result != "passed" else {})}


def _fast_tier(tree: Path, python: str, first: tuple[str, ...]) -> dict[str, Any]:
    """The fast tier on a mutated copy: the tests named for the bug first (pytest would
    interleave them with the rest), then, unless they failed, the whole tier. This check's own
    unit test is left out: it fails in any mutated copy (the pattern is gone), which is no catch."""
    if first:
        row = run_tier(tree, python, FAST_TIER, first)
        if row["result"] != "passed":
            return row
    return run_tier(tree, python, FAST_TIER, ("tests", f"--ignore={OWN_TEST}"))


def run_mutant(root: Path, mutant: Mutant | None) -> dict[str, Any]:
    """Copy the tree, plant the bug (None: the control), run the fast tier (and its slow tests)."""
    with tempfile.TemporaryDirectory(prefix="testbed-mutant-") as tmp:
        tree = Path(tmp)
        copy_tree(root, tree)
        python = _python(root, tree)
        check_imports_copy(tree, python)
        if mutant is not None:
            target = tree / mutant.path
            target.write_text(plant(target.read_text(), mutant))
        if mutant is None:
            return {"fast": run_tier(tree, python, FAST_TIER, ("tests",))}
        row = {"fast": _fast_tier(tree, python, mutant.first)}
        if mutant.slow:
            row["slow"] = run_tier(tree, python, None, mutant.slow)
        for tier in row.values():  # a tier that passes with the bug in it missed the bug
            tier["result"] = "missed" if tier["result"] == "passed" else tier["result"]
        return row


DOC_HEAD = """# Mutation check: do the tests catch planted learning bugs?

`make bench NAME=mutation` (or `python -m testbed.bench.mutation [--only KEY ...]`) copies the
tree to a temporary directory once per bug, plants the bug there (one regular-expression edit of
the source, `testbed/bench/mutation.py: MUTANTS`), and runs the fast test tier in the copy: the
tests named for the bug first, then, unless they failed, the whole tier, stopping at the first
failure. Bugs in the distributed runtime also run the slow tests named for
them. *caught* means that tier failed; the unmutated copy runs first and must pass. It is not
part of `make test` (one fast tier for the control, then the named tests per bug: ~10 min on
2 cores, more on a busy machine).

The bugs are the ones a reviewer planted by hand in issue 13 (the first review's tests missed
all but the last four), plus those the first tests already caught, kept so they stay caught.
"""


def markdown(body: dict[str, Any]) -> str:
    """docs/mutation.md: what the check is, then one row per mutant (caught or missed per tier,
    the first test that failed), from results/bench/mutation.json."""
    control = body.get("control", {}).get("fast", {}).get("result", "not run")
    prov = body.get("provenance", {})
    lines = [DOC_HEAD, f"Last run: commit `{str(prov.get('commit'))[:10]}`, "
             f"{body['caught_by_fast_tier']} of {body['total']} caught by the fast tier, control "
             f"{control}, {body['wall_s'] / 60:.1f} min (`results/bench/mutation.json`).\n",
             "| planted bug | file | fast tier | slow tier | first failing test |",
             "|---|---|---|---|---|"]
    for m in body["mutants"]:
        fast, slow = m["fast"], m.get("slow")
        test = fast.get("first_failure") or (slow or {}).get("first_failure") or ""
        lines.append(f"| {m['bug']} (`{m['key']}`) | `{m['path']}` | {fast['result']} | "
                     f"{slow['result'] if slow else '-'} | `{test}` |")
    return "\n".join(lines) + "\n"


def figure(body: dict[str, Any], out: Path) -> None:
    """Seconds until each tier failed (or passed), per mutant, coloured caught / missed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = body["mutants"]
    fig, ax = plt.subplots(figsize=(8, 0.4 * len(rows) + 1.2))
    for i, m in enumerate(rows):
        for tier, off in (("fast", -0.18), ("slow", 0.18)):
            r = m.get(tier)
            if r is not None:
                colour = "#2a7" if r["result"] == "caught" else "#d33"
                ax.barh(i + off, r["seconds"], 0.34, color=colour, hatch="" if tier == "fast"
                        else "//", edgecolor="white")
    ax.set_yticks(range(len(rows)), [m["key"] for m in rows], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("seconds until the tier failed (green: caught, red: not); hatched: slow tier")
    ax.set_title(f"planted bugs: {body['caught_by_fast_tier']}/{body['total']} caught by the "
                 "fast tier")
    fig.savefig(out, dpi=120, bbox_inches="tight")
    plt.close(fig)


def main(results_root: Path | None = None, only: tuple[str, ...] = (), control: bool = True,
         root: Path = PROJECT_ROOT) -> Path:
    """Do the tests catch planted learning bugs? The fast tier per bug, in a copy (~10 min)."""
    unknown = sorted(set(only) - {m.key for m in MUTANTS})
    if unknown:
        raise SystemExit(f"unknown mutants {unknown}; known: {', '.join(m.key for m in MUTANTS)}")
    made_by = provenance.start(command("mutation"))
    chosen = [m for m in MUTANTS if not only or m.key in only]
    body: dict[str, Any] = {"fast_tier": FAST_TIER}
    if control:
        body["control"] = run_mutant(root, None)
        fast = body["control"]["fast"]
        print(f"control (no bug): fast tier {fast['result']}", flush=True)
        if fast["result"] != "passed":
            raise SystemExit(f"the unmutated tree fails its fast tier ({fast.get('first_failure')})"
                             "; a mutant's failure would mean nothing. Fix that first.")
    body["mutants"] = []
    for mutant in chosen:
        row = {"key": mutant.key, "bug": mutant.bug, "path": mutant.path,
               "slow_tests": list(mutant.slow), **run_mutant(root, mutant)}
        body["mutants"].append(row)
        slow = f", slow {row['slow']['result']}" if "slow" in row else ""
        print(f"{mutant.key}: fast {row['fast']['result']}{slow}", flush=True)
    body["caught_by_fast_tier"] = sum(m["fast"]["result"] == "caught" for m in body["mutants"])
    body["total"] = len(body["mutants"])
    body["wall_s"] = round(time.time() - made_by["started_unix"], 1)
    out = write_result(bench_dir(results_root) / "mutation.json", body, made_by)
    figure(body, out.with_suffix(".png"))
    if not only and control:
        body["provenance"] = made_by
        (root / "docs" / "mutation.md").write_text(markdown(body))
    return out


BENCHES.register("mutation")(main)

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="*", default=(), help="mutant keys (default: all)")
    parser.add_argument("--no-control", action="store_true", help="skip the unmutated run")
    args = parser.parse_args()
    print(main(only=tuple(args.only), control=not args.no_control))
