"""Time-sliced execution schedules: TWAP, and the `Schedule` object that drives any plan.

What it is for: turning a parent quantity into child slices and saying *when* each is due,
with a hard per-slice limit. A plan is a list of (due time in engine-clock ns, quantity);
`twap_plan` builds the equal-slice one, `almgren_chriss.Trajectory.schedule` builds the
Almgren–Chriss one, and `Schedule` drives either the same way:

    s = Schedule.twap(Decimal("1.5"), start_ns, end_ns, n_slices=10, lot=Decimal("0.001"),
                      max_slice=Decimal("0.2"))
    for sl in s.due(now_ns):            # call on every clock tick; at most one slice back
        send a child order for sl.qty   # the engine's job, not this module's
    s.filled(fill_qty)                  # on each fill of a child order
    s.unfilled(left_qty)                # when a child ends (cancel/expiry) short of its qty
    s.done, s.remaining, s.unfinished

Rules (all quantities are Decimal multiples of `lot`; the sum of a plan is exactly `total`):
- `due(now)` returns at most one slice per call. Every planned slot whose time has come
  since the last call is merged into that one slice (a missed interval is caught up), but
  no slice ever exceeds the limit: min(max_slice, max_participation * recent_volume),
  rounded down to the lot. A slot is never emitted twice.
- What does not fit under the limit (and what `unfilled` hands back) is spread evenly, in
  whole lots, over the slots still to come (earliest slots take the odd lots); each of those
  is capped again when due. After the last slot there is nowhere to put it: it is added
  to `unfinished` and never emitted. `done` then becomes true once nothing is in flight;
  the caller decides what to do about `unfinished` (this module never escalates).
- Quantities are unsigned; the caller owns the side.

What it never does: send, cancel or price orders, read the clock, or look at the book.
It only says what to send when. It is not the e-stop path either: flatten on e-stop is an
immediate sweep and must never go through a Schedule.
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import ROUND_DOWN, Decimal

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Slice:
    """One child quantity the engine should send now.

    `first_slot`..`last_slot` are the planned slots merged into it (equal unless catching
    up); `due_ns` is the planned time of `last_slot`; `deferred` is what this call could not
    fit under the limit and pushed to later slots (or to `unfinished` at the end).
    """

    first_slot: int
    last_slot: int
    due_ns: int
    qty: Decimal
    deferred: Decimal


def lots_down(qty: Decimal, lot: Decimal) -> Decimal:
    """`qty` rounded down to a whole number of lots (never more than asked)."""
    if lot <= 0:
        raise ValueError(f"lot must be positive, got {lot}")
    n = (qty / lot).to_integral_value(rounding=ROUND_DOWN)
    return n * lot


def _require_lots(name: str, qty: Decimal, lot: Decimal) -> None:
    if not isinstance(qty, Decimal):
        raise TypeError(f"{name} must be Decimal, got {type(qty).__name__}")
    if qty < 0 or lots_down(qty, lot) != qty:
        raise ValueError(f"{name} {qty} is not a non-negative multiple of lot {lot}")


def spread_lots(qty: Decimal, n: int, lot: Decimal) -> list[Decimal]:
    """Split `qty` (a multiple of `lot`) into `n` whole-lot parts differing by at most one
    lot, the larger ones first, summing exactly to `qty`."""
    if n <= 0:
        raise ValueError(f"need at least one part, got {n}")
    _require_lots("qty", qty, lot)
    q, r = divmod(int(qty / lot), n)
    return [(q + (1 if i < r else 0)) * lot for i in range(n)]


def slot_times(start_ns: int, end_ns: int, *, n_slices: int | None = None,
               interval_ns: int | None = None) -> list[int]:
    """Due times of the slots in [start_ns, end_ns): the first at `start_ns`.

    Give exactly one of `n_slices` (times start + i*(end-start)//n, so the last slot is one
    interval before the end) or `interval_ns` (start, start+interval, ... while < end).
    """
    if end_ns <= start_ns:
        raise ValueError(f"end {end_ns} must be after start {start_ns}")
    if (n_slices is None) == (interval_ns is None):
        raise ValueError("give exactly one of n_slices or interval_ns")
    span = end_ns - start_ns
    if n_slices is not None:
        if n_slices < 1:
            raise ValueError(f"n_slices must be >= 1, got {n_slices}")
        # Integer arithmetic so the times are exact and reproducible on any platform.
        return [start_ns + (i * span) // n_slices for i in range(n_slices)]
    assert interval_ns is not None
    if interval_ns <= 0:
        raise ValueError(f"interval_ns must be positive, got {interval_ns}")
    n = -(-span // interval_ns)
    return [start_ns + i * interval_ns for i in range(n)]


def twap_plan(total: Decimal, start_ns: int, end_ns: int, *, lot: Decimal,
              n_slices: int | None = None,
              interval_ns: int | None = None) -> list[tuple[int, Decimal]]:
    """Equal slices of `total` at the times of `slot_times`, in whole lots summing exactly
    to `total`; the odd lots go one each to the earliest slices."""
    _require_lots("total", total, lot)
    times = slot_times(start_ns, end_ns, n_slices=n_slices, interval_ns=interval_ns)
    return list(zip(times, spread_lots(total, len(times), lot), strict=True))


class Schedule:
    """Drives a plan of (due_ns, qty) slots by time; see the module docstring for the rules.

    Invariant after every call: total == filled + in_flight + planned_ahead + unfinished.
    """

    def __init__(self, plan: Sequence[tuple[int, Decimal]], *, lot: Decimal,
                 max_slice: Decimal | None = None,
                 max_participation: Decimal | None = None) -> None:
        if not plan:
            raise ValueError("a schedule needs at least one slot")
        if not isinstance(lot, Decimal) or lot <= 0:
            raise ValueError(f"lot must be a positive Decimal, got {lot!r}")
        times = [t for t, _ in plan]
        if any(b <= a for a, b in zip(times, times[1:])):
            raise ValueError("slot times must be strictly increasing")
        for _, q in plan:
            _require_lots("slot qty", q, lot)
        if max_slice is not None:
            _require_lots("max_slice", max_slice, lot)
            if max_slice == 0:
                raise ValueError("max_slice must be at least one lot")
        if max_participation is not None and not (0 < max_participation <= 1):
            raise ValueError(f"max_participation must be in (0, 1], got {max_participation}")
        self._lot = lot
        self._times = times
        self._qty = [q for _, q in plan]
        self._total = sum(self._qty, Decimal(0))
        if self._total == 0:
            raise ValueError("a schedule must have something to trade")
        if max_slice is not None and self._total > max_slice * len(plan):
            # Infeasible by construction: even full slices cannot finish. Say so now rather
            # than report it as `unfinished` at the end.
            raise ValueError(f"total {self._total} cannot fit in {len(plan)} slices of at "
                             f"most {max_slice}; use more slices or a larger max_slice")
        self._max_slice = max_slice
        self._max_participation = max_participation
        self._next = 0                  # first slot not yet emitted
        self._emitted = Decimal(0)
        self._filled = Decimal(0)
        self._returned = Decimal(0)     # handed back through unfilled()
        self._unfinished = Decimal(0)

    @classmethod
    def twap(cls, total: Decimal, start_ns: int, end_ns: int, *, lot: Decimal,
             n_slices: int | None = None, interval_ns: int | None = None,
             max_slice: Decimal | None = None,
             max_participation: Decimal | None = None) -> Schedule:
        """A TWAP schedule: `twap_plan` driven under the given slice limits."""
        return cls(twap_plan(total, start_ns, end_ns, lot=lot, n_slices=n_slices,
                             interval_ns=interval_ns),
                   lot=lot, max_slice=max_slice, max_participation=max_participation)

    # ----------------------------------------------------------------------------- state
    @property
    def total(self) -> Decimal:
        return self._total

    @property
    def lot(self) -> Decimal:
        return self._lot

    @property
    def filled_qty(self) -> Decimal:
        return self._filled

    @property
    def remaining(self) -> Decimal:
        """Parent quantity not yet filled (in flight, planned ahead or unfinished)."""
        return self._total - self._filled

    @property
    def in_flight(self) -> Decimal:
        """Emitted in slices and neither filled nor handed back yet."""
        return self._emitted - self._filled - self._returned

    @property
    def planned_ahead(self) -> Decimal:
        """Still to be emitted by slots whose time has not come."""
        return sum(self._qty[self._next:], Decimal(0))

    @property
    def unfinished(self) -> Decimal:
        """Quantity this schedule gave up on: it did not fit under the limit by the last
        slot, or was handed back after the last slot. Never emitted again."""
        return self._unfinished

    @property
    def slots_left(self) -> int:
        return len(self._qty) - self._next

    @property
    def next_due_ns(self) -> int | None:
        """When the next slot falls due, or None when every slot has been emitted."""
        return self._times[self._next] if self._next < len(self._times) else None

    @property
    def done(self) -> bool:
        """Everything filled, or no slot left and nothing in flight (check `unfinished`)."""
        if self._filled == self._total:
            return True
        return self._next == len(self._qty) and self.in_flight == 0

    def plan(self) -> list[tuple[int, Decimal]]:
        """The current plan of slots not yet due (after any spreading of deferred qty)."""
        return list(zip(self._times[self._next:], self._qty[self._next:], strict=True))

    # --------------------------------------------------------------------------- driving
    def limit(self, recent_volume: Decimal | None = None) -> Decimal | None:
        """The cap on one slice now, rounded down to the lot; None when there is none."""
        cap = self._max_slice
        if self._max_participation is not None:
            if recent_volume is None:
                raise ValueError("this schedule has max_participation: pass recent_volume "
                                 "(traded volume over the last slice interval)")
            if recent_volume < 0:
                raise ValueError(f"recent_volume must be >= 0, got {recent_volume}")
            by_volume = lots_down(self._max_participation * recent_volume, self._lot)
            cap = by_volume if cap is None else min(cap, by_volume)
        return cap

    def due(self, now_ns: int, recent_volume: Decimal | None = None) -> list[Slice]:
        """The slice to send now: [] if no slot has come due since the last call (or the
        limit is zero), else one Slice merging every slot due at or before `now_ns`."""
        cap = self.limit(recent_volume)
        first = self._next
        last = first
        while last < len(self._times) and self._times[last] <= now_ns:
            last += 1
        if last == first:
            return []
        want = sum(self._qty[first:last], Decimal(0))
        for i in range(first, last):
            self._qty[i] = Decimal(0)
        self._next = last
        qty = want if cap is None else min(want, cap)
        deferred = want - qty
        if deferred:
            self._defer(deferred)
            log.info("slots %d..%d: %s over the slice limit %s, deferred", first, last - 1,
                     deferred, cap)
        if qty == 0:
            return []
        self._emitted += qty
        return [Slice(first, last - 1, self._times[last - 1], qty, deferred)]

    def filled(self, qty: Decimal) -> None:
        """A child order of this schedule filled `qty` (call once per fill)."""
        if not isinstance(qty, Decimal):
            raise TypeError(f"qty must be Decimal, got {type(qty).__name__}")
        if qty <= 0:
            raise ValueError(f"fill qty must be positive, got {qty}")
        if qty > self.in_flight:
            # More filled than was ever sent: the caller's bookkeeping is wrong; refuse it
            # rather than let `remaining` go negative.
            raise ValueError(f"fill {qty} exceeds what is in flight ({self.in_flight})")
        self._filled += qty

    def unfilled(self, qty: Decimal) -> None:
        """A child order ended (cancelled, expired, rejected) with `qty` never filled: hand
        it back. Its whole lots are spread over the slots still to come (or become
        `unfinished` after the last slot); a sub-lot remainder, which no venue would take,
        goes straight to `unfinished`."""
        if not isinstance(qty, Decimal):
            raise TypeError(f"qty must be Decimal, got {type(qty).__name__}")
        if qty < 0:
            raise ValueError(f"unfilled qty must be >= 0, got {qty}")
        if qty == 0:
            return
        if qty > self.in_flight:
            raise ValueError(f"unfilled {qty} exceeds what is in flight ({self.in_flight})")
        self._returned += qty
        whole = lots_down(qty, self._lot)
        if whole:
            self._defer(whole)
        if qty != whole:
            self._unfinished += qty - whole

    def _defer(self, qty: Decimal) -> None:
        ahead = len(self._qty) - self._next
        if ahead == 0:
            self._unfinished += qty
            log.warning("schedule end: %s unfinished (did not fit under the slice limit)", qty)
            return
        for i, part in enumerate(spread_lots(qty, ahead, self._lot)):
            self._qty[self._next + i] += part
