"""The generated CIFAR-shaped data set: CIFAR-10's shape, the same arrays every time, marked
synthetic so that nothing made on it reports an accuracy."""

from __future__ import annotations

import math

import numpy as np

from testbed.data import load_dataset
from testbed.spec.load import parse_spec
from testbed.testing.specs import stage_spec
from testbed.training.session import Session


def test_cifar_shaped_seeded_and_marked_synthetic() -> None:
    a, b = load_dataset("cifar10-synthetic"), load_dataset("cifar10-synthetic")
    assert a.synthetic and a.input_shape == (32, 32, 3) and a.num_classes == 10
    assert a.x_train.shape[1:] == (32, 32, 3) and a.x_train.dtype == np.float32
    np.testing.assert_array_equal(a.x_train, b.x_train)
    assert set(np.unique(a.y_train)) == set(range(10))
    assert "synthetic" in a.source
    assert not load_dataset("mnist").synthetic


def test_evaluation_on_synthetic_data_reports_no_accuracy() -> None:
    raw = stage_spec("inprocess", 2, data={"dataset": "cifar10-synthetic"})
    raw["model"] = {"name": "tf-cifar10", "width": 0.125}
    spec = parse_spec(raw)
    session = Session.build(spec, load_dataset("cifar10-synthetic"))
    assert math.isnan(session.evaluator()())
