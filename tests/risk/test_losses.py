"""Loss limits that act by themselves, driven by hand-made fill sequences: the strategy is
made to lose by fills at worse prices and marks that fall (no venue needed). Daily loss
(UTC day from now_ns), drawdown from the equity peak, losing round trips in a row;
latching across UTC days; snapshot/restore."""
from __future__ import annotations

import json
from decimal import Decimal as D

import pytest

from daemon.execution.orders import Side
from daemon.risk.losses import LossLimits, RiskTrip, equity, utc_day
from tests.risk.common import BTC, DAY_NS, ETH, T0, engine, fill, position, trade


def ev(e, pos, mark: str, now=T0, eth: str | None = None):
    marks = {BTC: D(mark)}
    if eth is not None:
        marks[ETH] = D(eth)
    return e.evaluate(pos, marks, now)


def test_equity_is_capital_plus_realised_minus_fees_plus_unrealised():
    pos = {BTC: position(qty="0.01", avg="60000", realized="5", fees="1.5"),
           ETH: position(ETH, qty="-0.1", avg="3000", realized="-2", fees="0.5")}
    assert equity(D("1000"), pos, {BTC: D("61000"), ETH: D("3100")}) == \
        D("1000") + 5 - D("1.5") + 10 - 2 - D("0.5") - 10
    # Without a mark a position counts at its average price (no unrealised PnL).
    assert equity(D("1000"), pos, {BTC: None}) == D("1001")
    assert equity(D("0"), {}, {}) == 0


def test_utc_day_boundaries():
    assert utc_day(T0) == 20_000 and utc_day(T0 + DAY_NS - 1) == 20_000
    assert utc_day(T0 + DAY_NS) == 20_001


def test_daily_loss_trips_on_a_losing_fill_sequence_with_fees():
    e = engine(capital=D("1000"), daily_loss_limit=D("50"))
    pos = {BTC: position()}
    assert ev(e, pos, "60000") == []                       # day starts at 1000
    trade(e, pos[BTC], fill(Side.BUY, "0.01", "60000", fee="0.6"))
    # 0.6 fees + 49.4 unrealised = 50: at the limit, not beyond.
    assert ev(e, pos, "55060", T0 + 1) == []
    [trip] = ev(e, pos, "55059.99", T0 + 2)
    assert trip == RiskTrip(
        "daily_loss", "halted",
        "daily loss 50.0001 beyond daily_loss_limit 50 (equity 949.9999, at the start of "
        "the UTC day 1000)",
        {"loss": "50.0001", "limit": "50", "equity": "949.9999", "day_start_equity": "1000"},
        T0 + 2)
    assert e.action == "halted"
    # Latched: reported once, however long the loss lasts; a recovery does not lift it.
    assert ev(e, pos, "55000", T0 + 3) == []
    assert ev(e, pos, "70000", T0 + 4) == []
    assert e.trips == [trip]


def test_realised_losses_count_too():
    e = engine(capital=D("1000"), daily_loss_limit=D("20"), daily_loss_action="reducing")
    pos = {BTC: position()}
    ev(e, pos, "60000")
    for i in range(2):   # two round trips losing 10 each (plus fees)
        trade(e, pos[BTC], fill(Side.BUY, "0.01", "60000", fee="0.05"))
        trade(e, pos[BTC], fill(Side.SELL, "0.01", "59000", fee="0.05"))
    assert pos[BTC].qty == 0 and pos[BTC].realized_pnl == D("-20")
    [trip] = ev(e, pos, "60000", T0 + 1)
    assert trip.limit == "daily_loss" and trip.action == "reducing"
    assert trip.figures["loss"] == "20.2"
    assert e.action == "reducing"


def test_a_new_utc_day_is_a_new_budget_but_never_lifts_a_trip():
    e = engine(capital=D("1000"), daily_loss_limit=D("50"), max_drawdown=D("1000"))
    pos = {BTC: position()}
    ev(e, pos, "60000", T0 + DAY_NS - 10)
    trade(e, pos[BTC], fill(Side.BUY, "0.01", "60000"))
    assert ev(e, pos, "56000", T0 + DAY_NS - 1) == []        # -40 on the first day
    assert ev(e, pos, "56000", T0 + DAY_NS) == []            # new day starts at 960
    assert e.losses.day_start == D("960")
    assert ev(e, pos, "51000", T0 + DAY_NS + 1) == []        # -50 on the new day
    [trip] = ev(e, pos, "50999.99", T0 + DAY_NS + 2)
    assert trip.figures == {"loss": "50.0001", "limit": "50", "equity": "909.9999",
                            "day_start_equity": "960"}
    # The next UTC day: the trip stays until the operator resets.
    assert ev(e, pos, "60000", T0 + 2 * DAY_NS + 5) == []
    assert e.action == "halted" and e.losses.day == 20_002
    assert e.losses.day_start == D("1000")


def test_drawdown_from_the_peak():
    e = engine(capital=D("1000"), max_drawdown=D("100"), daily_loss_limit=D("1000"),
               max_drawdown_action="reducing")
    pos = {BTC: position()}
    ev(e, pos, "60000")
    trade(e, pos[BTC], fill(Side.BUY, "0.01", "60000"))
    ev(e, pos, "70000", T0 + 1)                               # equity 1100: the peak
    assert e.losses.peak == D("1100")
    assert ev(e, pos, "60000", T0 + 2) == []                  # 100 down: at the limit
    [trip] = ev(e, pos, "59999", T0 + 3)
    assert trip == RiskTrip(
        "drawdown", "reducing",
        "drawdown 100.01 from the equity peak 1100 beyond max_drawdown 100 (equity "
        "999.99)",
        {"drawdown": "100.01", "limit": "100", "equity": "999.99", "peak": "1100"}, T0 + 3)
    assert e.losses.figures() == {"daily_loss": D("0.01"), "drawdown": D("100.01"),
                                  "losing_streak": 0}
    assert ev(e, pos, "50000", T0 + 4) == [] and e.trips == [trip]


def test_peak_survives_a_new_day():
    e = engine(capital=D("1000"), max_drawdown=D("100"), daily_loss_limit=D("1000"))
    pos = {BTC: position()}
    ev(e, pos, "60000")
    trade(e, pos[BTC], fill(Side.BUY, "0.01", "60000"))
    ev(e, pos, "70000", T0 + 1)
    ev(e, pos, "65000", T0 + DAY_NS)                          # new day at 1050
    [trip] = ev(e, pos, "59999", T0 + DAY_NS + 1)             # 100.01 below 1100
    assert trip.limit == "drawdown"


def test_losing_streak_counts_round_trips_with_their_fees():
    e = engine(max_losing_streak=3)
    p = position()
    pos = {BTC: p}
    ev(e, pos, "60000")
    # 1: gross +0.5, fees 0.6: a loss.
    trade(e, p, fill(Side.BUY, "0.01", "60000", fee="0.3"))
    trade(e, p, fill(Side.SELL, "0.01", "60050", fee="0.3"))
    assert e.losses.streak == 1 and e.losses.last_round_trip == D("-0.1")
    # 2: in two parts, losing.
    trade(e, p, fill(Side.SELL, "0.01", "60000", fee="0.1"))
    trade(e, p, fill(Side.BUY, "0.004", "60100", fee="0.1"))
    assert e.losses.streak == 1                               # not closed yet
    trade(e, p, fill(Side.BUY, "0.006", "60000", fee="0.1"))
    assert e.losses.streak == 2 and e.losses.last_round_trip == D("-0.7")
    assert ev(e, pos, "60000", T0 + 1) == []
    # 3: a flip closes a losing trip (half the flip's fee is its) and opens another.
    trade(e, p, fill(Side.BUY, "0.01", "60000", fee="0"))
    trade(e, p, fill(Side.SELL, "0.02", "59990", fee="0.2"))
    assert e.losses.last_round_trip == D("-0.2")
    assert e.losses.streak == 3
    [trip] = ev(e, pos, "60000", T0 + 2)
    assert trip == RiskTrip(
        "losing_streak", "reducing",
        "3 losing round trips in a row, max_losing_streak is 3 (last -0.2)",
        {"streak": "3", "limit": "3", "last_round_trip": "-0.2"}, T0)
    assert ev(e, pos, "60000", T0 + 3) == []                  # reported once
    assert e.trips == [trip]
    # The short opened by the flip closes at a profit (its half of the fee included).
    trade(e, p, fill(Side.BUY, "0.01", "59900", fee="0"))
    assert e.losses.last_round_trip == D("0.8") and e.losses.streak == 0


def test_a_streak_trip_is_reported_once_even_when_more_fills_come_first():
    e = engine(max_losing_streak=1)
    p = position()
    trade(e, p, fill(Side.BUY, "0.01", "60000"))
    trade(e, p, fill(Side.SELL, "0.01", "59000"))              # trips here ...
    trade(e, p, fill(Side.BUY, "0.01", "60000"))              # ... more fills before
    trade(e, p, fill(Side.SELL, "0.01", "59000"))              # the next evaluate
    assert e.losses.streak == 2
    [t] = e.evaluate({BTC: p}, {BTC: D("59000")}, T0)
    assert t.limit == "losing_streak" and t.figures["streak"] == "1"
    assert e.trips == [t]
    trade(e, p, fill(Side.BUY, "0.01", "60000"))
    trade(e, p, fill(Side.SELL, "0.01", "59000"))
    assert e.evaluate({BTC: p}, {BTC: D("59000")}, T0 + 1) == []


def test_round_trips_of_whole_units_and_short_to_long_flips():
    e = engine(max_losing_streak=5)
    p = position(ETH)
    trade(e, p, fill(Side.BUY, "1", "3000", symbol=ETH))
    trade(e, p, fill(Side.SELL, "1", "2990", symbol=ETH))
    assert e.losses.last_round_trip == D("-10") and e.losses.streak == 1
    trade(e, p, fill(Side.SELL, "0.5", "3000", symbol=ETH))
    trade(e, p, fill(Side.BUY, "1", "3010", fee="0.2", symbol=ETH))    # flips to +0.5
    assert e.losses.last_round_trip == D("-5.1") and e.losses.streak == 2
    trade(e, p, fill(Side.SELL, "1.5", "3020", symbol=ETH))            # flips to -1
    assert e.losses.last_round_trip == D("4.9") and e.losses.streak == 0
    trade(e, p, fill(Side.BUY, "2", "3000", symbol=ETH))               # flips to exactly +1
    assert e.losses.last_round_trip == D("20")
    trade(e, p, fill(Side.SELL, "1", "2999", symbol=ETH))
    assert e.losses.last_round_trip == D("-1") and e.losses.streak == 1


def test_a_break_even_round_trip_ends_a_streak():
    e = engine(max_losing_streak=2)
    p = position()
    trade(e, p, fill(Side.BUY, "0.01", "60000", fee="0.1"))
    trade(e, p, fill(Side.SELL, "0.01", "60000"))
    assert e.losses.streak == 1
    trade(e, p, fill(Side.BUY, "0.01", "60000"))
    trade(e, p, fill(Side.SELL, "0.01", "60000"))
    assert e.losses.last_round_trip == 0 and e.losses.streak == 0


def test_round_trips_are_per_symbol():
    e = engine(max_losing_streak=5)
    b, x = position(), position(ETH)
    trade(e, b, fill(Side.BUY, "0.01", "60000"))
    trade(e, x, fill(Side.SELL, "1", "3000", symbol=ETH))
    trade(e, b, fill(Side.SELL, "0.01", "59000"))
    assert e.losses.last_round_trip == D("-10")
    trade(e, x, fill(Side.BUY, "1", "2990", symbol=ETH))
    assert e.losses.last_round_trip == D("10") and e.losses.streak == 0


def test_a_round_trip_whose_start_is_unknown_is_not_counted(caplog):
    e = engine(max_losing_streak=1)
    p = position(qty="0.01", avg="60000")          # from the journal, no snapshot
    with caplog.at_level("WARNING", logger="daemon.risk.losses"):
        trade(e, p, fill(Side.SELL, "0.01", "50000"))
    assert [r.getMessage() for r in caplog.records] == \
        ["BTCUSDT round trip closed whose start is unknown: not counted"]
    assert e.losses.streak == 0 and e.losses.last_round_trip is None
    assert e.evaluate({BTC: p}, {BTC: D("50000")}, T0) == []


def test_reset_lifts_trips_and_rebases_on_the_next_evaluate():
    e = engine(capital=D("1000"), daily_loss_limit=D("50"), max_drawdown=D("60"),
               max_losing_streak=1)
    pos = {BTC: position()}
    ev(e, pos, "60000")
    trade(e, pos[BTC], fill(Side.BUY, "0.01", "60000"))
    trade(e, pos[BTC], fill(Side.SELL, "0.01", "53000"))      # -70 realised
    assert {t.limit for t in ev(e, pos, "53000", T0 + 1)} == \
        {"daily_loss", "drawdown", "losing_streak"}
    e.reset()
    assert e.trips == [] and e.action is None and e.losses.streak == 0
    assert ev(e, pos, "53000", T0 + 2) == []
    assert (e.losses.day_start, e.losses.peak) == (D("930"), D("930"))
    trade(e, pos[BTC], fill(Side.BUY, "0.01", "53000"))
    [t] = ev(e, pos, "47999.99", T0 + 3)
    assert t.limit == "daily_loss" and t.figures["day_start_equity"] == "930"


def test_snapshot_restore_round_trip_through_json():
    e = engine(capital=D("1000"), daily_loss_limit=D("50"), max_losing_streak=3)
    p = position()
    pos = {BTC: p}
    ev(e, pos, "60000")
    trade(e, p, fill(Side.BUY, "0.01", "60000", fee="0.3"))
    trade(e, p, fill(Side.SELL, "0.01", "59000", fee="0.3"))   # losing trip 1
    trade(e, p, fill(Side.BUY, "0.01", "60000", fee="0.3"))    # trip 2 open
    [trip] = ev(e, pos, "54000", T0 + 5)
    for i in range(40):
        e.sample(pos, {BTC: D(60000 + i)}, T0 + i * 60_000_000_000)
    snap = json.loads(json.dumps(e.snapshot()))

    r = engine(capital=D("1000"), daily_loss_limit=D("50"), max_losing_streak=3)
    r.restore(snap)
    assert r.snapshot() == snap
    assert r.trips == [trip] and r.action == "halted"
    assert (r.losses.day, r.losses.day_start, r.losses.peak, r.losses.streak) == \
        (e.losses.day, e.losses.day_start, e.losses.peak, 1)
    assert r.window.n_returns == 39
    # The open round trip goes on from where it was: its fees before the restart count.
    trade(r, p, fill(Side.SELL, "0.01", "60000", fee="0.3"))
    assert r.losses.last_round_trip == D("-0.6") and r.losses.streak == 2
    # A restart on a new UTC day still has the trip.
    assert ev(r, pos, "60000", T0 + DAY_NS) == [] and r.action == "halted"


def _good() -> dict:
    e = engine(daily_loss_limit=D("1"))
    p = position()
    e.evaluate({BTC: p}, {BTC: D("60000")}, T0)
    trade(e, p, fill(Side.BUY, "0.01", "60000", fee="0.1"))
    e.evaluate({BTC: p}, {BTC: D("59000")}, T0 + 1)
    e.sample({}, {BTC: D("1")}, T0)
    return json.loads(json.dumps(e.snapshot()))


def _broken(path: tuple, value) -> dict:
    snap = _good()
    node = snap
    for k in path[:-1]:
        node = node[k]
    if value is KeyError:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return snap


@pytest.mark.parametrize("bad", [
    None, [], {}, {"version": 2}, {"version": 1}, {"version": 1, "var_window": []},
    _broken(("losses",), None), _broken(("losses",), {}),
    _broken(("losses", "version"), 2), _broken(("losses", "day"), "x"),
    _broken(("losses", "peak"), "x"), _broken(("losses", "streak"), "x"),
    _broken(("losses", "rebase"), KeyError), _broken(("losses", "round_trips"), []),
    _broken(("losses", "round_trips"), {BTC: {"realized": "1"}}),
    _broken(("losses", "trips"), [{"limit": "x"}]), _broken(("losses", "trips"), 5),
    _broken(("var_window",), [[1]]), _broken(("var_window",), 7),
    _broken(("var_window",), [[1, {BTC: "x"}]]), _broken(("var_window",), [[1, 2]]),
])
def test_restore_refuses_a_bad_snapshot_and_changes_nothing(bad):
    e = engine(daily_loss_limit=D("1"))
    before = e.snapshot()
    with pytest.raises(ValueError):
        e.restore(bad)
    assert e.snapshot() == before
    e.restore(_good())
    assert e.snapshot() == _good()


def test_a_snapshot_without_the_window_keeps_the_window():
    e = engine()
    e.sample({}, {BTC: D("100")}, T0)
    small = e.snapshot(window=False)
    assert "var_window" not in small and small["losses"] == e.snapshot()["losses"]
    r = engine()
    r.sample({}, {BTC: D("7")}, T0)
    r.restore(small)
    assert r.snapshot()["var_window"] == [[T0, {BTC: 7.0}]]


def test_loss_limits_alone_snapshot_fields():
    ll = LossLimits(engine().cfg)
    snap = ll.snapshot()
    assert snap == {"version": 1, "day": None, "day_start_equity": None, "peak": None,
                    "streak": 0, "rebase": False, "last_round_trip": None,
                    "round_trips": {}, "trips": []}
    ll.restore(snap)
    assert ll.snapshot() == snap
    with pytest.raises(ValueError, match="^risk snapshot version 0, expected 1$"):
        ll.restore({**snap, "version": 0})
    with pytest.raises(ValueError, match=r"^risk snapshot version \[\], expected 1$"):
        ll.restore([])
    with pytest.raises(ValueError, match="unreadable"):
        ll.restore({**snap, "peak": "x"})


def test_status_after_a_restore_before_any_evaluate():
    e = engine(daily_loss_limit=D("5"))
    p = position()
    e.evaluate({BTC: p}, {BTC: D("60000")}, T0)
    trade(e, p, fill(Side.BUY, "0.01", "60000"))
    trade(e, p, fill(Side.SELL, "0.01", "59990", fee="0.1"))
    snap = json.loads(json.dumps(e.snapshot()))
    assert snap["losses"]["last_round_trip"] == "-0.20"
    r = engine(daily_loss_limit=D("5"))
    r.restore(snap)
    assert r.losses.last_round_trip == D("-0.2")
    assert r.losses.figures() == {"daily_loss": None, "drawdown": None, "losing_streak": 1}
    st_ = r.status({BTC: p}, {BTC: D("60000")}, T0 + 1)
    assert st_["limits"]["daily_loss"] == {"used": None, "limit": "5"}
    assert st_["day_start_equity"] == "1000" and st_["equity"] is None
