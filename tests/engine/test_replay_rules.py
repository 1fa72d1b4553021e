"""Issue 9, one clock, in a real `bot4d` replay: the gateway stamped rejects with market
time while the breakers pruned them with wall time, so a replay with 2,544 rejects never
halted anything. Now every rule reads the engine's clock: in a replay at full speed a
strategy whose orders keep being refused opens the venue's breaker, and its 30 s cooldown
runs out in event time (the capture is 6 minutes long; the replay takes a second or two)."""
from __future__ import annotations

import json
import sqlite3

import pytest

from tests.engine.test_same_engine import BTC, CONFIG, bot4d

pytestmark = pytest.mark.skipif(not BTC.is_file(), reason="shared captures not found")


def test_refusals_in_a_replay_open_the_breaker_on_event_time(tmp_path):
    run = bot4d("run", "--config", str(CONFIG), "--sim", "--replay", str(BTC),
                "--replay-speed", "0", "--exit-at-end", "--state-dir", str(tmp_path / "d"),
                "--socket", str(tmp_path / "s"),
                # the quoter places two orders; one may be open: every second one is refused
                env={"BOT4__RISK__MAX_OPEN_ORDERS_PER_SYMBOL": "1"})
    assert run.returncode == 0, run.stderr
    db = sqlite3.connect(tmp_path / "d" / "journal.sqlite3")
    rows = [json.loads(d) for (d,) in db.execute(
        "SELECT detail FROM audit WHERE kind = 'breaker' ORDER BY id")]
    paper = [r for r in rows if r["name"] == "paper"]
    assert paper and paper[0]["new"] == "open", rows
    assert "error rate" in paper[0]["reason"] or "reject" in paper[0]["reason"]
    # The cooldown (30 s by default) ended inside the replay: event time, not wall time.
    assert any(r["old"] == "open" and r["new"] == "half_open" for r in paper), paper
