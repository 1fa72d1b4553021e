"""Parameter sweeps (`bot4d backtest --sweep`, daemon/backtest/sweep.py): the table equals
separate backtests of the same points; grid expansion and ordering; one decoded-capture
cache built before the pool; bad keys and values refused before anything runs; the heat
map for a two-parameter grid only; a failed point is reported, not lost.

Real `bot4d` subprocesses on the shared capture (41k lines), real SQLite journals, real
worker processes."""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from daemon.backtest import sweep
from daemon.backtest.plot import PlotUnavailable
from daemon.config import Config, load
from tests.daemon_harness import REPO

DATA = Path(os.environ.get("BOT4_DATA_DIR", REPO.parent / "shared" / "data")) / "binance"
BTC = DATA / "spot_btcusdt_20240808.gz"
needs_capture = pytest.mark.skipif(not BTC.is_file(), reason=f"capture not found under {DATA}")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
HALF, REQUOTE = "strategy.quoter.half_spread_bps", "strategy.quoter.requote_bps"
GRID = [f"{HALF}=2,5", f"{REQUOTE}=1,4"]   # 2 x 2: every point trades differently


def _env() -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BOT4__")}
    env.pop("NOTIFY_SOCKET", None)
    env.pop("BOT4_CACHE_DIR", None)
    return env


def bot4d(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "daemon.cli", *args], cwd=REPO, env=_env(),
                          capture_output=True, text=True, timeout=900)


def run_sweep(out: Path, cache: Path, *sweeps: str, extra: tuple[str, ...] = ()
              ) -> subprocess.CompletedProcess:
    args = ["backtest", "--replay", str(BTC), "--report", str(out), "--cache-dir", str(cache)]
    for s in sweeps:
        args += ["--sweep", s]
    return bot4d(*args, *extra)


def table(out: Path) -> dict:
    return json.loads((out / sweep.SWEEP_JSON).read_text())


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    """The 2 x 2 sweep on two worker processes, with a fresh cache folder."""
    base = tmp_path_factory.mktemp("sweep")
    out, cache = base / "grid", base / "cache"
    r = run_sweep(out, cache, *GRID, extra=("--jobs", "2"))
    assert r.returncode == 0, r.stderr
    return out, cache


# -- the table against separate backtests ------------------------------------------------
@needs_capture
def test_sweep_table_equals_separate_backtests(grid, tmp_path):
    out, _ = grid
    t = table(out)
    rows = t["points"]
    # The points really differ (the overrides reached the strategy), or equality means little.
    assert len({r["metrics"]["pnl.total_net"] for r in rows}) == 4
    with open(out / sweep.SWEEP_CSV, newline="") as f:
        cells = list(csv.DictReader(f))
    for row in (rows[1], rows[2]):   # (2 bps, requote 4) and (5 bps, requote 1)
        half, requote = row["params"][HALF], row["params"][REQUOTE]
        cfg = tmp_path / f"p{row['index']}.toml"
        cfg.write_text(f"[strategy.quoter]\nhalf_spread_bps = {half}\n"
                       f"requote_bps = {requote}\n")
        alone = tmp_path / f"alone{row['index']}"
        # On its own: a config file instead of --sweep, no cache (the raw decoding path).
        r = bot4d("backtest", "--config", str(cfg), "--replay", str(BTC), "--report",
                  str(alone), "--no-png")
        assert r.returncode == 0, r.stderr
        rep = json.loads((alone / "report.json").read_text())
        assert rep["meta"]["strategy"]["params"]["half_spread_bps"] == half
        assert row["metrics"] == sweep.metrics_of(rep)
        assert row["metrics"]["pnl.total_net"] == rep["pnl"]["total_net"]
        assert row["metrics"]["risk_adjusted.sharpe"] == rep["risk_adjusted"]["sharpe"]
        assert row["metrics"]["counts.fills"] == rep["counts"]["fills"] > 0
        # The point's whole report is the separate run's, but for when it was made.
        point = json.loads((out / row["dir"] / "report.json").read_text())
        assert point.pop("generated_at") and rep.pop("generated_at")
        assert point == rep
        # The CSV row holds the report's text: money strings and floats unchanged.
        c = cells[row["index"]]
        assert c["pnl.total_net"] == rep["pnl"]["total_net"]
        assert c["pnl.fees"] == rep["pnl"]["fees"]
        assert float(c["risk_adjusted.sharpe"]) == rep["risk_adjusted"]["sharpe"]
        assert c["counts.orders"] == str(rep["counts"]["orders"])


# -- grid expansion, ordering, cache, processes ------------------------------------------
@needs_capture
def test_grid_order_directories_and_csv(grid):
    out, _ = grid
    t = table(out)
    assert t["keys"] == [HALF, REQUOTE]
    assert t["values"] == {HALF: [2, 5], REQUOTE: [1, 4]}
    assert [(r["index"], r["params"]) for r in t["points"]] == [
        (0, {HALF: 2, REQUOTE: 1}), (1, {HALF: 2, REQUOTE: 4}),
        (2, {HALF: 5, REQUOTE: 1}), (3, {HALF: 5, REQUOTE: 4})]
    dirs = sorted(p.name for p in (out / sweep.POINTS_DIR).iterdir())
    assert [r["dir"] for r in t["points"]] == [f"points/{d}" for d in dirs]
    assert dirs[1] == f"1-{HALF}=2,{REQUOTE}=4"
    for d in dirs:   # a normal backtest each, without report.png by default
        assert (out / "points" / d / "report.json").is_file()
        assert not (out / "points" / d / "report.png").exists()
    with open(out / sweep.SWEEP_CSV, newline="") as f:
        lines = list(csv.reader(f))
    assert lines[0] == ["index", "dir", HALF, REQUOTE, *sweep.METRICS, "error"]
    assert [ln[:4] for ln in lines[1:]] == [
        [str(r["index"]), r["dir"], str(r["params"][HALF]), str(r["params"][REQUOTE])]
        for r in t["points"]]
    assert all(ln[-1] == "" and r["error"] is None for ln, r in zip(lines[1:], t["points"]))
    for name in ("pnl.total_net", "pnl.fees", "pnl.turnover", "drawdown.absolute",
                 "risk_adjusted.sharpe", "risk_adjusted.sortino", "hit_rate.value",
                 "fill_ratio.orders", "counts.orders", "counts.fills"):
        assert name in t["metrics"]


@needs_capture
def test_cache_built_once_before_the_pool_and_points_run_in_workers(grid):
    out, cache = grid
    rt = table(out)["runtime"]
    # One cache file, built by the sweeping process; every point read it (a hit).
    assert [c["hit"] for c in rt["cache"]] == [False]
    assert [p.name for p in cache.iterdir()] == [Path(rt["cache"][0]["file"]).name]
    assert [p["cache_hit"] for p in rt["points"]] == [True] * 4
    assert rt["jobs"] == 2 and rt["start_method"] == sweep.START_METHOD
    pids = {p["pid"] for p in rt["points"]}
    # Worker processes, never the sweeping one; how the pool shares the 4 points out
    # between its 2 workers is the scheduler's business, so only the bound is asserted.
    assert rt["parent_pid"] not in pids and 1 <= len(pids) <= 2


@needs_capture
def test_one_dimensional_sweep_same_table_on_one_or_two_workers_and_no_heatmap(grid,
                                                                                 tmp_path):
    _, cache = grid
    a, b = tmp_path / "a", tmp_path / "b"
    ra = run_sweep(a, cache, f"{REQUOTE}=4,1", extra=("--jobs", "1"))
    rb = run_sweep(b, cache, f"{REQUOTE}=4,1", extra=("--jobs", "2"))
    assert ra.returncode == 0, ra.stderr
    assert rb.returncode == 0, rb.stderr
    ta, tb = table(a), table(b)
    # Rows in the order the values were given, not sorted and not in finishing order.
    assert [r["params"][REQUOTE] for r in ta["points"]] == [4, 1]
    assert sweep.without_wall_clock(ta) == sweep.without_wall_clock(tb)
    assert (a / sweep.SWEEP_CSV).read_bytes() == (b / sweep.SWEEP_CSV).read_bytes()
    assert ta["runtime"]["start_method"] == "in-process"
    assert {p["pid"] for p in ta["runtime"]["points"]} == {ta["runtime"]["parent_pid"]}
    assert not (a / sweep.HEATMAP_PNG).exists() and not (b / sweep.HEATMAP_PNG).exists()
    assert "needs exactly two --sweep keys" in ra.stderr


@needs_capture
def test_heatmap_written_for_a_two_parameter_grid(grid):
    out, _ = grid
    data = (out / sweep.HEATMAP_PNG).read_bytes()
    assert data.startswith(PNG_MAGIC) and len(data) > 5_000
    assert table(out)["heatmap_metric"] == "pnl.total_net"
    assert not list(out.glob(".*.tmp"))


# -- refusals before anything runs -------------------------------------------------------
@pytest.fixture
def cfg() -> Config:
    return load(None, environ={})


@pytest.mark.parametrize("spec, says", [
    ("nosuch.key=1", "unknown config section [nosuch]"),
    ("strategy.quoter.nosuch=1,2", "strategy.quoter.nosuch=1: [strategy.quoter] nosuch: "
                                   "unknown key"),
    ("strategy.quoter=1", "[strategy.quoter] is a table"),
    ("strategy=1", "[strategy] is a table"),
    ("paper.seed.x=1", "paper.seed is a value, not a table"),
    ("paper.seed=1 2", "'1 2' is not a TOML value"),
    ("paper.seed=1,,2", "an empty value"),
    ("paper.seed=1,", "an empty value"),
    ("paper.seed=1,1", "value 1 given twice"),
    ("paper.seed", "expected KEY=V1,V2"),
    ("=1,2", "expected KEY=V1,V2"),
    ("paper..seed=1", "has an empty part"),
    ("paper.seed=[1]", "is not a number, string or boolean"),
    ("paper.seed='x", "unterminated ' quote"),
    ("market.source=replay", "cannot be swept"),
    ("analytics.enabled=true", "cannot be swept"),
])
def test_bad_key_or_value_is_named(cfg, spec, says):
    with pytest.raises(sweep.SweepError) as e:
        sweep.plan(cfg, [spec])
    assert says in str(e.value)


def test_every_bad_value_is_named_and_only_them(cfg):
    with pytest.raises(sweep.SweepError) as e:
        sweep.plan(cfg, [f"{HALF}=2,-1,abc,5", "paper.seed=1,-3"])
    msg = str(e.value)
    assert f"--sweep {HALF}=-1:" in msg and "greater than 0" in msg
    assert f"--sweep {HALF}=abc:" in msg and "valid number" in msg
    assert "--sweep paper.seed=-3:" in msg
    assert f"{HALF}=2:" not in msg and f"{HALF}=5:" not in msg and "seed=1:" not in msg


def test_conflicting_flags_and_repeated_keys(cfg):
    with pytest.raises(sweep.SweepError, match="--seed is given as well"):
        sweep.plan(cfg, ["paper.seed=1,2"], seed=3)
    with pytest.raises(sweep.SweepError, match="--strategy is given as well"):
        sweep.plan(cfg, ["strategy.name=quoter"], strategy="quoter")
    with pytest.raises(sweep.SweepError, match="given twice"):
        sweep.plan(cfg, ["paper.seed=1", " paper.seed =2"])
    with pytest.raises(sweep.SweepError, match="no --sweep"):
        sweep.plan(cfg, [])
    with pytest.raises(sweep.SweepError) as e:   # blamed on --strategy, not on a value
        sweep.plan(cfg, ["paper.seed=1,2"], strategy="nosuch")
    assert str(e.value).startswith("--strategy/--seed: ") and "seed=1" not in str(e.value)
    with pytest.raises(sweep.SweepError, match="not a sweep metric"):
        sweep.metric_name("pnl")
    assert sweep.metric_name("sharpe") == "risk_adjusted.sharpe"
    assert sweep.metric_name("counts.fills") == "counts.fills"


def test_values_are_toml_scalars_in_the_order_given():
    ax = sweep.parse_axis('strategy.name=2, 2.5 ,"a,b",true,quoter,\'c d\',-1e3')
    assert ax.key == "strategy.name"
    assert ax.values == (2, 2.5, "a,b", True, "quoter", "c d", -1000.0)
    assert [type(v) for v in ax.values] == [int, float, str, bool, str, str, float]
    # 1 and 1.0 are the same setting; "1" (a string) and true are not 1.
    with pytest.raises(sweep.SweepError, match="given twice"):
        sweep.parse_axis("paper.maker_fee_bps=1,1.0")
    assert sweep.parse_axis('x.y=1,"1",true').values == (1, "1", True)
    assert sweep.parse_axis('instruments."usdm:BTCUSDT".tick_size=1').key == \
        "instruments.usdm:BTCUSDT.tick_size"


def test_grid_points_carry_exactly_their_values(cfg):
    axes, points = sweep.plan(cfg, [f"{HALF}=1.5,3", "paper.seed=7,8,9",
                                    "strategy.order_notional=20"])
    assert [a.key for a in axes] == [HALF, "paper.seed", "strategy.order_notional"]
    assert [p.params for p in points] == [
        ((HALF, h), ("paper.seed", s), ("strategy.order_notional", 20))
        for h in (1.5, 3) for s in (7, 8, 9)]
    assert [p.dirname for p in points][:2] == [
        f"0-{HALF}=1.5,paper.seed=7,strategy.order_notional=20",
        f"1-{HALF}=1.5,paper.seed=8,strategy.order_notional=20"]
    p = points[4]   # 3 bps, seed 8
    assert p.cfg.strategy.quoter.half_spread_bps == 3 and p.cfg.paper.seed == 8
    assert p.cfg.strategy.order_notional == Decimal("20")
    # Everything else is the config's, with the backtest's own settings on every point.
    assert p.cfg.strategy.quoter.requote_bps == cfg.strategy.quoter.requote_bps
    assert p.cfg.risk == cfg.risk and p.cfg.instruments == cfg.instruments
    assert p.cfg.market.source == "replay" and p.cfg.analytics.enabled is False
    assert len({p.dirname for p in points}) == 6


def test_point_directory_names_are_safe_and_bounded():
    assert sweep._dirname(3, 2, (("k", "a/b c"), ("x.y", True))) == "03-k=a_b_c,x.y=true"
    long = sweep._dirname(0, 1, (("k", "v" * 500),))
    assert long.startswith("0-k=vvv") and len(long) == 2 + sweep._DIRNAME_MAX


@needs_capture
def test_cli_refuses_a_bad_sweep_with_78_before_running_anything(tmp_path):
    out = tmp_path / "r"
    r = run_sweep(out, tmp_path / "cache", f"{HALF}=2,-1", "paper.nosuch=1")
    assert r.returncode == 78
    assert f"{HALF}=-1" in r.stderr and "paper.nosuch" in r.stderr
    assert not out.exists() and not (tmp_path / "cache").exists()
    r = run_sweep(out, tmp_path / "cache", f"{HALF}=2", extra=("--sweep-metric", "pnl"))
    assert r.returncode == 78 and "--sweep-metric pnl" in r.stderr
    r = run_sweep(out, tmp_path / "cache", f"{HALF}=2", extra=("--jobs", "0"))
    assert r.returncode == 78 and "--jobs 0" in r.stderr
    r = bot4d("backtest", "--replay", str(BTC), "--report", str(out), "--jobs", "2")
    assert r.returncode == 78 and "no --sweep" in r.stderr
    assert not out.exists()


# -- in process: a failed point, the heat map's metric, no matplotlib ----------------------
@needs_capture
def test_a_failed_point_is_in_the_table_and_the_exit_is_70(cfg, tmp_path, capsys):
    # A spot capture on a USD-M config: that point's backtest refuses the data.
    stale = tmp_path / "r" / "points" / "0-paper.seed=1"   # an earlier sweep's point
    stale.mkdir(parents=True)
    rc = sweep.main(cfg, [str(BTC)], str(tmp_path / "r"), specs=["market.exchange=spot,usdm"],
                    strategy=None, seed=None, png=False, cache_dir=str(tmp_path / "c"),
                    jobs=1, metric=None, point_png=True)
    assert rc == 70
    rows = table(tmp_path / "r")["points"]
    assert rows[0]["error"] is None and rows[0]["metrics"]["counts.orders"] > 0
    assert "spot market data" in rows[1]["error"]
    assert rows[1]["metrics"] == dict.fromkeys(sweep.METRICS)
    outerr = capsys.readouterr()
    assert "1 FAILED (points [1])" in outerr.out
    assert "1 entries in" in outerr.err and stale.is_dir()   # said, and left alone
    # --point-png: the point that ran has its report.png
    png = tmp_path / "r" / rows[0]["dir"] / "report.png"
    assert png.read_bytes().startswith(PNG_MAGIC)


@needs_capture
def test_without_matplotlib_the_table_is_still_written(cfg, tmp_path, capsys, monkeypatch):
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)   # `import matplotlib` fails
    out = tmp_path / "r"
    rc = sweep.main(cfg, [str(BTC)], str(out), specs=[f"{HALF}=5", f"{REQUOTE}=4"],
                    strategy=None, seed=None, png=True, cache_dir=str(tmp_path / "c"),
                    jobs=1, metric="sharpe")
    assert rc == 0
    err = capsys.readouterr().err
    assert "heatmap.png needs matplotlib" in err and "pip install 'bot4[report]'" in err
    assert (out / sweep.SWEEP_JSON).is_file() and (out / sweep.SWEEP_CSV).is_file()
    assert not (out / sweep.HEATMAP_PNG).exists()
    t = table(out)
    assert t["heatmap_metric"] == "risk_adjusted.sharpe"
    assert t["points"][0]["metrics"]["counts.fills"] > 0


def _hand_table(metric_values: list) -> dict:
    rows = [{"index": i, "dir": f"points/{i}", "params": {"a": a, "b": b},
             "metrics": {**dict.fromkeys(sweep.METRICS), "pnl.total_net": v},
             "error": "boom" if v == "fail" else None}
            for i, ((a, b), v) in enumerate(zip([(1, "x"), (1, "y"), (2, "x"), (2, "y")],
                                               metric_values))]
    return {"keys": ["a", "b"], "values": {"a": [1, 2], "b": ["x", "y"]},
            "files": ["f.gz"], "points": rows}


def test_heatmap_cells_from_money_strings_nulls_and_failures(tmp_path):
    from matplotlib.image import imread
    path = tmp_path / "h.png"
    sweep.write_heatmap(_hand_table(["-0.5", "0.25", None, "fail"]), "pnl.total_net", path)
    assert path.read_bytes().startswith(PNG_MAGIC)
    h, w = imread(path).shape[:2]
    assert w >= 400 and h >= 300
    with pytest.raises(ValueError, match="two-parameter"):
        sweep.write_heatmap({**_hand_table([1, 2, 3, 4]), "keys": ["a"]}, "pnl.total_net",
                            tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


def test_heatmap_without_matplotlib_names_the_extra(tmp_path, monkeypatch):
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(PlotUnavailable, match=r"bot4\[report\]"):
        sweep.write_heatmap(_hand_table(["1", "2", "3", "4"]), "pnl.total_net",
                            tmp_path / "h.png")
