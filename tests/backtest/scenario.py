"""Hand-made backtest journals for the report tests, written with the real Journal.

Orders and fills are journalled through the Journal's public methods in the same sequence
the gateway uses (daemon/execution/gateway.py): record_order at submit (PENDING_NEW, stamped
with the engine clock), record_order on each venue report (NEW, REJECTED, CANCELLED),
record_orders for a cancel request (PENDING_CANCEL), and record_fill with the order's new
state and the position after Position.apply.
"""
from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from daemon.backtest.report import EquitySample
from daemon.execution.orders import (Fill, Liquidity, Order, OrderStatus, OrderType, Position,
                                     Side, TimeInForce)
from daemon.store.journal import Journal

S = 1_000_000_000   # ns per second
D = Decimal


class Recorder:
    def __init__(self, path: Path) -> None:
        self.journal = Journal(path)
        self.journal.begin_run()
        self.orders: dict[str, Order] = {}
        self.positions: dict[str, Position] = {}
        self._fill_seq = 0

    def submit(self, cid: str, symbol: str, side: Side, qty: str, price: str | None, t: int, *,
               type: OrderType = OrderType.LIMIT, tif: TimeInForce = TimeInForce.GTC) -> Order:
        o = Order(client_id=cid, symbol=symbol, side=side, type=type, qty=D(qty),
                  price=None if price is None else D(price), tif=tif, created_ns=t,
                  updated_ns=t)
        self.orders[cid] = o
        self.journal.record_order(o, o.created_ns)
        return o

    def report(self, cid: str, status: OrderStatus, t: int, reason: str | None = None) -> None:
        o = self.orders[cid]
        o.status, o.updated_ns = status, t
        if reason:
            o.reason = reason
        self.journal.record_order(o, t)

    def cancel_request(self, cid: str, t: int, reason: str = "requested") -> None:
        o = self.orders[cid]
        o.status, o.reason, o.updated_ns = OrderStatus.PENDING_CANCEL, reason, t
        self.journal.record_orders([o], t)

    def fill(self, cid: str, price: str, qty: str, fee: str, liq: Liquidity, t: int) -> Fill:
        o = self.orders[cid]
        self._fill_seq += 1
        f = Fill(f"f{self._fill_seq}", cid, o.symbol, o.side, D(price), D(qty), D(fee), liq, t)
        prev = o.filled_qty
        o.filled_qty = prev + f.qty
        o.avg_price = ((o.avg_price or D(0)) * prev + f.price * f.qty) / o.filled_qty
        if o.filled_qty >= o.qty:
            o.status = OrderStatus.FILLED
        elif o.status is not OrderStatus.PENDING_CANCEL:
            o.status = OrderStatus.PARTIALLY_FILLED
        o.updated_ns = t
        pos = self.positions.setdefault(o.symbol, Position(o.symbol))
        pos.apply(f)
        self.journal.record_fill(f, o, pos)
        return f

    def close(self) -> None:
        self.journal.close()


def main_scenario(path: Path, *, close: bool = True) -> Recorder:
    """Two symbols. Fees are 1 bp of notional, worked out by hand.

    BTCUSDT
      A buy 0.010 @ 60000 post-only: sent 1 s, accepted 1.5 s, maker fill 4 s (fee 0.06)
      B sell 0.010 @ 60100: sent 5 s, accepted 5.2 s, maker fill 0.004 at 7 s (fee 0.02404),
        cancel requested 8 s, cancelled 8.1 s                  realised +0.4
      C sell 0.006 market IOC: sent 9 s, accepted 9.0005 s, taker fill @ 59900 at 9.001 s
        (fee 0.03594)                                          realised -0.6, flat
      D buy 0.005 @ 59000 post-only: sent 10 s, rejected 10.001 s (post-only would take)
      E buy 0.002 @ 59800: sent 11 s, accepted 11.1 s, maker fill 13 s (fee 0.01196): long
      F buy 0.001 @ 59000: sent 11.5 s, accepted 11.6 s, cancel 12 s, cancelled 12.1 s
    ETHUSDT
      G sell 1.0 market: sent 14 s, accepted 14.0005 s, taker @ 3000 at 14.001 s (fee 0.3)
      H buy 1.5 market: sent 15 s, accepted 15.0005 s, taker @ 2990 at 15.001 s
        (fee 0.4485): closes 1.0 (realised +10), flips long 0.5 @ 2990
    """
    r = Recorder(path)
    btc, eth = "BTCUSDT", "ETHUSDT"
    r.submit("A", btc, Side.BUY, "0.010", "60000", 1 * S, tif=TimeInForce.POST_ONLY)
    r.report("A", OrderStatus.NEW, 1_500_000_000)
    r.fill("A", "60000", "0.010", "0.06", Liquidity.MAKER, 4 * S)
    r.submit("B", btc, Side.SELL, "0.010", "60100", 5 * S)
    r.report("B", OrderStatus.NEW, 5_200_000_000)
    r.fill("B", "60100", "0.004", "0.02404", Liquidity.MAKER, 7 * S)
    r.cancel_request("B", 8 * S)
    r.report("B", OrderStatus.CANCELLED, 8_100_000_000)
    r.submit("C", btc, Side.SELL, "0.006", None, 9 * S, type=OrderType.MARKET,
             tif=TimeInForce.IOC)
    r.report("C", OrderStatus.NEW, 9_000_500_000)
    r.fill("C", "59900", "0.006", "0.03594", Liquidity.TAKER, 9_001_000_000)
    r.submit("D", btc, Side.BUY, "0.005", "59000", 10 * S, tif=TimeInForce.POST_ONLY)
    r.report("D", OrderStatus.REJECTED, 10_001_000_000, "post-only order would take liquidity")
    r.submit("E", btc, Side.BUY, "0.002", "59800", 11 * S)
    r.report("E", OrderStatus.NEW, 11_100_000_000)
    r.submit("F", btc, Side.BUY, "0.001", "59000", 11_500_000_000)
    r.report("F", OrderStatus.NEW, 11_600_000_000)
    r.cancel_request("F", 12 * S)
    r.report("F", OrderStatus.CANCELLED, 12_100_000_000)
    r.fill("E", "59800", "0.002", "0.01196", Liquidity.MAKER, 13 * S)
    r.submit("G", eth, Side.SELL, "1.0", None, 14 * S, type=OrderType.MARKET,
             tif=TimeInForce.IOC)
    r.report("G", OrderStatus.NEW, 14_000_500_000)
    r.fill("G", "3000", "1.0", "0.3", Liquidity.TAKER, 14_001_000_000)
    r.submit("H", eth, Side.BUY, "1.5", None, 15 * S, type=OrderType.MARKET,
             tif=TimeInForce.IOC)
    r.report("H", OrderStatus.NEW, 15_000_500_000)
    r.fill("H", "2990", "1.5", "0.4485", Liquidity.TAKER, 15_001_000_000)
    if close:
        r.close()
    return r


MAIN_EQUITY = ["0", "0.5", "-0.3", "-0.1", "0.2", "-0.23194", "11.51956"]
MAIN_INTERVAL_S = 2.5


def main_samples() -> list[EquitySample]:
    """One sample every 2.5 s from 0 to 15 s; the last marks are BTC 59850, ETH 2995."""
    out = []
    for k, eq in enumerate(MAIN_EQUITY):
        last = k == len(MAIN_EQUITY) - 1
        out.append(EquitySample(
            ts_ns=k * 2_500_000_000, equity=D(eq),
            positions={"BTCUSDT": D("0.002") if last else D(0),
                       "ETHUSDT": D("0.5") if last else D(0)},
            marks={"BTCUSDT": D("59850") if last else D("60000"),
                   "ETHUSDT": D("2995") if last else None}))
    return out


def flat_samples(n: int, equity: str = "0", marks: dict | None = None) -> list[EquitySample]:
    return [EquitySample(k * S, D(equity), {}, dict(marks or {})) for k in range(n)]
