"""Trip reasons: one small detector per reason, each with its thresholds from `BreakersCfg`.

A detector is fed observations and returns a `Trip` (reason text with the figures in it,
and the figures as strings for the journal) when its rule fires, else None. Detectors never
open a breaker themselves, never read a clock (every time is the `now_ns`/`ts_ns` passed
in: the engine's clock, event time in replay) and do no I/O.

Order outcomes (per venue):
- `ErrorRate`: rejects + errors over orders in a time window, with an adaptive threshold
  (the rule is in its docstring) that stays within configured bounds;
- `RejectStorm`: more than N rejects + errors in the last 60 s (today's rule, kept);
- `ConsecutiveErrors`: N venue/API calls in a row that raised;
- `LatencySpike`: order ack latency above k x the rolling median and an absolute floor.
Market (per symbol, fed from `market_watch` figures; each needs a warm-up and a condition
that holds over at least two samples, so one degenerate value never trips):
- `ToxicFlow`: |normalised level-1 OFI| over a threshold, held for a time;
- `SpreadBlowout`: spread above k x its rolling median and an absolute floor, held;
- `VolumeAnomaly`: robust z-score of an interval's traded volume above a threshold;
- `StaleBook`: a traded symbol's book invalid for longer than a limit (today's rule).
"""
from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

from daemon.safety.breakers.market_watch import BookFigures, VolumeFigures, median

S = 1_000_000_000


@dataclass(frozen=True)
class Trip:
    reason: str
    figures: dict[str, str] = field(default_factory=dict)


def _g(x: float) -> str:
    return f"{x:.4g}"


# -- error rate ------------------------------------------------------------------------------
def prob_rate_above(errors: int, n: int, rate: float) -> float:
    """P(p > rate) under the Beta(1 + errors, 1 + n - errors) posterior of a uniform prior.

    For integer parameters the Beta CDF is a binomial tail:
    I_x(e + 1, s + 1) = P(Binomial(n + 1, x) >= e + 1), so
    P(p > x) = P(Binomial(n + 1, x) <= e), summed here in log space (exact up to float
    rounding for any n)."""
    m = n + 1
    lx, l1x = math.log(rate), math.log1p(-rate)
    lg = math.lgamma(m + 1)
    total = 0.0
    for k in range(errors + 1):
        total += math.exp(lg - math.lgamma(k + 1) - math.lgamma(m - k + 1)
                          + k * lx + (m - k) * l1x)
    return min(total, 1.0)


class ErrorRate:
    """Rejects + errors over order outcomes (acks, rejects, errors) in the last `window_ns`.

    Rule, evaluated on every outcome once at least `min_orders` outcomes are in the window,
    with e failures out of n and observed rate r = e / n:
      - r >= ceiling                      -> trip (however few orders);
      - r <  floor                        -> no trip (however many orders);
      - otherwise trip when P(p > rate_max | data) > confidence, p the failure probability
        under a Beta(1 + e, 1 + n - e) posterior (uniform prior).
    So the effective threshold on r adapts to n (high for few orders, approaching
    rate_max for many) but always lies in [floor, ceiling] (`effective_threshold`)."""

    def __init__(self, *, window_ns: int, min_orders: int, rate_max: float, floor: float,
                 ceiling: float, confidence: float) -> None:
        self.window_ns = window_ns
        self.min_orders = min_orders
        self.rate_max, self.floor, self.ceiling = rate_max, floor, ceiling
        self.confidence = confidence
        self._outcomes: deque[tuple[int, bool]] = deque()
        self.errors = 0

    def clear(self) -> None:
        self._outcomes.clear()
        self.errors = 0

    def decide(self, errors: int, n: int) -> bool:
        r = errors / n
        if r >= self.ceiling:
            return True
        if r < self.floor:
            return False
        return prob_rate_above(errors, n, self.rate_max) > self.confidence

    def effective_threshold(self, n: int) -> float:
        """The smallest observed rate e / n that trips with n outcomes. `decide` is
        monotone in e (more failures never make a trip less likely), so bisect."""
        lo, hi = 0, n   # decide(n, n) holds: a rate of 1 is >= any ceiling
        while lo < hi:
            mid = (lo + hi) // 2
            if self.decide(mid, n):
                hi = mid
            else:
                lo = mid + 1
        return lo / n

    def record(self, failed: bool, now_ns: int) -> Trip | None:
        q = self._outcomes
        q.append((now_ns, failed))
        self.errors += failed
        while now_ns - q[0][0] > self.window_ns:
            self.errors -= q.popleft()[1]
        n = len(q)
        if n < self.min_orders or not failed or not self.decide(self.errors, n):
            return None
        p = prob_rate_above(self.errors, n, self.rate_max)
        rate = self.errors / n
        win = self.window_ns / S
        return Trip(f"error rate {self.errors}/{n} = {rate:.0%} in {win:g} s "
                    f"(P(rate > {self.rate_max:.0%}) = {p:.3f}, threshold now "
                    f"{self.effective_threshold(n):.0%})",
                    {"errors": str(self.errors), "orders": str(n), "rate": _g(rate),
                     "p_above": _g(p), "rate_max": _g(self.rate_max),
                     "window_s": _g(win)})


class RejectStorm:
    """More than `max_per_min` rejects + errors in the last 60 s."""

    def __init__(self, max_per_min: int) -> None:
        self.max_per_min = max_per_min
        self._times: deque[int] = deque()

    def clear(self) -> None:
        self._times.clear()

    def record(self, now_ns: int) -> Trip | None:
        t = self._times
        t.append(now_ns)
        while now_ns - t[0] > 60 * S:
            t.popleft()
        if len(t) <= self.max_per_min:
            return None
        return Trip(f"{len(t)} rejects in the last minute (max {self.max_per_min})",
                    {"rejects": str(len(t)), "max_per_min": str(self.max_per_min)})


class ConsecutiveErrors:
    """`max_errors` venue/API calls in a row that raised (any success in between resets)."""

    def __init__(self, max_errors: int) -> None:
        self.max_errors = max_errors
        self.count = 0

    def clear(self) -> None:
        self.count = 0

    def success(self) -> None:
        self.count = 0

    def error(self, reason: str) -> Trip | None:
        self.count += 1
        if self.count < self.max_errors:
            return None
        return Trip(f"{self.count} venue errors in a row (max {self.max_errors}), last: "
                    f"{reason}", {"errors": str(self.count), "max": str(self.max_errors),
                                  "last": reason})


class LatencySpike:
    """Order ack latency against the median of the last `window` acks: `spikes` acks in a
    row above both `factor` x median and `floor_ns` trip. No trip before `warmup` acks."""

    def __init__(self, *, factor: float, floor_ns: int, window: int, warmup: int,
                 spikes: int) -> None:
        self.factor, self.floor_ns = factor, floor_ns
        self.warmup, self.spikes = warmup, spikes
        self._lat: deque[int] = deque(maxlen=window)
        self.run = 0
        # threshold_ns() is asked on every ack (twice) and for every probe timeout, but it
        # only moves when an ack joins the window: kept until then (`_lat` changes only in
        # ack(), which drops this).
        self._th: tuple[float | None] | None = None

    def threshold_ns(self) -> float | None:
        """Latency above which an ack is a spike; None during warm-up."""
        th = self._th
        if th is None:
            th = self._th = (None if len(self._lat) < self.warmup else
                             max(self.factor * median(list(self._lat)), self.floor_ns),)
        return th[0]

    def is_spike(self, latency_ns: int) -> bool:
        th = self.threshold_ns()
        return th is not None and latency_ns > th

    def ack(self, latency_ns: int) -> Trip | None:
        """A measured ack latency; negative ones (clock trouble) are ignored."""
        if latency_ns < 0:
            return None
        th = self.threshold_ns()
        if th is not None and latency_ns > th:
            self.run += 1
            if self.run >= self.spikes:
                med = median(list(self._lat))
                return Trip(f"ack latency {latency_ns / 1e6:.1f} ms above "
                            f"{th / 1e6:.1f} ms ({self.factor:g} x median "
                            f"{med / 1e6:.1f} ms, floor {self.floor_ns / 1e6:g} ms), "
                            f"{self.run} in a row",
                            {"latency_ms": _g(latency_ns / 1e6), "median_ms": _g(med / 1e6),
                             "threshold_ms": _g(th / 1e6), "in_a_row": str(self.run)})
            return None   # a spike is not added to the median it is measured against
        self.run = 0
        self._lat.append(latency_ns)
        self._th = None
        return None


# -- market ------------------------------------------------------------------------------------
class _Held:
    """A condition that must hold on consecutive samples for at least `hold_ns` and on at
    least two samples before it counts."""

    def __init__(self, hold_ns: int) -> None:
        self.hold_ns = hold_ns
        self.since: int | None = None
        self.samples = 0

    def update(self, cond: bool, ts_ns: int) -> bool:
        if not cond:
            self.since, self.samples = None, 0
            return False
        if self.since is None:
            self.since = ts_ns
        self.samples += 1
        return self.samples >= 2 and ts_ns - self.since >= self.hold_ns


class ToxicFlow:
    """|OFI / median depth| over the OFI window above `max_abs`, with the same sign, on
    every sample for `hold_ns`; not before `warmup_ns` after the first valid sample."""

    def __init__(self, *, max_abs: float, hold_ns: int, warmup_ns: int,
                 window_ns: int) -> None:
        self.max_abs, self.warmup_ns, self.window_ns = max_abs, warmup_ns, window_ns
        self._pos, self._neg = _Held(hold_ns), _Held(hold_ns)

    def observe(self, f: BookFigures, symbol: str) -> Trip | None:
        warm = f.ts_ns - f.first_ns >= self.warmup_ns
        pos = self._pos.update(warm and f.ofi_norm > self.max_abs, f.ts_ns)
        neg = self._neg.update(warm and f.ofi_norm < -self.max_abs, f.ts_ns)
        if not (pos or neg):
            return None
        side = "buying" if pos else "selling"
        held = f.ts_ns - (self._pos.since if pos else self._neg.since)
        return Trip(f"{symbol} toxic flow: one-sided {side}, order-flow imbalance "
                    f"{f.ofi_norm:+.1f} x median depth over {self.window_ns / S:g} s "
                    f"(max {self.max_abs:g}) for {held / S:.1f} s",
                    {"symbol": symbol, "ofi_norm": _g(f.ofi_norm), "ofi": _g(f.ofi),
                     "depth_median": _g(f.depth_median), "max_abs": _g(self.max_abs),
                     "held_s": _g(held / S)})


class SpreadBlowout:
    """Spread above `factor` x its rolling median and above `floor_bps`, on every sample
    for `hold_ns`; not before `warmup_ns` after the first valid sample."""

    def __init__(self, *, factor: float, floor_bps: float, hold_ns: int,
                 warmup_ns: int) -> None:
        self.factor, self.floor_bps, self.warmup_ns = factor, floor_bps, warmup_ns
        self._held = _Held(hold_ns)

    def observe(self, f: BookFigures, symbol: str) -> Trip | None:
        limit = max(self.factor * f.spread_median_bps, self.floor_bps)
        warm = f.ts_ns - f.first_ns >= self.warmup_ns
        if not self._held.update(warm and f.spread_bps > limit, f.ts_ns):
            return None
        held = f.ts_ns - self._held.since
        return Trip(f"{symbol} spread blow-out: {f.spread_bps:.2f} bps above {limit:.2f} bps "
                    f"({self.factor:g} x median {f.spread_median_bps:.4g} bps, floor "
                    f"{self.floor_bps:g} bps) for {held / S:.1f} s",
                    {"symbol": symbol, "spread_bps": _g(f.spread_bps),
                     "median_bps": _g(f.spread_median_bps), "limit_bps": _g(limit),
                     "held_s": _g(held / S)})


class VolumeAnomaly:
    """An interval's traded volume with robust z-score above `z_max` against the previous
    intervals; not before `warmup` intervals of history, never when MAD is 0."""

    def __init__(self, *, z_max: float, warmup: int, interval_ns: int) -> None:
        self.z_max, self.warmup, self.interval_ns = z_max, warmup, interval_ns
        self.no_scale = 0   # intervals skipped because MAD was 0

    def observe(self, v: VolumeFigures, symbol: str) -> Trip | None:
        if v.history < self.warmup:
            return None
        if v.z is None:
            self.no_scale += 1
            return None
        if v.z <= self.z_max:
            return None
        return Trip(f"{symbol} volume anomaly: {v.volume:.6g} traded in "
                    f"{self.interval_ns / S:g} s, robust z {v.z:.1f} > {self.z_max:g} "
                    f"(median {v.median:.6g}, MAD {v.mad:.6g} over {v.history} intervals)",
                    {"symbol": symbol, "volume": _g(v.volume), "z": _g(v.z),
                     "median": _g(v.median), "mad": _g(v.mad), "z_max": _g(self.z_max)})


class StaleBook:
    """A traded symbol's order book invalid for longer than `max_ns`."""

    def __init__(self, max_ns: int) -> None:
        self.max_ns = max_ns
        self._invalid_since: dict[str, int] = {}

    @property
    def invalid(self) -> dict[str, int]:
        """The books invalid now, since when (empty: `check` finds nothing). Read-only."""
        return self._invalid_since

    def clear(self) -> None:
        self._invalid_since.clear()

    def state(self, symbol: str, valid: bool, now_ns: int) -> None:
        if valid:
            self._invalid_since.pop(symbol, None)
        else:
            self._invalid_since.setdefault(symbol, now_ns)

    def check(self, now_ns: int) -> Trip | None:
        for sym, since in self._invalid_since.items():
            # Nothing is later than now: a since-time after it means the clock stepped
            # back (a replay's event time after a boot on the wall clock, or a wall clock
            # set back), and the invalid time counts from now on this clock, never
            # towards a moment it will not reach.
            since = self._invalid_since[sym] = min(since, now_ns)
            age = now_ns - since
            if age > self.max_ns:
                return Trip(f"{sym} order book invalid for {age / S:.1f} s",
                            {"symbol": sym, "invalid_s": _g(age / S),
                             "max_s": _g(self.max_ns / S)})
        return None
