"""Spec loading: every shipped spec validates; malformed specs give specific, located errors."""

import pytest
import yaml

from testbed.spec.errors import SpecError
from testbed.spec.load import list_experiments, load_spec, parse_spec
from testbed.spec.suite import load_suite
from testbed.spec.sweep import load_sweep

SEED_SPECS = {f"{m}-{a}" for m in ("four-layer", "eight-layer", "vgg16") for a in ("bp", "sg")}
SPECS = [n for n in list_experiments() if load_suite(n) is None and load_sweep(n) is None]

GOOD = {
    "name": "t",
    "model": {"name": "four-layer"},
    "algorithm": {"name": "sg"},
    "training": {"iterations": 10},
    "scales": {"smoke": {"training": {"iterations": 2, "batch_size": 8}}},
}


def _with(path, value):
    raw = yaml.safe_load(yaml.safe_dump(GOOD))
    node = raw
    *parents, last = path.split(".")
    for p in parents:
        node = node.setdefault(p, {})
    node[last] = value
    return raw


@pytest.mark.parametrize("name", SPECS)
@pytest.mark.parametrize("scale", [None, "smoke"])
def test_shipped_specs_validate(name, scale):
    spec = load_spec(name, scale)
    assert spec.name == name
    if scale is None and name in SEED_SPECS:  # paper scale is the seed paper's budget
        assert (spec.training.batch_size, spec.training.lr, spec.training.iterations) == (256, 3e-5, 500_000)


def test_scale_overrides_merge_deeply():
    spec = parse_spec(GOOD, "t.yaml", "smoke")
    assert (spec.training.iterations, spec.training.batch_size, spec.scale) == (2, 8, "smoke")
    assert spec.model.name == "four-layer"


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        ("model.name", "resnet9", r"t\.yaml: model\.name: got 'resnet9'; unknown model 'resnet9'; known models: alexnet-cifar, eight-layer, four-layer, mnist-student, nin-cifar, resnet20, squeezenet-cifar, tf-cifar10, vgg16"),
        ("algorithm.name", "dfa", r"algorithm\.name: got 'dfa'; unknown algorithm 'dfa'; known algorithms: bp, kt, local, sg"),
        ("training.batch_size", 0, r"training\.batch_size: got 0; Input should be greater than 0"),
        ("training.iterations", "many", r"training\.iterations: got 'many'; Input should be a valid integer"),
        ("training.optimizer", "rmsprop", r"training\.optimizer: got 'rmsprop'; Input should be 'adam' or 'sgd'"),
        ("algorithm.sg.depth", 9, r"algorithm\.sg\.depth: got 9; Input should be less than or equal to 4"),
        ("model.colour", "red", r"model\.colour: unknown field; expected one of: name, width, split_after"),
        ("data.dataset", "imagenet", r"data\.dataset: got 'imagenet'; unknown dataset 'imagenet'; known datasets: cifar10, cifar10-synthetic, cifar100, mnist"),
        ("job.mode", "bp-sync", r"job\.mode 'bp-sync' needs algorithm\.name 'bp'"),
        ("report.accuracy_levels", [0.95, 0.9], r"report\.accuracy_levels: got \[0\.95, 0\.9\]; expected a non-empty ascending list of distinct accuracies in \(0, 1\]"),
        ("report.accuracy_levels", [0.9, 1.5], r"report\.accuracy_levels: got \[0\.9, 1\.5\]; expected"),
    ],
)
def test_malformed_specs_name_field_value_and_expected_form(path, value, expected):
    with pytest.raises(SpecError, match=expected):
        parse_spec(_with(path, value), "t.yaml")


def test_missing_required_field():
    raw = {k: v for k, v in GOOD.items() if k != "training"}
    with pytest.raises(SpecError, match=r"t\.yaml: training: missing; this field is required"):
        parse_spec(raw, "t.yaml")


def test_unknown_scale_lists_known_scales():
    with pytest.raises(SpecError, match=r"scale 'huge' is not defined; known scales: paper, smoke"):
        parse_spec(GOOD, "t.yaml", "huge")


def test_error_after_scale_says_so():
    raw = _with("scales.smoke.training.lr", -1)
    with pytest.raises(SpecError, match=r"(?s)training\.lr: got -1.*after applying scale 'smoke'"):
        parse_spec(raw, "t.yaml", "smoke")


def test_not_a_mapping(tmp_path):
    p = tmp_path / "list.yaml"
    p.write_text("- a\n- b\n")
    with pytest.raises(SpecError, match=r"list\.yaml: got list; expected a YAML mapping"):
        load_spec(str(p))


def test_yaml_tags_are_not_executed(tmp_path):
    p = tmp_path / "evil.yaml"
    marker = tmp_path / "pwned"
    p.write_text(f"name: !!python/object/apply:os.system ['touch {marker}']\n")
    with pytest.raises(SpecError, match=r"evil\.yaml:1:7: tag '.*python/object/apply:os\.system' is not allowed"):
        load_spec(str(p))
    assert not marker.exists()


def test_unknown_experiment_lists_known():
    with pytest.raises(SpecError, match=r"unknown experiment 'nope'; known experiments: .*four-layer-sg"):
        load_spec("nope")


@pytest.mark.parametrize("job", [{"on_failure": "restart"}, {"on_failure": "stop"}])
def test_local_loss_runs_may_restart_and_checkpoint_their_heads_travel_along(job):
    raw = _with("algorithm.name", "local")
    raw["job"] = job
    raw["training"] = {**raw.get("training", {}), "checkpoint_every": 20}
    spec = parse_spec(raw, "t.yaml")
    assert (spec.job.on_failure, spec.training.checkpoint_every) == (job["on_failure"], 20)
