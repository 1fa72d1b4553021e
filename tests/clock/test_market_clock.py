"""The market-data sanity rules on time, in replay (event time) and live (wall time): the
reference price's maximum age (read against the engine clock), the suspect-book timeout
and the snapshot bridge timeout (event receive times), and the exchange-vs-receive clock
skew of a trade. One test per rule, run in both modes."""
from __future__ import annotations

from daemon import config
from daemon.market.book import OrderBook
from daemon.market.events import DepthDiff, DepthSnapshot, Trade
from daemon.market.sanity import Sanity, book_guard_options
from tests.clock.conftest import Timeline

SYM = "BTCUSDT"
BIDS = [(61830.0, 1.0), (61829.0, 2.0), (61828.0, 3.0)]
ASKS = [(61832.0, 1.0), (61833.0, 2.0), (61834.0, 3.0)]
MS = 1_000_000


def _cfg(**sanity: str):
    return config.load(None, environ={"BOT4__MARKET__SOURCE": "replay",
                                      **{f"BOT4__SANITY__{k.upper()}": v
                                         for k, v in sanity.items()}})


def _guarded(tl: Timeline, **sanity: str) -> tuple[Sanity, OrderBook]:
    cfg = _cfg(**sanity)
    book = OrderBook(SYM, False, **book_guard_options(cfg.sanity))
    return Sanity(cfg, {SYM: book}), book


def _diff(tl: Timeline, s: float, U: int, u: int, bids=(), asks=()) -> DepthDiff:
    return DepthDiff(SYM, tl.at(s), U, u, None, list(bids), list(asks))


def _sync(tl: Timeline, book: OrderBook, s: float = 0.0) -> None:
    """Diff 99..100, snapshot 100, bridging diff 101: valid and confirmed at `s`."""
    book.on_diff(_diff(tl, s, 99, 100))
    book.on_snapshot(DepthSnapshot(SYM, tl.at(s), 100, list(BIDS), list(ASKS)))
    book.on_diff(_diff(tl, s, 101, 101, bids=[(61830.0, 1.5)]))
    assert book.valid, book.invalid_reason


def test_the_reference_price_ages_on_the_engine_clock(tl):
    sanity, book = _guarded(tl, reference_max_age_s="10")
    guard = sanity.guards[SYM]
    _sync(tl, book, 0)
    assert guard.reference(tl.at(10)) == 61831.0          # exactly max age: still good
    assert guard.reference(tl.at(10.001)) is None, "a confirmed mid older than 10 s"
    ts = tl.at(20)
    assert guard.trade(Trade(SYM, ts, ts // MS, 1, 61831.5, 0.1, False))
    assert guard.reference(tl.at(30)) == 61831.5           # the trades' median, 10 s old
    assert guard.reference(tl.at(30.001)) is None


def test_a_suspect_book_times_out_on_event_time(tl):
    sanity, book = _guarded(tl, suspect_timeout_s="2")
    _sync(tl, book, 0)
    book.on_diff(_diff(tl, 1, 102, 102, asks=[(p, 0.0) for p, _ in ASKS]))   # ask side gone
    assert not book.valid and "ask side empty" in book.suspect_reason
    book.on_diff(_diff(tl, 3, 103, 103, bids=[(61829.5, 1.0)]))            # 2 s: not yet
    assert book.synced and book.stats["suspect_timeouts"] == 0
    book.on_diff(_diff(tl, 3.001, 104, 104, bids=[(61829.4, 1.0)]))
    assert not book.synced and book.stats["suspect_timeouts"] == 1


def test_a_snapshot_ahead_of_the_diffs_is_dropped_after_the_bridge_timeout(tl):
    sanity, book = _guarded(tl, bridge_timeout_s="2")
    book.on_snapshot(DepthSnapshot(SYM, tl.at(0), 10**15, list(BIDS), list(ASKS)))
    book.on_diff(_diff(tl, 0.1, 101, 105))
    book.on_diff(_diff(tl, 2, 106, 110))                  # 2 s after it: not yet
    assert book.synced and book.stats["snapshot_ahead"] == 0
    book.on_diff(_diff(tl, 2.001, 111, 115))
    assert not book.synced and book.stats["snapshot_ahead"] == 1


def test_clock_skew_compares_a_trades_exchange_time_with_its_receive_time(tl):
    sanity, book = _guarded(tl, max_clock_skew_s="5")
    guard = sanity.guards[SYM]
    _sync(tl, book, 0)
    ts = tl.at(10)
    assert guard.trade(Trade(SYM, ts, ts // MS - 5_000, 1, 61831.0, 0.1, False))   # 5 s
    ts = tl.at(11)
    assert not guard.trade(Trade(SYM, ts, ts // MS - 5_001, 2, 61831.0, 0.1, False))
    assert sanity.rejects["time_skew"] == 1
