"""Numeric guards shared by the feature modules.

Every feature takes its inputs through `ok` (finite and not astronomically large, so squares
and sums of squares cannot overflow to inf) and hands its outputs through `out` (None unless
finite). Nothing here keeps state or allocates per call.
"""
from __future__ import annotations

import math

MAX_INPUT = 1e100
"""Inputs beyond this magnitude are treated like NaN (dropped): 1e100 squared is 1e200, so
sums of squares of up to 1e100 such values stay finite."""

isfinite = math.isfinite


def ok(x: float) -> bool:
    """True for a usable input: finite and at most MAX_INPUT in magnitude."""
    return -MAX_INPUT <= x <= MAX_INPUT   # False for NaN (every comparison with NaN is)


def out(x: float | None) -> float | None:
    """The value as it may leave a feature: a finite float, else None."""
    return x if x is not None and isfinite(x) else None


MIN_PRICE = 1e-100
"""Prices below this are dropped like NaN: a ratio of two accepted prices then stays within
1e-200..1e200, so its logarithm is always finite (a denormal price such as 5e-324 would
make price / previous overflow to inf or underflow to 0)."""


def ok_price(x: float) -> bool:
    """True for a usable price: MIN_PRICE <= x <= MAX_INPUT (False for NaN)."""
    return MIN_PRICE <= x <= MAX_INPUT
