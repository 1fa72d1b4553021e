"""The data-validation layers inside bot4d: fed the same sane events as the book, their
alerts journalled and acted on (reducing until healthy again, or the venue's breaker), read
with `bot4ctl quality`."""
from __future__ import annotations

import asyncio
import json
import time

import pytest

from daemon.market.events import Trade
from daemon.states import State
from tests.daemon_harness import wait_for
from tests.test_replay_daemon import DATA, SPOT
from tests.test_sabotage import SYM, boot, start_trading, stop, until


@pytest.mark.skipif(not SPOT[0].is_file(), reason=f"shared captures not found under {DATA}")
def test_a_clean_replay_passes_every_layer_and_bot4ctl_quality_shows_them(start_daemon):
    d = start_daemon("--replay", str(SPOT[0]), "--replay-speed", "0")
    d.wait_ready()
    wait_for(lambda: d.status()["market"]["replay_finished"], 120, interval=0.2,
             what="replay to finish")
    st = d.status()
    assert st["quality"]["outcome"] == "none"
    r = d.ctl("quality", "--json")
    assert r.returncode == 0, r.stderr
    q = json.loads(r.stdout)["quality"]["symbols"]["BTCUSDT"]
    assert set(q["layers"]) >= {"benford", "kalman", "sources", "changepoint", "score",
                                "alerting", "monitoring"}
    assert q["layers"]["monitoring"]["trades"] > 1000 and q["outcome"] == "none"
    human = d.ctl("quality")
    assert human.returncode == 0 and all(len(x) <= 80 for x in human.stdout.splitlines())
    assert d.terminate() == 0


def test_a_price_spike_makes_the_daemon_reduce_until_the_data_is_healthy(tmp_path):
    async def main():
        sup, task = await boot(tmp_path, env={"BOT4__QUALITY__POLL_INTERVAL_S": "0.5"})
        await start_trading(sup)
        await until(lambda: sup.quality.status()["symbols"][SYM]["layers"]["kalman"]
                    ["prices"] > 300, what="the Kalman filter warmed up")
        mid = sup.market.books[SYM].mid()
        now = time.time_ns()
        # A print 30 % away from the market, straight into the layers (the sanity stage
        # would refuse it on the real path; here it stands for a source gone wrong).
        sup.quality.on_trade(Trade(SYM, now, now // 1_000_000, 10**9, mid * 1.3, 0.01, False))
        await until(lambda: sup.state is State.REDUCING, what="reducing on bad data")
        assert sup.state_reason.startswith(f"data quality: {SYM} kalman: ")
        (row, *_) = [d for _, _, d in sup.journal.audit_rows("quality_alert")]
        assert (row["symbol"], row["layer"], row["action"]) == (SYM, "kalman", "reducing")
        assert sup.panel.led.pattern == "amber"
        await until(lambda: sup.state is State.TRADING, timeout=60,
                    what="trading again once every layer is healthy")
        assert sup.state_reason == "data quality healthy again"
        await stop(sup, task)
    asyncio.run(main())
