"""LatencySpike keeps its threshold until an ack joins the window: on a long mixed run of
acks (normal ones, spikes, spikes that trip, negative ones) the kept threshold is after
every ack the one worked out afresh from the window, and a detector that recomputes on
every call trips on exactly the same acks."""
from __future__ import annotations

import random

from daemon.safety.breakers.detectors import LatencySpike
from daemon.safety.breakers.market_watch import median

MS = 1_000_000


def fresh(d: LatencySpike) -> float | None:
    lat = list(d._lat)
    return None if len(lat) < d.warmup else max(d.factor * median(lat), d.floor_ns)


class Uncached(LatencySpike):
    """The rule as it was: the median worked out on every call."""

    def threshold_ns(self) -> float | None:
        return fresh(self)


def test_the_kept_threshold_follows_the_window_and_trips_on_the_same_acks():
    kw = dict(factor=3.0, floor_ns=50 * MS, window=20, warmup=5, spikes=3)
    d, ref = LatencySpike(**kw), Uncached(**kw)
    rnd = random.Random(7)
    trips = 0
    assert d.threshold_ns() is None                   # warming up, kept as None ...
    for i in range(3000):
        r = rnd.random()
        lat = (-MS if r < 0.02 else rnd.randint(400, 900) * MS if r < 0.2
               else rnd.randint(5, 60) * MS)
        if i % 500 == 0:
            lat = 2000 * MS                           # a run of spikes: trips
        assert d.is_spike(lat) == ref.is_spike(lat)
        got, want = d.ack(lat), ref.ack(lat)
        assert got == want
        trips += got is not None
        assert d.threshold_ns() == fresh(d)           # ... and moves once acks join
        assert list(d._lat) == list(ref._lat) and d.run == ref.run
    assert trips > 0
