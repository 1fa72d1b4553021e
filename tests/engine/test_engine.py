"""The engine in process (tests/engine_rig.py: a real core fed by hand): intents become
gateway calls with the checks applied to every strategy alike; refusals go back to the
strategy; invalid books pull the strategy's orders; the periodic rules run on event time;
the end of the data stops trading; one exception policy for everything dispatched."""
from __future__ import annotations

from decimal import Decimal

import pytest

from daemon.backtest.run import BacktestError
from daemon.execution.orders import Instrument, OrderStatus, Side, TimeInForce
from daemon.states import State
from daemon.strategy.api import Amend, Cancel, Place, Strategy
from tests.engine_rig import MS, EngineRig

BOOK = ([(59999.99, 1.0), (59999.0, 2.0)], [(60000.01, 1.0), (60001.0, 2.0)])
D = Decimal


class Scripted(Strategy):
    """A strategy that says what the test tells it to, once per book update."""
    name = "scripted"

    def __init__(self, symbols=("BTCUSDT",)) -> None:
        super().__init__(None, list(symbols))
        self.next: list = []
        self.books = 0
        self.trades = []
        self.bars = []
        self.fills = []
        self.refusals = []
        self.answer_refusal: list = []
        self.raise_on_book: Exception | None = None

    def on_book(self, ctx, symbol, book):
        self.books += 1
        if self.raise_on_book is not None:
            raise self.raise_on_book
        out, self.next = self.next, []
        return out

    def on_trade(self, ctx, trade):
        self.trades.append(trade.price)
        return ()

    def on_bar(self, ctx, bar):
        self.bars.append(bar.close)
        return ()

    def on_fill(self, ctx, tag, fill):
        self.fills.append((tag, fill.qty))
        return ()

    def on_refused(self, ctx, intent, stage, reason):
        super().on_refused(ctx, intent, stage, reason)
        self.refusals.append((intent.tag, stage, reason))
        out, self.answer_refusal = self.answer_refusal, []
        return out


def rig(tmp_path, **kw) -> tuple[EngineRig, Scripted]:
    s = Scripted(kw.pop("symbols", ("BTCUSDT",)))
    r = EngineRig(tmp_path, strategy_obj=s, **kw)
    r.start(*BOOK)
    return r, s


def bid(px="59990", qty="0.0002", tag="bid", **kw) -> Place:
    return Place(tag, "BTCUSDT", Side.BUY, D(qty), D(px), TimeInForce.POST_ONLY, "test", **kw)


def test_a_place_intent_becomes_a_journalled_order_named_by_its_tag(tmp_path):
    r, s = rig(tmp_path)
    s.next = [bid()]
    r.idle(1)
    (o,) = r.open_orders()
    assert (o.side, o.price, o.qty, o.tif) == (Side.BUY, D("59990.00"), D("0.00020"),
                                               TimeInForce.POST_ONLY)
    assert r.engine.ctx.order("bid").client_id == o.client_id
    assert r.engine.ctx.working("bid") and not r.engine.ctx.working("ask")
    assert [row["client_id"] for row in r.journal.recent_orders()] == [o.client_id]
    assert r.engine.stats["placed"] == 1 and s.stats["intents"] == 1


def test_placing_a_working_tag_replaces_it_and_amend_keeps_the_rest(tmp_path):
    r, s = rig(tmp_path)
    s.next = [bid()]
    r.idle(1)
    first = r.open_orders()[0]
    r.settle()
    s.next = [bid("59980")]
    r.idle(1)
    assert first.status is OrderStatus.PENDING_CANCEL
    r.settle()
    (second,) = r.open_orders()
    assert second.price == D("59980.00") and second.client_id != first.client_id
    s.next = [Amend("bid", price=D("59970"), reason="closer")]
    r.idle(1)
    r.settle()
    (third,) = r.open_orders()
    assert (third.price, third.qty, third.side) == (D("59970.00"), second.qty, Side.BUY)
    s.next = [Cancel("bid", "done")]
    r.idle(1)
    r.settle()
    assert r.open_orders() == [] and r.engine.stats["cancelled"] == 3
    assert not r.engine.ctx.working("bid") and r.engine.ctx.order("bid").status == "cancelled"


def test_amend_of_nothing_and_a_refused_order_go_back_to_the_strategy(tmp_path):
    r, s = rig(tmp_path)
    s.next = [Amend("ghost", price=D("1"))]
    r.idle(1)
    assert s.refusals[-1][:2] == ("ghost", "intent")
    s.next = [bid(qty="0.00001")]   # 0.6 USDT: below the minimum notional
    r.idle(1)
    tag, stage, reason = s.refusals[-1]
    assert (tag, stage) == ("bid", "instrument") and "below minimum" in reason
    assert r.open_orders() == [] and r.engine.refused_by_stage == {"intent": 1,
                                                                   "instrument": 1}


def test_what_a_strategy_answers_to_a_refusal_runs_in_the_same_commit(tmp_path):
    """Both legs or none: the second leg refused, the first is unwound at once."""
    r, s = rig(tmp_path)
    s.next = [bid(tag="leg1"), bid(qty="0.00001", tag="leg2")]
    s.answer_refusal = [Cancel("leg1", "second leg refused")]
    r.idle(1)
    assert [x[:2] for x in s.refusals] == [("leg2", "instrument")]
    # The first leg was withdrawn inside the same commit: it never reached the venue.
    assert r.gw.open == {} and r.core.venue.open_orders() == []
    (row,) = r.journal.recent_orders()
    assert (row["status"], row["reason"]) == ("cancelled",
                                              "second leg refused (before it was sent)")


def test_intents_are_refused_unless_trading_and_cancels_always_pass(tmp_path):
    r, s = rig(tmp_path)
    s.next = [bid()]
    r.idle(1)
    r.settle()
    r.control.halt("operator")
    assert r.open_orders() == [] or all(o.status is OrderStatus.PENDING_CANCEL
                                        for o in r.open_orders())
    s.next = [bid("59980", tag="again")]
    r.idle(1)
    assert s.refusals[-1][:2] == ("again", "state")
    assert r.engine.stats["dropped_not_trading"] == 1


def test_an_invalid_book_pulls_the_strategys_orders_and_it_hears_nothing(tmp_path):
    r, s = rig(tmp_path)
    s.next = [bid()]
    r.idle(1)
    r.settle()
    books = s.books
    r.diff([(59998.0, 1.0)], [], gap=True)
    (o,) = r.gw.open.values()
    assert o.status is OrderStatus.PENDING_CANCEL and o.reason.startswith("pulled: book")
    assert s.books == books and s.standing_aside.startswith("BTCUSDT: book invalid")
    assert r.engine.stats["pulled"] == 1


def test_market_data_reaches_the_strategy_after_the_md_latency(tmp_path):
    s = Scripted()
    r = EngineRig(tmp_path, strategy_obj=s, overrides={"paper": {"md_latency_ms": 5.0}})
    r.start(*BOOK)
    r.quote(59999.99, 60000.01, dt_ms=10)     # (quotes move time and push nothing)
    books = s.books
    r.diff([(59999.5, 1.0)], [], dt_ms=1)     # heard at +5 ms
    assert s.books == books
    r.quote(59999.99, 60000.01, dt_ms=4)      # +4 ms: not yet
    assert s.books == books
    r.quote(59999.99, 60000.01, dt_ms=1)      # +5 ms: heard
    assert s.books == books + 1
    r.trade(60000.0, 0.1, dt_ms=1)
    r.quote(59999.99, 60000.01, dt_ms=4)
    assert s.trades == []
    r.quote(59999.99, 60000.01, dt_ms=1)
    assert s.trades == [60000.0]


def test_bars_reach_the_strategy(tmp_path):
    s = Scripted()
    r = EngineRig(tmp_path, strategy_obj=s, strategy={"bar_interval_s": 1.0})
    r.start(*BOOK)
    r.trade(60000.0, 0.1)
    r.trade(60010.0, 0.1, dt_ms=1200)   # closes the first 1 s bar
    r.idle(1)
    assert s.bars == [60000.0]
    assert r.engine.status()["bars"]["BTCUSDT"]["close"] == 60000.0


def test_fills_reach_the_strategy_by_tag(tmp_path):
    r, s = rig(tmp_path)
    s.next = [Place("take", "BTCUSDT", Side.BUY, D("0.0002"), D("60001"), TimeInForce.IOC,
                    "cross")]
    r.idle(1)
    r.settle()
    assert s.fills == [("take", D("0.00020"))]
    assert r.engine.ctx.position("BTCUSDT") == D("0.00020")


def test_degraded_data_reduces_and_healthy_data_resumes_on_event_time(tmp_path):
    r, s = rig(tmp_path)
    r.diff([(59998.0, 1.0)], [], gap=True)           # invalid book
    r.idle(r.engine.check_ns / MS + 1)
    assert r.control.state is State.REDUCING
    assert r.control.state_reason.startswith("degraded: BTCUSDT book invalid")
    r.snapshot(*BOOK)
    r.idle(r.engine.check_ns / MS + 1)
    assert r.control.state is State.TRADING
    assert [t["to"] for t in r.control.transitions][-2:] == ["reducing", "trading"]


def test_the_end_of_the_data_stops_trading_and_cancels(tmp_path):
    r, s = rig(tmp_path)
    s.next = [bid()]
    r.idle(1)
    r.settle()
    r.engine._on_finished()
    assert r.control.state is State.FINISHED and r.engine.finished
    assert r.open_orders() == []
    assert r.control.summary["orders"] == 1 and r.control.summary["lines"] == 0


def test_one_exception_policy_the_first_error_goes_to_the_control(tmp_path):
    r, s = rig(tmp_path)
    s.raise_on_book = ValueError("strategy bug")
    with pytest.raises(BacktestError, match="strategy bug"):
        r.idle(1)
    assert r.engine.failed and "strategy bug" in r.engine.failed
    assert "strategy bug" in r.control.error_text
    books = s.books
    r.idle(1)   # nothing more is dispatched after the error
    assert s.books == books


def test_a_non_intent_is_an_error_not_ignored(tmp_path):
    r, s = rig(tmp_path)
    s.next = ["buy please"]
    with pytest.raises(BacktestError, match="not an intent"):
        r.idle(1)


@pytest.mark.parametrize("price, lot, want", [
    (60000.0, "0.00001", "0.00020"),    # 12 / 60000 = 0.0002 exactly
    (61000.0, "0.00001", "0.00020"),    # 0.000196.. rounds UP to 0.00020
    (3000.0, "0.0001", "0.0040"),
    (2999.0, "0.001", "0.005"),         # 0.004001.. up to the next lot
])
def test_order_qty_is_the_notional_rounded_up_to_the_lot(tmp_path, price, lot, want):
    r, _ = rig(tmp_path)
    r.engine.instruments["BTCUSDT"] = Instrument("BTCUSDT", D("0.01"), D(lot), D("5"))
    q = r.engine.order_qty("BTCUSDT", price)
    assert q == D(want) and str(q) == want
    assert q * D(repr(price)) >= D("12")


def test_order_qty_of_an_inverse_contract_is_whole_contracts_of_usd(tmp_path):
    r, _ = rig(tmp_path)
    r.engine.instruments["BTCUSDT"] = Instrument("BTCUSDT", D("0.1"), D("1"), D("0"),
                                                 kind="inverse", contract_size=D("100"))
    assert r.engine.order_qty("BTCUSDT", 60000.0) == D("1")     # 12 USD -> 1 contract
    r.cfg = r.cfg.model_copy(update={"strategy": r.cfg.strategy.model_copy(
        update={"order_notional": D("250")})})
    r.engine.cfg = r.cfg
    assert r.engine.order_qty("BTCUSDT", 60000.0) == D("3")     # 250 USD -> 3 contracts


def test_the_wall_timer_moves_venue_time_without_a_transaction_when_nothing_is_due(tmp_path):
    """Live, the simulated exchange keeps time on a 10 ms timer. With nothing due that must
    not open a journal transaction (one every 10 ms wore the SD card and the loop)."""
    import asyncio
    r = EngineRig(tmp_path, overrides={"market": {"source": "synthetic"}})
    assert r.core.clock.mode == "wall"
    r.engine.check = lambda: None   # (the periodic rules journal on their own; not here)
    commits, t0 = r.journal.commits, r.core.venue.now_ns

    async def main() -> None:
        task = asyncio.create_task(r.engine.run_timers())
        while r.core.venue.now_ns == t0:   # at least one tick, however slow the machine
            await asyncio.sleep(0.01)
        for _ in range(3):
            await asyncio.sleep(0.02)
        task.cancel()
    asyncio.run(main())
    assert r.core.venue.now_ns > t0 and r.journal.commits == commits


# -- the periodic rules' verdicts, carried out ---------------------------------------------------
class _Quality:
    """The data-quality stage's interface, with the alerts a test wants it to raise (the
    layers themselves are tested in tests/quality; here: what the engine does with them)."""

    def __init__(self) -> None:
        self.alerts: list = []
        self.health = "none"
        self.next_poll_ns = 0
        self.polled: list[int] = []
        self.events = 0

    def on_event(self, ev, book) -> None:
        self.events += 1

    def poll(self, now_ns: int) -> list:
        self.polled.append(now_ns)
        out, self.alerts = self.alerts, []
        return out

    def outcome(self) -> str:
        return self.health

    def status(self) -> dict:
        return {"symbols": {"BTCUSDT": {"score": 0.5}}}


def _quality_rig(tmp_path):
    r, s = rig(tmp_path)
    q = r.engine.quality = _Quality()
    return r, s, q


def test_a_quality_alert_is_journalled_then_reduces_and_health_resumes(tmp_path):
    from daemon.quality.monitor import QualityAlert
    r, s, q = _quality_rig(tmp_path)
    q.alerts = [QualityAlert("BTCUSDT", "kalman", "reducing", "innovation 9 sigma", 1)]
    q.health = "reducing"
    r.idle(r.engine.check_ns / MS + 1)
    assert r.control.state is State.REDUCING
    assert r.control.state_reason == "data quality: BTCUSDT kalman: innovation 9 sigma"
    ((_ts, _kind, detail),) = r.journal.audit_rows("quality_alert")
    assert {k: detail[k] for k in ("symbol", "layer", "action", "reason")} == {
        "symbol": "BTCUSDT", "layer": "kalman", "action": "reducing",
        "reason": "innovation 9 sigma"}
    q.health = "none"
    r.idle(r.engine.check_ns / MS + 1)
    assert r.control.state is State.TRADING
    assert r.control.transitions[-1]["reason"] == "data quality healthy again"


def test_a_quality_breaker_alert_opens_the_venues_breaker_not_the_state(tmp_path):
    from daemon.quality.monitor import QualityAlert
    r, s, q = _quality_rig(tmp_path)
    q.alerts = [QualityAlert("BTCUSDT", "score", "breaker", "score 0.4", 1)]
    r.idle(r.engine.check_ns / MS + 1)
    b = r.core.protection.board.breakers[r.core.venue.name]
    assert b.state.value == "open" and b.reason == "data quality: BTCUSDT score: score 0.4"
    assert r.control.state is State.TRADING


def test_quality_is_polled_only_when_its_time_has_come(tmp_path):
    r, s, q = _quality_rig(tmp_path)
    q.next_poll_ns = r.t + 10**12   # far ahead
    r.idle(r.engine.check_ns / MS + 1)
    assert q.polled == []
    q.next_poll_ns = r.t + 1
    r.idle(r.engine.check_ns / MS + 1)
    assert len(q.polled) == 1 and q.polled[0] == r.core.clock()
    q.next_poll_ns = r.core.clock()    # exactly now: due
    r.engine.check()
    assert len(q.polled) == 2


def test_protection_actions_halt_reduce_and_cancel_increasing(tmp_path):
    from daemon.protection import Action
    r, s = rig(tmp_path)
    s.next = [bid()]
    r.idle(1)
    r.settle()
    r.engine._protect(Action("cancel_increasing", "breaker paper open"))
    (o,) = r.gw.open.values()
    assert o.status is OrderStatus.PENDING_CANCEL and o.reason == "breaker paper open"
    r.settle()
    r.engine._protect(Action("reducing", "risk: drawdown"))
    assert (r.control.state, r.control.state_reason) == (State.REDUCING, "risk: drawdown")
    r.engine._protect(Action("halt", "risk: daily loss"))
    assert (r.control.state, r.control.state_reason) == (State.HALTED, "risk: daily loss")
    r.engine._protect(Action("reducing", "risk: again"))   # halted stays halted
    r.engine._protect(Action("halt", "twice"))
    assert (r.control.state, r.control.state_reason) == (State.HALTED, "risk: daily loss")


def test_degraded_reasons_are_joined_and_named(tmp_path):
    r = EngineRig(tmp_path, symbols=("BTCUSDT", "ETHUSDT"), strategy_obj=Scripted())
    assert r.control.state is State.TRADING   # no data yet: both books invalid
    r.engine.check()
    assert r.control.state_reason.startswith("degraded: BTCUSDT book invalid: ")
    assert "; ETHUSDT book invalid: " in r.control.state_reason


def test_counters_and_status_say_what_happened(tmp_path):
    r, s = rig(tmp_path)
    s.next = [bid(), bid(qty="0.00001", tag="small"), Cancel("none")]
    r.idle(1)
    st = r.engine.status()
    assert {k: st[k] for k in ("intents", "placed", "cancelled", "refused", "pulled",
                               "dropped_not_trading")} == {
        "intents": 3, "placed": 1, "cancelled": 0, "refused": 1, "pulled": 0,
        "dropped_not_trading": 0}
    assert st["refused_by_stage"] == {"instrument": 1} and s.stats["intents"] == 3
    assert st["strategy"]["name"] == "scripted" and st["strategy"]["tags"] == {
        "bid": r.open_orders()[0].client_id}
    assert st["clock"] == {"mode": "event", "event_ns": r.t}
    assert st["finished"] is False and st["failed"] is None
    core = r.engine.core_status()
    assert core["orders"]["open"] == 1 and core["engine"]["placed"] == 1
    assert core["market"]["books"]["BTCUSDT"]["valid"] is True
    assert {"risk", "breakers", "positions", "quality", "analytics"} <= set(core)
    summary = r.engine.summary()
    assert {k: summary[k] for k in ("lines", "event_ns", "orders", "fills",
                                    "open_orders_at_end", "positions")} == {
        "lines": 0, "event_ns": r.t, "orders": 1, "fills": 0, "open_orders_at_end": 1,
        "positions": {}}
    assert D(summary["realized_pnl"]) == 0 and D(summary["fees"]) == 0


def test_state_and_latch_refusals_are_not_logged_others_are_once(tmp_path, caplog):
    import logging
    r, s = rig(tmp_path)
    with caplog.at_level(logging.WARNING, logger="daemon.engine.engine"):
        s.next = [bid(qty="0.00001", tag="a"), bid(qty="0.00001", tag="b")]
        r.idle(1)
        r.control.halt("stop")
        s.next = [bid(tag="c")]
        r.idle(1)
    msgs = [m.getMessage() for m in caplog.records if m.name == "daemon.engine.engine"]
    assert len(msgs) == 1 and msgs[0].startswith("refused:instrument (total 1): scripted: "
                                                 "Place a refused by instrument: ")
    assert r.engine.refused_by_stage == {"instrument": 2, "state": 1}


def test_the_end_in_wall_mode_runs_no_event_time_check(tmp_path):
    r, s = rig(tmp_path)
    calls = []
    r.engine.check = lambda: calls.append(1)
    r.engine.clock.mode = "wall"
    r.engine._on_finished()
    assert calls == [] and r.control.state is State.FINISHED
    r2, _ = rig(tmp_path / "b")
    calls2 = []
    r2.engine.check = lambda: calls2.append(1)
    r2.engine._on_finished()
    assert calls2 == [1]


def test_an_error_at_the_end_of_the_data_goes_to_the_control(tmp_path):
    r, s = rig(tmp_path)

    def boom() -> None:
        raise RuntimeError("settle failed")
    r.engine.settle = boom
    with pytest.raises(BacktestError, match="engine: end of replay: RuntimeError"):
        r.engine._on_finished()
    assert r.engine.failed.startswith("engine: end of replay: RuntimeError('settle failed')")


def test_the_wall_timer_runs_the_rules_and_beats_the_strategy_heartbeat(tmp_path):
    import asyncio
    from daemon.safety.watchdog import Watchdog
    r = EngineRig(tmp_path, overrides={"market": {"source": "synthetic"}})
    hb = Watchdog().register("strategy", 10.0)
    r.engine.heartbeat = hb
    checks = []
    r.engine.check = lambda: checks.append(1)
    beat0 = hb.last

    async def main() -> None:
        task = asyncio.create_task(r.engine.run_timers())
        while not checks or hb.last == beat0:
            await asyncio.sleep(0.01)
        task.cancel()
    asyncio.run(main())
    assert checks and hb.last > beat0
    # A stalled strategy (sim hook) stops beating.
    r.engine.stall(60)
    assert r.engine._stalled()


def test_replace_and_amend_say_why_and_keep_what_they_do_not_change(tmp_path):
    r, s = rig(tmp_path)
    s.next = [bid()]
    r.idle(1)
    first = r.open_orders()[0]
    r.settle()
    s.next = [Place("bid", "BTCUSDT", Side.BUY, D("0.0002"), D("59980"),
                    TimeInForce.POST_ONLY)]             # no reason: "replaced"
    r.idle(1)
    assert first.reason == "replaced"
    r.settle()
    second = r.open_orders()[0]
    s.next = [Amend("bid", qty=D("0.0003"))]            # price kept, reason "amended"
    r.idle(1)
    assert second.reason == "amended"
    r.settle()
    third = r.open_orders()[0]
    assert (third.price, third.qty) == (D("59980.00"), D("0.00030"))
    s.next = [Amend("bid", price=D("59970"), reason="closer")]   # qty kept
    r.idle(1)
    assert third.reason == "closer"
    r.settle()
    fourth = r.open_orders()[0]
    assert (fourth.price, fourth.qty) == (D("59970.00"), D("0.00030"))
    view = r.engine.ctx.order("bid")
    assert (view.tag, view.client_id, view.symbol, view.side, view.price, view.qty,
            view.filled, view.status, view.working) == (
        "bid", fourth.client_id, "BTCUSDT", Side.BUY, D("59970.00"), D("0.00030"), D(0),
        fourth.status.value, True)
    s.next = [Amend("nothing")]
    r.idle(1)
    assert s.refusals[-1] == ("nothing", "intent", "amend: no working order 'nothing'")


def test_trades_and_books_reach_the_features_and_the_strategy_reads_them(tmp_path):
    r, s = rig(tmp_path)
    f = r.core.features
    books, trades = f.stats["books"], f.stats["trades"]
    r.trade(60000.0, 0.1)
    r.diff([(59999.5, 1.0)], [])
    assert f.stats["trades"] == trades + 1 and f.stats["books"] == books + 1
    assert r.engine.ctx.feature("BTCUSDT", "microprice") == f.get("BTCUSDT",
                                                                  "microprice").value
    assert r.engine.ctx.feature("BTCUSDT", "microprice") is not None
    r.engine.features = None
    assert r.engine.ctx.feature("BTCUSDT", "microprice") is None


def test_bars_in_status_carry_every_field(tmp_path):
    s = Scripted()
    r = EngineRig(tmp_path, strategy_obj=s, strategy={"bar_interval_s": 1.0})
    r.start(*BOOK)
    r.trade(60000.0, 0.1)
    r.trade(60010.0, 0.3)
    r.trade(59990.0, 0.2)
    r.trade(60005.0, 0.1, dt_ms=1200)   # closes the bar of the three above
    bar = r.engine.status()["bars"]["BTCUSDT"]
    assert set(bar) == {"open", "high", "low", "close", "volume", "vwap", "trades"}
    assert (bar["open"], bar["high"], bar["low"], bar["close"], bar["trades"]) == \
        (60000.0, 60010.0, 59990.0, 59990.0, 3)
    assert bar["volume"] == pytest.approx(0.6)
    assert bar["vwap"] == pytest.approx((60000 * 0.1 + 60010 * 0.3 + 59990 * 0.2) / 0.6)


def test_healthy_market_data_resumes_with_its_reason_and_a_quality_trip_recovers(tmp_path):
    from daemon.quality.monitor import QualityAlert
    r, s = rig(tmp_path)
    r.diff([(59998.0, 1.0)], [], gap=True)
    r.engine.check()
    r.snapshot(*BOOK)
    r.engine.check()
    assert r.control.transitions[-1]["reason"] == "market data healthy again"
    q = r.engine.quality = _Quality()
    q.alerts = [QualityAlert("BTCUSDT", "score", "breaker", "score 0.4", 1)]
    now = r.core.clock()
    r.engine.check()
    b = r.core.protection.board.breakers[r.core.venue.name]
    assert b.state.value == "open" and b.kind.value == "auto" and b.since_ns == now
