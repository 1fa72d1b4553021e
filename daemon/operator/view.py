"""The operator's view of a running bot4d: what the supervisor tells it (state changes,
e-stop edges), what it samples once per half second (event-loop lag, market-data age,
equity and prices for the charts, feed up/down), and the three outlets: alerts (apprise
worker), the status page with its live updates and /metrics (aiohttp, only when
`[web] enabled`).

The supervisor calls `on_state()` and `on_event()` from its trip paths: they append to a
deque and schedule the real work with `call_soon`, so a trip pays a few hundred
nanoseconds and its cancels are never behind an alert, a log line or a page update.

What it must never do: change the daemon's state other than through
`Supervisor.handle_command({"cmd": "halt", ...})` (the page's only action), block the event
loop (network I/O for alerts is on the worker thread; the page's I/O is asyncio), raise
into the supervisor, or import the supervisor (it is handed the object).
"""
from __future__ import annotations

import asyncio
import bisect
import logging
import time
from collections import deque
from decimal import Decimal
from typing import Any

from daemon import logsetup
from daemon.config import Config
from daemon.execution.orders import INVERSE
from daemon.operator import credentials
from daemon.operator.alerts import AlertSender
from daemon.states import State

log = logging.getLogger("bot4d.operator")

SAMPLE_S = 0.5                 # sampler period: loop lag, market age, feed state
LAG_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
_STOPS = (State.HALTED, State.ESTOP, State.FAULT)


def classify(old: State, new: State, reason: str) -> tuple[str, str] | None:
    """The alert kind and title of a state change, or None when it is not alert-worthy."""
    low = reason.lower()
    # Loss limits (daemon/protection.py words them "risk limit daily_loss: ...", also
    # drawdown and losing_streak; the old breaker said "loss ... beyond max_loss").
    loss = any(w in low for w in ("loss", "drawdown", "losing")) and (
        "limit" in low or "breaker" in low)
    if new is State.ESTOP:
        return "estop", "E-STOP latched"
    if old is State.ESTOP and new is State.READY:
        return "estop_reset", "e-stop reset"
    if new is State.FAULT:
        return "fault", "FAULT"
    if new is State.HALTED:
        if loss:
            return "loss_limit", "loss limit: halted"
        if low.startswith("breaker"):
            return "breaker", "breaker tripped: halted"
        return "halt", "halted"
    if new is State.REDUCING and loss:
        return "loss_limit", "loss limit: reducing only"
    return None


def pnl_of(positions: dict[str, Any], mark: Any) -> tuple[Decimal, dict[str, dict]]:
    """Total PnL and each position's figures in quote currency at its trusted `mark(sym)`.
    An inverse (COIN-M) position's PnL and fees are coin: converted at its mark, and with
    no mark its figures are None and it is left out of the total (a coin amount added to
    dollars is neither). A linear one without a mark counts realised - fees."""
    total, per = Decimal(0), {}
    for sym, p in positions.items():
        m = mark(sym)
        if p.kind == INVERSE:
            f = {"realized": None, "fees": None, "unrealized": None} if m is None else {
                "realized": p.realized_pnl * m, "fees": p.fees * m,
                "unrealized": p.unrealized(m) * m}
        else:
            f = {"realized": p.realized_pnl, "fees": p.fees,
                 "unrealized": Decimal(0) if m is None else p.unrealized(m)}
        per[sym] = {"qty": p.qty, **f, "mark": m, "avg_price": p.avg_price}
        if f["realized"] is not None:
            total += f["realized"] - f["fees"] + f["unrealized"]
    return total, per


def breaker_states(sup: Any) -> dict[str, str]:
    """Each circuit breaker's state (closed, open, half_open) by name, from the breaker
    board (sup.protection.board)."""
    board = getattr(getattr(sup, "protection", None), "board", None)
    if board is not None and hasattr(board, "status"):
        return {str(b.get("name")): str(b.get("state")) for b in board.status()}
    return {}


class Histogram:
    """Cumulative-bucket histogram in plain Python (exported by metrics.py)."""

    def __init__(self, buckets: tuple[float, ...]) -> None:
        self.buckets = buckets
        self.counts = [0] * (len(buckets) + 1)
        self.sum = 0.0
        self.count = 0
        self.last = 0.0
        self.max = 0.0

    def observe(self, v: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, v)] += 1
        self.sum += v
        self.count += 1
        self.last = v
        self.max = max(self.max, v)

    def cumulative(self) -> list[tuple[str, int]]:
        out, acc = [], 0
        for b, c in zip((*(str(b) for b in self.buckets), "+Inf"), self.counts):
            acc += c
            out.append((b, acc))
        return out


def _f(v: Any) -> float | None:
    try:
        return None if v is None else float(v)
    except (TypeError, ValueError, ArithmeticError):
        return None


class Operator:
    """Built at boot (reads the credentials: a missing one raises ConfigError); `start()`
    and `close()` are the supervisor's guarded steps."""

    def __init__(self, sup: Any, environ: dict[str, str] | None = None) -> None:
        self.sup = sup
        cfg: Config = sup.cfg
        # journald: every log record carries BOT4_STATE (daemon/logsetup.py)
        logsetup.set_state_source(lambda: sup.state.value)
        self.cfg = cfg
        self.token = credentials.web_token(cfg.web, environ)
        self.alerts = AlertSender(cfg.alerts, credentials.alert_urls(cfg.alerts, environ))
        self.web: Any = None
        if cfg.web.enabled:
            from daemon.operator.web import WebServer   # aiohttp.web, prometheus_client
            self.web = WebServer(self, cfg.web, self.token)   # TLS files: ConfigError
        self.started = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._inbox: deque[tuple] = deque()
        self._scheduled = False
        self._sampler: asyncio.Task | None = None
        self._waiters: set[asyncio.Future] = set()
        self.generation = 0
        # counters exported by metrics.py
        self.transitions: dict[str, int] = {}
        self.estop_edges = {"open": 0, "close": 0}
        self.breaker_trips: dict[str, int] = {}
        self._breaker_seen: dict[str, str] = {}
        self.orders_closed: dict[str, int] = {}
        self._closed_ids: set[str] = set()
        self._closed_order: deque[str] = deque()
        self.loop_lag = Histogram(LAG_BUCKETS)
        self.market_seen: dict[str, tuple[object, float]] = {}   # symbol -> (update id, when)
        self.market_events_seen: tuple[int, float] = (-1, time.monotonic())
        self.fills: deque[dict] = deque(maxlen=50)
        self.events: deque[dict] = deque(maxlen=50)
        self.history: deque[tuple] = deque(maxlen=cfg.web.chart_points)
        self._feed_down: list[str] | None = None
        self._feed_seen_healthy = False
        self._listener_attached = False

    # -- the supervisor's hooks (on the loop, O(1)) ----------------------------------------
    def on_state(self, old: State, new: State, reason: str) -> None:
        self._post(("state", time.time(), old, new, reason))

    def on_event(self, kind: str, detail: str = "") -> None:
        self._post(("event", time.time(), kind, detail))

    def _post(self, item: tuple) -> None:
        try:
            self._inbox.append(item)
            if not self._scheduled and self._loop is not None:
                self._scheduled = True
                self._loop.call_soon(self._drain)
        except Exception:   # noqa: BLE001 - never into a trip path
            log.exception("operator hook failed")

    def _drain(self) -> None:
        self._scheduled = False
        while self._inbox:
            item = self._inbox.popleft()
            try:
                if item[0] == "state":
                    self._state_changed(*item[1:])
                else:
                    self._event(*item[1:])
            except Exception:   # noqa: BLE001 - the view is not the safety chain
                log.exception("operator: handling %s failed", item[0])
        self.notify()

    def _state_changed(self, at: float, old: State, new: State, reason: str) -> None:
        self.transitions[new.value] = self.transitions.get(new.value, 0) + 1
        if new is State.ESTOP:
            self.estop_edges["open"] += 1
        c = classify(old, new, reason)
        self.events.appendleft({"at": at, "old": old.value, "new": new.value,
                                "reason": reason, "alert": c[0] if c else None})
        if c is not None:
            self._alert(c[0], c[1], f"{reason} (state {old.value} -> {new.value})", new)

    def _event(self, at: float, kind: str, detail: str) -> None:
        if kind == "estop_released":
            self.estop_edges["close"] += 1
        self.events.appendleft({"at": at, "event": kind, "reason": detail})
        if kind == "execution_interrupted":   # a flatten the operator relies on stopped
            self._alert("restart", "execution interrupted by a restart", detail)

    def _alert(self, kind: str, title: str, body: str, state: State | None = None) -> None:
        outcome = self.alerts.submit(kind, title, body)
        if outcome == "disabled":
            return
        extra = {"BOT4_EVENT": kind, "BOT4_ALERT": outcome}
        if state is not None:
            extra["BOT4_STATE"] = state.value
        log.info("alert %s (%s): %s", kind, outcome, body, extra=extra)

    # -- gateway listener (inside the gateway's settle: counters only) --------------------
    def _on_order(self, order: Any, fill: Any) -> None:
        try:
            if fill is not None:
                # One line per fill, with journald fields (BOT4_ORDER_ID, BOT4_SYMBOL...).
                log.info("fill %s %s %s %s @ %s (fee %s)", order.client_id, fill.symbol,
                         fill.side.value, fill.qty, fill.price, fill.fee,
                         extra=logsetup.fields(order_id=order.client_id, symbol=fill.symbol,
                                               event="fill"))
                self.fills.appendleft({
                    "at": time.time(), "symbol": fill.symbol, "side": str(fill.side.value),
                    "price": str(fill.price), "qty": str(fill.qty),
                    "fee": str(getattr(fill, "fee", "")), "order": order.client_id})
            # The gateway settles an order once per report; count its end only once.
            if order.status.is_terminal and order.client_id not in self._closed_ids:
                self._closed_ids.add(order.client_id)
                self._closed_order.append(order.client_id)
                if len(self._closed_order) > 4096:
                    self._closed_ids.discard(self._closed_order.popleft())
                k = str(order.status.value).lower()
                self.orders_closed[k] = self.orders_closed.get(k, 0) + 1
        except Exception:   # noqa: BLE001 - never into the gateway
            log.exception("operator: order listener failed")

    # -- live updates for the page --------------------------------------------------------
    def notify(self) -> None:
        self.generation += 1
        waiters, self._waiters = self._waiters, set()
        for w in waiters:
            if not w.done():
                w.set_result(None)

    async def changed(self, timeout: float) -> bool:
        """Wait for the next change (a state change or a sample); False on timeout."""
        fut = asyncio.get_running_loop().create_future()
        self._waiters.add(fut)
        try:
            await asyncio.wait_for(fut, timeout)
            return True
        except asyncio.TimeoutError:
            return False
        finally:
            self._waiters.discard(fut)

    # -- start / stop ---------------------------------------------------------------------
    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        gw = getattr(self.sup, "gateway", None)
        if gw is not None and not self._listener_attached:
            gw.listeners.append(self._on_order)
            self._listener_attached = True
        self.alerts.start()
        if self.web is not None or self.alerts.enabled:
            # Off by default: with neither page nor alerts nothing here runs on the loop
            # but the hooks' counters.
            self._sampler = asyncio.create_task(self._sample(), name="operator-sampler")
        if self.web is not None:
            await self.web.start()
        self.started = True
        if self._inbox:
            self._loop.call_soon(self._drain)

    async def close(self) -> None:
        if self._sampler is not None:
            self._sampler.cancel()
            await asyncio.gather(self._sampler, return_exceptions=True)
        if self.web is not None:
            await self.web.close()
        self._drain()
        # The worker gets a moment for what is queued (a halt right before the stop).
        await asyncio.to_thread(self.alerts.stop, 3.0)

    # -- sampling -------------------------------------------------------------------------
    async def _sample(self) -> None:
        loop = asyncio.get_running_loop()
        n = 0
        while True:
            t0 = loop.time()
            await asyncio.sleep(SAMPLE_S)
            self.loop_lag.observe(max(0.0, loop.time() - t0 - SAMPLE_S))
            try:
                self._sample_market()
                self._sample_breakers()
                n += 1
                if n % 2 == 0:
                    self._sample_chart()
            except Exception:   # noqa: BLE001 - a sampling bug must not end the view
                log.exception("operator: sampling failed")
            self.notify()

    def _sample_breakers(self) -> None:
        """Count each breaker's moves into `open` (seen at the sampler's 0.5 s resolution;
        a breaker that opens and closes between two samples is not counted) and alert."""
        for name, state in breaker_states(self.sup).items():
            before = self._breaker_seen.get(name)
            self._breaker_seen[name] = state
            if state == "open" and before != "open":
                self.breaker_trips[name] = self.breaker_trips.get(name, 0) + 1
                if before is not None:
                    self._alert("breaker", f"breaker {name} open", f"breaker {name}: "
                                f"{before} -> open")

    def _sample_market(self) -> None:
        m = getattr(self.sup, "market", None)
        if m is None:
            return
        now = time.monotonic()
        for sym, book in m.books.items():
            uid = book.last_update_id
            seen = self.market_seen.get(sym)
            if seen is None or seen[0] != uid:
                self.market_seen[sym] = (uid, now)
        degraded = list(m.degraded())
        if not degraded:
            if self._feed_down is not None:
                self._alert("feed", "market data healthy again",
                            f"was: {'; '.join(self._feed_down)}")
            self._feed_down = None
            self._feed_seen_healthy = True
        elif self._feed_down is None and self._feed_seen_healthy:
            self._feed_down = degraded
            self._alert("feed", "market data degraded", "; ".join(degraded))

    def pnl(self) -> tuple[Decimal, dict[str, dict]]:
        """Total PnL (realised - fees + unrealised at the trusted mark) and per symbol, in
        quote currency (see `pnl_of`)."""
        gw, m = getattr(self.sup, "gateway", None), getattr(self.sup, "market", None)
        if gw is None:
            return Decimal(0), {}
        return pnl_of(gw.positions, m.mark if m is not None else lambda _s: None)

    def _sample_chart(self) -> None:
        m = getattr(self.sup, "market", None)
        total, _ = self.pnl()
        prices = {}
        if m is not None:
            for s in m.symbols:
                mark = m.mark(s)
                if mark is None:
                    b = m.books[s]
                    bb, ba = b.best_bid(), b.best_ask()
                    mark = (bb[0] + ba[0]) / 2 if bb and ba else None
                prices[s] = _f(mark)
        self.history.append((round(time.time(), 3), _f(total), prices))

    # -- what the page and `bot4ctl status` show ------------------------------------------
    def status(self) -> dict:
        """The view's own health, for Supervisor.status()["operator"]."""
        web = self.web
        return {"web": None if web is None else web.status(),
                "alerts": self.alerts.status(),
                "loop_lag_s": {"last": round(self.loop_lag.last, 4),
                               "max": round(self.loop_lag.max, 4)}}

    def limits(self) -> dict:
        """Limits used, from the configuration and the live numbers."""
        gw = getattr(self.sup, "gateway", None)
        r = self.cfg.risk
        total, _ = self.pnl()
        loss_limit = next((getattr(sec, k) for sec, k in (
            (r, "daily_loss_limit"), (r, "max_loss"), (self.cfg.breakers, "max_loss"))
            if getattr(sec, k, None) is not None), None)
        out: dict[str, Any] = {"loss": {"used": str(-total if total < 0 else Decimal(0)),
                                        "limit": None if loss_limit is None
                                        else str(loss_limit)}}
        if getattr(r, "max_open_orders", None) is not None:
            out["open_orders"] = {"used": len(gw.open) if gw else 0,
                                  "limit": r.max_open_orders}
        if gw is not None and getattr(r, "max_position", None) is not None:
            for sym, p in gw.positions.items():
                out[f"position {sym}"] = {"used": str(abs(p.qty)), "limit": str(r.max_position)}
        return out

    def page_payload(self) -> dict:
        """Everything the page shows: the supervisor's status (rendered generically, keys
        may come and go) plus the view's own blocks."""
        try:
            st = self.sup.status()
        except Exception as e:   # noqa: BLE001 - show what we can
            st = {"state": getattr(getattr(self.sup, "state", None), "value", "unknown"),
                  "reason": f"status unavailable: {e!r}"}
        total, per = self.pnl()
        return {"status": st, "generation": self.generation, "now": time.time(),
                "view": {"pnl": {"total": str(total),
                                 "symbols": {s: {k: (None if v is None else str(v))
                                                 for k, v in d.items()}
                                             for s, d in per.items()}},
                         "limits": self.limits(),
                         "breaker_states": breaker_states(self.sup),
                         "fills": list(self.fills)[:20],
                         "events": list(self.events)[:20],
                         "market_age_s": self.market_age()},
                "history_last": self.history[-1] if self.history else None}

    def market_age(self) -> dict[str, float]:
        now = time.monotonic()
        return {s: round(now - t, 2) for s, (_, t) in self.market_seen.items()}
