"""Risk limits and circuit breakers on the event loop: feeds them, keeps their state across
restarts, journals every trip and breaker change, and tells the supervisor what to do.

The gateway asks the risk engine and the breaker board directly before every order (the
pre-trade side). This module is the continuous side: `poll()` runs on the supervisor's
watchdog tick with the engine's clock (event time in a replay, wall time live) and returns
`Action`s — halt, reducing, cancel the orders that increase exposure — which the supervisor
carries out through its guarded steps. It never sends, cancels or changes the trading state
itself, and it never reads a clock of its own.

Durability: a risk trip and a breaker change are journalled (audit `limit_trip` /
`breaker`, with the figures) and the snapshots of the risk engine and the breaker board are
saved (`kv_state`) before `poll()` returns the action that acts on them. The risk
snapshot's slowly moving parts (equity peak, VaR window) are saved at most every
`_SAVE_EVERY_NS`; trips and round-trip counts are saved at once.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Callable, Mapping

from daemon.config import Config
from daemon.execution.orders import Order, Position
from daemon.market.events import Trade
from daemon.risk.engine import RiskEngine
from daemon.risk.losses import RiskTrip, same_token
from daemon.safety.breakers import GLOBAL, BreakerBoard, BreakerChange, BState
from daemon.store.journal import Journal

log = logging.getLogger(__name__)

_SAVE_EVERY_NS = 10_000_000_000
RISK_KEY = "risk"
BREAKERS_KEY = "breakers"
RISK_BREAKER_PREFIX = "risk: "


@dataclass(frozen=True, slots=True)
class Action:
    """What the supervisor must do. kind: "halt", "reducing" or "cancel_increasing"."""
    kind: str
    reason: str


class Protection:
    def __init__(self, cfg: Config, journal: Journal, venues: list[str],
                 clock: Callable[[], int]) -> None:
        self.journal = journal
        self.clock = clock
        self.risk = RiskEngine(cfg.risk, cfg.instruments)
        self.board = BreakerBoard(cfg.breakers, venues, on_change=self._changed)
        self.venues = list(venues)
        self.vpin_max = cfg.breakers.vpin_max
        # The feature engine, once the supervisor has one: the toxic-flow rule reads VPIN
        # from its store (the board's own detector reads order-flow imbalance off the book).
        self.features: Any = None
        self._actions: list[Action] = []
        # What the journal last got of the risk engine: its snapshot without the VaR window
        # and the window's extent (None: nothing yet this run), and when.
        self._saved: tuple | None = None
        self._saved_at = 0
        # The last small risk snapshot built and the loss-limit token it was built at
        # (private: never handed out, so nothing can change it behind the token's back).
        self._small: dict = {}
        self._small_token: tuple[tuple, tuple] | None = None

    # -- restart ---------------------------------------------------------------------------
    def restore(self) -> list[str]:
        """Bring back the trips and open breakers of the previous run. Returns what was
        restored, for the log. A snapshot that cannot be read is journalled and the limits
        start afresh, never silently."""
        notes: list[str] = []
        snap = self.journal.load_state(RISK_KEY)
        if snap is not None:
            try:
                self.risk.restore(snap)
                notes = [f"risk limit {t.limit} ({t.action}): {t.reason}"
                         for t in self.risk.trips]
            except ValueError as e:
                log.error("risk state of the previous run unreadable, limits start afresh: "
                          "%s", e)
                self.journal.audit("state_unreadable", key=RISK_KEY, error=str(e))
        snap = self.journal.load_state(BREAKERS_KEY)
        if snap is not None:
            try:
                skipped = self.board.restore(snap, self.clock())
                notes += [f"breaker {b['name']} {b['state']}: {b['reason']}"
                          for b in self.board.status() if b["state"] != "closed"]
                if skipped:
                    notes.append(f"breakers no longer configured: {', '.join(skipped)}")
            except (ValueError, KeyError, TypeError, AttributeError) as e:
                log.error("breaker state of the previous run unreadable: %s", e)
                self.journal.audit("state_unreadable", key=BREAKERS_KEY, error=str(e))
        return notes

    # -- feeds -----------------------------------------------------------------------------
    def on_book(self, symbol: str, book: Any, ts_ns: int) -> None:
        """Market subscriber: the top of a valid book goes to the market detectors."""
        if not book.valid:
            return
        bid, ask = book.best_bid(), book.best_ask()
        if bid is None or ask is None:
            return
        venue = self.venues[0]
        self.board.on_book(symbol, venue, bid[0], bid[1], ask[0], ask[1], ts_ns)

    def on_trade(self, trade: Trade) -> None:
        self.board.on_trade(trade.symbol, self.venues[0], trade.price, trade.qty, trade.ts_ns)

    # -- the continuous side ---------------------------------------------------------------
    def poll(self, positions: Mapping[str, Position], marks: Mapping[str, Decimal | None],
             books_valid: Mapping[str, bool], open_orders: list[Order]) -> list[Action]:
        """Time-based breaker rules, the VaR window, the loss limits. Journals what changed,
        then returns what the supervisor must do (oldest first)."""
        now = self.clock()
        for sym, ok in books_valid.items():
            for venue in self.venues:
                self.board.book_state(sym, venue, ok, now)
        self.board.tick(now)
        self._check_vpin(now)
        self.risk.sample(positions, marks, now)
        trips = self.risk.evaluate(positions, marks, now, open_orders=open_orders)
        # One commit: the trip rows, the breaker they open and the risk snapshot that
        # carries them across a restart (a kill between them must not lose a trip; a trip
        # changes the snapshot, so it is always saved at once).
        if trips:
            with self.journal.batch():
                for t in trips:
                    self._risk_tripped(t, now)
                self._save_risk(now)
        else:
            self._save_risk(now)
        if not self._actions:   # (nearly every tick: no list swapped)
            return []
        actions, self._actions = self._actions, []
        return actions

    def _check_vpin(self, now: int) -> None:
        """Toxic flow: a ready VPIN above vpin_max opens the venue's breaker while it is
        closed (an automatic trip; a VPIN still high after the probes opens it again)."""
        if self.features is None or not self.vpin_max:
            return
        venue = self.venues[0]
        if self.board.breakers[venue].state is not BState.CLOSED:
            return
        for sym in self.features.symbols:
            # (value: None when not ready; no FeatureValue built every 100 ms)
            v = self.features.value(sym, "vpin")
            if v is not None and v > self.vpin_max:
                self.board.trip(venue, f"toxic flow: {sym} VPIN {v:.3f} above vpin_max "
                                       f"{self.vpin_max:g}", now, manual=False,
                                figures={"vpin": f"{v:.6f}", "limit": f"{self.vpin_max:g}",
                                         "symbol": sym})
                return

    def _risk_tripped(self, t: RiskTrip, now: int) -> None:
        self.journal.audit("limit_trip", limit=t.limit, action=t.action, reason=t.reason,
                           **{f"fig_{k}": v for k, v in t.figures.items()})
        # The risk-limit reason of the global breaker: visible with the others, and it
        # closes the door for every venue until the operator resets.
        self.board.trip(GLOBAL, f"{RISK_BREAKER_PREFIX}{t.limit}: {t.reason}", now,
                        manual=True, figures=dict(t.figures))
        kind = "halt" if t.action == "halted" else "reducing"
        self._actions.append(Action(kind, f"risk limit {t.limit}: {t.reason}"))

    def _changed(self, ch: BreakerChange) -> None:
        """Every breaker transition: journalled with its figures and the board's snapshot
        in one commit (joins an open gateway batch), before anything acts on it."""
        with self.journal.batch():
            self.journal.audit("breaker", name=ch.name, old=ch.old, new=ch.new,
                               reason=ch.reason, escalated=ch.escalated,
                               **{f"fig_{k}": v for k, v in ch.figures.items()})
            self.journal.save_state(BREAKERS_KEY, self.board.snapshot())
        if ch.new == "open":
            self._actions.append(Action("cancel_increasing", f"breaker {ch.name} open: "
                                                             f"{ch.reason}"))
        if ch.escalated:   # once: an escalated breaker stays open until its reset
            self._actions.append(Action("halt", f"breaker {ch.name} keeps failing its "
                                                f"probes: {ch.reason}"))

    def _save_risk(self, now: int) -> None:
        """Trips and round-trip counts at once (compared without the VaR window, which is
        cheap on every tick); a moved equity peak or VaR window at most every
        _SAVE_EVERY_NS. What is written is always the whole snapshot."""
        # The small snapshot only changes with the loss limits' state: rebuilt (Decimals to
        # text, trips to dicts) only when its token moved, not on every 100-ms tick.
        token = self.risk.losses.snapshot_token()
        if same_token(self._small_token, token):
            small = self._small
        else:
            small = self.risk.snapshot(window=False)
            self._small, self._small_token = small, token
        samples = self.risk.window.samples   # never empty: poll() sampled first
        state = (small, len(samples), samples[-1][0])
        saved = self._saved
        if saved == state:
            return
        # (0 <= : a save "later" than now means the clock stepped back; save again.)
        # (`small is saved[0]`: the same snapshot object, never changed since it was built,
        # so its urgent part is the same: no two dicts built to compare on every tick.)
        if saved is not None and (small is saved[0]
                                  or _urgent_part(small) == _urgent_part(saved[0])) \
                and 0 <= now - self._saved_at < _SAVE_EVERY_NS:
            return
        self.journal.save_state(RISK_KEY, self.risk.snapshot())
        self._saved, self._saved_at = state, now

    # -- operator --------------------------------------------------------------------------
    def blocked(self) -> str | None:
        """Why trading may not start now (a standing risk trip), or None."""
        trips = self.risk.trips
        if not trips:
            return None
        return "; ".join(f"risk limit {t.limit} tripped ({t.action}): {t.reason}"
                         for t in trips)

    def reset(self) -> list[str]:
        """Operator reset: lift the risk trips and the breakers they opened (manual and
        venue trips stay: `bot4ctl breaker reset NAME`). Journalled before it acts."""
        now = self.clock()
        lifted = [t.limit for t in self.risk.trips]
        if lifted:
            self.journal.audit("limit_reset", limits=lifted)
        self.risk.reset()
        self.journal.save_state(RISK_KEY, self.risk.snapshot())
        self._saved = None   # the next poll saves the fresh state once more
        if self.board.breakers[GLOBAL].reason.startswith(RISK_BREAKER_PREFIX):
            self.board.reset(GLOBAL, now, by="operator reset")   # (no-op when closed)
        return lifted

    def trip_breaker(self, name: str, reason: str) -> None:
        self.board.trip(name, f"manual: {reason}", self.clock(), manual=True)

    def reset_breaker(self, name: str) -> bool:
        return self.board.reset(name, self.clock(), by="operator")

    def status(self, positions: Mapping[str, Position], marks: Mapping[str, Decimal | None],
               open_orders: list[Order]) -> dict:
        return {"risk": self.risk.status(positions, marks, self.clock(),
                                         open_orders=open_orders),
                "breakers": self.board.status()}


def _urgent_part(snap: dict) -> dict:
    """What of a risk snapshot must reach the journal at once: everything of the loss
    limits but the equity peak, which moves with every mark."""
    return {k: v for k, v in snap["losses"].items() if k != "peak"}
