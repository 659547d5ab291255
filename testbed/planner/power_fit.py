"""The seed's eq. (1) in spirit: a device's power as a linear regression on its counters, fitted
on samples taken while profiling; predictions then need the counters only, never the meter.

Pure (numpy least squares). Columns without variance in the samples (no link traffic while
profiling alone) get coefficient 0 and are named in `PowerFit`'s caller's notes.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from testbed.planner.cluster import PowerFit

COLUMNS = ("utilisation", "tx_bps", "rx_bps")


def fit_power(samples: Sequence[dict[str, float]]) -> tuple[PowerFit, list[str]]:
    """Least squares of power_w on 1, utilisation, tx_bps, rx_bps; returns (fit, unfitted)."""
    if len(samples) < 3:
        raise ValueError(f"power fit: got {len(samples)} samples; expected at least 3")
    y = np.array([s["power_w"] for s in samples], dtype=np.float64)
    cols = {c: np.array([s.get(c, 0.0) for s in samples], dtype=np.float64) for c in COLUMNS}
    used = [c for c in COLUMNS if np.ptp(cols[c]) > 1e-9 * max(1.0, np.abs(cols[c]).max())]
    unfitted = [c for c in COLUMNS if c not in used]
    if "utilisation" in unfitted:
        raise ValueError("power fit: utilisation does not vary in the samples; expected idle and "
                         "busy periods (profile from the device's start)")  # fmt: skip
    x = np.column_stack([np.ones_like(y), *(cols[c] for c in used)])
    coef, *_ = np.linalg.lstsq(x, y, rcond=None)
    residual = float(np.sqrt(np.mean((x @ coef - y) ** 2)))
    named = dict(zip(used, coef[1:], strict=True))
    fit = PowerFit(
        idle_w=float(coef[0]),
        per_util_w=float(named["utilisation"]),
        tx_j_per_bit=float(named.get("tx_bps", 0.0)),
        rx_j_per_bit=float(named.get("rx_bps", 0.0)),
        residual_w=residual,
    )
    return fit, unfitted
