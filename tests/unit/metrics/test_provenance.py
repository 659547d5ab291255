"""Provenance: the commit and dirty flag of a real git checkout, versions, host facts, and paths
made portable so that no result names the machine it ran on."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from testbed.bench import write_result
from testbed.metrics import provenance
from testbed.metrics.run_dir import RunDir, read_summary
from testbed.paths import PROJECT_ROOT


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True,
                          text=True).stdout.strip()  # fmt: skip


def test_commit_and_dirty_of_a_real_checkout(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q")
    (repo / "a.txt").write_text("one\n")
    _git(repo, "add", "a.txt")
    _git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "first")
    sha = _git(repo, "rev-parse", "HEAD")
    assert provenance.git_state(repo) == {"commit": sha, "dirty": False}
    (repo / "a.txt").write_text("two\n")
    assert provenance.git_state(repo) == {"commit": sha, "dirty": True}
    _git(repo, "checkout", "-q", "a.txt")
    (repo / "new.py").write_text("x = 1\n")  # an untracked module changes what runs, too
    assert provenance.git_state(repo)["dirty"] is True
    (repo / "new.py").unlink()
    (repo / "results" / "bench").mkdir(parents=True)
    (repo / "results" / "bench" / "x.json").write_text("{}\n")  # an output, not code
    (repo / "NOTES.md").write_text("text\n")
    assert provenance.git_state(repo)["dirty"] is False


def test_outside_a_checkout_the_commit_is_unknown(tmp_path: Path) -> None:
    assert provenance.git_state(tmp_path) == {"commit": None, "dirty": None}


def test_versions_are_the_installed_ones() -> None:
    import google.protobuf
    import grpc

    v = provenance.package_versions()
    assert v["numpy"] == np.__version__
    assert v["grpcio"] == grpc.__version__
    assert v["protobuf"] == google.protobuf.__version__
    assert v["python"] == "%d.%d.%d" % sys.version_info[:3]
    assert v["tensorflow"] and v["keras"]


def test_cpu_model_is_read_from_cpuinfo(tmp_path: Path) -> None:
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 7B13\n")
    assert provenance.cpu_model(info) == "AMD EPYC 7B13"
    assert provenance.cpu_model(tmp_path / "absent") is None


def test_start_and_finish_record_what_a_result_needs() -> None:
    block = provenance.finish(provenance.start("make bench NAME=x"))
    assert block["commit"] == _git(PROJECT_ROOT, "rev-parse", "HEAD")
    assert block["command"] == "make bench NAME=x"
    assert block["host"]["cores"] >= 1
    assert len(block["load_start"]) == len(block["load_end"]) == 3
    assert set(provenance.PACKAGES) <= set(block["versions"])
    assert block["wall_s"] >= 0
    assert not provenance.absolute_paths(block)


def test_argv_is_recorded_portable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "argv", [str(PROJECT_ROOT / "testbed" / "__main__.py"), "run", "x",
                                      "/tmp/benchw/script.py", "--scale=smoke"])  # fmt: skip
    assert provenance.start()["argv"] == ["testbed/__main__.py", "run", "x", ".../script.py",
                                          "--scale=smoke"]  # fmt: skip


def test_paths_inside_the_project_become_relative(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TESTBED_RESULTS", raising=False)
    run = PROJECT_ROOT / "results" / "pipeline-sg" / "20261121-1"
    home = Path.home() / ".cache" / "testbed" / "data"
    doc = {"run": str(run), "nested": [{"p": run / "summary.json"}],
           f"{PROJECT_ROOT}/key": f"teacher saved to {home}/t.keras; cwd {PROJECT_ROOT}",
           "url": "/api/v2/write", "n": 3}  # fmt: skip
    assert provenance.portable(doc) == {
        "run": "results/pipeline-sg/20261121-1",
        "nested": [{"p": "results/pipeline-sg/20261121-1/summary.json"}],
        "key": "teacher saved to ~/.cache/testbed/data/t.keras; cwd .",
        "url": "/api/v2/write", "n": 3,
    }  # fmt: skip


def test_a_results_root_outside_the_project_is_named_by_its_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TESTBED_RESULTS", str(tmp_path / "elsewhere"))
    got = provenance.portable({"run": str(tmp_path / "elsewhere" / "exp" / "r1")})
    assert got == {"run": "$TESTBED_RESULTS/exp/r1"}


def test_machine_paths_are_found() -> None:
    doc = {"a": ["ok results/x", "/work/main/results/kt-teachers/t.keras"],
           "b": {"c": "log at /tmp/x.log and /root/.cache/y"}, "/api/v2/write": 1}  # fmt: skip
    assert provenance.absolute_paths(doc) == [
        "/work/main/results/kt-teachers/t.keras", "/tmp/x.log", "/root/.cache/y",
    ]  # fmt: skip
    assert provenance.absolute_paths({"p": "~/.cache/x", "q": "$TESTBED_RESULTS/r"}) == []


def test_write_result_adds_provenance_and_refuses_machine_paths(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TESTBED_RESULTS", str(tmp_path))
    out = write_result(tmp_path / "bench" / "demo.json", {"run": str(tmp_path / "exp" / "r1"),
                       "it_s": 3.5}, provenance.start("make bench NAME=demo"))  # fmt: skip
    doc = json.loads(out.read_text())
    assert out == tmp_path / "bench" / "demo.json"
    assert doc["run"] == "$TESTBED_RESULTS/exp/r1" and doc["it_s"] == 3.5
    assert doc["provenance"]["command"] == "make bench NAME=demo"
    assert "load_end" in doc["provenance"] and doc["provenance"]["commit"]
    with pytest.raises(ValueError, match="/srv/data/mnist.npz"):
        write_result(tmp_path / "bench" / "leaky.json", {"data": "/srv/data/mnist.npz"},
                     provenance.start())
    assert not (tmp_path / "bench" / "leaky.json").exists()
    assert json.loads((tmp_path / "bench" / "leaky.json.rejected").read_text())["data"]


def test_a_run_summary_is_written_portable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TESTBED_RESULTS", raising=False)
    run = RunDir(tmp_path / "exp" / "r1")
    run.write_summary({"teacher": {"path": str(PROJECT_ROOT / "results" / "kt-teachers" / "t")}})
    run.close()
    assert read_summary(run.path) == {"teacher": {"path": "results/kt-teachers/t"}}
