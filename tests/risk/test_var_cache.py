"""The VaR window's returns matrix is cached for the pre-trade check: the cache must follow
every change of the window (a new sample, the oldest dropped, a wholesale restore)."""
from __future__ import annotations

from decimal import Decimal

import numpy as np
import pytest

from daemon.risk.var import MarkWindow


def _fresh(w: MarkWindow, symbols: list[str]) -> np.ndarray:
    return w._build(symbols)   # noqa: SLF001 - the uncached computation


def test_cached_returns_follow_new_samples_and_the_rolling_window():
    w = MarkWindow(window=3, interval_ns=10)
    syms = ["A", "B"]
    for i, (a, b) in enumerate([(100, 10), (101, 10), (99, 11)]):
        w.sample({"A": Decimal(a), "B": Decimal(b)}, i * 10)
    first = w.returns(syms)
    assert w.returns(syms) is first               # cached: the same array
    np.testing.assert_array_equal(first, _fresh(w, syms))
    w.sample({"A": Decimal(98), "B": Decimal(12)}, 30)
    second = w.returns(syms)
    assert second.shape == (3, 2) and not np.array_equal(second[:2], first[:2]) or \
        second.shape != first.shape
    np.testing.assert_array_equal(second, _fresh(w, syms))
    w.sample({"A": Decimal(97), "B": Decimal(12)}, 40)   # full: the oldest sample drops
    np.testing.assert_array_equal(w.returns(syms), _fresh(w, syms))
    np.testing.assert_array_equal(w.returns(["B"]), _fresh(w, ["B"]))   # other symbols


def test_cached_returns_follow_a_wholesale_replacement_and_are_read_only():
    w = MarkWindow(window=5, interval_ns=10)
    for i in range(4):
        w.sample({"A": Decimal(100 + i)}, i * 10)
    before = w.returns(["A"])
    with pytest.raises(ValueError):
        before[0, 0] = 1.0                         # shared: nobody may write into it
    w.replace([(0, {"A": 50.0}), (10, {"A": 60.0}), (25, {"A": 30.0}),
               (30, {"A": 45.0})])               # same length and extent, other values
    np.testing.assert_allclose(w.returns(["A"]), [[0.2], [-0.5], [0.5]])
