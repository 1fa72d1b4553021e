"""Runs the heavy analytics in the daemon: periodic PIN and GARCH(1,1) fits through the
heavy-analytics interface, their results applied on the event loop, and the
Glosten–Milgrom spread floor the quoter reads.

What it does, per symbol:
- `on_trade` counts buyer- and seller-initiated trades per PIN period (``pin_period_s`` of
  exchange time; ``buyer_is_maker`` True means the aggressor sold) and keeps the last
  ``pin_periods`` closed periods in a bounded deque. O(1) per trade; a feed gap appends at
  most ``pin_periods`` empty periods (they are real observations of zero arrivals, as in
  `daemon.analytics.pin.counts_by_period`).
- every ``pin_every_s`` of the runner's clock: ``pin.fit`` on the closed periods (once
  ``pin_periods`` of them exist); the result is the symbol's PIN estimate.
- every ``garch_every_s``: ``garch.fit`` on `FeatureEngine.garch_window` (when it holds
  new returns, at least 30); the fit goes to `FeatureEngine.set_garch_fit`.
- `floor_bps`: the Glosten–Milgrom spread (`gm_spread`) from the latest PIN and the
  symbol's volatility feature (``garch_vol`` when ready, else ``ewma_vol``; both are
  log-return sd per bar, turned into per-sqrt-second with the engine's bar interval), in
  bps of the mid: a floor on the market maker's spread, never a quote.

At most one job of each kind is in flight per symbol. Each job has ``deadline_s``. A job
that fails, misses its deadline or returns no estimate is counted and shown in `status`
and nothing is applied; that is the normal JobResult path. A bug while applying a result
is not caught: it ends `run()` with the exception (the supervisor's task policy).

It must never block the loop (the fits run in the worker; everything here is O(1) per
trade or O(window) per cycle to copy a payload) and never sends orders.
"""
from __future__ import annotations

import asyncio
import logging
import math
from collections import deque
from collections.abc import Callable
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from daemon.analytics.glosten_milgrom import gm_spread
from daemon.analytics.heavy import HeavyAnalytics, JobResult
from daemon.config import AnalyticsCfg
from daemon.market.events import Trade

if TYPE_CHECKING:   # annotation only: the runner is handed an engine, never builds one
    from daemon.features.engine import FeatureEngine

log = logging.getLogger(__name__)

_NS = 1_000_000_000
PIN_JOB = "pin.fit"
GARCH_JOB = "garch.fit"
GARCH_MIN_RETURNS = 30          # daemon.analytics.garch.MIN_OBS: fewer is refused anyway
VOL_FEATURES = ("garch_vol", "ewma_vol")   # preference order for the GM volatility


class _JobCounts:
    __slots__ = ("submitted", "ok", "failed", "late", "skipped_busy")

    def __init__(self) -> None:
        self.submitted = self.ok = self.failed = self.late = self.skipped_busy = 0

    def as_dict(self) -> dict[str, int]:
        return {k: getattr(self, k) for k in self.__slots__}


class _Symbol:
    """Per-symbol state: the PIN period counts, the latest results, the job bookkeeping."""

    def __init__(self, periods: int) -> None:
        self.periods: deque[tuple[int, int]] = deque(maxlen=periods)   # closed (buys, sells)
        self.cur_k: int | None = None   # index of the open period (exch_ms // period_ms)
        self.cur_b = 0
        self.cur_s = 0
        self.out_of_order = 0           # trades older than the open period (counted into it)
        self.last_px: float | None = None
        self.pin: dict[str, Any] | None = None
        self.garch: dict[str, Any] | None = None
        self.garch_upto = -1            # garch_window sequence number last submitted
        self.next_due = {PIN_JOB: 0, GARCH_JOB: 0}   # clock ns; 0 = due now
        self.in_flight: dict[str, asyncio.Task] = {}
        self.jobs = {PIN_JOB: _JobCounts(), GARCH_JOB: _JobCounts()}
        self.last_problem: str | None = None
        self.floor_key: tuple | None = None
        self.floor: float | None = None
        self.floor_vol: str | None = None


class AnalyticsRunner:
    """See the module docstring. ``clock`` returns nanoseconds (event time in a replay, wall
    time live); ``poll_s`` is how often `run` looks at it (wall seconds)."""

    def __init__(self, cfg: AnalyticsCfg, heavy: HeavyAnalytics, features: FeatureEngine | None,
                 symbols: list[str], clock: Callable[[], int], *, poll_s: float = 1.0) -> None:
        self.cfg = cfg
        self.heavy = heavy
        self.features = features
        self.symbols = list(symbols)
        self.clock = clock
        self.poll_s = poll_s
        self._period_ms = max(1, int(round(cfg.pin_period_s * 1000)))
        self._sym = {s: _Symbol(cfg.pin_periods) for s in self.symbols}
        self._bug: BaseException | None = None
        self._wake = asyncio.Event()
        self.stats = {"trades": 0, "unknown_symbol": 0, "cycles": 0}

    # -- feeding (hot path) --------------------------------------------------------------
    def on_trade(self, trade: Trade) -> None:
        """One market trade: counted into its PIN period by aggressor side. O(1)."""
        st = self._sym.get(trade.symbol)
        if st is None:
            self.stats["unknown_symbol"] += 1
            return
        self.stats["trades"] += 1
        st.last_px = trade.price
        k = trade.exch_ms // self._period_ms
        cur = st.cur_k
        if cur is None:
            st.cur_k = k
        elif k > cur:
            st.periods.append((st.cur_b, st.cur_s))
            # Empty periods in between are zero-arrival observations; more than the deque
            # holds would only be pushed out again.
            for _ in range(min(k - cur - 1, st.periods.maxlen or 0)):
                st.periods.append((0, 0))
            st.cur_k, st.cur_b, st.cur_s = k, 0, 0
        elif k < cur:
            st.out_of_order += 1   # its own period is closed: count it in the open one
        if trade.buyer_is_maker:
            st.cur_s += 1
        else:
            st.cur_b += 1

    # -- scheduling ----------------------------------------------------------------------
    async def run(self) -> None:
        """The runner's task: a cycle every `poll_s` (wall) seconds. Ends only with a bug
        raised while applying a result (or when cancelled, which cancels the jobs)."""
        try:
            while True:
                self._raise_bug()
                self.cycle()
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), self.poll_s)
                except TimeoutError:
                    pass
        finally:
            for st in self._sym.values():
                for t in st.in_flight.values():
                    t.cancel()

    def cycle(self) -> int:
        """Submit every job that is due and not already in flight; returns how many were
        submitted. Never waits: the jobs run as tasks and apply their results when done."""
        self._raise_bug()
        self.stats["cycles"] += 1
        now = self.clock()
        n = 0
        for sym, st in self._sym.items():
            if now >= st.next_due[PIN_JOB]:
                n += self._maybe_pin(sym, st, now)
            if self.features is not None and now >= st.next_due[GARCH_JOB]:
                n += self._maybe_garch(sym, st, now)
        return n

    def _busy(self, st: _Symbol, job: str) -> bool:
        if job in st.in_flight:
            st.jobs[job].skipped_busy += 1
            return True
        return False

    def _maybe_pin(self, sym: str, st: _Symbol, now: int) -> int:
        if self._busy(st, PIN_JOB) or len(st.periods) < self.cfg.pin_periods:
            return 0
        buys = [b for b, _ in st.periods]
        sells = [s for _, s in st.periods]
        st.next_due[PIN_JOB] = now + int(self.cfg.pin_every_s * _NS)
        self._submit(sym, st, PIN_JOB, {"buys": buys, "sells": sells},
                     lambda r: self._apply_pin(sym, st, r, now, len(buys)))
        return 1

    def _maybe_garch(self, sym: str, st: _Symbol, now: int) -> int:
        if self._busy(st, GARCH_JOB):
            return 0
        upto, rets = self.features.garch_window(sym)
        if upto == st.garch_upto or len(rets) < GARCH_MIN_RETURNS:
            return 0   # nothing new to fit on (a quiet market, or still warming up)
        st.garch_upto = upto
        st.next_due[GARCH_JOB] = now + int(self.cfg.garch_every_s * _NS)
        self._submit(sym, st, GARCH_JOB, {"returns": rets},
                     lambda r: self._apply_garch(sym, st, r, upto))
        return 1

    def _submit(self, sym: str, st: _Symbol, job: str, payload: dict[str, Any],
                apply: Callable[[JobResult], None]) -> None:
        st.jobs[job].submitted += 1

        async def one() -> None:
            res = await self.heavy.submit(job, payload, self.cfg.deadline_s)
            apply(res)

        task = asyncio.get_running_loop().create_task(one(), name=f"analytics {job} {sym}")
        st.in_flight[job] = task
        task.add_done_callback(lambda t: self._done(st, job, t))

    def _done(self, st: _Symbol, job: str, task: asyncio.Task) -> None:
        if st.in_flight.get(job) is task:
            del st.in_flight[job]
        if not task.cancelled() and task.exception() is not None and self._bug is None:
            self._bug = task.exception()   # re-raised by run()/cycle(): a bug, not a result
        self._wake.set()

    def _raise_bug(self) -> None:
        if self._bug is not None:
            raise self._bug

    async def wait_idle(self) -> None:
        """Wait until no job is in flight (tests, and an orderly stop); re-raises a bug."""
        while True:
            tasks = [t for st in self._sym.values() for t in st.in_flight.values()]
            if not tasks:
                break
            await asyncio.wait(tasks)
        self._raise_bug()

    # -- results (on the loop) -------------------------------------------------------------
    def _failed(self, sym: str, st: _Symbol, job: str, why: str, late: bool = False) -> None:
        c = st.jobs[job]
        c.failed += 1
        c.late += late
        st.last_problem = f"{job}: {why}"
        log.warning("analytics %s for %s: %s (nothing applied)", job, sym, why)

    @staticmethod
    def _estimate(res: JobResult) -> tuple[Any, str | None]:
        """(value, None) or (None, why) from a JobResult holding an `Outcome`."""
        if not res.ok:
            return None, res.reason or "failed"
        out = res.value
        if out.value is None:
            return None, f"no estimate: {out.reason}"
        return out.value, None

    def _apply_pin(self, sym: str, st: _Symbol, res: JobResult, asof_ns: int, n: int) -> None:
        est, why = self._estimate(res)
        if est is None:
            self._failed(sym, st, PIN_JOB, why or "", late=_is_late(res))
            return
        st.jobs[PIN_JOB].ok += 1
        st.pin = {"alpha": est.alpha, "delta": est.delta, "pin": est.pin, "mu": est.mu,
                  "eps_b": est.eps_b, "eps_s": est.eps_s, "n_periods": est.n_periods,
                  "ts_ns": asof_ns, "fit_s": round(res.elapsed_s, 3)}
        st.floor_key = None   # recompute the floor with the new PIN
        log.info("PIN %s: %.4f (alpha %.3f, delta %.3f, %d periods)", sym, est.pin,
                 est.alpha, est.delta, n)

    def _apply_garch(self, sym: str, st: _Symbol, res: JobResult, upto: int) -> None:
        fit, why = self._estimate(res)
        if fit is None:
            self._failed(sym, st, GARCH_JOB, why or "", late=_is_late(res))
            return
        ts = self.clock()
        try:
            rolled = self.features.set_garch_fit(sym, fit, upto=upto, ts_ns=ts)
        except ValueError as e:   # documented refusal: unusable parameters or a stale window
            self._failed(sym, st, GARCH_JOB, f"not applied: {e}")
            return
        st.jobs[GARCH_JOB].ok += 1
        st.garch = {"omega": fit.omega, "alpha": fit.alpha, "beta": fit.beta, "mu": fit.mu,
                    "persistence": fit.persistence, "n_obs": fit.n_obs,
                    "converged": fit.converged, "upto": upto, "rolled": rolled, "ts_ns": ts,
                    "fit_s": round(res.elapsed_s, 3)}
        st.floor_key = None

    # -- reading ---------------------------------------------------------------------------
    def pin(self, symbol: str) -> dict[str, Any] | None:
        """The latest PIN estimate of `symbol` (see `status`), or None."""
        st = self._sym.get(symbol)
        return None if st is None or st.pin is None else dict(st.pin)

    def periods(self, symbol: str) -> list[tuple[int, int]]:
        """The closed PIN periods of `symbol` as (buys, sells), oldest first."""
        return list(self._sym[symbol].periods)

    def floor_bps(self, symbol: str) -> float | None:
        """The Glosten–Milgrom spread floor in bps of the mid (full spread), or None when
        there is no PIN yet, no volatility feature is ready or the symbol is unknown.
        Cached until the PIN or the volatility value changes (the quoter calls it often)."""
        st = self._sym.get(symbol)
        if st is None or st.pin is None or self.features is None or st.last_px is None:
            return None
        bar_s = float(self.features.cfg.bar_interval_s)
        if not bar_s > 0:
            return None   # bars fed by the daemon at an unknown interval: no per-second vol
        vol = name = None
        for name in VOL_FEATURES:
            fv = self.features.get(symbol, name)
            if fv.ready:
                vol = fv.value
                break
        if vol is None:
            return None
        key = (st.pin["ts_ns"], name, vol)
        if key == st.floor_key:
            return st.floor
        sigma = vol / math.sqrt(bar_s)
        out = gm_spread(st.pin["pin"], sigma, self.cfg.gm_horizon_s,
                        Decimal(repr(st.last_px)))
        st.floor_key, st.floor_vol = key, name
        st.floor = float(out.value.spread_bps) if out.value is not None else None
        if out.value is None:
            st.last_problem = f"gm_spread: {out.reason}"
        return st.floor

    def status(self) -> dict[str, Any]:
        """JSON-able: per symbol the latest PIN, the GM floor, the latest GARCH fit, job
        counts (submitted, ok, failed, late = missed the deadline, skipped_busy), jobs in
        flight and the last problem; plus the heavy interface's own counters."""
        out: dict[str, Any] = {}
        for sym, st in self._sym.items():
            out[sym] = {
                "pin": dict(st.pin) if st.pin else None,
                "floor_bps": self.floor_bps(sym),
                "floor_vol": st.floor_vol if st.floor is not None else None,
                "garch": dict(st.garch) if st.garch else None,
                "jobs": {j: c.as_dict() for j, c in st.jobs.items()},
                "in_flight": sorted(st.in_flight),
                "pin_periods": len(st.periods),
                "out_of_order_trades": st.out_of_order,
                "last_problem": st.last_problem,
            }
        stats = getattr(self.heavy, "stats", None)
        return {"symbols": out, "stats": dict(self.stats),
                "heavy": dict(stats) if isinstance(stats, dict) else None}


def _is_late(res: JobResult) -> bool:
    return not res.ok and (res.reason or "").startswith("deadline")
