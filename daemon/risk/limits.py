"""Pre-trade risk limits, checked by the gateway after the safety checks.

Pure checks on Decimal values: order notional, resulting position, open-order count, order
rate and a price band around the mark (fat-finger guard; a limit order without a trusted
mark is refused). Returns the reason a limit is broken, or None. It never sends, cancels or journals anything.
"""
from __future__ import annotations

from collections import deque
from decimal import Decimal
from typing import Iterable

from daemon.config import RiskCfg
from daemon.execution.orders import Order, OrderType, Side


class RiskLimits:
    def __init__(self, cfg: RiskCfg) -> None:
        self.cfg = cfg
        self._sent_ns: deque[int] = deque()

    def check(self, order: Order, position_qty: Decimal, open_orders: Iterable[Order],
              mark: Decimal | None, now_ns: int) -> str | None:
        cfg = self.cfg
        price = order.price if order.price is not None else mark
        if price is None:
            return "no mark price for a market order"
        notional = price * order.qty
        if notional > cfg.max_order_notional:
            return f"order notional {notional:f} above max_order_notional {cfg.max_order_notional}"
        same_side = Decimal(0)
        n_open = 0
        for o in open_orders:
            n_open += 1
            if o.symbol == order.symbol and o.side is order.side:
                same_side += o.remaining
        if n_open >= cfg.max_open_orders:
            return f"{n_open} open orders, max_open_orders is {cfg.max_open_orders}"
        # Worst case: every open order on this side fills, then this one.
        worst = position_qty + order.side.sign * (same_side + order.qty)
        if abs(worst) > cfg.max_position and abs(worst) > abs(position_qty):
            return (f"position could reach {worst:f} {order.symbol}, "
                    f"max_position is {cfg.max_position}")
        if order.type is OrderType.LIMIT:
            if mark is None or mark <= 0:
                # The mark is None while the book is not trusted (gap, suspect diff, no
                # confirmed reference): without it the band cannot be checked, so no order.
                return "no trusted reference price for the price band"
            band = mark * Decimal(str(cfg.price_band_bps)) / Decimal(10_000)
            if (order.side is Side.BUY and price > mark + band) or \
               (order.side is Side.SELL and price < mark - band):
                return f"limit price {price} outside the {cfg.price_band_bps} bps band around {mark}"
        window = 60_000_000_000
        while self._sent_ns and now_ns - self._sent_ns[0] > window:
            self._sent_ns.popleft()
        if len(self._sent_ns) >= cfg.max_orders_per_min:
            return f"order rate above max_orders_per_min {cfg.max_orders_per_min}"
        return None

    def note_sent(self, now_ns: int) -> None:
        self._sent_ns.append(now_ns)
