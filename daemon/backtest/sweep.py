"""Parameter sweeps: `bot4d backtest --sweep key=v1,v2,... [--sweep ...]`.

A sweep is the cartesian product of a few config keys' values, each point an ordinary
backtest (daemon/backtest/run.py, the same core, the same report.json) in
``DIR/points/<index>-<key=value,...>/``, run in a local process pool. It writes one table
of the points' key metrics, ``sweep.json`` and ``sweep.csv``, and for a two-parameter grid
``heatmap.png`` (one metric by the two parameters; matplotlib, optional `report` extra).

Keys are dotted config paths (``strategy.quoter.half_spread_bps``, ``paper.seed``,
``instruments.BTCUSDT.tick_size``); values are TOML scalars (numbers, strings, booleans; a
bare word is a string, as in BOT4__ overrides). Every grid point's config is built and
validated before anything runs: one bad key or value refuses the whole sweep (exit 78)
naming it, and nothing is written.

The decoded-capture cache (daemon/market/cache.py) is always used by a sweep, built once
in this process before the pool starts, so every point reads the same decoded events
instead of inflating and parsing the captures again (and no two workers build the same
file at once).

Determinism: the table's rows are in grid order (the order of the --sweep flags, the last
key varying fastest), whatever order the workers finish in, and each row's metrics are
copied from the point's report.json unchanged (money as decimal strings, floats as the
report rounded them). sweep.json differs between two runs of the same sweep only in its
WALL_CLOCK_FIELDS (when it ran, how long, which worker process ran which point).

This module must never change a point's config beyond the swept keys (the backtest
adjustments of run.backtest_config apply to every point alike), never run a point whose
config did not validate, and never write a metric the report does not hold.
"""
from __future__ import annotations

import csv
import itertools
import logging
import math
import multiprocessing
import os
import re
import sys
import time
import tomllib
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Iterable, Mapping, TextIO

import orjson

from daemon.backtest.run import BacktestError, backtest_config, run_backtest, write_outputs
from daemon.config import Config, ConfigError, with_overrides

log = logging.getLogger(__name__)

SWEEP_VERSION = 1
SWEEP_JSON = "sweep.json"
SWEEP_CSV = "sweep.csv"
HEATMAP_PNG = "heatmap.png"
POINTS_DIR = "points"
WALL_CLOCK_FIELDS = ("generated_at", "runtime")   # the only keys that differ between runs
EX_SOFTWARE, EX_CONFIG = 70, 78
# Workers fork from a fork server, not from this process: each starts clean (no
# inherited cache arrays, logging state or library threads of the sweeping process), and
# the server imports the backtest's modules once (FORKSERVER_PRELOAD) instead of every
# worker importing them again as spawned ones would (about 1 s of CPU each here).
START_METHOD = "forkserver"
FORKSERVER_PRELOAD = ["daemon.backtest.sweep", "daemon.backtest.report", "daemon.engine.build",
                      "daemon.market.cache"]
_DIRNAME_MAX = 120   # characters of a point directory's name after its index

# Table columns: the report.json figure each one is (a dotted path into the report).
METRICS: dict[str, tuple[str, ...]] = {
    "pnl.total_net": ("pnl", "total_net"),
    "pnl.realised": ("pnl", "realised"),
    "pnl.unrealised": ("pnl", "unrealised"),
    "pnl.fees": ("pnl", "fees"),
    "pnl.turnover": ("pnl", "turnover"),
    "drawdown.absolute": ("drawdown", "absolute"),
    "drawdown.pct": ("drawdown", "pct"),
    "risk_adjusted.sharpe": ("risk_adjusted", "sharpe"),
    "risk_adjusted.sortino": ("risk_adjusted", "sortino"),
    "hit_rate.value": ("hit_rate", "value"),
    "fill_ratio.orders": ("fill_ratio", "orders"),
    "counts.orders": ("counts", "orders"),
    "counts.fills": ("counts", "fills"),
}
# Short names --sweep-metric also accepts.
ALIASES = {"net_pnl": "pnl.total_net", "realised": "pnl.realised",
           "unrealised": "pnl.unrealised", "fees": "pnl.fees", "turnover": "pnl.turnover",
           "max_drawdown": "drawdown.absolute", "max_drawdown_pct": "drawdown.pct",
           "sharpe": "risk_adjusted.sharpe", "sortino": "risk_adjusted.sortino",
           "hit_rate": "hit_rate.value", "fill_ratio": "fill_ratio.orders",
           "orders": "counts.orders", "fills": "counts.fills"}
DEFAULT_METRIC = "pnl.total_net"

# Keys run.backtest_config sets for every backtest: sweeping them would be overwritten.
_FIXED_BY_BACKTEST = ("market.source", "market.replay_speed", "daemon.auto_start",
                      "analytics.enabled")
_BARE = re.compile(r"[A-Za-z0-9_.:+-]+")
_UNSAFE = re.compile(r"[^A-Za-z0-9._=,:+-]")


class SweepError(ValueError):
    """A sweep that cannot run as asked (a bad key, value or option): a config error."""


@dataclass(frozen=True)
class Axis:
    """One --sweep flag: a config key and its values, in the order given."""
    key: str
    values: tuple[Any, ...]


@dataclass(frozen=True)
class Point:
    """One grid point: its parameters (in axis order) and the config it runs."""
    index: int
    params: tuple[tuple[str, Any], ...]
    dirname: str
    cfg: Config


# -- parsing --------------------------------------------------------------------------------
def value_text(v: Any) -> str:
    """A swept value as TOML writes a scalar, unquoted (directory names, CSV cells)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return repr(v)
    return str(v)


def _split_values(text: str) -> list[str]:
    """Split on commas outside TOML quotes ("a,b" is one value)."""
    items: list[str] = []
    cur: list[str] = []
    quote: str | None = None
    escaped = False
    for ch in text:
        if quote is not None:
            cur.append(ch)
            if escaped:
                escaped = False
            elif ch == "\\" and quote == '"':
                escaped = True
            elif ch == quote:
                quote = None
        elif ch in "\"'":
            quote = ch
            cur.append(ch)
        elif ch == ",":
            items.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    if quote is not None:
        raise SweepError(f"unterminated {quote} quote in {text!r}")   # parse_axis names it
    items.append("".join(cur))
    return items


def _parse_value(item: str, spec: str) -> Any:
    item = item.strip()
    if not item:
        raise SweepError(f"--sweep {spec}: an empty value (two commas, or a comma at an end)")
    try:
        parsed = tomllib.loads(f"v = {item}")
    except tomllib.TOMLDecodeError:
        if _BARE.fullmatch(item):
            return item   # a bare word is a string, as in BOT4__ overrides
        raise SweepError(f"--sweep {spec}: {item!r} is not a TOML value (quote strings "
                         f"that hold spaces or symbols)") from None
    except ValueError:   # an integer of more than 4300 digits
        raise SweepError(f"--sweep {spec}: {item[:20]!r}...: number too long") from None
    if set(parsed) != {"v"} or not isinstance(parsed["v"], (bool, int, float, str)):
        raise SweepError(f"--sweep {spec}: {item!r} is not a number, string or boolean")
    return parsed["v"]


def _same(a: Any, b: Any) -> bool:
    """Equal as config values: 1 and 1.0 are, True and 1 are not."""
    if isinstance(a, bool) or isinstance(b, bool) or isinstance(a, str) or isinstance(b, str):
        return type(a) is type(b) and a == b
    return a == b


def parse_axis(spec: str) -> Axis:
    """`key=v1,v2,...` -> Axis. Raises SweepError naming what is wrong."""
    key, sep, text = spec.partition("=")
    key = key.strip()
    if not sep or not key:
        raise SweepError(f"--sweep {spec!r}: expected KEY=V1,V2,... (e.g. "
                         f"strategy.quoter.half_spread_bps=1,2,5)")
    parts = _key_parts(key, spec)
    key = ".".join(parts)
    values: list[Any] = []
    try:
        items = _split_values(text)
    except SweepError as e:
        raise SweepError(f"--sweep {spec}: {e}") from None
    for item in items:
        v = _parse_value(item, spec)
        if any(_same(v, w) for w in values):
            raise SweepError(f"--sweep {spec}: value {value_text(v)} given twice")
        values.append(v)
    return Axis(key, tuple(values))


def _key_parts(key: str, spec: str) -> list[str]:
    parts = [p.strip() for p in key.split(".")]
    out = []
    for p in parts:
        if len(p) >= 2 and p[0] == p[-1] and p[0] in "\"'":
            p = p[1:-1]   # instruments."usdm:BTCUSDT".tick_size
        if not p:
            raise SweepError(f"--sweep {spec}: {key!r} has an empty part (expected a "
                             f"dotted config key like paper.seed)")
        out.append(p)
    return out


# -- configs --------------------------------------------------------------------------------
def apply_params(cfg: Config, params: Iterable[tuple[str, Any]]) -> Config:
    """`cfg` with the dotted keys set, re-validated (daemon.config.with_overrides). Raises
    SweepError for a key that is no config key, or a table; ConfigError for a value the
    config refuses."""
    data = cfg.model_dump()
    touched: list[str] = []
    for key, value in params:
        parts = key.split(".")
        if parts[0] not in data:
            raise SweepError(f"--sweep {key}: unknown config section [{parts[0]}] "
                             f"(sections: {', '.join(sorted(data))})")
        if len(parts) < 2:
            raise SweepError(f"--sweep {key}: [{key}] is a table; sweep one of its keys")
        node = data
        for i, p in enumerate(parts[:-1]):
            if not isinstance(node.get(p), dict):
                where = ".".join(parts[:i + 1])
                what = "a value, not a table" if p in node else "not a config table"
                raise SweepError(f"--sweep {key}: {where} is {what}")
            node = node[p]
        if isinstance(node.get(parts[-1]), dict):
            raise SweepError(f"--sweep {key}: [{key}] is a table; sweep one of its keys")
        # Unknown leaf keys are left to the config's own check ("unknown key").
        node[parts[-1]] = value
        if parts[0] not in touched:
            touched.append(parts[0])
    return with_overrides(cfg, **{s: data[s] for s in touched})


def _dirname(index: int, width: int, params: tuple[tuple[str, Any], ...]) -> str:
    text = ",".join(f"{k}={value_text(v)}" for k, v in params)
    return f"{index:0{width}d}-{_UNSAFE.sub('_', text)[:_DIRNAME_MAX]}"


def plan(cfg: Config, specs: list[str], *, strategy: str | None = None,
         seed: int | None = None) -> tuple[list[Axis], list[Point]]:
    """The grid of `specs`, every point's backtest config built and validated. Raises
    SweepError listing every problem (a bad key, each bad value, a bad combination)."""
    if not specs:
        raise SweepError("no --sweep KEY=V1,V2,... given")
    try:   # --strategy / --seed alone first, so their fault is not blamed on a value
        backtest_config(cfg, strategy, seed)
    except ConfigError as e:
        raise SweepError(f"--strategy/--seed: {str(e).removeprefix('command line: ')}"
                         ) from None
    problems: list[str] = []
    axes: list[Axis] = []
    for spec in specs:
        try:
            axis = parse_axis(spec)
        except SweepError as e:
            problems.append(str(e))
            continue
        if any(a.key == axis.key for a in axes):
            problems.append(f"--sweep {axis.key}: given twice (put every value in one flag)")
            continue
        fixed = _fixed_keys(strategy, seed)
        if axis.key in fixed:
            problems.append(f"--sweep {axis.key}: {fixed[axis.key]}")
            continue
        bad = False
        for v in axis.values:   # each value alone, so a bad one is named by itself
            try:
                backtest_config(apply_params(cfg, [(axis.key, v)]), strategy, seed)
            except (SweepError, ConfigError) as e:
                msg = str(e).removeprefix("command line: ")   # with_overrides' origin
                problems.append(msg if msg.startswith("--sweep ")
                                else f"--sweep {axis.key}={value_text(v)}: {msg}")
                bad = True
                if isinstance(e, SweepError) or msg.endswith("unknown key"):
                    break   # the key itself is wrong: one line says so
        if not bad:
            axes.append(axis)
    if problems:
        raise SweepError("; ".join(problems))
    grid = list(itertools.product(*(a.values for a in axes)))
    width = len(str(len(grid) - 1))
    points: list[Point] = []
    for i, values in enumerate(grid):
        params = tuple(zip((a.key for a in axes), values))
        try:   # each value passed alone; a combination can still be refused
            pcfg = backtest_config(apply_params(cfg, params), strategy, seed)
        except ConfigError as e:
            problems.append(f"--sweep point {i} ("
                            + ", ".join(f"{k}={value_text(v)}" for k, v in params)
                            + f"): {str(e).removeprefix('command line: ')}")
            continue
        points.append(Point(i, params, _dirname(i, width, params), pcfg))
    if problems:
        raise SweepError("; ".join(problems))
    return axes, points


def _fixed_keys(strategy: str | None, seed: int | None) -> dict[str, str]:
    out = {k: "every backtest sets it itself (run.backtest_config): it cannot be swept"
           for k in _FIXED_BY_BACKTEST}
    if strategy is not None:
        out["strategy.name"] = "--strategy is given as well: drop one of them"
    if seed is not None:
        out["paper.seed"] = "--seed is given as well: drop one of them"
    return out


def metric_name(name: str) -> str:
    """A --sweep-metric name (a column or its short alias) -> the column."""
    if name in METRICS:
        return name
    if name in ALIASES:
        return ALIASES[name]
    raise SweepError(f"--sweep-metric {name}: not a sweep metric (one of "
                     f"{', '.join(METRICS)}, or {', '.join(ALIASES)})")


# -- running --------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Task:
    index: int
    cfg: Config
    files: tuple[str, ...]
    out: str
    cache_dir: str | None
    png: bool


def metrics_of(report: Mapping[str, Any]) -> dict[str, Any]:
    """The table's metrics of one report, copied unchanged (None where it has none)."""
    out: dict[str, Any] = {}
    for name, path in METRICS.items():
        node: Any = report
        for p in path:
            node = node.get(p) if isinstance(node, Mapping) else None
        out[name] = node
    return out


def run_point(task: _Task) -> dict[str, Any]:
    """One grid point's backtest (in a worker process): its metrics, or why it failed."""
    t0, c0 = time.monotonic(), time.process_time()
    out: dict[str, Any] = {"index": task.index, "pid": os.getpid(), "error": None,
                           "metrics": dict.fromkeys(METRICS), "cache_hit": None}
    try:
        bt = run_backtest(task.cfg, list(task.files), Path(task.out), use_cache=True,
                          cache_dir=Path(task.cache_dir) if task.cache_dir else None)
        out["cache_hit"] = bt.cache_hit
        out["metrics"] = metrics_of(write_outputs(bt, png=task.png))
    except BacktestError as e:
        out["error"] = str(e)
    except Exception as e:   # noqa: BLE001 - one point's crash must not lose the others
        log.exception("sweep point %d failed", task.index)
        out["error"] = f"{type(e).__name__}: {e}"
    out["wall_s"] = round(time.monotonic() - t0, 3)
    out["cpu_s"] = round(time.process_time() - c0, 3)   # wall_s >> cpu_s: a busy machine
    return out


def prebuild_cache(points: list[Point], files: list[str], cache_dir: Path | None
                   ) -> list[dict[str, Any]]:
    """Build (or find) the decoded-capture cache every point will read, once per distinct
    reader setup, in this process before any worker starts.

    It makes run_backtest's own call (`run.cached_events`), so the points find the file
    under the same key; tests/backtest/test_sweep.py fails (a second cache file, built by
    the workers) if they ever differ."""
    from daemon.backtest.run import _reader_kwargs, cached_events
    from daemon.market.feed import MarketFeed

    done: dict[tuple, dict[str, Any]] = {}
    for p in points:
        try:
            feed = MarketFeed(p.cfg, replay=files)
            groups = feed.replay_groups()
        except Exception:   # noqa: BLE001 - the point fails by itself, saying why
            continue
        if len(groups) != 1:
            continue   # several markets replay merged from the raw files (run_backtest)
        prefix = groups[0][0]
        default_symbol = feed.decoders[prefix].default_symbol
        kwargs = _reader_kwargs(p.cfg)
        key = (prefix, default_symbol, tuple(sorted(kwargs.items())))
        if key in done:
            continue
        t0 = time.monotonic()
        cached = cached_events(p.cfg, feed, files, cache_dir)
        done[key] = {"prefix": prefix, "default_symbol": default_symbol, "hit": cached.hit,
                     "file": None if cached.path is None else str(cached.path),
                     "events": cached.events, "wall_s": round(time.monotonic() - t0, 3)}
    return list(done.values())


def run_points(points: list[Point], files: list[str], out: Path, *, jobs: int,
               cache_dir: Path | None = None, png: bool = False,
               progress: TextIO | None = None) -> list[dict[str, Any]]:
    """Every point's backtest, `jobs` at a time (1: in this process); results by index."""
    tasks = [_Task(p.index, p.cfg, tuple(files), str(out / POINTS_DIR / p.dirname),
                   None if cache_dir is None else str(cache_dir), png) for p in points]
    labels = {p.index: ", ".join(f"{k}={value_text(v)}" for k, v in p.params)
              for p in points}
    results: dict[int, dict[str, Any]] = {}

    def note(r: dict[str, Any]) -> None:
        results[r["index"]] = r
        if progress is not None:
            what = (f"failed: {r['error']}" if r["error"] else
                    f"net PnL {r['metrics']['pnl.total_net']}, "
                    f"{r['metrics']['counts.fills']} fills")
            print(f"sweep: {len(results)}/{len(tasks)} [{labels[r['index']]}] {what} "
                  f"({r['wall_s']:.1f} s)", file=progress, flush=True)

    if jobs <= 1:
        for t in tasks:
            note(run_point(t))
    else:
        ctx = multiprocessing.get_context(START_METHOD)
        ctx.set_forkserver_preload(FORKSERVER_PRELOAD)
        with ProcessPoolExecutor(max_workers=jobs, mp_context=ctx) as pool:
            futures = {pool.submit(run_point, t): t.index for t in tasks}
            try:
                for f in as_completed(futures):
                    try:
                        note(f.result())
                    except Exception as e:   # noqa: BLE001 - a dead worker, a pickling error
                        i = futures[f]
                        why = ("worker process died" if isinstance(e, BrokenProcessPool)
                               else type(e).__name__)
                        note({"index": i, "pid": None, "error": f"{why}: {e}",
                              "metrics": dict.fromkeys(METRICS), "cache_hit": None,
                              "wall_s": 0.0, "cpu_s": 0.0})
            except BaseException:
                pool.shutdown(wait=True, cancel_futures=True)
                raise
    return [results[p.index] for p in points]


# -- the table --------------------------------------------------------------------------------
def build_table(axes: list[Axis], points: list[Point], results: list[dict[str, Any]],
                files: list[str], *, metric: str, runtime: dict[str, Any]) -> dict[str, Any]:
    """sweep.json's content: one row per point in grid order."""
    rows = []
    for p, r in zip(points, results):
        rows.append({"index": p.index, "dir": f"{POINTS_DIR}/{p.dirname}",
                     "params": {k: v for k, v in p.params},
                     "metrics": r["metrics"], "error": r["error"]})
    return {
        "sweep_version": SWEEP_VERSION,
        "generated_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "wall_clock_fields": list(WALL_CLOCK_FIELDS),
        "files": [Path(f).name for f in files],
        "keys": [a.key for a in axes],
        "values": {a.key: list(a.values) for a in axes},
        "order": "cartesian product in the order of the --sweep flags, the last key "
                 "varying fastest",
        "metrics": {name: "report.json " + ".".join(path) for name, path in METRICS.items()},
        "heatmap_metric": metric,
        "points": rows,
        "runtime": runtime,
    }


def without_wall_clock(table: Mapping[str, Any]) -> dict[str, Any]:
    """The table minus its wall-clock fields: equal for two runs of the same sweep."""
    return {k: v for k, v in table.items() if k not in WALL_CLOCK_FIELDS}


def _cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, (bool, float, int, str)):
        return value_text(v)
    raise TypeError(f"sweep table: cannot write a {type(v).__name__}")


def _replace(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def write_table(table: Mapping[str, Any], out: Path) -> None:
    """sweep.json (indented, in the table's own order) and sweep.csv (one row per point:
    index, dir, each key, each metric, error; empty cell = null), each written whole."""
    _replace(out / SWEEP_JSON, orjson.dumps(table, option=orjson.OPT_INDENT_2
                                            | orjson.OPT_APPEND_NEWLINE))
    import io
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    keys, metrics = table["keys"], list(METRICS)
    w.writerow(["index", "dir", *keys, *metrics, "error"])
    for row in table["points"]:
        w.writerow([row["index"], row["dir"], *(_cell(row["params"][k]) for k in keys),
                    *(_cell(row["metrics"][m]) for m in metrics), _cell(row["error"])])
    _replace(out / SWEEP_CSV, buf.getvalue().encode())


def _number(v: Any) -> float:
    """A metric as a colour value: money strings are exact decimals; null is NaN."""
    if v is None or isinstance(v, bool):
        return math.nan
    try:
        return float(Decimal(str(v)))
    except (InvalidOperation, ValueError):
        return math.nan


def write_heatmap(table: Mapping[str, Any], metric: str, path: Path) -> None:
    """heatmap.png of `metric` over a two-parameter grid: rows the first key's values,
    columns the second's, each cell labelled with the metric as the report wrote it.
    Raises PlotUnavailable without matplotlib, ValueError for a grid that is not 2-D."""
    from daemon.backtest.plot import INSTALL_HINT, PlotUnavailable
    keys = table["keys"]
    if len(keys) != 2:
        raise ValueError(f"a heat map needs a two-parameter grid, this one has {len(keys)}")
    try:
        import numpy as np
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as e:
        raise PlotUnavailable(f"heatmap.png needs matplotlib, which is not installed: "
                              f"{INSTALL_HINT} (or pip install matplotlib); sweep.json and "
                              f"sweep.csv do not need it") from e
    ys, xs = table["values"][keys[0]], table["values"][keys[1]]
    grid = np.full((len(ys), len(xs)), math.nan)
    text = [["" for _ in xs] for _ in ys]
    for n, row in enumerate(table["points"]):
        i, j = divmod(n, len(xs))   # grid order: the second key varies fastest
        v = None if row["error"] else row["metrics"][metric]
        grid[i, j] = _number(v)
        # Labels rounded for the eye (6 significant digits); the table keeps the exact text.
        text[i][j] = ("failed" if row["error"] else "null" if v is None
                      else f"{grid[i, j]:.6g}" if math.isfinite(grid[i, j]) else str(v))
    fig = Figure(figsize=(max(4.0, 1.3 * len(xs) + 2.5), max(3.0, 0.8 * len(ys) + 2.0)),
                 dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    finite = grid[np.isfinite(grid)]
    kw: dict[str, Any] = {"cmap": "RdYlGn" if metric.startswith("pnl.total_net")
                          or metric.startswith("risk_adjusted") else "viridis"}
    if finite.size and kw["cmap"] == "RdYlGn":
        lim = float(np.max(np.abs(finite))) or 1.0   # zero in the middle of the scale
        kw.update(vmin=-lim, vmax=lim)
    im = ax.imshow(np.ma.masked_invalid(grid), aspect="auto", origin="upper", **kw)
    fig.colorbar(im, ax=ax, label=metric)
    ax.set_xticks(range(len(xs)), [value_text(v) for v in xs])
    ax.set_yticks(range(len(ys)), [value_text(v) for v in ys])
    ax.set_xlabel(keys[1])
    ax.set_ylabel(keys[0])
    for i in range(len(ys)):
        for j in range(len(xs)):
            ax.text(j, i, text[i][j], ha="center", va="center", fontsize=8)
    ax.set_title(f"{metric} ({', '.join(table['files'])})", fontsize=9, loc="left")
    tmp = path.with_name(f".{path.name}.tmp")
    fig.savefig(tmp, format="png")
    os.replace(tmp, path)
    log.info("heat map written to %s", path)


# -- the CLI entry ----------------------------------------------------------------------------
def main(cfg: Config, files: list[str], report_dir: str, *, specs: list[str] | None,
         strategy: str | None, seed: int | None, png: bool, cache_dir: str | None,
         jobs: int | None, metric: str | None, point_png: bool = False) -> int:
    """`bot4d backtest --sweep ...`: returns the exit code (0; 70 when a point failed,
    after writing the table; 78 for a bad sweep, before running anything)."""
    try:
        if jobs is not None and jobs < 1:
            raise SweepError(f"--jobs {jobs}: at least 1")
        column = metric_name(metric or DEFAULT_METRIC)
        axes, points = plan(cfg, list(specs or []), strategy=strategy, seed=seed)
    except (SweepError, ConfigError) as e:
        print(f"bot4d backtest: config error: {e}", file=sys.stderr)
        return EX_CONFIG
    out = Path(report_dir)
    workers = min(jobs or os.cpu_count() or 1, len(points))
    cdir = Path(cache_dir) if cache_dir else None
    t0 = time.monotonic()
    try:
        cache = prebuild_cache(points, files, cdir)
    except Exception as e:   # noqa: BLE001 - an unreadable capture: nothing can run
        print(f"bot4d backtest: failed: reading the captures: {e}", file=sys.stderr)
        return EX_SOFTWARE
    (out / POINTS_DIR).mkdir(parents=True, exist_ok=True)
    stale = sorted(set(os.listdir(out / POINTS_DIR)) - {p.dirname for p in points})
    if stale:   # never deleted here: they may be someone's results
        print(f"sweep: {len(stale)} entries in {out / POINTS_DIR} are not points of this "
              f"sweep (an earlier one's?); {SWEEP_JSON} lists this sweep's", file=sys.stderr)
    print(f"sweep: {len(points)} points ({' x '.join(str(len(a.values)) for a in axes)}) on "
          f"{workers} worker(s)", file=sys.stderr, flush=True)
    results = run_points(points, files, out, jobs=workers, cache_dir=cdir, png=point_png,
                         progress=sys.stderr)
    wall = time.monotonic() - t0
    runtime = {"jobs": workers, "start_method": START_METHOD if workers > 1 else "in-process",
               "parent_pid": os.getpid(), "wall_s": round(wall, 3), "cache": cache,
               "points": [{"index": r["index"], "pid": r["pid"], "wall_s": r["wall_s"],
                           "cpu_s": r["cpu_s"], "cache_hit": r["cache_hit"]}
                          for r in results]}
    table = build_table(axes, points, results, files, metric=column, runtime=runtime)
    write_table(table, out)
    if png and len(axes) == 2:
        from daemon.backtest.plot import PlotUnavailable
        try:
            write_heatmap(table, column, out / HEATMAP_PNG)
        except PlotUnavailable as e:
            print(f"bot4d backtest: {e}; {SWEEP_JSON} and {SWEEP_CSV} written without "
                  f"{HEATMAP_PNG}", file=sys.stderr)
    elif png:
        print(f"sweep: no {HEATMAP_PNG}: a heat map needs exactly two --sweep keys "
              f"({len(axes)} given)", file=sys.stderr)
    failed = [r["index"] for r in results if r["error"]]
    print(f"sweep: {len(points)} points in {wall:.2f} s on {workers} worker(s)"
          f"{f', {len(failed)} FAILED (points {failed})' if failed else ''}; table in "
          f"{out / SWEEP_JSON} and {out / SWEEP_CSV}")
    return EX_SOFTWARE if failed else 0
