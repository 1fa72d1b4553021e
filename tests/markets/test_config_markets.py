"""Config for several markets: `[market] exchange` spot | usdm | coinm, instrument ids in
`symbols` and `[instruments."<id>"]`, kind/contract_size, COIN-M defaults; every problem
is a ConfigError naming the file, the key and what is wrong."""
from __future__ import annotations

from decimal import Decimal as D
from pathlib import Path

import pytest

from daemon import config

BTC_SPOT = '[instruments.BTCUSDT]\ntick_size = "0.01"\nlot_size = "0.00001"\n'
BTC_USDM = '[instruments."usdm:BTCUSDT"]\ntick_size = "0.1"\nlot_size = "0.00001"\n'
PERP = ('[instruments.{id}]\ntick_size = "0.1"\nlot_size = "1"\nmin_notional = "0"\n'
        'kind = "inverse"\ncontract_size = "100"\n')


def load(tmp_path: Path, body: str, environ: dict[str, str] | None = None) -> config.Config:
    f = tmp_path / "bot4.toml"
    f.write_text(body)
    return config.load(f, environ=environ or {})


def refused(tmp_path: Path, body: str, *words: str) -> str:
    with pytest.raises(config.ConfigError) as e:
        load(tmp_path, body)
    msg = str(e.value)
    assert str(tmp_path / "bot4.toml") in msg
    for w in words:
        assert w in msg, msg
    return msg


# -- good ------------------------------------------------------------------------------------
def test_spot_and_usdm_of_one_asset_on_one_engine(tmp_path: Path) -> None:
    cfg = load(tmp_path, '[market]\nexchange = "spot"\nsymbols = ["BTCUSDT", "usdm:BTCUSDT"]\n'
               + BTC_SPOT + BTC_USDM)
    assert cfg.market.symbols == ["BTCUSDT", "usdm:BTCUSDT"]
    assert cfg.instruments["usdm:BTCUSDT"].tick_size == D("0.1")
    assert cfg.instruments["usdm:BTCUSDT"].kind == "linear"
    assert cfg.instruments["BTCUSDT"].contract_size == 1


def test_usdm_exchange_names_spot_with_a_prefix(tmp_path: Path) -> None:
    cfg = load(tmp_path, '[market]\nexchange = "usdm"\nsymbols = ["BTCUSDT", "spot:BTCUSDT"]\n'
               + BTC_SPOT + BTC_SPOT.replace("BTCUSDT", '"spot:BTCUSDT"'))
    assert cfg.market.exchange == "usdm" and set(cfg.instruments) == {"BTCUSDT",
                                                                       "spot:BTCUSDT"}


def test_env_override_reaches_a_prefixed_instrument(tmp_path: Path) -> None:
    cfg = load(tmp_path, '[market]\nsymbols = ["BTCUSDT", "usdm:BTCUSDT"]\n' + BTC_SPOT
               + BTC_USDM, environ={"BOT4__INSTRUMENTS__USDM:BTCUSDT__TICK_SIZE": "0.5"})
    assert cfg.instruments["usdm:BTCUSDT"].tick_size == D("0.5")
    assert set(cfg.instruments) == {"BTCUSDT", "usdm:BTCUSDT"}


# -- bad -------------------------------------------------------------------------------------
def test_inverse_on_spot_is_refused(tmp_path: Path) -> None:
    refused(tmp_path, '[market]\nsymbols = ["BTCUSDT"]\n' + BTC_SPOT
            + 'kind = "inverse"\ncontract_size = "100"\n',
            "[instruments.BTCUSDT] kind", "only for COIN-M")


def test_inverse_on_usdm_prefix_is_refused(tmp_path: Path) -> None:
    refused(tmp_path, '[market]\nsymbols = ["BTCUSDT", "usdm:BTCUSDT"]\n' + BTC_SPOT
            + PERP.format(id='"usdm:BTCUSDT"'), 'line 10: [instruments."usdm:BTCUSDT"] kind',
            "usdm instrument", "only for COIN-M")


def test_linear_coinm_instrument_is_refused(tmp_path: Path) -> None:
    refused(tmp_path, '[market]\nexchange = "coinm"\nsymbols = ["BTCUSD_PERP"]\n'
            '[instruments.BTCUSD_PERP]\ntick_size = "0.1"\nlot_size = "1"\nmin_notional = "0"\n',
            "[instruments.BTCUSD_PERP] kind", "needs kind = \"inverse\"")


def test_contract_size_on_a_linear_instrument_is_refused(tmp_path: Path) -> None:
    refused(tmp_path, '[market]\nsymbols = ["BTCUSDT"]\n' + BTC_SPOT + 'contract_size = "100"\n',
            "instruments", "BTCUSDT", "contract_size = 100 needs kind = \"inverse\"")


@pytest.mark.parametrize("body, words", [
    ('[market]\nsymbols = ["binance:BTCUSDT"]\n',
     ["[market] symbols", "unknown market prefix 'binance'"]),
    ('[market]\nsymbols = ["BTCUSDT"]\n' + BTC_SPOT + BTC_SPOT.replace("BTCUSDT",
                                                                       '"futures:BTCUSDT"'),
     ["futures:BTCUSDT", "unknown market prefix 'futures'"]),
    ('[market]\nexchange = "inverse"\n', ["[market] exchange", "coinm"]),
])
def test_unknown_market_is_refused(tmp_path: Path, body: str, words: list[str]) -> None:
    refused(tmp_path, body, *words)


@pytest.mark.parametrize("symbols, words", [
    ('["usdm:BTCUSDT", "usdm:BTCUSDT"]', ["[market] symbols", "usdm:BTCUSDT is listed twice"]),
    ('["BTCUSDT", "BTCUSDT"]', ["[market] symbols", "BTCUSDT is listed twice"]),
    # One instrument, two names: the default market's prefix is refused.
    ('["BTCUSDT", "spot:BTCUSDT"]', ["[market] symbols", "spot is the [market] exchange"]),
])
def test_duplicate_ids_are_refused(tmp_path: Path, symbols: str, words: list[str]) -> None:
    refused(tmp_path, f'[market]\nsymbols = {symbols}\n' + BTC_SPOT + BTC_USDM, *words)


def test_default_market_prefix_in_an_instrument_table_is_refused(tmp_path: Path) -> None:
    refused(tmp_path, '[market]\nsymbols = ["BTCUSDT"]\n' + BTC_SPOT
            + BTC_SPOT.replace("BTCUSDT", '"spot:BTCUSDT"'),
            "spot:BTCUSDT", "spot is the [market] exchange", "named BTCUSDT")


def test_prefixed_symbol_without_its_table_names_the_quoted_table(tmp_path: Path) -> None:
    refused(tmp_path, '[market]\nsymbols = ["BTCUSDT", "usdm:BTCUSDT"]\n' + BTC_SPOT,
            "[market] symbols", 'usdm:BTCUSDT has no [instruments."usdm:BTCUSDT"] table')


def test_lower_case_symbol_after_a_prefix_is_refused(tmp_path: Path) -> None:
    refused(tmp_path, '[market]\nsymbols = ["usdm:btcusdt"]\n', "[market] symbols",
            "upper case")
