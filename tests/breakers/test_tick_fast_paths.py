"""Fast paths of the market figures and the board's tick: a trade before
`MarketWatch.due_ns` skips `tick`, the board's tick skips what cannot change (no invalid
book, no probe out, no interval ended, a closed breaker), and a trade's validity test is
inlined. Each must decide exactly what the full path decides, and must see every change at
once (never a stale due time)."""
from __future__ import annotations

import math
import random
from decimal import Decimal

import numpy as np

from daemon.config import BreakersCfg
from daemon.safety.breakers import GLOBAL, BreakerBoard, BreakerChange
from daemon.safety.breakers.market_watch import MarketWatch

S = 1_000_000_000
V = "paper"


def _watch() -> MarketWatch:
    return MarketWatch(spread_window_ns=60 * S, ofi_window_ns=2 * S,
                       volume_interval_ns=S, volume_window=10)


def _full(w: MarketWatch) -> tuple:
    return (w._bucket_start, w._bucket, list(w.volumes), dict(w.ignored))   # noqa: SLF001


def test_trades_and_ticks_decide_what_an_unskipped_tick_decides():
    """One watch takes the fast path; the other is forced through tick() on every call
    (its due time pushed back before each): the same figures and state throughout, with
    silences, late trades, time going back and ticks in between."""
    rnd = random.Random(11)
    fast, full = _watch(), _watch()
    t = 5 * S + 123
    fast_used = 0
    for i in range(5000):
        r = rnd.random()
        t += rnd.choice((1, S // 10, S // 3, S, 4 * S, 25 * S)) if r < 0.95 \
            else -rnd.randint(1, 3 * S)
        full.due_ns = -(1 << 62)
        if rnd.random() < 0.8:
            q = rnd.choice((0.5, 1.0, 2.0, 0.0, math.nan))
            if q == q and q > 0 and t < fast.due_ns:
                fast_used += 1
            assert fast.on_trade(100.0, q, t) == full.on_trade(100.0, q, t), i
        else:
            assert fast.tick(t) == full.tick(t), i
        assert _full(fast) == _full(full), i
        # the due time is the end of the open interval, whatever moved it
        assert fast.due_ns == fast._bucket_start + S   # noqa: SLF001
    assert fast_used > 500


def test_the_first_trade_aligns_the_intervals_at_once():
    w = _watch()
    assert w.due_ns < 0                       # no interval yet: the first tick is due
    assert w.on_trade(100.0, 1.0, 2 * S + 5) == []
    assert w.due_ns == 3 * S and w._bucket == 1.0   # noqa: SLF001
    figs = w.on_trade(100.0, 2.0, 3 * S)      # exactly at the end: closes it
    assert [f.volume for f in figs] == [1.0] and w.due_ns == 4 * S
    assert w.on_trade(100.0, 4.0, 2 * S) == []   # a late trade: the open interval
    assert [f.volume for f in w.tick(6 * S)] == [6.0, 0.0, 0.0] and w.due_ns == 7 * S


def test_tops_and_trades_of_other_number_types_are_judged_as_before():
    """ints and bools are real numbers, numpy floats are floats, a Decimal is not a
    number the figures take."""
    w = _watch()
    assert w.on_book(100, 1, 101, 2, 0) is not None          # ints are real numbers
    assert w.on_book(np.float64(100.0), 1.0, 101.0, 1.0, 1) is not None
    assert w.on_book(np.float64("nan"), 1.0, 101.0, 1.0, 2) is None
    assert w.on_book(Decimal(100), 1.0, 101.0, 1.0, 3) is None
    assert w.on_book(True, 1.0, 101.0, 1.0, 4) is not None   # bool is an int: as before
    assert w.on_book(100.0, 1.0, 100.0, 1.0, 5) is None      # locked
    assert dict(w.ignored) == {"not_finite": 2, "crossed": 1}
    assert w.on_trade(100, 1, 6) == [] and w.on_trade(Decimal(1), 1.0, 7) is None
    assert w.on_trade(np.float64(100.0), np.float64(0.0), 8) is None
    assert dict(w.ignored)["bad_trade"] == 2


class Rec:
    def __init__(self) -> None:
        self.changes: list[BreakerChange] = []

    def __call__(self, c: BreakerChange) -> None:
        self.changes.append(c)


def _board(**kw) -> tuple[BreakerBoard, Rec]:
    base = dict(cooldown_s=10.0, probe_orders=2, probe_max_notional=Decimal("50"),
                latency_floor_ms=100.0, book_invalid_s=5.0, volume_interval_s=1.0,
                volume_window=10, volume_warmup=5, volume_z_max=10.0)
    base.update(kw)
    rec = Rec()
    return BreakerBoard(BreakersCfg(**base), [V], rec), rec


def test_tick_alone_closes_volume_intervals_and_trips_on_them():
    """No trade after the burst: only the ticks close its interval (the due time the
    trades left behind must not hide it)."""
    b, rec = _board()
    for sec in range(8):
        for k in range(10):
            b.on_trade("BTCUSDT", V, 100.0, 1.0 + (sec % 3 - 1) * 0.1, sec * S + k * S // 10)
    b.on_trade("BTCUSDT", V, 100.0, 500.0, 8 * S + 1)
    for t in range(8 * S + 2, 9 * S, S // 10):
        b.tick(t)
        assert not rec.changes, "the burst's interval is still open"
    b.tick(9 * S)
    assert rec.changes[0].reason.startswith("BTCUSDT volume anomaly: 500 traded in 1 s")


def test_a_stale_book_is_seen_by_the_first_tick_after_it_went_invalid():
    b, rec = _board()
    b.book_state("BTCUSDT", V, True, 0)
    for t in range(0, 20 * S, S):
        b.tick(t)
    b.book_state("BTCUSDT", V, False, 20 * S)
    b.tick(25 * S)
    assert not rec.changes
    b.tick(25 * S + 1)
    assert [c.reason for c in rec.changes if c.name == V] == \
        ["BTCUSDT order book invalid for 5.0 s"]
    b.book_state("BTCUSDT", V, True, 26 * S)       # valid again: nothing left to age
    assert not b.outcomes[V].stale.invalid


def test_a_global_probe_out_too_long_fails_on_tick():
    b, rec = _board()
    b.trip(GLOBAL, "test", 0, manual=False)
    b.tick(10 * S)
    assert b.breakers[GLOBAL].state.value == "half_open"
    assert b.allow(V, Decimal(10), False, 10 * S, "g1") is None
    b.tick(10 * S + 100_000_000)                   # 100 ms: not beyond the floor
    assert b.breakers[GLOBAL].state.value == "half_open"
    b.tick(10 * S + 100_000_001)
    assert b.breakers[GLOBAL].state.value == "open"
    assert rec.changes[-1].reason == \
        "probe failed: probe not acknowledged within 100 ms"


def test_an_open_breaker_goes_half_open_and_a_probe_window_closes_it_on_tick():
    b, rec = _board(probe_window_s=3.0)
    b.trip(V, "test", 0, manual=False)
    b.tick(10 * S - 1)
    assert b.breakers[V].state.value == "open"
    b.tick(10 * S)
    assert b.breakers[V].state.value == "half_open"
    b.tick(13 * S)
    assert b.breakers[V].state.value == "closed"
    assert [c.new for c in rec.changes if c.name == V] == ["open", "half_open", "closed"]
