"""Wire codecs: round trips per precision with bounded error, top-k, and the in-process crossing."""

from __future__ import annotations

import math

import numpy as np
import pytest
import tensorflow as tf

from testbed.algorithms.wire_codec import (
    FP16_MAX,
    RAW,
    Codec,
    crossing,
    decode,
    encode,
    int8_scale,
    round_trip,
    tf_round_trip,
)


def _activation(seed: int = 0, shape: tuple[int, ...] = (16, 7, 7, 8)) -> np.ndarray:
    """Positive and negative values whose magnitude differs by channel (as after a conv)."""
    rng = np.random.default_rng(seed)
    per_channel = np.geomspace(0.01, 10.0, shape[-1]).astype(np.float32)
    return (rng.standard_normal(shape).astype(np.float32) * per_channel).astype(np.float32)


def test_fp32_is_lossless_and_raw_is_fp32() -> None:
    x = _activation()
    assert RAW.lossless and RAW == Codec("fp32")
    assert round_trip(x, RAW).tobytes() == x.tobytes()


def test_fp16_error_is_within_half_an_fp16_ulp_and_saturates() -> None:
    x = _activation()
    y = round_trip(x, Codec("fp16"))
    # round to nearest: |err| <= 2^-11 |x| for normal fp16 values, 2^-25 absolute below them
    assert np.all(np.abs(y - x) <= np.abs(x) * 2.0**-11 + 2.0**-25)
    assert not np.array_equal(y, x)  # it did round
    big = round_trip(np.array([1e6, -1e6, 3.0], np.float32), Codec("fp16"))
    np.testing.assert_array_equal(big, [FP16_MAX, -FP16_MAX, 3.0])  # no inf on the wire


@pytest.mark.parametrize("granularity", ["per-tensor", "per-channel"])
def test_int8_error_is_within_half_a_step_of_its_scale(granularity: str) -> None:
    x = _activation()
    codec = Codec("int8", granularity)  # type: ignore[arg-type]
    enc = encode(x, codec)
    assert enc.codes.dtype == np.int8 and enc.codes.size == x.size
    assert enc.scale is not None and enc.scale.size == codec.n_scales(x.shape)
    step = enc.scale if granularity == "per-channel" else enc.scale[0]
    y = decode(enc)
    assert y.dtype == np.float32 and y.shape == x.shape
    assert np.all(np.abs(y - x) <= step / 2 * (1 + 1e-6))
    # the largest magnitude of each scale group maps to +-127 exactly: no code is wasted
    amax = np.abs(x).reshape(-1, 8).max(axis=0) if granularity == "per-channel" else np.abs(x).max()
    np.testing.assert_allclose(step * 127, amax, rtol=1e-6)


def test_per_channel_scale_is_far_more_exact_for_small_channels() -> None:
    x = _activation()
    small = x[..., 0]  # channel scale 0.01, the largest is 10
    per_tensor = round_trip(x, Codec("int8"))[..., 0]
    per_channel = round_trip(x, Codec("int8", "per-channel"))[..., 0]
    assert np.abs(per_channel - small).max() * 100 < np.abs(per_tensor - small).max()


def test_int8_of_zeros_and_of_an_all_zero_channel_decode_to_zero() -> None:
    assert not round_trip(np.zeros((4, 3), np.float32), Codec("int8")).any()
    x = _activation(shape=(4, 3))
    x[:, 1] = 0
    assert int8_scale(x, "per-channel")[1] == 0
    y = round_trip(x, Codec("int8", "per-channel"))
    assert not y[:, 1].any() and np.all(np.isfinite(y))


def test_int8_keeps_sign_and_magnitude() -> None:
    """Would catch a flipped sign or a scale off by any factor (e.g. 100x too small)."""
    x = np.array([[-2.0, 1.0], [0.5, 2.0]], np.float32)
    y = round_trip(x, Codec("int8"))
    np.testing.assert_allclose(y, x, atol=1.0 / 127)


@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_topk_keeps_exactly_the_largest_entries(precision: str) -> None:
    x = _activation(seed=3).reshape(16, -1)
    codec = Codec(precision, "per-channel", topk=0.1)  # type: ignore[arg-type]
    enc = encode(x, codec)
    k = math.ceil(0.1 * x.size)
    assert codec.kept(x.size) == k and enc.codes.size == k
    assert enc.indices is not None and np.all(np.diff(enc.indices.astype(np.int64)) > 0)
    y = decode(enc)
    flat, out = x.reshape(-1), y.reshape(-1)
    threshold = np.sort(np.abs(flat))[-k]
    assert np.all(np.abs(flat[enc.indices]) >= threshold)
    mask = np.zeros(flat.size, bool)
    mask[enc.indices] = True
    assert not out[~mask].any()  # the rest decode to 0
    kept_err = np.abs(out[mask] - flat[mask]).max()
    assert kept_err == 0 if precision == "fp32" else kept_err <= np.abs(flat).max() / 127


def test_topk_keeps_at_least_one_entry_and_never_more_than_all() -> None:
    codec = Codec("fp32", topk=1e-6)
    assert codec.kept(10) == 1 and codec.kept(0) == 0
    assert Codec("fp32", topk=1.0).kept(10) == 10
    y = round_trip(np.array([0.1, -3.0, 2.0], np.float32), codec)
    np.testing.assert_array_equal(y, [0, -3.0, 0])


def test_encoded_bytes_shrink_as_the_precision_says() -> None:
    x = _activation(shape=(64, 14, 14, 32))
    sizes = {p: encode(x, Codec(p)).nbytes for p in ("fp32", "fp16", "int8")}  # type: ignore[arg-type]
    assert sizes["fp32"] == x.nbytes
    assert sizes["fp16"] == x.nbytes // 2
    assert sizes["int8"] == x.nbytes // 4 + 4


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"precision": "int4"}, "Codec.precision: got 'int4'"),
        ({"scale": "per-row"}, "Codec.scale: got 'per-row'"),
        ({"topk": 0.0}, r"Codec.topk: got 0.0, expected a fraction in \(0, 1\]"),
        ({"topk": 1.5}, "Codec.topk: got 1.5"),
    ],
)
def test_codec_rejects_bad_settings(kwargs: dict, pattern: str) -> None:
    with pytest.raises(ValueError, match=pattern):
        Codec(**kwargs)


def test_crossing_quantises_the_value_forward_and_the_gradient_backward() -> None:
    act, grad = Codec("int8", "per-channel"), Codec("fp16", topk=0.25)
    cross = crossing(act, grad)
    assert cross is not None and crossing(RAW, RAW) is None
    h = tf.constant(_activation(seed=1, shape=(4, 8)))
    upstream = tf.constant(_activation(seed=2, shape=(4, 8)))
    with tf.GradientTape() as tape:
        tape.watch(h)
        out = tf.function(cross)(h)
        loss = tf.reduce_sum(out * upstream)  # d loss / d out = upstream
    np.testing.assert_array_equal(out.numpy(), round_trip(h.numpy(), act))
    np.testing.assert_array_equal(tape.gradient(loss, h).numpy(), round_trip(upstream.numpy(), grad))
    assert tf_round_trip(h, RAW) is h


@pytest.mark.parametrize("shape", [(), (4,), (0, 5), (3, 0)])
@pytest.mark.parametrize("codec", [Codec("int8", "per-channel"), Codec("fp16", topk=0.5)])
def test_scalars_vectors_and_empty_tensors_keep_their_shape(shape, codec) -> None:
    x = np.full(shape, -2.0, np.float32)
    y = round_trip(x, codec)
    assert y.shape == shape and y.dtype == np.float32
    assert np.all(y == -2.0) if codec.topk is None else np.count_nonzero(y) == codec.kept(x.size)
