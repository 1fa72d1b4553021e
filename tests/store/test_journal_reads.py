"""Journal schema v2 API on real SQLite files: state snapshots (durable, in batches),
reconciliation results, the audit trail's kinds and filters, and the reads the operator
(`bot4ctl orders|fills`) and crash recovery (positions recomputed from fills) use."""
from __future__ import annotations

import time
from decimal import Decimal

import orjson
import pytest

from daemon.execution.orders import (Fill, Liquidity, Order, OrderStatus, OrderType, Position,
                                     Side, TimeInForce)
from daemon.store.journal import Journal

D = Decimal


@pytest.fixture
def path(tmp_path):
    return tmp_path / "journal.sqlite3"


@pytest.fixture
def j(path):
    journal = Journal(path)
    yield journal
    journal.close()


def _order(cid: str, symbol: str = "BTCUSDT", **kw) -> Order:
    base = dict(client_id=cid, symbol=symbol, side=Side.BUY, type=OrderType.LIMIT,
                qty=D("1"), price=D("100"), created_ns=5)
    base.update(kw)
    return Order(**base)


# -- state snapshots -------------------------------------------------------------------------
def test_state_is_durable_across_reopen_and_replaced_whole(path):
    j = Journal(path)
    assert j.load_state("risk") is None
    j.save_state("risk", {"peak": D("10012.50"), "day": "2026-12-01", "n": 3,
                          "nested": {"a": [1, "2"]}})
    j.save_state("breakers", {"global": "open"})
    j.save_state("risk", {"peak": "1"})   # replaces, never merges
    j.close()
    j = Journal(path)
    try:
        assert j.load_state("risk") == {"peak": "1"}
        assert j.load_state("breakers") == {"global": "open"}
        assert j.load_state("nope") is None
        assert j.count("kv_state") == 2
    finally:
        j.close()


def test_state_keeps_decimals_as_exact_strings_and_time(j):
    before = time.time_ns()
    j.save_state("k", {"x": D("0.1000"), "big": D("123456789.000000001")})
    assert j.load_state("k") == {"x": "0.1000", "big": "123456789.000000001"}
    (ts,) = j._db.execute("SELECT ts_ns FROM kv_state WHERE key = 'k'").fetchone()
    assert before <= ts <= time.time_ns()


def test_state_must_be_a_dict(j):
    for bad in ([1, 2], "x", None, 3):
        with pytest.raises(TypeError, match="state 'k' must be a dict"):
            j.save_state("k", bad)
    assert j.count("kv_state") == 0


def test_state_joins_a_batch_and_rolls_back_with_it(j):
    j.save_state("risk", {"v": 1})
    commits = j.commits
    with j.batch():
        j.save_state("risk", {"v": 2})
        j.record_order(_order("a"), 1)
    assert j.commits == commits + 1 and j.load_state("risk") == {"v": 2}
    with pytest.raises(RuntimeError):
        with j.batch():
            j.save_state("risk", {"v": 3})
            j.save_state("new", {"v": 3})
            raise RuntimeError("the order it belongs to failed")
    assert j.load_state("risk") == {"v": 2} and j.load_state("new") is None
    assert j.commits == commits + 1


# -- reconciliations -----------------------------------------------------------------------------
def test_reconciliation_results_newest_last_with_run_and_time(path):
    j = Journal(path)
    assert j.last_reconciliation() is None
    before = time.time_ns()
    j.record_reconciliation(3, {"mode": "rebuild", "restored": 2, "cancelled": 0,
                                "positions_ok": True, "mismatches": [], "run": 99,
                                "qty": D("0.5")})
    j.record_reconciliation(4, {"mode": "cancel", "restored": 0, "cancelled": 1,
                                "positions_ok": False, "mismatches": ["BTCUSDT 1 != 2"]})
    j.close()
    j = Journal(path)
    try:
        last = j.last_reconciliation()
        assert before <= last.pop("ts_ns") <= time.time_ns()
        assert last == {"mode": "cancel", "restored": 0, "cancelled": 1, "positions_ok": False,
                        "mismatches": ["BTCUSDT 1 != 2"], "run": 4}
        assert j.count("reconciliations") == 2
        first = orjson.loads(j._db.execute(
            "SELECT result FROM reconciliations WHERE run = 3").fetchone()[0])
        assert first["qty"] == "0.5" and first["run"] == 99   # stored as given
    finally:
        j.close()


def test_reconciliation_result_must_be_a_dict_and_joins_a_batch(j):
    with pytest.raises(TypeError, match="must be a dict, got list"):
        j.record_reconciliation(1, [])
    with pytest.raises(RuntimeError):
        with j.batch():
            j.record_reconciliation(1, {"mode": "rebuild"})
            raise RuntimeError
    assert j.last_reconciliation() is None


# -- audit trail ---------------------------------------------------------------------------------
def test_audit_rows_filter_by_kind_time_and_limit(j):
    for i in range(5):
        j.audit("a", i=i)
        j.audit("b", i=i)
    assert [d["i"] for _, _, d in j.audit_rows("a")] == [0, 1, 2, 3, 4]
    assert [d["i"] for _, _, d in j.audit_rows("a", limit=2)] == [3, 4]   # newest, in order
    assert [(k, d["i"]) for _, k, d in j.audit_rows(limit=3)] == [("b", 3), ("a", 4), ("b", 4)]
    rows = j.audit_rows()
    assert len(rows) == 10
    t = rows[6][0]
    assert [(k, d["i"]) for _, k, d in j.audit_rows(since_ns=t)] == \
        [(k, d["i"]) for ts, k, d in rows if ts >= t]
    assert [d["i"] for _, _, d in j.audit_rows("b", since_ns=t)] == \
        [d["i"] for ts, k, d in rows if ts >= t and k == "b"]
    assert j.audit_rows("b", since_ns=t, limit=1) == [rows[-1]]
    assert j.audit_rows("c") == [] and j.audit_rows(since_ns=rows[-1][0] + 1) == []
    for bad in (0, -1, True, 1.5, "2"):
        with pytest.raises(ValueError, match="limit must be an integer >= 1"):
            j.audit_rows(limit=bad)


def test_config_loaded_records_hashes_and_whether_they_changed(j):
    assert j.record_config("/etc/bot4/bot4.toml", "aa", "bb") is True   # nothing before
    assert j.record_config("/etc/bot4/bot4.toml", "aa", "bb") is False
    assert j.record_config("/etc/bot4/bot4.toml", "aa", "cc") is True   # environment moved
    assert j.record_config("/etc/bot4/bot4.toml", "dd", "cc") is True   # the file moved
    assert j.record_config(None, None) is True
    rows = [d for _, _, d in j.audit_rows("config_loaded")]
    assert rows[0] == {"path": "/etc/bot4/bot4.toml", "file_sha256": "aa",
                       "effective_sha256": "bb", "changed": True}
    assert [r["changed"] for r in rows] == [True, False, True, True, True]
    assert rows[-1] == {"path": None, "file_sha256": None, "effective_sha256": None,
                        "changed": True}


def test_config_compares_with_the_last_config_row_only(j):
    j.record_config("p", "aa", "bb")
    j.audit("boot", file_sha256="zz")   # other kinds carry no config
    assert j.record_config("p", "aa", "bb") is False


def test_limit_breaker_and_command_kinds(j):
    before = j.commits
    j.record_limit_trip("daily_loss", "halted", "loss 101 > 100", loss=D("101.5"), limit="100")
    j.record_breaker("venue:paper", "closed", "open", "5 errors in a row", errors=5)
    j.record_command("breaker", action="trip", name="global")
    assert j.commits == before + 3
    assert [(k, d) for _, k, d in j.audit_rows()] == [
        ("limit_trip", {"name": "daily_loss", "action": "halted", "reason": "loss 101 > 100",
                        "figures": {"loss": "101.5", "limit": "100"}}),
        ("breaker", {"name": "venue:paper", "old": "closed", "new": "open",
                     "reason": "5 errors in a row", "errors": 5}),
        ("command", {"cmd": "breaker", "action": "trip", "name": "global"})]


# -- orders and fills for the operator --------------------------------------------------------------
def test_recent_orders_newest_first_every_column_json_able(j):
    j.record_order(_order("a1", created_ns=30, reduce_only=True, tif=TimeInForce.IOC,
                          type=OrderType.MARKET, price=None, venue="paper2"), 100)
    j.record_order(_order("b1", "ETHUSDT", side=Side.SELL, created_ns=10), 101)
    j.record_order(_order("a2", created_ns=20), 102)
    o = _order("a1", status=OrderStatus.FILLED, filled_qty=D("1"), avg_price=D("99.5"),
               reason="done")
    j.record_order(o, 200)   # an update keeps its place (journal order of first record)
    rows = j.recent_orders()
    assert [r["client_id"] for r in rows] == ["a2", "b1", "a1"]
    assert rows[2] == {"client_id": "a1", "symbol": "BTCUSDT", "side": "buy",
                       "type": "market", "tif": "ioc", "price": None, "qty": "1",
                       "reduce_only": True, "venue": "paper2", "status": "filled",
                       "filled_qty": "1", "avg_price": "99.5", "reason": "done",
                       "created_ns": 30, "updated_ns": 200}
    assert rows[0]["reduce_only"] is False and rows[0]["price"] == "100"
    orjson.dumps(rows)   # JSON-able as it is
    assert [r["client_id"] for r in j.recent_orders(limit=2)] == ["a2", "b1"]
    assert [r["client_id"] for r in j.recent_orders(symbol="BTCUSDT")] == ["a2", "a1"]
    assert [r["client_id"] for r in j.recent_orders(limit=1, symbol="BTCUSDT")] == ["a2"]
    assert j.recent_orders(symbol="XRPUSDT") == []
    for bad in (0, -5, False, None, 2.0):
        with pytest.raises(ValueError):
            j.recent_orders(limit=bad)


def _fill(fid: str, cid: str, side: Side, price: str, qty: str, fee: str = "0",
          symbol: str = "BTCUSDT", ts: int = 1) -> Fill:
    return Fill(fid, cid, symbol, side, D(price), D(qty), D(fee), Liquidity.TAKER, ts)


def test_recent_fills_newest_first_filter_and_limit(j):
    o = _order("o1")
    j.record_order(o, 1)
    pos: dict[str, Position] = {}
    for f in (_fill("f1", "o1", Side.BUY, "100", "1", "0.1", ts=9),
              _fill("f2", "o1", Side.SELL, "101", "0.5", ts=3, symbol="ETHUSDT"),
              _fill("f3", "o1", Side.BUY, "102", "2", "0.2", ts=5)):
        p = pos.setdefault(f.symbol, Position(f.symbol))
        p.apply(f)
        j.record_fill(f, o, p)
    rows = j.recent_fills()
    assert [r["fill_id"] for r in rows] == ["f3", "f2", "f1"]   # journal order, not ts
    assert rows[0] == {"fill_id": "f3", "client_id": "o1", "symbol": "BTCUSDT", "side": "buy",
                       "price": "102", "qty": "2", "fee": "0.2", "liquidity": "taker",
                       "ts_ns": 5}
    orjson.dumps(rows)
    assert [r["fill_id"] for r in j.recent_fills(limit=1)] == ["f3"]
    assert [r["fill_id"] for r in j.recent_fills(symbol="BTCUSDT")] == ["f3", "f1"]
    assert [r["fill_id"] for r in j.recent_fills(symbol="ETHUSDT", limit=5)] == ["f2"]
    with pytest.raises(ValueError):
        j.recent_fills(limit=0)
    assert [f.fill_id for f in j.fills_of("o1")] == ["f1", "f2", "f3"]
    assert j.fills_of("o1")[1] == _fill("f2", "o1", Side.SELL, "101", "0.5", ts=3,
                                        symbol="ETHUSDT")
    assert j.fills_of("nope") == []


def test_order_reads_one_order_back(j):
    assert j.order("x") is None
    o = _order("x", side=Side.SELL, tif=TimeInForce.POST_ONLY, reduce_only=True,
               status=OrderStatus.CANCELLED, reason="e-stop", filled_qty=D("0.25"),
               avg_price=D("100.5"), created_ns=7)
    j.record_order(o, 70)
    o.updated_ns = 70
    assert j.order("x") == o   # terminal orders too (open_orders() leaves them out)


# -- positions recomputed from fills ----------------------------------------------------------------
def test_positions_from_fills_equal_the_positions_table(j):
    """Buys, partial closes, flips through zero both ways, fees on every fill, two symbols:
    the replay of the fills alone gives exactly the positions the fills wrote."""
    o = _order("o1")
    j.record_order(o, 1)
    seq = [("BTCUSDT", Side.BUY, "100", "2", "0.02"), ("BTCUSDT", Side.BUY, "110", "2", "0.022"),
           ("ETHUSDT", Side.SELL, "3000", "0.5", "0.15"),
           ("BTCUSDT", Side.SELL, "120", "3", "0.036"),    # partial close: +45
           ("BTCUSDT", Side.SELL, "90", "3", "0.027"),     # flip: short 2 @ 90
           ("ETHUSDT", Side.BUY, "2900", "1.5", "0.435"),  # flip: long 1 @ 2900
           ("BTCUSDT", Side.BUY, "80", "2", "0.016"),      # flat: avg 0
           ("ETHUSDT", Side.SELL, "2950.5", "0.25", "0.07")]
    live: dict[str, Position] = {}
    for i, (sym, side, px, q, fee) in enumerate(seq):
        f = _fill(f"f{i}", "o1", side, px, q, fee, symbol=sym, ts=100 - i)
        p = live.setdefault(sym, Position(sym))
        p.apply(f)
        j.record_fill(f, o, p)
    table = j.positions()
    assert table == live
    assert j.positions_from_fills() == table
    btc = table["BTCUSDT"]
    assert (btc.qty, btc.avg_price, btc.realized_pnl, btc.fees) == (
        D(0), D(0), D(45) - D(15) + D(20), D("0.121"))
    assert j.positions_from_fills()["ETHUSDT"].fees == D("0.655")


def test_positions_from_fills_reveal_a_position_row_that_disagrees(j):
    o = _order("o1")
    j.record_order(o, 1)
    j.record_fill(_fill("f1", "o1", Side.BUY, "100", "1"), o, Position("BTCUSDT", D("7")))
    assert j.positions()["BTCUSDT"].qty == 7
    assert j.positions_from_fills() == {"BTCUSDT": Position("BTCUSDT", D(1), D(100))}


def test_positions_from_no_fills_is_empty(j):
    assert j.positions_from_fills() == {}


def test_count_knows_the_v2_tables(j):
    assert j.count("kv_state") == 0 and j.count("reconciliations") == 0
    with pytest.raises(ValueError):
        j.count("meta")
