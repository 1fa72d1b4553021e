"""The risk engine: one facade over the pre-trade limits, the loss limits, sizing, VaR/CVaR
and stress, for the gateway (pre-trade checks, rates, fills) and the supervisor
(evaluate, status, reset, snapshot).

Pre-trade `check()` order: latched trips (a "halted" trip refuses every order, a
"reducing" one every order that could grow |position|), market order without a mark,
order quantity, order notional, price band, open orders (global, then per symbol),
position (worst case), gross and net exposure (worst case), order rate, VaR, stress. The
first broken limit is the reason; every reason names the limit and the figures.
"Reducing" here means: every open order on that side filled and this one, the position
is no larger and on the same side (or flat).

`evaluate()` is the continuous side: daily loss, drawdown, losing streak (counted from
`on_fill`), and VaR/stress when their action is not "off". It returns only NEW trips;
a trip stays until `reset()`. What to do with a trip (journal it, go `reducing` or
`halted`) is the caller's: the engine never sends, cancels, journals or reads a clock
(time is the `now_ns` passed in: event time in a replay).

A symbol without a usable mark is priced at its last good mark seen by the engine, else
at its position's average price (exposure, equity, VaR and stress alike).

Every amount is in quote currency. An inverse (COIN-M) instrument's quantities are
contracts worth `contract_size` USD each whatever the price, so its notional and exposure
are qty * contract_size (not qty * mark), its VaR exposure likewise, its Kelly size and
headroom are in contracts, and its coin PnL is converted at the mark (losses.equity). The
[risk] quantity limits (max_order_qty, max_position) are base currency: for an inverse
instrument they become contracts at the mark (base x mark / contract_size, down to the
lot); an [instruments.X] max_position is the instrument's own unit (contracts).
"""
from __future__ import annotations

import datetime as dt
import logging
from decimal import ROUND_DOWN, Decimal
from typing import Callable, Iterable, Mapping

from daemon.config import InstrumentCfg, RiskCfg
from daemon.execution.orders import INVERSE, Fill, Order, Position, Side, to_decimal
from daemon.risk import limits, sizing, stress, var
from daemon.risk.limits import Book, RateWindow
from daemon.risk.losses import LossLimits, RiskTrip, fmt

log = logging.getLogger(__name__)

SNAPSHOT_VERSION = 1
_ZERO = Decimal(0)
_EPOCH = dt.date(1970, 1, 1)   # UTC day numbers count from here


def _s(d: Decimal | None) -> str | None:
    return None if d is None else fmt(d)


def _exposures_with(bk: Mapping[str, list[Decimal]], units: Mapping[str, Decimal],
                    sym: str, side: Side, qty: Decimal
                    ) -> tuple[tuple[Decimal, Decimal], tuple[Decimal, Decimal]]:
    """limits.exposures of the books `bk` ([long, short] per symbol) before and after `qty`
    more on `side` of `sym` (a symbol new to the books comes last), in one pass: the same
    sums in the same order as limits.exposures over limits.Book values."""
    g0 = l0 = s0 = g1 = l1 = s1 = _ZERO
    for s, (lo, sh) in bk.items():
        u = units.get(s)
        if u is None:
            continue
        g0 += max(abs(lo), abs(sh)) * u
        l0 += lo * u
        s0 += sh * u
        if s == sym:
            if side is Side.BUY:
                lo = lo + qty
            else:
                sh = sh - qty
        g1 += max(abs(lo), abs(sh)) * u
        l1 += lo * u
        s1 += sh * u
    if sym not in bk:
        u = units.get(sym)
        if u is not None:
            lo, sh = (_ZERO + qty, _ZERO) if side is Side.BUY else (_ZERO, _ZERO - qty)
            g1 += max(abs(lo), abs(sh)) * u
            l1 += lo * u
            s1 += sh * u
    return (g0, max(abs(l0), abs(s0))), (g1, max(abs(l1), abs(s1)))


class RiskEngine:
    def __init__(self, cfg: RiskCfg, instruments: Mapping[str, InstrumentCfg]) -> None:
        self.cfg = cfg
        self.instruments = dict(instruments)
        # Inverse instruments -> USD per contract: their unit of exposure.
        self._contract: dict[str, Decimal] = {s: i.contract_size for s, i in
                                              self.instruments.items() if i.kind == INVERSE}
        self.losses = LossLimits(cfg)
        self.window = var.MarkWindow(cfg.var_window, int(cfg.var_sample_interval_s * 1e9))
        self.scenarios = stress.scenarios(cfg.stress_price_shocks, cfg.stress_spread_mult,
                                          cfg.stress_fill_all)
        self._spread_bps = Decimal(str(cfg.stress_default_spread_bps))
        self._sent = RateWindow()
        self._cancels = RateWindow()
        self._last_mark: dict[str, Decimal] = {}

    # -- prices ----------------------------------------------------------------------------
    def max_position(self, symbol: str, mark: Decimal | None = None) -> Decimal:
        """In the instrument's unit: [instruments.X] max_position as given, else [risk]
        max_position (base currency; in contracts at `mark` for an inverse instrument)."""
        inst = self.instruments.get(symbol)
        if inst is not None and inst.max_position is not None:
            return inst.max_position
        return self._qty_limit(symbol, self.cfg.max_position, mark)

    def _qty_limit(self, symbol: str, base: Decimal, mark: Decimal | None) -> Decimal:
        """A base-currency quantity limit as a quantity of `symbol`: itself for a linear
        instrument; base x mark / contract_size contracts, down to the lot, for an inverse
        one (without a mark, the base figure: as small as it is, it errs on the safe side)."""
        cs = self._contract.get(symbol)
        if cs is None or mark is None or mark <= 0:
            return base
        lot = self.instruments[symbol].lot_size
        return (base * mark / cs / lot).to_integral_value(ROUND_DOWN) * lot

    def _prices(self, symbols: Iterable[str], mark: Callable[[str], Decimal | None],
                positions: Mapping[str, Position]) -> dict[str, Decimal]:
        out: dict[str, Decimal] = {}
        for sym in symbols:
            m = mark(sym)
            if m is not None and m > 0:
                self._last_mark[sym] = m
            else:
                m = self._last_mark.get(sym)
                if m is None:
                    pos = positions.get(sym)
                    m = pos.avg_price if pos is not None and pos.avg_price > 0 else None
            if m is not None:
                out[sym] = m
        return out

    def _units(self, prices: Mapping[str, Decimal]) -> dict[str, Decimal]:
        """Quote value of one unit of quantity per symbol: the price (linear), or the
        contract size whatever the price (inverse)."""
        if not self._contract:
            return dict(prices)
        return {s: self._contract.get(s, p) for s, p in prices.items()}

    # -- trips -----------------------------------------------------------------------------
    @property
    def trips(self) -> list[RiskTrip]:
        return list(self.losses.trips.values())

    @property
    def action(self) -> str | None:
        """The strongest action of the standing trips: "halted", "reducing" or None."""
        trips = self.losses.trips
        if not trips:   # (every order and sizing asks: no set built when nothing stands)
            return None
        actions = {t.action for t in trips.values()}
        return "halted" if "halted" in actions else "reducing" if actions else None

    def _tripped_reason(self, action: str) -> str:
        return "; ".join(f"{t.limit}: {t.reason}" for t in self.losses.trips.values()
                         if t.action == action)

    # -- pre-trade -------------------------------------------------------------------------
    def check(self, order: Order, *, positions: Mapping[str, Position],
              open_orders: Iterable[Order], mark: Callable[[str], Decimal | None],
              now_ns: int) -> str | None:
        """The reason `order` breaks a limit, or None. Never raises on Decimal inputs."""
        cfg = self.cfg
        sym = order.symbol
        side = order.side
        opens = list(open_orders)
        pos_qty = positions[sym].qty if sym in positions else _ZERO
        # One pass over the open orders for everything the checks below need of them (this
        # runs on every order): the open quantity on this order's side of `sym`, the count
        # of `sym`'s open orders, and the worst-case books (limits.books: positions first,
        # then each order's remaining quantity, in the same order, to the same sums).
        same_side = _ZERO
        n_sym = 0
        bk = {s: [p.qty, p.qty] for s, p in positions.items()}   # [long, short]
        for o in opens:
            rem = o.remaining
            s = o.symbol
            if s == sym:
                n_sym += 1
                if o.side is side:
                    same_side += rem
            b = bk.get(s)
            if b is None:
                b = bk[s] = [_ZERO, _ZERO]
            if o.side is Side.BUY:
                b[0] += rem
            else:
                b[1] -= rem
        worst = pos_qty + side.sign * (same_side + order.qty)
        action = self.action
        if action == "halted":
            return f"risk limit tripped (halted): {self._tripped_reason('halted')}"
        if action == "reducing" and (abs(worst) > abs(pos_qty) or worst * pos_qty < 0):
            return (f"risk limit tripped (reducing): position could reach {worst:f} {sym} "
                    f"from {pos_qty:f}; {self._tripped_reason('reducing')}")
        m = mark(sym)
        if m is not None and m > 0:
            self._last_mark[sym] = m   # as _prices would: `sym`'s price is `m` below
        else:
            m = None
        # The other symbols held or ordered (each priced as _prices does), then `sym` at
        # its mark: a market order needs the mark, a limit order its band.
        others = bk.keys() - {sym}
        prices = self._prices(others, mark, positions)
        price = order.price if order.price is not None else m
        if price is None:
            return "no mark price for a market order"
        at = m if m is not None else price   # base-currency limits in contracts at the mark
        reason = (limits.order_qty(order, self._qty_limit(sym, cfg.max_order_qty, at))
                  or limits.order_notional(order.qty * self._contract[sym]
                                           if sym in self._contract else price * order.qty,
                                           cfg.max_order_notional)
                  or limits.price_band(order, m, cfg.price_band_bps)
                  or limits.open_orders(len(opens), cfg.max_open_orders)
                  or limits.symbol_open_orders(sym, n_sym, cfg.max_open_orders_per_symbol)
                  or limits.position(order, pos_qty, same_side,
                                     self.max_position(sym, at)))
        if reason:
            return reason
        prices[sym] = m
        before, after = _exposures_with(bk, self._units(prices), sym, side, order.qty)
        reason = (limits.exposure(before, after, cfg.max_gross_exposure, cfg.max_net_exposure)
                  or self._sent.check(now_ns, cfg.max_orders_per_min, "order",
                                      "max_orders_per_min"))
        if reason:
            return reason
        if cfg.max_var > 0:
            reason = self._check_var(order, positions, same_side, prices)
            if reason:
                return reason
        if cfg.max_stress_loss > 0:
            reason = self._check_stress(order, positions, opens, prices)
        return reason

    def _var_of(self, qtys: Mapping[str, Decimal], prices: Mapping[str, Decimal]
                ) -> Decimal | None:
        cfg = self.cfg
        syms = sorted(s for s in qtys if s in prices)
        rets = self.window.returns(syms)
        units = self._units(prices)
        exp = [float(qtys[s] * units[s]) for s in syms]
        est = var.estimate(var.pnl(rets, exp), cfg.var_method, cfg.var_limit_level)
        return None if est is None else est[0]

    def _check_var(self, order: Order, positions: Mapping[str, Position], same_side: Decimal,
                   prices: Mapping[str, Decimal]) -> str | None:
        cfg = self.cfg
        qtys = {s: p.qty for s, p in positions.items()}
        base = qtys.get(order.symbol, _ZERO) + order.side.sign * same_side
        before = self._var_of({**qtys, order.symbol: base}, prices)
        after = self._var_of({**qtys, order.symbol: base + order.side.sign * order.qty},
                             prices)
        if after is None:
            return None   # warming up: too few returns to estimate (shown in status)
        if after > cfg.max_var and (before is None or after > before):
            return (f"VaR ({cfg.var_method} {cfg.var_limit_level:g}) could reach {fmt(after)}, "
                    f"max_var is {cfg.max_var} (now {_s(before)})")
        return None

    def _stress_worst(self, positions: Mapping[str, Position], orders: Iterable[Order],
                      prices: Mapping[str, Decimal], spreads: Mapping[str, Decimal]
                      ) -> tuple[list[tuple[str, Decimal]], str | None, Decimal]:
        res = stress.run(self.scenarios, {s: p.qty for s, p in positions.items()}, orders,
                         prices, spreads, self._spread_bps, self._contract)
        name, loss = stress.worst(res)
        return res, name, loss

    def _check_stress(self, order: Order, positions: Mapping[str, Position],
                      opens: list[Order], prices: Mapping[str, Decimal]) -> str | None:
        cfg = self.cfg
        _, _, before = self._stress_worst(positions, opens, prices, {})
        _, name, after = self._stress_worst(positions, [*opens, order], prices, {})
        if after > cfg.max_stress_loss and after > before:
            return (f"stress loss could reach {fmt(after)} ({name}), max_stress_loss is "
                    f"{cfg.max_stress_loss} (now {fmt(before)})")
        return None

    def note_sent(self, order: Order, now_ns: int) -> None:
        """An order left for the venue: counts toward max_orders_per_min."""
        self._sent.note(now_ns)

    def check_cancel(self, now_ns: int) -> str | None:
        """For STRATEGY cancels only: cancels the safety chain decides (e-stop, halt,
        fault, reducing, stop) are never subject to a rate."""
        return self._cancels.check(now_ns, self.cfg.max_cancels_per_min, "cancel",
                                   "max_cancels_per_min")

    def note_cancel(self, now_ns: int) -> None:
        self._cancels.note(now_ns)

    # -- continuous ------------------------------------------------------------------------
    def on_fill(self, fill: Fill, position_after: Position, now_ns: int) -> None:
        """Count round trips. A losing-streak trip it causes is returned by the next
        evaluate() (one path for every trip)."""
        self.losses.on_fill(fill, position_after, now_ns)

    def sample(self, positions: Mapping[str, Position], marks: Mapping[str, Decimal | None],
               now_ns: int) -> bool:
        """Feed the VaR window (kept at most once per var_sample_interval_s)."""
        # Only real marks: a stand-in price (last mark, average price) would put a return
        # into the window that the market never made.
        return self.window.sample(marks, now_ns)

    def evaluate(self, positions: Mapping[str, Position], marks: Mapping[str, Decimal | None],
                 now_ns: int, *, open_orders: Iterable[Order] = (),
                 spreads: Mapping[str, Decimal] | None = None) -> list[RiskTrip]:
        """New trips only (each once). Call it periodically and after fills."""
        cfg = self.cfg
        prices = self._prices({*positions, *marks}, marks.get, positions)
        new = self.losses.evaluate(positions, prices, now_ns)   # (records its own)
        trips = self.losses.trips
        more: list[RiskTrip] = []
        if cfg.var_action != "off" and "var" not in trips:
            v = self._var_of({s: p.qty for s, p in positions.items()}, prices)
            if v is not None and v > cfg.max_var:
                more.append(RiskTrip(
                    "var", cfg.var_action,
                    f"VaR ({cfg.var_method} {cfg.var_limit_level:g}) {fmt(v)} beyond max_var "
                    f"{cfg.max_var}", {"var": fmt(v), "limit": str(cfg.max_var),
                                       "method": cfg.var_method,
                                       "level": f"{cfg.var_limit_level:g}"}, now_ns))
        if cfg.stress_action != "off" and "stress" not in trips:
            _, name, loss = self._stress_worst(positions, open_orders, prices, spreads or {})
            if loss > cfg.max_stress_loss:
                more.append(RiskTrip(
                    "stress", cfg.stress_action,
                    f"stress loss {fmt(loss)} ({name}) beyond max_stress_loss "
                    f"{cfg.max_stress_loss}", {"loss": fmt(loss), "scenario": str(name),
                                               "limit": str(cfg.max_stress_loss)}, now_ns))
        for t in more:
            trips[t.limit] = t
        new += more
        for t in new:
            log.warning("risk limit %s tripped (%s): %s", t.limit, t.action, t.reason)
        return new

    # -- sizing ----------------------------------------------------------------------------
    def size(self, symbol: str, side: Side, requested: Decimal, *, edge: Decimal | float,
             variance: Decimal | float, positions: Mapping[str, Position],
             open_orders: Iterable[Order], mark: Callable[[str], Decimal | None],
             price: Decimal | None = None) -> Decimal:
        """The quantity risk allows for a strategy's request: min(requested, fractional
        Kelly, every limit's headroom), down to the lot; never more than `requested`,
        0 when edge <= 0 or variance <= 0. `price`: the order's limit price, if any (for
        the notional cap). VaR and stress are left to check()."""
        cfg = self.cfg
        inst = self.instruments.get(symbol)
        opens = list(open_orders)
        prices = self._prices({symbol, *positions, *(o.symbol for o in opens)}, mark,
                              positions)
        m = prices.get(symbol)
        if inst is None or m is None or self.action == "halted":
            return _ZERO
        equity = self.losses.equity if self.losses.equity is not None else \
            self.cfg.capital
        units = self._units(prices)
        u = units[symbol]   # quote value of one unit of quantity (contracts for inverse)
        kelly = sizing.kelly_qty(to_decimal(edge), to_decimal(variance), cfg.kelly_fraction,
                                 equity, u)
        pos_qty = positions[symbol].qty if symbol in positions else _ZERO
        bk = limits.books({s: p.qty for s, p in positions.items()}, opens)
        mine = bk.get(symbol, Book(_ZERO, _ZERO))
        pos_room = max(self.max_position(symbol, m), abs(pos_qty))
        others = {s: b for s, b in bk.items() if s != symbol}
        gross_others, _ = limits.exposures(others, units)
        net_long = net_short = _ZERO
        for s, b in bk.items():
            if s in units:
                net_long += b.long * units[s]
                net_short += b.short * units[s]
        caps = [self._qty_limit(symbol, cfg.max_order_qty, m),
                cfg.max_order_notional / (u if symbol in self._contract else max(m, price or m)),
                sizing.side_headroom(side, mine, pos_room),
                sizing.side_headroom(side, mine, max((cfg.max_gross_exposure - gross_others)
                                                     / u, mine.gross)),
                sizing.net_headroom(side, net_long, net_short, cfg.max_net_exposure, u)]
        if self.action == "reducing":   # toward 0 only, never through it
            caps.append(-mine.long if side is Side.BUY else mine.short)
        return sizing.size(requested, kelly, caps, inst.lot_size)

    # -- status ----------------------------------------------------------------------------
    def status(self, positions: Mapping[str, Position], marks: Mapping[str, Decimal | None],
               now_ns: int, *, open_orders: Iterable[Order] = (),
               spreads: Mapping[str, Decimal] | None = None) -> dict:
        """Every limit as used / limit (Decimals as str, "0" limits shown as off), the
        VaR/CVaR table, the stress table and the standing trips."""
        cfg = self.cfg
        opens = list(open_orders)
        prices = self._prices({*positions, *marks}, lambda s: marks.get(s), positions)
        bk = limits.books({s: p.qty for s, p in positions.items()}, opens)
        units = self._units(prices)
        gross, net = limits.exposures(bk, units)
        lf = self.losses.figures()

        def ul(used: object, limit: object) -> dict:
            return {"used": None if used is None else str(used), "limit": str(limit)}

        def off(limit: Decimal) -> str:
            return "off" if limit == 0 else str(limit)

        syms = sorted({*positions, *(o.symbol for o in opens)})
        qtys = {s: p.qty for s, p in positions.items()}
        v_now = self._var_of(qtys, prices)
        res, name, loss = self._stress_worst(positions, opens, prices, spreads or {})
        priced = sorted(s for s in qtys if s in prices)
        p = var.pnl(self.window.returns(priced), [float(qtys[s] * units[s]) for s in priced])
        eq = self.losses.equity
        day = self.losses.day
        return {
            "action": self.action,
            "trips": [t.as_dict() for t in self.losses.trips.values()],
            "limits": {
                "max_order_qty": {"limit": str(cfg.max_order_qty)},
                "max_order_notional": {"limit": str(cfg.max_order_notional)},
                "price_band_bps": {"limit": f"{cfg.price_band_bps:g}"},
                "open_orders": ul(len(opens), cfg.max_open_orders),
                "open_orders_per_symbol": {
                    s: ul(sum(1 for o in opens if o.symbol == s), cfg.max_open_orders_per_symbol)
                    for s in syms},
                "position": {s: ul(_s(abs(qtys.get(s, _ZERO))),
                                   self.max_position(s, prices.get(s)))
                             for s in syms},
                "gross_exposure": ul(_s(gross), cfg.max_gross_exposure),
                "net_exposure": ul(_s(net), cfg.max_net_exposure),
                "orders_per_min": ul(self._sent.count(now_ns), cfg.max_orders_per_min),
                "cancels_per_min": ul(self._cancels.count(now_ns), cfg.max_cancels_per_min),
                "daily_loss": ul(_s(lf["daily_loss"]), cfg.daily_loss_limit),
                "drawdown": ul(_s(lf["drawdown"]), cfg.max_drawdown),
                "losing_streak": ul(lf["losing_streak"], cfg.max_losing_streak),
                "var": {"used": _s(v_now), "limit": off(cfg.max_var)},
                "stress": {"used": _s(loss), "limit": off(cfg.max_stress_loss)},
            },
            "equity": _s(eq),
            "day": None if day is None else (_EPOCH + dt.timedelta(days=day)).isoformat(),
            "day_start_equity": _s(self.losses.day_start),
            "peak": _s(self.losses.peak),
            "var": {"method": cfg.var_method, "level": f"{cfg.var_limit_level:g}",
                    "returns": self.window.n_returns, "window": cfg.var_window,
                    "min_returns": var.MIN_RETURNS, "interval_s": cfg.var_sample_interval_s,
                    "table": var.table(p, cfg.var_levels)},
            "stress": {"scenarios": {n: _s(x) for n, x in res},
                       "worst": {"scenario": name, "loss": _s(loss)},
                       "limit": off(cfg.max_stress_loss)},
        }

    # -- operator and restart ----------------------------------------------------------------
    def reset(self) -> None:
        """Operator reset: lift every trip; the loss limits start afresh from the equity
        at the next evaluate()."""
        self.losses.reset()

    def snapshot(self, window: bool = True) -> dict:
        """JSON-able state to keep across a restart: the loss limits' state and trips
        (small: store it with every trip, reset and fill if you like), and with `window`
        the VaR window too (up to var_window samples: store it now and then, so that a
        restart does not leave the VaR limit warming up again)."""
        snap = {"version": SNAPSHOT_VERSION, "losses": self.losses.snapshot()}
        if window:
            snap["var_window"] = [[ts, marks] for ts, marks in self.window.samples]
        return snap

    def restore(self, snap: Mapping) -> None:
        """Back to the state `snapshot()` gave (a snapshot without the window leaves the
        window as it is). Raises ValueError on anything else, changing nothing."""
        if not isinstance(snap, Mapping) or snap.get("version") != SNAPSHOT_VERSION:
            raise ValueError(f"risk engine snapshot version "
                             f"{snap.get('version') if isinstance(snap, Mapping) else snap!r}"
                             f", expected {SNAPSHOT_VERSION}")
        try:
            samples = None if "var_window" not in snap else \
                [(int(ts), {str(k): float(v) for k, v in marks.items()})
                 for ts, marks in snap["var_window"]]
        except (TypeError, ValueError, AttributeError) as e:
            raise ValueError(f"risk engine snapshot unreadable: {e!r}") from None
        if "losses" not in snap:
            raise ValueError("risk engine snapshot unreadable: no loss-limit state")
        self.losses.restore(snap["losses"])
        if samples is not None:
            self.window.replace(samples)
