"""CLI traps around specs, each with the test that would have caught it: validate accepts what run
accepts, whole-file validation, located YAML errors (exit 2), smoke by default, key=value overrides,
--dry-run, list columns, the JSON Schema."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from typer.testing import CliRunner

from testbed.cli import app
from testbed.paths import PROJECT_ROOT
from testbed.spec.load import list_experiments
from testbed.spec.schema import schema_json

runner = CliRunner()

TINY: dict[str, Any] = {
    "name": "tiny",
    "model": {"name": "four-layer", "width": 0.25},
    "algorithm": {"name": "sg"},
    "training": {"batch_size": 32, "iterations": 500_000, "eval_every": 1000},
    "scales": {"smoke": {"training": {"iterations": 20, "eval_every": 10}},
               "bench": {"training": {"iterations": 200}}},
}


def cli(*args: str) -> Any:
    return runner.invoke(app, list(args))


@pytest.fixture
def experiments(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An experiments/ folder of tiny specs: an experiment, a suite of it, a sweep over it."""
    d = tmp_path / "experiments"
    d.mkdir()
    (d / "tiny.yaml").write_text(yaml.safe_dump(TINY))
    (d / "tiny-suite.yaml").write_text(yaml.safe_dump({"name": "tiny-suite", "suite": ["tiny", "tiny"]}))
    (d / "tiny-sweep.yaml").write_text(yaml.safe_dump({"name": "tiny-sweep", "sweep": {
        "base": "tiny", "grid": {"training.batch_size": [16, 32]}}}))
    monkeypatch.setenv("TESTBED_EXPERIMENTS", str(d))
    monkeypatch.setenv("TESTBED_RESULTS", str(tmp_path / "results"))
    return d


# -- validate accepts everything run accepts ------------------------------------------------

@pytest.mark.parametrize("name", list_experiments())
def test_validate_accepts_every_listed_spec(name: str) -> None:
    res = cli("validate", name)
    assert res.exit_code == 0, res.output
    assert f"{name}: valid" in res.output


def test_validate_and_dry_run_accept_suites_and_sweeps(experiments: Path) -> None:
    for name, what in (("tiny-suite", "valid suite of 2"), ("tiny-sweep", "valid sweep of 2 cells")):
        res = cli("validate", name)
        assert res.exit_code == 0 and what in res.output, res.output
        res = cli("run", name, "--dry-run")
        assert res.exit_code == 0, res.output
    assert not (experiments.parent / "results").exists()


# -- a spec file is validated as a whole ------------------------------------------------------

def test_a_bad_value_behind_another_scale_is_still_an_error(experiments: Path) -> None:
    bad = {**TINY, "scales": {**TINY["scales"], "bench": {"training": {"lr": -1}}}}
    (experiments / "tiny.yaml").write_text(yaml.safe_dump(bad))
    for args in (("validate", "tiny", "--scale", "smoke"), ("run", "tiny", "--scale", "smoke", "--dry-run"),
                 ("validate", "tiny-suite"), ("validate", "tiny-sweep")):
        res = cli(*args)
        assert res.exit_code == 2, (args, res.output)
        assert "training.lr: got -1" in res.output and "(after applying scale 'bench')" in res.output


# -- YAML errors exit 2, located ------------------------------------------------------------

@pytest.mark.parametrize("command", ["validate", "run"])
@pytest.mark.parametrize("name", ["tiny", "tiny-suite", "tiny-sweep"])
def test_yaml_syntax_errors_exit_2_with_file_line_and_column(experiments: Path, command: str, name: str) -> None:
    path = experiments / f"{name}.yaml"
    path.write_text(path.read_text() + "broken: [unclosed\n")
    res = cli(command, name)
    assert res.exit_code == 2, res.output
    assert f"{path}:" in res.output and "not valid YAML" in res.output
    line = len(path.read_text().splitlines()) + 1  # the parser notices at end of input
    assert f"{path}:{line}:" in res.output


@pytest.mark.parametrize("command", ["validate", "run"])
def test_forbidden_tags_exit_2_and_run_nothing(experiments: Path, tmp_path: Path, command: str) -> None:
    marker = tmp_path / "pwned"
    path = experiments / "evil.yaml"
    path.write_text(f"name: evil\nsuite: !!python/object/apply:os.system ['touch {marker}']\n")
    res = cli(command, "evil")
    assert res.exit_code == 2, res.output
    assert f"{path}:2:8: tag" in res.output and "is not allowed" in res.output
    assert not marker.exists()


# -- no bare multi-day run ------------------------------------------------------------------

def test_without_scale_a_run_is_smoke_and_says_so(experiments: Path) -> None:
    res = cli("run", "tiny", "--dry-run")
    assert res.exit_code == 0, res.output
    assert "tiny: scale smoke (20 iterations), the default; --scale paper" in res.output
    assert "iterations: 20\n" in res.output and "iterations: 500000" not in res.output
    res = cli("run", "tiny", "--scale", "paper", "--dry-run")
    assert "tiny: scale paper (500000 iterations)" in res.output and "iterations: 500000\n" in res.output


def test_the_seed_specs_default_to_smoke() -> None:
    res = cli("run", "four-layer-sg", "--dry-run")
    assert "four-layer-sg: scale smoke (1000 iterations), the default" in res.output


# -- key=value overrides ----------------------------------------------------------------------

def test_overrides_are_applied_after_the_scale(experiments: Path) -> None:
    res = cli("run", "tiny", "training.lr=1e-3", "job.mode=sg", "model.split_after=[conv1, fc1]",
              "--dry-run")
    assert res.exit_code == 0, res.output
    assert "  lr: 0.001\n" in res.output and "  mode: sg\n" in res.output
    assert "  - conv1\n  - fc1\n" in res.output and "iterations: 20\n" in res.output
    assert "edge" not in res.output  # no cluster: stage workers run on the host
    res = cli("run", "tiny", "training.iterations=7", "--dry-run")
    assert "tiny: scale smoke (7 iterations)" in res.output


@pytest.mark.parametrize(("override", "message"), [
    ("training.lrr=1", "training.lrr: unknown field; expected one of: batch_size, optimizer, lr"),
    ("training.lr=-1", "training.lr: got -1; Input should be greater than 0"),
    ("job.mode=warp", "job.mode: got 'warp'; Input should be 'bp-local'"),
    ("training.lr", "override 'training.lr': expected PATH=VALUE"),
    ("training..lr=1", "override 'training..lr=1': expected PATH=VALUE"),
])
@pytest.mark.parametrize("command", ["validate", "run"])
def test_bad_overrides_exit_2_naming_the_field(experiments: Path, command: str, override: str, message: str) -> None:
    res = cli(command, "tiny", override)
    assert res.exit_code == 2, res.output
    assert message in res.output
    assert not (experiments.parent / "results").exists()


def test_overrides_reach_every_sweep_cell_and_suite_member(experiments: Path) -> None:
    for name in ("tiny-sweep", "tiny-suite"):
        res = cli("validate", name, "training.lr=-1")
        assert res.exit_code == 2 and "training.lr: got -1" in res.output, res.output


# -- --dry-run ------------------------------------------------------------------------------

def test_dry_run_shows_placement_and_prerequisites_and_starts_nothing(experiments: Path) -> None:
    res = cli("run", "tiny", "job.mode=sg", "--dry-run")
    assert res.exit_code == 0, res.output
    for line in ("# tiny [smoke]: resolved spec", "# tiny: placement (job.mode sg)",
                 "ps      ps     -       host", "stage0  stage  0       host",
                 "# tiny: prerequisites", "python: tensorflow", "data: mnist", "dry run: nothing started"):
        assert line in res.output, line
    assert not (experiments.parent / "results").exists()


def test_dry_run_exits_1_when_a_required_prerequisite_is_missing(experiments: Path) -> None:
    spec = {**TINY, "job": {"mode": "sg"}, "cluster": {"backend": "docker", "stack": "no-such-stack",
            "devices": [{"name": f"d{i}"} for i in range(4)]}}
    (experiments / "stacked.yaml").write_text(yaml.safe_dump({**spec, "name": "stacked"}))
    res = cli("run", "stacked", "--dry-run")
    assert res.exit_code == 1, res.output
    assert "MISSING" in res.output and "a run would stop at the missing prerequisites" in res.output


# -- list columns -----------------------------------------------------------------------------

def test_list_columns_stay_aligned_with_long_names(experiments: Path) -> None:
    long = "a-very-long-experiment-name-that-used-to-break-the-columns"
    (experiments / f"{long}.yaml").write_text(yaml.safe_dump({**TINY, "name": long}))
    res = cli("list")
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    header, rows = lines[0], lines[1:]
    kind_at = header.index("kind")
    assert {row[kind_at:].split()[0] for row in rows} == {"experiment", "suite", "sweep"}
    assert any(row.startswith(long + "  ") for row in rows)


# -- JSON Schema ------------------------------------------------------------------------------

SCHEMA_FILE = PROJECT_ROOT / "experiments" / "spec.schema.json"


def test_committed_schema_is_current() -> None:
    assert SCHEMA_FILE.read_text() == schema_json(), "regenerate: testbed schema -o experiments/spec.schema.json"


def test_schema_accepts_every_shipped_spec_and_rejects_a_typo() -> None:
    schema = json.loads(SCHEMA_FILE.read_text())
    validator = jsonschema.Draft202012Validator(schema)
    for name in list_experiments():
        doc = yaml.safe_load((PROJECT_ROOT / "experiments" / f"{name}.yaml").read_text())
        assert not list(validator.iter_errors(doc)), name
    assert list(validator.iter_errors({**TINY, "trainig": {}}))
    assert list(validator.iter_errors({**TINY, "model": {"name": "no-such-model"}}))


def test_schema_command_writes_the_file(tmp_path: Path) -> None:
    res = cli("schema", "-o", str(tmp_path / "s.json"))
    assert res.exit_code == 0 and (tmp_path / "s.json").read_text() == schema_json()
