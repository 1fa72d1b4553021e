"""report.png: a backtest's equity, position and price with its fills marked.

Panels, sharing one engine-time axis (UTC): equity (quote currency, PnL since the start),
position per symbol, then one price panel per symbol (its marks from the equity samples,
buys as green up-triangles and sells as red down-triangles at their fill price), so a
one-symbol backtest gets the three panels equity / position / price. A long series is drawn
from the lowest and highest sample of each of BUCKETS time buckets (every fill is drawn).

matplotlib lives in the optional `report` extra and is imported only inside write_png, so
the Pi need not carry it; without it write_png raises PlotUnavailable naming the extra.
It draws on matplotlib's Agg canvas directly: no pyplot, no global backend switch, no
display. It never reads the journal: everything comes from the report and the samples.
"""
from __future__ import annotations

import logging
import math
import os
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from daemon.backtest.report import EquitySample

log = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'bot4[report]'"


class PlotUnavailable(RuntimeError):
    """matplotlib is not installed: report.png cannot be drawn (report.json still can)."""


_NS_PER_DAY = 86_400 * 1_000_000_000
BUCKETS = 2_000   # a long series is drawn from the min and max of this many time buckets


def _days(ts_ns: np.ndarray | list[int]) -> np.ndarray:
    """Engine time as matplotlib date numbers (days since its epoch), without building a
    datetime per sample (a day of 1 s samples is 86,400 of them)."""
    from matplotlib import dates
    epoch = dates.date2num(datetime(1970, 1, 1, tzinfo=timezone.utc))
    return np.asarray(ts_ns, dtype=np.int64) / _NS_PER_DAY + epoch


def _minmax(x: np.ndarray, y: np.ndarray, buckets: int = BUCKETS
            ) -> tuple[np.ndarray, np.ndarray]:
    """At most 2 points per bucket (its lowest and highest, in time order): a drawdown or a
    price spike stays visible however long the series."""
    n = len(x)
    if n <= 2 * buckets:
        return x, y
    edges = np.linspace(0, n, buckets + 1).astype(np.int64)
    keep: list[int] = []
    for a, b in zip(edges[:-1], edges[1:]):
        seg = y[a:b]
        if np.isnan(seg).all():
            keep.append(int(a))   # a gap (no mark): keep it a gap
            continue
        lo, hi = a + int(np.nanargmin(seg)), a + int(np.nanargmax(seg))
        keep.extend((lo, hi) if lo < hi else (hi,) if lo == hi else (hi, lo))
    idx = np.asarray(keep, dtype=np.int64)
    return x[idx], y[idx]


def _symbols(report: dict, samples: list[EquitySample]) -> list[str]:
    syms: set[str] = set(report.get("by_symbol", {}))
    syms.update(o["symbol"] for o in report.get("orders", []))
    syms = syms.union(*(s.positions for s in samples))
    syms = syms.union(*({k for k, v in s.marks.items() if v is not None} for s in samples))
    return sorted(syms)


def write_png(report: dict, samples: list[EquitySample], path: Path) -> None:
    """Draw report.png from a report (build_report) and the samples it was built from.
    Written whole or not at all (temporary file, then rename)."""
    try:
        from matplotlib import dates   # first: imports the package itself
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as e:
        raise PlotUnavailable(f"report.png needs matplotlib, which is not installed: "
                              f"{INSTALL_HINT} (or pip install matplotlib); report.json "
                              f"does not need it") from e
    path = Path(path)
    symbols = _symbols(report, samples)
    n_price = max(len(symbols), 1)
    fig = Figure(figsize=(11, 3.0 * (2 + n_price)), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(2 + n_price, 1, sharex=True, squeeze=False)[:, 0]
    t = _days([s.ts_ns for s in samples])

    ax = axes[0]
    ax.plot(*_minmax(t, np.array([float(s.equity) for s in samples])), color="tab:blue", lw=1)
    ax.axhline(0, color="grey", lw=0.5)
    ax.set_ylabel("equity (quote)")
    ax.set_title(_title(report), fontsize=10, loc="left")

    ax = axes[1]
    for sym in symbols:
        qty = np.array([float(s.positions.get(sym, 0)) for s in samples])
        ax.step(*_minmax(t, qty), where="post", lw=1, label=sym)
    ax.axhline(0, color="grey", lw=0.5)
    ax.set_ylabel("position")
    if symbols:
        ax.legend(loc="upper left", fontsize=8)

    fills = _fills_by_symbol(report)
    for ax, sym in zip(axes[2:], symbols or [""]):
        marks = np.array([math.nan if (m := s.marks.get(sym)) is None else float(m)
                          for s in samples])
        ax.plot(*_minmax(t, marks), color="grey", lw=0.8, label=f"{sym} mark")
        for side, style in (("buy", dict(marker="^", color="tab:green")),
                            ("sell", dict(marker="v", color="tab:red"))):
            pts = fills.get((sym, side), [])
            if pts:
                ax.scatter(_days([ts for ts, _ in pts]), [p for _, p in pts], s=18, zorder=3,
                           label=f"{side} fills ({len(pts)})", **style)
        ax.set_ylabel(f"{sym} price" if sym else "price")
        ax.ticklabel_format(axis="y", useOffset=False, style="plain")   # prices as prices
        ax.legend(loc="upper left", fontsize=8)
    locator = dates.AutoDateLocator(tz=timezone.utc)
    axes[-1].xaxis.set_major_locator(locator)
    axes[-1].xaxis.set_major_formatter(dates.ConciseDateFormatter(locator, tz=timezone.utc))
    axes[-1].set_xlabel("engine time (UTC)")
    if not samples:
        axes[0].text(0.5, 0.5, "no equity samples", transform=axes[0].transAxes,
                     ha="center", va="center")

    tmp = path.with_name(f".{path.name}.tmp")
    fig.savefig(tmp, format="png")
    os.replace(tmp, path)
    log.info("plot written to %s", path)


def _fills_by_symbol(report: dict) -> dict[tuple[str, str], list[tuple[int, float]]]:
    out: dict[tuple[str, str], list[tuple[int, float]]] = {}
    for o in report.get("orders", []):
        for f in o["fills"]:
            out.setdefault((o["symbol"], o["side"]), []).append((f["ts_ns"], float(f["price"])))
    return out


def _title(report: dict) -> str:
    meta = report.get("meta") or {}
    pnl = report.get("pnl", {})
    dd = report.get("drawdown", {})
    ra = report.get("risk_adjusted", {})
    strategy = meta.get("strategy", "backtest")
    if isinstance(strategy, dict):   # the runner's {"name": ..., "params": ...}
        strategy = strategy.get("name", "backtest")
    parts = [str(strategy),
             f"net PnL {pnl.get('total_net')}", f"fees {pnl.get('fees')}",
             f"max DD {dd.get('absolute')}", f"Sharpe {ra.get('sharpe')}",
             f"fills {report.get('counts', {}).get('fills')}"]
    return "  |  ".join(parts)
