"""Order-flow features on hand-computed cases: OFI by the definition of Cont, Kukanov &
Stoikov (2014, eq. 2) and its multi-level form (Xu, Gould & Howison 2018), trade imbalance,
microprice, and the microburst detector."""
from __future__ import annotations

import pytest

from daemon.features.flow import OFI, Microburst, TradeImbalance, microprice, ofi_event

S = 1_000_000_000


@pytest.mark.parametrize("prev,cur,e", [
    # bid price up: the new bid size is all new buying interest; ask unchanged cancels out
    ((100.0, 5.0, 101.0, 3.0), (100.5, 2.0, 101.0, 3.0), 2.0),
    # bid size up at the same price: +7 - 5
    ((100.0, 5.0, 101.0, 3.0), (100.0, 7.0, 101.0, 3.0), 2.0),
    # ask price down: new ask size is selling interest; bid unchanged cancels out
    ((100.0, 5.0, 101.0, 3.0), (100.0, 5.0, 100.5, 4.0), -4.0),
    # bid price down: the old bid queue is gone
    ((100.0, 5.0, 101.0, 3.0), (99.5, 6.0, 101.0, 3.0), -5.0),
    # ask price up: the old ask queue was taken (+3)
    ((100.0, 5.0, 101.0, 3.0), (100.0, 5.0, 101.5, 9.0), 3.0),
    # nothing changed
    ((100.0, 5.0, 101.0, 3.0), (100.0, 5.0, 101.0, 3.0), 0.0),
])
def test_ofi_event_cont_kukanov_stoikov(prev, cur, e) -> None:
    assert ofi_event(*prev, *cur) == e


def test_ofi_window_sum_and_readiness() -> None:
    o = OFI(2 * S, levels=1)
    o.update(0, (100.0, 5.0), (101.0, 3.0))
    assert o.value(0) is None                    # window not covered yet
    o.update(1 * S, (100.0, 7.0), (101.0, 3.0))  # +2
    assert o.value(1 * S) is None
    o.update(2 * S, (100.0, 7.0), (100.5, 4.0))  # -4 (ask down)
    assert o.value(2 * S) == -2.0                # covered: 2 - 4
    o.update(3 * S, (100.0, 7.0), (100.5, 4.0))  # 0; the +2 at t=1 s leaves (ts <= 3-2)
    assert o.value(3 * S) == -4.0
    o.reset()
    assert o.value(3 * S) is None


def test_multi_level_ofi_sums_levels() -> None:
    o = OFI(1 * S, levels=2)
    bids0 = [(100.0, 5.0), (99.0, 1.0)]
    asks0 = [(101.0, 3.0), (102.0, 2.0)]
    o.update(0, bids0[0], asks0[0], bids0, asks0)
    bids1 = [(100.0, 5.0), (99.0, 4.0)]          # level 2 bid +3
    asks1 = [(101.0, 3.0), (101.5, 1.0)]         # level 2 ask price down: -1
    o.update(2 * S, bids1[0], asks1[0], bids1, asks1)
    assert o.value(2 * S) == 0.0                 # level 1 unchanged
    assert o.value_ml(2 * S) == 3.0 - 1.0


def test_trade_imbalance() -> None:
    t = TradeImbalance(3)
    assert t.update(1.0, True) is None
    t.update(1.0, True)
    assert t.update(2.0, False) == 0.0           # 2 bought, 2 sold
    assert t.update(4.0, True) == pytest.approx((1 - 2 + 4) / 7)
    z = TradeImbalance(2)
    z.update(0.0, True)
    assert z.update(0.0, False) is None          # zero volume: undefined, not ready


def test_microprice() -> None:
    # little size on the ask: the price leans toward the ask
    assert microprice((100.0, 9.0), (101.0, 1.0)) == pytest.approx(100.9)
    assert microprice((100.0, 0.0), (101.0, 0.0)) is None
    assert microprice((100.0, float("nan")), (101.0, 1.0)) is None


def _steady(m: Microburst, buckets: int, per_bucket: int, start: int = 0) -> int:
    t = start
    for b in range(buckets):
        for k in range(per_bucket):
            t = start + b * S + k * (S // (per_bucket + 1))
            m.on_trade(t)
    return start + buckets * S


def test_microburst_fires_on_a_trade_burst_and_not_on_the_steady_rate() -> None:
    m = Microburst(S, 30 * S, threshold=4.0, warmup=20, min_trades=10)
    t = _steady(m, 25, 5)
    assert m.ready and m.burst == 0.0 and abs(m.trade_z) < 1.0
    for k in range(60):                           # 60 trades in one bucket
        m.on_trade(t + k * 1000)
    assert m.trade_z >= 4.0 and m.burst == 1.0


def test_microburst_feed_gap_restarts_the_baseline() -> None:
    m = Microburst(S, 30 * S, warmup=20, max_gap_ns=10 * S)
    t = _steady(m, 25, 5)
    assert m.ready
    m.on_trade(t + 3600 * S)                      # an hour of nothing: a feed gap
    assert not m.ready and m.gaps == 1


def test_microburst_ofi_burst() -> None:
    m = Microburst(S, 30 * S, warmup=10)
    for b in range(15):
        m.on_ofi(b * S, 1.0)
        m.on_ofi(b * S + S // 2, -1.0)
    assert m.ready and m.ofi_z < 4.0 and m.burst == 0.0
    m.on_ofi(15 * S, 500.0)
    assert m.ofi_z >= 4.0 and m.burst == 1.0


def test_microburst_publishes_at_bucket_close_and_at_burst_onset() -> None:
    m = Microburst(S, 30 * S, threshold=4.0, warmup=5, min_trades=10)
    changed = [m.on_trade(b * S + k) for b in range(8) for k in range(5)]
    # one change per bucket boundary (the first trade of each bucket), nothing in between
    assert [i for i, c in enumerate(changed) if c] == [5 * b for b in range(8)]
    t = 8 * S
    assert m.on_trade(t) is True                   # bucket 7 closes
    flips = [m.on_trade(t + k) for k in range(1, 40)]
    assert flips.count(True) == 1 and m.burst == 1.0   # the crossing, once
    k = flips.index(True) + 2                      # trades in the bucket at the crossing
    assert k >= 10 and m.trade_z >= 4.0
    assert m.on_trade(9 * S) is True and m.burst == 0.0   # a new bucket: not hot yet


def test_engine_microburst_flag_turns_on_at_the_crossing_trade() -> None:
    from daemon.config import FeaturesCfg
    from daemon.features.engine import FeatureEngine
    from daemon.market.events import Trade
    eng = FeatureEngine(FeaturesCfg(burst_warmup_buckets=5, burst_min_trades=10), ["X"])
    for b in range(8):
        for k in range(3):
            eng.on_trade(Trade("X", b * S + k, 0, 1, 100.0, 1.0, False))
    v = eng.store.get("X", "microburst")
    assert v.ready and v.value == 0.0
    for k in range(50):
        eng.on_trade(Trade("X", 8 * S + 100 + k, 0, 1, 100.0, 1.0, False))
        if eng.store.get("X", "microburst").value == 1.0:
            break
    v = eng.store.get("X", "microburst")
    assert v.value == 1.0 and v.ts_ns == 8 * S + 100 + k and k + 1 >= 10
    assert eng.store.get("X", "trade_rate_z").value >= 4.0
