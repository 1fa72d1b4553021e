"""The daemon's market pipeline feeding DataQuality through
`MarketRuntime.subscribe_events` (a real runtime, a real capture): every event that passed
the sanity stage reaches the quality layers once, with the book that applied it, and a
clean capture raises no alert."""
from __future__ import annotations

import pytest

from daemon.config import Config, MarketCfg
from daemon.market.capture import CaptureReader
from daemon.market.runtime import MarketRuntime
from daemon.quality.monitor import DataQuality
from tests.quality.replay import data_dir


def test_runtime_events_reach_data_quality():
    path = data_dir() / "spot_ethusdt_20240808.gz"
    if not path.is_file():
        pytest.skip(f"{path} not found (set BOT4_DATA_DIR)")
    cfg = Config(market=MarketCfg(source="replay", symbols=["ETHUSDT"]))
    rt = MarketRuntime(cfg, replay=[str(path)])
    dq = DataQuality(cfg.quality, ["ETHUSDT"], venue=cfg.market.exchange)
    seen: list[tuple[str, bool]] = []
    alerts = []

    def on_event(ev, book):
        seen.append((type(ev).__name__, book is rt.books["ETHUSDT"]))
        dq.on_event(ev, book)
        alerts.extend(dq.poll(ev.ts_ns))

    rt.subscribe_events(on_event)
    rt.feed(CaptureReader([path]))
    st = dq.status()["symbols"]["ETHUSDT"]["layers"]["monitoring"]
    rejected = sum(rt.sanity.rejects.values())
    decoded = sum(v for k, v in rt.decoder.stats.items()
                  if k in ("quotes", "trades", "agg_trades", "depth", "snapshots"))
    assert len(seen) == st["events"] == decoded - rejected
    assert all(same for _, same in seen)
    assert st["trades"] == rt.decoder.stats["trades"] and st["quotes"] > 20_000
    assert alerts == []
