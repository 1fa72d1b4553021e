"""The executor (daemon/engine/executor.py) on a real core: parent orders driven by the
engine clock, children through the real gateway, paper venue and SQLite journal; the
operator's `flatten` on an in-process supervisor; and the e-stop's flatten, which must stay
an immediate sweep and never become a schedule."""
from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest

from daemon import config
from daemon.control import ctl, render
from daemon.control.server import CommandError
from daemon.engine.executor import ParentOrder
from daemon.execution.algos.almgren_chriss import ACParams, optimal_trajectory
from daemon.execution.algos.twap import twap_plan
from daemon.execution.orders import OrderType, Side, TimeInForce
from daemon.states import State
from daemon.strategy.api import Cancel, Execute, Strategy
from tests.engine_rig import MS, EngineRig
from tests.test_sabotage import boot, stop, until

SYM = "BTCUSDT"
S = 1000 * MS
BIDS = [(59999.0, 1.0), (59990.0, 5.0)]
ASKS = [(60001.0, 1.0), (60010.0, 5.0)]


def rig(tmp_path, **execution) -> EngineRig:
    # Room for positions of a few hundredths of a BTC bought in one order.
    r = EngineRig(tmp_path, overrides={"execution": execution,
                                       "risk": {"max_order_notional": "5000"}})
    r.engine.strategy = None   # only the executor's orders on this core
    r.start(BIDS, ASKS)
    return r


def go_long(r: EngineRig, qty: str) -> None:
    r.gw.submit(SYM, Side.BUY, Decimal(qty), type=OrderType.MARKET, tif=TimeInForce.IOC)
    r.idle(1)
    assert r.gw.position(SYM).qty == Decimal(qty)


def children(r: EngineRig) -> list[dict]:
    """The executor's child orders from the journal, oldest first."""
    return [o for o in reversed(r.journal.recent_orders(limit=1000))
            if o["type"] == "limit" and o["tif"] == "ioc"]


def idle_until(r: EngineRig, t_ns: int) -> None:
    """One market event exactly at `t_ns` (the engine clock lands on it)."""
    r.idle((t_ns - r.t) / MS)
    assert r.t == t_ns


# -- TWAP through the gateway ---------------------------------------------------------------
def test_twap_flatten_sends_planned_slices_reduce_only_and_ends_flat(tmp_path):
    r = rig(tmp_path)
    go_long(r, "0.01")
    ex = r.engine.executor
    pid = ex.start(ParentOrder(SYM, Side.SELL, Decimal("0.01"), algo="twap", duration_s=10,
                               slices=5, reduce_only=True, reason="test flatten"))
    t0 = r.t
    plan = twap_plan(Decimal("0.01000"), t0, t0 + 10 * S, lot=Decimal("0.00001"), n_slices=5)
    assert [(t, q) for t, q in plan] == [(t0 + 2 * S * i, Decimal("0.00200")) for i in range(5)]
    assert ex.status()[0]["plan"] == [[t, str(q)] for t, q in plan]
    for t, _ in plan[1:]:
        idle_until(r, t - MS)          # just before the slot: nothing new goes out
        before = len(children(r))
        idle_until(r, t)
        assert len(children(r)) == before + 1
    idle_until(r, t0 + 10 * S)
    sent = children(r)
    assert [(o["created_ns"], Decimal(o["qty"])) for o in sent] == plan
    limit = Decimal("59999") * (1 - Decimal("0.005"))   # bid minus the 50 bps cap
    for o in sent:
        assert o["side"] == "sell" and o["reduce_only"] is True
        assert Decimal(o["price"]) == limit.quantize(Decimal("0.01"), rounding="ROUND_UP")
        assert o["status"] == "filled"
    assert r.gw.position(SYM).qty == 0
    st = ex.status()[0]
    assert (st["id"], st["state"], st["end_reason"], st["filled"]) == \
        (pid, "done", "filled", "0.01000")
    assert not ex.active and ex.wake_ns > r.t
    kinds = [k for _, k, d in r.journal.audit_rows() if k.startswith("execution_")]
    assert kinds == ["execution_start", "execution_end"]


def test_unfilled_child_qty_goes_back_to_later_slices_under_the_slice_cap(tmp_path):
    # Only 0.001 bid (the level below removed): the first 0.004 child fills 0.001 and
    # its IOC remainder expires; the 0.003 goes back to the schedule, spread over the
    # slices still to come, each capped at max_slice 0.005.
    r = rig(tmp_path, max_slippage_bps=10.0)
    go_long(r, "0.012")
    r.diff([(59999.0, 0.001), (59990.0, 0.0)], [])   # a thin bid, nothing below it
    ex = r.engine.executor
    ex.start(ParentOrder(SYM, Side.SELL, Decimal("0.012"), algo="twap", duration_s=4,
                         slices=3, max_slice=Decimal("0.005"), reduce_only=True))
    t0 = r.t
    r.idle(1)   # the venue takes the first child
    first = children(r)[0]
    assert (first["created_ns"], first["qty"], first["filled_qty"], first["status"]) == \
        (t0, "0.00400", "0.00100", "expired")
    st = ex.status()[0]
    assert (Decimal(st["filled"]), Decimal(st["in_flight"])) == (Decimal("0.001"), 0)
    # The book refills; the 0.003 handed back went to the two slices left (0.0015 each):
    # 0.004 + 0.0015 = 0.0055 exceeds the cap of 0.005, so each sends 0.005 and defers
    # the rest, which the last slot cannot place: it is reported, never sent.
    r.diff([(59999.0, 1.0)], [])
    plan_t = [t0 + (i * 4 * S) // 3 for i in range(3)]
    idle_until(r, plan_t[1])
    idle_until(r, plan_t[2])
    r.idle(1)
    qtys = [Decimal(o["qty"]) for o in children(r)]
    assert qtys == [Decimal("0.004"), Decimal("0.005"), Decimal("0.005")]
    assert all(q <= Decimal("0.005") for q in qtys)
    st = ex.status()[0]
    assert st["state"] == "unfinished" and Decimal(st["unfinished"]) == Decimal("0.001")
    assert r.gw.position(SYM).qty == Decimal("0.001")


def test_a_missed_slot_is_caught_up_in_one_capped_child(tmp_path):
    r = rig(tmp_path)
    go_long(r, "0.01")
    ex = r.engine.executor
    ex.start(ParentOrder(SYM, Side.SELL, Decimal("0.01"), algo="twap", duration_s=10,
                         slices=5, max_slice=Decimal("0.003"), reduce_only=True))
    t0 = r.t
    idle_until(r, t0 + 5 * S)   # no event at t0+2s: slots 1 and 2 fall due together
    qtys = [Decimal(o["qty"]) for o in children(r)]
    assert qtys == [Decimal("0.002"), Decimal("0.003")]   # 0.004 wanted, capped at 0.003
    idle_until(r, t0 + 6 * S)   # the 0.001 deferred went half to each slot left
    idle_until(r, t0 + 8 * S)
    r.idle(1)
    assert [Decimal(o["qty"]) for o in children(r)] == \
        [Decimal("0.002"), Decimal("0.003"), Decimal("0.0025"), Decimal("0.0025")]
    assert r.gw.position(SYM).qty == 0 and ex.status()[0]["state"] == "done"


def test_participation_caps_a_child_at_a_share_of_recent_volume(tmp_path):
    r = rig(tmp_path, max_participation=0.5)
    go_long(r, "0.01")
    for _ in range(3):
        r.trade(59999.0, 0.002, dt_ms=100)   # 0.006 traded in the last slice interval
    ex = r.engine.executor
    ex.start(ParentOrder(SYM, Side.SELL, Decimal("0.01"), algo="twap", duration_s=2,
                         slices=2, reduce_only=True))
    r.idle(1)
    assert [Decimal(o["qty"]) for o in children(r)] == [Decimal("0.003")]
    idle_until(r, r.t + 2 * S)   # no trade since: the limit is zero, nothing is sent
    assert len(children(r)) == 1
    st = ex.status()[0]
    assert st["state"] == "unfinished" and Decimal(st["unfinished"]) == Decimal("0.007")


def test_cancel_stops_the_schedule(tmp_path):
    r = rig(tmp_path)
    go_long(r, "0.01")
    ex = r.engine.executor
    pid = ex.start(ParentOrder(SYM, Side.SELL, Decimal("0.01"), algo="twap", duration_s=10,
                               slices=5, reduce_only=True))
    r.idle(1)
    ex.cancel(pid, "operator")
    idle_until(r, r.t + 10 * S)
    assert len(children(r)) == 1 and r.gw.position(SYM).qty == Decimal("0.008")
    st = ex.status()[0]
    assert (st["state"], st["end_reason"]) == ("cancelled", "operator")
    with pytest.raises(KeyError):
        ex.cancel(pid, "again")


def test_a_halt_stops_the_schedule_for_good(tmp_path):
    r = rig(tmp_path)
    go_long(r, "0.01")
    ex = r.engine.executor
    ex.start(ParentOrder(SYM, Side.SELL, Decimal("0.01"), algo="twap", duration_s=10,
                         slices=5, reduce_only=True))
    r.idle(1)
    r.control.halt("test")
    idle_until(r, r.t + 10 * S)
    st = ex.status()[0]
    assert st["state"] == "stopped" and st["end_reason"].startswith("latch:")
    assert len(children(r)) == 1


def test_a_parent_that_cannot_run_is_refused_with_the_reason(tmp_path):
    r = rig(tmp_path)
    ex = r.engine.executor
    with pytest.raises(ValueError, match="would not reduce position 0"):
        ex.start(ParentOrder(SYM, Side.SELL, Decimal("0.01"), reduce_only=True))
    with pytest.raises(ValueError, match="below the minimum notional"):
        ex.start(ParentOrder(SYM, Side.BUY, Decimal("0.00005")))
    with pytest.raises(ValueError, match="cannot fit in 2 slices"):
        ex.start(ParentOrder(SYM, Side.BUY, Decimal("0.01"), slices=2,
                             max_slice=Decimal("0.001")))
    go_long(r, "0.0003")   # 18 USDT: at most 3 children clear the 5 USDT minimum notional
    ex.start(ParentOrder(SYM, Side.SELL, Decimal("0.0003"), slices=10, reduce_only=True))
    st = ex.status()[0]
    assert len(st["plan"]) == 3 and "minimum notional" in st["notes"][0]


# -- Almgren–Chriss through the gateway -----------------------------------------------------
AC_IMPACT = {"impact": "configured", "sigma": 5.0, "eta": 50.0, "gamma": 0.0,
             "epsilon": 1.0}


def test_ac_front_loads_against_twap(tmp_path):
    r = rig(tmp_path, risk_aversion=1e-2, **AC_IMPACT)
    go_long(r, "0.04")
    ex = r.engine.executor
    ex.start(ParentOrder(SYM, Side.SELL, Decimal("0.04"), algo="ac", duration_s=10,
                         slices=5, reduce_only=True))
    t0 = r.t
    tr = optimal_trajectory(ACParams(X=Decimal("0.04000"), T=10.0, N=5, sigma=5.0, eta=50.0,
                                     gamma=0.0, epsilon=1.0, lam=1e-2))
    want = tr.lot_quantities(Decimal("0.00001"))
    assert tr.kappa > 0 and sum(want) == Decimal("0.04")
    for k in range(1, 5):
        idle_until(r, t0 + 2 * S * k)
    r.idle(1)
    sent = children(r)
    assert [(o["created_ns"], Decimal(o["qty"])) for o in sent] == \
        [(t0 + 2 * S * k, q) for k, q in enumerate(want)]
    twap_first = Decimal("0.008")
    assert Decimal(sent[0]["qty"]) > twap_first          # front-loaded
    assert [Decimal(o["qty"]) for o in sent] == sorted((Decimal(o["qty"]) for o in sent),
                                                        reverse=True)
    assert r.gw.position(SYM).qty == 0
    st = ex.status()[0]
    assert st["algo"] == "ac" and st["state"] == "done"
    assert st["notes"][0] == "AC impact: configured"
    # lambda = 0 is the straight line: the same parent is TWAP.
    r2 = rig(tmp_path / "b", risk_aversion=0.0, **AC_IMPACT)
    go_long(r2, "0.04")
    r2.engine.executor.start(ParentOrder(SYM, Side.SELL, Decimal("0.04"), algo="ac",
                                         duration_s=10, slices=5, reduce_only=True))
    assert [q for _, q in r2.engine.executor.status()[0]["plan"]] == ["0.00800"] * 5


def test_ac_estimates_impact_from_the_book_and_taped_trades(tmp_path):
    r = rig(tmp_path, risk_aversion=1e-3)
    go_long(r, "0.03")

    def shape(b: float) -> tuple[list, list]:
        # A bid side that gets worse with size (eta > 0) under a 2.0 spread.
        return ([(b, 0.01), (b - 4, 0.01), (b - 9, 0.02), (b - 19, 1.0)], [(b + 2, 1.0)])

    bids, asks = shape(59999.0)
    r.diff(bids + [(59990.0, 0.0)], asks + [(60010.0, 0.0)])
    bid = 59999.0
    for i in range(40):
        buy = i % 3 != 0   # buys lift the mid, sells push it down: Kyle's gamma > 0
        r.trade(bid + 1, 0.001 * (1 + i % 4), buyer_is_maker=not buy, dt_ms=500)
        bid += 0.1 if buy else -0.1
        nb, na = shape(bid)
        gone = {p for p, _ in bids} - {p for p, _ in nb}
        gone_a = {p for p, _ in asks} - {p for p, _ in na}
        r.diff(nb + [(p, 0.0) for p in gone], na + [(p, 0.0) for p in gone_a], dt_ms=1)
        bids, asks = nb, na
    assert r.core.feed.books[SYM].valid
    ex = r.engine.executor
    ex.start(ParentOrder(SYM, Side.SELL, Decimal("0.03"), algo="ac", duration_s=30,
                         slices=3, reduce_only=True))
    st = ex.status()[0]
    assert st["algo"] == "ac", st["notes"]
    assert st["notes"][0].startswith("AC impact estimated from the book and 40 trades")
    imp = st["impact"]
    assert imp["epsilon"] == pytest.approx(1.0)   # half the 2.0 spread
    # Walking the book with 0.005, 0.01, 0.02 over tau = 10 s: only the 0.02 sell pays
    # more than the half spread (2.0 more): eta = 0.002 x 2 / (2 (0.0005^2 + 0.001^2 +
    # 0.002^2)), both sides pooled (the ask side is flat).
    assert imp["eta"] == pytest.approx(0.004 / 1.05e-5)
    assert imp["gamma"] > 0 and imp["sigma"] > 0      # buys lifted the mid, sells pushed it


def test_ac_without_data_falls_back_and_says_so(tmp_path):
    r = rig(tmp_path)
    go_long(r, "0.01")
    ex = r.engine.executor
    ex.start(ParentOrder(SYM, Side.SELL, Decimal("0.01"), algo="ac", reduce_only=True))
    st = ex.status()[0]
    assert st["algo"] == "twap"
    assert st["notes"][0].startswith("AC impact: data insufficient (") and \
        st["notes"][0].endswith("sigma, eta, gamma, epsilon not configured: running TWAP")
    r2 = rig(tmp_path / "b", **{k: v for k, v in AC_IMPACT.items() if k != "impact"})
    go_long(r2, "0.01")
    r2.engine.executor.start(ParentOrder(SYM, Side.SELL, Decimal("0.01"), algo="ac",
                                         reduce_only=True))
    st = r2.engine.executor.status()[0]
    assert st["algo"] == "ac" and st["notes"][0].endswith("configured values used")


def test_execution_config_is_validated():
    with pytest.raises(config.ConfigError, match='impact = "configured" needs eta, gamma'):
        config.with_overrides(config.Config(), execution={"impact": "configured",
                                                          "sigma": 1.0})
    with pytest.raises(config.ConfigError, match=r"\[execution\] max_slippage_bps"):
        config.with_overrides(config.Config(), execution={"max_slippage_bps": 0.0})
    with pytest.raises(config.ConfigError, match=r"\[execution\] algo"):
        config.with_overrides(config.Config(), execution={"algo": "vwap"})


# -- a strategy's Execute intent ------------------------------------------------------------
class Accumulate(Strategy):
    """Buys 0.004 over 4 s by TWAP once armed; stops the execution after two fills."""

    name = "accumulate"

    def __init__(self) -> None:
        super().__init__(None, [SYM])
        self.sent = False
        self.armed = False
        self.fills: list[tuple[str, Decimal]] = []
        self.refused: list[tuple[str, str]] = []

    def on_book(self, ctx, symbol, book):
        if self.sent or not self.armed:
            return ()
        self.sent = True
        return (Execute("in", SYM, Side.BUY, Decimal("0.004"), algo="twap", duration_s=4,
                        reason="enter slowly"),)

    def on_fill(self, ctx, tag, fill):
        self.fills.append((tag, fill.qty))
        return (Cancel("in", "enough"),) if len(self.fills) == 2 else ()

    def on_refused(self, ctx, intent, stage, reason):
        self.refused.append((stage, reason))
        return ()


def test_a_strategys_execute_runs_through_the_executor_and_cancel_stops_it(tmp_path):
    st = Accumulate()
    r = EngineRig(tmp_path, strategy_obj=st)
    r.start(BIDS, ASKS)
    st.armed = True   # trading now (the rig starts in reducing until the first check)
    r.idle(1)
    ex = r.engine.executor
    (row,) = ex.status()
    assert (row["side"], row["qty"], row["reduce_only"], row["reason"]) == \
        ("buy", "0.00400", False, "accumulate: enter slowly")
    t0 = row["started_ns"]
    assert [(t - t0, q) for t, q in row["plan"]] == \
        [(k * 400 * MS, "0.00040") for k in range(10)]   # [execution] slices = 10
    for k in range(1, 4):
        idle_until(r, t0 + k * 400 * MS)
    r.idle(1)
    # Two children filled (the strategy heard both by its tag), then it cancelled.
    assert st.fills == [("in", Decimal("0.0004")), ("in", Decimal("0.0004"))]
    row = ex.status()[0]
    assert (row["state"], row["end_reason"], row["filled"]) == ("cancelled", "enough",
                                                               "0.00080")
    assert r.gw.position(SYM).qty == Decimal("0.0008")
    kids = children(r)
    assert [Decimal(o["qty"]) for o in kids] == [Decimal("0.0004")] * 2
    assert all(o["side"] == "buy" and not o["reduce_only"] for o in kids)
    # A flatten holds the symbol: the strategy's next Execute is refused, with the reason.
    r.engine.executor.start(ParentOrder(SYM, Side.SELL, Decimal("0.0008"), duration_s=600,
                                        slices=2, reduce_only=True, reason="flatten"))
    st.sent = False
    r.idle(1)
    assert st.refused[-1][0] == "execution" and "is being flattened" in st.refused[-1][1]


# -- the daemon: bot4ctl flatten, and the e-stop's sweep ----------------------------------
# The shipped config: the quoter trades BTCUSDT on the synthetic market the whole time.


async def long_position(sup, qty: str) -> None:
    await sup.handle_command({"cmd": "start"})
    gw = sup.gateway
    await until(lambda: sup.market.mark(SYM) is not None, what="mark")
    gw.submit(SYM, Side.BUY, Decimal(qty), type=OrderType.MARKET, tif=TimeInForce.IOC)
    await until(lambda: gw.position(SYM).qty >= Decimal(qty), what="fill")


async def bot4ctl(sup, *argv: str) -> int:
    """The real CLI in a thread (the daemon's loop must keep serving)."""
    return await asyncio.get_running_loop().run_in_executor(
        None, ctl.main, ["--socket", str(sup.socket_path), *argv])


def quotes(sup) -> list:
    return [o for o in sup.gateway.open.values() if o.tif is TimeInForce.POST_ONLY]


def test_bot4ctl_flatten_twap_takes_the_position_to_zero_over_the_schedule(tmp_path):
    async def main():
        sup, task = await boot(tmp_path)
        await long_position(sup, "0.001")
        await until(lambda: len(quotes(sup)) == 2, what="the quoter's quotes")
        pos = sup.gateway.position(SYM).qty
        assert await bot4ctl(sup, "flatten", "--algo", "twap", "--duration", "1") == 0
        ex = sup.engine.executor
        (row,) = ex.status()
        assert (row["symbol"], row["side"], row["algo"], row["reduce_only"], row["qty"]) == \
            ("BTCUSDT", "sell", "twap", True, str(pos))
        assert len(row["plan"]) == 10 and row["plan"][-1][0] - row["plan"][0][0] == 900 * MS
        await until(lambda: ex.status()[0]["state"] != "running", what="flatten over")
        st = ex.status()[0]
        assert (st["state"], st["filled"], sup.gateway.position(SYM).qty) == ("done", str(pos), 0)
        kids = [o for o in sup.journal.recent_orders(limit=200, symbol=SYM)
                if o["tif"] == "ioc" and o["side"] == "sell"]
        assert len(kids) >= 2 and all(o["reduce_only"] for o in kids)
        assert sum(Decimal(o["filled_qty"]) for o in kids) == pos
        # Journalled before it acted: the command row, then the execution's start.
        rows = [(k, d) for _, k, d in sup.journal.audit_rows()
                if k in ("execution_start", "execution_end")
                or (k == "command" and d.get("cmd") == "flatten")]
        assert [k for k, _ in rows] == ["command", "execution_start", "execution_end"]
        assert (rows[0][1]["algo"], rows[0][1]["duration"]) == ("twap", "1.0")
        # The quoter's quotes were pulled, and it placed none while the flatten ran.
        orders = sup.journal.recent_orders(limit=500, symbol=SYM)
        pulled = [o for o in orders if o["reason"] == "pulled by operator flatten"]
        assert len(pulled) == 2
        t0, t1 = ex.status()[0]["started_ns"], ex.status()[0]["ended_ns"]
        assert not [o for o in orders if o["tif"] == "post_only" and t0 <= o["created_ns"] <= t1]
        assert sup.status()["execution"][0]["state"] == "done"
        lines = [ln for ln in render.status_lines(sup.status()) if ln.startswith("execution")]
        assert lines and "x1 BTCUSDT sell" in lines[0] and "reduce-only" in lines[0] \
            and "done" in lines[0]
        await stop(sup, task)
    asyncio.run(main())


def test_bot4ctl_flatten_cancel_stops_it(tmp_path):
    async def main():
        sup, task = await boot(tmp_path)
        await long_position(sup, "0.001")
        assert await bot4ctl(sup, "flatten", "BTCUSDT", "--duration", "600") == 0
        ex = sup.engine.executor
        await until(lambda: ex.status()[0]["filled"] != "0", what="a slice filled")
        with pytest.raises(CommandError, match="already flattening"):
            await sup.handle_command({"cmd": "flatten"})
        pos = sup.gateway.position(SYM).qty
        assert 0 < pos < Decimal("0.001")
        assert await bot4ctl(sup, "flatten", "--cancel") == 0
        st = ex.status()[0]
        assert (st["state"], st["end_reason"]) == ("cancelled", "operator: flatten --cancel")
        assert not ex.active and not ex.holding and ex.wake_ns > 2**61
        assert [d.get("cancel") for _, k, d in sup.journal.audit_rows("command")
                if d.get("cmd") == "flatten"] == [None, None, "True"]
        # No further child: the rest of the position stays (the quoter trades again).
        n = len([o for o in sup.journal.recent_orders(limit=500) if o["tif"] == "ioc"])
        await until(lambda: len(quotes(sup)) == 2, what="the quoter quotes again")
        assert len([o for o in sup.journal.recent_orders(limit=500) if o["tif"] == "ioc"]) == n
        await stop(sup, task)
    asyncio.run(main())


def test_bot4ctl_flatten_refuses_clearly(tmp_path):
    async def main():
        sup, task = await boot(tmp_path)
        with pytest.raises(CommandError, match="flatten needs state trading or reducing"):
            await sup.handle_command({"cmd": "flatten"})
        with pytest.raises(CommandError, match="duration must be a number"):
            await sup.handle_command({"cmd": "flatten", "duration": -1})
        await sup.handle_command({"cmd": "start"})
        assert await sup.handle_command({"cmd": "flatten"}) == \
            {"started": [], "failed": {}, "executions": []}   # nothing open
        assert await bot4ctl(sup, "flatten", "XRPUSDT") == 1
        await stop(sup, task)
    asyncio.run(main())


def test_estop_flatten_is_one_immediate_market_sweep_never_a_schedule(tmp_path):
    async def main():
        sup, task = await boot(tmp_path, {"BOT4__SAFETY__FLATTEN_ON_ESTOP": "true"})
        await long_position(sup, "0.003")
        ex = sup.engine.executor
        # A slow scheduled flatten is running when the e-stop is pressed: the e-stop must
        # neither wait for it nor become one.
        await sup.handle_command({"cmd": "flatten", "duration": 600})
        await until(lambda: ex.status()[0]["filled"] != "0" and not quotes(sup)
                    and not sup.gateway.open, what="a slice filled, quotes pulled")
        n_parents = len(ex.status())
        pos = sup.gateway.position(SYM).qty
        assert pos > 0
        before = {o["client_id"] for o in sup.journal.recent_orders(limit=500)}
        await sup.handle_command({"cmd": "sim", "what": "estop", "action": "press"})
        assert sup.state is State.ESTOP
        await until(lambda: sup.gateway.position(SYM).qty == 0, what="sweep filled")
        sweep = [o for o in sup.journal.recent_orders(limit=500)
                 if o["client_id"] not in before]
        # One market IOC, reduce-only, for the whole position at once; nothing else.
        assert [(o["symbol"], o["side"], o["type"], o["tif"], o["qty"], o["reduce_only"],
                 o["reason"]) for o in sweep] == \
            [(SYM, "sell", "market", "ioc", str(pos), True, "e-stop flatten")]
        assert len(ex.status()) == n_parents, "the e-stop started a schedule"
        assert [d["reason"] for _, _, d in sup.journal.audit_rows("execution_start")] == \
            ["operator flatten"]
        # The running schedule stops at its next slot, on the latch, and sends nothing.
        ex.on_time(ex.wake_ns)
        st = ex.status()[0]
        assert st["state"] == "stopped" and st["end_reason"].startswith("latch:")
        assert [o["client_id"] for o in sup.journal.recent_orders(limit=500)
                if o["client_id"] not in before] == [sweep[0]["client_id"]]
        await stop(sup, task)
    asyncio.run(main())
