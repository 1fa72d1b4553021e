"""Bar builders: hand-computed bars, a numpy recomputation on the real capture, and the
adaptive sampler's defining property (higher volatility -> shorter intervals)."""
from __future__ import annotations

import gzip
import math
import os
import random
from pathlib import Path

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from daemon.market.bars import (
    AdaptiveBarSampler,
    Bar,
    BarClock,
    EwmaVol,
    TimeBarBuilder,
    VolumeBarBuilder,
)
from daemon.market.events import Trade

MS = 1_000_000
S = 1_000_000_000

DATA_DIR = Path(os.environ.get("BOT4_DATA_DIR",
                               Path(__file__).resolve().parents[1] / ".." / "shared" / "data"))
SPOT_BTC = DATA_DIR / "binance" / "spot_btcusdt_20240808.gz"


def load_trades(path: Path) -> list[Trade]:
    """Trades of one capture file, decoded straight from the raw lines."""
    out: list[Trade] = []
    with gzip.open(path, "rb") as f:
        for line in f:
            ts, _, raw = line.partition(b" ")
            msg = orjson.loads(raw)
            stream = msg.get("stream")
            if stream is None or not stream.endswith("@trade"):
                continue
            d = msg["data"]
            out.append(Trade(d["s"], int(ts), d["T"], d["t"], float(d["p"]), float(d["q"]),
                             d["m"]))
    return out


@pytest.fixture(scope="module")
def capture_trades() -> list[Trade]:
    if not SPOT_BTC.exists():
        pytest.skip(f"capture data not found at {SPOT_BTC} (set BOT4_DATA_DIR)")
    return load_trades(SPOT_BTC)


def tr(ms: int, price: float, qty: float, sell: bool = False, *, recv_ns: int | None = None,
       tid: int = 0) -> Trade:
    return Trade("BTCUSDT", recv_ns if recv_ns is not None else ms * MS + 7, ms, tid, price,
                 qty, sell)


# ---------------------------------------------------------------- time bars, by hand

def test_time_bars_hand_computed() -> None:
    got: list[Bar] = []
    b = TimeBarBuilder("BTCUSDT", 1 * S, on_bar=got.append)
    assert b.update(tr(1000, 100.0, 1.0)) is None
    assert b.update(tr(1200, 102.0, 0.5, sell=True)) is None
    assert b.update(tr(1500, 99.0, 2.0)) is None
    assert b.update(tr(1999, 101.0, 0.5, sell=True)) is None
    # 2000 ms opens the next bar and completes the first
    bar = b.update(tr(2000, 103.0, 1.0))
    assert bar is not None and got == [bar]
    assert (bar.start_ns, bar.end_ns) == (1 * S, 2 * S)
    assert (bar.open, bar.high, bar.low, bar.close) == (100.0, 102.0, 99.0, 101.0)
    assert bar.volume == pytest.approx(4.0)
    assert bar.quote_volume == pytest.approx(100 + 51 + 198 + 50.5)
    assert bar.vwap == pytest.approx(399.5 / 4.0)
    assert bar.trades == 4
    assert bar.buy_volume == pytest.approx(3.0)
    assert bar.sell_volume == pytest.approx(1.0)
    assert (bar.first_ts_ns, bar.last_ts_ns) == (1000 * MS, 1999 * MS)
    # a gap: 3 s..5 s have no trades -> no empty bars, the next bar is [5 s, 6 s)
    bar2 = b.update(tr(5300, 104.0, 1.0))
    assert bar2 is not None
    assert (bar2.start_ns, bar2.end_ns, bar2.open, bar2.close, bar2.trades) == (
        2 * S, 3 * S, 103.0, 103.0, 1)
    last = b.finish()
    assert last is not None and (last.start_ns, last.end_ns) == (5 * S, 6 * S)
    assert len(got) == 3
    assert b.finish() is None


def test_time_bars_advance_and_late_trade() -> None:
    b = TimeBarBuilder("BTCUSDT", 1 * S)
    b.update(tr(1100, 10.0, 1.0))
    assert b.advance(1999 * MS) is None
    closed = b.advance(2000 * MS)
    assert closed is not None and closed.close == 10.0
    assert b.advance(5000 * MS) is None          # nothing open any more
    # a print stamped inside the closed bar must not reopen it: it starts the next bar
    b.update(tr(1900, 11.0, 1.0))
    part = b.partial()
    assert part is not None and part.start_ns == 2 * S and part.open == 11.0
    # late print inside an open bar is folded into it
    b.update(tr(2500, 12.0, 1.0))
    b.update(tr(2400, 9.0, 1.0))
    done = b.update(tr(3000, 13.0, 1.0))
    assert done is not None
    assert (done.low, done.high, done.close, done.trades) == (9.0, 12.0, 9.0, 3)


def test_time_bars_receive_clock_and_offset() -> None:
    b = TimeBarBuilder("BTCUSDT", 1 * S, clock=BarClock.RECEIVE, offset_ns=250 * MS)
    # exchange time says one bar, receive time says two
    b.update(tr(1000, 1.0, 1.0, recv_ns=1_200 * MS))
    done = b.update(tr(1001, 2.0, 1.0, recv_ns=1_260 * MS))
    assert done is not None
    assert (done.start_ns, done.end_ns) == (250 * MS, 1_250 * MS)
    part = b.partial()
    assert part is not None and (part.start_ns, part.end_ns) == (1_250 * MS, 2_250 * MS)


def test_time_bar_rejects_bad_interval() -> None:
    with pytest.raises(ValueError):
        TimeBarBuilder("X", 0)


# ---------------------------------------------------------------- volume bars, by hand

def test_volume_bars_split_overflowing_trade() -> None:
    b = VolumeBarBuilder("BTCUSDT", 1.0)
    assert b.update(tr(1, 100.0, 0.4)) is None
    assert b.update(tr(2, 101.0, 0.4, sell=True)) is None
    out = b.update(tr(3, 102.0, 0.5))          # 0.2 closes bar 1, 0.3 opens bar 2
    assert out is not None and len(out) == 1
    bar = out[0]
    assert bar.volume == 1.0
    assert bar.quote_volume == pytest.approx(40 + 40.4 + 20.4)
    assert (bar.open, bar.high, bar.low, bar.close, bar.trades) == (100.0, 102.0, 100.0,
                                                                     102.0, 3)
    assert bar.buy_volume == pytest.approx(0.6) and bar.sell_volume == pytest.approx(0.4)
    assert (bar.start_ns, bar.end_ns) == (1 * MS, 3 * MS)
    # 2.5 sold at 99: fills bar 2 (0.7), a whole bar 3 (1.0), leaves 0.8 in bar 4
    out = b.update(tr(4, 99.0, 2.5, sell=True))
    assert out is not None and len(out) == 2
    b2, b3 = out
    assert b2.volume == 1.0 and b2.trades == 2
    assert b2.quote_volume == pytest.approx(0.3 * 102 + 0.7 * 99)
    assert (b2.open, b2.high, b2.low, b2.close) == (102.0, 102.0, 99.0, 99.0)
    assert b2.buy_volume == pytest.approx(0.3) and b2.sell_volume == pytest.approx(0.7)
    assert (b3.open, b3.close, b3.trades, b3.sell_volume) == (99.0, 99.0, 1, 1.0)
    assert b3.start_ns == b3.end_ns == 4 * MS
    rest = b.finish()
    assert rest is not None and rest.volume == pytest.approx(0.8) and rest.trades == 1


def test_volume_bars_exact_fill_leaves_no_dust() -> None:
    b = VolumeBarBuilder("BTCUSDT", 0.3)
    b.update(tr(1, 10.0, 0.1))
    b.update(tr(2, 10.0, 0.1))
    out = b.update(tr(3, 10.0, 0.1))        # 0.1+0.1+0.1 != 0.3 in binary; still one bar
    assert out is not None and len(out) == 1
    assert b.partial() is None
    assert b.finish() is None


# ---------------------------------------------------------------- numpy recomputation

def _arrays(trades: list[Trade]) -> tuple[np.ndarray, ...]:
    t = np.array([x.exch_ms for x in trades], dtype=np.int64) * MS
    p = np.array([x.price for x in trades])
    q = np.array([x.qty for x in trades])
    buy = np.array([not x.buyer_is_maker for x in trades])
    return t, p, q, buy


@pytest.mark.parametrize("interval_ns", [1 * S, 7 * S, 60 * S])
def test_time_bars_match_numpy_on_capture(capture_trades: list[Trade], interval_ns: int) -> None:
    bars: list[Bar] = []
    b = TimeBarBuilder("BTCUSDT", interval_ns, on_bar=bars.append)
    for x in capture_trades:
        b.update(x)
    b.finish()
    t, p, q, buy = _arrays(capture_trades)
    assert np.all(np.diff(t) >= 0)
    bucket = t // interval_ns
    keys, first = np.unique(bucket, return_index=True)
    last = np.r_[first[1:], len(t)] - 1
    assert len(bars) == len(keys)
    np.testing.assert_array_equal([x.start_ns for x in bars], keys * interval_ns)
    np.testing.assert_array_equal([x.open for x in bars], p[first])
    np.testing.assert_array_equal([x.close for x in bars], p[last])
    np.testing.assert_array_equal([x.high for x in bars], np.maximum.reduceat(p, first))
    np.testing.assert_array_equal([x.low for x in bars], np.minimum.reduceat(p, first))
    np.testing.assert_array_equal([x.trades for x in bars], last - first + 1)
    np.testing.assert_allclose([x.volume for x in bars], np.add.reduceat(q, first), rtol=1e-9)
    np.testing.assert_allclose([x.vwap for x in bars],
                               np.add.reduceat(p * q, first) / np.add.reduceat(q, first),
                               rtol=1e-12)
    np.testing.assert_allclose([x.buy_volume for x in bars],
                               np.add.reduceat(np.where(buy, q, 0.0), first), rtol=1e-9,
                               atol=1e-12)
    np.testing.assert_allclose([x.sell_volume for x in bars],
                               np.add.reduceat(np.where(buy, 0.0, q), first), rtol=1e-9,
                               atol=1e-12)
    assert sum(x.trades for x in bars) == len(capture_trades)


def test_volume_bars_match_numpy_on_capture(capture_trades: list[Trade]) -> None:
    theta_sat = 73_713_371                      # 0.73713371 BTC, odd on purpose
    bars: list[Bar] = []
    b = VolumeBarBuilder("BTCUSDT", theta_sat / 1e8, on_bar=bars.append)
    for x in capture_trades:
        b.update(x)
    t, p, q, buy = _arrays(capture_trades)
    # exact integer satoshi arithmetic for the reference, so boundaries are unambiguous
    qs = np.rint(q * 1e8).astype(np.int64)
    cum = np.cumsum(qs)
    prev = np.r_[0, cum[:-1]]
    cq = np.r_[0.0, np.cumsum(p * qs)]
    cb = np.r_[0, np.cumsum(np.where(buy, qs, 0))]
    n = int(cum[-1] // theta_sat)
    assert len(bars) == n and n > 20
    lo = np.arange(n, dtype=np.int64) * theta_sat
    hi = lo + theta_sat
    i_open = np.searchsorted(cum, lo, "right")
    i_close = np.searchsorted(cum, hi, "left")

    def integral(c: np.ndarray, per_unit: np.ndarray, x: np.ndarray) -> np.ndarray:
        i = np.searchsorted(cum, x, "left")
        return c[i] + per_unit[i] * (x - prev[i])

    quote = integral(cq, p, hi) - integral(cq, p, lo)
    buys = (integral(cb, buy.astype(np.int64), hi) - integral(cb, buy.astype(np.int64), lo))
    np.testing.assert_array_equal([x.open for x in bars], p[i_open])
    np.testing.assert_array_equal([x.close for x in bars], p[i_close])
    np.testing.assert_array_equal([x.trades for x in bars], i_close - i_open + 1)
    np.testing.assert_array_equal([x.high for x in bars],
                                  [p[a:c + 1].max() for a, c in zip(i_open, i_close)])
    np.testing.assert_array_equal([x.low for x in bars],
                                  [p[a:c + 1].min() for a, c in zip(i_open, i_close)])
    np.testing.assert_array_equal([x.start_ns for x in bars], t[i_open])
    np.testing.assert_array_equal([x.end_ns for x in bars], t[i_close])
    np.testing.assert_allclose([x.volume for x in bars], theta_sat / 1e8, rtol=1e-12)
    np.testing.assert_allclose([x.quote_volume for x in bars], quote / 1e8, rtol=1e-9)
    np.testing.assert_allclose([x.buy_volume for x in bars], buys / 1e8, rtol=1e-8, atol=1e-9)


# ---------------------------------------------------------------- adaptive sampler

def _sampler(**kw: int | float) -> AdaptiveBarSampler:
    args: dict = dict(base_interval_ns=10 * S, min_interval_ns=1 * S, max_interval_ns=60 * S,
                      target_vol=1e-4, halflife_ns=30 * S)
    args.update(kw)
    return AdaptiveBarSampler("BTCUSDT", **args)


@given(st.floats(min_value=0.0, max_value=1.0, allow_nan=False),
       st.floats(min_value=0.0, max_value=1.0, allow_nan=False))
def test_interval_rule_is_monotone_and_clamped(v1: float, v2: float) -> None:
    s = _sampler()
    lo, hi = sorted((v1, v2))
    assert s.interval_for_vol(hi) <= s.interval_for_vol(lo)
    for v in (v1, v2):
        assert s.min_interval_ns <= s.interval_for_vol(v) <= s.max_interval_ns
    assert s.interval_for_vol(None) == s.base_interval_ns
    assert s.interval_for_vol(1e-4) == s.base_interval_ns      # at target vol: base
    assert s.interval_for_vol(2e-4) == s.base_interval_ns // 2


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.floats(min_value=-0.01, max_value=0.01, allow_nan=False),
                          st.floats(min_value=1.0, max_value=20.0),
                          st.integers(min_value=1, max_value=10_000)),
                min_size=1, max_size=40),
       st.integers(min_value=1, max_value=120))
def test_larger_returns_give_higher_vol_and_shorter_intervals(
        steps: list[tuple[float, float, int]], halflife_s: int) -> None:
    """Same timing, each return at least as large in magnitude -> vol never lower, so the
    interval never longer, at every step."""
    s = _sampler()
    a, b = EwmaVol(halflife_s * S), EwmaVol(halflife_s * S)
    for r, k, dt_ms in steps:
        va = a.update(r, dt_ms * MS)
        vb = b.update(r * k, dt_ms * MS)
        assert vb >= va * (1 - 1e-12)
        assert s.interval_for_vol(vb) <= s.interval_for_vol(va) + 1


def test_ewma_halflife_weighting() -> None:
    e = EwmaVol(10 * S)
    e.update(0.001, 1 * S)
    assert e.var == pytest.approx(1e-6)
    e.update(0.0, 10 * S)                       # one half-life later: half the weight left
    assert e.var == pytest.approx(0.5e-6)
    e.update(0.0, 20 * S)
    assert e.var == pytest.approx(0.125e-6)


def _random_walk(seed: int, vol_per_sqrt_s: float, start_ms: int, n: int, p0: float,
                 step_ms: int = 100) -> list[Trade]:
    rng = random.Random(seed)
    out = []
    logp = math.log(p0)
    sd = vol_per_sqrt_s * math.sqrt(step_ms / 1000)
    for i in range(n):
        logp += rng.gauss(0.0, sd)
        out.append(tr(start_ms + i * step_ms, math.exp(logp), 0.01, sell=bool(i % 2)))
    return out


def test_high_volatility_regime_shortens_bars() -> None:
    bars: list[Bar] = []
    calm = _random_walk(1, 5e-5, 0, 6000, 60_000.0)             # 10 min at half target vol
    stormy = _random_walk(2, 4e-4, 600_000, 6000, calm[-1].price)  # 10 min at 4x target
    s2 = _sampler(halflife_ns=20 * S, on_bar=bars.append)
    for x in calm + stormy:
        s2.update(x)
    lengths = [(b.start_ns, b.end_ns - b.start_ns) for b in bars]
    assert all(s2.min_interval_ns <= ln <= s2.max_interval_ns for _, ln in lengths)
    # skip the first 2 minutes of each regime (the EWMA needs time to adapt)
    calm_len = [ln for st_, ln in lengths if 120 * S <= st_ < 600 * S]
    storm_len = [ln for st_, ln in lengths if st_ >= 720 * S]
    assert len(calm_len) >= 5 and len(storm_len) >= 20
    assert np.mean(storm_len) < 0.5 * np.mean(calm_len)
    # and in absolute terms they follow the rule: calm ~ 2x base (clamped), storm ~ base/4
    assert np.median(calm_len) > 12 * S
    assert np.median(storm_len) < 5 * S


def test_adaptive_first_bar_gap_and_advance() -> None:
    s = _sampler()
    assert s.interval_ns == 10 * S
    s.update(tr(500, 100.0, 1.0))                  # first bar: [0.5 s, 10.5 s)
    part = s.partial()
    assert part is not None and (part.start_ns, part.end_ns) == (500 * MS, 10_500 * MS)
    b1 = s.update(tr(10_500, 101.0, 1.0))
    assert b1 is not None and b1.end_ns == 10_500 * MS
    assert s.ewma.vol is None and s.interval_ns == 10 * S   # one close: no return yet
    # a long quiet gap: the next bar restarts at the trade instead of filling empty bars
    b2 = s.update(tr(100_000, 102.0, 1.0))
    assert b2 is not None and (b2.start_ns, b2.end_ns) == (10_500 * MS, 10_500 * MS + 10 * S)
    # bar 2 closed at 101 (bar 1 at 100) over 10 s
    expected = math.sqrt(math.log(101 / 100) ** 2 / 10.0)
    assert s.ewma.vol == pytest.approx(expected)
    assert s.interval_ns == s.interval_for_vol(expected) == s.min_interval_ns
    part = s.partial()
    assert part is not None and (part.start_ns, part.end_ns) == (100 * S, 101 * S)
    assert s.advance(101 * S - 1) is None
    closed = s.advance(101 * S)
    assert closed is not None and closed.close == 102.0 and closed.trades == 1
    # r = ln(102/101) over 80.5 s (from the end of bar 2 to the end of bar 3)
    a = 1 - 2 ** (-80.5 / 30)
    x = math.log(102 / 101) ** 2 / 80.5
    assert s.ewma.var == pytest.approx(expected ** 2 + a * (x - expected ** 2))


def test_adaptive_on_capture_is_well_formed(capture_trades: list[Trade]) -> None:
    bars: list[Bar] = []
    s = AdaptiveBarSampler("BTCUSDT", base_interval_ns=5 * S, min_interval_ns=500 * MS,
                           max_interval_ns=60 * S, target_vol=5e-5, halflife_ns=30 * S,
                           on_bar=bars.append)
    for x in capture_trades:
        s.update(x)
    assert len(bars) > 10
    assert sum(b.trades for b in bars) + (s.partial().trades if s.partial() else 0) == len(
        capture_trades)
    for a, b in zip(bars, bars[1:]):
        assert a.end_ns <= b.start_ns
        assert b.first_ts_ns >= b.start_ns and b.last_ts_ns < b.end_ns
        assert 500 * MS <= b.end_ns - b.start_ns <= 60 * S
