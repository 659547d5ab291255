"""Every committed result says how it was made and names no machine path."""

import json
import re

import pytest

from testbed.metrics import provenance
from testbed.paths import PROJECT_ROOT

RESULTS = sorted((PROJECT_ROOT / "results" / "bench").glob("*.json"))
SHA = re.compile(r"^[0-9a-f]{40}$")


def test_there_are_committed_results() -> None:
    assert RESULTS


@pytest.mark.parametrize("path", RESULTS, ids=lambda p: p.name)
def test_a_committed_result_has_provenance_and_portable_paths(path) -> None:
    doc = json.loads(path.read_text())
    assert provenance.absolute_paths(doc) == []
    made = doc["provenance"]
    if made["commit"] == provenance.UNKNOWN:  # measured before provenance existed
        assert SHA.match(made["committed_in"]) and made["note"]
    else:
        assert SHA.match(made["commit"]) and made["dirty"] in (True, False)
        assert made["command"] and made["versions"]["tensorflow"] and made["host"]["cores"]
        assert len(made["load_start"]) == len(made["load_end"]) == 3
