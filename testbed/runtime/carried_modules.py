"""The SG modules a re-split carries from a boundary's old owner to its new one, held by the
parameter server between the push and the pull: newest (version, state) per boundary unit,
validated against what the module at that boundary holds."""

from __future__ import annotations

import threading

import numpy as np

from testbed.runtime import resplit, splits
from testbed.runtime.replica import Replica
from testbed.runtime.wire.tensors import TensorSpec


class CarriedModules:
    """SG module state per boundary (after unit u, 0 <= u < units - 1), newest version kept."""

    def __init__(self, replica: Replica, units: int) -> None:
        self.replica, self.units = replica, units
        self._modules: dict[int, tuple[int, dict[str, np.ndarray]]] = {}
        self._specs: dict[int, dict[str, TensorSpec]] = {}
        self._lock = threading.Lock()

    def check(self, unit: int) -> None:
        """Raise SplitError unless `unit` is a boundary of the model's chain of units."""
        if not 0 <= unit < self.units - 1:
            raise splits.SplitError(f"sg_boundary: got unit {unit}, expected a boundary 0.."
                                    f"{self.units - 2}")

    def specs(self, unit: int) -> dict[str, TensorSpec]:
        """What the SG module at the boundary after `unit` holds (weights, Adam variables)."""
        self.check(unit)
        with self._lock:
            if not self._specs:  # built once, on the first carried module
                shapes = resplit.unit_output_shapes(self.replica)
                self._specs.update({u: resplit.module_state_specs(
                    self.replica.spec, shapes[u], self.replica.num_classes)
                    for u in range(len(shapes) - 1)})  # fmt: skip
            return self._specs[unit]

    def put(self, unit: int, version: int, tensors: dict[str, np.ndarray]) -> None:
        """Keep a pushed module unless a newer version of the same boundary is already here."""
        with self._lock:
            if self._modules.get(unit, (-1,))[0] <= version:
                self._modules[unit] = (version, dict(tensors))

    def get(self, unit: int) -> tuple[int, dict[str, np.ndarray]]:
        """(version, state) of the boundary's newest module; (-1, {}) before any push."""
        self.check(unit)
        with self._lock:
            return self._modules.get(unit, (-1, {}))
