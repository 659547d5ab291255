"""The README's headline table, rendered from results/bench/*.json between two markers.

`python -m testbed.report.readme` rewrites the table in README.md; `--check` exits 1 when the
committed README differs from what the JSON renders (a fast test runs the same check). Numbers
are never typed into the README: re-run the benchmark, then this command.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from testbed.bench import command
from testbed.bench.headlines import HEADLINES, Headline
from testbed.metrics.provenance import UNKNOWN
from testbed.paths import PROJECT_ROOT

BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"
HEADER = "| result | measured | target | command |\n|---|---|---|---|\n"


def made_by(doc: dict[str, Any], name: str) -> str:
    """The command that made the result (its provenance's, else the benchmark's own), said to
    be of an unknown commit where the result predates provenance."""
    prov = doc.get("provenance") or {}
    cmd = f"`{prov.get('command') or command(name)}`"
    return f"{cmd} (commit unknown)" if prov.get("commit") == UNKNOWN else cmd


def row(h: Headline, cmd: str) -> str:
    """One table row; a missed target's number in bold (unless the row marked its values)."""
    measured = f"**{h.measured}**" if h.met is False and "**" not in h.measured else h.measured
    return f"| {h.result} | {measured} | {h.target} | {cmd} |\n"


def table(bench_dir: Path) -> str:
    """The headline table from every results/bench/<name>.json that has a headline function."""
    out = HEADER
    for name, rows in HEADLINES.items():
        path = bench_dir / f"{name}.json"
        if not path.is_file():
            continue
        doc = json.loads(path.read_text())
        out += "".join(row(h, " + ".join(f"`{c}`" for c in h.commands) or made_by(doc, name))
                       for h in rows(doc))  # fmt: skip
    return out


def splice(readme: str, rendered: str) -> str:
    """`readme` with the text between the markers replaced by `rendered`."""
    start, end = readme.find(BEGIN), readme.find(END)
    if start < 0 or end < start:
        raise ValueError(f"README: expected the markers {BEGIN!r} and then {END!r}")
    return readme[: start + len(BEGIN)] + "\n" + rendered + readme[end:]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m testbed.report.readme", description=__doc__)
    parser.add_argument("--check", action="store_true", help="exit 1 if README.md is stale")
    parser.add_argument("--readme", type=Path, default=PROJECT_ROOT / "README.md")
    parser.add_argument("--bench-dir", type=Path, default=PROJECT_ROOT / "results" / "bench")
    args = parser.parse_args(argv)
    current = args.readme.read_text()
    rendered = splice(current, table(args.bench_dir))
    if args.check:
        if rendered != current:
            print(f"{args.readme}: the headline table differs from {args.bench_dir}/*.json; "
                  "run `python -m testbed.report.readme`", file=sys.stderr)
            return 1
        return 0
    args.readme.write_text(rendered)
    return 0


if __name__ == "__main__":
    sys.exit(main())
