"""The committed stubs match the .proto files; --check catches a stale copy."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from testbed.runtime.wire import protogen

PROTO_DIR = protogen.REPO_ROOT / protogen.PROTO_SUBDIR


def _copy_tree(tmp_path: Path) -> Path:
    target = tmp_path / protogen.PROTO_SUBDIR
    shutil.copytree(PROTO_DIR, target, ignore=shutil.ignore_patterns("__pycache__"))
    return tmp_path


def test_committed_stubs_are_current(capsys: pytest.CaptureFixture[str]) -> None:
    assert protogen.main(["--check"]) == 0
    assert "stale" not in capsys.readouterr().err


def test_every_proto_has_committed_stubs() -> None:
    names = {p.name for p in protogen.generated_files(PROTO_DIR)}
    for proto in PROTO_DIR.glob("*.proto"):
        assert f"{proto.stem}_pb2.py" in names and f"{proto.stem}_pb2.pyi" in names


def test_check_fails_naming_the_stale_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = _copy_tree(tmp_path)
    proto = root / protogen.PROTO_SUBDIR / "common.proto"
    proto.write_text(proto.read_text() + "\nmessage Extra { int32 x = 1; }\n")
    assert protogen.main(["--check", "--root", str(root)]) == 1
    err = capsys.readouterr().err
    assert "stale generated file: testbed/runtime/wire/proto/common_pb2.py" in err
    assert "stage_pb2.py" not in err


def test_check_fails_on_a_missing_stub_and_regenerate_fixes_it(tmp_path: Path) -> None:
    root = _copy_tree(tmp_path)
    (root / protogen.PROTO_SUBDIR / "stage_pb2_grpc.py").unlink()
    assert protogen.stale_files(root) == ["testbed/runtime/wire/proto/stage_pb2_grpc.py"]
    assert protogen.main(["--root", str(root)]) == 0
    assert protogen.stale_files(root) == []


def test_protoc_error_is_reported(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = _copy_tree(tmp_path)
    (root / protogen.PROTO_SUBDIR / "broken.proto").write_text('syntax = "proto3";\nmessage {')
    assert protogen.main(["--check", "--root", str(root)]) == 2
    assert "protoc exited with" in capsys.readouterr().err
