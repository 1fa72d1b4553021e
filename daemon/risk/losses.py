"""Loss limits that act by themselves: daily loss, drawdown from the equity peak, and
losing round trips in a row. Each trips once, with the figures, and stays tripped (latched)
until an operator reset: a new UTC day never lifts it.

Equity is `capital` + realised PnL - fees + unrealised PnL at the mark, summed over every
position, in quote currency (an inverse position's coin amounts converted at the mark; a
round trip's PnL for the losing streak is in its settlement currency: only its sign counts). The UTC day comes from the `now_ns` passed in (event time in a replay), never
from a clock read here. The state that must outlive a restart (day, day-start equity,
peak, losing streak, open round trips, trips) goes out through `snapshot()` and comes back
through `restore()`; the caller stores it. Nothing here sends, journals or reads a clock.
"""
from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from typing import Mapping

from daemon.config import RiskCfg
from daemon.execution.orders import Fill, Position

log = logging.getLogger(__name__)

DAY_NS = 86_400_000_000_000
SNAPSHOT_VERSION = 1


@dataclass(frozen=True)
class RiskTrip:
    """A limit that tripped: which, what the supervisor must do, why (with figures)."""

    limit: str                     # "daily_loss", "drawdown", "losing_streak", "var", "stress"
    action: str                    # "reducing" or "halted"
    reason: str
    figures: dict[str, str] = field(default_factory=dict)
    since_ns: int = 0

    def as_dict(self) -> dict:
        return asdict(self)


def equity(capital: Decimal, positions: Mapping[str, Position],
           marks: Mapping[str, Decimal | None]) -> Decimal | None:
    """capital + realised - fees + unrealised, in quote currency. A linear position without
    a mark counts at its average price (no unrealised PnL): the caller passes its last good
    mark when it has one. An inverse position's PnL and fees are coin, converted at the
    mark; with coin amounts and no mark at all, equity cannot be known: None."""
    total = capital
    for sym, pos in positions.items():
        m = marks.get(sym)
        if pos.inverse:
            if m is not None and m > 0:
                total += pos.pnl_quote(m)
            elif pos.qty or pos.realized_pnl or pos.fees:
                return None
            continue
        total += pos.realized_pnl - pos.fees
        if m is not None and pos.qty:
            total += (m - pos.avg_price) * pos.qty
    return total


def same_token(a: tuple[tuple, tuple] | None, b: tuple[tuple, tuple]) -> bool:
    """Whether two `LossLimits.snapshot_token()`s promise the same snapshot."""
    if a is None or a[0] != b[0] or len(a[1]) != len(b[1]):
        return False
    for x, y in zip(a[1], b[1]):
        if x is not y:
            return False
    return True


def fmt(d: Decimal) -> str:
    """A figure as plain text without trailing zeros: 1100.00 -> "1100", -0.200 -> "-0.2"."""
    return f"{d.normalize():f}"


def utc_day(now_ns: int) -> int:
    """Days since 1970-01-01 UTC."""
    return now_ns // DAY_NS


@dataclass
class _Open:
    """A round trip in progress: realised PnL and fees of its symbol when it began."""

    realized: Decimal
    fees: Decimal


class LossLimits:
    def __init__(self, cfg: RiskCfg) -> None:
        self.cfg = cfg
        self.day: int | None = None
        self.day_start: Decimal | None = None
        self.peak: Decimal | None = None
        self.streak = 0
        self.last_round_trip: Decimal | None = None
        self.equity: Decimal | None = None          # at the last evaluate()
        self.trips: dict[str, RiskTrip] = {}
        self._open: dict[str, _Open] = {}
        self._rebase = False
        self._unreported: list[RiskTrip] = []   # tripped by a fill, for the next evaluate()

    # -- round trips ------------------------------------------------------------------------
    def on_fill(self, fill: Fill, after: Position, now_ns: int) -> None:
        """A round trip starts when a position leaves 0 and ends when it returns to 0 or
        flips; its PnL is the realised PnL change minus the fees paid over it. On a flip
        the fill's fee is split by quantity between the trip it ends and the one it starts.
        A losing-streak trip is reported by the next evaluate()."""
        before = after.qty - fill.side.sign * fill.qty
        sym = fill.symbol
        if before == 0:
            if after.qty != 0:
                self._open[sym] = _Open(after.realized_pnl, after.fees - fill.fee)
            return
        if after.qty * before > 0:   # same side as before: not closed (0 or a flip closes)
            return
        # Fee share of the closing part: all of it, unless the fill flipped the position.
        closing_fee = fill.fee * abs(before) / fill.qty
        start = self._open.pop(sym, None)
        if after.qty != 0:   # flipped: the rest opens a new round trip
            self._open[sym] = _Open(after.realized_pnl, after.fees - fill.fee + closing_fee)
        if start is None:
            # Opened before this state existed (a position from the journal and no
            # snapshot): its start is unknown, so it is not counted either way.
            log.warning("%s round trip closed whose start is unknown: not counted", sym)
            return
        pnl = (after.realized_pnl - start.realized) - (after.fees - fill.fee + closing_fee
                                                       - start.fees)
        self.last_round_trip = pnl
        self.streak = self.streak + 1 if pnl < 0 else 0
        self._unreported += self._check_streak(now_ns)

    def _check_streak(self, now_ns: int) -> list[RiskTrip]:
        cfg = self.cfg
        if self.streak < cfg.max_losing_streak or "losing_streak" in self.trips:
            return []
        trip = RiskTrip(
            "losing_streak", cfg.losing_streak_action,
            f"{self.streak} losing round trips in a row, max_losing_streak is "
            f"{cfg.max_losing_streak} (last {fmt(self.last_round_trip)})",
            {"streak": str(self.streak), "limit": str(cfg.max_losing_streak),
             "last_round_trip": fmt(self.last_round_trip)}, now_ns)
        self.trips["losing_streak"] = trip
        return [trip]

    # -- equity limits ------------------------------------------------------------------------
    def evaluate(self, positions: Mapping[str, Position], marks: Mapping[str, Decimal | None],
                 now_ns: int) -> list[RiskTrip]:
        """Update day, day-start equity and peak from equity now; return new trips."""
        cfg = self.cfg
        eq = equity(cfg.capital, positions, marks)
        if eq is None:
            # Coin amounts with no price to value them (an inverse position before its
            # first mark): no equity figure, so no day start or peak is set from a wrong one.
            unreported, self._unreported = self._unreported, []
            return unreported
        self.equity = eq
        day = utc_day(now_ns)
        if self._rebase or self.day_start is None:   # (day_start and peak go together)
            self.day, self.day_start, self.peak, self._rebase = day, eq, eq, False
        elif day != self.day:
            # A new UTC day: a new budget. Trips stay (only an operator reset lifts them).
            self.day, self.day_start = day, eq
        self.peak = max(self.peak, eq)
        new: list[RiskTrip] = []
        loss = self.day_start - eq
        if loss > cfg.daily_loss_limit and "daily_loss" not in self.trips:
            new.append(RiskTrip(
                "daily_loss", cfg.daily_loss_action,
                f"daily loss {fmt(loss)} beyond daily_loss_limit {cfg.daily_loss_limit} "
                f"(equity {fmt(eq)}, at the start of the UTC day {fmt(self.day_start)})",
                {"loss": fmt(loss), "limit": str(cfg.daily_loss_limit),
                 "equity": fmt(eq), "day_start_equity": fmt(self.day_start)}, now_ns))
        dd = self.peak - eq
        if dd > cfg.max_drawdown and "drawdown" not in self.trips:
            new.append(RiskTrip(
                "drawdown", cfg.max_drawdown_action,
                f"drawdown {fmt(dd)} from the equity peak {fmt(self.peak)} beyond max_drawdown "
                f"{cfg.max_drawdown} (equity {fmt(eq)})",
                {"drawdown": fmt(dd), "limit": str(cfg.max_drawdown),
                 "equity": fmt(eq), "peak": fmt(self.peak)}, now_ns))
        for t in new:
            self.trips[t.limit] = t
        unreported, self._unreported = self._unreported, []
        return new + unreported

    def figures(self) -> dict[str, Decimal | int | None]:
        """Used against limit, for status."""
        daily = None if self.day_start is None or self.equity is None \
            else self.day_start - self.equity
        dd = None if self.peak is None or self.equity is None else self.peak - self.equity
        return {"daily_loss": daily, "drawdown": dd, "losing_streak": self.streak}

    def reset(self) -> None:
        """Operator reset: lift every trip and start afresh from the equity at the next
        evaluate() (a fresh daily budget and peak; the streak starts from 0)."""
        self.trips.clear()
        self._unreported.clear()
        self.streak = 0
        self._rebase = True

    # -- restart ----------------------------------------------------------------------------
    def snapshot_token(self) -> tuple[tuple, tuple]:
        """What `snapshot()` is made of, cheap to take on every tick: two snapshots whose
        tokens are `same_token` are equal, so a caller may keep the one it built. The first
        part compares by value (ints, bools, symbol names); the second holds the Decimals,
        round trips and trips themselves and compares by identity: an equal Decimal with
        other trailing zeros is another snapshot (str keeps them), and holding the objects
        keeps their ids from being reused. Round trips and trips are never changed in
        place (a new object replaces one), which is what makes identity enough."""
        opens = self._open
        objs: list[object] = [self.day_start, self.peak, self.last_round_trip]
        for o in opens.values():
            objs += (o, o.realized, o.fees)
        objs += self.trips.values()
        return ((self.day, self.streak, self._rebase, tuple(opens), tuple(self.trips)),
                tuple(objs))

    def snapshot(self) -> dict:
        def s(d: Decimal | None) -> str | None:
            return None if d is None else str(d)   # exact, trailing zeros and all
        return {
            "version": SNAPSHOT_VERSION, "day": self.day, "day_start_equity": s(self.day_start),
            "peak": s(self.peak), "streak": self.streak, "rebase": self._rebase,
            "last_round_trip": s(self.last_round_trip),
            "round_trips": {k: {"realized": str(v.realized), "fees": str(v.fees)}
                            for k, v in self._open.items()},
            "trips": [t.as_dict() for t in self.trips.values()],
        }

    def restore(self, snap: Mapping) -> None:
        """The state `snapshot()` gave, exactly. Raises ValueError on anything else and then
        changes nothing (a half-read snapshot must not pass for a clean one)."""
        if not isinstance(snap, Mapping) or snap.get("version") != SNAPSHOT_VERSION:
            raise ValueError(f"risk snapshot version "
                             f"{snap.get('version') if isinstance(snap, Mapping) else snap!r}, "
                             f"expected {SNAPSHOT_VERSION}")

        def d(v: object) -> Decimal | None:
            return None if v is None else Decimal(str(v))
        try:
            day = None if snap["day"] is None else int(snap["day"])
            state = (day, d(snap["day_start_equity"]), d(snap["peak"]), int(snap["streak"]),
                     bool(snap["rebase"]), d(snap["last_round_trip"]),
                     {str(k): _Open(Decimal(v["realized"]), Decimal(v["fees"]))
                      for k, v in snap["round_trips"].items()},
                     {t["limit"]: RiskTrip(t["limit"], t["action"], t["reason"],
                                           dict(t["figures"]), int(t["since_ns"]))
                      for t in snap["trips"]})
        except (KeyError, TypeError, ValueError, AttributeError, ArithmeticError) as e:
            raise ValueError(f"risk snapshot unreadable: {e!r}") from None
        (self.day, self.day_start, self.peak, self.streak, self._rebase,
         self.last_round_trip, self._open, self.trips) = state
        self._unreported.clear()
