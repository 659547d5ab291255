"""The spec's algorithm.kt block: typed options, cross-field checks, the shipped kt specs."""

import keras
import pytest

from testbed.spec.errors import SpecError
from testbed.spec.load import list_experiments, load_spec, parse_spec, spec_to_dict
from testbed.spec.suite import load_suite


def _raw(**kt):
    return {
        "name": "t",
        "model": {"name": "mnist-student"},
        "algorithm": {"name": "kt", "kt": {"method": "section-kt", "pair": "mnist", **kt}},
        "training": {"iterations": 10},
    }


def test_pair_fills_teacher_and_splits():
    spec = parse_spec(_raw(temperature=2.0, finetune_steps=5))
    kt = spec.algorithm.kt
    assert (kt.teacher_key(), kt.teacher_split(), kt.teacher_width_or_default()) == (
        "eight-layer", ["block1", "block2", "fc1"], 0.5)
    assert kt.saved_teacher() is None and kt.temperature == 2.0


@pytest.mark.parametrize(
    ("kt", "expected"),
    [
        ({"method": "fitnet"}, r"algorithm\.kt\.method: got 'fitnet'; Input should be 'independent', 'kd' or 'section-kt'"),
        ({"kd_weight": 1.5}, r"algorithm\.kt\.kd_weight: got 1\.5; Input should be less than or equal to 1"),
        ({"temperature": 0}, r"algorithm\.kt\.temperature: got 0; Input should be greater than 0"),
        ({"section_loss": "kl"}, r"algorithm\.kt\.section_loss: got 'kl'; Input should be 'mse' or 'l1'"),
        ({"pair": "resnet"}, r"algorithm\.kt\.pair: got 'resnet'; unknown kt pair 'resnet'; known kt pairs: mnist, vgg16-cifar10"),
        ({"teacher": "teacher.h5"}, r"algorithm\.kt\.teacher: got 'teacher\.h5'; expected a zoo model key .* or a \.keras file"),
        ({"teacher": "missing.keras"}, r"saved teacher missing\.keras does not exist"),
        ({"method": "kd", "finetune_steps": 10}, r"finetune_steps applies to method 'section-kt'"),
        ({"method": "independent", "section_input": "student"}, r"section_input applies to method 'section-kt'"),
        ({"section_input": "cloud"}, r"algorithm\.kt\.section_input: got 'cloud'; Input should be 'teacher', 'student', 'mixed' or 'progressive'"),
        ({"method": "kd", "aux_head_weight": 1.0}, r"aux_head_weight applies to method 'section-kt'"),
        ({"aux_head_weight": -1}, r"algorithm\.kt\.aux_head_weight: got -1; Input should be greater than or equal to 0"),
        ({"lr": 0.1}, r"algorithm\.kt\.lr: unknown field; expected one of: method, pair, teacher"),
    ],
)
def test_bad_kt_options_are_named(kt, expected):
    with pytest.raises(SpecError, match=expected):
        parse_spec(_raw(**kt), "t.yaml")


def test_pair_student_must_be_the_model():
    raw = _raw()
    raw["model"]["name"] = "four-layer"
    with pytest.raises(SpecError, match="pair 'mnist' trains student 'mnist-student', but model.name is 'four-layer'"):
        parse_spec(raw)


def test_teacher_and_student_must_split_alike():
    raw = _raw(pair=None, teacher="eight-layer", teacher_split_after=["block2"])
    with pytest.raises(SpecError, match="teacher eight-layer splits into 2 sections but student mnist-student into 4"):
        parse_spec(raw)


def test_kt_needs_a_teacher_and_inprocess_mode():
    with pytest.raises(SpecError, match="needs a teacher"):
        parse_spec(_raw(pair=None))
    raw = _raw()
    raw["job"] = {"mode": "bp-sync"}
    with pytest.raises(SpecError, match="job.mode 'bp-sync' needs algorithm.name 'bp'"):
        parse_spec(raw)


def test_kt_block_only_with_kt_algorithm():
    raw = _raw()
    raw["algorithm"]["name"] = "bp"
    with pytest.raises(SpecError, match="algorithm.kt is set but algorithm.name is 'bp'"):
        parse_spec(raw)
    raw["algorithm"].pop("kt")
    spec = parse_spec(raw)
    assert spec.algorithm.name == "bp"  # specs without a kt block are unchanged
    assert parse_spec(spec_to_dict(spec)).algorithm == spec.algorithm  # dumped spec.yaml re-validates


def test_saved_teacher_path_is_accepted(tmp_path):
    path = tmp_path / "teacher.keras"
    keras.Sequential([keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])]).save(path)
    spec = parse_spec(_raw(teacher=str(path)))
    assert spec.algorithm.kt.saved_teacher() == path
    assert spec.algorithm.kt.teacher_key() is None


def test_every_shipped_kt_spec_is_valid_at_every_scale():
    names = [n for n in list_experiments() if n.startswith("kt-") and load_suite(n) is None]
    assert len(names) == 8  # 3 methods x 2 pairs, kt-mnist-progressive, kt-mnist-edge (kt-sections)
    for name in names:
        for scale in (None, "smoke", "bench", "gpu"):
            try:
                load_spec(name, scale)
            except SpecError as err:
                assert "is not defined" in str(err)


def test_existing_specs_stay_valid_with_kt_registered():
    for name in ("four-layer-bp", "four-layer-sg", "eight-layer-sg", "vgg16-bp", "vgg16-sg"):
        spec = load_spec(name, "smoke")
        assert spec.algorithm.name in ("bp", "sg")
        assert parse_spec(spec_to_dict(spec)).algorithm == spec.algorithm


def test_kt_suites_cover_the_three_methods():
    three = ["independent", "kd", "section-kt"]
    for suite_name, dataset, methods in (("kt-mnist", "mnist", [*three, "section-kt"]),
                                         ("kt-vgg16", "cifar10", three)):
        suite = load_suite(suite_name)
        specs = [load_spec(m, "smoke") for m in suite.suite]
        assert sorted(s.algorithm.kt.method for s in specs) == methods
        assert {s.data.dataset for s in specs} == {dataset}
    progressive = load_spec("kt-mnist-progressive", "smoke").algorithm.kt
    assert (progressive.section_input, progressive.aux_head_weight, progressive.finetune_steps) == (
        "progressive", 1.0, 0)


@pytest.mark.parametrize(("kt", "expected"), [
    ({"aux_head_weight": 1.0}, r"aux_head_weight trains heads in process; with job.mode 'kt-sections' set it to 0"),
    ({"section_input": "progressive"}, r"needs method 'section-kt' with section_input 'teacher', got method "
                                       r"'section-kt', section_input 'progressive'"),
])
def test_distributed_kt_refuses_the_in_process_options(kt, expected):
    raw = spec_to_dict(load_spec("kt-mnist-edge", "smoke"))
    raw["algorithm"]["kt"].update(kt)
    with pytest.raises(SpecError, match=expected):
        parse_spec(raw)
