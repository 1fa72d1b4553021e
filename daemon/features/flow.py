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
cannot produce inf. The limits (mean + threshold * sd) are computed when a bucket opens, so
an event costs one comparison; `burst` turns 1.0 the moment the open bucket's trade count
(at least `min_trades`) or |OFI| reaches its limit, and the z-scores are published then and
at every bucket close (see `Microburst`). Ready after `warmup` closed buckets. A gap of
more than `max_gap_ns` without events is a feed gap, not a quiet market: the baseline
restarts (warm-up again) instead of learning a run of zeros.

Degenerate input: NaN/inf/non-positive prices and negative or non-finite sizes are dropped;
nothing divides by zero unchecked; outputs pass `_num.out`.

This module never reads the clock, never touches the book's internals beyond best/levels.
"""
from __future__ import annotations

import math
from collections import deque

from daemon.features._num import MAX_INPUT, ok, out

Z_CAP = 1000.0


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
    """Level-1 and multi-level order-flow imbalance over an event-time window.

    One deque of (ts, e, e_multi) per book update inside the window (at most `cap`, the
    oldest dropped first, so memory is bounded whatever the event rate) and the two running
    totals, recomputed exactly every 1024 removals so no drift accumulates."""

    __slots__ = ("levels", "window_ns", "cap", "_top", "_bids", "_asks", "_buf", "t1", "tm",
                 "_since", "start_ns", "last_e", "dropped")

    def __init__(self, window_ns: int, levels: int = 5, cap: int = 100_000) -> None:
        if window_ns <= 0 or levels < 1 or cap < 1:
            raise ValueError(f"OFI needs window > 0, levels >= 1 and cap >= 1, got "
                             f"{window_ns}, {levels}, {cap}")
        self.levels = levels
        self.window_ns = window_ns
        self.cap = cap
        self._top: tuple[float, float, float, float] | None = None
        self._bids: list[tuple[float, float]] | None = None
        self._asks: list[tuple[float, float]] | None = None
        self._buf: deque[tuple[int, float, float]] = deque()
        self.t1 = self.tm = 0.0
        self._since = 0
        self.start_ns: int | None = None    # first valid state since the last reset
        self.last_e = 0.0
        self.dropped = 0

    def reset(self) -> None:
        self._top = None
        self._bids = self._asks = None
        self._buf.clear()
        self.t1 = self.tm = 0.0
        self._since = 0
        self.start_ns = None

    def update(self, ts_ns: int, bid: tuple[float, float], ask: tuple[float, float],
               bids: list[tuple[float, float]] | None = None,
               asks: list[tuple[float, float]] | None = None) -> None:
        """One valid book state. `bids`/`asks` (top levels, best first) feed the
        multi-level OFI; without them only level 1 is updated. Sets `last_e` (finite)."""
        pb, qb = bid
        pa, qa = ask
        # NaN fails every comparison, so this also drops NaN
        if not (-MAX_INPUT <= pb <= MAX_INPUT and -MAX_INPUT <= pa <= MAX_INPUT
                and 0.0 <= qb <= MAX_INPUT and 0.0 <= qa <= MAX_INPUT):
            self.dropped += 1
            return
        prev = self._top
        self._top = (pb, qb, pa, qa)
        if prev is None:
            self.start_ns = ts_ns
            self._bids, self._asks = bids, asks
            return
        pb0, qb0, pa0, qa0 = prev
        e = 0.0
        if pb >= pb0:
            e += qb
        if pb <= pb0:
            e -= qb0
        if pa <= pa0:
            e -= qa
        if pa >= pa0:
            e += qa0
        self.last_e = e
        em = 0.0
        if bids is not None and asks is not None:
            pbids, pasks = self._bids, self._asks
            if pbids is not None and pasks is not None:
                # ofi_event per level, inlined (this runs on every book update); zip stops
                # at the shortest side, so a level missing in either state adds nothing
                for (b0, c0), (a0, d0), (b1, c1), (a1, d1) in zip(pbids, pasks, bids, asks):
                    if b1 >= b0:
                        em += c1
                    if b1 <= b0:
                        em -= c0
                    if a1 <= a0:
                        em -= d1
                    if a1 >= a0:
                        em += d0
                if not -MAX_INPUT * 100 <= em <= MAX_INPUT * 100:   # NaN/inf sizes deeper
                    self.dropped += 1
                    em = 0.0
            self._bids, self._asks = bids, asks
        buf = self._buf
        if len(buf) >= self.cap:
            _, x, y = buf.popleft()
            self.t1 -= x
            self.tm -= y
        buf.append((ts_ns, e, em))
        self.t1 += e
        self.tm += em
        edge = ts_ns - self.window_ns
        while buf[0][0] <= edge:     # never empties: the entry just added is inside
            _, x, y = buf.popleft()
            self.t1 -= x
            self.tm -= y
            self._since += 1
        if self._since >= 1024:      # exact recompute now and then: no drift
            self.t1 = math.fsum(v[1] for v in buf)
            self.tm = math.fsum(v[2] for v in buf)
            self._since = 0

    def value(self, ts_ns: int) -> float | None:
        """Level-1 OFI over the window; None until the window is covered."""
        st = self.start_ns
        return self.t1 if st is not None and ts_ns - st >= self.window_ns else None

    def value_ml(self, ts_ns: int) -> float | None:
        st = self.start_ns
        if st is None or ts_ns - st < self.window_ns or self._bids is None:
            return None
        return self.tm


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
    """(buy - sell) / (buy + sell) volume over the last n trades (one deque of signed
    quantities; the total volume is kept alongside from their magnitudes)."""

    __slots__ = ("n", "_buf", "_signed", "_vol", "_since", "dropped")

    def __init__(self, n: int) -> None:
        if n < 1:
            raise ValueError(f"window must be >= 1, got {n}")
        self.n = n
        self._buf: deque[float] = deque(maxlen=n)
        self._signed = self._vol = 0.0
        self._since = 0
        self.dropped = 0

    def update(self, qty: float, aggressor_buy: bool) -> float | None:
        if not -MAX_INPUT <= qty <= MAX_INPUT or qty < 0.0:   # _num.ok, inlined (per trade)
            self.dropped += 1
            return self.value
        buf = self._buf
        n = self.n
        if len(buf) == n:
            old = buf[0]
            self._signed -= old
            self._vol -= old if old >= 0.0 else -old
            self._since += 1
        x = qty if aggressor_buy else -qty
        buf.append(x)
        self._signed += x
        self._vol += qty
        if self._since >= n:            # exact recompute now and then: no drift
            self._signed = math.fsum(buf)
            self._vol = math.fsum(abs(v) for v in buf)
            self._since = 0
        v = self._vol
        if len(buf) < n or not v > 0.0:
            return None
        r = self._signed / v
        return 1.0 if r > 1.0 else -1.0 if r < -1.0 else r    # finite: |signed| <= vol

    @property
    def value(self) -> float | None:
        v = self._vol
        if len(self._buf) < self.n or not v > 0.0:
            return None
        x = self._signed / v
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
    """Trade-rate and |OFI| bursts against a rolling (EWMA) baseline of buckets.

    Cheap per event (a comparison with limits computed when a bucket closes): `on_trade`
    and `on_ofi` return True when the published values changed, i.e. at a bucket close
    (`trade_z`/`ofi_z` are then the closed bucket's) and the moment the open bucket crosses
    a limit (they are then the open bucket's, and `burst` turns 1 at once). `burst` goes
    back to 0 when a bucket without a burst opens."""

    __slots__ = ("bucket_ns", "threshold", "warmup", "min_trades", "max_gap_ns",
                 "_max_fill", "_bucket", "_edge", "_count", "_ofi", "_rate", "_flow",
                 "_last_ns", "_trade_lim", "_ofi_lim", "hot", "trade_z", "ofi_z", "gaps")

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
        self._edge = 0                      # end of the open bucket
        self._count = 0
        self._ofi = 0.0
        self._rate = _Baseline(alpha)
        self._flow = _Baseline(alpha)
        self._last_ns = 0
        self._trade_lim = math.inf          # no burst before the baseline is warm
        self._ofi_lim = math.inf
        self.hot = False
        self.trade_z = self.ofi_z = 0.0
        self.gaps = 0

    def _sd(self) -> tuple[float, float]:
        r, f = self._rate, self._flow
        return (max(math.sqrt(r.var), math.sqrt(r.mean), 1.0),
                max(math.sqrt(f.var), 0.1 * f.mean))

    def _z(self) -> None:
        """z of the open bucket against the baseline (before the bucket is added to it)."""
        sd, sdf = self._sd()
        self.trade_z = max(-Z_CAP, min(Z_CAP, (self._count - self._rate.mean) / sd))
        if sdf > 0.0:
            self.ofi_z = max(-Z_CAP, min(Z_CAP, (self._ofi - self._flow.mean) / sdf))
        else:
            self.ofi_z = Z_CAP if self._ofi > 0.0 else 0.0

    def _open(self, b: int) -> None:
        self._bucket, self._count, self._ofi, self.hot = b, 0, 0.0, False
        self._edge = (b + 1) * self.bucket_ns
        if self._rate.n >= self.warmup:
            sd, sdf = self._sd()
            z = self.threshold
            self._trade_lim = max(self._rate.mean + z * sd, float(self.min_trades))
            # a silent |OFI| baseline: any flow at all is a burst
            self._ofi_lim = self._flow.mean + z * sdf if sdf > 0.0 else 5e-324
        else:
            self._trade_lim = self._ofi_lim = math.inf

    def _advance(self, ts_ns: int) -> bool:
        """Close buckets up to ts_ns; True if anything was closed or reset."""
        changed = False
        if self._bucket is None or ts_ns - self._last_ns > self.max_gap_ns:
            if self._bucket is not None:
                self.gaps += 1
            self._rate.reset()
            self._flow.reset()
            self.trade_z = self.ofi_z = 0.0
            self._open(ts_ns // self.bucket_ns)
            changed = True
        elif ts_ns >= self._edge:
            self._z()                       # the closed bucket's z, published
            self._rate.add(self._count)
            self._flow.add(self._ofi)
            b = ts_ns // self.bucket_ns
            for _ in range(min(b - self._bucket - 1, self._max_fill)):   # empty buckets
                self._rate.add(0)
                self._flow.add(0.0)
            self._open(b)
            changed = True
        # an event older than the open bucket (out of order) is counted in the open one
        if ts_ns > self._last_ns:
            self._last_ns = ts_ns
        return changed

    def on_trade(self, ts_ns: int) -> bool:
        changed = self._advance(ts_ns) if ts_ns >= self._edge \
            or ts_ns - self._last_ns > self.max_gap_ns else False
        if ts_ns > self._last_ns:
            self._last_ns = ts_ns
        self._count += 1
        if not self.hot and self._count >= self._trade_lim:
            self.hot = True
            self._z()
            return True
        return changed

    def on_ofi(self, ts_ns: int, e: float) -> bool:
        """`e` must be finite (OFI.last_e always is)."""
        changed = self._advance(ts_ns) if ts_ns >= self._edge \
            or ts_ns - self._last_ns > self.max_gap_ns else False
        if ts_ns > self._last_ns:
            self._last_ns = ts_ns
        self._ofi += e if e >= 0.0 else -e
        if not self.hot and self._ofi >= self._ofi_lim:
            self.hot = True
            self._z()
            return True
        return changed

    @property
    def ready(self) -> bool:
        return self._rate.n >= self.warmup

    @property
    def burst(self) -> float:
        return 1.0 if self.hot else 0.0
