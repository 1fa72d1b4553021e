"""`MarketFeed.mark` keeps its last Decimal per symbol: the cache must follow every move of
the confirmed reference (a new confirmed mid, a book that stops being trusted, the trade
median), never serve a stale mark, and always equal the uncached conversion."""
from __future__ import annotations

from decimal import Decimal

from daemon import config
from daemon.market.events import DepthDiff, DepthSnapshot, Quote
from daemon.market.feed import MarketFeed, to_price

S = "BTCUSDT"
T0 = 1_723_161_253_000_000_000
MS = 1_000_000
BIDS = [(61830.0, 1.0), (61829.0, 2.0)]
ASKS = [(61832.0, 1.0), (61833.0, 2.0)]


def uncached(feed: MarketFeed) -> Decimal | None:
    ref = feed.sanity.guards[S].reference(feed.clock())
    return None if ref is None else to_price(round(ref, 8))


def test_mark_follows_every_reference_change_and_matches_the_uncached_value() -> None:
    feed = MarketFeed(config.load(None, environ={"BOT4__MARKET__SOURCE": "replay"}))
    feed.handle(DepthDiff(S, T0, 99, 100, None, [], []))
    feed.handle(DepthSnapshot(S, T0 + MS, 100, list(BIDS), list(ASKS)))
    feed.handle(DepthDiff(S, T0 + 2 * MS, 101, 101, None, [(61830.0, 1.5)], []))
    feed.handle(Quote(S, T0 + 3 * MS, 101, 61830.0, 1.5, 61832.0, 1.0))
    first = feed.mark(S)
    assert first == Decimal("61831") and feed.mark(S) is first   # the second call: cached
    # The exchange confirms a new top: the mark moves with it at once.
    feed.handle(DepthDiff(S, T0 + 4 * MS, 102, 102, None, [(61831.1, 1.0)], []))
    feed.handle(Quote(S, T0 + 5 * MS, 102, 61831.1, 1.0, 61832.0, 1.0))
    assert feed.mark(S) == Decimal("61831.55") == uncached(feed)
    # ... and back to the old reference: equal to it, not to the cached one before.
    feed.handle(DepthDiff(S, T0 + 6 * MS, 103, 103, None, [(61831.1, 0.0)], []))
    feed.handle(Quote(S, T0 + 7 * MS, 103, 61830.0, 1.5, 61832.0, 1.0))
    assert feed.mark(S) == first == uncached(feed)
    # A book that is no longer trusted has no mark, even though one was cached.
    wipe = [(p, 0.0) for p, _ in BIDS] + [(1.0, 1.0)]
    feed.handle(DepthDiff(S, T0 + 8 * MS, 104, 104, None, wipe, []))
    assert not feed.books[S].valid
    assert feed.mark(S) is None and uncached(feed) is None
    assert feed.mark("ETHUSDT") is None
