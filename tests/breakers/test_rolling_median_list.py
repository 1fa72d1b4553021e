"""RollingMedian keeps a small window in a plain sorted list and a large one in a
SortedList: on either side of the switch (and across it) its median is the median of
exactly the values of the window, with duplicates, expiry of several values at once and
a window that empties."""
from __future__ import annotations

import random

import pytest
from sortedcontainers import SortedList

from daemon.safety.breakers import market_watch
from daemon.safety.breakers.market_watch import RollingMedian, median


@pytest.mark.parametrize("list_max", [10_000, 40, 0])
def test_the_median_is_that_of_the_window_whatever_holds_it(monkeypatch, list_max):
    monkeypatch.setattr(market_watch, "_LIST_MAX", list_max)
    rnd = random.Random(list_max + 1)
    window = 1_000
    m = RollingMedian(window)
    kept: list[tuple[int, float]] = []
    ts = 0
    for i in range(4000):
        # bursts and gaps: sometimes many values expire at once, sometimes all of them
        ts += rnd.choice((1, 3, 10, 50)) if i % 700 else 5 * window
        v = float(rnd.randint(0, 30)) / 4 if rnd.random() < 0.7 else rnd.uniform(-5, 5)
        m.add(ts, v)
        kept = [(t, x) for t, x in kept + [(ts, v)] if ts - t <= window]
        assert len(m) == len(kept)
        assert m.median() == median([x for _, x in kept])
        assert list(m._sorted) == sorted(x for _, x in kept)
    if list_max < 100:   # it went over: a SortedList from then on
        assert isinstance(m._sorted, SortedList)
    elif list_max == 10_000:
        assert type(m._sorted) is list
    m.expire(ts + window + 1)
    assert len(m) == 0 and m.median() is None
