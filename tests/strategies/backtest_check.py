"""A bar strategy's backtest on the shared BTCUSDT spot captures (2024-08-08 23:54 to
2024-08-09 00:05, one after the other), run as a real `bot4d backtest` subprocess with
5-second bars (BOT4__STRATEGY__BAR_INTERVAL_S=5: the default 60 s gives only ~11 bars in
these ~11 minutes, fewer than the strategies' warm-up), and the sanity checks every bar
strategy must pass: the report is written; every order is an IOC limit priced within
max_slippage_bps (10) of the captures' trade range; every fill inside that range; the
position never beyond [risk] max_position, rebuilt fill by fill from the journal.

It returns the figures (orders, fills, PnL, the largest |position|) for the caller's own
assertions. Nothing here is mocked: the journal is the backtest's SQLite file.
"""
from __future__ import annotations

import gzip
import json
import os
import sqlite3
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from daemon import config
from tests.daemon_harness import REPO

DATA = Path(os.environ.get("BOT4_DATA_DIR", REPO.parent / "shared" / "data")) / "binance"
CAPTURES = [DATA / "spot_btcusdt_20240808.gz", DATA / "spot_btcusdt_20240809.gz"]
BAR_S = "5"


def _trade_range(paths: list[Path]) -> tuple[Decimal, Decimal]:
    lo = hi = None
    for path in paths:
        with gzip.open(path, "rt") as f:
            for line in f:
                if "@trade" not in line:
                    continue
                p = Decimal(json.loads(line.split(" ", 1)[1])["data"]["p"])
                lo = p if lo is None or p < lo else lo
                hi = p if hi is None or p > hi else hi
    assert lo is not None, "no trades in the captures"
    return lo, hi


def run_backtest_on_captures(tmp_path: Path, strategy: str, env: dict | None = None) -> dict:
    if not all(p.is_file() for p in CAPTURES):
        pytest.skip(f"captures not found under {DATA}")
    report = tmp_path / "report"
    e = {k: v for k, v in os.environ.items() if not k.startswith("BOT4__")}
    e.pop("NOTIFY_SOCKET", None)
    e.update({"BOT4__STRATEGY__BAR_INTERVAL_S": BAR_S, **(env or {})})
    r = subprocess.run([sys.executable, "-m", "daemon.cli", "backtest", "--strategy", strategy,
                        "--replay", *map(str, CAPTURES), "--report", str(report), "--no-png"],
                       cwd=REPO, env=e, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    rep = json.loads((report / "report.json").read_text())
    assert rep["counts"]["orders"] >= 0 and "pnl" in rep
    con = sqlite3.connect(f"file:{report / 'backtest.sqlite3'}?mode=ro", uri=True)
    try:
        orders = con.execute("SELECT side, type, tif, price, qty, created_ns FROM orders "
                             "ORDER BY created_ns").fetchall()
        fills = con.execute("SELECT side, price, qty FROM fills ORDER BY ts_ns, fill_id"
                            ).fetchall()
    finally:
        con.close()
    assert len(orders) == rep["counts"]["orders"] and len(fills) == rep["counts"]["fills"]
    lo, hi = _trade_range(CAPTURES)
    slip = Decimal(10) / Decimal(10_000)
    for side, type_, tif, price, qty, _ in orders:
        assert (type_, tif) == ("limit", "ioc"), (type_, tif)
        assert lo * (1 - slip) <= Decimal(price) <= hi * (1 + slip), (price, lo, hi)
    pos = worst = Decimal(0)
    for side, price, qty in fills:
        assert lo <= Decimal(price) <= hi, (price, lo, hi)
        pos += Decimal(qty) if side == "buy" else -Decimal(qty)
        worst = max(worst, abs(pos))
    limit = config.Config().risk.max_position
    assert worst <= limit
    return {"orders": len(orders), "fills": len(fills), "max_abs_position": worst,
            "final_position": pos, "pnl": rep["pnl"], "range": (lo, hi),
            "stdout": r.stdout.strip()}
