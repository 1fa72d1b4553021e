"""The breaker board: one `CircuitBreaker` per venue plus one global, and the detectors
that trip them.

The gateway asks `allow()` before an order leaves and reports its outcomes (`on_ack`,
`on_reject`, `on_error`, `on_fill`); the market feed reports tops of book and trades
(`on_book`, `book_state`, `on_trade`); the supervisor calls `tick()` for the time-based
transitions, `trip()`/`reset()` for operator and risk trips, and journals every
`BreakerChange` it is given. An escalation (`escalation`, `BreakerChange.escalated`) means
a venue kept failing its probes: the daemon halts on it.

Cascade (`cascade = true`): a venue's trip also opens the global breaker, `held` by that
venue: orders to every other venue are refused, the venue itself goes through its own
half-open probing, and the global breaker closes when the venue closes (unless it was also
tripped on its own). With `cascade = false` a venue's trip only stops that venue.

Venue/outcome detectors (error rate, reject storm, consecutive errors, latency, stale
book) and market detectors (toxic flow, spread, volume) trip the venue's breaker. When a
breaker goes half-open or is reset, its venue's outcome counters start afresh (the old
failures already opened it once); market statistics keep their history.

Pure state: no clock (every time is the `now_ns` passed in), no I/O, nothing sent.
`snapshot()`/`restore()` carry open breakers across a restart (the caller stores them).
"""
from __future__ import annotations

import logging
from decimal import Decimal
from typing import Any, Callable

from daemon.config import BreakersCfg
from daemon.safety.breakers.breaker import (BreakerChange, BState, CircuitBreaker, Kind,
                                            Policy)
from daemon.safety.breakers.detectors import (ConsecutiveErrors, ErrorRate, LatencySpike,
                                              RejectStorm, SpreadBlowout, StaleBook,
                                              ToxicFlow, Trip, VolumeAnomaly)
from daemon.safety.breakers.market_watch import MarketWatch

log = logging.getLogger(__name__)

GLOBAL = "global"
SNAPSHOT_VERSION = 1
S = 1_000_000_000


def _ns(seconds: float) -> int:
    return round(seconds * S)


class _Outcomes:
    """A venue's order-outcome detectors."""

    def __init__(self, cfg: BreakersCfg) -> None:
        self.error_rate = ErrorRate(window_ns=_ns(cfg.error_window_s),
                                    min_orders=cfg.error_min_orders,
                                    rate_max=cfg.error_rate_max, floor=cfg.error_rate_floor,
                                    ceiling=cfg.error_rate_ceiling,
                                    confidence=cfg.error_confidence)
        self.storm = RejectStorm(cfg.max_rejects_per_min)
        self.consecutive = ConsecutiveErrors(cfg.max_consecutive_errors)
        self.latency = LatencySpike(factor=cfg.latency_factor,
                                    floor_ns=_ns(cfg.latency_floor_ms / 1000),
                                    window=cfg.latency_window, warmup=cfg.latency_warmup,
                                    spikes=cfg.latency_spikes)
        self.stale = StaleBook(_ns(cfg.book_invalid_s))

    def clear(self) -> None:
        """Counts start afresh (half-open, reset); the latency median keeps its history."""
        self.error_rate.clear()
        self.storm.clear()
        self.consecutive.clear()
        self.latency.run = 0
        self.stale.clear()

    def probe_timeout_ns(self, floor_ns: int) -> int:
        th = self.latency.threshold_ns()
        return floor_ns if th is None else int(th)


class _Symbol:
    """A symbol's market figures and detectors."""

    def __init__(self, cfg: BreakersCfg) -> None:
        warm = _ns(cfg.market_warmup_s)
        self.watch = MarketWatch(spread_window_ns=_ns(cfg.spread_window_s),
                                 ofi_window_ns=_ns(cfg.ofi_window_s),
                                 volume_interval_ns=_ns(cfg.volume_interval_s),
                                 volume_window=cfg.volume_window)
        self.toxic = ToxicFlow(max_abs=cfg.ofi_max, hold_ns=_ns(cfg.ofi_hold_s),
                               warmup_ns=warm, window_ns=_ns(cfg.ofi_window_s))
        self.spread = SpreadBlowout(factor=cfg.spread_factor, floor_bps=cfg.spread_floor_bps,
                                    hold_ns=_ns(cfg.spread_hold_s), warmup_ns=warm)
        self.volume = VolumeAnomaly(z_max=cfg.volume_z_max, warmup=cfg.volume_warmup,
                                    interval_ns=_ns(cfg.volume_interval_s))


class BreakerBoard:
    def __init__(self, cfg: BreakersCfg, venues: list[str],
                 on_change: Callable[[BreakerChange], None] | None = None) -> None:
        if not venues or len(set(venues)) != len(venues) or GLOBAL in venues:
            raise ValueError(f"venues must be distinct names other than {GLOBAL!r}, "
                             f"got {venues!r}")
        self.cfg = cfg
        self.on_change = on_change
        self.policy = Policy(cooldown_ns=_ns(cfg.cooldown_s),
                             cooldown_max_ns=_ns(cfg.cooldown_max_s),
                             growth=cfg.cooldown_growth, probe_orders=cfg.probe_orders,
                             probe_max_notional=cfg.probe_max_notional,
                             probe_window_ns=_ns(cfg.probe_window_s),
                             max_reopens=cfg.max_reopens)
        self.breakers: dict[str, CircuitBreaker] = {
            name: CircuitBreaker(name, self.policy, self._changed)
            for name in [GLOBAL, *venues]}
        self.venues = list(venues)
        self.outcomes = {v: _Outcomes(cfg) for v in venues}
        self.symbols: dict[tuple[str, str], _Symbol] = {}
        self.holds: dict[str, str] = {}     # venue -> reason it holds the global breaker open
        self.changes = 0
        # The probe-timeout floor (the config is frozen: worked out once, not per tick).
        self._floor_ns = _ns(cfg.latency_floor_ms / 1000)

    # -- reading ---------------------------------------------------------------------------
    @property
    def tripped(self) -> str | None:
        """The reason of the global breaker, else of the first venue breaker, that is open
        (half-open is not: probes may pass). For the gateway's refusal text."""
        for b in self.breakers.values():
            if b.state is BState.OPEN:
                return f"{b.name}: {b.reason}"
        return None

    @property
    def escalation(self) -> str | None:
        """Why the daemon must halt: a breaker that escalated, else None."""
        for b in self.breakers.values():
            if b.escalated:
                return f"{b.name}: {b.reason}"
        return None

    def status(self) -> list[dict[str, Any]]:
        out = []
        for b in self.breakers.values():
            out.append({"name": b.name, "state": b.state.value, "kind": b.kind.value,
                        "reason": b.reason, "since_ns": b.since_ns, "figures": dict(b.figures),
                        "probes_used": b.probes_used, "probes_ok": b.probes_ok,
                        "probe_budget": self.policy.probe_orders,
                        "cooldown_s": b.cooldown_ns / S, "half_open_at_ns": b.half_open_at_ns,
                        "reopens": b.reopens, "escalated": b.escalated,
                        "held_by": sorted(self.holds) if b.name == GLOBAL else []})
        return out

    def market_ignored(self) -> dict[str, int]:
        """Degenerate market values ignored, by symbol@venue and kind."""
        return {f"{s}@{v}:{k}": n for (v, s), sym in self.symbols.items()
                for k, n in sym.watch.ignored.items()}

    # -- transitions -----------------------------------------------------------------------
    def _changed(self, change: BreakerChange) -> None:
        self.changes += 1
        name = change.name
        if name != GLOBAL:
            self.outcomes[name].clear()
        (log.warning if change.new == BState.OPEN.value else log.info)(
            "breaker %s: %s -> %s: %s", name, change.old, change.new, change.reason)
        if self.on_change is not None:
            self.on_change(change)
        if name == GLOBAL:
            return
        g = self.breakers[GLOBAL]
        if change.new == BState.OPEN.value and self.cfg.cascade:
            self.holds[name] = change.reason
            g.trip(f"cascade from {name}: {change.reason}", change.ts_ns,
                   figures={**change.figures, "venue": name}, kind=Kind.HELD)
        elif change.new == BState.CLOSED.value and self.holds.pop(name, None) is not None \
                and not self.holds:
            g.release(f"{name} closed: {change.reason}", change.ts_ns)

    def _venue(self, venue: str) -> CircuitBreaker:
        b = self.breakers.get(venue)
        if b is None or venue == GLOBAL:
            raise KeyError(f"unknown venue {venue!r} (breakers: {', '.join(self.venues)})")
        return b

    def _detected(self, venue: str, trip: Trip | None, now_ns: int) -> None:
        if trip is None:
            return
        b = self._venue(venue)
        if b.state is not BState.OPEN:   # closed: opens; half-open: the probe round fails
            b.trip(trip.reason, now_ns, figures=trip.figures)

    def _failed(self, venue: str, reason: str, now_ns: int) -> None:
        """A failure of an order or call on `venue`: a half-open breaker's round fails."""
        for b in (self.breakers[venue], self.breakers[GLOBAL]):
            if b.state is BState.HALF_OPEN:
                b.probe_failed(f"{venue}: {reason}", now_ns)

    def trip(self, name: str, reason: str, now_ns: int, *, manual: bool = True,
             figures: dict[str, str] | None = None) -> bool:
        """Open a breaker by hand (operator, risk limit). `manual` trips stay open until
        `reset`; `manual=False` recovers by itself like a detector's trip."""
        b = self.breakers.get(name)
        if b is None:
            raise KeyError(f"unknown breaker {name!r} (breakers: "
                           f"{', '.join(self.breakers)})")
        return b.trip(reason, now_ns, figures=figures,
                      kind=Kind.MANUAL if manual else Kind.AUTO)

    def reset(self, name: str, now_ns: int, *, by: str = "operator") -> bool:
        """Close a breaker (and clear its escalation). Resetting the global breaker while a
        cascade holds it reopens it as held: reset the venue first."""
        b = self.breakers.get(name)
        if b is None:
            raise KeyError(f"unknown breaker {name!r} (breakers: "
                           f"{', '.join(self.breakers)})")
        done = b.reset(now_ns, by)
        if name == GLOBAL and self.holds:
            venue, why = next(iter(self.holds.items()))
            b.trip(f"cascade from {venue}: {why}", now_ns, kind=Kind.HELD)
        return done

    def tick(self, now_ns: int) -> None:
        """Time-based rules: stale books, volume intervals, probe timeouts, cooldowns and
        probe windows."""
        # Every 100 ms of event time, nearly always with nothing to do: each step below
        # is skipped when it could not change anything (no invalid book to age, no probe
        # out, no volume interval ended, a closed breaker has no time-based rule).
        floor_ns = self._floor_ns
        half = BState.HALF_OPEN
        for venue, out in self.outcomes.items():
            if out.stale.invalid:   # (check() of no invalid book finds nothing)
                self._detected(venue, out.stale.check(now_ns), now_ns)
            b = self.breakers[venue]
            # The latency threshold (a median of the recent acks) only matters to a probe
            # that is out: not worked out on every tick for a breaker that has none.
            if b.state is half and b.oldest_probe_ns() is not None:
                self._probe_timeout(b, out.probe_timeout_ns(floor_ns), now_ns)
        g = self.breakers[GLOBAL]
        if g.state is half:
            self._probe_timeout(g, floor_ns, now_ns)
        for (venue, symbol), sym in self.symbols.items():
            w = sym.watch
            if now_ns >= w.due_ns:   # (before it, tick() closes nothing)
                for v in w.tick(now_ns):
                    self._detected(venue, sym.volume.observe(v, symbol), now_ns)
        for b in self.breakers.values():
            if b.state is not BState.CLOSED:   # (a closed breaker's tick does nothing)
                b.tick(now_ns)

    @staticmethod
    def _probe_timeout(b: CircuitBreaker, limit_ns: int, now_ns: int) -> None:
        """A probe with no ack or fill within the latency threshold (the floor while the
        latency detector warms up) has failed."""
        sent = b.oldest_probe_ns()
        if b.state is BState.HALF_OPEN and sent is not None and now_ns - sent > limit_ns:
            b.probe_failed(f"probe not acknowledged within {limit_ns / 1e6:.0f} ms", now_ns,
                           {"waited_ms": f"{(now_ns - sent) / 1e6:.0f}"})

    # -- orders ----------------------------------------------------------------------------
    def allow(self, venue: str, notional: Decimal, reduce_only: bool, now_ns: int,
              client_id: str | None = None) -> str | None:
        """None if the order may go, else why not. Call it last, right before the order is
        sent: a half-open breaker counts an allowed order as a probe. Orders that only
        reduce exposure always pass."""
        if reduce_only:
            return None
        v = self._venue(venue)
        g = self.breakers[GLOBAL]
        if g.state is BState.OPEN and g.kind is Kind.HELD and set(self.holds) <= {venue}:
            checks = [v]         # held open by this venue alone: the venue's probes decide
        else:
            checks = [g, v]
        for b in checks:
            why = b.refusal(notional)
            if why is not None:
                return why
        # Both may be probing: then the order is a probe of each (counted in both budgets,
        # and only once both said yes).
        for b in checks:
            b.count_probe(now_ns, client_id)
        return None

    def on_ack(self, venue: str, client_id: str, latency_ns: int, now_ns: int) -> None:
        out = self.outcomes[self._venue(venue).name]
        spike = out.latency.is_spike(latency_ns)
        trip = out.latency.ack(latency_ns)
        if spike and trip is None:
            self._failed(venue, f"ack of {client_id} took {latency_ns / 1e6:.1f} ms (a "
                                f"latency spike)", now_ns)
            return
        if trip is not None:
            self._detected(venue, trip, now_ns)
            return
        out.consecutive.success()
        out.error_rate.record(False, now_ns)     # a success never trips
        self._ok(venue, client_id, now_ns)

    def on_fill(self, venue: str, client_id: str, now_ns: int) -> None:
        """A fill: the order reached the venue. Counts as a probe's success (an order that
        fills at once may never be acked); not an outcome for the error rate."""
        self.outcomes[self._venue(venue).name].consecutive.success()
        self._ok(venue, client_id, now_ns)

    def _ok(self, venue: str, client_id: str, now_ns: int) -> None:
        for b in (self.breakers[venue], self.breakers[GLOBAL]):
            b.probe_ok(now_ns, client_id)

    def on_reject(self, venue: str, client_id: str, reason: str, now_ns: int, *,
                  pre_trade: bool = False) -> None:
        """The venue refused an order; or (`pre_trade`) the gateway's own checks did: that
        counts for the error rate and the reject storm like a venue's reject, but is no
        failed probe (nothing reached the venue)."""
        out = self.outcomes[self._venue(venue).name]
        if not pre_trade:
            self._failed(venue, f"{client_id} rejected: {reason}", now_ns)
        self._detected(venue, out.error_rate.record(True, now_ns), now_ns)
        self._detected(venue, out.storm.record(now_ns), now_ns)

    def on_error(self, venue: str, reason: str, now_ns: int) -> None:
        """A call to the venue (submit, cancel, query) raised."""
        out = self.outcomes[self._venue(venue).name]
        self._failed(venue, f"error: {reason}", now_ns)
        self._detected(venue, out.consecutive.error(reason), now_ns)
        self._detected(venue, out.error_rate.record(True, now_ns), now_ns)
        self._detected(venue, out.storm.record(now_ns), now_ns)

    # -- market ----------------------------------------------------------------------------
    def _symbol(self, venue: str, symbol: str) -> _Symbol:
        """A (venue, symbol) pair seen for the first time: its venue is checked (raises
        for an unknown one) and it is added. Callers look a known pair up themselves
        (every book and trade): its venue was checked when it was added, and venues never
        change."""
        sym = self.symbols[(self._venue(venue).name, symbol)] = _Symbol(self.cfg)
        return sym

    def book_state(self, symbol: str, venue: str, valid: bool, now_ns: int) -> None:
        """Whether a traded symbol's book is valid (the stale-book rule; checked on tick)."""
        out = self.outcomes.get(venue)   # (every tick: a known venue needs no check)
        if out is None:
            out = self.outcomes[self._venue(venue).name]   # raises: unknown venue
        out.stale.state(symbol, valid, now_ns)

    def on_book(self, symbol: str, venue: str, bid: float, bid_qty: float, ask: float,
                ask_qty: float, now_ns: int) -> None:
        """The top of a valid book after an update."""
        sym = self.symbols.get((venue, symbol)) or self._symbol(venue, symbol)
        f = sym.watch.on_book(bid, bid_qty, ask, ask_qty, now_ns)
        if f is None:
            return
        trip = sym.toxic.observe(f, symbol)
        if trip is not None:
            self._detected(venue, trip, now_ns)
        trip = sym.spread.observe(f, symbol)
        if trip is not None:
            self._detected(venue, trip, now_ns)

    def on_trade(self, symbol: str, venue: str, price: float, qty: float, now_ns: int) -> None:
        sym = self.symbols.get((venue, symbol)) or self._symbol(venue, symbol)
        closed = sym.watch.on_trade(price, qty, now_ns)
        if closed:   # (most trades close no volume interval)
            for v in closed:
                self._detected(venue, sym.volume.observe(v, symbol), now_ns)

    # -- restart ---------------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        """Open breakers, for the journal (JSON-able)."""
        return {"version": SNAPSHOT_VERSION, "breakers": {
            b.name: {"state": b.state.value, "kind": b.kind.value, "reason": b.reason,
                     "figures": dict(b.figures), "since_ns": b.since_ns,
                     "cooldown_ns": b.cooldown_ns, "reopens": b.reopens,
                     "escalated": b.escalated}
            for b in self.breakers.values() if b.state is not BState.CLOSED}}

    def restore(self, snap: dict[str, Any], now_ns: int) -> list[str]:
        """Open again what `snapshot` saw open, with the same reason and figures (the
        change is told to `on_change` at `now_ns`). Manual and escalated trips stay manual
        and keep their since-time; an automatic trip (or a half-open round) starts a fresh
        cooldown at `now_ns` (its cooldown growth and reopen count kept); venue-held global
        trips follow their venue. Breakers the board does not have are skipped and named in
        the result."""
        if not isinstance(snap, dict) or snap.get("version") != SNAPSHOT_VERSION:
            raise ValueError(f"not a breaker snapshot of version {SNAPSHOT_VERSION}")
        skipped = []
        for name, e in snap["breakers"].items():
            b = self.breakers.get(name)
            if b is None:
                skipped.append(name)
                log.warning("breaker snapshot names %r, which this board does not have", name)
                continue
            kind = Kind(e["kind"])
            if kind is Kind.HELD:
                continue   # re-created by its venue's restore (or gone with it)
            b.cooldown_ns = min(int(e["cooldown_ns"]), self.policy.cooldown_max_ns)
            b.reopens = int(e["reopens"])
            b.escalated = bool(e["escalated"])
            # The reason stays as it was: the operator (and the risk engine's reset, which
            # recognises its own trips by their reason) sees the same breaker as before.
            b.trip(str(e["reason"]), now_ns,
                   figures={str(k): str(v) for k, v in e["figures"].items()}, kind=kind)
            if kind is Kind.MANUAL:
                b.since_ns = int(e["since_ns"])   # open since then; only a reset closes it
        return skipped
