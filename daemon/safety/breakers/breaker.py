"""One circuit breaker: the closed -> open -> half-open -> closed state machine.

- closed: orders pass.
- open: orders that add exposure are refused. Why it opened decides how it leaves:
  `auto` (a detector): after the cooldown it goes half-open by itself (on `tick`);
  `manual` (operator, risk limit, or an escalation): only `reset` closes it;
  `held` (cascaded from a venue): the board releases it when that venue closes.
- half-open: a probe budget: at most `probe_orders` orders, each of notional at most
  `probe_max_notional`. Without a probe window it closes once that many probes succeeded
  (acked or filled, no reject, error or latency spike); with `probe_window_s` > 0 it closes
  when the window has passed without a failure. Any failure opens it again with the
  cooldown multiplied by `cooldown_growth` (at most `cooldown_max_s`); after `max_reopens`
  failed probe rounds in a row it escalates: it stays open until a manual reset and the
  change says `escalated` (the daemon halts on it).
Exposure-reducing orders always pass: they only make the position smaller.

Every transition is a `BreakerChange` given to `on_change` (after the new state is in
force). Pure state machine: every time is the `now_ns` passed in (the engine's clock,
event time in replay); no clock, no I/O, no journal, nothing sent.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from decimal import Decimal
from enum import Enum
from typing import Callable

S = 1_000_000_000


class BState(str, Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"

    def __str__(self) -> str:
        return self.value


class Kind(str, Enum):
    AUTO = "auto"        # a detector: cooldown, then half-open by itself
    HELD = "held"        # cascaded: released by the board when the cause closes
    MANUAL = "manual"    # operator, risk or escalation: a manual reset only

    def __str__(self) -> str:
        return self.value


_STRENGTH = {Kind.AUTO: 0, Kind.HELD: 1, Kind.MANUAL: 2}


@dataclass(frozen=True)
class BreakerChange:
    name: str
    old: str
    new: str
    reason: str
    figures: dict[str, str]
    ts_ns: int
    escalated: bool = False


@dataclass(frozen=True)
class Policy:
    """The state machine's settings (from BreakersCfg)."""
    cooldown_ns: int
    cooldown_max_ns: int
    growth: float
    probe_orders: int
    probe_max_notional: Decimal
    probe_window_ns: int        # 0: close after probe_orders successes
    max_reopens: int


@dataclass
class _Probe:
    client_id: str | None
    sent_ns: int


@dataclass
class CircuitBreaker:
    name: str
    policy: Policy
    on_change: Callable[[BreakerChange], None]
    state: BState = BState.CLOSED
    kind: Kind = Kind.AUTO
    reason: str = ""
    figures: dict[str, str] = field(default_factory=dict)
    since_ns: int = 0
    cooldown_ns: int = 0
    reopens: int = 0             # failed probe rounds in a row
    escalated: bool = False
    probes_used: int = 0
    probes_ok: int = 0
    _probes: deque[_Probe] = field(default_factory=deque)

    def __post_init__(self) -> None:
        self.cooldown_ns = self.policy.cooldown_ns

    # -- reading ---------------------------------------------------------------------------
    @property
    def half_open_at_ns(self) -> int | None:
        """When an automatic trip goes half-open; None when it will not by itself."""
        if self.state is BState.OPEN and self.kind is Kind.AUTO:
            return self.since_ns + self.cooldown_ns
        return None

    def oldest_probe_ns(self) -> int | None:
        return self._probes[0].sent_ns if self._probes else None

    # -- transitions -----------------------------------------------------------------------
    def _go(self, new: BState, reason: str, figures: dict[str, str], now_ns: int, *,
            escalated: bool = False) -> None:
        old = self.state
        self.state, self.reason, self.figures, self.since_ns = new, reason, dict(figures), now_ns
        self.probes_used = self.probes_ok = 0
        self._probes.clear()
        self.on_change(BreakerChange(self.name, old.value, new.value, reason, dict(figures),
                                     now_ns, escalated))

    def trip(self, reason: str, now_ns: int, *, figures: dict[str, str] | None = None,
             kind: Kind = Kind.AUTO) -> bool:
        """Open (or, half-open, fail the probe round). An open breaker only takes a trip
        of a stronger kind (manual over held over auto). Returns True if anything changed."""
        figures = figures or {}
        if self.state is BState.HALF_OPEN and kind is Kind.AUTO:
            self.probe_failed(reason, now_ns, figures)
            return True
        if self.state is BState.OPEN and _STRENGTH[kind] <= _STRENGTH[self.kind]:
            return False
        self.kind = kind
        self._go(BState.OPEN, reason, figures, now_ns)
        return True

    def probe_failed(self, reason: str, now_ns: int, figures: dict[str, str] | None = None
                     ) -> None:
        """A failure while half-open: open again with a longer cooldown, or escalate."""
        if self.state is not BState.HALF_OPEN:
            return
        p = self.policy
        self.reopens += 1
        self.cooldown_ns = min(int(self.cooldown_ns * p.growth), p.cooldown_max_ns)
        figures = {**(figures or {}), "reopens": str(self.reopens)}
        if self.reopens >= p.max_reopens:
            self.kind, self.escalated = Kind.MANUAL, True
            self._go(BState.OPEN, f"escalated after {self.reopens} failed probe rounds "
                     f"(max_reopens {p.max_reopens}): {reason}", figures, now_ns,
                     escalated=True)
            return
        self.kind = Kind.AUTO
        self._go(BState.OPEN, f"probe failed: {reason}", figures, now_ns)

    def tick(self, now_ns: int) -> None:
        if self.state is BState.HALF_OPEN or self.half_open_at_ns is not None:
            # Nothing is later than now. A since-time after now means the clock stepped
            # back: a replay's first events after a boot on the wall clock (a breaker
            # restored then), or a wall clock set back. Cooldown and probe window then run
            # from now on this clock instead of waiting for a time it will not reach; a
            # probe sent "later" was sent now. (A manual or held trip's since-time only
            # says since when: it stays.)
            self.since_ns = min(self.since_ns, now_ns)
            for pr in self._probes:
                pr.sent_ns = min(pr.sent_ns, now_ns)
        at = self.half_open_at_ns
        if at is not None and now_ns >= at:
            p = self.policy
            how = (f"for {p.probe_window_ns / S:g} s" if p.probe_window_ns
                   else "until they succeed")
            self._go(BState.HALF_OPEN,
                     f"cooldown {self.cooldown_ns / S:g} s over: probing with up to "
                     f"{p.probe_orders} orders of at most {p.probe_max_notional} {how} "
                     f"(opened for: {self.reason})", self.figures, now_ns)
        elif self.state is BState.HALF_OPEN and self.policy.probe_window_ns \
                and now_ns - self.since_ns >= self.policy.probe_window_ns:
            self._close(f"probe window {self.policy.probe_window_ns / S:g} s passed with "
                        f"{self.probes_ok} probe(s) and no failure", now_ns)

    def _close(self, reason: str, now_ns: int) -> None:
        self.reopens, self.escalated = 0, False
        self.cooldown_ns = self.policy.cooldown_ns
        self.kind = Kind.AUTO
        self._go(BState.CLOSED, reason, {}, now_ns)

    def release(self, reason: str, now_ns: int) -> bool:
        """Close a `held` trip (its cause closed). Other kinds are not released."""
        if self.state is not BState.OPEN or self.kind is not Kind.HELD:
            return False
        self._close(reason, now_ns)
        return True

    def reset(self, now_ns: int, by: str) -> bool:
        """Manual reset: closed from any state, cooldown and escalation cleared."""
        if self.state is BState.CLOSED:
            return False
        self._close(f"reset by {by}", now_ns)
        return True

    # -- orders ----------------------------------------------------------------------------
    def refusal(self, notional: Decimal) -> str | None:
        """Why an exposure-adding order of `notional` may not go now, else None. Counts
        nothing (see `allow`)."""
        if self.state is BState.CLOSED:
            return None
        if self.state is BState.OPEN:
            return f"breaker {self.name} open: {self.reason}"
        p = self.policy
        if notional > p.probe_max_notional:
            return (f"breaker {self.name} half-open: notional {notional} above "
                    f"probe_max_notional {p.probe_max_notional}")
        if self.probes_used >= p.probe_orders:
            return (f"breaker {self.name} half-open: probe budget used "
                    f"({self.probes_used}/{p.probe_orders})")
        return None

    def count_probe(self, now_ns: int, client_id: str | None = None) -> None:
        """An order allowed while half-open is about to leave: one probe of the budget."""
        if self.state is BState.HALF_OPEN:
            self.probes_used += 1
            self._probes.append(_Probe(client_id, now_ns))

    def allow(self, notional: Decimal, reduce_only: bool, now_ns: int,
              client_id: str | None = None) -> str | None:
        """None if the order may go (a half-open breaker counts it as a probe), else why not."""
        if reduce_only:
            return None
        why = self.refusal(notional)
        if why is None:
            self.count_probe(now_ns, client_id)
        return why

    def probe_ok(self, now_ns: int, client_id: str | None = None) -> None:
        """An ack or fill. With a client id only that probe's counts; without one, the
        oldest outstanding probe's."""
        if self.state is not BState.HALF_OPEN or not self._probes:
            return
        if client_id is None:
            self._probes.popleft()
        else:
            # Its own probe, else the oldest probe allowed without an id.
            hit = next((pr for pr in self._probes if pr.client_id == client_id), None) \
                or next((pr for pr in self._probes if pr.client_id is None), None)
            if hit is None:
                return   # not a probe (an order from before the trip)
            self._probes.remove(hit)
        self.probes_ok += 1
        p = self.policy
        if not p.probe_window_ns and self.probes_ok >= p.probe_orders:
            self._close(f"{self.probes_ok} probe(s) succeeded", now_ns)
