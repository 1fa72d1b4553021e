"""The market-data sanity stage and book trust: issue 7, defects 1-6, each on the real
MarketFeed (decoder → sanity → book) or the real reader/venue."""
from __future__ import annotations

import gzip
import math
from decimal import Decimal
from pathlib import Path

import orjson
import pytest

from daemon import config
from daemon.execution.orders import Order, OrderStatus, OrderType, Side, TimeInForce
from daemon.execution.paper import PaperVenue
from daemon.market import capture as capture_mod
from daemon.market.book import OrderBook
from daemon.market.capture import CaptureReader
from daemon.market.events import DepthDiff, DepthSnapshot, Quote, Trade
from daemon.market.feed import MarketFeed as MarketRuntime
from daemon.market.sanity import trade_values_problem

S = "BTCUSDT"
T0 = 1_723_161_253_000_000_000
MS = 1_000_000
BIDS = [(61830.0, 1.0), (61829.0, 2.0), (61828.0, 3.0)]
ASKS = [(61832.0, 1.0), (61833.0, 2.0), (61834.0, 3.0)]


def runtime(**env: str) -> MarketRuntime:
    cfg = config.load(None, environ={"BOT4__MARKET__SOURCE": "replay", **env})
    return MarketRuntime(cfg)


def diff(U: int, u: int, bids=(), asks=(), t: int = 0) -> DepthDiff:
    return DepthDiff(S, T0 + t, U, u, None, list(bids), list(asks))


def synced(rt: MarketRuntime) -> OrderBook:
    """Diff 99..100 first (so the snapshot can be credited), snapshot 100, diff 101."""
    rt.handle(diff(99, 100))
    rt.handle(DepthSnapshot(S, T0 + MS, 100, list(BIDS), list(ASKS)))
    rt.handle(diff(101, 101, bids=[(61830.0, 1.5)], t=2 * MS))
    book = rt.books[S]
    assert book.valid, book.invalid_reason
    return book


def rejects(rt: MarketRuntime) -> dict[str, int]:
    return rt.status()["sanity"]["rejects"]


# -- defect 1: a diff that wipes a side / jumps the price is not traded on --------------------

def test_wiped_bids_make_the_book_suspect_and_unmarked() -> None:
    rt = runtime()
    book = synced(rt)
    assert rt.mark(S) is not None
    wipe = [(p, 0.0) for p, _ in BIDS] + [(1.0, 1.0)]          # every bid gone, one at 1.00
    rt.handle(diff(102, 102, bids=wipe, t=3 * MS))
    assert not book.valid and book.suspect_reason and "bps" in book.suspect_reason
    assert rt.mark(S) is None                                  # no reference for the band
    st = rt.status()["books"][S]
    assert st["valid"] is False and st["reason"].startswith("suspect:")
    assert st["trust"] == {"suspect": 1}
    # The exchange's own top of book contradicts it: the book is thrown away (resync).
    rt.handle(Quote(S, T0 + 4 * MS, 102, 61830.0, 1.5, 61832.0, 1.0))
    assert not book.valid and not book.synced
    assert book.stats["contradicted"] == 1 and "contradicted" in book.invalid_reason


def test_a_real_jump_is_confirmed_by_the_bookticker() -> None:
    rt = runtime()
    book = synced(rt)
    # The whole book moves 3 % in one diff (beyond book_jump_bps=100).
    rt.handle(diff(102, 102, bids=[(p, 0.0) for p, _ in BIDS] + [(60000.0, 1.0)],
                     asks=[(p, 0.0) for p, _ in ASKS] + [(60001.0, 2.0)], t=3 * MS))
    assert not book.valid and book.suspect_reason
    rt.handle(Quote(S, T0 + 4 * MS, 102, 60000.0, 1.0, 60001.0, 2.0))   # agrees
    assert book.valid and book.stats["confirmed"] == 1
    assert rt.mark(S) == Decimal("60000.5")


def test_an_empty_side_is_suspect_and_times_out_without_confirmation() -> None:
    rt = runtime(BOT4__SANITY__SUSPECT_TIMEOUT_S="1")
    book = synced(rt)
    rt.handle(diff(102, 102, asks=[(p, 0.0) for p, _ in ASKS], t=3 * MS))
    assert not book.valid and "ask side empty" in book.suspect_reason
    rt.handle(diff(103, 103, bids=[(61829.5, 1.0)], t=3 * MS + 2_000 * MS))
    assert not book.synced and book.stats["suspect_timeouts"] == 1


def test_mark_is_not_moved_by_a_bad_diff_inside_the_band() -> None:
    rt = runtime()
    book = synced(rt)
    rt.handle(Quote(S, T0 + 3 * MS, 101, 61830.0, 1.5, 61832.0, 1.0))   # confirmed
    before = rt.mark(S)
    assert before == Decimal("61831")
    # 0.8 % lower bids in one diff: inside the 1 % band, so not suspect; the mark stays.
    rt.handle(diff(102, 102, bids=[(61340.0, 5.0)] + [(p, 0.0) for p, _ in BIDS],
                     t=4 * MS))
    assert book.valid and book.mid() != 61831.0
    assert rt.mark(S) == before


# -- defect 2: NaN and friends never reach the book -----------------------------------------

@pytest.mark.parametrize("bad,reason", [(math.nan, "price_not_finite"),
                                        (math.inf, "price_not_finite"),
                                        (0.0, "price_not_positive"),
                                        (-61832.0, "price_not_positive"),
                                        (1e300, "price_out_of_bounds")])
def test_bad_prices_are_rejected_counted_and_never_in_the_book(bad: float, reason: str) -> None:
    rt = runtime()
    book = synced(rt)
    rt.handle(diff(102, 102, asks=[(bad, 1.0)], t=3 * MS))
    rt.handle(diff(103, 103, asks=[(61833.0, 0.0)], t=4 * MS))   # must not raise
    assert rejects(rt) == {reason: 1}
    assert all(math.isfinite(p) and 0 < p < 1e9 for p in [*book.bids, *book.asks])
    assert rt.status()["sanity"]["last"][S].startswith(reason)


@pytest.mark.parametrize("qty,reason", [(math.nan, "qty_not_finite"),
                                        (-1.0, "qty_not_positive"),
                                        (1e300, "qty_out_of_bounds")])
def test_bad_quantities_are_rejected(qty: float, reason: str) -> None:
    rt = runtime()
    book = synced(rt)
    rt.handle(diff(102, 102, bids=[(61830.5, qty)], t=3 * MS))
    assert rejects(rt) == {reason: 1} and 61830.5 not in book.bids


# -- defect 3: an absurd snapshot id does not freeze a "valid" book -------------------------

def test_snapshot_far_ahead_of_the_diffs_is_rejected() -> None:
    rt = runtime()
    rt.handle(diff(99, 100))
    rt.handle(DepthSnapshot(S, T0 + MS, 10**15, list(BIDS), list(ASKS)))
    rt.handle(diff(101, 101, bids=[(61830.0, 1.5)], t=2 * MS))
    assert not rt.books[S].valid
    assert rejects(rt) == {"snapshot_inconsistent": 1}


def test_snapshot_ahead_with_no_diffs_before_it_is_caught_by_the_book() -> None:
    book = OrderBook(S, False, jump_bps=100.0, require_bridge=True,
                     bridge_timeout_ns=2_000 * MS)
    book.on_snapshot(DepthSnapshot(S, T0, 10**15, list(BIDS), list(ASKS)))
    assert not book.valid            # not continued by a diff of its own yet
    book.on_diff(diff(101, 105, t=100 * MS))
    assert not book.valid and book.synced
    book.on_diff(diff(106, 110, t=2_500 * MS))   # 2.5 s later, still older than 10^15
    assert not book.synced and book.stats["snapshot_ahead"] == 1
    assert "ahead of the diff stream" in book.invalid_reason


# -- defect 4: a trade printed at 0 fills nothing --------------------------------------------

class _Listener:
    def __init__(self) -> None:
        self.fills: list = []

    def on_order_status(self, client_id: str, status: OrderStatus, reason: str | None,
                        ts_ns: int) -> None:
        pass

    def on_fill(self, fill) -> None:
        self.fills.append(fill)


@pytest.mark.parametrize("price", [0.0, -1.0, math.nan, math.inf])
def test_paper_venue_never_fills_on_a_bad_print(price: float) -> None:
    venue = PaperVenue(entry_latency_ns=1000, md_latency_ns=0)
    rec = _Listener()
    venue.bind(rec)
    book = OrderBook(S, False)
    book.on_snapshot(DepthSnapshot(S, 0, 100, list(BIDS), list(ASKS)))
    venue.on_depth(book, 0)
    venue.submit(Order("b1", S, Side.BUY, OrderType.LIMIT, Decimal("0.001"),
                       Decimal("61831"), TimeInForce.POST_ONLY))
    venue.advance(10_000)
    assert venue.open_orders() == ["b1"]
    venue.on_trade(Trade(S, 20_000, 1, 7, price, 0.5, True))   # a sell "through" our bid
    assert rec.fills == [] and venue.stats["trades_rejected"] == 1
    venue.on_trade(Trade(S, 30_000, 1, 8, 61830.0, 0.5, True))  # a real one still fills
    assert len(rec.fills) == 1


def test_runtime_drops_a_trade_far_from_the_confirmed_mid() -> None:
    rt = runtime()
    synced(rt)
    rt.handle(Quote(S, T0 + 3 * MS, 101, 61830.0, 1.5, 61832.0, 1.0))
    rt.handle(Trade(S, T0 + 4 * MS, (T0 + 4 * MS) // MS, 1, 1.0, 1.0, True))
    rt.handle(Trade(S, T0 + 5 * MS, (T0 + 5 * MS) // MS, 2, 61831.0, 1.0, True))
    assert rejects(rt) == {"trade_out_of_band": 1}
    assert list(rt.sanity.guards[S].trades) == [61831.0]    # only the real one went on


def test_trade_values_problem_names_the_problem() -> None:
    assert trade_values_problem(61830.0, 0.1) is None
    assert trade_values_problem(0.0, 0.1) == "price_not_positive"
    assert trade_values_problem(math.nan, 0.1) == "price_not_finite"
    assert trade_values_problem(61830.0, -1.0) == "qty_not_positive"
    assert trade_values_problem("61830", 0.1) == "bad_field"


def test_trade_time_far_from_receive_time_is_skipped() -> None:
    rt = runtime()
    synced(rt)
    rt.handle(Trade(S, T0 + 4 * MS, (T0 + 4 * MS) // MS + 3_600_000, 1, 61831.0, 1.0, True))
    assert rejects(rt) == {"time_skew": 1}


# -- defect 5: implausible receive times are counted, never slept on -------------------------

def write(tmp: Path, lines: list[tuple[int, bytes]]) -> Path:
    p = tmp / "c.gz"
    p.write_bytes(gzip.compress(b"".join(b"%d %b\n" % ln for ln in lines)))
    return p


@pytest.mark.parametrize("bad_ns", [T0 + 3600 * 10**9, 10**22, T0 - 3600 * 10**9])
def test_reader_never_sleeps_on_an_implausible_time(tmp_path: Path, bad_ns: int,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    lines = [(T0 + i * 10 * MS, b'{"i":%d}' % i) for i in range(20)]
    lines[10] = (bad_ns, b'{"i":10}')
    p = write(tmp_path, lines)
    slept: list[float] = []
    monkeypatch.setattr(capture_mod.time, "sleep", lambda s: slept.append(s))
    reader = CaptureReader(p, speed=1.0)
    got = list(reader)
    assert max(slept, default=0.0) < 1.0, f"asked to sleep {max(slept):.0f} s"
    assert [raw for _, raw in got] == [raw for _, raw in lines]   # every message kept
    assert got[10][0] == got[9][0]                               # with its neighbour's time
    assert [ns for ns, _ in got] == sorted(ns for ns, _ in got)
    key = "ts_absurd" if bad_ns == 10**22 else "ts_jump"
    assert reader.stats[key] == 1


def test_a_real_jump_in_receive_time_is_accepted_after_confirmation(tmp_path: Path) -> None:
    later = T0 + 1800 * 10**9          # an outage of 30 minutes in a live recording
    lines = [(T0 + i * MS, b"{}") for i in range(5)] + [(later + i * MS, b"{}")
                                                        for i in range(5)]
    reader = CaptureReader(write(tmp_path, lines))
    assert list(reader) == lines
    assert reader.stats["ts_rebase"] == 1 and reader.stats["ts_jump"] == 0


def test_not_gzip_and_corrupt_files_are_named_in_problems(tmp_path: Path) -> None:
    junk = tmp_path / "junk.gz"
    junk.write_bytes(b"1723161253937085768 {}\n")
    reader = CaptureReader(junk)
    assert list(reader) == [] and reader.stats["corrupt_gzip"] == 1
    assert "not a gzip file" in reader.problems[0]


# -- defect 6: another symbol's or market's capture is never credited ------------------------

def spot_eth_lines(binance_dir: Path, n: int = 800) -> list[tuple[int, bytes]]:
    out = []
    with gzip.open(binance_dir / "spot_ethusdt_20240808.gz", "rb") as f:
        for i, line in enumerate(f):
            if i >= n:
                break
            ns, _, raw = line.rstrip(b"\n").partition(b" ")
            out.append((int(ns), raw))
    return out


def test_other_symbols_capture_is_counted_and_never_valid(binance_dir: Path) -> None:
    rt = runtime()                                  # BTCUSDT configured
    rt.feed(spot_eth_lines(binance_dir))
    book = rt.books[S]
    assert not book.valid and book.bids == {} and book.asks == {}
    st = rt.status()
    assert st["sanity"]["unconfigured"]["ETHUSDT"] > 500
    assert st["sanity"]["snapshots_waiting_for_diffs"] == [S]
    assert "no depth updates for BTCUSDT" in st["books"][S]["reason"]
    assert rt.mark(S) is None


def test_futures_diffs_never_build_a_spot_book(binance_dir: Path) -> None:
    rt = runtime()                                  # spot BTCUSDT
    lines = []
    with gzip.open(binance_dir / "usdm_btcusdt_20240808.gz", "rb") as f:
        for i, line in enumerate(f):
            if i >= 800:
                break
            ns, _, raw = line.rstrip(b"\n").partition(b" ")
            lines.append((int(ns), raw))
    rt.feed(lines)
    assert not rt.books[S].valid
    assert rejects(rt)["wrong_market"] > 10


def test_snapshot_held_until_its_symbol_diff_then_credited() -> None:
    rt = runtime()
    rt.handle(DepthSnapshot(S, T0, 100, list(BIDS), list(ASKS)))
    assert not rt.books[S].synced                   # held: nothing to check it against
    rt.handle(diff(101, 101, bids=[(61830.0, 1.5)], t=MS))
    assert rt.books[S].valid and rt.sanity.stats["snapshots_released"] == 1


def test_update_id_jump_is_skipped_but_a_continued_jump_is_accepted() -> None:
    rt = runtime()
    book = synced(rt)
    rt.handle(diff(10**15, 10**15 + 5, bids=[(61830.0, 9.0)], t=3 * MS))
    assert rejects(rt) == {"update_id_jump": 1} and book.valid
    assert book.qty_at(True, 61830.0) == 1.5
    # Later ids from a real jump (reconnect): the next diff continues the candidate.
    rt.handle(diff(5 * 10**9, 5 * 10**9 + 3, t=4 * MS))
    rt.handle(diff(5 * 10**9 + 4, 5 * 10**9 + 9, t=5 * MS))
    assert rt.sanity.stats["update_id_rebases"] == 1
    assert not book.synced and book.stats["gaps"] == 1   # the book resyncs after a jump


def test_sanity_config_is_checked() -> None:
    with pytest.raises(config.ConfigError, match="book_jump_bps"):
        config.load(None, environ={"BOT4__SANITY__BOOK_JUMP_BPS": "0"})
    with pytest.raises(config.ConfigError, match="max_price_ticks"):
        config.load(None, environ={"BOT4__SANITY__MAX_PRICE_TICKS": "nan"})


def test_decoded_shared_capture_passes_untouched(binance_dir: Path) -> None:
    """The real capture: no rejection, the book trusted at the end, 100 % agreement."""
    rt = runtime()
    reader = CaptureReader([binance_dir / "spot_btcusdt_20240808.gz"])
    rt.feed(reader)
    st = rt.status()
    assert st["sanity"]["rejects"] == {} and st["books"][S]["valid"]
    assert st["books"][S]["quotes_disagree"] == 0 and st["books"][S]["trust"] == {}
    assert rt.mark(S) is not None
    assert orjson.dumps(st)                         # status stays JSON-serialisable


# -- live: a suspect book asks for a fresh REST snapshot, which replaces it -----------------

class _LiveStub:
    """Stands in for BinanceLiveFeed: records snapshot requests (no network)."""

    connected = True

    def __init__(self) -> None:
        self.requests: list[str] = []

    def request_snapshot(self, symbol: str) -> bool:
        self.requests.append(symbol)
        return True


def test_live_suspect_book_requests_a_snapshot_and_a_fresh_one_confirms_it() -> None:
    rt = runtime()
    book = synced(rt)
    live = rt._live = _LiveStub()
    rt.handle(diff(102, 102, asks=[(p, 0.0) for p, _ in ASKS], t=3 * MS))   # empties asks
    assert not book.valid and live.requests == [S]
    rt.handle(DepthSnapshot(S, T0 + 4 * MS, 105, list(BIDS), list(ASKS)))   # the answer
    assert book.synced and not book.valid          # waits for a diff to continue it
    rt.handle(diff(104, 106, bids=[(61830.0, 2.0)], t=5 * MS))
    assert book.valid and book.suspect_reason is None and rt.mark(S) is not None
