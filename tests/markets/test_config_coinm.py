"""COIN-M instruments in `[market] symbols`: the defaults of exchange = "coinm" and a
coinm: instrument beside spot. (Needs the engine's [strategy] order_notional sizing: the
old base-currency quote_qty cannot be a whole number of contracts and of BTC lots.)"""
from __future__ import annotations

from decimal import Decimal as D
from pathlib import Path

from daemon import config
from tests.markets.test_config_markets import BTC_SPOT, PERP, load


def test_coinm_exchange_gets_inverse_default_instruments(tmp_path: Path) -> None:
    cfg = load(tmp_path, '[market]\nexchange = "coinm"\nsymbols = ["BTCUSD_PERP", '
               '"ETHUSD_PERP"]\n')
    btc, eth = cfg.instruments["BTCUSD_PERP"], cfg.instruments["ETHUSD_PERP"]
    assert (btc.kind, btc.contract_size, btc.lot_size, btc.min_notional) == \
        ("inverse", D("100"), D("1"), D("0"))
    assert (eth.kind, eth.contract_size, eth.tick_size) == ("inverse", D("10"), D("0.01"))
    assert "BTCUSDT" not in cfg.instruments, "a plain BTCUSDT would mean a COIN-M symbol here"
    # The spot defaults stay what they were.
    assert set(config.load(None, environ={}).instruments) == {"BTCUSDT", "ETHUSDT"}


def test_coinm_symbol_beside_spot_with_its_own_table(tmp_path: Path) -> None:
    cfg = load(tmp_path, '[market]\nsymbols = ["BTCUSDT", "coinm:BTCUSD_PERP"]\n' + BTC_SPOT
               + PERP.format(id='"coinm:BTCUSD_PERP"'))
    inst = cfg.instruments["coinm:BTCUSD_PERP"]
    assert (inst.kind, inst.contract_size, inst.min_notional) == ("inverse", D("100"), D("0"))
