"""`bot4ctl features [--symbol S] [--json]` against a real ControlServer on a Unix socket,
answering like the daemon side will: {"features": FeatureEngine.status()} from a real
engine fed real events. Human output: one row per feature, every line <= 80 columns."""
from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from daemon.config import FeaturesCfg
from daemon.control import ctl, render
from daemon.features.engine import FeatureEngine
from daemon.market.events import Trade
from tests.control_thread import ControlThread

S = 1_000_000_000
T0 = 1_796_117_342 * S      # 2026-12-01 09:29:02Z


class _Daemon(ControlThread):
    def __init__(self, sock: Path, engine: FeatureEngine | None) -> None:
        self.engine = engine
        super().__init__(sock)

    async def handle(self, req: dict) -> dict:
        return {"features": self.engine.status() if self.engine else {}}


def _engine() -> FeatureEngine:
    eng = FeatureEngine(FeaturesCfg(trade_imbalance_trades=2), ["BTCUSDT", "ETHUSDT"])
    eng.on_trade(Trade("BTCUSDT", T0, T0 // 10**6, 1, 60_000.5, 0.25, False))
    eng.on_trade(Trade("BTCUSDT", T0 + S, T0 // 10**6 + 1000, 2, 60_001.0, 0.75, True))
    return eng


@pytest.fixture
def daemon(tmp_path):
    d = _Daemon(tmp_path / "c.sock", _engine())
    yield d
    d.close()


def _run(d: _Daemon, capsys, *args: str) -> tuple[int, str, str]:
    rc = ctl.main(["--socket", d.path, "--timeout", "20", *args])
    out, err = capsys.readouterr()
    return rc, out, err


def test_features_table(daemon, capsys) -> None:
    rc, out, err = _run(daemon, capsys, "features")
    assert rc == 0 and err == ""
    assert daemon.requests == [{"cmd": "features"}]
    lines = out.splitlines()
    assert all(len(ln) <= render.WIDTH for ln in lines)
    assert lines[0].split() == ["symbol", "feature", "value", "ready", "time", "(UTC)"]
    n = len(daemon.engine.store.names())
    assert len(lines) == 1 + 2 * n
    row = next(ln for ln in lines if "trade_imbalance" in ln and ln.startswith("BTCUSDT"))
    # (0.25 bought - 0.75 sold) / 1.0 = -0.5, at T0 + 1 s
    assert row.split()[2:] == ["-0.5", "yes", "09:29:03"]
    vpin = next(ln for ln in lines if " vpin " in ln and ln.startswith("ETHUSDT"))
    assert vpin.split()[2:] == ["-", "no", "-"]


def test_features_one_symbol_and_json(daemon, capsys) -> None:
    rc, out, _ = _run(daemon, capsys, "features", "--symbol", "ethusdt")
    assert rc == 0 and all(ln.startswith(("symbol", "ETHUSDT")) for ln in out.splitlines())
    rc, out, _ = _run(daemon, capsys, "features", "--json")
    assert rc == 0
    got = orjson.loads(out)
    assert got == {"features": daemon.engine.status()}
    assert got["features"]["BTCUSDT"]["trade_imbalance"] == {
        "value": -0.5, "ts_ns": T0 + S, "ready": True}


def test_features_when_the_engine_is_off(tmp_path, capsys) -> None:
    d = _Daemon(tmp_path / "c.sock", None)
    try:
        rc, out, _ = _run(d, capsys, "features")
    finally:
        d.close()
    assert rc == 0 and out.startswith("no features")
