"""Every time-based risk rule on the engine's clock, in replay (event time) and live (wall
time): the UTC day of the daily loss limit, the order and cancel rates, the VaR window's
sampling and Protection's save cadence. One test per rule, run in both modes."""
from __future__ import annotations

from decimal import Decimal

from daemon.execution.orders import Order, OrderType, Position, Side
from daemon.protection import RISK_KEY
from tests.clock.conftest import Timeline
from tests.clock.rigs import SYM, poll, protection

D = Decimal
DAY = 86_400


def _long() -> dict[str, Position]:
    return {SYM: Position(SYM, D("1"), D("60000"))}


def test_daily_loss_budget_starts_again_at_the_utc_midnight_of_engine_time(tmp_path, tl):
    risk = {"daily_loss_limit": D("50"), "max_drawdown": D("100000")}
    p = protection(tmp_path, tl, risk=risk)
    tl.at(DAY - 3600)                              # 23:00 UTC
    assert poll(p, positions=_long(), mark="60000") == []
    tl.at(DAY - 1)                                 # 23:59:59: lost 40 today
    assert poll(p, positions=_long(), mark="59960") == []
    tl.at(DAY)                                     # 00:00:00: a new day, a new budget
    assert poll(p, positions=_long(), mark="59960") == []
    day = p.status(_long(), {SYM: D("59960")}, [])["risk"]["day"]
    assert day == ("2024-03-06" if tl.mode == "event" else "2026-12-02")
    tl.at(DAY + 1)                                 # 80 below yesterday's start, 40 today
    assert poll(p, positions=_long(), mark="59920") == []
    # The same 80 within one UTC day trips.
    q = protection(tmp_path, tl, risk=risk, name="j2.sqlite3")
    tl.at(2 * DAY + 10)
    assert poll(q, positions=_long(), mark="60000") == []
    tl.at(3 * DAY - 1)
    actions = poll(q, positions=_long(), mark="59920")
    assert [a.kind for a in actions] == ["cancel_increasing", "halt"]
    assert "daily loss 80" in actions[1].reason


def _order(n: int) -> Order:
    return Order(f"o{n}", SYM, Side.BUY, OrderType.LIMIT, D("0.001"), D("59000"))


def _check(p, tl: Timeline, s: float, n: int) -> str | None:
    return p.risk.check(_order(n), positions={}, open_orders=[],
                        mark=lambda s_: D("60000"), now_ns=tl.at(s))


def test_order_rate_counts_the_last_minute_of_engine_time(tmp_path, tl):
    p = protection(tmp_path, tl, risk={"max_orders_per_min": 3})
    for n, s in enumerate((0, 1, 2)):
        assert _check(p, tl, s, n) is None
        p.risk.note_sent(_order(n), tl.clock())
    assert "order rate: 3 in the last 60 s" in _check(p, tl, 3, 3)
    assert _check(p, tl, 60, 4) is not None, "the first is exactly 60 s old: still counted"
    assert _check(p, tl, 60.001, 5) is None


def test_cancel_rate_counts_the_last_minute_of_engine_time(tmp_path, tl):
    p = protection(tmp_path, tl, risk={"max_cancels_per_min": 2})
    for s in (0, 30):
        assert p.risk.check_cancel(tl.at(s)) is None
        p.risk.note_cancel(tl.clock())
    assert "cancel rate: 2 in the last 60 s" in p.risk.check_cancel(tl.at(59))
    assert p.risk.check_cancel(tl.at(60.001)) is None


def test_var_window_samples_once_per_interval_of_engine_time(tmp_path, tl):
    p = protection(tmp_path, tl, risk={"var_sample_interval_s": 10, "var_window": 30})
    for s in range(0, 101):                        # a poll every second for 100 s
        tl.at(s)
        poll(p)
    assert [ts for ts, _ in p.risk.window.samples] == [tl.ns(s) for s in range(0, 101, 10)]


def test_the_risk_snapshot_waits_its_save_interval_of_engine_time(tmp_path, tl):
    p = protection(tmp_path, tl, risk={"var_sample_interval_s": 3600})
    tl.at(0)
    poll(p, positions=_long(), mark="60000")
    saved = p.journal.load_state(RISK_KEY)["losses"]["peak"]
    tl.at(9.999)
    poll(p, positions=_long(), mark="60010")       # a new peak: waits for the interval
    assert p.journal.load_state(RISK_KEY)["losses"]["peak"] == saved
    tl.at(10)
    poll(p, positions=_long(), mark="60020")
    assert D(p.journal.load_state(RISK_KEY)["losses"]["peak"]) == D("1020")


# -- before the first event: the event clock's wall-time fallback must not stick -------------
def test_the_var_window_keeps_sampling_after_a_poll_before_the_first_event(tmp_path, tl):
    p = protection(tmp_path, tl, risk={"var_sample_interval_s": 10, "var_window": 30})
    poll(p)                                        # boot: no event yet
    for s in range(0, 31):
        tl.at(s)
        poll(p)
    kept = [ts for ts, _ in p.risk.window.samples if ts >= tl.ns(0)]
    assert len(kept) >= 3, p.risk.window.samples


def test_the_risk_snapshot_is_saved_after_a_poll_before_the_first_event(tmp_path, tl):
    p = protection(tmp_path, tl, risk={"var_sample_interval_s": 3600})
    poll(p, positions=_long(), mark="60000")       # boot: no event yet
    tl.at(0)
    poll(p, positions=_long(), mark="60010")
    tl.at(20)
    poll(p, positions=_long(), mark="60020")
    assert D(p.journal.load_state(RISK_KEY)["losses"]["peak"]) == D("1020")
