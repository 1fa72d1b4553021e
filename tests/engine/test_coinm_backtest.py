"""Issue 9, markets: a COIN-M (inverse) capture through the whole core. Before, coin-
margined captures replayed but every order was refused (no contract size, no inverse
pricing). The shared USD-M recording is turned into BTCUSD_PERP (quantities in whole
contracts, as tests/markets/test_coinm_replay.py does), then `bot4d backtest` trades it
with the shipped quoter: orders in whole contracts, fees in coin, and the report's PnL in
coin equals the hand formula contract_size x sum(sign x q x (1/p - 1/mark))."""
from __future__ import annotations

import gzip
import json
from decimal import Decimal as D

import pytest

from tests.engine.test_same_engine import USDM, bot4d, rows
from tests.markets.test_coinm_replay import coinm_line

pytestmark = pytest.mark.skipif(not USDM.is_file(), reason="shared captures not found")
LINES = 40_000
CONFIG = """
[market]
exchange = "coinm"
symbols = ["BTCUSD_PERP"]
[strategy]
order_notional = "100"          # USD: one contract of 100 USD
[strategy.quoter]
half_spread_bps = 0.5           # close to the touch: fills within minutes
requote_bps = 0.5
[breakers]
probe_max_notional = "200"      # a probe is one contract (100 USD)
vpin_max = 0.0                  # VPIN buckets are for the linear markets' volumes
"""


def test_an_inverse_perpetual_trades_in_contracts_with_coin_pnl(tmp_path):
    cap = tmp_path / "coinm_btcusd_perp_20240808.gz"
    with gzip.open(USDM, "rb") as src, gzip.open(cap, "wb") as out:
        for i, line in enumerate(src):
            if i >= LINES:
                break
            ns, _, raw = line.rstrip(b"\n").partition(b" ")
            out.write(ns + b" " + coinm_line(raw) + b"\n")
    cfg = tmp_path / "coinm.toml"
    cfg.write_text(CONFIG)
    r = bot4d("backtest", "--config", str(cfg), "--replay", str(cap), "--report",
              str(tmp_path / "r"), "--no-png")
    assert r.returncode == 0, r.stderr
    rep = json.loads((tmp_path / "r" / "report.json").read_text())
    pre = rep["counts"].get("pre_trade_rejects_by_stage") or {}
    assert "instrument" not in pre, pre
    fills = rows(tmp_path / "r" / "backtest.sqlite3",
                 "SELECT side, price, qty, fee FROM fills ORDER BY ts_ns")
    assert rep["counts"]["orders"] > 5 and fills, rep["counts"]
    sym = rep["by_symbol"]["BTCUSD_PERP"]
    assert sym["kind"] == "inverse" and sym["contract_size"] == "100"
    cs, mark = D(100), D(sym["mark"])
    for side, price, qty, fee in fills:
        q, p = D(qty), D(price)
        assert q == q.to_integral_value() and q >= 1          # whole contracts
        assert D(fee) == (q * cs / p * D("0.0001")).quantize(D("1e-8")) \
            or abs(D(fee) - q * cs / p * D("0.0001")) < D("1e-8")   # 1 bp of the coin notional
    by_hand = sum((cs * D(q) * (1 / D(p) - 1 / mark) * (1 if s == "buy" else -1)
                   for s, p, q, _ in fills), D(0))
    reported = D(sym["realised"]) + D(sym["unrealised"])
    assert abs(reported - by_hand) < D("1e-12"), (reported, by_hand)


def test_a_probe_of_an_inverse_contract_is_counted_in_usd(tmp_path):
    """A half-open breaker lets probes of at most probe_max_notional (quote currency) pass.
    One BTCUSD_PERP contract is 100 USD whatever the price; counted as price x qty it was
    60,000 "USD" and no probe could ever pass, so the breaker never closed."""
    from daemon.execution.orders import Side, TimeInForce
    from daemon.states import State
    from tests.engine_rig import EngineRig
    from daemon import config
    toml = tmp_path / "c.toml"
    toml.write_text('[market]\nexchange = "coinm"\nsymbols = ["BTCUSD_PERP"]\n'
                    '[strategy]\norder_notional = "100"\n')
    r = EngineRig(tmp_path, symbols=("BTCUSD_PERP",), base=config.load(toml),
                  overrides={"breakers": {"probe_max_notional": "150", "vpin_max": 0.0}})
    r.snapshot([(59999.9, 10.0)], [(60000.1, 10.0)], symbol="BTCUSD_PERP")
    r.quote(59999.9, 60000.1, symbol="BTCUSD_PERP", qty=10.0)
    r.control.state = State.TRADING   # (the first event's empty book made it reducing)
    board, venue = r.core.protection.board, r.core.venue.name
    now = r.core.clock()
    board.trip(venue, "test", now, manual=False)
    board.tick(now + int(r.cfg.breakers.cooldown_s * 1e9) + 1)
    assert board.breakers[venue].state.value == "half_open"
    o = r.gw.submit("BTCUSD_PERP", Side.BUY, D("1"), D("59990"), tif=TimeInForce.POST_ONLY)
    assert o.qty == D("1")   # allowed: the probe is 100 USD, within 150
