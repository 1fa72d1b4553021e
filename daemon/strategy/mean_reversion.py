"""Mean reversion: the z-score of the bar close against its rolling mean, traded only when
the market is not trending and its volatility is in a band.

On every [strategy] bar (bar_interval_s, built from trades):

    z = (close - mean) / std        mean, population std of the last `window` closes
                                    (the bar's own close included: TA-Lib's SMA / STDDEV)
    ER = |close - close[-er_window]| / sum of |close - previous close| over er_window bars
                                    (Kaufman's efficiency ratio: 1 = a straight line,
                                    0 = all noise; 0 when the price did not move)
    vol = std / mean in bps

Flat, it buys when z < -entry_z and sells short when z > entry_z (only with allow_short;
never on spot: the config refuses it), but stands aside, saying why, while warming up,
when ER > er_max (a trending regime: the "mean" is running away), and when vol is below
min_vol_bps (too little movement to pay for the spread and fees) or above max_vol_bps.
The filters gate entries only: an open position is always managed. It closes when z is back
within exit_z of the mean (or past it) on a bar close, or on any trade through the stop
(entry -/+ stop_sd x the std at entry). After a stop it waits for the price to come back to
the mean (|z| < exit_z) before it trades again, rather than buying a falling price twice.
Entries and exits are IOC limits max_slippage_bps through the mark
(daemon/strategy/one_position.py).

It only returns intents; it never touches the gateway, the venue or the clock.
"""
from __future__ import annotations

import math
from collections import deque
from typing import Any, Iterable

from daemon.config import MeanReversionCfg
from daemon.features._num import ok
from daemon.features.rolling import RollingMoments, RollingSum
from daemon.strategy.api import Context, Intent, Strategy
from daemon.strategy.one_position import OnePosition


class EfficiencyRatio:
    """Kaufman's efficiency ratio over the last n changes (0..1); ready after n+1 inputs.
    Non-finite inputs are dropped (counted in `dropped`)."""

    __slots__ = ("n", "_closes", "_path", "dropped")

    def __init__(self, n: int) -> None:
        if n < 1:
            raise ValueError(f"efficiency ratio window must be >= 1, got {n}")
        self.n = n
        self._closes: deque[float] = deque(maxlen=n + 1)
        self._path = RollingSum(n)
        self.dropped = 0

    def update(self, x: float) -> float | None:
        if not ok(x):
            self.dropped += 1
            return self.value
        if self._closes:
            self._path.add(abs(x - self._closes[-1]))
        self._closes.append(x)
        return self.value

    @property
    def value(self) -> float | None:
        if len(self._closes) <= self.n:
            return None
        path = self._path.total
        if not path > 0.0:
            return 0.0   # no movement at all: not a trend
        return min(1.0, abs(self._closes[-1] - self._closes[0]) / path)


class _Sym:
    __slots__ = ("m", "er", "bars", "z", "sd", "vol_bps", "pos", "after_stop")

    def __init__(self, p: MeanReversionCfg, symbol: str) -> None:
        self.m = RollingMoments(p.window)
        self.er = EfficiencyRatio(p.er_window)
        self.bars = 0
        self.z: float | None = None
        self.sd: float | None = None
        self.vol_bps: float | None = None
        self.pos = OnePosition(symbol, p.max_slippage_bps)
        self.after_stop = False     # stopped out: wait for |z| < exit_z before trading again


class MeanReversion(Strategy):
    name = "mean_reversion"

    def __init__(self, params: MeanReversionCfg, symbols: list[str]) -> None:
        super().__init__(params, symbols)
        self.p = params
        self.warmup = max(params.window, params.er_window + 1)
        self._s = {s: _Sym(params, s) for s in symbols}
        self.stats.update(entries=0, stops=0, mean_exits=0)

    # -- bars --------------------------------------------------------------------------------
    def on_bar(self, ctx: Context, bar: Any) -> Iterable[Intent]:
        st = self._s.get(bar.symbol)
        if st is None or not ok(bar.close):
            return ()
        sym = bar.symbol
        st.bars += 1
        st.m.add(bar.close)
        er = st.er.update(bar.close)
        self._sync(ctx, st)
        if st.bars < self.warmup or er is None:
            st.z = None
            self.aside(f"{sym}: warming up ({st.bars}/{self.warmup} bars)")
            return ()
        mean, sd = st.m.mean, math.sqrt(st.m.var)
        st.sd = sd
        st.vol_bps = sd / mean * 1e4 if mean > 0 else None
        st.z = (bar.close - mean) / sd if sd > 0 else 0.0
        p, pos, z = self.p, st.pos, st.z
        if pos.phase in ("entering", "exiting"):
            return ()
        if pos.phase == "open":
            if z * pos.side >= -p.exit_z:
                self.stats["mean_exits"] += 1
                self.intent = f"{sym}: close at the mean (z = {z:.3g})"
                return pos.exit(ctx, f"back to the mean: z = {z:.3g}")
            return ()
        if st.after_stop:
            if abs(z) >= p.exit_z:
                self.aside(f"{sym}: stopped out; waiting for the price to come back to the "
                           f"mean (|z| = {abs(z):.3g} >= exit_z {p.exit_z:g})")
                return ()
            st.after_stop = False
        held = ctx.position(sym)
        if held != 0:
            self.aside(f"{sym}: a position of {held} is open that this strategy did not "
                       f"open (one position at a time)")
            return ()
        if er > p.er_max:
            self.aside(f"{sym}: trending regime (efficiency ratio {er:.3g} > er_max "
                       f"{p.er_max:g})")
            return ()
        if st.vol_bps is None or st.vol_bps < p.min_vol_bps:
            self.aside(f"{sym}: volatility too low ({st.vol_bps or 0:.3g} bps < min_vol_bps "
                       f"{p.min_vol_bps:g})")
            return ()
        if st.vol_bps > p.max_vol_bps:
            self.aside(f"{sym}: volatility too high ({st.vol_bps:.3g} bps > max_vol_bps "
                       f"{p.max_vol_bps:g})")
            return ()
        if abs(z) <= p.entry_z:
            self.aside(None)
            self.intent = f"{sym}: waiting for |z| > {p.entry_z:g} (z = {z:.3g})"
            return ()
        side = -1 if z > 0 else 1
        if side < 0 and not p.allow_short:
            self.aside(f"{sym}: above the band (z = {z:.3g}), long-only (allow_short = false)")
            return ()
        out = pos.enter(ctx, side, stop_dist=p.stop_sd * sd, target_dist=None,
                        reason=f"z = {z:.3g} beyond {p.entry_z:g}, ER {er:.3g}, "
                               f"vol {st.vol_bps:.3g} bps")
        if not out:
            self.aside(f"{sym}: no mark (cannot price the entry)")
            return ()
        self.aside(None)
        self.stats["entries"] += 1
        self.intent = f"{sym}: {'buy' if side > 0 else 'sell'} at z = {z:.3g}"
        return out

    # -- trades: the stop --------------------------------------------------------------------
    def on_trade(self, ctx: Context, trade: Any) -> Iterable[Intent]:
        st = self._s.get(trade.symbol)
        if st is None:
            return ()
        self._sync(ctx, st)
        pos = st.pos
        if pos.phase != "open":
            return ()
        if pos.exit_why:   # an exit that did not (fully) fill: send the rest again
            return pos.exit(ctx, pos.exit_why)
        if pos.hit(trade.price) != "stop":
            return ()
        self.stats["stops"] += 1
        self.intent = f"{trade.symbol}: close at the stop {pos.stop:.8g}"
        return pos.exit(ctx, f"stop {pos.stop:.8g} hit at {trade.price:.8g}")

    def _sync(self, ctx: Context, st: _Sym) -> None:
        pos = st.pos
        sym = pos.symbol
        what = pos.sync(ctx)
        if what == "entered":
            self.intent = (f"{sym}: {'long' if pos.side > 0 else 'short'} from "
                           f"{pos.entry_price:.8g}, stop {pos.stop:.8g}, exit at "
                           f"|z| < {self.p.exit_z:g}")
        elif what == "missed":
            self.intent = None
            self.aside(f"{sym}: the entry IOC found nothing within max_slippage_bps")
        elif what == "closed":
            self.intent = None
            if pos.exit_why.startswith("stop"):
                st.after_stop = True
                self.aside(f"{sym}: {pos.exit_why}; waiting for the price to come back to "
                           f"the mean")

    # -- what it hears about its orders ------------------------------------------------------
    def on_fill(self, ctx: Context, tag: str, fill: Any) -> Iterable[Intent]:
        st = self._s.get(fill.symbol)
        if st is not None:
            st.pos.on_fill(tag, fill)
        return ()

    def on_refused(self, ctx: Context, intent: Intent, stage: str, reason: str
                   ) -> Iterable[Intent]:
        super().on_refused(ctx, intent, stage, reason)
        st = self._s.get(intent.tag.partition(":")[2])
        if st is None:
            return ()
        st.pos.on_refused(intent.tag)
        if intent.tag == st.pos.entry_tag:
            what = "position limit" if "max_position" in reason else f"entry refused ({stage})"
            self.aside(f"{st.pos.symbol}: {what}: {reason}")
        return ()

    def status(self) -> dict:
        out = super().status()
        out["symbols_state"] = {
            s: {"bars": st.bars, "z": st.z, "sd": st.sd, "vol_bps": st.vol_bps,
                "efficiency_ratio": st.er.value, "after_stop": st.after_stop,
                **st.pos.status()} for s, st in self._s.items()}
        return out
