"""Instrument ids (daemon/market/instruments.py): plain symbols on the [market] exchange,
"<market>:<SYMBOL>" on another market, and the market of a capture file by its name."""
from __future__ import annotations

import pytest

from daemon.market.instruments import (MARKETS, captures_by_market, make_id, market_of_capture,
                                       parse_id, prefix_of)


@pytest.mark.parametrize("iid, default, want", [
    ("BTCUSDT", "spot", ("spot", "BTCUSDT")),
    ("BTCUSDT", "usdm", ("usdm", "BTCUSDT")),
    ("usdm:BTCUSDT", "spot", ("usdm", "BTCUSDT")),
    ("spot:BTCUSDT", "usdm", ("spot", "BTCUSDT")),
    ("coinm:BTCUSD_PERP", "spot", ("coinm", "BTCUSD_PERP")),
    ("BTCUSD_PERP", "coinm", ("coinm", "BTCUSD_PERP")),
    ("usdm:ETHUSDT", "coinm", ("usdm", "ETHUSDT")),
])
def test_parse_id(iid: str, default: str, want: tuple[str, str]) -> None:
    assert parse_id(iid, default) == want


@pytest.mark.parametrize("iid, default, words", [
    ("binance:BTCUSDT", "spot", ["unknown market prefix", "binance"]),
    ("USDM:BTCUSDT", "spot", ["unknown market prefix", "USDM"]),
    ("spot:BTCUSDT", "spot", ["is the [market] exchange", "BTCUSDT"]),
    ("coinm:BTCUSD_PERP", "coinm", ["is the [market] exchange"]),
    ("usdm:btcusdt", "spot", ["not an exchange symbol", "upper case"]),
    ("usdm:", "spot", ["not an exchange symbol"]),
    ("usdm:coinm:BTCUSDT", "spot", ["unknown market prefix", "usdm:coinm"]),
    ("BTC USDT", "spot", ["not an exchange symbol"]),
])
def test_parse_id_refuses_and_names_the_problem(iid: str, default: str, words: list[str]
                                                ) -> None:
    with pytest.raises(ValueError) as e:
        parse_id(iid, default)
    for w in words:
        assert w in str(e.value)


def test_unknown_default_market_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown market 'futures'"):
        parse_id("BTCUSDT", "futures")
    with pytest.raises(ValueError, match="unknown market"):
        make_id("inverse", "BTCUSDT", "spot")


def test_make_id_is_the_inverse_of_parse_id() -> None:
    for default in MARKETS:
        for market in MARKETS:
            for sym in ("BTCUSDT", "BTCUSD_PERP", "ETHUSDT"):
                iid = make_id(market, sym, default)
                assert parse_id(iid, default) == (market, sym)
                assert iid == prefix_of(market, default) + sym
                assert (":" in iid) == (market != default)
    assert make_id("usdm", "BTCUSDT", "spot") == "usdm:BTCUSDT"
    assert make_id("spot", "BTCUSDT", "spot") == "BTCUSDT"
    with pytest.raises(ValueError, match="not an exchange symbol"):
        make_id("usdm", "btcusdt", "spot")


@pytest.mark.parametrize("path, want", [
    ("/work/shared/data/binance/spot_btcusdt_20240808.gz", "spot"),
    ("usdm_btcusdt_20240808.gz", "usdm"),
    ("var/rec/coinm_btcusd_perp_20240808.gz", "coinm"),
    ("/x/USDM_BTCUSDT_20240808.gz", "usdm"),
    ("/x/btcusdt_20240808.gz", None),
    ("/x/futures_btcusdt.gz", None),
    ("/spot_dir/btcusdt.gz", None),          # the directory does not count, only the name
    ("/x/spotbtc.gz", None),
])
def test_market_of_capture(path: str, want: str | None) -> None:
    assert market_of_capture(path) == want


def test_captures_by_market_groups_files_for_merge_records() -> None:
    paths = ["/d/spot_btcusdt_20240808.gz", "/d/usdm_btcusdt_20240808.gz",
             "/d/spot_btcusdt_20240809.gz", "/d/rec_20240808.gz",
             "/d/coinm_btcusd_perp_20240808.gz"]
    assert captures_by_market(paths, "spot") == [
        ("", ["/d/spot_btcusdt_20240808.gz", "/d/spot_btcusdt_20240809.gz",
              "/d/rec_20240808.gz"]),
        ("usdm:", ["/d/usdm_btcusdt_20240808.gz"]),
        ("coinm:", ["/d/coinm_btcusd_perp_20240808.gz"])]
    # With usdm as the exchange, its files carry no prefix and spot's do.
    assert captures_by_market(paths[:2], "usdm") == [
        ("spot:", ["/d/spot_btcusdt_20240808.gz"]), ("", ["/d/usdm_btcusdt_20240808.gz"])]
    assert captures_by_market([], "spot") == []
