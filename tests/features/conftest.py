"""Shared helpers for the feature tests: where the shared captures live (as tests/market),
and a small replay that feeds decoder -> book -> FeatureEngine."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.market.conftest import shared_data_dir


@pytest.fixture(scope="session")
def binance_dir() -> Path:
    d = shared_data_dir()
    if not d.is_dir():
        pytest.skip(f"shared market data folder {d} not found (set BOT4_DATA_DIR to it)")
    return d / "binance"
