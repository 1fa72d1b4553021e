"""The Avellaneda-Stoikov market maker (daemon/strategy/market_maker.py).

* The closed form (reservation price, optimal spread) against numbers worked by hand.
* Hand-made event sequences through a real core (tests/engine_rig.py: engine, feed, paper
  venue, gateway, risk, breakers, SQLite journal): it quotes both sides around the
  microprice, skews down after a buy fill, pulls on a blown-out spread and on toxic flow
  with the reason, quotes only the reducing side at the inventory limit, stands aside while
  its volatility estimate warms up and places nothing while the book is invalid.
* `bot4d backtest --strategy market_maker` on the shared BTCUSDT capture (a subprocess,
  as tests/engine/test_same_engine.py): report written, orders placed, |position| within
  the limit on the journal's fills, no order while the book was invalid.
* Config validation names the key.
"""
from __future__ import annotations

import gzip
import json
import math
import sqlite3
from decimal import Decimal
from pathlib import Path

import pytest

from daemon import config
from daemon.config import MarketMakerCfg
from daemon.execution.orders import Side
from daemon.strategy.market_maker import (MarketMaker, MidVol, microprice, optimal_spread,
                                          quote_bps, reservation_price, round_away)
from tests.daemon_harness import CONFIG as CONFIG_PATH
from tests.engine.test_same_engine import BTC, bot4d
from tests.engine_rig import MS, EngineRig

SYM = "BTCUSDT"
BOOK = ([(59999.99, 1.0)], [(60000.01, 1.0)])          # mid = microprice = 60000
UP = ([(59999.99, 0.0), (60005.99, 1.0)], [(60000.01, 0.0), (60006.01, 1.0)])   # mid 60006
DOWN = ([(60005.99, 0.0), (59999.99, 1.0)], [(60006.01, 0.0), (60000.01, 1.0)])
TICK = Decimal("0.01")
# Short warm-up and windows so a test is a few seconds of event time; features off so only
# the strategy's own OFI speaks (the feature store has its own tests).
FAST = {"vol_warmup_s": 3.0, "vol_sample_ms": 1000.0, "ofi_window_s": 2.0, "cooldown_s": 2.0}
NO_FEATURES = {"features": {"enabled": False}}


# -- the closed form -------------------------------------------------------------------------
def test_reservation_price_on_hand_values():
    # r = s - q gamma sigma^2 (T - t) = 100 - 2 * 0.1 * 4 * 0.5 = 99.6
    assert reservation_price(100.0, 2.0, 0.1, 2.0, 0.5) == pytest.approx(99.6, abs=1e-12)
    # short inventory moves it up: 100 + 3 * 0.05 * 1.5^2 * 60 = 120.25
    assert reservation_price(100.0, -3.0, 0.05, 1.5, 60.0) == pytest.approx(120.25, abs=1e-12)
    assert reservation_price(100.0, 0.0, 0.1, 2.0, 0.5) == 100.0


def test_optimal_spread_on_hand_values():
    # gamma 0.1, sigma 2, T - t = 0.5, kappa 1.5:
    # 0.1 * 4 * 0.5 + (2 / 0.1) * ln(1 + 0.1 / 1.5) = 0.2 + 20 * 0.0645385211 = 1.4907704
    assert optimal_spread(0.1, 2.0, 0.5, 1.5) == pytest.approx(1.4907704, abs=1e-7)
    # At T - t = 0 only the intensity term is left: with the paper's kappa = 1.5 it is
    # 1.29 for gamma = 0.1, 1.33 for 0.01 and 1.15 for 0.5 (the spreads the paper reports).
    assert optimal_spread(0.1, 2.0, 0.0, 1.5) == pytest.approx(1.2907704, abs=1e-7)
    assert round(optimal_spread(0.01, 2.0, 0.0, 1.5), 2) == 1.33
    assert round(optimal_spread(0.5, 2.0, 0.0, 1.5), 2) == 1.15


def test_quote_in_bps_with_the_floor():
    # sigma 1 bps/sqrt(s), 60 s, gamma 0.05, kappa 0.5, one order long:
    # offset -0.05 * 1 * 60 = -3 bps; spread 3 + 40 ln(1.1) = 3 + 40 * 0.0953102 = 6.812407
    off, spread = quote_bps(1.0, 0.05, 1.0, 60.0, 0.5, 2.0)
    assert off == pytest.approx(-3.0, abs=1e-12)
    assert spread == pytest.approx(6.812407, abs=1e-6)
    # a floor above the model's spread wins; the offset does not change
    assert quote_bps(1.0, 0.05, 1.0, 60.0, 0.5, 9.0) == (pytest.approx(-3.0), 9.0)


def test_microprice_and_rounding_away_from_the_touch():
    # (100 * 3 + 101 * 1) / 4 = 100.25: more size on the ask pulls it to the bid
    assert microprice(100.0, 1.0, 101.0, 3.0) == pytest.approx(100.25)
    assert microprice(100.0, 0.0, 101.0, 0.0) == pytest.approx(100.5)
    assert round_away(100.019, TICK, Side.BUY) == Decimal("100.01")
    assert round_away(100.011, TICK, Side.SELL) == Decimal("100.02")
    assert round_away(100.01, TICK, Side.SELL) == Decimal("100.01")   # on the grid: kept


def test_mid_volatility_per_sqrt_second():
    v = MidVol(sample_ns=1000 * MS, halflife_ns=60_000 * MS, warmup_ns=3000 * MS)
    up = 100.0 * math.exp(1e-4)   # a 1 bps log return every second: sigma = 1 bps/sqrt(s)
    t = 0
    for i in range(4):
        assert v.sigma_bps() is None
        v.update(t, up if i % 2 else 100.0)
        v.update(t + 400 * MS, 250.0)   # inside the sampling step: ignored
        t += 1000 * MS
    v.update(t, 100.0)
    assert v.ready and v.n == 4
    assert v.sigma_bps() == pytest.approx(1.0, rel=1e-9)
    # over 2 s the same return is half the variance per second
    w = MidVol(sample_ns=1000 * MS, halflife_ns=60_000 * MS, warmup_ns=2000 * MS)
    for i in range(4):
        w.update(i * 2000 * MS, up if i % 2 else 100.0)
    assert w.sigma_bps() == pytest.approx(math.sqrt(0.5), rel=1e-9)


# -- a real core fed by hand -----------------------------------------------------------------
def _rig(tmp_path: Path, *, features: bool = False, own: dict | None = None,
         **params) -> EngineRig:
    """A core running the market maker: from the config, or (own=...) built here, which
    is how a test trades short on the spot instrument the config would refuse it for."""
    over = {} if features else NO_FEATURES
    if own is not None:
        mm = MarketMaker(MarketMakerCfg(**{**FAST, **own}), [SYM])
        return EngineRig(tmp_path, overrides=over, strategy_obj=mm)
    return EngineRig(tmp_path, overrides=over, strategy={
        "name": "market_maker", "market_maker": {**FAST, **params}})


def _warm(r: EngineRig, *, moving: bool) -> None:
    """Four seconds of mids a second apart: flat (sigma 0) or +-1 bps (sigma ~1 bps/sqrt s),
    ending on BOOK."""
    for i in range(4):
        if moving:
            r.diff(*(UP if i % 2 == 0 else DOWN), dt_ms=1000)
        else:
            r.idle(1000)


def _by_side(r: EngineRig) -> dict[Side, list]:
    out: dict[Side, list] = {Side.BUY: [], Side.SELL: []}
    for o in r.open_orders():
        if o.status.value != "pending_cancel":
            out[o.side].append(o)
    return out


def _model(r: EngineRig) -> dict:
    return r.engine.strategy.status()["model"][SYM]


def test_stands_aside_while_volatility_warms_up_then_quotes_both_sides(tmp_path):
    r = _rig(tmp_path, own={"allow_short": True})
    r.start(*BOOK)
    s = r.engine.strategy
    assert r.open_orders() == [] and r.gw.stats["submitted"] == 0
    assert "volatility warming up" in s.standing_aside, s.standing_aside
    _warm(r, moving=False)
    r.settle()
    sides = _by_side(r)
    assert len(sides[Side.BUY]) == 1 and len(sides[Side.SELL]) == 1, r.open_orders()
    bid, ask = sides[Side.BUY][0], sides[Side.SELL][0]
    # sigma 0: spread = (2 / 0.05) ln(1 + 0.05 / 0.5) = 3.81240 bps of 60000 = 22.874 USD
    half = 60000 * 40 * math.log(1.1) * 1e-4 / 2
    assert bid.price == Decimal("59988.56") == round_away(60000 - half, TICK, Side.BUY)
    assert ask.price == Decimal("60011.44") == round_away(60000 + half, TICK, Side.SELL)
    assert bid.tif.value == ask.tif.value == "post_only"
    assert bid.qty == ask.qty == Decimal("0.00020")   # 12 USDT at 60000, lot 0.00001
    assert s.standing_aside is None
    assert "bid 59988.56 ask 60011.44" in s.intent and "delta=3.812 bps" in s.intent


def test_a_buy_fill_skews_both_quotes_down(tmp_path):
    r = _rig(tmp_path, own={"allow_short": True})
    r.start(*BOOK)
    _warm(r, moving=True)
    r.settle()
    before = {side: os[0].price for side, os in _by_side(r).items()}
    m = _model(r)
    sigma = m["sigma_bps"]
    # four 1-bps returns a second apart and one flat return over the ~1.1 s of start():
    # sqrt(4 / 5.1) = 0.886 bps/sqrt(s)
    assert 0.85 < sigma < 0.92, sigma
    gamma, tau, kappa = 0.05, 60.0, 0.5
    spread = optimal_spread(gamma, sigma, tau, kappa)
    assert m["q"] == 0 and m["delta_bps"] == pytest.approx(spread)
    assert before[Side.BUY] == round_away(60000 * (1 - spread / 2e4), TICK, Side.BUY)
    # A sell printed through our bid fills it: one order long.
    r.trade(59900.0, 1.0, buyer_is_maker=True)
    assert r.gw.position(SYM).qty == Decimal("0.00020")
    r.idle(600)                       # past requote_min_interval_ms
    r.settle()
    after = {side: os[0].price for side, os in _by_side(r).items()}
    m = _model(r)
    assert m["q"] == pytest.approx(1.0)
    shift = 60000 * gamma * m["sigma_bps"] ** 2 * tau * 1e-4      # q gamma sigma^2 (T-t)
    spread = optimal_spread(gamma, m["sigma_bps"], tau, kappa)
    assert after[Side.BUY] == round_away(60000 - shift - 60000 * spread / 2e4, TICK, Side.BUY)
    assert after[Side.SELL] == round_away(60000 - shift + 60000 * spread / 2e4, TICK,
                                          Side.SELL)
    assert after[Side.BUY] < before[Side.BUY] and after[Side.SELL] < before[Side.SELL]
    assert shift > 10   # ~18 USD: the skew is not rounding noise


def test_a_short_skews_up_but_the_bid_never_crosses_the_book(tmp_path):
    # gamma 1: one order short moves r up by gamma sigma^2 (T-t) ~ 47 bps, more than the
    # half spread (~24.6 bps): the model's bid lies above the best ask. It is held at
    # best ask - tick, post-only, and rests (the venue does not reject it).
    r = _rig(tmp_path, own={"allow_short": True, "gamma": 1.0})
    r.start(*BOOK)
    _warm(r, moving=True)
    r.settle()
    ask = _by_side(r)[Side.SELL][0]
    r.trade(float(ask.price) + 50, 1.0, buyer_is_maker=False)   # a buy through our ask
    assert r.gw.position(SYM).qty == Decimal("-0.00020")
    r.idle(600)
    r.settle()
    m = _model(r)
    assert m["q"] == pytest.approx(-1.0)
    model_bid = m["r"] - 60000 * m["delta_bps"] / 2e4
    assert model_bid > 60000.01 + 50            # the closed form would cross by > 50 USD
    sides = _by_side(r)
    bid = sides[Side.BUY][0]
    assert bid.price == Decimal("60000.00") and bid.status.value == "new"
    assert sides[Side.SELL][0].price == round_away(m["r"] + 60000 * m["delta_bps"] / 2e4,
                                                   TICK, Side.SELL)
    assert r.gw.stats["submitted"] == len(_journal(tmp_path / "journal.sqlite3",
                                                   "SELECT 1 FROM orders"))
    assert not _journal(tmp_path / "journal.sqlite3",
                        "SELECT 1 FROM orders WHERE status = 'rejected'")


class _Floor:
    """Stands in for the analytics runner: the Glosten-Milgrom floor it would have fitted."""

    def __init__(self, floor: float | None) -> None:
        self.floor = floor

    def floor_bps(self, symbol: str) -> float | None:
        return self.floor

    def on_trade(self, trade) -> None:
        pass


@pytest.mark.parametrize("floor, spread_bps", [
    (30.0, 30.0),                          # the analytics floor is wider: it wins
    (3.0, 40 * math.log(1.1)),             # narrower than the model's 3.81 bps: the model
    (None, 40 * math.log(1.1)),            # no floor known
    (float("nan"), 40 * math.log(1.1)),    # a NaN floor is no floor
])
def test_the_spread_floor_from_analytics(tmp_path, floor, spread_bps):
    r = _rig(tmp_path, own={"allow_short": True})
    r.engine.analytics = _Floor(floor)
    r.start(*BOOK)
    _warm(r, moving=False)
    r.settle()
    sides = _by_side(r)
    half = 60000 * spread_bps / 2e4
    assert sides[Side.BUY][0].price == round_away(60000 - half, TICK, Side.BUY)
    assert sides[Side.SELL][0].price == round_away(60000 + half, TICK, Side.SELL)
    assert _model(r)["delta_bps"] == pytest.approx(spread_bps)


def test_the_configured_minimum_spread(tmp_path):
    r = _rig(tmp_path, own={"allow_short": True, "min_spread_bps": 10.0})
    r.start(*BOOK)
    _warm(r, moving=False)
    r.settle()
    sides = _by_side(r)
    assert sides[Side.BUY][0].price == Decimal("59970.00")    # 60000 -/+ 5 bps
    assert sides[Side.SELL][0].price == Decimal("60030.00")


def test_pulls_on_a_blown_out_spread_with_the_reason(tmp_path):
    r = _rig(tmp_path, own={"allow_short": True})
    r.start(*BOOK)
    _warm(r, moving=False)
    r.settle()
    quotes = r.open_orders()
    assert len(quotes) == 2
    submitted = r.gw.stats["submitted"]
    r.diff([], [(60000.01, 0.0), (60120.0, 1.0)])    # best ask 60120: spread ~20 bps
    s = r.engine.strategy
    assert "book spread" in s.standing_aside and "max_book_spread_bps 10" in s.standing_aside
    for o in quotes:
        assert o.status.value in ("pending_cancel", "cancelled")
        assert o.reason.startswith("pulled: BTCUSDT: book spread"), o.reason
    r.settle()
    assert r.open_orders() == []
    r.idle(600)   # still blown out: still nothing
    assert r.gw.stats["submitted"] == submitted


def test_pulls_on_toxic_order_flow_from_the_book_top(tmp_path):
    r = _rig(tmp_path, own={"allow_short": True, "cooldown_s": 5.0})
    r.start(*BOOK)
    _warm(r, moving=False)
    r.settle()
    quotes = r.open_orders()
    assert len(quotes) == 2
    # Buyers pile onto the bid: OFI = +39 (1 -> 40 at the same price) against a mean
    # top-of-book size of ~1: 39 sizes >= ofi_max 15.
    r.diff([(59999.99, 40.0)], [])
    s = r.engine.strategy
    assert "toxic flow: |OFI|" in s.standing_aside and "(book top)" in s.standing_aside
    for o in quotes:
        assert o.reason.startswith("pulled: BTCUSDT: toxic flow"), o.reason
    # Inside the 2 s OFI window it stays out for the flow itself...
    submitted = r.gw.stats["submitted"]
    r.idle(1500)
    assert "toxic flow" in s.standing_aside and r.gw.stats["submitted"] == submitted
    # ...once the window has passed, the 5 s cool-down keeps it out...
    r.idle(1000)
    assert s.standing_aside.startswith("cooling down"), s.standing_aside
    assert "after: BTCUSDT: toxic flow" in s.standing_aside
    assert r.gw.stats["submitted"] == submitted
    # ...counted from the last toxic sight (at +1.5 s): at +7 s it quotes again.
    r.idle(4500)
    r.settle()
    assert len(r.open_orders()) == 2 and s.standing_aside is None, s.standing_aside


class _Store:
    """Stands in for the feature engine: the values the store would publish."""

    def __init__(self, values: dict[str, float]) -> None:
        self.values = values

    def get(self, symbol: str, name: str):
        from daemon.features.store import FeatureValue
        v = self.values.get(name)
        return FeatureValue(v, 1, v is not None)

    def on_book(self, *a) -> None:
        pass

    def on_trade(self, *a) -> None:
        pass

    def on_own_fill(self, *a) -> None:
        pass


@pytest.mark.parametrize("values, words", [
    ({"vpin": 0.85}, "toxic flow: VPIN 0.85 >= vpin_max 0.8"),
    ({"vpin": 0.2, "ofi": -30.0}, "(feature store)"),
])
def test_pulls_on_toxicity_from_the_feature_store(tmp_path, values, words):
    r = _rig(tmp_path, own={"allow_short": True})
    store = _Store({"vpin": 0.1, "ofi": 0.5})   # calm: quotes go out
    r.engine.features = store
    r.start(*BOOK)
    _warm(r, moving=False)
    r.settle()
    quotes = r.open_orders()
    assert len(quotes) == 2
    store.values = values
    r.idle(10)
    s = r.engine.strategy
    assert words in s.standing_aside, s.standing_aside
    assert all(o.reason.startswith("pulled: BTCUSDT: toxic flow") for o in quotes)


def test_at_the_inventory_limit_only_the_reducing_side_quotes(tmp_path):
    # Long-only (spot, the config's default) with a limit of one order.
    r = _rig(tmp_path, max_inventory=1.0)
    r.start(*BOOK)
    _warm(r, moving=False)
    r.settle()
    s = r.engine.strategy
    sides = _by_side(r)
    # Flat: the ask would go short, which spot cannot: bid only, and it says so.
    assert len(sides[Side.BUY]) == 1 and sides[Side.SELL] == []
    assert "BTCUSDT ask: inventory 0" in s.standing_aside and "no short" in s.standing_aside
    assert "ask none" in s.intent
    r.trade(59900.0, 1.0, buyer_is_maker=True)       # the bid fills: one order long
    assert r.gw.position(SYM).qty == Decimal("0.00020")
    r.idle(600)
    r.settle()
    sides = _by_side(r)
    assert sides[Side.BUY] == [] and len(sides[Side.SELL]) == 1, r.open_orders()
    assert "BTCUSDT bid: inventory 0.00020" in s.standing_aside
    assert "max_inventory 1 orders" in s.standing_aside
    # The reducing ask fills: flat again, the bid comes back and the ask goes.
    ask = sides[Side.SELL][0]
    r.trade(float(ask.price) + 50, 1.0, buyer_is_maker=False)
    assert r.gw.position(SYM).qty == 0
    r.idle(600)
    r.settle()
    sides = _by_side(r)
    assert len(sides[Side.BUY]) == 1 and sides[Side.SELL] == []


def test_no_order_while_the_book_is_invalid(tmp_path):
    r = _rig(tmp_path, own={"allow_short": True})
    r.start(*BOOK)
    _warm(r, moving=False)
    r.settle()
    assert len(r.open_orders()) == 2
    submitted = r.gw.stats["submitted"]
    r.diff([], [], gap=True)                       # a sequence gap: the book is invalid
    s = r.engine.strategy
    assert s.standing_aside.startswith("BTCUSDT: book invalid"), s.standing_aside
    assert r.engine.stats["pulled"] == 2
    for _ in range(5):                             # time passes on the broken book
        r.diff([(59999.0, 3.0)], [], gap=True)
        r.idle(1000)
    r.settle()
    assert r.gw.stats["submitted"] == submitted and r.open_orders() == []
    assert s.standing_aside.startswith("BTCUSDT: book invalid")


def test_after_a_resync_the_new_book_is_not_read_as_order_flow(tmp_path):
    r = _rig(tmp_path, own={"allow_short": True})
    r.start(*BOOK)
    _warm(r, moving=False)
    r.settle()
    assert len(r.open_orders()) == 2
    r.diff([], [], gap=True)                       # invalid: the engine pulls
    r.idle(300)
    r.settle()
    assert r.open_orders() == []
    # The resync shows 40 on the bid where there was 1: as flow that would be OFI +39
    # (toxic); it is a new book, so it quotes again once trading resumes.
    r.snapshot([(59999.99, 40.0)], [(60000.01, 1.0)])
    r.idle(r.engine.check_ns / MS + 1)
    r.idle(600)
    r.settle()
    s = r.engine.strategy
    assert r.control.state.value == "trading", r.control.state_reason
    assert s.standing_aside is None, s.standing_aside
    assert len(r.open_orders()) == 2


# -- a backtest on a shared capture -----------------------------------------------------------
def _day(capture: Path) -> tuple[float, float, list[int]]:
    """The capture's trade price range and the receive times of its depth diffs."""
    lo, hi, depth = math.inf, -math.inf, []
    with gzip.open(capture, "rt") as f:
        for line in f:
            ts, _, body = line.partition(" ")
            if "@trade" in body:
                p = float(json.loads(body)["data"]["p"])
                lo, hi = min(lo, p), max(hi, p)
            elif "@depth" in body:
                depth.append(int(ts))
    return lo, hi, depth


def _journal(db: Path, sql: str) -> list[tuple]:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def _max_abs_position(db: Path) -> tuple[Decimal, Decimal]:
    """Largest |position| over the journal's fills (in order), and the largest order qty."""
    pos, worst = Decimal(0), Decimal(0)
    for side, qty in _journal(db, "SELECT side, qty FROM fills ORDER BY ts_ns, rowid"):
        pos += Decimal(qty) if side == "buy" else -Decimal(qty)
        worst = max(worst, abs(pos))
    (biggest,), = _journal(db, "SELECT max(CAST(qty AS REAL)) FROM orders")
    return worst, Decimal(repr(biggest))


def _backtest(report: Path, capture: Path) -> dict:
    r = bot4d("backtest", "--config", str(CONFIG_PATH), "--strategy", "market_maker",
              "--replay", str(capture), "--report", str(report), "--no-png")
    assert r.returncode == 0, r.stderr
    return json.loads((report / "report.json").read_text())


@pytest.mark.skipif(not BTC.is_file(), reason=f"{BTC} not found")
def test_backtest_on_the_shared_capture(tmp_path):
    rep = _backtest(tmp_path / "r", BTC)
    db = tmp_path / "r" / "backtest.sqlite3"
    assert rep["meta"]["strategy"]["name"] == "market_maker"
    counts = rep["counts"]
    assert counts["orders"] > 20 and counts["fills"] > 0
    assert counts["rejects"] == 0 and counts["taker_fills"] == 0   # post-only, never crossed
    # Inventory within the configured limit (long-only on spot: 0 .. max_inventory orders).
    limit = Decimal(repr(MarketMakerCfg().max_inventory))
    worst, biggest = _max_abs_position(db)
    assert 0 < worst <= limit * biggest, (worst, limit, biggest)
    assert all(Decimal(q) >= 0 for (q,) in _journal(db, "SELECT qty FROM positions"))
    # Every order inside the day's range, give or take a quote's distance (1 %).
    lo, hi, depth = _day(BTC)
    prices = [float(p) for (p,) in _journal(db, "SELECT price FROM orders")]
    assert lo * 0.99 <= min(prices) and max(prices) <= hi * 1.01, (lo, hi, min(prices))
    # No order before the book was first valid (the snapshot) or after a pull.
    (first,), = _journal(db, "SELECT min(created_ns) FROM orders")
    valid_at = [t["ts_ns"] for t in rep["meta"]["states"] if t["to"] == "trading"][0]
    assert first > valid_at
    assert rep["meta"]["engine"]["pulled"] == 0   # this capture's book never broke


@pytest.mark.skipif(not BTC.is_file(), reason=f"{BTC} not found")
def test_backtest_places_nothing_once_the_book_breaks(tmp_path):
    """The same capture with one depth diff dropped mid-way: the next diff leaves a gap,
    the book is invalid to the end (the capture has one snapshot, at the start). The
    engine pulls the quotes and no order is created from that diff on."""
    lines = gzip.open(BTC, "rt").read().splitlines(keepends=True)
    depth = [i for i, ln in enumerate(lines) if "@depth" in ln]
    # (the 1700th diff: a moment, 23:57:04, when a quote is working, so there is one to pull)
    drop = depth[1699]
    broken_at = int(lines[depth[1700]].partition(" ")[0])   # the diff that shows the gap
    cap = tmp_path / "gap.gz"
    with gzip.open(cap, "wt") as f:
        f.writelines(lines[:drop] + lines[drop + 1:])
    rep = _backtest(tmp_path / "r", cap)
    db = tmp_path / "r" / "backtest.sqlite3"
    created = [t for (t,) in _journal(db, "SELECT created_ns FROM orders")]
    assert len(created) > 10 and min(created) < broken_at   # it was quoting before
    assert max(created) < broken_at, "an order was created on an invalid book"
    pulled = _journal(db, "SELECT reason FROM orders WHERE reason LIKE 'pulled: book %'")
    assert rep["meta"]["engine"]["pulled"] == len(pulled) >= 1
    assert all("book invalid: gap" in why for (why,) in pulled), pulled
    assert any("book invalid: gap" in t["reason"] for t in rep["meta"]["states"])
    (open_at_end,), = _journal(db, "SELECT count(*) FROM orders WHERE status NOT IN "
                                   "('filled', 'cancelled', 'rejected', 'expired')")
    assert open_at_end == 0


# -- config ----------------------------------------------------------------------------------
@pytest.mark.parametrize("body, words", [
    ("gamma = 0", ("[strategy.market_maker] gamma", "greater than 0")),
    ("kappa = -1", ("[strategy.market_maker] kappa", "greater than 0")),
    ("gamma = nan", ("[strategy.market_maker] gamma",)),
    ("horizon_s = 0", ("[strategy.market_maker] horizon_s",)),
    ("max_inventory = 0.5", ("[strategy.market_maker] max_inventory",
                             "greater than or equal to 1")),
    ("vpin_max = 1.5", ("[strategy.market_maker] vpin_max",)),
    ("requote_ticks = 0", ("[strategy.market_maker] requote_ticks",)),
    ("requote_ticks = 2.5", ("[strategy.market_maker] requote_ticks",)),
    ("min_spread_bps = 10000", ("[strategy.market_maker] min_spread_bps",)),
    ("max_book_spread_bps = 0", ("[strategy.market_maker] max_book_spread_bps",)),
    ("vol_warmup_s = 1\nvol_sample_ms = 1000", ("[strategy.market_maker]", "vol_warmup_s",
                                                "two samples")),
    ("refresh_interval_s = 0.1\nrequote_min_interval_ms = 500",
     ("[strategy.market_maker]", "refresh_interval_s", "requote_min_interval_ms")),
    ("gama = 0.1", ("[strategy.market_maker] gama", "unknown key")),
    ("allow_short = true", ("allow_short", "BTCUSDT is spot")),
])
def test_bad_market_maker_config_names_the_key(tmp_path, body, words):
    f = tmp_path / "bad.toml"
    f.write_text(f"[strategy]\nname = \"market_maker\"\n[strategy.market_maker]\n{body}\n")
    with pytest.raises(config.ConfigError) as e:
        config.load(f, environ={})
    for w in words:
        assert w in str(e.value), str(e.value)


def test_market_maker_config_loads_and_the_registry_builds_it(tmp_path):
    f = tmp_path / "ok.toml"
    f.write_text("[strategy]\nname = \"market_maker\"\n[strategy.market_maker]\n"
                 "gamma = 0.1\nmax_inventory = 3\n")
    cfg = config.load(f, environ={})
    from daemon.strategy.registry import build
    s = build(cfg.strategy, ["BTCUSDT"])
    assert isinstance(s, MarketMaker) and s.p.gamma == 0.1 and s.p.max_inventory == 3
    st = s.status()
    assert st["name"] == "market_maker" and st["params"]["gamma"] == 0.1
    assert st["standing_aside"] == "no market data yet"
