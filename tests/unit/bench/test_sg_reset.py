"""The sg-reset bench's pure parts: what a reset zeroes, and the dip read off a curve."""

from __future__ import annotations

import keras
import numpy as np

from testbed.bench import sg_reset


def test_zero_state_makes_an_optimizer_as_new_and_keeps_its_learning_rate() -> None:
    opt = keras.optimizers.Adam(1e-3)
    v = keras.Variable(np.ones(3, "float32"))
    opt.apply_gradients([(np.ones(3, "float32"), v)])
    sg_reset.zero_state(opt)
    state = {x.path.split("/")[-1]: np.asarray(x.numpy()) for x in opt.variables}
    assert float(state["learning_rate"]) == np.float32(1e-3)
    assert all(not np.any(a) for k, a in state.items() if k != "learning_rate")


def test_the_dip_is_measured_from_the_reset_to_the_lowest_point_after_it() -> None:
    at = sg_reset.RESET_AT
    curve = [(at - 20, 0.8), (at, 0.86), (at + 20, 0.59), (at + 40, 0.7), (at + 60, 0.89)]
    s = sg_reset.summary(curve)
    assert (s["at_reset"], s["lowest_after"], s["final"]) == (0.86, 0.59, 0.89)
    assert abs(s["dip"] - 0.27) < 1e-9
