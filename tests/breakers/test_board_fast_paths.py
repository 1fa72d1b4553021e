"""The board's per-event fast paths (a known venue or (venue, symbol) skips the venue
check) still refuse what the checked path refused: an unknown venue or the global breaker's
name, before and after a real venue has used the fast path."""
from __future__ import annotations

import pytest

from daemon.config import BreakersCfg
from daemon.safety.breakers import GLOBAL, BreakerBoard

S = 1_000_000_000
V = "paper"


@pytest.mark.parametrize("bad", ["kraken", GLOBAL])
def test_an_unknown_venue_is_refused_on_every_market_feed_path(bad):
    b = BreakerBoard(BreakersCfg(), [V])
    for warm in (False, True):
        if warm:   # the known venue and symbol go through the fast paths first
            b.on_book("BTCUSDT", V, 100.0, 1.0, 100.1, 1.0, 1 * S)
            b.on_trade("BTCUSDT", V, 100.0, 0.5, 1 * S)
            b.book_state("BTCUSDT", V, False, 1 * S)
        with pytest.raises(KeyError, match=f"unknown venue {bad!r}"):   # (names it)
            b.on_book("BTCUSDT", bad, 100.0, 1.0, 100.1, 1.0, 2 * S)
        with pytest.raises(KeyError, match=f"unknown venue {bad!r}"):   # (names it)
            b.on_trade("BTCUSDT", bad, 100.0, 0.5, 2 * S)
        with pytest.raises(KeyError, match=f"unknown venue {bad!r}"):   # (names it)
            b.book_state("BTCUSDT", bad, False, 2 * S)
    assert set(b.symbols) == {(V, "BTCUSDT")}


def test_a_known_venue_through_the_fast_path_still_feeds_the_stale_book_rule():
    b = BreakerBoard(BreakersCfg(book_invalid_s=5), [V])
    b.book_state("BTCUSDT", V, False, 0)
    b.tick(5 * S)
    assert b.breakers[V].state.value == "closed"        # 5 s: not beyond the limit
    b.tick(5 * S + 1)
    assert b.breakers[V].state.value == "open"
