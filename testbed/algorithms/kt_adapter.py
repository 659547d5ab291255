"""Section adapters: a linear map from a student section's output to its teacher's, and its folding.

An adapter is a bias-free 1x1 convolution (feature maps) or dense projection (flat vectors),
preceded by a bilinear resize when the spatial sizes differ. Being linear and bias-free, it folds
exactly into the first conv/dense layer of the next student section, so the deployed student has
the narrow student's own layer sizes: the adapters cost nothing after training.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
import numpy as np

FOLDABLE = (keras.layers.Conv2D, keras.layers.Dense)


def make_adapter(student_shape: Sequence[int], teacher_shape: Sequence[int],
                 name: str = "adapter") -> keras.Sequential:
    """Map activations of `student_shape` (H, W, C) or (D,) onto `teacher_shape` (same rank)."""
    s, t = tuple(int(d) for d in student_shape), tuple(int(d) for d in teacher_shape)
    if len(s) != len(t) or len(s) not in (1, 3):
        raise ValueError(
            f"adapter: student output {s} and teacher output {t} must both be feature maps "
            "(H, W, C) or both flat (D,); split the pair where the teacher and student agree"
        )
    layers: list[keras.layers.Layer] = []
    if len(s) == 3:
        if s[:2] != t[:2]:
            layers.append(
                keras.layers.Resizing(t[0], t[1], interpolation="bilinear", name="resize"))
        layers.append(keras.layers.Conv2D(t[2], 1, use_bias=False, name="project"))
    else:
        layers.append(keras.layers.Dense(t[0], use_bias=False, name="project"))
    return keras.Sequential([keras.Input(s), *layers], name=name)


def projection(adapter: keras.Sequential) -> np.ndarray:
    """The adapter's linear map as a (C_student, C_teacher) matrix."""
    kernel = adapter.get_layer("project").kernel.numpy()
    return kernel.reshape(kernel.shape[-2], kernel.shape[-1])


def _first_weighted(section: keras.Sequential) -> int:
    for i, layer in enumerate(section.layers):
        if isinstance(layer, FOLDABLE):
            return i
        if not isinstance(layer, keras.layers.Flatten):
            break
    first = type(section.layers[0]).__name__ if section.layers else "nothing"
    raise ValueError(
        f"cannot fold an adapter into section {section.name!r}: it starts with {first}; "
        "expected Conv2D, Dense or Flatten+Dense (put split points after pooling layers)"
    )


def fold_kernel(p: np.ndarray, kernel: np.ndarray, flat_from: tuple[int, ...] | None) -> np.ndarray:
    """Compose projection p (C_s, C_t) with the next layer's kernel (which reads C_t channels).

    Conv kernels are (kh, kw, C_t, O); dense kernels (C_t, O), or (H*W*C_t, O) after a Flatten of
    an (H, W, C_t) map (`flat_from`), where each position's C_t block is projected separately.
    """
    if kernel.ndim == 4:
        return np.einsum("st,hwto->hwso", p, kernel)
    if flat_from is not None:
        positions = int(np.prod(flat_from[:-1]))
        blocks = kernel.reshape(positions, p.shape[1], kernel.shape[-1])
        return np.einsum("st,pto->pso", p, blocks).reshape(positions * p.shape[0], -1)
    return p @ kernel


def fold_adapter(adapter: keras.Sequential, section: keras.Sequential) -> keras.Sequential:
    """The section as it runs in the deployed student: reading the student's narrow activation.

    Returns a new model computing section(adapter(h)) for student activations h, with the
    projection folded into the section's first conv/dense kernel (and the resize, if any, kept as
    a parameter-free first layer). The inputs are not modified.
    """
    first = _first_weighted(section)
    resize = [keras.layers.Resizing.from_config(layer.get_config())
              for layer in adapter.layers if isinstance(layer, keras.layers.Resizing)]
    copies = [type(layer).from_config(layer.get_config()) for layer in section.layers]
    folded = keras.Sequential([keras.Input(adapter.input_shape[1:]), *resize, *copies],
                              name=f"{section.name}_folded")
    flat_from = tuple(section.input_shape[1:]) if first > 0 else None
    for i, (src, dst) in enumerate(zip(section.layers, copies, strict=True)):
        weights = src.get_weights()
        if i == first:
            weights[0] = fold_kernel(projection(adapter), weights[0], flat_from)
        dst.set_weights(weights)
    return folded


def chain(sections: Sequence[keras.Model], adapters: Sequence[keras.Model]) -> list[keras.Model]:
    """The assembled student before folding: section 0, adapter 0, section 1, ..., last section."""
    if len(adapters) != len(sections) - 1:
        raise ValueError(f"chain: {len(sections)} sections need {len(sections) - 1} adapters, "
                         f"got {len(adapters)}")
    out: list[keras.Model] = []
    for i, s in enumerate(sections):
        out.append(s)
        if i < len(adapters):
            out.append(adapters[i])
    return out


def fold_student(sections: Sequence[keras.Sequential],
                 adapters: Sequence[keras.Sequential]) -> list[keras.Sequential]:
    """The deployable student: every adapter folded into the section after it."""
    chain(sections, adapters)  # checks the counts
    return [sections[0], *(fold_adapter(a, s) for a, s in zip(adapters, sections[1:], strict=True))]
