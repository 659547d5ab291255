"""The mutation check's pure parts: every planted bug still applies to today's source."""

from __future__ import annotations

import pytest

from testbed.bench.mutation import MUTANTS, Mutant, PlantError, markdown, plant
from testbed.paths import PROJECT_ROOT


@pytest.mark.parametrize("mutant", MUTANTS, ids=lambda m: m.key)
def test_every_mutant_plants_into_its_file_and_names_tests_that_exist(mutant: Mutant) -> None:
    """A source change that moves a mutant's pattern fails here, not silently in the check."""
    source = (PROJECT_ROOT / mutant.path).read_text()
    assert plant(source, mutant) != source
    for test in (*mutant.first, *mutant.slow):
        path, _, name = test.partition("::")
        assert (PROJECT_ROOT / path).exists(), test
        assert not name or f"def {name.split('[')[0]}(" in (PROJECT_ROOT / path).read_text(), test


def test_a_pattern_that_no_longer_matches_is_named() -> None:
    mutant = Mutant("k", "bug", "f.py", r"missing\(\)", "x")
    with pytest.raises(PlantError, match=r"k: f\.py: pattern .* matches 0 times; expected 1"):
        plant("nothing here", mutant)
    assert plant("a = b * c", Mutant("m", "bug", "f.py", r"b \* c", "b")) == "a = b"


def test_markdown_rows_say_caught_or_missed_per_tier() -> None:
    body = {"caught_by_fast_tier": 1, "total": 2, "wall_s": 90.0, "provenance": {"commit": "ab"},
            "control": {"fast": {"result": "passed"}},
            "mutants": [
                {"key": "a", "bug": "bug a", "path": "p.py",
                 "fast": {"result": "caught", "first_failure": "tests/t.py::test_a"}},
                {"key": "b", "bug": "bug b", "path": "q.py", "fast": {"result": "missed"},
                 "slow": {"result": "caught", "first_failure": "tests/s.py::test_b"}},
            ]}
    text = markdown(body)
    assert "| bug a (`a`) | `p.py` | caught | - | `tests/t.py::test_a` |" in text
    assert "| bug b (`b`) | `q.py` | missed | caught | `tests/s.py::test_b` |" in text
    assert "1 of 2 caught by the fast tier, control passed" in text


def test_the_copy_holds_the_tracked_and_new_files_as_one_commit_not_the_ignored(tmp_path) -> None:
    import subprocess

    from testbed.bench.mutation import copy_tree

    src, dest = tmp_path / "src", tmp_path / "dest"
    (src / "results" / "run").mkdir(parents=True)
    (src / "results" / "run" / "summary.json").write_text("{}")
    (src / ".gitignore").write_text("results/\n")
    (src / "a.py").write_text("a = 1\n")
    subprocess.run(["git", "init", "-q", str(src)], check=True)
    (src / "b.py").write_text("b = 2\n")  # untracked, not ignored: copied too
    dest.mkdir()
    copy_tree(src, dest)
    copied = sorted(p.name for p in dest.iterdir() if p.name != ".git")
    assert copied == [".gitignore", "a.py", "b.py"]
    head = subprocess.run(["git", "-C", str(dest), "status", "--porcelain"],
                          capture_output=True, text=True, check=True)
    assert head.stdout == ""  # everything committed: a run's provenance finds a commit
