"""The offline PELT report next to the online detectors: both find a known change on a
synthetic series; on a real capture the report covers every series without error."""
from __future__ import annotations

import json

import numpy as np

from daemon.config import QualityCfg
from daemon.quality.changepoint import Bocpd
from daemon.quality.report import changepoint_report, segment
from tests.quality.replay import data_dir, replay


def test_pelt_and_bocpd_agree_on_a_known_change():
    rng = np.random.default_rng(1)
    xs = np.concatenate([rng.normal(0, 1, 300), rng.normal(3, 1, 200)])
    seg = segment(xs)
    assert seg["breakpoints"][-1] == 500 and len(seg["breakpoints"]) == 2
    assert abs(seg["breakpoints"][0] - 300) <= 3
    assert abs(seg["means"][1] - 3) < 0.2
    b = Bocpd(250, 300, 3.0, 30)
    found = [c + 30 for c in (b.update(float(x)) for x in xs) if c is not None]
    assert len(found) == 1 and abs(found[0] - seg["breakpoints"][0]) <= 3


def test_degenerate_series():
    assert segment(np.array([1.0, 2.0]))["error"].startswith("need at least")
    flat = segment(np.full(100, 5.0))
    assert flat["breakpoints"] == [100]
    assert segment(np.array([np.nan] * 50 + [1.0] * 50))["n"] == 50


def test_report_on_a_capture():
    if not (data_dir() / "spot_btcusdt_20240808.gz").is_file():
        import pytest
        pytest.skip("shared captures not found")
    r = replay("spot+usdm_btc_0808", QualityCfg())
    rep = changepoint_report(r.dq)
    json.dumps(rep, allow_nan=False)
    assert set(rep) == {"BTCUSDT", "usdm:BTCUSDT"}
    ret = rep["BTCUSDT"]["return_bps"]
    assert ret["n"] > 300 and ret["breakpoints"][-1] == ret["n"]
    assert "error" in rep["usdm:BTCUSDT"]["basis_bps"]          # the basis lives on spot
    assert rep["BTCUSDT"]["basis_bps"]["n"] > 300
