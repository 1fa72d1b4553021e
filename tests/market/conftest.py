"""Fixtures for market-data tests: where the shared Binance captures live.

The captures are read in place from ``../shared/data`` next to the repository (or
``$BOT4_DATA_DIR``); they are never copied into the repository. Tests that need them skip,
with the path in the reason, only when that folder is absent.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


def shared_data_dir() -> Path:
    return Path(os.environ.get("BOT4_DATA_DIR") or REPO_ROOT.parent / "shared" / "data")


@pytest.fixture(scope="session")
def data_dir() -> Path:
    d = shared_data_dir()
    if not d.is_dir():
        pytest.skip(f"shared market data folder {d} not found (set BOT4_DATA_DIR to it)")
    return d


@pytest.fixture(scope="session")
def binance_dir(data_dir: Path) -> Path:
    # The folder exists, so a missing file below is a real failure, not a skip.
    return data_dir / "binance"
