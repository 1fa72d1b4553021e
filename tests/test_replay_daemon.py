"""`bot4d run --sim --replay FILE...` trades on the replayed Binance market through the
paper venue, with fills journalled like a live venue's."""
from __future__ import annotations

import json
import os
import sqlite3
from decimal import Decimal
from pathlib import Path

import pytest

from tests.daemon_harness import REPO, wait_for

DATA = Path(os.environ.get("BOT4_DATA_DIR", REPO.parent / "shared" / "data"))
SPOT = [DATA / "binance" / "spot_btcusdt_20240808.gz", DATA / "binance" / "spot_btcusdt_20240809.gz"]


@pytest.mark.skipif(not SPOT[0].is_file(), reason=f"shared captures not found under {DATA}")
def test_replay_trades_on_the_real_book(start_daemon):
    d = start_daemon("--replay", *map(str, SPOT), "--replay-speed", "0",
                     env={"BOT4__DAEMON__AUTO_START": "true",
                          "BOT4__STRATEGY__QUOTER__HALF_SPREAD_BPS": "0.5",
                          "BOT4__STRATEGY__QUOTER__REQUOTE_BPS": "0.5",
                          "BOT4__RISK__MAX_POSITION": "1"})
    d.wait_ready()
    st = wait_for(lambda: (s := d.status())["state"] == "finished" and s, 120,
                  interval=0.2, what="replay to finish")
    # The end of the data is a state change: trading stops, the LED shows it, every order
    # is cancelled, and status says how the run ended.
    assert st["reason"].startswith("replay finished: 99574 lines"), st["reason"]
    assert st["led"]["pattern"] == "blue" and st["market"]["replay_finished"]
    assert st["replay_summary"]["lines"] == 99_574 and st["market"]["replay"]["percent"] == 100
    wait_for(lambda: d.status()["orders"]["open"] == 0, 30, what="orders cancelled at the end")
    book = st["market"]["books"]["BTCUSDT"]
    assert book["valid"] and book["quotes_agree"] > 500
    assert book["quotes_disagree"] <= book["quotes_agree"] * 0.001
    assert st["market"]["events"] >= 99_000
    assert st["engine"]["bars"]["BTCUSDT"]["trades"] > 0
    assert st["orders"]["fills"] > 0, "the quoter never got filled on 10 minutes of BTC"
    assert d.terminate() == 0

    db = sqlite3.connect(d.state_dir / "journal.sqlite3")
    fills = db.execute("SELECT price, qty, fee, liquidity FROM fills").fetchall()
    assert fills
    for price, qty, fee, liq in fills:
        # Decimal text on the money path; prices inside the day's range; fees charged
        assert 61_000 < Decimal(price) < 62_500 and Decimal(qty) > 0 and Decimal(fee) > 0
        assert liq in ("maker", "taker")
    pos_qty = Decimal(db.execute("SELECT qty FROM positions").fetchone()[0])
    signed = sum(Decimal(q) * (1 if s == "buy" else -1)
                 for s, q in db.execute("SELECT side, qty FROM fills"))
    assert pos_qty == signed, "position does not equal the sum of journalled fills"


@pytest.mark.skipif(not SPOT[0].is_file(), reason=f"shared captures not found under {DATA}")
def test_damaged_capture_is_counted_and_skipped_never_fatal(start_daemon, tmp_path):
    import gzip
    lines = []
    with gzip.open(SPOT[0], "rb") as f:
        for i, line in enumerate(f):
            if i >= 4000:
                break
            lines.append(line)
            if i == 100:
                lines += [b"not a capture line\n", b"123 {broken json\n",
                          b'1723161254000000000 {"stream":"btcusdt@kline_1m","data":{}}\n',
                          b"\n", b"abc {}\n"]
    good = gzip.compress(b"".join(lines))
    bad = tmp_path / "damaged.gz"
    bad.write_bytes(good[: len(good) - 300])   # and the gzip is cut short
    d = start_daemon("--replay", str(bad), "--replay-speed", "0")
    d.wait_ready()
    st = wait_for(lambda: (s := d.status())["market"]["replay_finished"] and s, 60,
                  what="replay to finish")
    dec = st["market"]["decoder"]
    assert dec.get("bad_json", 0) >= 1 and dec.get("unknown_stream", 0) >= 1
    assert st["market"]["books"]["BTCUSDT"]["valid"]
    assert st["state"] == "finished" and d.proc.poll() is None
    rd = st["market"]["reader"]
    assert rd.get("no_space", 0) + rd.get("bad_ns", 0) >= 2 and rd.get("empty_line", 0) >= 1
    assert rd.get("truncated_gzip", 0) + rd.get("corrupt_gzip", 0) == 1
    assert "truncated" in d.log or "corrupt" in d.log
    assert d.terminate() == 0


def test_missing_replay_file_is_a_clear_error(start_daemon, tmp_path):
    d = start_daemon("--replay", str(tmp_path / "nope.gz"))
    assert d.proc.wait(30) == 78
    assert "nope.gz: no such file" in d.log


@pytest.mark.skipif(not SPOT[0].is_file(), reason=f"shared captures not found under {DATA}")
@pytest.mark.parametrize("action,state", [("halted", "halted"), ("reducing", "reducing")])
def test_daily_loss_limit_acts_on_a_replay_where_the_strategy_loses(start_daemon, action,
                                                                    state):
    """Made to lose: a 1 % maker fee on every fill of the quoter (12 USDT of BTC per fill
    costs 0.12), against a daily loss limit of 0.2 USDT: the second or third fill breaks
    it, and the limit acts by itself with the figures that tripped it."""
    d = start_daemon("--replay", str(SPOT[0]), "--replay-speed", "0",
                     env={"BOT4__DAEMON__AUTO_START": "true",
                          "BOT4__STRATEGY__QUOTER__HALF_SPREAD_BPS": "0.5",
                          "BOT4__STRATEGY__QUOTER__REQUOTE_BPS": "0.5",
                          "BOT4__PAPER__MAKER_FEE_BPS": "100",
                          "BOT4__RISK__MAX_POSITION": "1",
                          "BOT4__RISK__DAILY_LOSS_LIMIT": "0.2",
                          "BOT4__RISK__DAILY_LOSS_ACTION": action})
    d.wait_ready()
    st = wait_for(lambda: (s := d.status())["state"] == state and s, 120, interval=0.2,
                  what=f"the loss limit to switch the state to {state}")
    assert st["reason"].startswith("risk limit daily_loss: "), st["reason"]
    (trip,) = st["risk"]["trips"]
    assert trip["limit"] == "daily_loss" and trip["action"] == action
    g = next(b for b in st["breakers"] if b["name"] == "global")
    assert g["state"] == "open" and g["reason"].startswith("risk: daily_loss: ")
    # No order that could grow the position leaves while the trip stands.
    assert d.ctl("start").returncode == 1
    assert d.terminate() == 0
    db = sqlite3.connect(d.state_dir / "journal.sqlite3")
    rows = [json.loads(r[0]) for r in db.execute(
        "SELECT detail FROM audit WHERE kind = 'limit_trip'")]
    assert len(rows) == 1 and rows[0]["limit"] == "daily_loss"
    assert Decimal(rows[0]["fig_loss"]) > Decimal("0.2")
    fees = sum(Decimal(r[0]) for r in db.execute("SELECT fee FROM fills"))
    assert fees > Decimal("0.2")
    if action == "halted":
        assert db.execute("SELECT tripped, source FROM latch").fetchone() == (1, "halt")
