"""`bot4ctl quality [--json]` against a real ControlServer on a Unix socket, answering
as the daemon side will: {"quality": DataQuality.status()} from a real DataQuality fed
real events (a price spike on BTCUSDT, spot and USD-M). Human output: one row per feed
and layer, the score parts, every line <= 80 columns."""
from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from daemon.config import QualityCfg
from daemon.control import ctl, render
from daemon.quality.monitor import LAYERS, DataQuality
from tests.control_thread import ControlThread
from tests.quality.test_monitor import Market


class _Daemon(ControlThread):
    def __init__(self, sock: Path, dq: DataQuality | None) -> None:
        self.dq = dq
        super().__init__(sock)

    async def handle(self, req: dict) -> dict:
        return {"quality": self.dq.status() if self.dq else {}}


def _dq() -> DataQuality:
    dq = DataQuality(QualityCfg(), ["BTCUSDT"], venue="spot")
    spot, fut = Market(dq, "spot"), Market(dq, "usdm", price=60_030.0)
    for _ in range(300):
        spot.step()
        fut.step()
    spot.step(1, price=spot.price * 1.02)
    spot.step(20)
    return dq


@pytest.fixture
def daemon(tmp_path):
    d = _Daemon(tmp_path / "c.sock", _dq())
    yield d
    d.close()


def _run(d: _Daemon, capsys, *args: str) -> tuple[int, str, str]:
    rc = ctl.main(["--socket", d.path, "--timeout", "20", *args])
    out, err = capsys.readouterr()
    return rc, out, err


def test_quality_table(daemon, capsys):
    rc, out, err = _run(daemon, capsys, "quality")
    assert rc == 0 and err == ""
    assert daemon.requests == [{"cmd": "quality"}]
    lines = out.splitlines()
    assert all(len(ln) <= render.WIDTH for ln in lines), [ln for ln in lines if len(ln) > 80]
    assert lines[0].split() == ["symbol", "layer", "verdict", "figures"]
    rows = [ln.split() for ln in lines[1:1 + 2 * len(LAYERS)]]
    assert [(r[0], r[1]) for r in rows] == [(k, layer) for k in ("BTCUSDT", "usdm:BTCUSDT")
                                            for layer in LAYERS]
    kalman = next(ln for ln in lines if ln.startswith("BTCUSDT") and " kalman " in ln)
    assert kalman.split()[2] == "fault" and "outliers 1" in kalman
    assert any(ln.startswith("BTCUSDT score") for ln in lines)
    # The fault's reason in full, wrapped under the table.
    i = lines.index("BTCUSDT kalman:")
    assert " ".join(lines[i + 1].split() + lines[i + 2].split()).startswith(
        "1 price outlier(s) (largest |z|")
    assert " ".join(" ".join(lines[i + 1:i + 3]).split()).endswith("gap(s) over 10 s in "
                                                                  "5.0 s")
    assert lines[-1] == "outcome: reducing"


def test_quality_json(daemon, capsys):
    rc, out, _ = _run(daemon, capsys, "quality", "--json")
    assert rc == 0
    got = orjson.loads(out)
    assert got == {"quality": orjson.loads(orjson.dumps(daemon.dq.status()))}
    assert got["quality"]["symbols"]["BTCUSDT"]["layers"]["kalman"]["outliers"] == 1


def test_quality_when_off(tmp_path, capsys):
    d = _Daemon(tmp_path / "c.sock", None)
    try:
        rc, out, _ = _run(d, capsys, "quality")
    finally:
        d.close()
    assert rc == 0 and out.startswith("no data-quality figures")
