"""The feature engine inside bot4d: fed by the same market events as the book and the
strategy, read with `bot4ctl features`; nothing that is not finite ever leaves it."""
from __future__ import annotations

import json
import math

import pytest

from tests.daemon_harness import wait_for
from tests.test_replay_daemon import DATA, SPOT


@pytest.mark.skipif(not SPOT[0].is_file(), reason=f"shared captures not found under {DATA}")
def test_features_of_a_replay_are_served_by_the_daemon(start_daemon):
    d = start_daemon("--replay", str(SPOT[0]), "--replay-speed", "0")
    d.wait_ready()
    wait_for(lambda: d.status()["market"]["replay_finished"], 120, interval=0.2,
             what="replay to finish")
    r = d.ctl("features", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    feats = out["features"]["BTCUSDT"]
    ready = {name for name, f in feats.items() if f["ready"]}
    # Book and trade features are warm after a replay of several minutes of BTC.
    assert {"microprice", "ofi", "trade_imbalance", "roll_spread"} <= ready, sorted(ready)
    for name, f in feats.items():
        v = f["value"]
        assert v is None or (isinstance(v, (int, float)) and math.isfinite(v)), (name, v)
        if f["ready"]:
            assert v is not None and f["ts_ns"] > 0, name
    assert {e["name"] for e in out["registry"]} >= set(feats)
    human = d.ctl("features")
    assert human.returncode == 0 and "microprice" in human.stdout
    assert all(len(line) <= 80 for line in human.stdout.splitlines())
    assert d.terminate() == 0


@pytest.mark.skipif(not SPOT[0].is_file(), reason=f"shared captures not found under {DATA}")
def test_heavy_analytics_fit_pin_in_the_worker_and_floor_the_quoters_spread(start_daemon):
    d = start_daemon("--replay", str(SPOT[0]), "--replay-speed", "0",
                     env={"BOT4__ANALYTICS__PIN_PERIOD_S": "1",
                          "BOT4__ANALYTICS__PIN_PERIODS": "30",
                          "BOT4__ANALYTICS__PIN_EVERY_S": "60"})
    d.wait_ready()
    st = wait_for(lambda: (s := d.status())["analytics"]["symbols"]["BTCUSDT"]["pin"] and s,
                  120, interval=0.5, what="a PIN fit from the heavy worker")
    a = st["analytics"]["symbols"]["BTCUSDT"]
    assert 0 < a["pin"]["pin"] < 1 and a["jobs"]["pin.fit"]["ok"] >= 1
    # With a volatility from the feature store the PIN becomes the quoter's spread floor.
    floor = a["floor_bps"]
    assert floor is None or floor > 0
    assert d.terminate() == 0
