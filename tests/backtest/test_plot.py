"""report.png: written, a real PNG; a clear error when matplotlib is missing."""
from __future__ import annotations

import sys

import numpy as np
import pytest

from daemon.backtest.plot import INSTALL_HINT, PlotUnavailable, _minmax, _title, write_png
from daemon.backtest.report import build_report
from tests.backtest.scenario import (MAIN_INTERVAL_S, Recorder, flat_samples, main_samples,
                                     main_scenario)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _image_shape(path):
    from matplotlib.image import imread
    return imread(path).shape


def test_png_written_with_equity_position_and_price_panels(tmp_path):
    main_scenario(tmp_path / "j.sqlite3")
    samples = main_samples()
    rep = build_report(journal_path=tmp_path / "j.sqlite3", samples=samples,
                       sample_interval_s=MAIN_INTERVAL_S, meta={"strategy": "quoter"})
    out = tmp_path / "report.png"
    write_png(rep, samples, out)
    data = out.read_bytes()
    assert data.startswith(PNG_MAGIC) and len(data) > 10_000
    h, w = _image_shape(out)[:2]
    # two symbols: equity, position, and one price panel each -> 4 panels of 300 px
    assert (w, h) == (1100, 1200)
    assert not list(tmp_path.glob(".*.tmp"))


def test_png_for_a_run_without_fills_or_samples(tmp_path):
    r = Recorder(tmp_path / "j.sqlite3")
    r.close()
    rep = build_report(journal_path=tmp_path / "j.sqlite3", samples=[], sample_interval_s=1,
                       meta={})
    write_png(rep, [], tmp_path / "empty.png")
    assert (tmp_path / "empty.png").read_bytes().startswith(PNG_MAGIC)
    assert _image_shape(tmp_path / "empty.png")[:2] == (900, 1100)   # three panels

    samples = flat_samples(3, marks={"BTCUSDT": None})
    write_png(rep, samples, tmp_path / "flat.png")
    assert (tmp_path / "flat.png").read_bytes().startswith(PNG_MAGIC)


def test_missing_matplotlib_names_the_extra(tmp_path, monkeypatch):
    main_scenario(tmp_path / "j.sqlite3")
    rep = build_report(journal_path=tmp_path / "j.sqlite3", samples=main_samples(),
                       sample_interval_s=MAIN_INTERVAL_S, meta={})
    # A None in sys.modules makes `import matplotlib` (and every submodule) raise
    # ImportError, as on a Pi without the extra.
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(PlotUnavailable) as e:
        write_png(rep, main_samples(), tmp_path / "report.png")
    assert INSTALL_HINT in str(e.value) and "bot4[report]" in str(e.value)
    assert isinstance(e.value.__cause__, ImportError)
    assert not (tmp_path / "report.png").exists()


def test_long_series_keep_each_buckets_lowest_and_highest_point():
    x = np.arange(10_000, dtype=float)
    y = np.zeros(10_000)
    y[1234], y[8765] = -50.0, 70.0          # a drawdown and a spike
    y[5000:5100] = np.nan                   # a gap no bigger than a bucket
    xs, ys = _minmax(x, y, buckets=100)
    assert len(xs) <= 200 and list(xs) == sorted(xs)
    assert -50.0 in ys and 70.0 in ys
    assert np.isnan(ys).sum() == 1 and xs[np.isnan(ys)][0] == 5000.0   # the gap stays
    short = np.arange(50, dtype=float)
    assert _minmax(short, short, buckets=100)[0] is short          # short: untouched


def test_title_names_the_strategy_however_meta_gives_it():
    rep = {"meta": {"strategy": {"name": "quoter", "params": {"x": 1}}},
           "pnl": {"total_net": "1.5", "fees": "0.1"}, "drawdown": {"absolute": "0.2"},
           "risk_adjusted": {"sharpe": 1.2}, "counts": {"fills": 3}}
    assert _title(rep).startswith("quoter  |  net PnL 1.5  |  fees 0.1")
    rep["meta"] = {"strategy": "maker"}
    assert _title(rep).startswith("maker  |")
