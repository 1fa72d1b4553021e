"""Parent orders across a restart, with bot4d as a real subprocess: a flatten running when
the daemon is killed (-9) is reported by the next run as interrupted (journal, status,
log, alert), never silently forgotten and never resumed on its own; an orderly stop ends
it as cancelled, so the next run has nothing to report.

Before: the executor kept parents only in memory and the stop path left them open, so
after a crash or a restart an operator's half-done flatten simply vanished from status."""
from __future__ import annotations

import json
import sqlite3
from decimal import Decimal

from tests.daemon_harness import wait_for
from tests.operator.helpers import Receiver

# The quoter joins the touch on the synthetic market: a position within seconds.
ENV = {"BOT4__DAEMON__AUTO_START": "true",
       "BOT4__STRATEGY__QUOTER__HALF_SPREAD_BPS": "0.0001",
       "BOT4__STRATEGY__QUOTER__REQUOTE_BPS": "0.01"}


def _flatten_running(d) -> dict:
    """Start a slow flatten as soon as there is a position to flatten; its status row."""
    def started():
        st = d.status()
        pos = st["positions"].get("BTCUSDT", {}).get("qty", "0")
        if st["state"] != "trading" or Decimal(pos) == 0:
            return None
        r = d.cmd(cmd="flatten", duration=600)
        return r["ok"] and r["result"]["started"] and r["result"]
    wait_for(started, 60, interval=0.2, what="a position, then a flatten started")
    return wait_for(lambda: [r for r in d.status()["execution"] if r["state"] == "running"],
                    10, what="the flatten running")[0]


def _audit(d, kind: str) -> list[dict]:
    con = sqlite3.connect(f"file:{d.state_dir / 'journal.sqlite3'}?mode=ro", uri=True)
    try:
        return [json.loads(x) for (x,) in con.execute(
            "SELECT detail FROM audit WHERE kind = ? ORDER BY id", (kind,))]
    finally:
        con.close()


def test_a_flatten_killed_mid_schedule_is_reported_interrupted_after_restart(start_daemon):
    rx = Receiver()
    try:
        env = {**ENV, "BOT4__ALERTS__URLS": json.dumps([rx.url("x")])}
        d = start_daemon(env=env, sub="a")
        d.wait_ready()
        row = _flatten_running(d)
        d.kill9()
        d2 = start_daemon(env=env, sub="a")
        d2.wait_ready()
        st = d2.status()
        (old,) = [r for r in st["execution"] if r["state"] == "interrupted"]
        assert old["id"] == f"{row['id']}@run1" and old["symbol"] == "BTCUSDT"
        assert (old["side"], old["qty"], old["reduce_only"]) == \
            (row["side"], row["qty"], True)
        pos = st["positions"]["BTCUSDT"]["qty"]
        assert old["end_reason"] == (f"run 1 stopped before it ended; not resumed (position "
                                     f"BTCUSDT is {pos} now)")
        # Nothing was resumed: no running parent, and the journal says so durably.
        assert not [r for r in st["execution"] if r["state"] == "running"]
        (rec,) = _audit(d2, "execution_interrupted")
        assert (rec["id"], rec["run"], rec["found_by_run"], rec["position"]) == \
            (row["id"], 1, 2, pos)
        assert "was interrupted: run 1 stopped before it ended" in d2.log
        shown = [ln for ln in d2.ctl("status").stdout.splitlines() if "x1@run1" in ln]
        assert shown and "interrupted" in shown[0], d2.ctl("status").stdout
        wait_for(lambda: any("execution interrupted" in (m.get("title") or "")
                             for m in rx.messages()), 20, what="the alert")
        # A third run reports nothing again: run 2 had no parent left open.
        assert d2.terminate() == 0
        d3 = start_daemon(env=env, sub="a")
        d3.wait_ready()
        assert not [r for r in d3.status()["execution"] if r["state"] == "interrupted"]
        assert len(_audit(d3, "execution_interrupted")) == 1
        assert d3.terminate() == 0
    finally:
        rx.close()


def test_an_orderly_stop_ends_a_running_flatten_as_cancelled(start_daemon):
    d = start_daemon(env=ENV, sub="b")
    d.wait_ready()
    row = _flatten_running(d)
    assert d.terminate() == 0
    (end,) = [e for e in _audit(d, "execution_end") if e["id"] == row["id"]]
    assert (end["state"], end["run"]) == ("cancelled", 1)
    assert end["why"].startswith("daemon stopping")
    d2 = start_daemon(env=ENV, sub="b")
    d2.wait_ready()
    assert not [r for r in d2.status()["execution"] if r["state"] == "interrupted"]
    assert _audit(d2, "execution_interrupted") == []
    assert d2.terminate() == 0
