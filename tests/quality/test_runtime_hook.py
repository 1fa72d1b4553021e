"""The engine feeding DataQuality (a real core from tests/engine_rig.py, a real capture):
every event that passed the sanity stage reaches the quality layers once, with the book
that applied it, and a clean capture raises no alert."""
from __future__ import annotations

import pytest

from daemon.market.capture import CaptureReader
from tests.engine_rig import EngineRig
from tests.quality.replay import data_dir


def test_engine_events_reach_data_quality(tmp_path):
    path = data_dir() / "spot_ethusdt_20240808.gz"
    if not path.is_file():
        pytest.skip(f"{path} not found (set BOT4_DATA_DIR)")
    r = EngineRig(tmp_path, symbols=("ETHUSDT",), strategy={"order_notional": "20"})
    feed, dq = r.core.feed, r.core.quality
    seen: list[tuple[str, bool]] = []
    alerts = []
    real = dq.on_event

    def on_event(ev, book):
        seen.append((type(ev).__name__, book is feed.books["ETHUSDT"]))
        real(ev, book)
        alerts.extend(dq.poll(ev.ts_ns))

    dq.on_event = on_event
    feed.feed(CaptureReader([path]))
    st = dq.status()["symbols"]["ETHUSDT"]["layers"]["monitoring"]
    rejected = sum(feed.sanity.rejects.values())
    decoded = sum(v for k, v in feed.decoder.stats.items()
                  if k in ("quotes", "trades", "agg_trades", "depth", "snapshots"))
    assert len(seen) == st["events"] == decoded - rejected
    assert all(same for _, same in seen)
    assert st["trades"] == feed.decoder.stats["trades"] and st["quotes"] > 20_000
    assert alerts == []
