"""report.json: every figure against a hand computation on a real journal file."""
from __future__ import annotations

import enum
import hashlib
import json
import math
import sqlite3
import statistics
from decimal import Decimal
from pathlib import Path

import orjson
import pytest

from daemon.backtest.report import (SECONDS_PER_YEAR, EquitySample, ReportError, _money,
                                    build_report, dumps, without_wall_clock, write_report)
from daemon.execution.orders import (INVERSE, Instrument, Liquidity, OrderStatus, Side,
                                     TimeInForce)
from daemon.store.journal import Journal
from tests.backtest.scenario import (MAIN_EQUITY, MAIN_INTERVAL_S, S, Recorder, flat_samples,
                                     main_samples, main_scenario)

D = Decimal
META = {"strategy": "quoter", "seed": 7, "journal_synchronous": "OFF"}


def _walk_floats(x):
    if isinstance(x, float):
        yield x
    elif isinstance(x, dict):
        for v in x.values():
            yield from _walk_floats(v)
    elif isinstance(x, list):
        for v in x:
            yield from _walk_floats(v)


def _no_constant(name: str):
    raise AssertionError(f"{name} in the report")


def _check_plain_json(rep: dict) -> None:
    """Every float finite and the dict equal to its own JSON round trip (no Decimal, no
    tuple, no non-string key slipped through)."""
    assert all(math.isfinite(f) for f in _walk_floats(rep))
    assert orjson.loads(dumps(rep)) == rep


@pytest.fixture
def main(tmp_path):
    path = tmp_path / "journal.sqlite3"
    main_scenario(path)
    rep = build_report(journal_path=path, samples=main_samples(),
                       sample_interval_s=MAIN_INTERVAL_S, meta=META)
    _check_plain_json(rep)
    return rep


def test_pnl_fees_turnover_by_hand(main):
    # BTC: realised +0.4 (B: 0.004 x 100) - 0.6 (C: 0.006 x -100) = -0.2
    #      fees 0.06 + 0.02404 + 0.03594 + 0.01196 = 0.13194
    #      long 0.002 @ 59800 at mark 59850: unrealised 0.1
    # ETH: realised (3000 - 2990) x 1.0 = 10; fees 0.3 + 0.4485 = 0.7485
    #      long 0.5 @ 2990 at mark 2995: unrealised 2.5
    p = main["pnl"]
    assert D(p["realised"]) == D("9.8")
    assert D(p["fees"]) == D("0.88044")
    assert D(p["unrealised"]) == D("2.6")
    assert D(p["total_net"]) == D("9.8") + D("2.6") - D("0.88044") == D("11.51956")
    # 600 + 240.4 + 359.4 + 119.6 (BTC) + 3000 + 4485 (ETH)
    assert D(p["turnover"]) == D("8804.4")
    btc, eth = main["by_symbol"]["BTCUSDT"], main["by_symbol"]["ETHUSDT"]
    assert (D(btc["realised"]), D(btc["unrealised"]), D(btc["fees"])) == \
        (D("-0.2"), D("0.1"), D("0.13194"))
    assert (D(btc["position"]), D(btc["avg_entry"]), D(btc["mark"])) == \
        (D("0.002"), D("59800"), D("59850"))
    assert D(btc["total_net"]) == D("-0.2") + D("0.1") - D("0.13194")
    assert D(btc["turnover"]) == D("1319.4") and btc["fills"] == 4
    assert (D(eth["position"]), D(eth["avg_entry"]), D(eth["unrealised"])) == \
        (D("0.5"), D("2990"), D("2.5"))
    assert eth["mark_ts_ns"] == 15 * S


def test_pnl_agrees_with_the_journals_own_replay(tmp_path, main):
    # Journal.positions_from_fills is the figure crash recovery trusts.
    path = tmp_path / "journal.sqlite3"
    j = Journal(path)
    try:
        for sym, pos in j.positions_from_fills().items():
            assert D(main["by_symbol"][sym]["realised"]) == pos.realized_pnl
            assert D(main["by_symbol"][sym]["fees"]) == pos.fees
            assert D(main["by_symbol"][sym]["position"]) == pos.qty
    finally:
        j.close()


def test_drawdown_by_hand(tmp_path, main):
    # equity 0, 0.5, -0.3, ...: peak 0.5 at 2.5 s, trough -0.3 at 5 s; later falls are smaller
    dd = main["drawdown"]
    assert D(dd["absolute"]) == D("0.8")
    assert dd["pct"] == 160.0                     # 0.8 / 0.5 x 100
    assert D(dd["peak_equity"]) == D("0.5")
    assert (dd["peak_ts_ns"], dd["trough_ts_ns"]) == (2_500_000_000, 5 * S)
    rep = build_report(journal_path=tmp_path / "journal.sqlite3", samples=main_samples(),
                       sample_interval_s=MAIN_INTERVAL_S, meta=META, capital=D("1000"))
    assert rep["drawdown"]["pct"] == pytest.approx(0.8 / 1000.5 * 100, rel=1e-5)
    assert "capital" in rep["drawdown"]["pct_basis"]


def test_sharpe_and_sortino_by_hand(main):
    eq = [float(x) for x in MAIN_EQUITY]
    d = [b - a for a, b in zip(eq, eq[1:])]
    periods = SECONDS_PER_YEAR / MAIN_INTERVAL_S
    sharpe = statistics.mean(d) / statistics.stdev(d) * math.sqrt(periods)
    downside = math.sqrt(sum(x * x for x in d if x < 0) / len(d))
    sortino = statistics.mean(d) / downside * math.sqrt(periods)
    ra = main["risk_adjusted"]
    assert ra["sharpe"] == pytest.approx(sharpe, rel=1e-5)
    assert ra["sortino"] == pytest.approx(sortino, rel=1e-5)
    assert ra["sample_interval_s"] == 2.5 and ra["periods_per_year"] == 12614400.0
    assert ra["annualisation_factor"] == pytest.approx(math.sqrt(12614400), rel=1e-5)
    assert ra["changes"] == 6
    # six significant digits, no more
    for k in ("sharpe", "sortino", "annualisation_factor"):
        assert ra[k] == float(f"{ra[k]:.5e}")


def test_hit_rate_and_round_trips_by_hand(main):
    hr = main["hit_rate"]
    # closing fills: B +0.4, C -0.6, H +10 (closes the short of 1.0)
    assert (hr["closing_fills"], hr["wins"], hr["losses"], hr["scratches"]) == (3, 2, 1, 0)
    assert hr["value"] == pytest.approx(2 / 3, rel=1e-5)
    rt = hr["round_trips"]
    # BTC A->B->C: -0.2 - (0.06 + 0.02404 + 0.03594) = -0.31998, a loss.
    # ETH G->H: +10 - 0.3 - 0.4485 x 1.0/1.5 = 9.401, a win; H's remaining 0.5 opens a trip.
    # BTC E is open too.
    assert (rt["closed"], rt["wins"], rt["losses"], rt["open"]) == (2, 1, 1, 2)
    assert rt["value"] == 0.5
    assert "positive realised" in hr["definition"]


def test_fill_ratio_by_hand(main):
    fr = main["fill_ratio"]
    # 8 orders, A B C E G H got fills
    assert (fr["orders_placed"], fr["orders_with_fill"], fr["orders"]) == (8, 6, 0.75)
    btc = fr["qty_by_symbol"]["BTCUSDT"]
    # placed 0.010+0.010+0.006+0.005+0.002+0.001, filled 0.010+0.004+0.006+0.002
    assert (D(btc["placed"]), D(btc["filled"])) == (D("0.034"), D("0.022"))
    assert btc["ratio"] == pytest.approx(22 / 34, rel=1e-5)
    assert fr["qty_by_symbol"]["ETHUSDT"]["ratio"] == 1.0


def test_queue_wait_by_hand(main):
    qw = main["queue_wait"]
    # maker first fills: A 4 - 1.5 = 2.5 s, B 7 - 5.2 = 1.8 s, E 13 - 11.1 = 1.9 s
    assert qw["orders"] == 3 and qw["basis_counts"] == {"venue_ack": 3, "submit": 0}
    assert qw["mean_s"] == pytest.approx(6.2 / 3, rel=1e-5)
    assert (qw["median_s"], qw["max_s"]) == (1.9, 2.5)


def test_queue_wait_from_submit_when_no_acceptance_was_journalled(tmp_path):
    r = Recorder(tmp_path / "j.sqlite3")
    r.submit("X", "BTCUSDT", Side.BUY, "0.001", "60000", 2 * S)
    r.fill("X", "60000", "0.001", "0.006", Liquidity.MAKER, 5 * S)
    r.submit("Y", "BTCUSDT", Side.BUY, "0.001", "60000", 6 * S)
    r.report("Y", OrderStatus.NEW, 7 * S)
    r.fill("Y", "60000", "0.001", "0.006", Liquidity.MAKER, 8 * S)
    r.close()
    rep = build_report(journal_path=tmp_path / "j.sqlite3", samples=[], sample_interval_s=1,
                       meta={})
    qw = rep["queue_wait"]
    assert qw["basis_counts"] == {"venue_ack": 1, "submit": 1}
    assert (qw["mean_s"], qw["median_s"], qw["max_s"]) == (2.0, 2.0, 3.0)   # 3 s and 1 s


def test_counts_by_hand(main):
    c = main["counts"]
    assert (c["orders"], c["fills"], c["maker_fills"], c["taker_fills"]) == (8, 6, 3, 3)
    assert (c["cancels"], c["cancel_requests"], c["rejects"]) == (2, 2, 1)
    assert c["rejects_by_reason"] == {"post-only order would take liquidity": 1}
    assert c["by_status"] == {"filled": 5, "cancelled": 2, "rejected": 1}
    assert c["pre_trade_rejects_by_stage"] is None


def test_pre_trade_rejects_are_passed_through(tmp_path):
    main_scenario(tmp_path / "j.sqlite3")
    rep = build_report(journal_path=tmp_path / "j.sqlite3", samples=main_samples(),
                       sample_interval_s=MAIN_INTERVAL_S, meta={},
                       pre_trade_rejects={"risk": 3, "instrument": 2})
    assert rep["counts"]["pre_trade_rejects_by_stage"] == {"instrument": 2, "risk": 3}


def test_per_order_records(main):
    recs = main["orders"]
    assert [o["client_id"] for o in recs] == list("ABCDEFGH")   # journal order
    b = recs[1]
    assert b == {
        "client_id": "B", "symbol": "BTCUSDT", "side": "sell", "type": "limit", "tif": "gtc",
        "price": "60100", "qty": "0.01", "filled": "0.004", "avg_price": "60100",
        "status": "cancelled", "reason": "requested", "reduce_only": False,
        "created_ns": 5 * S, "updated_ns": 8_100_000_000, "accepted_ns": 5_200_000_000,
        "fills": [{"fill_id": "f2", "price": "60100", "qty": "0.004", "fee": "0.02404",
                   "liquidity": "maker", "ts_ns": 7 * S}]}
    c = recs[2]
    assert (c["type"], c["tif"], c["price"], c["status"]) == ("market", "ioc", None, "filled")
    d = recs[3]
    assert (d["status"], d["reason"], d["fills"], d["accepted_ns"]) == \
        ("rejected", "post-only order would take liquidity", [], None)


def test_equity_summary_and_meta(main):
    assert main["equity"] == {"samples": 7, "first_ts_ns": 0, "last_ts_ns": 15 * S,
                              "start": "0", "final": "11.51956", "min": "-0.3",
                              "max": "11.51956"}
    assert main["meta"] == META
    assert main["journal_schema"] >= 2


def test_two_runs_give_byte_identical_reports_apart_from_the_wall_clock(tmp_path):
    # Two journals written separately (their audit rows and positions.updated_ns carry
    # different wall-clock stamps, which the report must not read).
    out = []
    for run in ("a", "b"):
        (tmp_path / run).mkdir()
        main_scenario(tmp_path / run / "journal.sqlite3")
        rep = build_report(journal_path=tmp_path / run / "journal.sqlite3",
                           samples=main_samples(), sample_interval_s=MAIN_INTERVAL_S,
                           meta=META)
        rep["generated_at"] = f"wall clock of run {run}"
        write_report(rep, tmp_path / run / "report.json")
        out.append((tmp_path / run / "report.json").read_bytes())
    assert out[0] != out[1]   # the wall-clock field is there, and differs
    a, b = (x.replace(b"wall clock of run a", b"W").replace(b"wall clock of run b", b"W")
            for x in out)
    assert a == b
    assert out[0].endswith(b"}\n")
    keys = list(orjson.loads(out[0]))
    assert keys == sorted(keys)


def test_without_wall_clock_removes_only_generated_at(main):
    assert set(main) - set(without_wall_clock(main)) == {"generated_at"}
    assert main["generated_at"].endswith("+00:00")


def test_the_journal_is_read_only_and_may_still_be_open(tmp_path):
    path = tmp_path / "journal.sqlite3"
    r = main_scenario(path, close=False)
    open_rep = build_report(journal_path=path, samples=main_samples(),
                            sample_interval_s=MAIN_INTERVAL_S, meta=META)
    r.journal.record_order(r.orders["E"], 20 * S)   # the writer is not blocked by the reader
    r.close()
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    closed_rep = build_report(journal_path=path, samples=main_samples(),
                              sample_interval_s=MAIN_INTERVAL_S, meta=META)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before
    for rep in (open_rep, closed_rep):
        rep.pop("generated_at")
    open_rep["orders"][4].pop("updated_ns")
    closed_rep["orders"][4].pop("updated_ns")
    assert open_rep == closed_rep


# -- edge cases ------------------------------------------------------------------------------
def test_no_fills(tmp_path):
    r = Recorder(tmp_path / "j.sqlite3")
    r.submit("A", "BTCUSDT", Side.BUY, "0.001", "59000", 1 * S, tif=TimeInForce.POST_ONLY)
    r.report("A", OrderStatus.REJECTED, 1 * S + 1, "post-only order would take liquidity")
    r.submit("B", "BTCUSDT", Side.BUY, "0.001", "59000", 2 * S)
    r.report("B", OrderStatus.NEW, 2 * S + 1)
    r.cancel_request("B", 3 * S)
    r.report("B", OrderStatus.CANCELLED, 3 * S + 1)
    r.close()
    rep = build_report(journal_path=tmp_path / "j.sqlite3",
                       samples=flat_samples(5, marks={"BTCUSDT": D("60000")}),
                       sample_interval_s=1.0, meta={})
    _check_plain_json(rep)
    p = rep["pnl"]
    assert (p["realised"], p["unrealised"], p["fees"], p["total_net"], p["turnover"]) == \
        ("0", "0", "0", "0", "0")
    assert rep["by_symbol"] == {}
    assert rep["hit_rate"]["value"] is None and rep["hit_rate"]["closing_fills"] == 0
    assert rep["hit_rate"]["round_trips"]["value"] is None
    assert rep["fill_ratio"]["orders"] == 0.0
    assert rep["fill_ratio"]["qty_by_symbol"]["BTCUSDT"]["ratio"] == 0.0
    assert rep["queue_wait"]["orders"] == 0 and rep["queue_wait"]["mean_s"] is None
    assert rep["counts"]["fills"] == 0 and rep["counts"]["rejects"] == 1
    assert rep["counts"]["cancels"] == 1
    assert rep["risk_adjusted"]["sharpe"] is None and rep["risk_adjusted"]["sortino"] is None
    assert rep["drawdown"]["absolute"] == "0" and rep["drawdown"]["pct"] == 0.0


def test_empty_journal_and_no_samples(tmp_path):
    j = Journal(tmp_path / "j.sqlite3")
    j.begin_run()
    j.close()
    rep = build_report(journal_path=tmp_path / "j.sqlite3", samples=[], sample_interval_s=1,
                       meta={})
    _check_plain_json(rep)
    assert rep["counts"]["orders"] == 0 and rep["orders"] == []
    assert rep["fill_ratio"]["orders"] is None and rep["fill_ratio"]["qty_by_symbol"] == {}
    assert rep["drawdown"]["absolute"] is None and rep["drawdown"]["pct"] is None
    assert rep["equity"]["samples"] == 0 and rep["equity"]["final"] is None
    assert rep["risk_adjusted"]["changes"] == 0 and rep["risk_adjusted"]["sharpe"] is None


def test_one_sample(tmp_path):
    main_scenario(tmp_path / "j.sqlite3")
    rep = build_report(journal_path=tmp_path / "j.sqlite3", samples=main_samples()[-1:],
                       sample_interval_s=MAIN_INTERVAL_S, meta={})
    _check_plain_json(rep)
    assert rep["risk_adjusted"]["changes"] == 0
    assert rep["risk_adjusted"]["sharpe"] is None and rep["risk_adjusted"]["sortino"] is None
    assert rep["drawdown"]["absolute"] == "0" and rep["drawdown"]["pct"] == 0.0
    assert D(rep["pnl"]["unrealised"]) == D("2.6")   # the one sample has the marks


def test_two_samples_give_one_change_and_no_ratio(tmp_path):
    main_scenario(tmp_path / "j.sqlite3")
    rep = build_report(journal_path=tmp_path / "j.sqlite3", samples=main_samples()[:2],
                       sample_interval_s=MAIN_INTERVAL_S, meta={})
    assert rep["risk_adjusted"]["changes"] == 1 and rep["risk_adjusted"]["sharpe"] is None


def test_flat_equity_gives_null_ratios_not_inf_or_nan(tmp_path):
    main_scenario(tmp_path / "j.sqlite3")
    rep = build_report(journal_path=tmp_path / "j.sqlite3", samples=flat_samples(50, "3.5"),
                       sample_interval_s=1, meta={})
    _check_plain_json(rep)
    ra = rep["risk_adjusted"]
    assert ra["changes"] == 49 and ra["sharpe"] is None and ra["sortino"] is None
    json.loads(dumps(rep), parse_constant=_no_constant)   # no NaN, Infinity
    assert rep["drawdown"]["absolute"] == "0"


def test_only_losses(tmp_path):
    # Two BTC round trips, both losing; equity only ever falls.
    r = Recorder(tmp_path / "j.sqlite3")
    r.submit("A", "BTCUSDT", Side.BUY, "0.01", "60000", 1 * S)
    r.fill("A", "60000", "0.01", "0.06", Liquidity.TAKER, 1 * S)
    r.submit("B", "BTCUSDT", Side.SELL, "0.01", "59900", 2 * S)
    r.fill("B", "59900", "0.01", "0.0599", Liquidity.TAKER, 2 * S)     # -1.0
    r.submit("C", "BTCUSDT", Side.SELL, "0.02", "60000", 3 * S)
    r.fill("C", "60000", "0.02", "0.12", Liquidity.TAKER, 3 * S)
    r.submit("D", "BTCUSDT", Side.BUY, "0.02", "60050", 4 * S)
    r.fill("D", "60050", "0.02", "0.1201", Liquidity.TAKER, 4 * S)     # -1.0
    r.close()
    eq = ["0", "-0.06", "-1.1199", "-1.2399", "-2.36"]
    samples = [EquitySample(k * S, D(e), {}, {"BTCUSDT": D("60000")})
               for k, e in enumerate(eq)]
    rep = build_report(journal_path=tmp_path / "j.sqlite3", samples=samples,
                       sample_interval_s=1, meta={})
    _check_plain_json(rep)
    p = rep["pnl"]
    assert D(p["realised"]) == D("-2.0") and D(p["fees"]) == D("0.36")
    assert D(p["total_net"]) == D("-2.36")
    hr = rep["hit_rate"]
    assert (hr["value"], hr["closing_fills"], hr["losses"]) == (0.0, 2, 2)
    assert (hr["round_trips"]["value"], hr["round_trips"]["closed"]) == (0.0, 2)
    assert rep["drawdown"]["absolute"] == "2.36"
    assert rep["drawdown"]["pct"] is None         # the peak is 0: no percentage of it
    d = [float(b) - float(a) for a, b in zip(eq, eq[1:])]
    factor = math.sqrt(SECONDS_PER_YEAR)
    assert rep["risk_adjusted"]["sharpe"] == pytest.approx(
        statistics.mean(d) / statistics.stdev(d) * factor, rel=1e-5)
    downside = math.sqrt(sum(x * x for x in d) / len(d))
    assert rep["risk_adjusted"]["sortino"] == pytest.approx(
        statistics.mean(d) / downside * factor, rel=1e-5)
    assert rep["risk_adjusted"]["sortino"] < 0


def test_constant_losses_sharpe_null_sortino_minus_the_factor(tmp_path):
    main_scenario(tmp_path / "j.sqlite3")
    samples = [EquitySample(k * S, D(-k), {}, {}) for k in range(10)]
    rep = build_report(journal_path=tmp_path / "j.sqlite3", samples=samples,
                       sample_interval_s=1, meta={})
    ra = rep["risk_adjusted"]
    assert ra["sharpe"] is None                   # zero variance
    # mean -1, downside deviation sqrt(9 x 1 / 9) = 1
    assert ra["sortino"] == pytest.approx(-math.sqrt(SECONDS_PER_YEAR), rel=1e-5)


def test_a_position_without_a_mark_has_no_unrealised_or_total(tmp_path):
    main_scenario(tmp_path / "j.sqlite3")
    samples = [EquitySample(0, D(0), {}, {"BTCUSDT": D("59850")})]   # no ETH mark
    rep = build_report(journal_path=tmp_path / "j.sqlite3", samples=samples,
                       sample_interval_s=1, meta={})
    assert rep["pnl"]["unrealised"] is None and rep["pnl"]["total_net"] is None
    assert rep["by_symbol"]["ETHUSDT"]["unrealised"] is None
    assert D(rep["by_symbol"]["BTCUSDT"]["unrealised"]) == D("0.1")
    assert D(rep["pnl"]["realised"]) == D("9.8")


# -- inputs it refuses -------------------------------------------------------------------------
def test_refuses_what_is_not_a_journal(tmp_path):
    with pytest.raises(ReportError, match="no journal"):
        build_report(journal_path=tmp_path / "missing.sqlite3", samples=[],
                     sample_interval_s=1, meta={})
    other = tmp_path / "other.sqlite3"
    db = sqlite3.connect(other)
    db.execute("CREATE TABLE t (x)")
    db.commit()
    db.close()
    with pytest.raises(ReportError, match="not a bot4 journal"):
        build_report(journal_path=other, samples=[], sample_interval_s=1, meta={})
    junk = tmp_path / "junk.sqlite3"
    junk.write_bytes(b"not a database at all" * 100)
    with pytest.raises(ReportError):
        build_report(journal_path=junk, samples=[], sample_interval_s=1, meta={})


@pytest.mark.parametrize("interval", [0, -1.0, float("nan"), float("inf")])
def test_refuses_a_sampling_interval_that_is_not_positive(tmp_path, interval):
    main_scenario(tmp_path / "j.sqlite3")
    with pytest.raises(ReportError, match="sample_interval_s"):
        build_report(journal_path=tmp_path / "j.sqlite3", samples=[],
                     sample_interval_s=interval, meta={})


def test_refuses_samples_out_of_time_order(tmp_path):
    main_scenario(tmp_path / "j.sqlite3")
    with pytest.raises(ReportError, match="out of engine-time order"):
        build_report(journal_path=tmp_path / "j.sqlite3",
                     samples=list(reversed(main_samples())), sample_interval_s=1, meta={})


class _Mode(enum.Enum):
    OFF = "off"


def test_meta_is_made_plain_json_deterministically(tmp_path):
    main_scenario(tmp_path / "j.sqlite3")
    meta = {"files": [Path("/a/b.gz")], "size": D("0.00100"), "sync": _Mode.OFF,
            "tags": {"b", "a"}, "nan": float("nan"), 3: (1, 2)}
    rep = build_report(journal_path=tmp_path / "j.sqlite3", samples=[], sample_interval_s=1,
                       meta=meta)
    assert rep["meta"] == {"files": ["/a/b.gz"], "size": "0.001", "sync": "off",
                           "tags": ["a", "b"], "nan": None, "3": [1, 2]}
    with pytest.raises(TypeError, match="deterministically"):
        build_report(journal_path=tmp_path / "j.sqlite3", samples=[], sample_interval_s=1,
                     meta={"x": object()})


def test_write_report_refuses_values_that_are_not_json(tmp_path):
    with pytest.raises(TypeError):
        write_report({"x": D(1)}, tmp_path / "report.json")
    assert not (tmp_path / "report.json").exists()


# -- inverse (COIN-M) contracts ------------------------------------------------------------------
COINM = Instrument("BTCUSD_PERP", D("0.1"), D("1"), D("0"), kind=INVERSE,
                   contract_size=D("100"))


def test_inverse_round_trip_and_open_position_by_hand(tmp_path):
    # 100 USD contracts. Buy 10 @ 50000, sell 10 @ 55000: 1000 x (1/50000 - 1/55000) coin
    # = 1/550 coin. Then buy 5 @ 55000, marked 60000: 500 x (1/55000 - 1/60000) = 1/1320.
    # Fees 1 bp of the coin notional, quantised to 1e-8: 0.000002, 0.00000182, 0.00000091.
    r = Recorder(tmp_path / "j.sqlite3")
    sym = COINM.symbol
    r.positions[sym] = COINM.new_position()
    r.submit("A", sym, Side.BUY, "10", "50000", 1 * S)
    r.fill("A", "50000", "10", "0.000002", Liquidity.TAKER, 1 * S)
    r.submit("B", sym, Side.SELL, "10", "55000", 2 * S)
    r.fill("B", "55000", "10", "0.00000182", Liquidity.TAKER, 2 * S)
    r.submit("C", sym, Side.BUY, "5", "55000", 3 * S)
    r.fill("C", "55000", "5", "0.00000091", Liquidity.TAKER, 3 * S)
    r.close()
    samples = [EquitySample(4 * S, D(0), {sym: D(5)}, {sym: D("60000")})]
    rep = build_report(journal_path=tmp_path / "j.sqlite3", samples=samples,
                       sample_interval_s=1, meta={}, instruments={sym: COINM})
    _check_plain_json(rep)
    q = D("1e-20")
    b = rep["by_symbol"][sym]
    assert (b["kind"], b["settlement"], b["contract_size"]) == ("inverse", "coin", "100")
    assert D(b["realised"]).quantize(q) == (D(1) / 550).quantize(q)
    assert D(b["unrealised"]).quantize(q) == (D(1) / 1320).quantize(q)
    fees = D("0.000002") + D("0.00000182") + D("0.00000091")
    assert D(b["fees"]) == fees == D("0.00000473")
    coin = D(1) / 550 + D(1) / 1320 - fees
    assert D(b["total_net"]).quantize(q) == coin.quantize(q)
    assert D(b["turnover"]) == D("2500")                     # 25 contracts x 100 USD
    p = rep["pnl"]                                            # in USD at the mark 60000
    assert D(p["realised"]).quantize(D("1e-15")) == (D(60000) / 550).quantize(D("1e-15"))
    assert D(p["fees"]) == D("0.28380")
    assert D(p["total_net"]).quantize(D("1e-15")) == (coin * 60000).quantize(D("1e-15"))
    assert D(b["total_net_quote"]) == D(p["total_net"])
    assert rep["hit_rate"]["wins"] == 1 and rep["hit_rate"]["round_trips"]["wins"] == 1

    # Without the instrument the same fills would be read as linear: a different figure,
    # which is why the runner must pass the engine's instruments.
    linear = build_report(journal_path=tmp_path / "j.sqlite3", samples=samples,
                          sample_interval_s=1, meta={})
    assert linear["by_symbol"][sym]["kind"] == "linear"
    assert D(linear["by_symbol"][sym]["realised"]) == D("50000")


def test_inverse_without_a_mark_has_no_quote_totals(tmp_path):
    r = Recorder(tmp_path / "j.sqlite3")
    sym = COINM.symbol
    r.positions[sym] = COINM.new_position()
    r.submit("A", sym, Side.BUY, "10", "50000", 1 * S)
    r.fill("A", "50000", "10", "0.000002", Liquidity.TAKER, 1 * S)
    r.submit("B", sym, Side.SELL, "10", "55000", 2 * S)
    r.fill("B", "55000", "10", "0.00000182", Liquidity.TAKER, 2 * S)
    r.close()
    rep = build_report(journal_path=tmp_path / "j.sqlite3", samples=[], sample_interval_s=1,
                       meta={}, instruments={sym: COINM})
    _check_plain_json(rep)
    assert rep["by_symbol"][sym]["total_net"] is not None        # flat: known in coin
    assert rep["by_symbol"][sym]["total_net_quote"] is None      # but no rate to USD
    assert rep["pnl"]["realised"] is None and rep["pnl"]["total_net"] is None
    assert rep["pnl"]["turnover"] == "2000"


def test_irregular_samples_are_put_on_the_stated_grid(tmp_path):
    # Samples at 0, 1, 2, 5 s (a quiet market between 2 and 5 s) and 5.5 s; grid every 1 s
    # from 0 to 5 s takes the newest sample at or before each point: 0, 1, 3, 3, 3, 2.
    main_scenario(tmp_path / "j.sqlite3")
    at = [(0, "0"), (1, "1"), (2, "3"), (5, "2"), (5.5, "7")]
    samples = [EquitySample(int(t * S), D(e), {}, {}) for t, e in at]
    rep = build_report(journal_path=tmp_path / "j.sqlite3", samples=samples,
                       sample_interval_s=1, meta={})
    d = [1.0, 2.0, 0.0, 0.0, -1.0]
    factor = math.sqrt(SECONDS_PER_YEAR)
    ra = rep["risk_adjusted"]
    assert ra["changes"] == 5
    assert ra["sharpe"] == pytest.approx(statistics.mean(d) / statistics.stdev(d) * factor,
                                         rel=1e-5)
    assert ra["sortino"] == pytest.approx(statistics.mean(d) / math.sqrt(1 / 5) * factor,
                                          rel=1e-5)
    assert rep["drawdown"]["absolute"] == "1"      # from every sample: 3 -> 2
    # Finer sampling than the grid: only the grid points count.
    fine = [EquitySample(k * S // 10, D(k % 10), {}, {}) for k in range(31)]   # 0..3 s
    rep = build_report(journal_path=tmp_path / "j.sqlite3", samples=fine,
                       sample_interval_s=1, meta={})
    assert rep["risk_adjusted"]["changes"] == 3
    assert rep["risk_adjusted"]["sharpe"] is None    # 0 at every whole second: flat


def test_refuses_a_grid_too_fine_for_the_run(tmp_path):
    main_scenario(tmp_path / "j.sqlite3")
    samples = [EquitySample(0, D(0), {}, {}), EquitySample(86_400 * S, D(1), {}, {})]
    with pytest.raises(ReportError, match="too small"):
        build_report(journal_path=tmp_path / "j.sqlite3", samples=samples,
                     sample_interval_s=0.001, meta={})


@pytest.mark.parametrize("value, text", [
    ("0.01178962000000000000000000", "0.01178962"), ("1.50", "1.5"), ("100", "100"),
    ("1E+2", "100"), ("-0.000", "0"), ("0E-8", "0"), ("-2.3600", "-2.36"),
    ("0.00000001", "0.00000001"),
    ("123456789012345678901234567890.10", "123456789012345678901234567890.1")])
def test_money_text_is_exact_and_plain(value, text):
    assert _money(D(value)) == text


def test_the_summary_line_shows_money_to_eight_places():
    from daemon.backtest.run import summary_money
    assert summary_money("-2.020213960000000000000000522") == "-2.02021396"
    assert summary_money("-1.149590800000000000000000522") == "-1.1495908"
    assert summary_money("0.000000004") == "0"          # no negative zero, no exponent
    assert summary_money("-0.000000004") == "0"
    assert summary_money("12345678") == "12345678"       # normalize() would say 1.2345678E+7
    assert summary_money("0.00000005") == "0.00000005"
    assert summary_money(None) == "n/a"
