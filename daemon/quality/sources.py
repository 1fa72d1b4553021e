"""Cross-source reconciliation (layer 3): within one venue, the order book's mid (rebuilt
from depth diffs), the bookTicker's mid and the median of the last trades; across venues,
spot against USD-M futures of the same asset.

Consensus rule (one venue, checked once per sample, not per event):
  - a source takes part while it is fresh: updated within `stale_s`;
  - the consensus is the median of the fresh estimates (three: the odd one out is the
    culprit; two: their mean, and a disagreement cannot be attributed: "no majority");
  - a source disagrees when it is further than `max_bps` from the consensus; the trade
    median is allowed half the quoted spread on top (trades print at the bid or the ask);
  - the book and the bookTicker must keep updating: one silent for `stale_s` while another
    source (trades included) updated within `stale_s` is stale (a frozen feed). Trades may
    be silent in a quiet market: they are never stale, only absent.
Across venues: basis = futures consensus / spot consensus - 1 (bps). Its normal level is
an exponentially weighted average (half-life `halflife_s`, frozen while diverging, 10
samples of warm-up); |basis - average| > `cross_bps` is a divergence. A problem is a
fault only when it has lasted `hold_s` (the monitor keeps that clock).

Event updates are O(1); nothing reads a clock; nothing raises on bad input (non-finite or
non-positive prices are skipped).
"""
from __future__ import annotations

import math


def _ok(x: float) -> bool:
    return x > 0 and x < math.inf


class VenuePrices:
    """The latest of each source. Writers on the hot path only store references and
    times (`book`/`book_ns`, `bid`/`ask`/`quote_ns`); mids and the spread are worked out
    in `check`, once per sample."""

    __slots__ = ("book", "book_ns", "bid", "ask", "quote_ns", "half_spread_bps",
                 "trades", "trade_pos", "trade_n", "trade_ns")

    def __init__(self, k: int) -> None:
        self.book = None          # anything with .valid and .mid() (an OrderBook)
        self.book_ns = self.quote_ns = self.trade_ns = 0
        self.bid = self.ask = 0.0
        self.half_spread_bps = 0.0
        self.trades = [0.0] * k   # a ring of the last k trade prices
        self.trade_pos = 0
        self.trade_n = 0

    def on_book(self, book: object, ts_ns: int) -> None:
        self.book, self.book_ns = book, ts_ns

    def on_quote(self, bid: float, ask: float, ts_ns: int) -> None:
        if _ok(bid) and _ok(ask) and ask >= bid:
            self.bid, self.ask, self.quote_ns = bid, ask, ts_ns

    def book_mid(self) -> float | None:
        b = self.book
        if b is None or not b.valid:
            return None
        m = b.mid()
        return m if m is not None and _ok(m) else None

    def quote_mid(self) -> float | None:
        if not self.quote_ns:
            return None
        m = (self.bid + self.ask) * 0.5
        self.half_spread_bps = (self.ask - self.bid) / m * 0.5e4
        return m

    def on_trade(self, price: float, ts_ns: int) -> None:
        if not _ok(price):
            return
        p = self.trade_pos
        self.trades[p] = price
        self.trade_pos = p + 1 if p + 1 < len(self.trades) else 0
        if self.trade_n < len(self.trades):
            self.trade_n += 1
        self.trade_ns = ts_ns

    def trade_median(self) -> float | None:
        if self.trade_n == 0:
            return None
        s = sorted(self.trades[:self.trade_n])
        n = len(s)
        return s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) * 0.5

    def check(self, now_ns: int, stale_ns: int, max_bps: float
              ) -> tuple[float | None, list[tuple[str, str, float]]]:
        """(consensus or None, problems [(kind, source, figure)]): kind "stale" (figure:
        seconds silent), "disagree" (bps from consensus) or "no_majority" (bps apart)."""
        problems: list[tuple[str, str, float]] = []
        fresh: list[tuple[str, float]] = []
        newest = max(self.book_ns, self.quote_ns, self.trade_ns)
        for name, ts, val in (("book", self.book_ns, self.book_mid()),
                              ("bookTicker", self.quote_ns, self.quote_mid())):
            if ts and now_ns - ts <= stale_ns:
                if val is not None:
                    fresh.append((name, val))
            elif ts and now_ns - newest <= stale_ns:
                problems.append(("stale", name, round((now_ns - ts) / 1e9, 3)))
        if self.trade_ns and now_ns - self.trade_ns <= stale_ns:
            tm = self.trade_median()
            if tm is not None:
                fresh.append(("trades", tm))
        if not fresh:
            return None, problems
        vals = sorted(v for _, v in fresh)
        n = len(vals)
        consensus = vals[n // 2] if n % 2 else (vals[n // 2 - 1] + vals[n // 2]) * 0.5
        if n == 2:
            a, b = fresh[0][1], fresh[1][1]
            apart = abs(a - b) / consensus * 1e4
            allow = max_bps + (self.half_spread_bps if fresh[1][0] == "trades" else 0.0)
            if apart > allow:
                problems.append(("no_majority", f"{fresh[0][0]}/{fresh[1][0]}", round(apart, 3)))
        elif n == 3:
            for name, v in fresh:
                dev = abs(v - consensus) / consensus * 1e4
                allow = max_bps + (self.half_spread_bps if name == "trades" else 0.0)
                if dev > allow:
                    problems.append(("disagree", name, round(dev, 3)))
        return consensus, problems


class CrossVenue:
    """Spot vs futures basis against its own exponentially weighted average."""

    __slots__ = ("cross_bps", "alpha", "avg", "n", "last_basis", "divergences")

    def __init__(self, cross_bps: float, halflife_s: float, sample_s: float) -> None:
        self.cross_bps = cross_bps
        self.alpha = 1.0 - 0.5 ** (sample_s / halflife_s)
        self.avg = 0.0
        self.n = 0
        self.last_basis: float | None = None
        self.divergences = 0

    def sample(self, spot: float, fut: float) -> float | None:
        """One pair of consensus prices; the basis's distance from its average (bps) when
        that is a divergence, else None."""
        if not (_ok(spot) and _ok(fut)):
            return None
        basis = (fut / spot - 1.0) * 1e4
        self.last_basis = basis
        if self.n < 10:
            self.n += 1
            self.avg += (basis - self.avg) / self.n
            return None
        off = basis - self.avg
        if abs(off) > self.cross_bps:
            self.divergences += 1
            return off          # the average is not moved by a divergent basis
        self.avg += self.alpha * off
        return None
