"""/metrics of a real `bot4d --sim` trading a replayed Binance capture, parsed with
prometheus_client's own parser: every metric the issue lists is there, follows the naming
conventions, and moves when the daemon does (orders, fills, e-stop, halt, breaker)."""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.daemon_harness import REPO, wait_for
from tests.operator.helpers import WEB_ON, http, metrics, page_url

DATA = Path(os.environ.get("BOT4_DATA_DIR", REPO.parent / "shared" / "data"))
SPOT = DATA / "binance" / "spot_btcusdt_20240808.gz"

# name (as sampled) -> labels that must exist; every one must be present.
REQUIRED = {
    "bot4_state": {"state": "estop"},
    "bot4_state_transitions_total": {"state": "halted"},
    "bot4_latch_tripped": {"kind": "estop"},
    "bot4_estop_circuit_closed": {},
    "bot4_estop_edges_total": {"edge": "open"},
    "bot4_breaker_state": {"breaker": "paper", "state": "open"},
    "bot4_breaker_trips_total": {"breaker": "paper"},
    "bot4_orders_submitted_total": {},
    "bot4_order_cancels_total": {},
    "bot4_orders_rejected_total": {"reason": "venue"},
    "bot4_orders_closed_total": {"status": "cancelled"},
    "bot4_orders_open": {},
    "bot4_fills_total": {},
    "bot4_pnl": {},
    "bot4_realized_pnl": {"symbol": "BTCUSDT"},
    "bot4_unrealized_pnl": {"symbol": "BTCUSDT"},
    "bot4_fees": {"symbol": "BTCUSDT"},
    "bot4_position": {"symbol": "BTCUSDT"},
    "bot4_book_valid": {"symbol": "BTCUSDT"},
    "bot4_book_gaps_total": {"symbol": "BTCUSDT"},
    "bot4_market_data_age_seconds": {"symbol": "BTCUSDT"},
    "bot4_market_events_total": {},
    "bot4_event_loop_lag_seconds_count": {},
    "bot4_event_loop_lag_seconds_bucket": {"le": "+Inf"},
    "bot4_watchdog_pings_total": {},
    "bot4_heartbeat_age_seconds": {"component": "market"},
    "bot4_journal_commits_total": {},
    "bot4_journal_commit_seconds_count": {},
    "bot4_journal_commit_seconds_sum": {},
    "bot4_process_resident_memory_bytes": {},
    "bot4_alerts_pending": {},
    "bot4_web_clients": {},
}
# Must differ between the first scrape and the last.
MOVING = ["bot4_state", "bot4_state_transitions_total", "bot4_latch_tripped",
          "bot4_estop_edges_total", "bot4_breaker_state", "bot4_breaker_trips_total",
          "bot4_orders_submitted_total", "bot4_order_cancels_total", "bot4_orders_closed_total",
          "bot4_fills_total", "bot4_pnl", "bot4_realized_pnl", "bot4_fees", "bot4_position",
          "bot4_market_data_age_seconds", "bot4_market_events_total",
          "bot4_event_loop_lag_seconds_count", "bot4_watchdog_pings_total",
          "bot4_journal_commits_total", "bot4_journal_commit_seconds_sum",
          "bot4_process_resident_memory_bytes"]


def _get(m: dict, name: str, **labels: str) -> float:
    want = tuple(sorted(labels.items()))
    for key, v in m.get(name, {}).items():
        if all(item in key for item in want):
            return v
    raise KeyError(f"{name}{labels} not in /metrics")


@pytest.mark.skipif(not SPOT.is_file(), reason=f"shared captures not found under {DATA}")
def test_every_metric_is_present_follows_conventions_and_moves(start_daemon):
    d = start_daemon("--replay", str(SPOT), "--replay-speed", "0", watchdog_usec=2_000_000,
                     env={**WEB_ON, "BOT4__DAEMON__AUTO_START": "true",
                          "BOT4__STRATEGY__QUOTER__HALF_SPREAD_BPS": "0.5",
                          "BOT4__STRATEGY__QUOTER__REQUOTE_BPS": "0.5", "BOT4__RISK__MAX_POSITION": "1"})
    d.wait_ready()
    base = page_url(d)
    first = metrics(base)

    wait_for(lambda: (s := d.status())["market"]["replay_finished"] and s["orders"]["fills"],
             120, interval=0.2, what="replay with fills")
    # A breaker trip while trading, an e-stop press and release, a halt: state moves.
    r = d.cmd(cmd="breaker", action="trip", name="paper", reason="metrics test")
    assert r["ok"], r
    wait_for(lambda: _get(metrics(base), "bot4_breaker_trips_total", breaker="paper") >= 1,
             10, what="breaker trip sampled")
    assert d.ctl("sim", "estop", "press").returncode == 0
    assert d.ctl("sim", "estop", "release").returncode == 0
    wait_for(lambda: _get(metrics(base), "bot4_estop_edges_total", edge="close") >= 1, 10,
             what="release edge counted")
    wait_for(lambda: _get(metrics(base), "bot4_event_loop_lag_seconds_count")
             > _get(first, "bot4_event_loop_lag_seconds_count") + 2, 10, what="lag samples")
    wait_for(lambda: _get(metrics(base), "bot4_watchdog_pings_total")
             > _get(first, "bot4_watchdog_pings_total"), 10, what="a watchdog ping")
    last = metrics(base)

    for name, labels in REQUIRED.items():
        _get(last, name, **labels)   # raises when missing
    for name in MOVING:
        assert first.get(name) != last.get(name), f"{name} did not move: {last.get(name)}"
    assert _get(last, "bot4_state", state="estop") == 1
    assert _get(last, "bot4_latch_tripped", kind="estop") == 1
    assert _get(last, "bot4_estop_circuit_closed") == 1
    assert _get(last, "bot4_estop_edges_total", edge="open") == 1
    assert _get(last, "bot4_breaker_state", breaker="paper", state="open") == 1
    assert _get(last, "bot4_fills_total") == d.status()["orders"]["fills"] > 0
    assert _get(last, "bot4_journal_commit_seconds_sum") > 0
    assert _get(last, "bot4_process_resident_memory_bytes") > 10e6

    # Conventions: bot4_ prefix; counters expose _total; histograms base units (seconds).
    code, headers, body = http(base + "metrics")
    assert headers["Content-Type"].startswith("text/plain; version=0.0.4")
    for fam in text_string_to_metric_families(body.decode()):
        assert fam.name.startswith("bot4_"), fam.name
        if fam.type == "counter":
            assert all(s.name.endswith(("_total", "_created")) for s in fam.samples), fam.name
        if fam.type in ("histogram", "summary"):
            assert fam.name.endswith("_seconds"), fam.name
    # The sample Grafana dashboard only asks for metrics that exist.
    dash = json.loads((REPO / "etc" / "grafana" / "bot4.json").read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    used = {m for e in exprs for m in re.findall(r"\bbot4_[a-z_]+", e)}
    assert used and used <= set(last), used - set(last)
    assert d.terminate() == 0
