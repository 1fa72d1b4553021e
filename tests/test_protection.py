"""daemon/protection.py on a real journal: every risk trip and breaker change is journalled
with its figures and the snapshots saved before the supervisor is told what to do; the
trips come back after a restart; an operator reset lifts what risk opened, nothing else."""
from __future__ import annotations

from decimal import Decimal

import pytest

from daemon.config import BreakersCfg, Config, RiskCfg
from daemon.execution.orders import Position
from daemon.protection import BREAKERS_KEY, RISK_KEY, Action, Protection
from daemon.store.journal import Journal

S = 1_000_000_000
D = Decimal
SYM = "BTCUSDT"
DAY0 = 1_767_225_600 * S   # 2026-01-01 00:00 UTC


class Clock:
    def __init__(self) -> None:
        self.now = DAY0 + 3600 * S

    def __call__(self) -> int:
        return self.now


def make(tmp_path, risk: dict | None = None, breakers: dict | None = None,
         clock: Clock | None = None, journal: Journal | None = None):
    cfg = Config(risk=RiskCfg(**(risk or {})),
                 breakers=BreakersCfg(**{"cooldown_s": 10, **(breakers or {})}))
    j = journal or Journal(tmp_path / "j.sqlite3")
    c = clock or Clock()
    p = Protection(cfg, j, ["paper"], clock=c)
    return p, j, c


def flat() -> dict[str, Position]:
    return {SYM: Position(SYM)}


def long_at(avg: str, qty: str = "1") -> dict[str, Position]:
    return {SYM: Position(SYM, D(qty), D(avg))}


def audits(j: Journal, kind: str) -> list[dict]:
    return [d for _, _, d in j.audit_rows(kind)]


@pytest.mark.parametrize("action,kind", [("halted", "halt"), ("reducing", "reducing")])
def test_daily_loss_trip_is_journalled_with_figures_then_acted_on(tmp_path, action, kind):
    p, j, c = make(tmp_path, risk={"daily_loss_limit": D("50"), "daily_loss_action": action,
                                   "max_drawdown": D("100000")})
    assert p.poll(flat(), {SYM: D("60000")}, {SYM: True}, []) == []   # day start: 1000
    c.now += S
    pos = long_at("60000")
    assert p.poll(pos, {SYM: D("59951")}, {SYM: True}, []) == []      # loss 49: not yet
    c.now += S
    commits = j.commits
    actions = p.poll(pos, {SYM: D("59940")}, {SYM: True}, [])        # loss 60
    # The trip row, the global breaker it opens and the risk snapshot: ONE commit, so a
    # kill cannot keep the row and lose the trip (or the reverse).
    assert j.commits == commits + 1
    assert [a.kind for a in actions] == ["cancel_increasing", kind]
    assert actions[1].reason.startswith("risk limit daily_loss: daily loss 60")
    (row,) = audits(j, "limit_trip")
    (trip,) = p.risk.trips
    assert (row["limit"], row["action"], row["reason"], row["fig_loss"], row["fig_limit"]) == \
        ("daily_loss", action, trip.reason, "60", "50")
    g = p.board.breakers["global"]
    assert g.figures == trip.figures and g.kind.value == "manual"
    (br,) = audits(j, "breaker")
    assert (br["name"], br["old"], br["new"]) == ("global", "closed", "open")
    assert br["reason"].startswith("risk: daily_loss: daily loss 60")
    # Durable before the action: the snapshots are in the journal already.
    assert j.load_state(RISK_KEY)["losses"]["trips"][0]["limit"] == "daily_loss"
    assert j.load_state(BREAKERS_KEY)["breakers"]["global"]["state"] == "open"
    assert p.blocked().startswith("risk limit daily_loss tripped")
    st = p.status(pos, {SYM: D("59940")}, [])
    assert [t["limit"] for t in st["risk"]["trips"]] == ["daily_loss"]
    assert next(b for b in st["breakers"] if b["name"] == "global")["state"] == "open"
    # Each trip once: the next poll acts on nothing new; the global breaker it opened is
    # manual: no cooldown, no probing, whatever the time.
    c.now += 3600 * S
    assert p.poll(pos, {SYM: D("59940")}, {SYM: True}, []) == []
    assert g.state.value == "open"
    assert len(audits(j, "limit_trip")) == 1


def test_a_trip_and_an_open_breaker_survive_a_restart_and_a_new_utc_day(tmp_path):
    p, j, c = make(tmp_path, risk={"max_drawdown": D("20"), "daily_loss_limit": D("1000")})
    p.poll(flat(), {SYM: D("60000")}, {SYM: True}, [])
    c.now += S
    p.poll(long_at("60000"), {SYM: D("59970")}, {SYM: True}, [])      # drawdown 30
    p.trip_breaker("paper", "maintenance")
    j.close()
    c.now += 86_400 * S                                               # the next UTC day
    p2, j2, _ = make(tmp_path, risk={"max_drawdown": D("20"), "daily_loss_limit": D("1000")},
                     clock=c, journal=Journal(tmp_path / "j.sqlite3"))
    notes = p2.restore()
    assert any(n.startswith("risk limit drawdown (halted)") for n in notes)
    assert any(n.startswith("breaker paper open: manual: maintenance") for n in notes)
    assert p2.blocked() is not None
    # Restored breakers re-open on the new board (journalled again, cancels re-asked for),
    # but a restored risk trip is not new: no second halt.
    assert {a.kind for a in p2.poll(long_at("60000"), {SYM: D("60000")}, {SYM: True}, [])} \
        <= {"cancel_increasing"}
    assert p2.board.allow("paper", D("10"), False, c.now, "x") is not None
    # The operator's reset lifts the risk trip and the global breaker it opened; the
    # manual trip of the venue stays until its own reset.
    assert p2.reset() == ["drawdown"]
    assert p2.blocked() is None
    g = next(b for b in p2.board.status() if b["name"] == "global")
    # Global now only holds for the venue (cascade): the risk reason is gone.
    assert g["state"] == "open" and g["reason"].startswith("cascade from paper: manual")
    assert audits(j2, "limit_reset") == [{"limits": ["drawdown"]}]
    assert p2.reset_breaker("paper")
    assert {b["name"]: b["state"] for b in p2.board.status()} == {"global": "closed",
                                                                  "paper": "closed"}


def test_stress_trips_at_once_with_its_scenario(tmp_path):
    p, j, c = make(tmp_path, risk={"max_stress_loss": D("5"), "stress_action": "halted"})
    actions = p.poll(long_at("60000", "0.01"), {SYM: D("60000")}, {SYM: True}, [])
    assert [a.kind for a in actions] == ["cancel_increasing", "halt"]
    (row,) = audits(j, "limit_trip")
    assert (row["limit"], row["fig_loss"], row["fig_limit"]) == ("stress", "120", "5")


def test_var_trips_once_its_window_has_warmed_up(tmp_path):
    p, j, c = make(tmp_path, risk={"max_var": D("1"), "var_action": "reducing",
                                   "var_window": 30, "var_sample_interval_s": 1,
                                   "daily_loss_limit": D("100000"),
                                   "max_drawdown": D("100000")})
    pos = long_at("60000", "0.01")
    seen = []
    for i in range(40):                       # marks that swing 0.5 % each second
        c.now += S
        seen.append(p.poll(pos, {SYM: D(60000 + (300 if i % 2 else -300))}, {SYM: True}, []))
    first = next(i for i, a in enumerate(seen) if a)
    assert first >= 30, "no VaR before MIN_RETURNS returns"
    assert [a.kind for a in seen[first]] == ["cancel_increasing", "reducing"]
    (row,) = audits(j, "limit_trip")
    assert row["limit"] == "var" and D(row["fig_var"]) > 1


def test_losing_streak_counts_round_trips_from_the_gateway_fills(tmp_path):
    from daemon.execution.orders import Fill, Liquidity, Side
    p, j, c = make(tmp_path, risk={"max_losing_streak": 2, "losing_streak_action": "reducing",
                                   "daily_loss_limit": D("100000"),
                                   "max_drawdown": D("100000")})
    pos = Position(SYM)
    n = 0
    for _ in range(2):                        # two losing round trips: buy, sell lower
        for side, px in ((Side.BUY, "60000"), (Side.SELL, "59990")):
            n += 1
            f = Fill(f"f{n}", f"c{n}", SYM, side, D(px), D("0.001"), D("0.01"),
                     Liquidity.TAKER, c.now)
            pos.apply(f)
            p.risk.on_fill(f, pos, c.now)     # what the gateway does on every fill
    actions = p.poll({SYM: pos}, {SYM: D("59990")}, {SYM: True}, [])
    assert [a.kind for a in actions] == ["cancel_increasing", "reducing"]
    (row,) = audits(j, "limit_trip")
    assert row["limit"] == "losing_streak"


def test_breaker_changes_are_journalled_with_a_snapshot_and_acted_on(tmp_path):
    p, j, c = make(tmp_path, breakers={"max_consecutive_errors": 2, "max_reopens": 1,
                                       "cascade": False})
    p.board.on_error("paper", "timeout", c.now)
    p.board.on_error("paper", "timeout", c.now)
    (row,) = audits(j, "breaker")
    assert (row["name"], row["new"]) == ("paper", "open")
    assert row["reason"].startswith("2 venue errors in a row (max 2)")
    assert j.load_state(BREAKERS_KEY)["breakers"]["paper"]["state"] == "open"
    assert p.poll(flat(), {SYM: D("60000")}, {SYM: True}, []) == \
        [Action("cancel_increasing", f"breaker paper open: {row['reason']}")]
    # Cooldown over: half-open; a probe fails: open again and, past max_reopens, halt.
    c.now += 11 * S
    assert p.poll(flat(), {SYM: D("60000")}, {SYM: True}, []) == []
    assert p.board.allow("paper", D("10"), False, c.now, "probe-1") is None
    p.board.on_reject("paper", "probe-1", "insufficient balance", c.now)
    actions = p.poll(flat(), {SYM: D("60000")}, {SYM: True}, [])
    assert [a.kind for a in actions] == ["cancel_increasing", "halt"]
    assert "keeps failing its probes" in actions[1].reason
    news = [(r["old"], r["new"]) for r in audits(j, "breaker")]
    assert news == [("closed", "open"), ("open", "half_open"), ("half_open", "open")]


def test_a_snapshot_that_cannot_be_read_is_journalled_and_the_limits_start_afresh(tmp_path):
    p, j, c = make(tmp_path)
    j.save_state(RISK_KEY, {"version": 999})
    j.save_state(BREAKERS_KEY, {"version": 999})
    assert p.restore() == []
    rows = audits(j, "state_unreadable")
    assert [r["key"] for r in rows] == [RISK_KEY, BREAKERS_KEY]
    assert p.blocked() is None


def test_the_var_window_is_saved_now_and_then_even_when_nothing_else_moves(tmp_path):
    p, j, c = make(tmp_path, risk={"var_window": 30, "var_sample_interval_s": 1})
    for _ in range(25):                       # flat book, steady mark: only samples accrue
        c.now += S
        p.poll(flat(), {SYM: D("60000")}, {SYM: True}, [])
    saved = j.load_state(RISK_KEY)
    assert len(saved["var_window"]) >= 20, len(saved["var_window"])
    commits = j.commits
    c.now += S // 10
    p.poll(flat(), {SYM: D("60000")}, {SYM: True}, [])
    assert j.commits == commits, "nothing new within the interval: no write"


# -- feeds, restore and operator paths, pinned where mutation testing asked ---------------
def _book(bid: float, ask: float, valid_ids: bool = True):
    from daemon.market.book import OrderBook
    from daemon.market.events import DepthSnapshot
    b = OrderBook(SYM, futures=False)
    b.on_snapshot(DepthSnapshot(SYM, 0, 100, [(bid, 1.5)], [(ask, 2.5)]))
    return b


def test_a_valid_books_top_reaches_the_market_watch_of_its_symbol_and_venue(tmp_path):
    p, j, c = make(tmp_path)
    p.on_book(SYM, _book(100.0, 101.0), 7 * S)
    w = p.board.symbols[("paper", SYM)].watch
    assert w._prev == (100.0, 1.5, 101.0, 2.5) and w.first_ns == 7 * S   # noqa: SLF001


def test_an_invalid_book_feeds_nothing(tmp_path):
    from daemon.market.book import OrderBook
    p, j, c = make(tmp_path)
    p.on_book(SYM, OrderBook(SYM, futures=False), S)              # never synced
    assert ("paper", SYM) not in p.board.symbols


def test_trades_reach_the_volume_watch_with_price_quantity_and_time(tmp_path):
    from daemon.market.events import Trade
    p, j, c = make(tmp_path)
    p.on_trade(Trade(SYM, 3 * S, 3000, 1, 100.0, 0.25, False))
    p.on_trade(Trade(SYM, 3 * S + 1, 3000, 2, 100.0, 0.5, True))
    w = p.board.symbols[("paper", SYM)].watch
    assert w._bucket == pytest.approx(0.75 * 100.0) or w._bucket == pytest.approx(0.75)  # noqa: SLF001
    assert w._bucket_start is not None and w._bucket_start <= 3 * S  # noqa: SLF001


def test_stale_book_through_poll_opens_the_venue_breaker(tmp_path):
    p, j, c = make(tmp_path, breakers={"book_invalid_s": 2.0, "cascade": False})
    p.poll(flat(), {SYM: D("60000")}, {SYM: False}, [])
    c.now += 2 * S
    assert p.poll(flat(), {SYM: D("60000")}, {SYM: False}, []) == []   # exactly 2 s: not yet
    c.now += S
    (a,) = p.poll(flat(), {SYM: D("60000")}, {SYM: False}, [])
    assert a == Action("cancel_increasing",
                       f"breaker paper open: {p.board.breakers['paper'].reason}")
    assert p.board.breakers["paper"].reason.startswith(f"{SYM} order book invalid for")


def test_restore_notes_say_what_came_back(tmp_path):
    p, j, c = make(tmp_path, risk={"max_drawdown": D("20"), "daily_loss_limit": D("1000")})
    p.poll(flat(), {SYM: D("60000")}, {SYM: True}, [])
    c.now += S
    p.poll(long_at("60000"), {SYM: D("59970")}, {SYM: True}, [])
    p.trip_breaker("paper", "maintenance")
    j.close()
    p2, j2, _ = make(tmp_path, risk={"max_drawdown": D("20"), "daily_loss_limit": D("1000")},
                     clock=c, journal=Journal(tmp_path / "j.sqlite3"))
    notes = p2.restore()
    trip = p2.risk.trips[0]
    g = p2.board.breakers["global"]
    assert notes == [f"risk limit drawdown (halted): {trip.reason}",
                     f"breaker global open: {g.reason}",
                     "breaker paper open: manual: maintenance"]


def test_restore_skips_breakers_no_longer_configured_and_says_so(tmp_path):
    p, j, c = make(tmp_path)
    snap = p.board.snapshot()
    snap["breakers"]["oldvenue"] = {"state": "open", "kind": "manual", "reason": "x",
                                    "figures": {}, "since_ns": 1, "cooldown_ns": S,
                                    "reopens": 0, "escalated": False}
    j.save_state("breakers", snap)
    assert p.restore() == ["breakers no longer configured: oldvenue"]


@pytest.mark.parametrize("key,bad,word", [
    (RISK_KEY, {"version": 999}, "version"),
    (BREAKERS_KEY, {"version": 1}, "breakers"),            # KeyError: no breakers
    (BREAKERS_KEY, {"version": 1, "breakers": 5}, "int"),  # AttributeError: once a crash
])
def test_each_unreadable_snapshot_is_journalled_with_its_error(tmp_path, caplog, key, bad,
                                                              word):
    p, j, c = make(tmp_path)
    j.save_state(key, bad)
    assert p.restore() == []
    (row,) = audits(j, "state_unreadable")
    assert row["key"] == key and word in row["error"]
    assert any(r.levelname == "ERROR" for r in caplog.records)


def test_reset_leaves_a_global_breaker_opened_by_hand_alone(tmp_path):
    p, j, c = make(tmp_path)
    p.trip_breaker("global", "weekend")
    assert p.reset() == [] and audits(j, "limit_reset") == []
    g = p.board.breakers["global"]
    assert g.state.value == "open" and g.reason == "manual: weekend"
    c.now += 3600 * S                                     # manual: no cooldown, no probing
    p.poll(flat(), {SYM: D("60000")}, {SYM: True}, [])
    assert g.state.value == "open"
    assert p.reset_breaker("global") is True and g.state.value == "closed"
    assert p.reset_breaker("global") is False            # already closed


def test_an_escalation_halts_again_after_a_reset_of_its_breaker(tmp_path):
    p, j, c = make(tmp_path, breakers={"max_consecutive_errors": 1, "max_reopens": 1,
                                       "cascade": False})

    def escalate():
        p.board.on_error("paper", "timeout", c.now)
        c.now += 11 * S
        p.poll(flat(), {SYM: D("60000")}, {SYM: True}, [])
        p.board.allow("paper", D("10"), False, c.now, "probe")
        p.board.on_reject("paper", "probe", "no", c.now)
        return [a.kind for a in p.poll(flat(), {SYM: D("60000")}, {SYM: True}, [])]

    assert escalate() == ["cancel_increasing", "halt"]
    assert p.reset_breaker("paper")
    assert escalate() == ["cancel_increasing", "halt"]


def test_half_open_and_closed_changes_are_journalled_but_ask_for_nothing(tmp_path):
    p, j, c = make(tmp_path, breakers={"max_consecutive_errors": 1, "cascade": False,
                                       "probe_orders": 1})
    p.board.on_error("paper", "timeout", c.now)
    p.poll(flat(), {SYM: D("60000")}, {SYM: True}, [])
    c.now += 11 * S
    assert p.poll(flat(), {SYM: D("60000")}, {SYM: True}, []) == []     # -> half_open
    p.board.allow("paper", D("10"), False, c.now, "probe")
    p.board.on_ack("paper", "probe", 1000, c.now)                       # -> closed
    assert p.poll(flat(), {SYM: D("60000")}, {SYM: True}, []) == []
    rows = audits(j, "breaker")
    assert [(r["old"], r["new"], r["escalated"]) for r in rows] == [
        ("closed", "open", False), ("open", "half_open", False), ("half_open", "closed", False)]
    assert j.load_state(BREAKERS_KEY) == p.board.snapshot()


def test_a_streak_change_is_saved_at_once_the_peak_waits(tmp_path):
    from daemon.execution.orders import Fill, Liquidity, Side
    p, j, c = make(tmp_path, risk={"daily_loss_limit": D("100000"),
                                   "max_drawdown": D("100000")})
    p.poll(flat(), {SYM: D("60000")}, {SYM: True}, [])
    first = j.load_state(RISK_KEY)
    c.now += S
    pos = long_at("60000", "0.001")
    p.poll(pos, {SYM: D("61000")}, {SYM: True}, [])          # a new peak only: waits
    assert j.load_state(RISK_KEY) == first
    pos = Position(SYM)
    for n, (side, px) in enumerate(((Side.BUY, "60000"), (Side.SELL, "59990")), 1):
        f = Fill(f"f{n}", f"c{n}", SYM, side, D(px), D("0.001"), D("0"), Liquidity.TAKER,
                 c.now)
        pos.apply(f)
        p.risk.on_fill(f, pos, c.now)
    c.now += S
    p.poll({SYM: pos}, {SYM: D("59990")}, {SYM: True}, [])   # a losing round trip: at once
    assert j.load_state(RISK_KEY)["losses"]["streak"] == 1


def test_status_counts_the_open_orders_it_is_given(tmp_path):
    from daemon.execution.orders import Order, OrderType, Side, TimeInForce
    p, j, c = make(tmp_path)
    o = Order(client_id="x", symbol=SYM, side=Side.BUY, type=OrderType.LIMIT,
              qty=D("0.001"), price=D("59000"), tif=TimeInForce.GTC)
    st = p.status(flat(), {SYM: D("60000")}, [o])
    assert st["risk"]["limits"]["open_orders"]["used"] == "1"
    assert [b["name"] for b in st["breakers"]] == ["global", "paper"]


def test_a_valid_book_with_one_side_empty_feeds_nothing(tmp_path):
    from daemon.market.book import OrderBook
    from daemon.market.events import DepthSnapshot
    p, j, c = make(tmp_path)
    for bids, asks in (([(100.0, 1.0)], []), ([], [(101.0, 1.0)])):
        b = OrderBook(SYM, futures=False)
        b.on_snapshot(DepthSnapshot(SYM, 0, 100, bids, asks))
        assert b.valid
        p.on_book(SYM, b, S)
    assert ("paper", SYM) not in p.board.symbols



def test_breaker_rows_carry_every_figure_of_the_change(tmp_path):
    p, j, c = make(tmp_path, breakers={"max_rejects_per_min": 1, "cascade": False})
    p.board.on_reject("paper", "a", "no", c.now)
    p.board.on_reject("paper", "b", "no", c.now)
    b = p.board.breakers["paper"]
    (row,) = audits(j, "breaker")
    assert b.figures and all(row[f"fig_{k}"] == v for k, v in b.figures.items())


def test_the_window_is_saved_when_full_and_steady_and_not_before_the_interval(tmp_path):
    p, j, c = make(tmp_path, risk={"var_window": 30, "var_sample_interval_s": 1})
    for _ in range(45):                       # full window, one steady mark
        c.now += S
        p.poll(flat(), {SYM: D("60000")}, {SYM: True}, [])
    window = j.load_state(RISK_KEY)["var_window"]
    assert len(window) == 31 and window[-1][0] >= c.now - 10 * S
    last = window[-1][0]
    commits = j.commits
    for _ in range(9):                        # 9 more samples: inside the 10 s interval
        c.now += S
        p.poll(flat(), {SYM: D("60000")}, {SYM: True}, [])
    if j.commits == commits:                  # ... exactly 10 s after the last write: due
        c.now = last + 10 * S
        p.poll(flat(), {SYM: D("60000")}, {SYM: True}, [])
    assert j.commits == commits + 1
    assert j.load_state(RISK_KEY)["var_window"][-1][0] > last


def test_the_stress_limit_sees_the_resting_orders(tmp_path):
    from daemon.execution.orders import Order, OrderType, Side, TimeInForce
    p, j, c = make(tmp_path, risk={"max_stress_loss": D("5"), "stress_action": "halted"})
    o = Order(client_id="x", symbol=SYM, side=Side.BUY, type=OrderType.LIMIT,
              qty=D("0.01"), price=D("60000"), tif=TimeInForce.GTC)
    assert p.poll(flat(), {SYM: D("60000")}, {SYM: True}, []) == []
    c.now += S
    kinds = [a.kind for a in p.poll(flat(), {SYM: D("60000")}, {SYM: True}, [o])]
    assert kinds == ["cancel_increasing", "halt"]     # filled, then -20 %: 120 > 5


def test_blocked_lists_every_standing_trip(tmp_path):
    p, j, c = make(tmp_path, risk={"daily_loss_limit": D("50"), "max_drawdown": D("50")})
    p.poll(flat(), {SYM: D("60000")}, {SYM: True}, [])
    c.now += S
    p.poll(long_at("60000"), {SYM: D("59900")}, {SYM: True}, [])
    a, b = p.risk.trips
    assert p.blocked() == (f"risk limit {a.limit} tripped ({a.action}): {a.reason}; "
                           f"risk limit {b.limit} tripped ({b.action}): {b.reason}")


def test_reset_is_saved_and_closes_the_risk_breaker_at_the_clock(tmp_path):
    p, j, c = make(tmp_path, risk={"daily_loss_limit": D("50")})
    p.poll(flat(), {SYM: D("60000")}, {SYM: True}, [])
    c.now += S
    p.poll(long_at("60000"), {SYM: D("59900")}, {SYM: True}, [])
    c.now += S
    assert p.reset() == ["daily_loss"]
    assert j.load_state(RISK_KEY)["losses"]["trips"] == []
    g = p.board.breakers["global"]
    assert (g.state.value, g.reason, g.since_ns) == ("closed", "reset by operator reset", c.now)
    c.now += S
    p.trip_breaker("paper", "x")
    c.now += S
    assert p.reset_breaker("paper")
    b = p.board.breakers["paper"]
    assert (b.reason, b.since_ns) == ("reset by operator", c.now)


def test_an_automatic_trip_restored_cools_down_from_the_restart(tmp_path):
    p, j, c = make(tmp_path, breakers={"max_consecutive_errors": 1, "cascade": False})
    p.board.on_error("paper", "timeout", c.now)
    j.close()
    c.now += 1000 * S
    p2, j2, _ = make(tmp_path, breakers={"max_consecutive_errors": 1, "cascade": False},
                     clock=c, journal=Journal(tmp_path / "j.sqlite3"))
    p2.restore()
    b = p2.board.breakers["paper"]
    assert b.state.value == "open" and b.half_open_at_ns == c.now + 10 * S


def test_unreadable_snapshots_are_logged_with_the_error(tmp_path, caplog):
    p, j, c = make(tmp_path)
    j.save_state(RISK_KEY, {"version": 999})
    j.save_state(BREAKERS_KEY, {"version": 999})
    p.restore()
    msgs = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    (risk_row, br_row) = audits(j, "state_unreadable")
    assert msgs == [
        "risk state of the previous run unreadable, limits start afresh: "
        f"{risk_row['error']}",
        f"breaker state of the previous run unreadable: {br_row['error']}"]


def test_every_skipped_breaker_is_named(tmp_path):
    p, j, c = make(tmp_path)
    snap = p.board.snapshot()
    for v in ("old1", "old2"):
        snap["breakers"][v] = {"state": "open", "kind": "manual", "reason": "x",
                               "figures": {}, "since_ns": 1, "cooldown_ns": S,
                               "reopens": 0, "escalated": False}
    j.save_state("breakers", snap)
    assert p.restore() == ["breakers no longer configured: old1, old2"]



def test_toxic_flow_from_the_feature_stores_vpin_opens_the_venue_breaker(tmp_path):
    from daemon.config import FeaturesCfg
    from daemon.features.engine import FeatureEngine
    p, j, c = make(tmp_path, breakers={"vpin_max": 0.8, "cascade": False})
    fe = FeatureEngine(FeaturesCfg(), [SYM])
    p.features = fe
    slot = fe.store.slot(SYM, "vpin")
    fe.store.put(slot, 0.8, c.now)                   # at the limit: not above it
    assert p.poll(flat(), {SYM: D("60000")}, {SYM: True}, []) == []
    fe.store.put(slot, None, c.now)                  # not ready: nothing, whatever it was
    assert p.poll(flat(), {SYM: D("60000")}, {SYM: True}, []) == []
    fe.store.put(slot, 0.93, c.now)
    (a,) = p.poll(flat(), {SYM: D("60000")}, {SYM: True}, [])
    b = p.board.breakers["paper"]
    assert a.kind == "cancel_increasing"
    assert b.reason == f"toxic flow: {SYM} VPIN 0.930 above vpin_max 0.8"
    assert b.figures == {"vpin": "0.930000", "limit": "0.8", "symbol": SYM}
    assert b.kind.value == "auto"                    # probes its way closed
    c.now += S
    assert p.poll(flat(), {SYM: D("60000")}, {SYM: True}, []) == [], "open: not again"
    (row,) = audits(j, "breaker")
    assert row["fig_vpin"] == "0.930000"


def test_toxic_flow_rule_is_off_at_zero(tmp_path):
    from daemon.config import FeaturesCfg
    from daemon.features.engine import FeatureEngine
    p, j, c = make(tmp_path, breakers={"vpin_max": 0.0})
    p.features = FeatureEngine(FeaturesCfg(), [SYM])
    p.features.store.put(p.features.store.slot(SYM, "vpin"), 0.99, c.now)
    assert p.poll(flat(), {SYM: D("60000")}, {SYM: True}, []) == []
