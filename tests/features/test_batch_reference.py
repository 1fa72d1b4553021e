"""Streaming microstructure features against independent batch computations (numpy /
scipy, vectorised, written from the papers' definitions) on the same real input: the
trades and 1-second bars of the shared spot BTCUSDT capture. The streaming code keeps
running sums over windows; the references recompute each window from scratch."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import norm

from daemon.features.liquidity import Amihud, CorwinSchultz, KyleLambda, RollSpread
from daemon.features.volatility import EwmaVol, RealisedVol
from daemon.features.vpin import VPIN
from daemon.market.bars import BarClock, TimeBarBuilder
from daemon.market.capture import CaptureReader
from daemon.market.decode import Decoder
from daemon.market.events import Trade

FILES = ["spot_btcusdt_20240808.gz", "spot_btcusdt_20240809.gz"]


@pytest.fixture(scope="module")
def tape(binance_dir: Path):
    dec = Decoder()
    trades = []
    bars = []
    tb = TimeBarBuilder("BTCUSDT", 1_000_000_000, clock=BarClock.RECEIVE, on_bar=bars.append)
    for ns, raw in CaptureReader([binance_dir / f for f in FILES]):
        ev = dec.decode(ns, raw)
        if type(ev) is Trade:
            trades.append(ev.price)
            tb.update(ev)
    tb.finish()
    b = {k: np.array([getattr(x, k) for x in bars]) for k in
         ("high", "low", "close", "quote_volume", "volume", "buy_volume", "sell_volume")}
    assert len(trades) > 15_000 and len(bars) > 500
    return np.array(trades), b


def _stream(feature, rows) -> float | None:
    v = None
    for r in rows:
        v = feature.update(*r)
    return v


@pytest.mark.parametrize("n", [30, 200])
def test_kyle_lambda_equals_ols_on_the_last_window(tape, n: int) -> None:
    _, b = tape
    c = b["close"]
    vwap = b["quote_volume"] / b["volume"]
    s = (b["buy_volume"] - b["sell_volume"]) * vwap
    got = _stream(KyleLambda(n), zip(c, s))
    r = np.diff(np.log(c))[-n:]
    x = s[1:][-n:]
    assert got == pytest.approx(np.polyfit(x, r, 1)[0] * 1e10, rel=1e-7)


@pytest.mark.parametrize("n", [2, 100, 5000])
def test_roll_equals_numpy_autocovariance(tape, n: int) -> None:
    p, _ = tape
    got = _stream(RollSpread(n), ((x,) for x in p))
    dp = np.diff(np.log(p)) * 1e4
    pairs = np.vstack([dp[:-1], dp[1:]])[:, -n:]
    cov = np.cov(pairs, bias=True)[0, 1]
    want = 2 * math.sqrt(-cov) if cov < 0 else 0.0
    assert got == pytest.approx(want, rel=1e-7, abs=1e-9)


@pytest.mark.parametrize("n", [20, 300])
def test_amihud_equals_batch_mean(tape, n: int) -> None:
    _, b = tape
    got = _stream(Amihud(n), zip(b["close"], b["quote_volume"]))
    r = np.abs(np.diff(np.log(b["close"])))
    qv = b["quote_volume"][1:]
    assert got == pytest.approx(np.mean((r * 1e6 / qv)[-n:]), rel=1e-9)


def test_corwin_schultz_equals_vectorised_formula(tape) -> None:
    _, b = tape
    h, lo, c = b["high"], b["low"], b["close"]
    n = 50
    got = _stream(CorwinSchultz(n), zip(h, lo, c))
    h1, l1, c0 = h[1:].copy(), lo[1:].copy(), c[:-1]
    up = l1 > c0                                   # section II.B gap adjustment
    h1[up] -= l1[up] - c0[up]
    l1[up] = c0[up]
    dn = (~up) & (h1 < c0)
    l1[dn] += c0[dn] - h1[dn]
    h1[dn] = c0[dn]
    beta = np.log(h[:-1] / lo[:-1]) ** 2 + np.log(h1 / l1) ** 2
    gamma = np.log(np.maximum(h[:-1], h1) / np.minimum(lo[:-1], l1)) ** 2
    k = 3 - 2 * math.sqrt(2)
    alpha = (np.sqrt(2 * beta) - np.sqrt(beta)) / k - np.sqrt(gamma / k)
    spread = np.maximum(2 * (np.exp(alpha) - 1) / (1 + np.exp(alpha)), 0.0)
    assert got == pytest.approx(np.mean(spread[-n:]) * 1e4, rel=1e-9)
    assert got > 0


@pytest.mark.parametrize("bucket,nb,sig", [(200_000.0, 10, 50), (1_000_000.0, 5, 20)])
def test_vpin_equals_batch_bucketing(tape, bucket: float, nb: int, sig: int) -> None:
    """Batch reference: BVC fractions with scipy's normal CDF, then buckets cut on the
    cumulative volume axis (buy volume is piecewise linear in it: a bar's fraction is
    constant), imbalance |2 (B(k V) - B((k-1) V)) - V| per bucket."""
    _, b = tape
    c, qv = b["close"], b["quote_volume"]
    got = _stream(VPIN(bucket, nb, sig), zip(c, qv))
    dp = np.diff(c)
    sd = np.array([dp[max(0, i - sig + 1):i + 1].std() for i in range(len(dp))])
    f = np.where(sd > 0, norm.cdf(dp / np.where(sd > 0, sd, 1.0)), 0.5)
    v = qv[1:]
    cum_v = np.concatenate([[0.0], np.cumsum(v)])
    cum_b = np.concatenate([[0.0], np.cumsum(v * f)])
    k = int(cum_v[-1] // bucket)
    edges = np.interp(np.arange(k + 1) * bucket, cum_v, cum_b)
    imb = np.abs(2 * np.diff(edges) - bucket)
    assert k >= nb
    assert got == pytest.approx(imb[-nb:].sum() / (nb * bucket), rel=1e-6)


def test_volatility_equals_batch(tape) -> None:
    _, b = tape
    r = np.diff(np.log(b["close"]))
    rv = _stream(RealisedVol(60), ((x,) for x in r))
    assert rv == pytest.approx(math.sqrt(np.sum(r[-60:] ** 2)), rel=1e-9)
    lam, w = 0.94, 20
    e = _stream(EwmaVol(lam, w), ((x,) for x in r))
    var = np.mean(r[:w] ** 2)
    for x in r[w:]:
        var = lam * var + (1 - lam) * x * x
    assert e == pytest.approx(math.sqrt(var), rel=1e-9)
