"""`DataQuality.on_event` (the engine's one entry for every event) must leave exactly the
state `on_quote`/`on_trade` leave, and `on_trade` must keep the trade-price ring as
VenuePrices.on_trade does, for every kind of input (valid, crossed, NaN, unknown symbol,
another venue, silences beyond `stale_s`, sample boundaries, time going backwards)."""
from __future__ import annotations

import math
import random

from daemon.config import QualityCfg
from daemon.market.book import OrderBook
from daemon.market.events import DepthDiff, DepthSnapshot, Quote, Trade
from daemon.quality.monitor import DataQuality
from daemon.quality.sources import VenuePrices

S = 1_000_000_000
T0 = 1_723_161_300 * S
SYM = "BTCUSDT"


def _stream(seed: int) -> list[tuple[object, str | None]]:
    """(event, venue) with every kind of quote and trade on_event must handle."""
    rnd = random.Random(seed)
    out: list[tuple[object, str | None]] = []
    t = T0
    tid = 1
    for i in range(3000):
        r = rnd.random()
        t += rnd.choice((1, S // 50, S // 10, S // 10, 2 * S, 40 * S)) if r < 0.97 \
            else -rnd.randint(1, S)                      # now and then: time goes back
        mid = 60_000.0 + rnd.uniform(-50, 50)
        venue = rnd.choice((None, None, None, "spot", "usdm"))
        sym = SYM if rnd.random() < 0.95 else "ETHUSDT"  # an unknown symbol
        kind = rnd.random()
        if kind < 0.7:
            bid, ask = mid - 0.01, mid + 0.01
            bad = rnd.random()
            if bad < 0.05:
                bid, ask = ask, bid                      # crossed
            elif bad < 0.08:
                bid = math.nan
            elif bad < 0.10:
                ask = math.inf
            elif bad < 0.12:
                bid = ask                                # locked: valid (bid <= ask)
            elif bad < 0.14:
                bid = 0.0
            out.append((Quote(sym, t, i, bid, 1.0, ask, 1.0), venue))
        else:
            price = mid if rnd.random() > 0.05 else rnd.choice((math.nan, -1.0, 0.0))
            step = rnd.choice((1, 1, 1, 1, 3, 0, -1))    # gaps and duplicates too
            tid += step
            out.append((Trade(sym, t, t // 10**6 - 7, tid, price,
                              rnd.choice((0.001, 0.0123, 0.5, 2.0)), rnd.random() < 0.5),
                        venue))
    return out


def _state(dq: DataQuality) -> dict:
    """Everything the feeding paths write, per feed."""
    out = {"unknown": dq.unknown, "status": dq.status(),
           "backfill": list(dq.backfill)}
    for key, f in dq._feeds.items():   # noqa: SLF001 - the internal state is the point
        p = f.prices
        out[key] = (f.trades, f.quotes, f.books, f.invalid, f.late, f.missing,
                    f.duplicates, f.silence, f.silence_mark, f.last_ns, f.first_ns,
                    f.iv_start, f.next_sample, f.samples, list(f.pending),
                    p.bid, p.ask, p.quote_ns, list(p.trades), p.trade_pos, p.trade_n,
                    p.trade_ns, f.last_id, f.lat_min)
    return out


def test_on_event_leaves_the_state_on_quote_and_on_trade_leave():
    for seed in (1, 2, 3):
        events = _stream(seed)
        a = DataQuality(QualityCfg(), [SYM])
        b = DataQuality(QualityCfg(), [SYM])
        for n, (ev, venue) in enumerate(events):
            a.on_event(ev, None, venue)
            if type(ev) is Quote:
                b.on_quote(ev, venue)
            else:
                b.on_trade(ev, venue)
            if n % 500 == 499:
                ts = ev.ts_ns
                assert a.poll(ts) == b.poll(ts)
                assert _state(a) == _state(b)
        assert _state(a) == _state(b)
        # the stream did reach every branch: quotes of both venues, invalid ones, unknown
        # symbols and silences
        f = a._primary[SYM]   # noqa: SLF001
        t = f.total
        assert a.unknown > 0 and a._feeds.get(("usdm", SYM))   # noqa: SLF001
        assert t["quotes"] > 1000 and t["trades"] > 500 and t["invalid"] > 0
        assert t["polls"] > 0 and t["duplicates"] > 0 and t["missing_trades"] > 0


def test_the_trade_price_ring_is_the_one_venue_prices_keeps():
    """on_trade's ring write against VenuePrices.on_trade itself, around the
    ring's wrap (source_trades prices) and with rejected prices in between."""
    cfg = QualityCfg(source_trades=5)
    dq = DataQuality(cfg, [SYM])
    ref = VenuePrices(cfg.source_trades)
    t = T0
    for i in range(1, 23):
        t += S // 10
        price = 100.0 + i if i % 4 else math.nan
        dq.on_trade(Trade(SYM, t, t // 10**6, i, price, 1.0, False))
        ref.on_trade(price, t)
        p = dq._primary[SYM].prices   # noqa: SLF001
        assert (p.trades, p.trade_pos, p.trade_n, p.trade_ns) == \
            (ref.trades, ref.trade_pos, ref.trade_n, ref.trade_ns), i
        assert p.trade_median() == ref.trade_median()
    assert p.trade_n == 5 and p.trade_median() == 119.0   # 117 118 119 121 122


def test_a_book_event_still_reaches_on_book():
    dq = DataQuality(QualityCfg(), [SYM])
    book = OrderBook(SYM, futures=False)
    book.on_snapshot(DepthSnapshot(SYM, T0, 10, [(99.0, 1.0)], [(101.0, 1.0)]))
    diff = DepthDiff(SYM, T0 + 1, 11, 11, None, [(99.5, 1.0)], [])
    book.on_diff(diff)
    dq.on_event(diff, book)
    f = dq._primary[SYM]   # noqa: SLF001
    assert f.books == 1 and f.prices.book is book and f.prices.book_ns == T0 + 1
    dq.on_event(diff)           # without its book: not counted
    assert f.books == 1
