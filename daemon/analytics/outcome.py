"""The one result shape of the heavy analytics: a value, or None and the reason why.

Every fit, spread and solver in `daemon.analytics` answers with an `Outcome` so that a
caller can never receive NaN or inf as a number: a computation that cannot produce a
finite answer returns ``Outcome(None, reason)``. This module only defines the shape and
the finiteness check; it never computes anything itself.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Outcome(Generic[T]):
    """``value`` is set and ``reason`` is None, or ``value`` is None and ``reason`` says why."""

    value: T | None
    reason: str | None = None

    @property
    def ok(self) -> bool:
        return self.value is not None


def ok(value: T) -> Outcome[T]:
    return Outcome(value, None)


def fail(reason: str) -> Outcome:
    return Outcome(None, reason)


def all_finite(*xs: float) -> bool:
    """True when every number is a finite float (bool/int accepted)."""
    return all(math.isfinite(x) for x in xs)
