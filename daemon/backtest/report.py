"""The backtest report (report.json): the figures a trader reads after a backtest.

Built from two inputs only: the backtest's SQLite journal (orders, their status history,
fills), opened read-only, and the equity samples the runner took at engine (event) time.
Every figure is a function of those two plus the caller's `meta`, so two runs on the same
input give byte-identical report.json except for `generated_at`, the wall-clock time the
report was made (WALL_CLOCK_FIELDS).

It must never write to the journal, never read what the journal stamps with the wall clock
(audit rows, positions.updated_ns), and never emit NaN or infinity: a figure the input
does not define is null, and the report says when that happens.

Money is Decimal, written as plain decimal strings (no exponent), in the quote currency;
ratios and statistics are JSON numbers rounded to SIG_DIGITS significant digits; times are
integer ns since the epoch in engine time. Each symbol's PnL is in its settlement currency
the way Position.apply computes it (quote for linear, coin for inverse contracts, given the
instruments); the totals are in the quote currency (an inverse symbol's coin amounts
converted at its last mark), every quote currency (USDT, USD) counted as one.
"""
from __future__ import annotations

import dataclasses
import enum
import logging
import math
import os
import sqlite3
import urllib.parse
from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import Decimal, localcontext
from pathlib import Path
from typing import Mapping

import orjson

from daemon.execution.orders import (INVERSE, Fill, Instrument, Liquidity, Order, OrderStatus,
                                     OrderType, Position, Side, TimeInForce, to_decimal)
from daemon.store import migrations

log = logging.getLogger(__name__)

REPORT_VERSION = 1
SIG_DIGITS = 6                       # every float in the report
SECONDS_PER_YEAR = 365 * 24 * 3600   # crypto trades every day of the year
WALL_CLOCK_FIELDS = ("generated_at",)   # the only top-level keys that differ between runs
_NS = Decimal(1_000_000_000)


@dataclass(frozen=True)
class EquitySample:
    """The book's value at one instant of engine time, taken by the runner."""

    ts_ns: int                      # engine (event) time
    equity: Decimal                 # realised + unrealised - fees, quote currency, since start
    positions: dict[str, Decimal]   # instrument -> signed qty
    marks: dict[str, Decimal | None]


class ReportError(Exception):
    """The journal cannot be read as a bot4 journal, or the samples cannot be used."""


# -- number formatting ---------------------------------------------------------------------
def _money(d: Decimal) -> str:
    """A Decimal as a plain decimal string: no exponent, no negative zero, no trailing
    zeros after the point (a division leaves 28 digits: "0.0117896200000000000")."""
    if d.is_zero():
        return "0"
    text = format(d, "f")   # exact: strip text, never round through a context
    return text.rstrip("0").rstrip(".") if "." in text else text


def _opt_money(d: Decimal | None) -> str | None:
    return None if d is None else _money(d)


def _sig(x: Decimal | int | None) -> float | None:
    """Round to SIG_DIGITS significant digits; None for None, NaN or infinity."""
    if x is None:
        return None
    d = Decimal(x)
    if not d.is_finite():
        return None
    if d.is_zero():
        return 0.0
    return float(f"{d:.{SIG_DIGITS - 1}e}")


def _ratio(num: Decimal | int, den: Decimal | int) -> float | None:
    return None if den == 0 else _sig(Decimal(num) / Decimal(den))


# -- reading the journal -------------------------------------------------------------------
_ORDER_SQL = ("SELECT client_id, symbol, side, type, tif, price, qty, reduce_only, venue, "
              "status, filled_qty, avg_price, reason, created_ns, updated_ns FROM orders "
              "ORDER BY rowid")
_FILL_SQL = ("SELECT fill_id, client_id, symbol, side, price, qty, fee, liquidity, ts_ns "
             "FROM fills ORDER BY rowid")
_EVENT_SQL = "SELECT client_id, ts_ns, status, reason FROM order_events ORDER BY id"


@dataclass
class _Journalled:
    orders: list[Order]                    # in the order they were first journalled
    fills: list[Fill]                      # journal order (the order they were applied in)
    events: dict[str, list[tuple[int, OrderStatus]]]   # client id -> status history
    schema: int


def _dec(x: str | None) -> Decimal | None:
    return None if x is None else Decimal(x)


def read_journal(path: Path) -> _Journalled:
    """Orders, fills and order status histories of a journal, in one read-only snapshot
    (the runner may still hold the journal open for writing)."""
    path = Path(path)
    if not path.is_file():
        raise ReportError(f"{path}: no journal there")
    # Percent-encoded, so a '#', '?' or '%' in the path cannot end the file name (and drop
    # mode=ro with it).
    uri = f"file:{urllib.parse.quote(str(path))}?mode=ro"
    try:
        db = sqlite3.connect(uri, uri=True, isolation_level=None)
    except sqlite3.Error as e:
        raise ReportError(f"{path}: {e}") from e
    try:
        db.execute("BEGIN")   # one read transaction: one consistent snapshot
        schema = migrations.read_version(db)
        if schema is None:
            raise ReportError(f"{path}: not a bot4 journal (no meta table)")
        migrations.check_supported(schema)
        orders = [Order(client_id=r[0], symbol=r[1], side=Side(r[2]), type=OrderType(r[3]),
                        tif=TimeInForce(r[4]), price=_dec(r[5]), qty=Decimal(r[6]),
                        reduce_only=bool(r[7]), venue=r[8], status=OrderStatus(r[9]),
                        filled_qty=Decimal(r[10]), avg_price=_dec(r[11]), reason=r[12],
                        created_ns=r[13], updated_ns=r[14])
                  for r in db.execute(_ORDER_SQL)]
        fills = [Fill(fill_id=r[0], client_id=r[1], symbol=r[2], side=Side(r[3]),
                      price=Decimal(r[4]), qty=Decimal(r[5]), fee=Decimal(r[6]),
                      liquidity=Liquidity(r[7]), ts_ns=r[8])
                 for r in db.execute(_FILL_SQL)]
        events: dict[str, list[tuple[int, OrderStatus]]] = {}
        for cid, ts, status, _reason in db.execute(_EVENT_SQL):
            events.setdefault(cid, []).append((ts, OrderStatus(status)))
        db.execute("ROLLBACK")
    except (sqlite3.Error, migrations.SchemaError, ValueError) as e:
        raise ReportError(f"{path}: cannot read the journal: {e}") from e
    finally:
        db.close()
    return _Journalled(orders, fills, events, schema)


# -- PnL, hit rate, round trips (one pass over the fills) ----------------------------------
@dataclass
class _SymbolPnl:
    position: Position
    turnover: Decimal = Decimal(0)
    fills: int = 0
    closing: list[Decimal] = field(default_factory=list)   # realised PnL of each closing fill
    trip_net: Decimal | None = None                        # the open round trip's net so far
    trips: list[Decimal] = field(default_factory=list)     # net PnL of each closed round trip


def _replay_fills(fills: list[Fill], instruments: Mapping[str, Instrument]
                  ) -> dict[str, _SymbolPnl]:
    """Apply every fill in journal order through Position.apply (as the gateway did and as
    Journal.positions_from_fills does), each symbol settling like its instrument (linear
    when not given), and note what each fill closed."""
    out: dict[str, _SymbolPnl] = {}
    for f in fills:
        s = out.get(f.symbol)
        if s is None:
            inst = instruments.get(f.symbol)
            s = out[f.symbol] = _SymbolPnl(Position(f.symbol) if inst is None
                                           else inst.new_position())
        pos = s.position
        before_qty, before_real = pos.qty, pos.realized_pnl
        signed = f.qty * f.side.sign
        reduces = before_qty != 0 and (before_qty > 0) != (signed > 0)
        closed = min(abs(signed), abs(before_qty)) if reduces else Decimal(0)
        pos.apply(f)
        inst = instruments.get(f.symbol)
        s.turnover += f.price * f.qty if inst is None else inst.notional_quote(f.price, f.qty)
        s.fills += 1
        realised = pos.realized_pnl - before_real
        if not reduces:                      # opens or adds: the trip pays the fee
            s.trip_net = (s.trip_net or Decimal(0)) - f.fee
            continue
        s.closing.append(realised)
        closing_fee = f.fee if closed == f.qty else f.fee * closed / f.qty
        s.trip_net = (s.trip_net or Decimal(0)) + realised - closing_fee
        if pos.qty == 0 or (pos.qty > 0) != (before_qty > 0):   # flat, or flipped
            s.trips.append(s.trip_net)
            s.trip_net = None if pos.qty == 0 else -(f.fee - closing_fee)
    return out


def _last_mark(samples: list[EquitySample], symbol: str) -> tuple[Decimal | None, int | None]:
    for s in reversed(samples):
        m = s.marks.get(symbol)
        if m is not None:
            return m, s.ts_ns
    return None, None


def _add(total: Decimal | None, x: Decimal | None) -> Decimal | None:
    return None if total is None or x is None else total + x


def _pnl(per: dict[str, _SymbolPnl], samples: list[EquitySample]) -> tuple[dict, dict]:
    by_symbol: dict[str, dict] = {}
    turnover = Decimal(0)
    realised: Decimal | None = Decimal(0)
    fees: Decimal | None = Decimal(0)
    unrealised: Decimal | None = Decimal(0)
    for sym in sorted(per):
        s = per[sym]
        pos = s.position
        inverse = pos.kind == INVERSE
        mark, mark_ts = _last_mark(samples, sym)
        if pos.qty == 0:
            u: Decimal | None = Decimal(0)
        elif mark is None:
            u = None   # a position with no mark: its value is unknown, and so is the total
        else:
            u = pos.unrealized(mark)
        # Settlement currency -> quote: 1 for linear; the last mark for inverse (coin).
        rate = (mark if inverse else Decimal(1))
        by_symbol[sym] = {
            "kind": pos.kind, "contract_size": _money(pos.contract_size),
            "settlement": "coin" if inverse else "quote",
            "position": _money(pos.qty), "avg_entry": _money(pos.avg_price),
            "mark": _opt_money(mark), "mark_ts_ns": mark_ts,
            "realised": _money(pos.realized_pnl), "unrealised": _opt_money(u),
            "fees": _money(pos.fees), "turnover": _money(s.turnover), "fills": s.fills,
            "total_net": _opt_money(None if u is None
                                    else pos.realized_pnl + u - pos.fees),
            "total_net_quote": _opt_money(None if u is None or rate is None
                                          else (pos.realized_pnl + u - pos.fees) * rate),
        }
        realised = _add(realised, None if rate is None else pos.realized_pnl * rate)
        fees = _add(fees, None if rate is None else pos.fees * rate)
        unrealised = _add(unrealised, None if u is None or rate is None else u * rate)
        turnover += s.turnover
    total = None if realised is None or unrealised is None or fees is None \
        else realised + unrealised - fees
    pnl = {
        "realised": _opt_money(realised),
        "unrealised": _opt_money(unrealised),
        "fees": _opt_money(fees),
        "total_net": _opt_money(total),
        "turnover": _money(turnover),
        "definition": ("realised: linear (exit - average entry) x closed qty, inverse closed "
                       "contracts x contract_size x (1/entry - 1/exit), before fees, fills "
                       "applied in journal order (Position.apply); unrealised: the same at "
                       "the last mark seen in the equity samples; fees: sum of fill fees "
                       "(negative = rebate); total_net = realised + unrealised - fees; "
                       "turnover: sum of fill notional (price x qty, inverse: contracts x "
                       "contract_size). by_symbol figures are in the symbol's settlement "
                       "currency (coin for inverse) except turnover and total_net_quote; "
                       "these totals are in the quote currency, inverse amounts converted "
                       "at the symbol's last mark; null when a figure needs a mark the "
                       "samples never gave"),
    }
    return pnl, by_symbol


def _hit_rate(per: dict[str, _SymbolPnl]) -> dict:
    closing = [x for sym in sorted(per) for x in per[sym].closing]
    trips = [x for sym in sorted(per) for x in per[sym].trips]
    wins = sum(1 for x in closing if x > 0)
    trip_wins = sum(1 for x in trips if x > 0)
    return {
        "value": _ratio(wins, len(closing)),
        "definition": ("closing fills (fills that reduce an open position) with positive "
                       "realised PnL (exit price vs average entry, before fees), over all "
                       "closing fills; null when no fill closed anything"),
        "closing_fills": len(closing),
        "wins": wins,
        "losses": sum(1 for x in closing if x < 0),
        "scratches": sum(1 for x in closing if x == 0),
        "round_trips": {
            "value": _ratio(trip_wins, len(trips)),
            "definition": ("round trips flat to flat per symbol (a fill that flips the "
                           "position closes one trip and opens the next; its fee is split "
                           "pro rata by quantity); a trip's net PnL is its realised PnL "
                           "minus every fee paid in it; value = trips with net > 0 over "
                           "closed trips; a trip still open at the end is not counted"),
            "closed": len(trips),
            "wins": trip_wins,
            "losses": sum(1 for x in trips if x < 0),
            "scratches": sum(1 for x in trips if x == 0),
            "open": sum(1 for sym in per if per[sym].trip_net is not None),
        },
    }


# -- equity: drawdown, Sharpe, Sortino -----------------------------------------------------
def _drawdown(samples: list[EquitySample], capital: Decimal | None) -> dict:
    out: dict = {"absolute": None, "pct": None, "peak_equity": None, "peak_ts_ns": None,
                 "trough_ts_ns": None,
                 "pct_basis": ("max drawdown / (capital + equity at its peak) x 100"
                               if capital is not None else
                               "max drawdown / equity at its peak x 100 (equity is PnL since "
                               "the start, no capital given; null when that peak is <= 0)"),
                 "definition": "largest fall of sample equity from its running peak"}
    if not samples:
        return out
    peak, peak_ts = samples[0].equity, samples[0].ts_ns
    worst, worst_peak, worst_peak_ts, worst_ts = Decimal(0), peak, peak_ts, samples[0].ts_ns
    for s in samples:
        if s.equity > peak:
            peak, peak_ts = s.equity, s.ts_ns
        dd = peak - s.equity
        if dd > worst:
            worst, worst_peak, worst_peak_ts, worst_ts = dd, peak, peak_ts, s.ts_ns
    base = worst_peak + capital if capital is not None else worst_peak
    if worst == 0:
        pct = 0.0          # no drawdown is 0% of any peak
    else:
        pct = _sig(worst / base * 100) if base > 0 else None
    out.update(absolute=_money(worst), pct=pct, peak_equity=_money(worst_peak),
               peak_ts_ns=worst_peak_ts, trough_ts_ns=worst_ts)
    return out


MAX_GRID = 5_000_000   # grid points; a finer sampling of a long run is refused


def _on_grid(samples: list[EquitySample], interval_ns: int) -> list[Decimal]:
    """Equity every `interval_ns` of engine time from the first sample to the last: at each
    grid point the newest sample at or before it (a quiet market leaves equity where it
    was). So the changes are exactly `interval_ns` apart however the runner sampled."""
    if not samples:
        return []
    t0 = samples[0].ts_ns
    points = (samples[-1].ts_ns - t0) // interval_ns + 1
    if points > MAX_GRID:
        raise ReportError(f"sample_interval_s is too small for the run: {points} grid points "
                          f"(at most {MAX_GRID})")
    out: list[Decimal] = []
    i, n = 0, len(samples)
    for k in range(points):
        g = t0 + k * interval_ns
        while i + 1 < n and samples[i + 1].ts_ns <= g:
            i += 1
        out.append(samples[i].equity)
    return out


def _risk_adjusted(samples: list[EquitySample], interval_s: Decimal) -> dict:
    periods = Decimal(SECONDS_PER_YEAR) / interval_s
    interval_ns = max(int((interval_s * _NS).to_integral_value()), 1)
    grid = _on_grid(samples, interval_ns)
    out: dict = {
        "sharpe": None, "sortino": None,
        "sample_interval_s": _sig(interval_s),
        "periods_per_year": _sig(periods),
        "annualisation_factor": None,
        "changes": max(len(grid) - 1, 0),
        "definition": ("on the changes of equity (quote currency, not percent returns: "
                       "equity is PnL, there is no capital base) between points of a grid "
                       "every sample_interval_s of engine time from the first sample to the "
                       "last (each point takes the newest sample at or before it), "
                       "risk-free rate 0, 365-day year. sharpe = mean / sample stdev (n-1) x "
                       "annualisation_factor; sortino = mean / downside deviation x "
                       "annualisation_factor, downside deviation = sqrt(sum(min(change, 0)^2) "
                       "/ n); annualisation_factor = sqrt(periods_per_year), periods_per_year "
                       "= 365 x 86400 / sample_interval_s"),
        "null_when": ("fewer than 2 changes (a run shorter than 2 sampling intervals); "
                      "sharpe: zero variance (flat equity, or equity changing by the same "
                      "amount every interval); sortino: no negative change. Never NaN or "
                      "infinity"),
    }
    with localcontext() as ctx:
        ctx.prec = 34
        factor = periods.sqrt()
        out["annualisation_factor"] = _sig(factor)
        d = [b - a for a, b in zip(grid, grid[1:])]
        n = len(d)
        if n < 2:
            return out
        mean = sum(d, Decimal(0)) / n
        var = sum(((x - mean) ** 2 for x in d), Decimal(0)) / (n - 1)
        if var > 0:
            out["sharpe"] = _sig(mean / var.sqrt() * factor)
        down = sum((x * x for x in d if x < 0), Decimal(0)) / n
        if down > 0:
            out["sortino"] = _sig(mean / down.sqrt() * factor)
    return out


def _equity_summary(samples: list[EquitySample]) -> dict:
    if not samples:
        return {"samples": 0, "first_ts_ns": None, "last_ts_ns": None, "start": None,
                "final": None, "min": None, "max": None}
    eq = [s.equity for s in samples]
    return {"samples": len(samples), "first_ts_ns": samples[0].ts_ns,
            "last_ts_ns": samples[-1].ts_ns, "start": _money(eq[0]), "final": _money(eq[-1]),
            "min": _money(min(eq)), "max": _money(max(eq))}


# -- orders: fill ratio, queue wait, counts, records --------------------------------------
def _accepted_ns(history: list[tuple[int, OrderStatus]]) -> int | None:
    """When the venue accepted the order: its first journalled NEW."""
    for ts, status in history:
        if status is OrderStatus.NEW:
            return ts
    return None


def _fill_ratio(orders: list[Order]) -> dict:
    placed: dict[str, Decimal] = {}
    filled: dict[str, Decimal] = {}
    for o in orders:
        placed[o.symbol] = placed.get(o.symbol, Decimal(0)) + o.qty
        filled[o.symbol] = filled.get(o.symbol, Decimal(0)) + o.filled_qty
    with_fill = sum(1 for o in orders if o.filled_qty > 0)
    return {
        "orders": _ratio(with_fill, len(orders)),
        "orders_placed": len(orders),
        "orders_with_fill": with_fill,
        "qty_by_symbol": {sym: {"placed": _money(placed[sym]), "filled": _money(filled[sym]),
                                "ratio": _ratio(filled[sym], placed[sym])}
                          for sym in sorted(placed)},
        "definition": ("orders placed: every order in the journal (it passed the gateway's "
                       "checks and was sent, or withdrawn before sending); orders = orders "
                       "with any fill / orders placed; qty ratio per symbol = filled qty / "
                       "placed qty (quantities of different symbols are not added up); "
                       "null when nothing was placed"),
    }


def _queue_wait(orders: list[Order], fills_of: dict[str, list[Fill]],
                events: dict[str, list[tuple[int, OrderStatus]]]) -> dict:
    waits: list[int] = []
    basis = {"venue_ack": 0, "submit": 0}
    for o in orders:
        fs = fills_of.get(o.client_id)
        if not fs or fs[0].liquidity is not Liquidity.MAKER:
            continue
        acc = _accepted_ns(events.get(o.client_id, []))
        if acc is None:
            basis["submit"] += 1
            start = o.created_ns
        else:
            basis["venue_ack"] += 1
            start = acc
        waits.append(fs[0].ts_ns - start)
    out: dict = {"orders": len(waits), "basis_counts": basis, "mean_s": None,
                 "median_s": None, "max_s": None,
                 "definition": ("orders whose first fill was a maker fill: engine time from "
                                "the venue accepting the order (its first journalled 'new'; "
                                "basis venue_ack) or, when the journal has no acceptance, "
                                "from its submission (created_ns; basis submit) to that "
                                "first fill; null when there is no such order")}
    if waits:
        w = sorted(waits)
        mid = len(w) // 2
        median = Decimal(w[mid]) if len(w) % 2 else Decimal(w[mid - 1] + w[mid]) / 2
        out.update(mean_s=_sig(Decimal(sum(w)) / len(w) / _NS), median_s=_sig(median / _NS),
                   max_s=_sig(Decimal(w[-1]) / _NS))
    return out


def _counts(orders: list[Order], fills: list[Fill],
            events: dict[str, list[tuple[int, OrderStatus]]],
            pre_trade_rejects: dict[str, int] | None) -> dict:
    by_status: dict[str, int] = {}
    rejects: dict[str, int] = {}
    for o in orders:
        by_status[o.status.value] = by_status.get(o.status.value, 0) + 1
        if o.status is OrderStatus.REJECTED:
            why = o.reason or "(no reason)"
            rejects[why] = rejects.get(why, 0) + 1
    cancel_requests = sum(1 for o in orders
                          if any(st is OrderStatus.PENDING_CANCEL
                                 for _, st in events.get(o.client_id, [])))
    return {
        "orders": len(orders),
        "fills": len(fills),
        "maker_fills": sum(1 for f in fills if f.liquidity is Liquidity.MAKER),
        "taker_fills": sum(1 for f in fills if f.liquidity is Liquidity.TAKER),
        "cancels": by_status.get(OrderStatus.CANCELLED.value, 0),
        "cancel_requests": cancel_requests,
        "rejects": sum(rejects.values()),
        "rejects_by_reason": rejects,
        "pre_trade_rejects_by_stage": (None if pre_trade_rejects is None
                                       else {str(k): int(v) for k, v
                                             in sorted(pre_trade_rejects.items())}),
        "by_status": by_status,
        "definition": ("from the journal: cancels = orders that ended cancelled, "
                       "cancel_requests = orders with a cancel journalled, rejects = orders "
                       "that ended rejected (by the venue, or withdrawn before sending) by "
                       "reason; the gateway's pre-trade refusals are never journalled: "
                       "pre_trade_rejects_by_stage is what the runner passed (null: not "
                       "given)"),
    }


def _order_record(o: Order, fills: list[Fill], accepted: int | None) -> dict:
    return {
        "client_id": o.client_id, "symbol": o.symbol, "side": o.side.value,
        "type": o.type.value, "tif": o.tif.value, "price": _opt_money(o.price),
        "qty": _money(o.qty), "filled": _money(o.filled_qty),
        "avg_price": _opt_money(o.avg_price), "status": o.status.value, "reason": o.reason,
        "reduce_only": o.reduce_only, "created_ns": o.created_ns, "updated_ns": o.updated_ns,
        "accepted_ns": accepted,
        "fills": [{"fill_id": f.fill_id, "price": _money(f.price), "qty": _money(f.qty),
                   "fee": _money(f.fee), "liquidity": f.liquidity.value, "ts_ns": f.ts_ns}
                  for f in fills],
    }


# -- meta ------------------------------------------------------------------------------------
def _jsonable(x: object) -> object:
    """The caller's meta as plain JSON values, deterministically (sets sorted); anything
    whose text could differ between runs (an object's repr) is refused."""
    if x is None or isinstance(x, (bool, int, str)):
        return x.value if isinstance(x, enum.Enum) else x
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, Decimal):
        return _money(x) if x.is_finite() else None
    if isinstance(x, enum.Enum):
        return _jsonable(x.value)
    if isinstance(x, os.PathLike):
        return os.fspath(x)
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (set, frozenset)):
        return sorted((_jsonable(v) for v in x), key=lambda v: orjson.dumps(v))
    if dataclasses.is_dataclass(x) and not isinstance(x, type):
        return _jsonable(dataclasses.asdict(x))
    if hasattr(x, "model_dump"):   # a pydantic config section
        return _jsonable(x.model_dump(mode="json"))
    raise TypeError(f"report meta: cannot write a {type(x).__name__} deterministically")


# -- the report --------------------------------------------------------------------------------
def build_report(*, journal_path: Path, samples: list[EquitySample], sample_interval_s: float,
                 meta: dict, instruments: Mapping[str, Instrument] | None = None,
                 capital: Decimal | None = None,
                 pre_trade_rejects: dict[str, int] | None = None) -> dict:
    """The report as plain JSON values (write it with write_report).

    `samples`: equity samples in engine-time order, one every `sample_interval_s` seconds
    of engine time (the sampling Sharpe and Sortino are stated at). `meta` is passed
    through under "meta" (strategy, params, files, seed, journal fsync mode, ...).
    `instruments`: how each symbol settles (a symbol not in it is linear); pass the
    engine's instruments, or an inverse contract's PnL comes out wrong.
    `capital`: optional starting capital, the base of the drawdown percentage.
    `pre_trade_rejects`: the gateway's refusals by stage (`OrderGateway.rejects_by_stage`),
    which the journal never sees."""
    interval = to_decimal(sample_interval_s)
    if not interval.is_finite() or interval <= 0:
        raise ReportError(f"sample_interval_s must be > 0, got {sample_interval_s!r}")
    for a, b in zip(samples, samples[1:]):
        if b.ts_ns < a.ts_ns:
            raise ReportError(f"equity samples out of engine-time order: {b.ts_ns} after "
                              f"{a.ts_ns}")
    if capital is not None and (not isinstance(capital, Decimal) or not capital.is_finite()):
        raise ReportError(f"capital must be a finite Decimal, got {capital!r}")
    j = read_journal(journal_path)
    instruments = dict(instruments or {})
    fills_of: dict[str, list[Fill]] = {}
    for f in j.fills:
        fills_of.setdefault(f.client_id, []).append(f)
    per = _replay_fills(j.fills, instruments)
    pnl, by_symbol = _pnl(per, samples)
    return {
        "report_version": REPORT_VERSION,
        "generated_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "conventions": {
            "money": "decimal strings in the quote currency",
            "floats": f"rounded to {SIG_DIGITS} significant digits",
            "times": "integer ns since the epoch, engine (event) time",
            "wall_clock_fields": list(WALL_CLOCK_FIELDS),
            "pnl_model": ("per symbol in its settlement currency (quote for linear, coin for "
                          "inverse); totals in the quote currency (USDT and USD counted as "
                          "one), inverse amounts converted at their last mark"),
        },
        "journal_schema": j.schema,
        "meta": _jsonable(meta),
        "pnl": pnl,
        "by_symbol": by_symbol,
        "drawdown": _drawdown(samples, capital),
        "risk_adjusted": _risk_adjusted(samples, interval),
        "equity": _equity_summary(samples),
        "hit_rate": _hit_rate(per),
        "fill_ratio": _fill_ratio(j.orders),
        "queue_wait": _queue_wait(j.orders, fills_of, j.events),
        "counts": _counts(j.orders, j.fills, j.events, pre_trade_rejects),
        "orders": [_order_record(o, fills_of.get(o.client_id, []),
                                 _accepted_ns(j.events.get(o.client_id, [])))
                   for o in j.orders],
    }


def dumps(report: dict) -> bytes:
    """The report's bytes: keys sorted, indented, one trailing newline. Strict: a value
    that is not plain JSON (a Decimal that slipped through) raises TypeError."""
    return orjson.dumps(report, option=orjson.OPT_SORT_KEYS | orjson.OPT_INDENT_2
                        | orjson.OPT_APPEND_NEWLINE)


def without_wall_clock(report: dict) -> dict:
    """The report minus its wall-clock fields: equal for two runs on the same input."""
    return {k: v for k, v in report.items() if k not in WALL_CLOCK_FIELDS}


def write_report(report: dict, path: Path) -> None:
    """Write report.json whole or not at all (temporary file, then rename)."""
    path = Path(path)
    data = dumps(report)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    log.info("report written to %s (%d bytes)", path, len(data))
