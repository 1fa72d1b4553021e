"""A COIN-M capture through the lower layers: the shared USD-M BTCUSDT recording turned
into a BTCUSD_PERP one (as tests/test_data_torture.py's `coinm()` does, and quantities
made whole contracts: x1000, which keeps every zero a zero), decoded, booked with the
futures rules, and traded on the paper venue with an inverse instrument. Every fill is in
whole contracts with a coin fee, and the position's PnL in coin equals the independent
figure contract_size x (sum of bought q/p - sum of sold q/p) for a round trip."""
from __future__ import annotations

import gzip
from decimal import Decimal as D
from fractions import Fraction

import orjson
import pytest

from daemon.execution.orders import (INVERSE, Instrument, Liquidity, Order, OrderType, Side,
                                     TimeInForce)
from daemon.execution.paper import PaperVenue
from daemon.market.book import OrderBook
from daemon.market.decode import Decoder
from daemon.market.events import DepthDiff, DepthSnapshot, Quote, Trade
from tests.test_paper_venue import DATA_DIR, Recorder

USDM = DATA_DIR / "binance" / "usdm_btcusdt_20240808.gz"
SYM = "BTCUSD_PERP"
INV = Instrument(SYM, D("0.1"), D("1"), D("0"), INVERSE, D("100"))
MS = 1_000_000
LINES = 30_000


def _contracts(q: str) -> str:
    return format((D(q) * 1000).normalize(), "f")


def _levels(levels: list[list[str]]) -> list[list[str]]:
    return [[p, _contracts(q)] for p, q in levels]


def coinm_line(raw: bytes) -> bytes:
    """One USD-M message as COIN-M BTCUSD_PERP would send it (quantities in contracts)."""
    obj = orjson.loads(raw)
    data = obj.get("data", obj)
    if "stream" in obj:
        obj["stream"] = obj["stream"].replace("btcusdt@", "btcusd_perp@")
    if data.get("s") == "BTCUSDT":
        data["s"] = SYM
    for k in ("b", "a", "bids", "asks"):
        if isinstance(data.get(k), list):
            data[k] = _levels(data[k])
    for k in ("q", "B", "A"):
        if isinstance(data.get(k), str):
            data[k] = _contracts(data[k])
    return orjson.dumps(obj)


@pytest.fixture(scope="module")
def coinm_events() -> list:
    if not USDM.is_file():
        pytest.skip(f"capture data not found at {USDM} (set BOT4_DATA_DIR)")
    dec = Decoder(default_symbol=SYM)
    out = []
    with gzip.open(USDM, "rb") as f:
        for i, line in enumerate(f):
            if i >= LINES:
                break
            ts, _, raw = line.rstrip(b"\n").partition(b" ")
            ev = dec.decode(int(ts), coinm_line(raw))
            if ev is not None and type(ev) is not Quote:
                out.append(ev)
    return out


def test_fixture_is_a_coinm_capture(coinm_events: list) -> None:
    assert {ev.symbol for ev in coinm_events} == {SYM}
    trades = [ev for ev in coinm_events if type(ev) is Trade]
    diffs = [ev for ev in coinm_events if type(ev) is DepthDiff]
    assert len(trades) > 500 and len(diffs) > 500
    assert all(ev.prev_last_id is not None for ev in diffs), "futures diffs carry pu"
    assert all(float(q).is_integer() for ev in diffs for _, q in ev.bids + ev.asks)
    assert all(float(t.qty).is_integer() and t.qty >= 1 for t in trades)


def test_inverse_orders_fill_in_contracts_with_coin_fees_on_a_coinm_replay(
        coinm_events: list) -> None:
    rec = Recorder()
    venue = PaperVenue(maker_fee_bps=1.0, taker_fee_bps=5.0, entry_latency_ns=20 * MS,
                       md_latency_ns=5 * MS, instruments={SYM: INV})
    venue.bind(rec)
    book = OrderBook(SYM, True)
    pos = INV.new_position()
    rec.on_fill_hook = pos.apply
    orders: dict[str, Order] = {}
    # Round trips of market orders every 3 s (+5, -5, -5, +5 ...) and a post-only bid and
    # ask at the touch, replaced every 3 s, so both taker and maker fills happen.
    plan = [Side.BUY, Side.SELL, Side.SELL, Side.BUY]
    n = 0
    next_act = 0
    live: list[str] = []

    def send(side: Side, qty: str, price: D | None) -> None:
        nonlocal n
        n += 1
        o = Order(f"c{n}", SYM, side, OrderType.MARKET if price is None else OrderType.LIMIT,
                  D(qty), price, TimeInForce.IOC if price is None else TimeInForce.POST_ONLY)
        orders[o.client_id] = o
        venue.submit(o)
        if price is not None:
            live.append(o.client_id)

    for ev in coinm_events:
        ts = ev.ts_ns
        venue.advance(ts)
        if type(ev) is Trade:
            venue.on_trade(ev)
        else:
            if type(ev) is DepthDiff:
                book.on_diff(ev)
            else:
                assert type(ev) is DepthSnapshot
                book.on_snapshot(ev)
            venue.on_depth(book, ts)
        if book.valid and ts >= next_act:
            next_act = ts + 3_000 * MS
            for cid in live:
                venue.cancel(cid)
            live.clear()
            send(plan[n % 4], "5", None)
            bb, ba = book.best_bid(), book.best_ask()
            send(Side.BUY, "2", INV.round_price(D(repr(bb[0])), Side.BUY))
            send(Side.SELL, "2", INV.round_price(D(repr(ba[0])), Side.SELL))
    # Close what is left with one market order on the final book, and let it take effect.
    for cid in live:
        venue.cancel(cid)
    if pos.qty:
        send(Side.SELL if pos.qty > 0 else Side.BUY, str(abs(pos.qty)), None)
    venue.advance(coinm_events[-1].ts_ns + 1_000 * MS)
    fills = rec.fills()
    assert pos.qty == 0, "flat at the end"
    maker = [f for f in fills if f.liquidity is Liquidity.MAKER]
    taker = [f for f in fills if f.liquidity is Liquidity.TAKER]
    assert len(maker) >= 5 and len(taker) >= 10
    bps = {Liquidity.MAKER: D(1), Liquidity.TAKER: D(5)}
    for f in fills:
        assert f.qty == f.qty.to_integral_value() and f.qty >= 1, f
        # Coin fee: bps of qty x 100 / price BTC, to 1e-8 (a linear fee would be ~600x).
        want = (f.qty * 100 / f.price * bps[f.liquidity] / 10_000).quantize(D("1e-8"))
        assert f.fee == want, f
        assert f.fee < D("0.001")
    assert pos.fees == sum((f.fee for f in fills), D(0))
    # Independent figure: flat again, PnL = cs x (sum bought q/p - sum sold q/p), in coin.
    exact = 100 * sum((Fraction(f.qty) / Fraction(f.price) * f.side.sign for f in fills),
                      Fraction(0))
    assert abs(Fraction(pos.realized_pnl) - exact) < Fraction(1, 10**18)
    assert pos.realized_pnl != 0
    # In USD at the last price it is a few dollars either way, not thousands.
    last = D(repr(book.best_bid()[0]))
    assert abs(pos.pnl_quote(last)) < D("500")
