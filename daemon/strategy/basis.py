"""Spot-perpetual basis: trade the spread between an asset's spot price and its USD-M
perpetual when the spread leaves its rolling band, both legs or none.

Signal. basis = (perp mid - spot mid) / spot mid in bps, from the two reconstructed books
(on_book of either symbol recomputes it). The band is mean +/- k x std of basis samples
over the last `window_s` of EVENT time, one sample per `sample_ms` (the first book event at
or after each step), so a burst of book updates does not weigh more than a quiet second;
the band a decision is judged against never contains the basis being judged. Above the
band: sell perp, buy spot (the basis is expected to fall back); below it: buy perp, sell
spot, only with `allow_spot_short` (default false: spot cannot be sold short, so it stands
aside). An entry also needs |basis - mean| >= min_edge_bps and |basis| >= min_abs_basis_bps.
The pair is closed when the basis is back inside mean +/- exit_k x std (or through it).
A second pair in the same direction needs a new excursion (the basis back inside the
band, then out again) and room under `max_position`.

Execution. Both legs go through the gateway as marketable IOC limit orders at the touch
+/- leg_slippage_bps: IOC so a leg never rests (it fills now, partly, or not at all, and
the outcome is known one venue round trip later), limit so a thin book cannot fill a leg
at a price that eats more than the edge. Quantities are equal in base units on both
legs: [strategy] order_notional at the spot price, rounded UP to the coarser of the two
lots (never below the configured size or a leg's minimum notional). Unwinds are market
orders (certainty of getting flat beats price while a position is unhedged).

Leg risk: both legs or none.
* A leg refused by a check (engine's on_refused, synchronous): the other leg of the pair
  is cancelled in the same commit, before it is sent (the gateway closes it as cancelled
  "before it was sent"; the venue never sees it).
* Legs not resolved within max_legging_ms of engine time (checked on every event) are
  cancelled, and whatever one leg filled beyond the other is unwound at once.
* Once the legs are resolved, any imbalance (spot + perp position, base units) of at least
  one coarse lot is unwound immediately by reducing the leg that overfilled. A residual
  below one coarse lot is left (it cannot always be traded: lot and minimum notional).
* After a broken pair no entry for cooldown_ms; a refused unwind is retried after
  UNWIND_RETRY_MS, so a refusing check is not hammered on every book event.

It never reads the clock (ctx.now_ns is the engine's), never imports the gateway, venues,
risk or journal, and never places an order on a book that is missing or not valid.
"""
from __future__ import annotations

import logging
import math
from collections import deque
from dataclasses import dataclass, field
from decimal import ROUND_CEILING, ROUND_DOWN, Decimal
from typing import Any, Iterable

from daemon.config import BasisCfg
from daemon.execution.orders import Side, TimeInForce, to_decimal
from daemon.strategy.api import Cancel, Context, Intent, OrderView, Place, Strategy

log = logging.getLogger(__name__)

MS = 1_000_000
UNWIND_RETRY_MS = 250.0   # a refused unwind is tried again after this much engine time

LEG_SPOT, LEG_PERP = "basis:spot", "basis:perp"
UNWIND_SPOT, UNWIND_PERP = "basis:unwind:spot", "basis:unwind:perp"
_ZERO = Decimal(0)


class BasisWindow:
    """Basis samples over a window of event time, one per `sample_ns` at most, with their
    mean and (population) standard deviation kept as running sums."""

    def __init__(self, window_ns: int, sample_ns: int) -> None:
        self.window_ns = window_ns
        self.sample_ns = sample_ns
        self._xs: deque[tuple[int, float]] = deque()
        self._sum = 0.0
        self._sq = 0.0
        self._next = 0
        self.first_ns: int | None = None   # the first sample ever (warm-up is measured from it)

    def offer(self, ts_ns: int, x: float) -> bool:
        """Take `x` as a sample when a sample step has passed since the last one."""
        if ts_ns < self._next:
            return False
        self._next = ts_ns + self.sample_ns
        if self.first_ns is None:
            self.first_ns = ts_ns
        self._xs.append((ts_ns, x))
        self._sum += x
        self._sq += x * x
        cut = ts_ns - self.window_ns
        xs = self._xs
        while xs and xs[0][0] <= cut:
            _, old = xs.popleft()
            self._sum -= old
            self._sq -= old * old
        if len(xs) == 1:   # running sums restart exactly (no drift carried forward)
            self._sum, self._sq = x, x * x
        return True

    def __len__(self) -> int:
        return len(self._xs)

    def covered_ns(self, now_ns: int) -> int:
        return 0 if self.first_ns is None else now_ns - self.first_ns

    def mean(self) -> float:
        return self._sum / len(self._xs)

    def std(self) -> float:
        n = len(self._xs)
        m = self._sum / n
        return math.sqrt(max(self._sq / n - m * m, 0.0))


@dataclass
class _Pair:
    """One entry or exit: two legs sent together."""
    kind: str                 # "enter" or "exit"
    spot_side: Side           # BUY: long spot / short perp (the above-the-band pair)
    qty: Decimal
    started_ns: int
    prev: dict[str, str | None]                  # tag -> client id before this pair
    refused: dict[str, str] = field(default_factory=dict)   # tag -> "stage: reason"
    cancel_sent: bool = False


class Basis(Strategy):
    name = "basis"

    def __init__(self, params: BasisCfg, symbols: list[str]) -> None:
        super().__init__(params, symbols)
        self.spot, self.perp = params.spot_symbol, params.perp_symbol
        self._win = BasisWindow(int(params.window_s * 1e9), int(params.sample_ms * MS))
        self._max_leg_ns = int(params.max_legging_ms * MS)
        self._cool_ns = int(params.cooldown_ms * MS)
        self._slip = params.leg_slippage_bps / 1e4
        self._books: dict[str, Any] = {}
        self.basis_bps: float | None = None
        self.band: tuple[float, float, float] | None = None   # (lower, mean, upper) judged
        self._sd = 0.0
        self.legs: dict[str, dict] = {}      # the last pair's legs as last seen
        self._armed = {1: True, -1: True}    # a new excursion may add a pair
        self._pair: _Pair | None = None
        self._cool_until = 0
        self._retry_at = 0
        self._unhedged_since: int | None = None
        self.last_break: str | None = None
        self.stats.update(pairs_entered=0, pairs_exited=0, pairs_broken=0, legs_refused=0,
                          legging_timeouts=0, unwinds=0, unwinds_refused=0, fills=0)

    # -- what it hears ---------------------------------------------------------------------
    def on_book(self, ctx: Context, symbol: str, book: Any) -> Iterable[Intent]:
        if symbol not in (self.spot, self.perp):
            return ()
        self._books[symbol] = book
        self._measure(ctx.now_ns())
        return self._step(ctx)

    def on_fill(self, ctx: Context, tag: str, fill: Any) -> Iterable[Intent]:
        self.stats["fills"] += 1
        return self._step(ctx)

    def on_refused(self, ctx: Context, intent: Intent, stage: str, reason: str
                   ) -> Iterable[Intent]:
        super().on_refused(ctx, intent, stage, reason)
        now = ctx.now_ns()
        tag = intent.tag
        pair = self._pair
        if isinstance(intent, Place) and pair is not None and tag in (LEG_SPOT, LEG_PERP):
            self.stats["legs_refused"] += 1
            other = LEG_PERP if tag == LEG_SPOT else LEG_SPOT
            pair.refused[tag] = f"{stage}: {reason}"
            if other in pair.refused:
                return ()   # neither leg went out (the pair was counted broken already)
            self._broken(now, f"{_leg(tag)} leg refused ({stage}: {reason})", pair)
            # Both legs or none. The other leg is in this same commit: placed before this
            # one, or placed right after it (the engine runs the rest of the handler's
            # intents first, then these); either way it is cancelled before it is sent.
            self.intent = f"both legs or none: withdrawing the {_leg(other)} leg"
            return (Cancel(other, f"both legs or none: the {_leg(tag)} leg was refused "
                                  f"({stage}: {reason})"),)
        if isinstance(intent, Place) and tag in (UNWIND_SPOT, UNWIND_PERP):
            self.stats["unwinds_refused"] += 1
            self._retry_at = now + int(UNWIND_RETRY_MS * MS)
            self.aside(f"unwind refused ({stage}: {reason}); retrying in "
                       f"{UNWIND_RETRY_MS:g} ms")
        # A refused Cancel (cancel-rate limit) leaves the leg to resolve; its fill, if
        # any, is an imbalance the next step unwinds.
        return ()

    # -- the basis and its band --------------------------------------------------------------
    def _measure(self, now: int) -> None:
        s, p = self._books.get(self.spot), self._books.get(self.perp)
        if s is None or p is None or not s.valid or not p.valid:
            self.basis_bps = None
            return
        sm, pm = s.mid(), p.mid()
        if sm is None or pm is None or not sm > 0:
            self.basis_bps = None
            return
        b = (pm - sm) / sm * 1e4
        self.basis_bps = b
        win = self._win
        # Judge against the band BEFORE this basis joins it (a spike never widens its own
        # band), then offer it as a sample.
        if len(win) >= 1:
            m, sd = win.mean(), win.std()
            k = self.params.k
            self.band = (m - k * sd, m, m + k * sd)
            self._sd = sd
        win.offer(now, b)

    def _warm(self, now: int) -> str | None:
        win, p = self._win, self.params
        if len(win) < p.min_samples or win.covered_ns(now) < win.window_ns \
                or self.band is None:
            return (f"window warming up: {len(win)} samples over "
                    f"{win.covered_ns(now) / 1e9:.1f} s (needs {p.min_samples} over "
                    f"{p.window_s:g} s)")
        return None

    # -- one decision --------------------------------------------------------------------------
    def _step(self, ctx: Context) -> list[Intent]:
        now = ctx.now_ns()
        out: list[Intent] = []
        pair = self._pair
        legs_working: list[str] = []
        if pair is not None:
            views = {t: self._leg_order(ctx, pair, t) for t in (LEG_SPOT, LEG_PERP)}
            self.legs = {_leg(t): ({"status": "refused: " + pair.refused[t]}
                                   if t in pair.refused else None if o is None else
                                   {"status": o.status, "filled": str(o.filled),
                                    "qty": str(o.qty), "side": o.side.value})
                         for t, o in views.items()}
            legs_working = [t for t, o in views.items() if o is not None and o.working]
            waited = now - pair.started_ns
            if legs_working and waited <= self._max_leg_ns:
                self.aside(f"legging in progress: {', '.join(map(_leg, legs_working))} "
                           f"leg working for {waited / MS:.0f} ms (max_legging_ms "
                           f"{self.params.max_legging_ms:g})")
                return out
            if legs_working and not pair.cancel_sent:
                pair.cancel_sent = True
                self.stats["legging_timeouts"] += 1
                self._broken(now, f"legs not filled within max_legging_ms "
                                  f"({', '.join(map(_leg, legs_working))})", pair)
                out += [Cancel(t, "legging: not filled within max_legging_ms")
                        for t in legs_working]
            if not legs_working:
                self._resolve(ctx, pair)
        spot_pos, perp_pos = ctx.position(self.spot), ctx.position(self.perp)
        unwinding = [t for t in (UNWIND_SPOT, UNWIND_PERP)
                     if (o := ctx.order(t)) is not None and o.working]
        imbalance = spot_pos + perp_pos
        lot = self._lot(ctx)
        if unwinding:
            self.aside(f"unwinding: {', '.join(_leg(t) for t in unwinding)} order working "
                       f"(imbalance {imbalance})")
            return out
        if abs(imbalance) >= lot:
            if self._unhedged_since is None:
                self._unhedged_since = now
            out += self._unwind(ctx, now, spot_pos, perp_pos, imbalance)
            return out
        self._unhedged_since = None
        if legs_working:
            self.aside("legging: cancelling the legs that were not filled in time")
            return out
        out += self._decide(ctx, now, spot_pos, perp_pos, lot)
        return out

    def _decide(self, ctx: Context, now: int, spot_pos: Decimal, perp_pos: Decimal,
                lot: Decimal) -> list[Intent]:
        for sym in (self.spot, self.perp):
            book = self._books.get(sym)
            if book is None:
                self.aside(f"no {sym} book yet")
                return []
            if not book.valid:
                self.aside(f"{sym} book not valid: {book.invalid_reason}")
                return []
        b = self.basis_bps
        if b is None:
            self.aside("no basis: a book has no mid")
            return []
        warming = self._warm(now)
        if warming:
            self.aside(warming)
            return []
        lower, mean, upper = self.band
        p = self.params
        held = 0
        if spot_pos >= lot and perp_pos <= -lot:
            held = 1        # long spot, short perp: entered above the band
        elif spot_pos <= -lot and perp_pos >= lot:
            held = -1       # short spot, long perp: entered below it
        held_qty = _floor(min(abs(spot_pos), abs(perp_pos)), lot) if held else _ZERO
        if held:
            exit_at = mean + held * p.exit_k * self._sd
            if held * (b - exit_at) <= 0:
                return self._pair_intents(ctx, now, "exit", Side.SELL if held > 0 else Side.BUY,
                                          held_qty, f"exit: basis {b:.3f} bps back inside "
                                          f"the exit band ({exit_at:.3f})")
        if lower <= b <= upper:
            self._armed[1] = self._armed[-1] = True
            self._inside(held, held_qty, b)
            return []
        want = 1 if b > upper else -1
        edge = abs(b - mean)
        what = (f"basis {b:.3f} bps {'above' if want > 0 else 'below'} the band "
                f"[{lower:.3f}, {upper:.3f}]")
        qty = self._qty(ctx, lot)
        if want < 0 and not p.allow_spot_short and spot_pos - qty < 0:
            self.aside(f"{what}: the trade sells spot short (allow_spot_short = false)")
            return []
        if edge < p.min_edge_bps:
            self.aside(f"{what}: {edge:.3f} bps from the mean, min_edge_bps "
                       f"{p.min_edge_bps:g}")
            return []
        if abs(b) < p.min_abs_basis_bps:
            self.aside(f"{what}: |basis| below min_abs_basis_bps {p.min_abs_basis_bps:g}")
            return []
        if held and held != want:   # the exit above fires first; a guard, not a path
            self.aside(f"{what}: holding the opposite pair")
            return []
        if now < self._cool_until:
            self.aside(f"{what}: cooling down after a broken pair ({self.last_break}) "
                       f"for {(self._cool_until - now) / MS:.0f} ms")
            return []
        if not self._armed[want]:
            self.aside(f"{what}: holding {held_qty}; another pair needs a new excursion")
            return []
        if held_qty + qty > p.max_position:
            self.aside(f"{what}: position limit ({held_qty} held + {qty} > max_position "
                       f"{p.max_position})")
            return []
        self._armed[want] = False
        return self._pair_intents(ctx, now, "enter", Side.BUY if want > 0 else Side.SELL,
                                  qty, f"enter: {what}, {edge:.3f} bps from the mean")

    def _inside(self, held: int, held_qty: Decimal, b: float) -> None:
        lower, _, upper = self.band
        if held:
            self.aside(None)
            legs = "long spot / short perp" if held > 0 else "short spot / long perp"
            self.intent = (f"holding {held_qty} {legs}; basis {b:.3f} bps, waiting for the "
                           f"exit band")
        else:
            self.aside(f"basis {b:.3f} bps inside the band [{lower:.3f}, {upper:.3f}]")

    # -- orders ----------------------------------------------------------------------------------
    def _pair_intents(self, ctx: Context, now: int, kind: str, spot_side: Side,
                      qty: Decimal, why: str) -> list[Intent]:
        perp_side = Side.SELL if spot_side is Side.BUY else Side.BUY
        spot_px = self._limit(self._books[self.spot], spot_side)
        perp_px = self._limit(self._books[self.perp], perp_side)
        if spot_px is None or perp_px is None:
            self.aside("a book has an empty side")
            return []
        self._pair = _Pair(kind, spot_side, qty, now,
                           prev={t: _cid(ctx.order(t)) for t in (LEG_SPOT, LEG_PERP)})
        self.aside(None)
        self.intent = f"{why}: {spot_side.value} {qty} spot, {perp_side.value} {qty} perp"
        # Spot first, perp second: a refusal of either withdraws the other (on_refused).
        return [Place(LEG_SPOT, self.spot, spot_side, qty, spot_px, TimeInForce.IOC, why),
                Place(LEG_PERP, self.perp, perp_side, qty, perp_px, TimeInForce.IOC, why)]

    def _limit(self, book: Any, side: Side) -> Decimal | None:
        """A marketable limit: the touch on the other side, leg_slippage_bps through it."""
        level = book.best_ask() if side is Side.BUY else book.best_bid()
        if level is None:
            return None
        px = level[0] * (1 + self._slip) if side is Side.BUY else level[0] * (1 - self._slip)
        return to_decimal(round(px, 8))

    def _unwind(self, ctx: Context, now: int, spot_pos: Decimal, perp_pos: Decimal,
                imbalance: Decimal) -> list[Intent]:
        """Reduce the leg that holds the excess (the one whose position has the sign of
        the imbalance): back to "none" rather than forward to "both"."""
        legs = [(self.spot, UNWIND_SPOT, spot_pos), (self.perp, UNWIND_PERP, perp_pos)]
        legs = [x for x in legs if (x[2] > 0) == (imbalance > 0) and x[2] != 0]
        what = f"unhedged {imbalance} base ({self.spot} {spot_pos}, {self.perp} {perp_pos})"
        if not legs:   # cannot happen: the imbalance is the sum of the two positions
            self.aside(f"{what}: no leg to reduce")
            return []
        sym, tag, pos = max(legs, key=lambda x: abs(x[2]))
        qty = _floor(min(abs(imbalance), abs(pos)), ctx.instrument(sym).lot_size)
        if qty <= 0:
            self.aside(f"{what}: less than a lot of {sym} to unwind")
            return []
        if now < self._retry_at:
            self.aside(f"{what}: unwind refused, retrying in "
                       f"{(self._retry_at - now) / MS:.0f} ms")
            return []
        book = self._books.get(sym)
        if book is None or not book.valid:
            self.aside(f"{what}: cannot unwind while the {sym} book is not valid")
            return []
        side = Side.SELL if imbalance > 0 else Side.BUY
        self.stats["unwinds"] += 1
        log.warning("basis: %s: %s %s %s at market", what, side.value, qty, sym)
        self.aside(f"{what}: unwinding")
        self.intent = f"unwind: {side.value} {qty} {sym} at market"
        return [Place(tag, sym, side, qty, None, TimeInForce.IOC,
                      f"both legs or none: {what}")]

    # -- bookkeeping -----------------------------------------------------------------------------
    def _resolve(self, ctx: Context, pair: _Pair) -> None:
        """Both legs are finished (filled, expired, cancelled or refused)."""
        self._pair = None
        filled = {t: (o.filled if (o := self._leg_order(ctx, pair, t)) is not None else _ZERO)
                  for t in (LEG_SPOT, LEG_PERP)}
        if filled[LEG_SPOT] == filled[LEG_PERP] == pair.qty:
            self.stats["pairs_entered" if pair.kind == "enter" else "pairs_exited"] += 1
        elif not pair.refused and not pair.cancel_sent:
            self._broken(ctx.now_ns(), f"{pair.kind} legs filled spot "
                                       f"{filled[LEG_SPOT]} / perp {filled[LEG_PERP]} of "
                                       f"{pair.qty}", pair)

    def _broken(self, now: int, why: str, pair: _Pair) -> None:
        self.stats["pairs_broken"] += 1
        self.last_break = why
        log.info("basis: %s pair broken: %s", pair.kind, why)
        self._cool_until = now + self._cool_ns
        if pair.kind == "enter":   # the excursion may be tried again after the cooldown
            self._armed[1 if pair.spot_side is Side.BUY else -1] = True

    @staticmethod
    def _leg_order(ctx: Context, pair: _Pair, tag: str) -> OrderView | None:
        """The pair's own order for `tag` (None when it was refused: the tag still names
        the previous pair's order then)."""
        o = ctx.order(tag)
        return None if o is None or o.client_id == pair.prev.get(tag) else o

    def _lot(self, ctx: Context) -> Decimal:
        return max(ctx.instrument(self.spot).lot_size, ctx.instrument(self.perp).lot_size)

    def _qty(self, ctx: Context, lot: Decimal) -> Decimal:
        """[strategy] order_notional at the spot price, rounded up to the coarser lot."""
        base = ctx.order_qty(self.spot, self._books[self.spot].mid())
        steps = (base / lot).to_integral_value(rounding=ROUND_CEILING)
        return (max(steps, Decimal(1)) * lot).quantize(lot)

    # -- what it says about itself ---------------------------------------------------------------
    def status(self) -> dict:
        out = super().status()
        pair = self._pair
        out["basis"] = {
            "spot": self.spot, "perp": self.perp,
            "basis_bps": None if self.basis_bps is None else round(self.basis_bps, 4),
            "band_bps": None if self.band is None else [round(x, 4) for x in self.band],
            "samples": len(self._win),
            "pair": None if pair is None else {
                "kind": pair.kind, "spot_side": pair.spot_side.value, "qty": str(pair.qty),
                "started_ns": pair.started_ns, "refused": dict(pair.refused),
                "cancel_sent": pair.cancel_sent},
            "legs": self.legs,
            "unhedged_since_ns": self._unhedged_since,
            "last_break": self.last_break}
        return out


def _leg(tag: str) -> str:
    return "spot" if tag.endswith("spot") else "perp"


def _cid(o: OrderView | None) -> str | None:
    return None if o is None else o.client_id


def _floor(q: Decimal, lot: Decimal) -> Decimal:
    return ((q / lot).to_integral_value(rounding=ROUND_DOWN) * lot).quantize(lot)
