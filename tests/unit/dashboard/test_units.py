"""Dashboard building blocks as pure functions: parsing, downsampling, status, tokens, names."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pytest

from testbed.dashboard.auth import token_problem
from testbed.dashboard.downsample import downsample, minmax_indices
from testbed.dashboard.metrics_store import MetricsCache, RunMetrics
from testbed.dashboard.parse import MALFORMED, parse_chunk
from testbed.dashboard.paths import BadName, OutsideRoot, check_name, contained
from testbed.dashboard.runs import cluster_tables, infer_status, tail_latest


def write(path: Path, lines: list[str], mode: str = "w") -> None:
    with open(path, mode) as f:
        f.write("".join(line + "\n" for line in lines))


def test_parse_chunk_marks_blank_and_malformed_lines() -> None:
    assert parse_chunk(b'{"a": 1}\n{"b": 2}\n') == [{"a": 1}, {"b": 2}]
    assert parse_chunk(b'{"a": 1}\n\nnope\n{"a": 1}, {"a": 2}\n[1]\n') == [
        {"a": 1},
        None,
        MALFORMED,
        MALFORMED,
        [1],
    ]


def test_metrics_tables_group_by_kind_and_tags_in_line_order(tmp_path: Path) -> None:
    write(
        tmp_path / "metrics.jsonl",
        [
            '{"kind": "train", "run": "r", "step": 1, "loss": 1.0}',
            # other keys, so another batch:
            '{"kind": "train", "run": "r", "step": 2, "loss": 0.5, "sg_loss": 0.1}',
            '{"kind": "train", "run": "r", "step": 3, "loss": 0.25}',
            "not json",
            "",
            "[1, 2]",
            '{"no_kind": 1}',
            '{"kind": "worker", "device": "a", "step": 1, "cpu": 0.5}',
            '{"kind": "worker", "device": "b", "step": 1, "cpu": 0.7}',
            '{"kind": "eval", "step": 3, "test_acc": "n/a"}',
            '{"kind": "eval", "step": 4, "test_acc": 0.9, "note": null}',
        ],
    )
    m = RunMetrics(tmp_path).refresh()
    assert m.lines == 11 and m.bad_lines == 3
    assert m.kinds() == {"train": 3, "worker": 2, "eval": 2}
    train = m.tables_of("train")[0]
    assert list(train.lines) == [0, 1, 2] and train.run_tags == {"run": "r"}
    assert np.array_equal(train.column("sg_loss"), [np.nan, 0.1, np.nan], equal_nan=True)
    assert sorted(t.label for t in m.tables_of("worker")) == ["device=a", "device=b"]
    records, nxt = m.records_since(1, "train")
    assert [r["step"] for r in records] == [2, 3] and nxt == 11 and records[0]["run"] == "r"
    assert m.last("eval", "test_acc") == 0.9


def test_metrics_cache_reads_only_appended_lines_and_resets_on_replace(tmp_path: Path) -> None:
    f = tmp_path / "metrics.jsonl"
    write(f, ['{"kind": "eval", "step": 1, "test_acc": 0.1}'])
    cache = MetricsCache()
    m = cache.get(tmp_path)
    assert cache.get(tmp_path) is m and m.lines == 1
    f.write_text(f.read_text() + '{"kind": "eval", "step": 2, "test_acc": 0.2}\n{"kind": "ev')
    assert cache.get(tmp_path).lines == 2 and m.offset < f.stat().st_size  # partial line waits
    os.replace(_new_file(tmp_path, ['{"kind": "eval", "step": 9, "test_acc": 0.9}']), f)
    m = cache.get(tmp_path)
    assert m.lines == 1 and m.last("eval", "step") == 9
    f.unlink()
    assert cache.get(tmp_path).lines == 0


def _new_file(tmp_path: Path, lines: list[str]) -> Path:
    other = tmp_path / "new.jsonl"
    write(other, lines)
    return other


def test_minmax_downsampling_keeps_extremes_and_bounds_size() -> None:
    y = np.sin(np.arange(100_000) / 1000.0)
    y[31_337], y[77] = 9.0, -9.0
    idx = minmax_indices(y, 500)
    assert len(idx) <= 500 and 31_337 in idx and 77 in idx and idx[0] == 0 and idx[-1] == len(y) - 1
    assert np.all(np.diff(idx) > 0)
    assert list(minmax_indices(np.arange(5.0), 10)) == [0, 1, 2, 3, 4]
    x, yy = downsample(np.array([1.0, 2.0, np.nan, 4.0]), np.array([1.0, np.inf, 3.0, 4.0]), 10)
    assert list(x) == [1.0, 4.0] and list(yy) == [1.0, 4.0]
    with pytest.raises(ValueError, match="at least 4"):
        minmax_indices(y, 3)


NOW = time.time()


@pytest.mark.parametrize(
    ("summary", "events", "tracked", "written", "expected"),
    [
        ({"status": "completed"}, [], None, NOW, "completed"),
        ({"status": "failed", "reason": "boom"}, [], True, NOW, "failed"),
        (None, [{"event": "end", "status": "interrupted"}], None, NOW, "interrupted"),
        (None, [], True, NOW - 10_000, "running"),  # started here, process alive
        (None, [], False, NOW, "interrupted"),  # started here, process gone
        (None, [{"event": "start", "pid": os.getpid()}], None, NOW - 10_000, "running"),
        (None, [{"event": "start", "pid": 2**22 + 12345}], None, NOW, "interrupted"),
        (None, [], None, NOW - 5, "running"),  # recent writes
        (None, [], None, NOW - 10_000, "interrupted"),  # stale
        # resumed (testbed run --resume): the earlier part's summary is no longer the status
        ({"status": "interrupted"}, [{"event": "start", "pid": 2**22 + 12345},
                                     {"event": "end", "status": "interrupted"},
                                     {"event": "resume", "pid": os.getpid()}], None, NOW, "running"),
        ({"status": "interrupted"}, [{"event": "start", "pid": 2**22 + 12345},
                                     {"event": "resume", "pid": 2**22 + 12346}], None, NOW,
         "interrupted"),
        ({"status": "completed"}, [{"event": "start"}, {"event": "end", "status": "interrupted"},
                                   {"event": "resume"}, {"event": "end", "status": "completed"}],
         None, NOW, "completed"),
    ],
)
def test_infer_status(summary, events, tracked, written, expected) -> None:
    assert infer_status(summary, events, tracked, written, stale_after_s=900)[0] == expected


def test_tail_latest_reads_the_end_only(tmp_path: Path) -> None:
    write(
        tmp_path / "metrics.jsonl",
        [json.dumps({"kind": "eval", "step": 10, "test_acc": 0.5})]
        + [json.dumps({"kind": "train", "step": s, "loss": 1.0}) for s in range(11, 5000)],
    )
    assert tail_latest(tmp_path) == {"last_step": 4999, "last_test_accuracy": 0.5}
    assert tail_latest(tmp_path, max_bytes=4096)["last_test_accuracy"] is None
    assert tail_latest(tmp_path / "missing") == {"last_step": None, "last_test_accuracy": None}


@pytest.mark.parametrize(
    ("expected", "header", "status"),
    [
        (None, "Bearer x", 403),
        ("", "Bearer x", 403),
        ("tok", None, 401),
        ("tok", "Bearer ", 401),
        ("tok", "Basic tok", 401),
        ("tok", "Bearer tok2", 403),
        ("tok", "bearer tok", None),
        ("tok", "Bearer tok", None),
    ],
)
def test_token_problem(expected, header, status) -> None:
    problem = token_problem(expected, header)
    assert (problem[0] if problem else None) == status


def test_names_and_containment(tmp_path: Path) -> None:
    for bad in (
        "..",
        ".",
        "",
        "a/b",
        "a\\b",
        "../x",
        ".hidden",
        "a..b",
        "x\n",
        "%2e%2e",
        "a" * 129,
    ):
        with pytest.raises(BadName):
            check_name("run", bad)
    (tmp_path / "root" / "exp").mkdir(parents=True)
    (tmp_path / "root" / "exp" / "out").symlink_to(tmp_path)
    assert contained(tmp_path / "root", "exp") == (tmp_path / "root" / "exp").resolve()
    with pytest.raises(OutsideRoot):
        contained(tmp_path / "root", "exp", "out")


def test_cluster_tables_accept_lists_and_mappings() -> None:
    spec = {"cluster": {
        "devices": {"e1": {"cpus": 1, "extra": {"x": 1}, "memory": None}, "c": {}},
        "links": [{"pair": ["e1", "c"], "rate": "10mbit"}, {"device": "e1", "delay": "5ms"},
                  {"from": "a", "to": "b"}],
    }}  # fmt: skip
    tables = cluster_tables(spec)
    assert tables["devices"] == [{"name": "e1", "cpus": 1}, {"name": "c"}]
    assert [r["name"] for r in tables["links"]] == ["e1-c", "e1", "a-b"]
    assert tables["links"][0] == {"name": "e1-c", "pair": "e1-c", "rate": "10mbit"}
    assert tables["schedule"] == []
    empty = {"devices": [], "links": [], "schedule": []}
    assert cluster_tables({"cluster": None}) == empty and cluster_tables(None) == empty


def test_spec_diff_lists_only_what_differs() -> None:
    from testbed.dashboard.specdiff import spec_diff

    bp = {"name": "a", "model": {"name": "four-layer", "split_after": ["conv1"]}, "algorithm": {"name": "bp"},
          "training": {"lr": 0.001}}
    sg = {"name": "b", "model": {"name": "four-layer", "split_after": ["fc1"]},
          "algorithm": {"name": "sg", "sg": {"width": 64}}, "training": {"lr": 0.001}}
    rows = spec_diff([bp, sg])
    assert rows == [{"path": "model.split_after", "values": [["conv1"], ["fc1"]]},
                    {"path": "algorithm.name", "values": ["bp", "sg"]},
                    {"path": "algorithm.sg.width", "values": [None, 64]}]
    assert spec_diff([bp, bp]) == [] and spec_diff([bp, None])[0]["values"][1] is None


def test_compare_charts_include_loss_on_a_log_scale() -> None:
    from testbed.dashboard.charts import COMPARE_CHARTS, LOG_Y

    assert [c.id for c in COMPARE_CHARTS] == ["accuracy-step", "accuracy-time", "throughput", "loss"]
    assert "loss" in LOG_Y


def test_vendored_uplot_is_the_pinned_release() -> None:
    import hashlib
    import json

    from testbed.paths import PROJECT_ROOT

    folder = PROJECT_ROOT / "testbed" / "dashboard" / "static" / "vendor" / "uplot"
    pin = json.loads((folder / "VENDORED.json").read_text())
    assert (pin["package"], pin["version"], pin["license"]) == ("uplot", "1.6.32", "MIT")
    for name, digest in pin["files"].items():
        assert hashlib.sha256((folder / name).read_bytes()).hexdigest() == digest, name
    assert (folder / "uPlot.iife.min.js").stat().st_size < 60_000
