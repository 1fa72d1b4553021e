"""bot4ctl's status, orders, fills and breaker commands against a real ControlServer on a
Unix socket in tmp_path (the handler answers from a real journal built from the frozen v2
fixture), and the 80-column rule for every line of human output."""
from __future__ import annotations

import copy
from pathlib import Path

import orjson
import pytest

from daemon.control import ctl, render
from daemon.control.server import CommandError
from daemon.store.journal import Journal
from tests.control_thread import ControlThread
from tests.store.test_migrations import build

NS = 1_796_117_342_170_499_069   # 2026-12-01 09:29:02Z

RICH: dict = {
    "state": "reducing",
    "reason": "risk: daily loss limit 100 reached (loss 101.23456789 incl. fees); the "
              "strategy keeps only reducing orders until an operator resets",
    "degraded": ["market data stale for BTCUSDT (4.2 s)",
                 "notify backend unreachable: ntfy.sh timed out after 5 s"],
    "version": "0.4.0", "pid": 12345, "uptime_s": 86400.5, "sim": True,
    "latch": {"tripped": True, "kind": "halt",
              "reason": "previous run ended uncleanly (pid 999 started 2026-11-30T10:00:00Z)"
                        "; reconcile before reset"},
    "estop": {"pin": 17, "circuit_closed": True, "callback_thread_alive": True},
    "led": {"pattern": "amber_fast_blink", "value": [1.0, 0.5, 0.0]},
    "journal": {"ok": False, "error": "database or disk is full\n" * 5, "commits": 12},
    "failures": ["stop: market: ConnectionResetError(104, 'Connection reset by peer') " * 2],
    "watchdog": {"systemd_usec": 30_000_000, "pings": 123456,
                 "pings_blocked": "market stalled 31.2 s > 30 s deadline; strategy 12 s"},
    "orders": {"open": 12, "submitted": 1234, "fills": 567, "rejected": 8, "list": [
        {"id": f"r7-{i:06d}-averyveryverylongclientorderidentifier", "symbol": "BTCUSDT",
         "side": "buy", "price": "60000.01000000", "qty": "0.00150000",
         "status": "partially_filled"} for i in range(12)]},
    "positions": {
        "BTCUSDT": {"qty": "-0.00150000", "avg_price": "60123.45678901",
                    "realized_pnl": "-123.45678901", "unrealized_pnl": "12.34567890",
                    "fees": "1.23456789", "mark": "60111.11111111"},
        "ETHUSDT": {"qty": "2.5", "avg_price": "3000.5", "realized_pnl": "0",
                    "unrealized_pnl": None, "fees": "0.1", "mark": None}},
    "risk": {
        "action": "reducing", "equity": "9876.54321", "peak": "10012.5",
        "day_start_equity": "9977.77", "day": "2026-12-01",
        "trips": [{"limit": "daily_loss", "action": "reducing", "figures": {},
                   "reason": "daily loss 101.23456789 (realised -90, unrealised -10, fees "
                             "1.23) over the limit of 100 for 2026-12-01", "since_ns": NS}],
        "limits": {
            "max_order_qty": {"limit": "0.01"}, "price_band_bps": {"limit": "50"},
            "open_orders": {"used": "12", "limit": "10"},
            "open_orders_per_symbol": {"BTCUSDT": {"used": "12", "limit": "20"},
                                       "ETHUSDT": {"used": "0", "limit": "20"}},
            "position": {"BTCUSDT": {"used": "0.0015", "limit": "0.01"}},
            "gross_exposure": {"used": "7590.123456", "limit": "10000"},
            "net_exposure": {"used": "-90.18", "limit": "5000"},
            "orders_per_min": {"used": 3, "limit": "60"},
            "daily_loss": {"used": "101.23456789", "limit": "100"},
            "losing_streak": {"used": 2, "limit": "5"},
            "var": {"used": "12.3", "limit": "off"}, "stress": {"used": None, "limit": "0"}},
        "var": {"method": "cornish_fisher", "level": "0.99", "returns": 240, "window": 500,
                "min_returns": 30,
                "table": {m: {lvl: {"var": "12.345678901234", "cvar": "15.678901234567"}
                              for lvl in ("0.95", "0.99")}
                          for m in ("historical", "gaussian", "cornish_fisher")}},
        "stress": {"scenarios": {"price -10%": "750.12", "price -20%": "1500.123",
                                 "price +10%": "740", "spread x5": "12.5",
                                 "all resting orders filled": "30.75"},
                   "worst": {"scenario": "price -20%", "loss": "1500.123"}, "limit": "2000"}},
    "breakers": [
        {"name": "global", "state": "closed", "kind": "auto", "reason": None, "since_ns": 0},
        {"name": "venue:paper", "state": "open", "kind": "manual", "since_ns": NS,
         "reason": "error rate 0.62 over 60 s exceeds 0.5 (Beta posterior mean, bounds "
                   "0.2..0.8) after 31 errors in 50 requests"},
        {"name": "venue:binance", "state": "half_open", "kind": "auto", "since_ns": NS,
         "reason": "latency spike", "probes_used": 1, "probe_budget": 3}],
    "reconciliation": {
        "run": 7, "mode": "restore", "ts_ns": NS, "ok": False, "positions_ok": False,
        "mismatches": [f"BTCUSDT: positions table -0.0015 != sum of fills {i} (and a long "
                       "explanation of what went wrong)" for i in range(12)],
        "outcomes": {"adopted": [], "restored": ["a", "b"], "rejected": ["c"],
                     "cancelled": [], "lost": []}},
    "market": {"books": {"BTCUSDT": {"valid": False, "bid": "60000.01", "ask": "60000.02",
                                     "mark": "60000.015",
                                     "reason": "crossed book for 3 updates in a row"}},
               "sanity": {"rejects": {"crossed": 3, "stale": 12},
                          "unconfigured": {f"SYM{i}USDT": i for i in range(20)}},
               "reader": {"problems": ["capture file truncated at byte 123456789 (gzip CRC "
                                       "error); replay stopped early"]}},
    "board": {"summary": "Raspberry Pi 4 Model B Rev 1.5, 4 GB, 64-bit, kernel 6.6.51-v8+, "
                         "throttled: under-voltage detected now"},
    "control": {"open": 3, "max": 32, "refused": 268, "evicted": 1, "timed_out": 2,
                "errors": 4, "internal_errors": 1, "accept_errors": 5},
}


class Daemonish(ControlThread):
    """Answers like bot4d's handler from a real journal; every request it got is kept."""

    def __init__(self, sock: Path, journal: Journal, status: dict) -> None:
        self.journal = journal
        self.status = status
        self.breakers: dict[str, str] = {"global": "closed", "venue:paper": "closed"}
        super().__init__(sock)

    async def handle(self, req: dict) -> dict:
        cmd = req["cmd"]
        if cmd == "status":
            return self.status
        if cmd in ("orders", "fills"):
            read = self.journal.recent_orders if cmd == "orders" else self.journal.recent_fills
            return {cmd: read(limit=req.get("limit", 50), symbol=req.get("symbol"))}
        if cmd == "breaker":
            name = req["name"]
            if name not in self.breakers:
                raise CommandError(f"breaker: no breaker named {name!r}")
            self.breakers[name] = "open" if req["action"] == "trip" else "closed"
            return {"name": name, "state": self.breakers[name]}
        raise CommandError(f"unknown command {cmd!r}")


@pytest.fixture
def daemon(tmp_path):
    journal = Journal(build(tmp_path / "journal.sqlite3", 2))
    d = Daemonish(tmp_path / "control.sock", journal, copy.deepcopy(RICH))
    yield d
    d.close()
    journal.close()


def run(d: Daemonish, capsys, *args: str) -> tuple[int, str, str]:
    rc = ctl.main(["--socket", d.path, "--timeout", "20", *args])
    out, err = capsys.readouterr()
    return rc, out, err


def assert_fits(out: str) -> None:
    long = [ln for ln in out.splitlines() if len(ln) > 80]
    assert not long, long


# -- status --------------------------------------------------------------------------------------
def test_status_fits_80_columns_and_shows_every_section(daemon, capsys):
    rc, out, err = run(daemon, capsys, "status")
    assert rc == 0 and err == ""
    assert_fits(out)
    lines = out.splitlines()
    assert lines[0].startswith("state:     reducing  (risk: daily loss limit 100 reached")
    assert lines[0].endswith("…") and len(lines[0]) == 80
    # figures are never cut: each appears whole
    for figure in ("-0.00150000 @ 60123.45678901", "mark 60111.11111111",
                   "realised -123.45678901", "unrealised 12.3456789", "fees 1.23456789",
                   "ETHUSDT 2.5 @ 3000.5", "mark -", "unrealised -",
                   "0.00150000 @ 60000.01000000 partially_filled",
                   "daily_loss 101.23456789/100!", "open_orders 12/10!",
                   "open_orders_per_symbol[BTCUSDT] 12/20", "position[BTCUSDT] 0.0015/0.01",
                   "losing_streak 2/5", "max_order_qty max 0.01", "var 12.3/off",
                   "stress -/0", "VaR 12.345678901234", "CVaR 15.678901234567",
                   "worst price -20% loss 1500.123 (limit 2000)",
                   "all resting orders filled 30.75", "equity 9876.54321", "peak 10012.5",
                   "3/32 connections", "5 accept errors"):
        assert figure in out, figure
    assert "… 2 more (bot4ctl orders)" in out
    assert "… 2 more (bot4ctl status --json)" in out
    assert out.count("\nopen:      r7-") == 10
    assert out.count("\nmismatch:  ") == 10
    assert "breakers:  global closed" in out
    assert "breaker:   venue:paper OPEN, manual, since 2026-12-01 09:29:02Z" in out
    assert ("breaker:   venue:binance HALF_OPEN, auto, probes 1/3, since 2026-12-01 "
            "09:29:02Z") in out
    assert "           error rate 0.62 over 60 s exceeds 0.5" in out
    assert "trip:      daily_loss -> reducing, since 2026-12-01 09:29:02Z" in out
    assert "reconcile: run 7, mode restore, NOT OK, at 2026-12-01 09:29:02Z" in out
    assert "           restored 2, rejected 1, positions MISMATCH" in out
    assert "VaR/CVaR:  limit on cornish_fisher at 0.99, 240/500 returns" in out
    assert "           cornish_fisher 0.99  VaR 12.345678901234  CVaR 15.678901234567" in out
    assert "           historical     0.95  VaR" in out
    assert "latch:     TRIPPED halt: previous run ended uncleanly" in out
    assert "journal:   FAILED: database or disk is full database" in out   # one line
    assert "BTCUSDT INVALID bid 60000.01 ask 60000.02 mark 60000.015 (crossed" in out
    assert "unconfigured symbols SYM0USDT 0" in out
    assert "mode:      simulation (mock GPIO, paper venue), pid 12345, up 86400.5 s" in out
    assert daemon.requests == [{"cmd": "status"}]


def test_status_json_is_the_raw_dict(daemon, capsys):
    rc, out, _ = run(daemon, capsys, "status", "--json")
    assert rc == 0 and orjson.loads(out) == RICH


@pytest.mark.parametrize("st", [
    {}, {"state": "ready"}, {"state": "ready", "latch": None, "orders": None, "risk": None},
    {"state": "ready", "risk": {"limits": [{"name": "x", "used": "1", "limit": "2"}, "junk"],
                                "var": {"table": {}}, "stress": {"worst": None},
                                "trips": ["junk"]},
     "breakers": {"global": {"state": "open", "reason": None}, "junk": 3},
     "reconciliation": {"mode": "cancel", "restored": 1, "cancelled": [1, 2], "rejected": 0},
     "positions": {"BTCUSDT": {}, "bad": "x"}, "orders": {"list": [None, {}]},
     "watchdog": {}, "estop": {}, "market": {"books": {"X": "junk"}}}])
def test_status_of_an_older_daemon_does_not_crash(daemon, capsys, st):
    """Keys an older daemon does not send, or sends in another shape, are skipped or "-"."""
    daemon.status = st
    rc, out, err = run(daemon, capsys, "status")
    assert rc == 0 and err == "" and out.startswith("state:")
    assert_fits(out)
    if "risk" in st and st["risk"]:
        assert "limits:    x 1/2" in out and "warming up" in out
        assert "breaker:   global OPEN, since -" in out
        assert "reconcile: run -, mode cancel, at -" in out
        assert "restored 1, cancelled 2, rejected 0" in out
        assert "position:  BTCUSDT - @ -, mark -" in out


def test_status_of_long_names_and_figures_still_fits(daemon, capsys):
    st = copy.deepcopy(RICH)
    big = "9" * 95
    st["positions"] = {"X" * 90: {"qty": big, "avg_price": big, "fees": big}}
    st["risk"]["limits"] = {"n" * 100: {"used": big, "limit": big}}
    st["breakers"] = [{"name": "b" * 100, "state": "open", "since_ns": 2**63 - 1,
                       "reason": "r" * 200}]
    daemon.status = st
    rc, out, _ = run(daemon, capsys, "status")
    assert rc == 0
    assert_fits(out)


# -- orders and fills ----------------------------------------------------------------------------
def test_orders_newest_first_as_a_table(daemon, capsys):
    rc, out, err = run(daemon, capsys, "orders")
    assert rc == 0 and err == ""
    assert_fits(out)
    lines = out.splitlines()
    assert lines[0].split() == ["created", "(UTC)", "id", "symbol", "side", "qty", "price",
                                "filled", "status"]
    assert [ln.split()[2] for ln in lines[1:]] == [f"r1-{i}" for i in range(7, 0, -1)]
    assert lines[1].split()[3:] == ["ETHUSDT", "sell", "0.1", "market", "0", "expired"]
    assert lines[-1].split()[3:] == ["BTCUSDT", "buy", "0.002", "60000.01", "0.0020",
                                     "filled"]
    assert lines[1].startswith("11-14 22:13:20  r1-7")
    assert daemon.requests == [{"cmd": "orders", "limit": 50}]


def test_orders_filter_limit_and_json(daemon, capsys):
    rc, out, _ = run(daemon, capsys, "orders", "--symbol", "ethusdt", "--limit", "2", "--json")
    assert rc == 0
    assert daemon.requests == [{"cmd": "orders", "limit": 2, "symbol": "ETHUSDT"}]
    got = orjson.loads(out)
    assert got == {"orders": daemon.journal.recent_orders(limit=2, symbol="ETHUSDT")}
    assert [o["client_id"] for o in got["orders"]] == ["r1-7", "r1-4"]
    rc, out, _ = run(daemon, capsys, "orders", "--symbol", "XRPUSDT")
    assert rc == 0 and out == "no orders\n"


def test_fills_table_and_json(daemon, capsys):
    rc, out, _ = run(daemon, capsys, "fills", "--limit", "3")
    assert rc == 0
    assert_fits(out)
    lines = out.splitlines()
    assert lines[0].split() == ["time", "(UTC)", "fill", "order", "symbol", "side", "qty",
                                "price", "fee", "liq"]
    assert [ln.split()[2] for ln in lines[1:]] == ["p1-4", "p1-3", "p1-2"]
    assert lines[2].split()[4:] == ["BTCUSDT", "sell", "0.003", "60100.5", "0.18", "taker"]
    rc, out, _ = run(daemon, capsys, "fills", "--symbol", "BTCUSDT", "--json")
    assert [f["fill_id"] for f in orjson.loads(out)["fills"]] == ["p1-3", "p1-2", "p1-1"]
    rc, out, _ = run(daemon, capsys, "fills", "--symbol", "SOLUSDT")
    assert out == "no fills\n"
    assert daemon.requests[-1] == {"cmd": "fills", "limit": 50, "symbol": "SOLUSDT"}


@pytest.mark.parametrize("args, words", [
    (["orders", "--limit", "0"], "between 1 and 10000"),
    (["orders", "--limit", "10001"], "between 1 and 10000"),
    (["fills", "--limit", "x"], "not a whole number"),
    (["fills", "--symbol", " "], "cannot be empty"),
    (["breaker", "trip", ""], "cannot be empty"),
    (["breaker", "open", "global"], "invalid choice"),
    (["breaker", "reset", "global", "--reason", "x"], "unrecognized arguments")])
def test_bad_arguments_are_usage_errors_and_send_nothing(daemon, capsys, args, words):
    with pytest.raises(SystemExit) as e:
        ctl.main(["--socket", daemon.path, *args])
    assert e.value.code == 2 and words in capsys.readouterr().err
    assert daemon.requests == []


# -- breaker -------------------------------------------------------------------------------------
def test_breaker_trip_and_reset(daemon, capsys):
    rc, out, err = run(daemon, capsys, "breaker", "trip", "venue:paper", "--reason", "maint")
    assert rc == 0 and err == "" and out == "name: venue:paper, state: open\n"
    rc, out, _ = run(daemon, capsys, "breaker", "trip", "global")
    assert rc == 0
    rc, out, _ = run(daemon, capsys, "breaker", "reset", "venue:paper")
    assert rc == 0 and out == "name: venue:paper, state: closed\n"
    assert daemon.requests == [
        {"cmd": "breaker", "action": "trip", "name": "venue:paper", "reason": "maint"},
        {"cmd": "breaker", "action": "trip", "name": "global", "reason": "operator"},
        {"cmd": "breaker", "action": "reset", "name": "venue:paper"}]
    rc, out, _ = run(daemon, capsys, "breaker", "reset", "global", "--json")
    assert rc == 0 and orjson.loads(out) == {"name": "global", "state": "closed"}


def test_a_refused_breaker_command_is_exit_1_with_the_reason(daemon, capsys):
    rc, out, err = run(daemon, capsys, "breaker", "trip", "nope")
    assert rc == 1 and out == ""
    assert err == "bot4ctl: breaker refused: breaker: no breaker named 'nope'\n"


def test_a_reply_without_a_result_object_is_no_answer(daemon, capsys):
    """Not a crash with a traceback: one line on stderr, exit 69."""
    daemon.status = ["not", "an", "object"]
    rc, out, err = run(daemon, capsys, "status")
    assert rc == 69 and out == ""
    assert err.startswith("bot4ctl: bot4d answered status without a result: ")


# -- the renderer on its own ----------------------------------------------------------------------
def test_fit_and_when():
    assert render.fit("abc", 3) == "abc" and render.fit("abcd", 3) == "ab…"
    assert render.fit("a\nb\tc", 10) == "a b c"
    assert render.when(NS) == "2026-12-01 09:29:02Z"
    assert [render.when(x) for x in (None, 0, -1, True, "1")] == ["-"] * 5
    assert render.when(10**30) == str(10**30)


def test_pack_wraps_at_part_boundaries_with_the_separator_kept():
    lines = render.pack("limits", [f"limit{i} {i}/{i * 10}" for i in range(30)])
    assert all(len(ln) <= 80 for ln in lines)
    assert lines[0].startswith("limits:    limit0 0/0, ")
    assert all(ln.endswith(",") for ln in lines[:-1]) and not lines[-1].endswith(",")
    assert all(ln.startswith(" " * 11) for ln in lines[1:])
    joined = " ".join(ln[11:] for ln in lines)
    assert joined == ", ".join(f"limit{i} {i}/{i * 10}" for i in range(30))
    assert render.pack("x", []) == []
    assert render.pack("x", ["y" * 100]) == ["x:         " + "y" * 68 + "…"]


def test_used_marks_reached_limits_only():
    u = render.used_of
    assert u("a", {"used": "10", "limit": "10"}) == "a 10/10!"
    assert u("a", {"used": "-10", "limit": "10"}) == "a -10/10!"   # |net exposure|
    assert u("a", {"used": "9.99", "limit": "10"}) == "a 9.99/10"
    assert u("a", {"used": "5", "limit": "0"}) == "a 5/0"          # 0 = off
    assert u("a", {"used": "5", "limit": "off"}) == "a 5/off"
    assert u("a", {"used": None, "limit": "1"}) == "a -/1"
    assert u("a", {"used": True, "limit": "1"}) == "a True/1"
    assert u("a", {"limit": "1"}) == "a max 1"


def test_a_table_too_wide_for_its_figures_becomes_records():
    rows = [{"client_id": "o1", "symbol": "S", "side": "buy", "qty": "1" * 40,
             "price": "2" * 40, "filled_qty": "0", "status": "new", "created_ns": NS}]
    lines = render.orders_lines(rows)
    assert lines[0] == "12-01 09:29:02"
    assert "1" * 40 in "".join(lines) and "2" * 40 in "".join(lines)
    assert lines[1:] == ["  id o1, symbol S, side buy, type -,", "  qty " + "1" * 40 + ",",
                         "  price " + "2" * 40 + ", filled 0, avg -, status new,",
                         "  reason -"]
    assert all(len(ln) <= 80 for ln in lines)


# -- against a real bot4d --------------------------------------------------------------------------
def test_a_real_daemon_answers_orders_fills_and_status_within_80_columns(start_daemon):
    """The same commands against bot4d itself (sim, paper venue): the supervisor's handlers
    read the journal through recent_orders / recent_fills; every line fits."""
    from tests.daemon_harness import wait_for
    d = start_daemon()
    d.wait_ready()
    assert d.ctl("start").returncode == 0
    wait_for(lambda: d.status()["orders"].get("submitted", 0) >= 2, 30, interval=0.1,
             what="the strategy to send orders")
    r = d.ctl("orders", "--json")
    assert r.returncode == 0, r.stderr
    rows = orjson.loads(r.stdout)["orders"]
    assert len(rows) >= 2 and rows[0]["created_ns"] >= rows[-1]["created_ns"]
    r = d.ctl("orders", "--limit", "1")
    assert r.returncode == 0 and len(r.stdout.splitlines()) == 2   # header + one order
    assert rows[0]["client_id"] in r.stdout
    r = d.ctl("fills", "--symbol", "nosuchsymbol")
    assert r.returncode == 0 and r.stdout == "no fills\n"
    for args in (("orders",), ("fills",), ("status",)):
        r = d.ctl(*args)
        assert r.returncode == 0, r.stderr
        assert_fits(r.stdout)
    # Issue 10: which strategy runs, its parameters and what it wants now.
    out = r.stdout
    assert "strategy:  quoter on BTCUSDT:" in out, out
    assert "params:    half_spread_bps 5.0, requote_bps 2.0" in out, out
    assert "intent:    BTCUSDT: quote 5 bps either side of" in out, out
    st = d.status()["engine"]["strategy"]
    assert st["name"] == "quoter" and st["params"]["half_spread_bps"] == 5.0
    assert d.terminate() == 0


def test_money_and_average_prices_are_shown_to_eight_places():
    from daemon.control.render import amount, status_lines
    assert amount("0.0000957557760443138208148172") == "0.00009576"
    assert amount("60000.02738267126154884883869") == "60000.02738267"
    assert amount("4.999999999999999999994E-7") == "0.0000005"
    assert amount("-2E-7") == "-0.0000002"
    assert amount("-0.000000001") == "0"            # no negative zero
    assert amount("12345678") == "12345678"         # no exponent
    assert amount("0.09096000") == "0.09096"
    assert amount("9" * 95) == "9" * 95             # more digits than can be rounded
    assert (amount(None), amount(""), amount("x"), amount("NaN")) == ("-", "-", "x", "NaN")
    st = {"state": "trading", "positions": {"BTCUSDT": {
        "qty": "0.00059", "avg_price": "60000.02738267126154884883869",
        "realized_pnl": "0.0000957557760443138208148172",
        "unrealized_pnl": "0.0000074442239556861791851729", "fees": "0.06306000",
        "mark": "60000.05"}},
        "risk": {"equity": "1.0000957557760443138208148172", "day": "2026-12-01"}}
    out = "\n".join(status_lines(st))
    assert "BTCUSDT 0.00059 @ 60000.02738267" in out and "realised 0.00009576" in out
    assert "unrealised 0.00000744" in out and "fees 0.06306" in out
    assert "equity 1.00009576" in out and "day 2026-12-01" in out
