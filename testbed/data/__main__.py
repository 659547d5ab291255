"""Command line: ``python -m testbed.data fetch mnist`` fills the cache before runs."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from testbed.data.dataset import DatasetUnavailableError, UnknownDatasetError
from testbed.data.registry import DATASETS, load_dataset

EXIT_UNAVAILABLE = 2


def build_parser() -> argparse.ArgumentParser:
    """The ``fetch`` and ``list`` subcommands."""
    parser = argparse.ArgumentParser(prog="python -m testbed.data", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    fetch = commands.add_parser(
        "fetch", help="load datasets into the cache; print source and shapes"
    )
    fetch.add_argument("names", nargs="+", metavar="NAME", help=f"one of: {', '.join(DATASETS)}")
    fetch.add_argument("--data-dir", default=None, help="cache directory (default: $TESTBED_DATA)")
    commands.add_parser("list", help="print the registered dataset keys")
    return parser


def fetch(names: Sequence[str], data_dir: str | None) -> int:
    """Load each dataset, print where it came from; exit 2 when one cannot be had."""
    for name in names:
        try:
            ds = load_dataset(name, data_dir)
        except (DatasetUnavailableError, UnknownDatasetError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_UNAVAILABLE
        print(f"{ds.name}: source {ds.source}")
        print(f"  x_train {ds.x_train.shape} {ds.x_train.dtype}  y_train {ds.y_train.shape}")
        print(f"  x_test {ds.x_test.shape} {ds.x_test.dtype}  y_test {ds.y_test.shape}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit status."""
    args = build_parser().parse_args(argv)
    if args.command == "list":
        for name, spec in DATASETS.items():
            print(f"{name}\t{spec.num_classes} classes\t{spec.input_shape}")
        return 0
    return fetch(args.names, args.data_dir)


if __name__ == "__main__":
    sys.exit(main())
