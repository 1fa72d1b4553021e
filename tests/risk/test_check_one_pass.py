"""RiskEngine.check computes what it needs of the open orders in one pass, and the exposure
before and after the order in another (`_exposures_with`). These tests hold it to the
definition it replaced: the limits one at a time, over `limits.books` and
`limits.exposures` (the reference below is the previous body of check(), kept verbatim).
Reasons must be equal to the character (the figures in them included), and so must the
engine's memory of last good marks, which later prices a symbol without a mark."""
from __future__ import annotations

from decimal import Decimal as D

from hypothesis import HealthCheck, given, settings, strategies as st

from daemon.config import InstrumentCfg, RiskCfg
from daemon.execution.orders import Order, OrderStatus, OrderType, Position, Side
from daemon.risk import limits
from daemon.risk.engine import RiskEngine, _exposures_with
from daemon.risk.limits import Book
from daemon.risk.losses import RiskTrip

BTC, ETH, PERP = "BTCUSDT", "ETHUSDT", "BTCUSD_PERP"
INSTRUMENTS = {
    BTC: InstrumentCfg(tick_size="0.01", lot_size="0.00001", min_notional="5"),
    ETH: InstrumentCfg(tick_size="0.01", lot_size="0.0001", min_notional="5"),
    PERP: InstrumentCfg(tick_size="0.1", lot_size="1", min_notional="0", kind="inverse",
                        contract_size="100"),
}
_ZERO = D(0)


def reference_check(e: RiskEngine, order: Order, *, positions, open_orders, mark, now_ns):
    """RiskEngine.check as it was before the one-pass version (the definition)."""
    cfg = e.cfg
    sym = order.symbol
    opens = [o for o in open_orders]
    pos_qty = positions[sym].qty if sym in positions else _ZERO
    same_side = sum((o.remaining for o in opens if o.symbol == sym and o.side is order.side),
                    _ZERO)
    worst = pos_qty + order.side.sign * (same_side + order.qty)
    action = e.action
    if action == "halted":
        return f"risk limit tripped (halted): {e._tripped_reason('halted')}"
    if action == "reducing" and (abs(worst) > abs(pos_qty) or worst * pos_qty < 0):
        return (f"risk limit tripped (reducing): position could reach {worst:f} {sym} "
                f"from {pos_qty:f}; {e._tripped_reason('reducing')}")
    prices = e._prices({sym, *positions, *(o.symbol for o in opens)}, mark, positions)
    m = mark(sym)
    m = m if m is not None and m > 0 else None
    price = order.price if order.price is not None else m
    if price is None:
        return "no mark price for a market order"
    at = m if m is not None else price
    reason = (limits.order_qty(order, e._qty_limit(sym, cfg.max_order_qty, at))
              or limits.order_notional(order.qty * e._contract[sym]
                                       if sym in e._contract else price * order.qty,
                                       cfg.max_order_notional)
              or limits.price_band(order, m, cfg.price_band_bps)
              or limits.open_orders(len(opens), cfg.max_open_orders)
              or limits.symbol_open_orders(sym, sum(1 for o in opens if o.symbol == sym),
                                           cfg.max_open_orders_per_symbol)
              or limits.position(order, pos_qty, same_side, e.max_position(sym, at)))
    if reason:
        return reason
    prices[sym] = m
    units = e._units(prices)
    bk = limits.books({s: p.qty for s, p in positions.items()}, opens)
    before = limits.exposures(bk, units)
    bk_after = dict(bk)
    bk_after[sym] = bk.get(sym, Book(_ZERO, _ZERO)).add(order.side, order.qty)
    reason = (limits.exposure(before, limits.exposures(bk_after, units),
                              cfg.max_gross_exposure, cfg.max_net_exposure)
              or e._sent.check(now_ns, cfg.max_orders_per_min, "order", "max_orders_per_min"))
    if reason:
        return reason
    if cfg.max_var > 0:
        reason = e._check_var(order, positions, same_side, prices)
        if reason:
            return reason
    if cfg.max_stress_loss > 0:
        reason = e._check_stress(order, positions, opens, prices)
    return reason


def _same(a: tuple, b: tuple) -> bool:
    """Equal values AND equal text (a Decimal's exponent shows in a reason's figures)."""
    return a == b and [str(x) for x in a] == [str(x) for x in b]


# -- _exposures_with against limits.exposures over limits.books --------------------------------
SYMS = [BTC, ETH, PERP, "SOLUSDT"]
amounts = st.decimals(min_value=D("-5"), max_value=D("5"), places=5, allow_nan=False)
prices_ = st.decimals(min_value=D("0.01"), max_value=D("99999"), places=2, allow_nan=False)


@settings(max_examples=300, deadline=None)
@given(books=st.dictionaries(st.sampled_from(SYMS), st.tuples(amounts, amounts), max_size=4),
       units=st.dictionaries(st.sampled_from(SYMS), prices_, max_size=4),
       sym=st.sampled_from(SYMS), side=st.sampled_from([Side.BUY, Side.SELL]),
       qty=st.decimals(min_value=D("0.00001"), max_value=D("3"), places=5))
def test_exposures_with_equals_exposures_before_and_after(books, units, sym, side, qty):
    bk = {s: Book(lo, sh) for s, (lo, sh) in books.items()}
    after = dict(bk)
    after[sym] = bk.get(sym, Book(_ZERO, _ZERO)).add(side, qty)
    want = (limits.exposures(bk, units), limits.exposures(after, units))
    got = _exposures_with({s: [lo, sh] for s, (lo, sh) in books.items()}, units, sym, side,
                          qty)
    assert _same(got[0], want[0]) and _same(got[1], want[1])


def test_exposures_with_by_hand():
    # BTC held long 0.01 with a sell of 0.02 open; ETH has no price (counts 0); a buy of
    # 0.005 BTC at 50000: gross 500 -> 750 (long side 0.015), net max(|500|, |-500|) -> 750.
    bk = {BTC: [D("0.01"), D("-0.01")], ETH: [D("3"), D("3")]}
    before, after = _exposures_with(bk, {BTC: D("50000")}, BTC, Side.BUY, D("0.005"))
    assert before == (D("500"), D("500")) and after == (D("750"), D("750"))
    # A first order of a symbol not in the books adds that symbol (a sell: short side).
    before, after = _exposures_with({}, {ETH: D("2000")}, ETH, Side.SELL, D("0.5"))
    assert before == (0, 0) and after == (D("1000"), D("1000"))
    # ... and adds nothing without a price for it.
    assert _exposures_with({}, {}, ETH, Side.SELL, D("0.5")) == ((0, 0), (0, 0))
    assert bk == {BTC: [D("0.01"), D("-0.01")], ETH: [D("3"), D("3")]}, "books unchanged"


# -- check() against the reference -------------------------------------------------------------
def _order(i: int, sym: str, side: Side, qty: D, price: D | None, filled: D = _ZERO) -> Order:
    return Order(f"c{i}", sym, side, OrderType.LIMIT if price is not None else OrderType.MARKET,
                 qty, price, status=OrderStatus.NEW, filled_qty=filled)


def _engine(**risk) -> RiskEngine:
    return RiskEngine(RiskCfg(**risk), INSTRUMENTS)


sides = st.sampled_from([Side.BUY, Side.SELL])
qtys = st.sampled_from([D("0.0001"), D("0.001"), D("0.0015"), D("0.01"), D("0.02"), D("1"),
                        D("3")])
marks_ = st.sampled_from([None, D("0"), D("-1"), D("2000"), D("50000"), D("60000.5")])
open_order = st.tuples(st.sampled_from(SYMS[:3]), sides, qtys,
                       st.sampled_from([None, D("1990"), D("49900"), D("60100")]),
                       st.sampled_from([_ZERO, D("0.0001")]))
risk_cfgs = st.fixed_dictionaries({
    "max_open_orders": st.sampled_from([2, 4, 50]),
    "max_open_orders_per_symbol": st.sampled_from([1, 3, 20]),
    "max_gross_exposure": st.sampled_from([D("100"), D("2000"), D("1000000")]),
    "max_net_exposure": st.sampled_from([D("50"), D("1500"), D("1000000")]),
    "max_order_notional": st.sampled_from([D("10"), D("1000"), D("100000")]),
    "max_orders_per_min": st.sampled_from([1, 600]),
    "max_stress_loss": st.sampled_from([D("0"), D("5"), D("1000")]),
})


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cfg=risk_cfgs, held=st.dictionaries(st.sampled_from(SYMS[:3]),
                                           st.tuples(qtys, st.booleans(), prices_), max_size=3),
       opens=st.lists(open_order, max_size=5), sym=st.sampled_from(SYMS[:3]), side=sides,
       qty=qtys, price=st.sampled_from([None, D("1995"), D("49990"), D("50010"), D("70000")]),
       mk=st.fixed_dictionaries({s: marks_ for s in SYMS[:3]}),
       remembered=st.dictionaries(st.sampled_from(SYMS[:3]), prices_, max_size=2),
       trip=st.sampled_from([None, "reducing", "halted"]), sent=st.integers(0, 2))
def test_check_equals_the_one_measure_at_a_time_definition(cfg, held, opens, sym, side, qty,
                                                           price, mk, remembered, trip, sent):
    new, ref = _engine(**cfg), _engine(**cfg)
    for e in (new, ref):
        e._last_mark.update(remembered)
        if trip is not None:
            e.losses.trips["x"] = RiskTrip("x", trip, "why", {}, 0)
        for t in range(sent):
            e.note_sent(None, t)
    positions = {}
    for s, (q, short, avg) in held.items():
        positions[s] = Position(s, -q if short else q, avg)
    oo = [_order(i, *o) for i, o in enumerate(opens)]
    order = _order(99, sym, side, qty, price)
    calls: list[str] = []

    def mark(s: str) -> D | None:
        calls.append(s)
        return mk[s]

    got = new.check(order, positions=positions, open_orders=iter(oo), mark=mark, now_ns=10)
    want = reference_check(ref, order, positions=positions, open_orders=iter(oo),
                           mark=mk.get, now_ns=10)
    assert got == want
    assert new._last_mark == ref._last_mark, "the last good marks remembered must be equal"
    assert set(calls) <= {sym, *positions, *(o.symbol for o in oo)}
    assert new._sent.count(10) == ref._sent.count(10)


def test_check_remembers_the_orders_mark_and_prices_others_from_memory():
    # Found by nothing else: the order's symbol's good mark is remembered by check() itself
    # (not only by _prices), and a held symbol without a mark is priced at the last one.
    e = _engine(max_gross_exposure=D("2000"), max_net_exposure=D("1000000"),
                max_order_notional=D("100000"))
    held = {ETH: Position(ETH, D("0.5"), D("1000"))}
    m = {BTC: D("50000"), ETH: D("2100")}
    buy = _order(1, BTC, Side.BUY, D("0.001"), D("49990"))
    assert e.check(buy, positions=held, open_orders=[], mark=m.get, now_ns=1) is None
    assert e._last_mark == {BTC: D("50000"), ETH: D("2100")}
    # ETH's mark is gone: its position is priced at 2100 (remembered), not at its 1000 entry.
    m[ETH] = None
    big = _order(2, BTC, Side.BUY, D("0.02"), D("49990"))
    assert e.check(big, positions=held, open_orders=[], mark=m.get, now_ns=2) == (
        "gross exposure could reach 2050.00, max_gross_exposure is 2000 (now 1050.0)")
    # A mark of 0 is not a good mark: the memory keeps the last good one.
    m[BTC] = D("0")
    sell = _order(3, BTC, Side.SELL, D("0.001"), D("50010"))
    assert e.check(sell, positions=held, open_orders=[], mark=m.get, now_ns=3) == \
        "no trusted reference price for the price band"
    assert e._last_mark[BTC] == D("50000")
