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


def test_live_feed_trade_gap_is_found_and_the_backfill_asks_the_rest_api(tmp_path):
    """Live mode only: trades the exchange numbered but never sent become a backfill
    window, and the daemon's backfill task asks the REST API for it (the fake exchange has
    no aggTrades route: the attempt fails, is counted and retried, never raised)."""
    from daemon import config as configmod
    from daemon.supervisor import RunOptions, Supervisor
    from tests.daemon_harness import CONFIG
    from tests.market_live.test_binance_live import FakeBinance, capture, serve
    import orjson
    frames, snapshot = capture("spot_btcusdt_20240808.gz", 3000)
    trades = [i for i, f in enumerate(frames) if b"@trade" in f[:40]]
    hole = set(trades[100:110])                    # ten trades lost on the way
    now_ms = time.time_ns() // 1_000_000

    def recent(f: bytes) -> bytes:
        # The capture is from 2024: trade times within the sanity stage's clock-skew bound.
        if b"@trade" not in f[:40]:
            return f
        m = orjson.loads(f)
        m["data"]["T"] = m["data"]["E"] = now_ms
        return orjson.dumps(m)
    fake = FakeBinance(frames=tuple(recent(f) for i, f in enumerate(frames) if i not in hole),
                       snapshots={"BTCUSDT": snapshot})

    async def main():
        async with serve(fake) as (ws_base, rest_base):
            cfg = configmod.load(CONFIG, environ={
                "BOT4__MARKET__SOURCE": "binance", "BOT4__MARKET__WS_BASE": ws_base,
                "BOT4__MARKET__REST_BASE": rest_base, "BOT4__QUALITY__POLL_INTERVAL_S": "0.5"})
            sup = Supervisor(cfg, RunOptions(sim=True, state_dir=str(tmp_path / "state"),
                                             socket=str(tmp_path / "c.sock")))
            task = asyncio.create_task(sup.run())
            await until(lambda: sup.state is not State.BOOTING, what="boot")
            assert sup.backfill is not None
            await until(lambda: sup.backfill.status()["windows"] >= 1, timeout=30,
                        what="the gap found")
            await until(lambda: sup.backfill.status()["requests"] >= 1, timeout=30,
                        what="the REST API asked")
            q = (await sup.handle_command({"cmd": "quality"}))["quality"]
            mon = q["symbols"]["BTCUSDT"]["layers"]["monitoring"]
            assert mon["missing_trades"] >= 10 and mon["backfill"]["windows"] >= 1
            assert q["backfill"]["failed"] >= 1 or q["backfill"]["fetched"] >= 1
            assert sup.state is not State.FAULT
            await stop(sup, task)
    asyncio.run(main())
