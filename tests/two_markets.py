"""The config text of spot BTCUSDT and USD-M BTCUSDT on one engine (the shared captures'
spot and perpetual overlap on 2024-08-08 23:54-23:59), for tests of several markets."""
from __future__ import annotations

INSTRUMENTS = """
[instruments.BTCUSDT]
tick_size = "0.01"
lot_size = "0.00001"
min_notional = "5"
[instruments."usdm:BTCUSDT"]
tick_size = "0.1"
lot_size = "0.001"
min_notional = "5"
"""


def two_markets(market: str = "", after: str = "") -> str:
    """[market] with both symbols plus `market` (more [market] lines), then `after` (more
    tables), then both instruments."""
    return ('\n[market]\nsymbols = ["BTCUSDT", "usdm:BTCUSDT"]\n' + market + after
            + INSTRUMENTS)
