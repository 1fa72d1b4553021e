"""Order flow from the book and the trade tape: order-flow imbalance (level 1 and
multi-level), trade imbalance, microprice, and a microburst detector.

OFI (Cont, Kukanov & Stoikov 2014, "The price impact of order book events", eq. 2): between
consecutive book states n-1, n with best bid (Pb, qb) and best ask (Pa, qa),
    e_n = 1{Pb_n >= Pb_{n-1}} qb_n - 1{Pb_n <= Pb_{n-1}} qb_{n-1}
        - 1{Pa_n <= Pa_{n-1}} qa_n + 1{Pa_n >= Pa_{n-1}} qa_{n-1}
and OFI over a window is the sum of e_n (base quantity; > 0 = net buying pressure).
Multi-level OFI (Xu, Gould & Howison 2018): the same e at each of the top L levels (level m
compared with level m of the previous state), summed with equal weights; a level missing in
either state contributes 0. The window is event time: e_n with ts > now - window_ns.
Ready once the window has been covered by a valid book (an invalid book resets it: a
resynced book is a new state, not a flow).

Trade imbalance: (buy volume - sell volume) / total volume over the last n trades, in
[-1, 1] (buy = aggressor bought); ready after n trades with positive total volume.
Microprice (Stoikov 2018's simplest form, the size-weighted mid):
(Pb * qa + Pa * qb) / (qb + qa), price units; not ready without two sides or with zero size.

Microburst: event time is cut into buckets of `bucket_ns`. For each bucket the trade count
and the sum of |e_n| are compared with an EWMA baseline of earlier buckets (half-life
`halflife_ns`): z = (x - mean) / sd with sd floored (counts: max(sd, sqrt(mean), 1), a
Poisson floor; |OFI|: max(sd, 0.1 * mean), and z capped at +-1000), so a silent baseline
cannot produce inf. z is for the open bucket, updated on every event, so a burst shows within
its bucket. `burst` is 1.0 when either z >= threshold (the trade z only with at least
`min_trades` trades in the bucket), else 0.0. Ready after `warmup` closed buckets. A gap of
more than `max_gap_ns` without events is a feed gap, not a quiet market: the baseline
restarts (warm-up again) instead of learning a run of zeros.

Degenerate input: NaN/inf/non-positive prices and negative or non-finite sizes are dropped;
nothing divides by zero unchecked; outputs pass `_num.out`.

This module never reads the clock, never touches the book's internals beyond best/levels.
"""
from __future__ import annotations

import math
from collections import deque

from daemon.features._num import ok, out
from daemon.features.rolling import RollingSum

Z_CAP = 1000.0


class WindowSum:
    """Sum of (ts, x) pairs with ts > now - window_ns; at most `cap` pairs are kept (the
    oldest drop first), so memory is bounded whatever the event rate."""

    __slots__ = ("window_ns", "cap", "buf", "total", "_since", "start_ns")

    def __init__(self, window_ns: int, cap: int = 100_000) -> None:
        self.window_ns = window_ns
        self.cap = cap
        self.buf: deque[tuple[int, float]] = deque()
        self.total = 0.0
        self._since = 0
        self.start_ns: int | None = None   # first event since the last reset

    def add(self, ts_ns: int, x: float) -> None:
        buf = self.buf
        if self.start_ns is None:
            self.start_ns = ts_ns
        if len(buf) >= self.cap:
            self.total -= buf.popleft()[1]
        buf.append((ts_ns, x))
        self.total += x
        self.expire(ts_ns)

    def expire(self, now_ns: int) -> None:
        buf = self.buf
        edge = now_ns - self.window_ns
        while buf and buf[0][0] <= edge:
            self.total -= buf.popleft()[1]
            self._since += 1
        if self._since >= 1024:     # exact recompute now and then: no drift
            self.total = math.fsum(x for _, x in buf)
            self._since = 0
        if not buf:
            self.total = 0.0

    def covered(self, now_ns: int) -> bool:
        return self.start_ns is not None and now_ns - self.start_ns >= self.window_ns

    def reset(self) -> None:
        self.buf.clear()
        self.total = 0.0
        self._since = 0
        self.start_ns = None


def ofi_event(pb0: float, qb0: float, pa0: float, qa0: float,
              pb: float, qb: float, pa: float, qa: float) -> float:
    """One e_n of Cont-Kukanov-Stoikov from the previous and the current top."""
    e = 0.0
    if pb >= pb0:
        e += qb
    if pb <= pb0:
        e -= qb0
    if pa <= pa0:
        e -= qa
    if pa >= pa0:
        e += qa0
    return e


class OFI:
    """Level-1 and multi-level order-flow imbalance over an event-time window."""

    __slots__ = ("levels", "_top", "_bids", "_asks", "l1", "ml", "last_e", "dropped")

    def __init__(self, window_ns: int, levels: int = 5, cap: int = 100_000) -> None:
        if window_ns <= 0 or levels < 1:
            raise ValueError(f"OFI needs window > 0 and levels >= 1, got {window_ns}, {levels}")
        self.levels = levels
        self._top: tuple[float, float, float, float] | None = None
        self._bids: list[tuple[float, float]] | None = None
        self._asks: list[tuple[float, float]] | None = None
        self.l1 = WindowSum(window_ns, cap)
        self.ml = WindowSum(window_ns, cap)
        self.last_e = 0.0
        self.dropped = 0

    def reset(self) -> None:
        self._top = None
        self._bids = self._asks = None
        self.l1.reset()
        self.ml.reset()

    def update(self, ts_ns: int, bid: tuple[float, float], ask: tuple[float, float],
               bids: list[tuple[float, float]] | None = None,
               asks: list[tuple[float, float]] | None = None) -> None:
        """One valid book state. `bids`/`asks` (top levels, best first) feed the
        multi-level OFI; without them only level 1 is updated."""
        pb, qb = bid
        pa, qa = ask
        if not (ok(pb) and ok(qb) and ok(pa) and ok(qa)) or qb < 0.0 or qa < 0.0:
            self.dropped += 1
            return
        prev = self._top
        self._top = (pb, qb, pa, qa)
        if prev is None:
            self.l1.start_ns = self.ml.start_ns = ts_ns
            self._bids, self._asks = bids, asks
            return
        e = ofi_event(prev[0], prev[1], prev[2], prev[3], pb, qb, pa, qa)
        self.last_e = e
        self.l1.add(ts_ns, e)
        if bids is not None and asks is not None:
            pbids, pasks = self._bids, self._asks
            if pbids is not None and pasks is not None:
                em = 0.0
                for m in range(min(len(bids), len(asks), len(pbids), len(pasks))):
                    b0, a0, b1, a1 = pbids[m], pasks[m], bids[m], asks[m]
                    em += ofi_event(b0[0], b0[1], a0[0], a0[1], b1[0], b1[1], a1[0], a1[1])
                if ok(em):
                    self.ml.add(ts_ns, em)
            self._bids, self._asks = bids, asks

    def value(self, ts_ns: int) -> float | None:
        w = self.l1
        return out(w.total) if w.covered(ts_ns) else None

    def value_ml(self, ts_ns: int) -> float | None:
        w = self.ml
        return out(w.total) if w.covered(ts_ns) and self._bids is not None else None


def microprice(bid: tuple[float, float], ask: tuple[float, float]) -> float | None:
    """Size-weighted mid (price units); None if either side is unusable."""
    pb, qb = bid
    pa, qa = ask
    if not (ok(pb) and ok(pa) and ok(qb) and ok(qa)) or qb < 0.0 or qa < 0.0:
        return None
    tot = qb + qa
    if not tot > 0.0:
        return None
    return out((pb * qa + pa * qb) / tot)


class TradeImbalance:
    """(buy - sell) / (buy + sell) volume over the last n trades."""

    __slots__ = ("_signed", "_vol", "dropped")

    def __init__(self, n: int) -> None:
        self._signed = RollingSum(n)
        self._vol = RollingSum(n)
        self.dropped = 0

    def update(self, qty: float, aggressor_buy: bool) -> float | None:
        if not ok(qty) or qty < 0.0:
            self.dropped += 1
            return self.value
        self._signed.add(qty if aggressor_buy else -qty)
        self._vol.add(qty)
        return self.value

    @property
    def value(self) -> float | None:
        v = self._vol.total
        if not self._vol.full or not v > 0.0:
            return None
        x = self._signed.total / v
        return out(1.0 if x > 1.0 else -1.0 if x < -1.0 else x)


class _Baseline:
    """EWMA mean and variance of per-bucket values."""

    __slots__ = ("alpha", "mean", "var", "n")

    def __init__(self, alpha: float) -> None:
        self.alpha = alpha
        self.mean = self.var = 0.0
        self.n = 0

    def add(self, x: float) -> None:
        if self.n == 0:
            self.mean, self.var = x, 0.0
        else:
            d = x - self.mean
            a = self.alpha
            self.mean += a * d
            self.var = (1.0 - a) * (self.var + a * d * d)
        self.n += 1

    def reset(self) -> None:
        self.mean = self.var = 0.0
        self.n = 0


class Microburst:
    """Trade-rate and |OFI| bursts against a rolling (EWMA) baseline of buckets."""

    __slots__ = ("bucket_ns", "threshold", "warmup", "min_trades", "max_gap_ns",
                 "_max_fill", "_bucket", "_count", "_ofi", "_rate", "_flow", "_last_ns",
                 "trade_z", "ofi_z", "gaps")

    def __init__(self, bucket_ns: int, halflife_ns: int, threshold: float = 4.0,
                 warmup: int = 60, min_trades: int = 10, max_gap_ns: int = 60 * 10**9) -> None:
        if bucket_ns <= 0 or halflife_ns <= 0 or warmup < 2 or not threshold > 0:
            raise ValueError("microburst needs bucket > 0, half-life > 0, warmup >= 2, "
                             "threshold > 0")
        self.bucket_ns = bucket_ns
        self.threshold = threshold
        self.warmup = warmup
        self.min_trades = min_trades
        self.max_gap_ns = max_gap_ns
        alpha = 1.0 - 2.0 ** (-bucket_ns / halflife_ns)
        # Empty buckets folded in at most: after 16 half-lives older buckets weigh < 2^-16.
        self._max_fill = max(1, math.ceil(16 * halflife_ns / bucket_ns))
        self._bucket: int | None = None
        self._count = 0
        self._ofi = 0.0
        self._rate = _Baseline(alpha)
        self._flow = _Baseline(alpha)
        self._last_ns = 0
        self.trade_z = self.ofi_z = 0.0
        self.gaps = 0

    def _advance(self, ts_ns: int) -> None:
        b = ts_ns // self.bucket_ns
        cur = self._bucket
        if cur is None or ts_ns - self._last_ns > self.max_gap_ns:
            if cur is not None:
                self.gaps += 1
            self._rate.reset()
            self._flow.reset()
            self._bucket, self._count, self._ofi = b, 0, 0.0
        elif b > cur:
            self._rate.add(self._count)
            self._flow.add(self._ofi)
            for _ in range(min(b - cur - 1, self._max_fill)):   # empty buckets in between
                self._rate.add(0)
                self._flow.add(0.0)
            self._bucket, self._count, self._ofi = b, 0, 0.0
        # an event older than the open bucket (out of order) is counted in the open one
        if ts_ns > self._last_ns:
            self._last_ns = ts_ns

    def _z(self) -> None:
        r, f = self._rate, self._flow
        sd = max(math.sqrt(r.var), math.sqrt(r.mean), 1.0)
        self.trade_z = max(-Z_CAP, min(Z_CAP, (self._count - r.mean) / sd))
        sdf = max(math.sqrt(f.var), 0.1 * f.mean)
        if sdf > 0.0:
            z = (self._ofi - f.mean) / sdf
            self.ofi_z = max(-Z_CAP, min(Z_CAP, z))
        else:
            self.ofi_z = Z_CAP if self._ofi > 0.0 else 0.0

    def on_trade(self, ts_ns: int) -> None:
        self._advance(ts_ns)
        self._count += 1
        self._z()

    def on_ofi(self, ts_ns: int, e: float) -> None:
        if not ok(e):
            return
        self._advance(ts_ns)
        self._ofi += abs(e)
        self._z()

    @property
    def ready(self) -> bool:
        return self._rate.n >= self.warmup

    @property
    def burst(self) -> float:
        hot = (self.trade_z >= self.threshold and self._count >= self.min_trades) \
            or self.ofi_z >= self.threshold
        return 1.0 if hot else 0.0
