"""The feature engine's per-event fast paths: without history, on_book and on_trade write
their slots through _fast_put, and adverse selection is only asked when a pending fill is
due (`AdverseSelection.next_ns`). Both must leave exactly what the slow paths leave: the
same values, times, readiness and rejected count as an engine that puts through
FeatureStore.put (history on), and the same adverse figures as calling `on_mid` on every
mid."""
from __future__ import annotations

import math
import random

from daemon.config import FeaturesCfg
from daemon.features.adverse import AdverseSelection
from daemon.features.engine import FeatureEngine
from daemon.market.events import Trade

S = 1_000_000_000
SYM = "BTCUSDT"


class _Fill:
    def __init__(self, ts_ns: int, buy: bool) -> None:
        self.symbol, self.ts_ns = SYM, ts_ns
        self.side = type("Side", (), {"sign": 1 if buy else -1})()


class _Top:
    """A book stand-in with a top that can be anything (inf and NaN sizes too)."""

    valid = True

    def __init__(self, bids: list, asks: list) -> None:
        self._b, self._a = bids, asks

    def levels(self, is_bid: bool, n: int) -> list:
        return (self._b if is_bid else self._a)[:n]

    def best_bid(self):
        return self._b[0] if self._b else None

    def best_ask(self):
        return self._a[0] if self._a else None


def _slots(eng: FeatureEngine) -> dict:
    return {n: list(v) for n, v in eng.store._slots[SYM].items()}   # noqa: SLF001


def test_fast_puts_write_what_store_put_writes():
    rnd = random.Random(7)
    cfg = dict(ofi_window_s=1.0, burst_warmup_buckets=2, bar_interval_s=1.0,
               trade_imbalance_trades=5, roll_trades=4)
    fast = FeatureEngine(FeaturesCfg(**cfg), [SYM])
    slow = FeatureEngine(FeaturesCfg(**cfg, history_rows=100_000), [SYM])
    assert fast._put == fast._fast_put and slow._put == slow.store.put   # noqa: SLF001
    ts = 0
    for i in range(4000):
        ts += rnd.choice((1, S // 20, S // 3))
        p = 100.0 + rnd.randint(-20, 20) * 0.01
        if rnd.random() < 0.5:
            qb, qa = rnd.choice((1.0, 2.5, 0.0, math.inf, math.nan)), rnd.uniform(0, 3)
            if rnd.random() < 0.05:      # a side missing: the book features reset
                book = _Top([], [(p + 0.01, qa)])
            else:
                book = _Top([(p, qb), (p - 0.01, 1.0), (p - 0.02, 2.0)],
                            [(p + 0.01, qa), (p + 0.02, 1.0)])
            for e in (fast, slow):
                e.on_book(SYM, book, ts)
        else:
            price = p if rnd.random() > 0.03 else rnd.choice((math.nan, math.inf, 1e300))
            t = Trade(SYM, ts, ts // 10**6, i, price, rnd.choice((0.1, 1.0, math.inf)),
                      rnd.random() < 0.5)
            for e in (fast, slow):
                e.on_trade(t)
        if i % 97 == 0:
            assert _slots(fast) == _slots(slow), i
    assert _slots(fast) == _slots(slow)
    assert fast.store.rejected == slow.store.rejected > 0   # NaN microprices among them
    names = {r[1] for r in slow.store.history}
    assert {"ofi", "ofi_ml", "microprice", "trade_imbalance", "roll_spread"} <= names
    assert fast.store.history is None
    for n in ("ofi", "ofi_ml", "microprice", "trade_imbalance", "roll_spread"):
        assert fast.get(SYM, n).ts_ns > 0


def test_a_nan_microprice_is_refused_on_the_fast_path_too():
    eng = FeatureEngine(FeaturesCfg(), [SYM])
    eng.on_book(SYM, _Top([(100.0, math.inf)], [(100.1, 1.0)]), 5)
    v = eng.get(SYM, "microprice")
    assert v.value is None and not v.ready and v.ts_ns == 5
    assert eng.store.rejected == 1
    eng.on_book(SYM, _Top([(100.0, 1.0)], [(100.1, 1.0)]), 6)
    assert eng.get(SYM, "microprice").value == 100.05


def test_adverse_selection_is_skipped_only_while_nothing_is_due():
    """An engine (which calls on_mid only from next_ns on) against a bare
    AdverseSelection given every mid: the same figures at every step, with fills in and
    out of time order and more fills than `max_pending` keeps."""
    rnd = random.Random(3)
    eng = FeatureEngine(FeaturesCfg(adverse_horizons_s=[0.5, 1.0, 5.0], adverse_fills=7),
                        [SYM])
    st = eng._sym[SYM]   # noqa: SLF001
    st.adverse = AdverseSelection(st.adverse.horizons_ns, 7, max_pending=4)
    ref = AdverseSelection(st.adverse.horizons_ns, 7, max_pending=4)
    ts = 0
    skipped = 0
    for i in range(3000):
        ts += rnd.choice((S // 100, S // 10, S // 2, 3 * S))
        if rnd.random() < 0.15:
            fill_ts = ts - rnd.choice((0, 0, S, 7 * S))   # sometimes reported late
            buy = rnd.random() < 0.5
            eng.on_own_fill(_Fill(fill_ts, buy))
            ref.on_fill(fill_ts, 1 if buy else -1)
        bid = 100.0 + rnd.randint(-30, 30) * 0.1
        ask = bid + 0.2
        book = _Top([(bid, 1.0)], [(ask, 1.0)])
        adv = st.adverse
        if adv.pending and ts < adv.next_ns:
            skipped += 1
        eng.on_book(SYM, book, ts)
        ref.on_mid(ts, (bid + ask) * 0.5)   # the engine's mid
        for k in range(3):
            assert adv.measured(k) == ref.measured(k), (i, k)
            assert adv.value(k) == ref.value(k)
            assert eng.get(SYM, st.adverse_names[k]).value == adv.value(k)
        assert adv.pending == ref.pending
        heads = [q[0][0] for q in adv._pending if q]   # noqa: SLF001
        assert adv.next_ns <= min(heads, default=adv.next_ns), "never later than a head"
    assert skipped > 100 and adv.overflow > 0 and all(adv.measured(k) for k in range(3))


def test_next_ns_follows_the_heads():
    a = AdverseSelection([S, 5 * S], max_pending=2)
    assert a.next_ns > 10**18
    a.mid = 100.0
    a.on_fill(10 * S, 1)
    assert a.next_ns == 11 * S
    a.on_fill(3 * S, -1)              # reported late: queued behind, heads unchanged
    assert a.next_ns == 11 * S
    assert a.on_mid(11 * S - 1, 101.0) == [] and a.next_ns == 11 * S
    assert a.on_mid(11 * S, 101.0) == [0]   # 11 s then 4 s: both measured
    assert a.next_ns == 15 * S and a.pending == 2
    # queue 0 was empty: its head is the new 13 s; queue 1 [15 s, 8 s] was full: 15 s is
    # dropped and its head is now 8 s, earlier than any head before
    a.on_fill(12 * S, 1)
    assert a.overflow == 1 and a.next_ns == 8 * S
    assert a.on_mid(8 * S, 99.0) == [1] and a.next_ns == 13 * S
    assert a.on_mid(30 * S, 99.0) == [0, 1]
    assert a.pending == 0 and a.next_ns > 10**18


def test_value_is_get_value_without_building_one():
    eng = FeatureEngine(FeaturesCfg(), [SYM])
    st = eng.store
    assert eng.value(SYM, "vpin") is None and not eng.get(SYM, "vpin").ready
    st.put(st.slot(SYM, "vpin"), 0.42, 5)
    assert eng.value(SYM, "vpin") == eng.get(SYM, "vpin").value == 0.42
    st.put(st.slot(SYM, "vpin"), math.nan, 6)
    assert eng.value(SYM, "vpin") is None and not eng.get(SYM, "vpin").ready
    for sym, name in (("ETHUSDT", "vpin"), (SYM, "nope")):
        try:
            eng.value(sym, name)
        except KeyError as e:
            assert str(e) == repr(f"no feature {name!r} for symbol {sym!r}")
        else:
            raise AssertionError("no KeyError")
