"""Which state changes alert, and as what: the reasons the supervisor and
daemon/protection.py actually write."""
from __future__ import annotations

import pytest

from daemon.operator.view import classify
from daemon.states import State as S


@pytest.mark.parametrize("old,new,reason,kind", [
    (S.TRADING, S.ESTOP, "e-stop pressed (circuit opened)", "estop"),
    (S.READY, S.ESTOP, "e-stop circuit open at boot (pressed or wire broken)", "estop"),
    (S.ESTOP, S.READY, "reset by operator; `bot4ctl start` to trade", "estop_reset"),
    (S.HALTED, S.READY, "reset by operator; `bot4ctl start` to trade", None),
    (S.TRADING, S.HALTED, "operator: web page (127.0.0.1): x", "halt"),
    (S.TRADING, S.HALTED, "watchdog: stalled component market (16.0 s)", "halt"),
    (S.TRADING, S.HALTED, "breaker paper keeps failing its probes", "breaker"),
    (S.TRADING, S.HALTED, "breaker: 21 rejects in the last minute", "breaker"),
    (S.TRADING, S.HALTED, "risk limit daily_loss: daily loss 51 beyond daily_loss_limit 50",
     "loss_limit"),
    (S.TRADING, S.HALTED, "risk limit drawdown: drawdown 12% beyond limit 10%", "loss_limit"),
    (S.TRADING, S.HALTED, "breaker: loss -50.10 since start beyond max_loss 50", "loss_limit"),
    (S.TRADING, S.REDUCING, "risk limit losing_streak: 5 losing trades", "loss_limit"),
    (S.TRADING, S.REDUCING, "degraded: BTCUSDT book invalid (gap)", None),
    (S.REDUCING, S.TRADING, "market data healthy again", None),
    (S.TRADING, S.FAULT, "journal failed: disk I/O error", "fault"),
    (S.BOOTING, S.READY, "booted; `bot4ctl start` to trade", None),
    (S.READY, S.TRADING, "operator start", None),
])
def test_classify(old, new, reason, kind):
    got = classify(old, new, reason)
    assert (got[0] if got else None) == kind
