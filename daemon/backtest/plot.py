"""report.png: a backtest's equity, position and price with its fills marked.

Panels, sharing one engine-time axis (UTC): equity (quote currency, PnL since the start),
position per symbol, then one price panel per symbol (its marks from the equity samples,
buys as green up-triangles and sells as red down-triangles at their fill price), so a
one-symbol backtest gets the three panels equity / position / price.

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

from daemon.backtest.report import EquitySample

log = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'bot4[report]'"


class PlotUnavailable(RuntimeError):
    """matplotlib is not installed: report.png cannot be drawn (report.json still can)."""


def _utc(ts_ns: int) -> datetime:
    return datetime.fromtimestamp(ts_ns / 1e9, tz=timezone.utc)


def _symbols(report: dict, samples: list[EquitySample]) -> list[str]:
    syms: set[str] = set(report.get("by_symbol", {}))
    for o in report.get("orders", []):
        syms.add(o["symbol"])
    for s in samples:
        syms.update(s.positions)
        syms.update(k for k, v in s.marks.items() if v is not None)
    return sorted(syms)


def write_png(report: dict, samples: list[EquitySample], path: Path) -> None:
    """Draw report.png from a report (build_report) and the samples it was built from.
    Written whole or not at all (temporary file, then rename)."""
    try:
        import matplotlib   # noqa: F401  (first: a missing package fails here, clearly)
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
    t = [_utc(s.ts_ns) for s in samples]

    ax = axes[0]
    ax.plot(t, [float(s.equity) for s in samples], color="tab:blue", lw=1)
    ax.axhline(0, color="grey", lw=0.5)
    ax.set_ylabel("equity (quote)")
    ax.set_title(_title(report), fontsize=10, loc="left")

    ax = axes[1]
    for sym in symbols:
        ax.step(t, [float(s.positions.get(sym, 0)) for s in samples], where="post", lw=1,
                label=sym)
    ax.axhline(0, color="grey", lw=0.5)
    ax.set_ylabel("position")
    if symbols:
        ax.legend(loc="upper left", fontsize=8)

    fills = _fills_by_symbol(report)
    for ax, sym in zip(axes[2:], symbols or [""]):
        marks = [s.marks.get(sym) for s in samples]
        ax.plot(t, [math.nan if m is None else float(m) for m in marks], color="grey", lw=0.8,
                label=f"{sym} mark")
        for side, style in (("buy", dict(marker="^", color="tab:green")),
                            ("sell", dict(marker="v", color="tab:red"))):
            pts = fills.get((sym, side), [])
            if pts:
                ax.scatter([_utc(ts) for ts, _ in pts], [p for _, p in pts], s=18, zorder=3,
                           label=f"{side} fills ({len(pts)})", **style)
        ax.set_ylabel(f"{sym} price" if sym else "price")
        ax.legend(loc="upper left", fontsize=8)
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
    parts = [str(meta.get("strategy", "backtest")),
             f"net PnL {pnl.get('total_net')}", f"fees {pnl.get('fees')}",
             f"max DD {dd.get('absolute')}", f"Sharpe {ra.get('sharpe')}",
             f"fills {report.get('counts', {}).get('fills')}"]
    return "  |  ".join(parts)
