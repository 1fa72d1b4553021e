"""An Avellaneda-Stoikov market maker: one post-only bid and one post-only ask around the
microprice, skewed by inventory, pulled when the market turns against a passive quoter.

Model (Avellaneda & Stoikov 2008, "High-frequency trading in a limit order book"):
    reservation price  r     = s - q * gamma * sigma^2 * (T - t)
    optimal spread     delta = gamma * sigma^2 * (T - t) + (2 / gamma) * ln(1 + gamma / kappa)
    bid = r - delta / 2,  ask = r + delta / 2
How the symbols are filled in here:
* s is the microprice of the top of book, (bid * ask_qty + ask * bid_qty) / (bid_qty + ask_qty).
* The model runs in bps of s (prices as offsets from s in basis points), so one set of
  parameters fits any price level: sigma in bps per sqrt(second), gamma and kappa per bps
  (fill intensity ~ A exp(-kappa * distance in bps)).
* q is the inventory in units of the order size: ctx.order_qty at s ([strategy]
  order_notional at the microprice, rounded up to the lot), which is also the size of
  both quotes, so the inventory limit counts whole orders.
* T - t is a rolling horizon (`horizon_s`): we trade continuously, there is no close.
* sigma is our own estimate from mid log returns sampled every `vol_sample_ms` of engine
  time: an exponentially weighted variance per second, sum(w r^2) / sum(w dt) with weights
  halving every `vol_halflife_s`. (The feature store's ewma_vol/realised_vol are per bar,
  and a bar of 60 s would leave the quoter blind for half an hour; we need seconds.)
* delta is floored at max(min_spread_bps, ctx.spread_floor_bps) (the Glosten-Milgrom
  floor of daemon/analytics when it is running).
Prices are rounded away from the touch (bid down, ask up, to the tick) and never cross the
book (bid <= best ask - tick, ask >= best bid + tick); orders are post-only.

Pulls (Cancel intents with the reason; `self.aside(reason)`):
* the book's spread above `max_book_spread_bps`;
* toxic flow: VPIN (feature store "vpin") >= `vpin_max`, or |OFI| >= `ofi_max` mean
  top-of-book sizes (feature store "ofi" when ready, else our own level-1 OFI of the book
  top over `ofi_window_s`); either keeps us out `cooldown_s` more;
* volatility estimate not warmed up;
* an invalid book: the engine pulls our orders and sets the reason itself (on_book is not
  called then); our own book-top state starts afresh when the book is valid again;
* inventory: a side is quoted only while the worst case (position + everything still
  working on that side + the new order) stays within `max_inventory` orders (0 on the
  short side unless `allow_short`); the other, reducing, side keeps quoting.

Inventory is a hard bound: each side uses two tags ("mm:bid:SYM:0"/":1") so a requote
places the new order under the free tag and cancels the old one; the old one counts in
the worst case until the venue confirms it gone. Requotes happen when the desired price
moved `requote_ticks` (at most every `requote_min_interval_ms` per side) or, for any move,
after `refresh_interval_s`, to stay under the gateway's cancel-rate limit.

Like every strategy it only returns intents and reads state through ctx; it never touches
the gateway, a venue, the journal or the wall clock.
"""
from __future__ import annotations

import math
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from typing import Any, Iterable

from daemon.config import MarketMakerCfg
from daemon.execution.orders import Side, TimeInForce, to_decimal
from daemon.features.flow import OFI
from daemon.strategy.api import Cancel, Context, Intent, OrderView, Place, Strategy

_NS = 1_000_000_000
_BPS = 1e-4


# -- the closed form (pure; any consistent units) ---------------------------------------------
def reservation_price(s: float, q: float, gamma: float, sigma: float, tau: float) -> float:
    """Avellaneda-Stoikov reservation (indifference) price r = s - q gamma sigma^2 tau."""
    return s - q * gamma * sigma * sigma * tau


def optimal_spread(gamma: float, sigma: float, tau: float, kappa: float) -> float:
    """Avellaneda-Stoikov total spread
    delta = gamma sigma^2 tau + (2 / gamma) ln(1 + gamma / kappa)."""
    return gamma * sigma * sigma * tau + (2.0 / gamma) * math.log1p(gamma / kappa)


def microprice(bid: float, bid_qty: float, ask: float, ask_qty: float) -> float:
    """Size-weighted mid of the top of book (the mid when both sizes are zero)."""
    tot = bid_qty + ask_qty
    if not tot > 0.0:
        return (bid + ask) * 0.5
    return (bid * ask_qty + ask * bid_qty) / tot


def quote_bps(q: float, gamma: float, sigma_bps: float, tau: float, kappa: float,
              floor_bps: float) -> tuple[float, float]:
    """(reservation offset, total spread), both in bps of s: r = s (1 + off / 1e4),
    spread = max(delta, floor_bps)."""
    off = reservation_price(0.0, q, gamma, sigma_bps, tau)
    return off, max(optimal_spread(gamma, sigma_bps, tau, kappa), floor_bps)


def round_away(price: float, tick: Decimal, side: Side) -> Decimal:
    """`price` on the tick grid, away from the touch: a bid down, an ask up."""
    steps = (to_decimal(price) / tick).to_integral_value(
        rounding=ROUND_FLOOR if side is Side.BUY else ROUND_CEILING)
    return (steps * tick).quantize(tick)


class MidVol:
    """Volatility of mid log returns per sqrt(second), on the engine clock.

    A return is taken once at least `sample_ns` passed since the last sample point:
    r = ln(mid / last mid) over dt seconds. The variance rate is sum(w r^2) / sum(w dt) with
    w halving every `halflife_ns` (a return over a longer gap weighs as much as its time).
    Ready once the samples cover `warmup_ns` and there are at least two of them."""

    __slots__ = ("sample_ns", "decay_per_ns", "warmup_ns", "a", "b", "n", "start_ns",
                 "last_ns", "last_mid")

    def __init__(self, sample_ns: int, halflife_ns: int, warmup_ns: int) -> None:
        self.sample_ns = sample_ns
        self.decay_per_ns = math.log(2.0) / halflife_ns
        self.warmup_ns = warmup_ns
        self.a = self.b = 0.0
        self.n = 0
        self.start_ns: int | None = None
        self.last_ns = 0
        self.last_mid = 0.0

    def update(self, ts_ns: int, mid: float) -> None:
        if not mid > 0.0:
            return
        if self.start_ns is None:
            self.start_ns, self.last_ns, self.last_mid = ts_ns, ts_ns, mid
            return
        dt = ts_ns - self.last_ns
        if dt < self.sample_ns:
            return
        r = math.log(mid / self.last_mid)
        w = math.exp(-self.decay_per_ns * dt)
        self.a = self.a * w + r * r
        self.b = self.b * w + dt / _NS
        self.n += 1
        self.last_ns, self.last_mid = ts_ns, mid

    def covered_s(self) -> float:
        return 0.0 if self.start_ns is None else (self.last_ns - self.start_ns) / _NS

    @property
    def ready(self) -> bool:
        return (self.start_ns is not None and self.n >= 2
                and self.last_ns - self.start_ns >= self.warmup_ns)

    def sigma_bps(self) -> float | None:
        """sigma in bps per sqrt(second), None until ready."""
        if not self.ready or not self.b > 0.0:
            return None
        return math.sqrt(self.a / self.b) / _BPS


class _Sym:
    """What the market maker keeps per symbol."""

    def __init__(self, p: MarketMakerCfg) -> None:
        self.vol = MidVol(int(p.vol_sample_ms * 1e6), int(p.vol_halflife_s * _NS),
                          int(p.vol_warmup_s * _NS))
        self.ofi = OFI(int(p.ofi_window_s * _NS), levels=1)
        self.depth: float | None = None     # EWMA of the mean top-of-book size
        self.depth_ns = 0
        self.out_until = 0                  # cooling down after a spread/flow pull
        self.out_why = ""
        self.resync = False                 # the engine pulled us on an invalid book
        self.current = {Side.BUY: 0, Side.SELL: 0}      # tag slot of the live quote
        self.last_ns = {Side.BUY: None, Side.SELL: None}  # last placement attempt
        self.quote: dict[str, Any] = {}


class MarketMaker(Strategy):
    name = "market_maker"

    def __init__(self, params: MarketMakerCfg, symbols: list[str]) -> None:
        super().__init__(params, symbols)
        p = params
        self.p = p
        self._min_gap_ns = int(p.requote_min_interval_ms * 1e6)
        self._refresh_ns = int(p.refresh_interval_s * _NS)
        self._cool_ns = int(p.cooldown_s * _NS)
        self._depth_decay = math.log(2.0) / (p.depth_halflife_s * _NS)
        self._s = {s: _Sym(p) for s in self.symbols}
        self.stats.update({"requotes": 0, "pulls": 0})
        self._why: dict[str, str] = {}      # symbol -> why it stands aside (or one side)

    # -- tags --------------------------------------------------------------------------------
    @staticmethod
    def tag(symbol: str, side: Side, slot: int) -> str:
        return f"mm:{'bid' if side is Side.BUY else 'ask'}:{symbol}:{slot}"

    def _orders(self, ctx: Context, symbol: str, side: Side) -> list[OrderView | None]:
        return [ctx.order(self.tag(symbol, side, i)) for i in (0, 1)]

    # -- the event ---------------------------------------------------------------------------
    def on_book(self, ctx: Context, symbol: str, book: Any) -> Iterable[Intent]:
        st = self._s.get(symbol)
        if st is None:
            return ()
        bb, ba = book.best_bid(), book.best_ask()
        if bb is None or ba is None:
            return self._pull(ctx, symbol, f"{symbol}: one side of the book is empty")
        now = ctx.now_ns()
        if st.resync:
            # The engine pulled us on an invalid book: the book we see now is a resync,
            # not a flow from the last state we saw.
            st.ofi.reset()
            st.resync = False
        pb, qb = bb
        pa, qa = ba
        mid = (pb + pa) * 0.5
        st.vol.update(now, mid)
        st.ofi.update(now, bb, ba)
        self._depth(st, now, (qb + qa) * 0.5)
        s = microprice(pb, qb, pa, qa)
        p = self.p

        # 1. Pulls: the market is no place for a passive quote right now.
        spread_bps = (pa - pb) / mid / _BPS
        why = None
        if spread_bps > p.max_book_spread_bps:
            why = (f"{symbol}: book spread {spread_bps:.3g} bps > max_book_spread_bps "
                   f"{p.max_book_spread_bps:g}")
        else:
            why = self._toxic(ctx, symbol, st, now)
        if why is not None:
            st.out_until, st.out_why = now + self._cool_ns, why
            return self._pull(ctx, symbol, why)
        if now < st.out_until:
            return self._pull(ctx, symbol, f"cooling down until {(st.out_until - now) / _NS:.3g}"
                                           f" s from now after: {st.out_why}")
        sigma = st.vol.sigma_bps()
        if sigma is None:
            return self._pull(ctx, symbol, f"{symbol}: volatility warming up "
                                           f"({st.vol.covered_s():.3g} s of "
                                           f"{p.vol_warmup_s:g} s, {st.vol.n} returns)")

        # 2. Where Avellaneda-Stoikov would quote.
        unit = ctx.order_qty(symbol, s)
        pos = ctx.position(symbol)
        q = float(pos / unit) if unit > 0 else 0.0
        floor = max(p.min_spread_bps, _floor(ctx.spread_floor_bps(symbol)))
        off, delta = quote_bps(q, p.gamma, sigma, p.horizon_s, p.kappa, floor)
        r = s * (1.0 + off * _BPS)
        tick = ctx.instrument(symbol).tick_size
        want = {Side.BUY: round_away(r - s * delta * _BPS / 2, tick, Side.BUY),
                Side.SELL: round_away(r + s * delta * _BPS / 2, tick, Side.SELL)}
        best_ask, best_bid = to_decimal(pa), to_decimal(pb)
        want[Side.BUY] = min(want[Side.BUY], best_ask - tick)     # never cross: post-only
        want[Side.SELL] = max(want[Side.SELL], best_bid + tick)
        st.quote = {"s": s, "r": r, "delta_bps": delta, "q": q, "sigma_bps": sigma,
                    "floor_bps": floor}

        # 3. Each side: inventory, then requote rules.
        out: list[Intent] = []
        asides = []
        lim = Decimal(repr(p.max_inventory)) * unit
        lo = -lim if p.allow_short else Decimal(0)
        for side in (Side.BUY, Side.SELL):
            # One size for both sides, the order size at s: inventory counts whole orders.
            blocked = self._side(ctx, symbol, st, side, want[side], unit, pos, lim, lo, tick,
                                 now, out)
            if blocked:
                asides.append(blocked)
        self._say(symbol, "; ".join(asides) if asides else None)
        bid_txt = str(want[Side.BUY]) if not _has(asides, "bid") else "none"
        ask_txt = str(want[Side.SELL]) if not _has(asides, "ask") else "none"
        self.intent = (f"{symbol}: bid {bid_txt} ask {ask_txt}, r={r:.8g}, "
                       f"delta={delta:.4g} bps ({s * delta * _BPS:.6g}), q={q:+.3g}, "
                       f"sigma={sigma:.4g} bps/sqrt(s), s={s:.8g}")
        return out

    def _side(self, ctx: Context, symbol: str, st: _Sym, side: Side, price: Decimal,
              qty: Decimal, pos: Decimal, hi: Decimal, lo: Decimal, tick: Decimal, now: int,
              out: list[Intent]) -> str | None:
        """Intents for one side into `out`; returns why the side stands aside, if it does."""
        views = self._orders(ctx, symbol, side)
        working = [v for v in views if v is not None and v.working]
        exposure = sum((v.qty - v.filled for v in working), Decimal(0))
        cur_i = st.current[side]
        cur = views[cur_i]
        live = cur is not None and cur.working and cur.status != "pending_cancel"
        # Stale quotes under the other tag (an earlier cancel was refused): cancel again.
        other = views[1 - cur_i]
        if other is not None and other.working and other.status != "pending_cancel":
            out.append(Cancel(self.tag(symbol, side, 1 - cur_i), "stale quote"))
        # Worst case if everything working on this side and the new order filled.
        if side is Side.BUY:
            fits = pos + exposure + qty <= hi
            fits_replacing = pos + exposure - (cur.qty - cur.filled if live else 0) + qty <= hi
            name = "bid"
        else:
            fits = pos - exposure - qty >= lo
            fits_replacing = pos - exposure + (cur.qty - cur.filled if live else 0) - qty >= lo
            name = "ask"
        if not fits_replacing:   # even without the live quote it would break the limit
            if live:
                out.append(Cancel(self.tag(symbol, side, cur_i),
                                  f"inventory limit: {name} would pass it"))
            bound = hi if side is Side.BUY else lo
            return (f"{symbol} {name}: inventory {pos} (+ {exposure} working) at the limit "
                    f"{bound} (max_inventory {self.p.max_inventory:g} orders"
                    f"{'' if self.p.allow_short or side is Side.BUY else ', no short'})")
        last = st.last_ns[side]
        if live:
            moved = abs(price - cur.price) / tick if cur.price is not None else Decimal(10**18)
            age = now - last if last is not None else 10**19
            due = ((moved >= self.p.requote_ticks and age >= self._min_gap_ns)
                   or (moved >= 1 and age >= self._refresh_ns))
            if not due:
                return None
        elif last is not None and now - last < self._min_gap_ns:
            return None
        free = [i for i in (cur_i, 1 - cur_i) if not (views[i] is not None and views[i].working)]
        why = (f"requote {name} to {price}" if live else f"quote {name} at {price}")
        if not free or not fits:
            # Both tags busy (a cancel not yet confirmed), or the old quote and the new one
            # together could pass the limit: take the old one off first, place when it is gone.
            if live:
                out.append(Cancel(self.tag(symbol, side, cur_i), f"{why}: old one first"))
                st.last_ns[side] = now
            return None
        slot = free[0]
        out.append(Place(self.tag(symbol, side, slot), symbol, side, qty, price,
                         TimeInForce.POST_ONLY, why))
        if live and slot != cur_i:
            out.append(Cancel(self.tag(symbol, side, cur_i), f"replaced: {why}"))
        st.current[side] = slot
        st.last_ns[side] = now
        self.stats["requotes"] += 1
        return None

    def _toxic(self, ctx: Context, symbol: str, st: _Sym, now: int) -> str | None:
        """Why the order flow is too toxic to quote into, or None."""
        p = self.p
        vpin = ctx.feature(symbol, "vpin")
        if vpin is not None and vpin >= p.vpin_max:
            return f"{symbol}: toxic flow: VPIN {vpin:.3g} >= vpin_max {p.vpin_max:g}"
        ofi = ctx.feature(symbol, "ofi")
        src = "feature store"
        if ofi is None:
            ofi, src = st.ofi.value(now), "book top"
        if ofi is None or st.depth is None or not st.depth > 0.0:
            return None
        x = abs(ofi) / st.depth
        if x >= p.ofi_max:
            return (f"{symbol}: toxic flow: |OFI| {x:.3g} top-of-book sizes ({src}) >= "
                    f"ofi_max {p.ofi_max:g}")
        return None

    def _depth(self, st: _Sym, now: int, size: float) -> None:
        if not size >= 0.0 or size == math.inf:
            return
        if st.depth is None:
            st.depth, st.depth_ns = size, now
            return
        w = math.exp(-self._depth_decay * max(now - st.depth_ns, 0))
        st.depth = st.depth * w + size * (1.0 - w)
        st.depth_ns = now

    def _pull(self, ctx: Context, symbol: str, why: str) -> list[Intent]:
        """Cancel every working quote of `symbol` with `why`, and stand aside for it."""
        self._say(symbol, why)
        self.intent = f"{symbol}: no quotes ({why})"
        out: list[Intent] = []
        for side in (Side.BUY, Side.SELL):
            for i, v in enumerate(self._orders(ctx, symbol, side)):
                if v is not None and v.working and v.status != "pending_cancel":
                    out.append(Cancel(self.tag(symbol, side, i), f"pulled: {why}"))
        if out:
            self.stats["pulls"] += 1
        return out

    # -- why it stands aside ----------------------------------------------------------------
    def _say(self, symbol: str, why: str | None) -> None:
        """Record `symbol`'s reason; standing_aside shows every symbol's that has one."""
        if why is None:
            self._why.pop(symbol, None)
        else:
            self._why[symbol] = why
        super().aside("; ".join(self._why[s] for s in self.symbols if s in self._why) or None)

    def aside(self, reason: str | None) -> None:
        """The engine's word (an invalid book: "SYMBOL: book invalid: ...") goes to that
        symbol's reason, and its book-top state starts afresh when the book is back."""
        sym = reason.split(": ", 1)[0] if reason else None
        st = self._s.get(sym) if sym else None
        if st is None:
            super().aside(reason)
            return
        if ": book invalid" in reason:
            st.resync = True
        self._say(sym, reason)

    def status(self) -> dict:
        d = super().status()
        d["model"] = {s: st.quote for s, st in self._s.items() if st.quote}
        return d


def _floor(x: float | None) -> float:
    """A spread floor from analytics: ignored when unknown, zero, negative or NaN."""
    return x if x is not None and x > 0.0 and x != math.inf else 0.0


def _has(asides: list[str], name: str) -> bool:
    return any(f" {name}: " in a for a in asides)
