"""Crash recovery of the protection state (daemon/protection.py) on a real journal: what the
torture harness found at its risk-limit kill points (tests/torture_lib.py, protection
cases), pinned down in-process.

Found by the torture on 29343ca: the global breaker a risk limit opened came back from the
snapshot as "restored after restart: risk: ...", which Protection.reset() did not recognise
as opened by risk, so after a restart the operator's reset lifted the trip but every order
was still refused until `bot4ctl breaker reset global` (fixed in b96a183: a restored
breaker keeps its reason)."""
from __future__ import annotations

from daemon.store.journal import Journal
from tests.test_protection import SYM, D, S, flat, long_at, make


def test_operator_reset_after_a_restart_closes_the_breaker_a_risk_limit_opened(tmp_path):
    risk = {"max_drawdown": D("20"), "daily_loss_limit": D("1000")}
    p, j, c = make(tmp_path, risk=risk)
    p.poll(flat(), {SYM: D("60000")}, {SYM: True}, [])
    c.now += S
    p.poll(long_at("60000"), {SYM: D("59970")}, {SYM: True}, [])      # drawdown 30: trips
    assert p.blocked() is not None
    del p, j                                                          # killed: nothing closed
    p2, j2, _ = make(tmp_path, risk=risk, clock=c, journal=Journal(tmp_path / "j.sqlite3"))
    p2.restore()
    assert p2.reset() == ["drawdown"]
    states = {b["name"]: b["state"] for b in p2.board.status()}
    assert states == {"global": "closed", "paper": "closed"}
    assert p2.board.allow("paper", D("10"), False, c.now, "x") is None
