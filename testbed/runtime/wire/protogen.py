"""Regenerate the gRPC/protobuf stubs from the .proto files, or check the committed ones."""

from __future__ import annotations

import argparse
import filecmp
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from testbed.paths import PROJECT_ROOT

PROTO_SUBDIR = Path("testbed/runtime/wire/proto")
REPO_ROOT = PROJECT_ROOT
GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py")
_SERVICE_RE = re.compile(r"^\s*service\s+\w+", re.MULTILINE)


class ProtogenError(RuntimeError):
    """protoc failed or the proto directory is unusable."""


def proto_files(root: Path) -> list[Path]:
    """The .proto files under root/testbed/runtime/proto, relative to root, sorted."""
    proto_dir = root / PROTO_SUBDIR
    files = sorted(p.relative_to(root) for p in proto_dir.glob("*.proto"))
    if not files:
        raise ProtogenError(f"no .proto files in {proto_dir}; expected at least one *.proto")
    return files


def _has_service(path: Path) -> bool:
    return _SERVICE_RE.search(path.read_text(encoding="utf-8")) is not None


def _run_protoc(args: list[str]) -> None:
    """Run grpc_tools.protoc in a child process.

    In-process protoc shares protobuf's C++ runtime with whatever the caller already loaded
    (TensorFlow bundles its own) and can crash the interpreter; a subprocess is isolated.
    """
    from grpc_tools import protoc  # only to locate the bundled well-known protos

    well_known = Path(protoc.__file__).parent / "_proto"
    cmd = [sys.executable, "-m", "grpc_tools.protoc", f"-I{well_known}", *args]
    res = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if res.returncode != 0:
        raise ProtogenError(
            f"protoc exited with {res.returncode} for arguments {args}: {res.stderr.strip()}"
        )


def generate(root: Path, out_root: Path) -> list[Path]:
    """Generate stubs for root's protos into out_root (same package layout); return them."""
    protos = proto_files(root)
    out_root.mkdir(parents=True, exist_ok=True)
    rel = [str(p) for p in protos]
    _run_protoc([f"-I{root}", f"--python_out={out_root}", f"--pyi_out={out_root}", *rel])
    with_services = [str(p) for p in protos if _has_service(root / p)]
    if with_services:
        _run_protoc([f"-I{root}", f"--grpc_python_out={out_root}", *with_services])
    return generated_files(out_root / PROTO_SUBDIR)


def generated_files(proto_dir: Path) -> list[Path]:
    """The generated stub files present in proto_dir, sorted."""
    return sorted(p for p in proto_dir.iterdir() if p.name.endswith(GENERATED_SUFFIXES))


def stale_files(root: Path) -> list[str]:
    """Committed stubs under root that differ from a fresh run, or exist in only one of them."""
    committed_dir = root / PROTO_SUBDIR
    with tempfile.TemporaryDirectory(prefix="protogen-") as tmp:
        fresh = {p.name: p for p in generate(root, Path(tmp))}
        committed = {p.name: p for p in generated_files(committed_dir)}
        stale = [
            name
            for name in sorted(fresh.keys() | committed.keys())
            if name not in fresh
            or name not in committed
            or not filecmp.cmp(fresh[name], committed[name], shallow=False)
        ]
    return [str(PROTO_SUBDIR / name) for name in stale]


def write_stubs(root: Path) -> list[Path]:
    """Regenerate the stubs under root (via a temp dir, so a protoc error leaves them intact)."""
    proto_dir = root / PROTO_SUBDIR
    with tempfile.TemporaryDirectory(prefix="protogen-") as tmp:
        fresh = generate(root, Path(tmp))
        for old in generated_files(proto_dir):
            old.unlink()  # also drops stubs whose .proto was removed
        return [Path(shutil.copyfile(f, proto_dir / f.name)) for f in fresh]


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point: regenerate (default) or --check; returns the exit code."""
    parser = argparse.ArgumentParser(prog="python -m testbed.runtime.wire.protogen", description=__doc__)
    parser.add_argument("--check", action="store_true", help="exit 1 if committed stubs are stale")
    parser.add_argument("--root", type=Path, default=REPO_ROOT, help="repository root")
    args = parser.parse_args(argv)
    try:
        if args.check:
            stale = stale_files(args.root)
            for name in stale:
                print(f"stale generated file: {name}", file=sys.stderr)
            if stale:
                print("run `python -m testbed.runtime.wire.protogen` and commit", file=sys.stderr)
            return 1 if stale else 0
        for path in write_stubs(args.root):
            print(f"wrote {path}")
    except ProtogenError as err:
        print(f"protogen: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
