"""`bot4d backtest`: the daemon's own trading core on recorded data, without hardware,
sockets or an event loop, writing a report a trader would read.

The core is built by daemon/engine/build.py exactly as the daemon builds it (engine, feed,
paper venue, gateway, risk, breakers, features, data quality); only the control differs:
the daemon's state machine is replaced by `BacktestControl`, which follows the same rules
(halt cancels everything and stops trading, reducing cancels what would grow a position,
the end of the data cancels the rest). Time is event time throughout.

The backtest's journal is its own file in the report directory, written without an fsync
per commit (the report says so); it never touches the daemon's journal or state dir.
"""
from __future__ import annotations

import logging
import sys
import time
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, TextIO

from daemon import __version__
from daemon.config import Config, with_overrides
from daemon.engine.build import Core, build_core
from daemon.safety.latch import KillLatch, LatchKind
from daemon.states import State, allowed
from daemon.store.journal import Journal

log = logging.getLogger(__name__)

REPORT_JSON = "report.json"
REPORT_PNG = "report.png"
JOURNAL = "backtest.sqlite3"


class BacktestError(Exception):
    """The backtest could not run to the end (the message says why)."""


class BacktestControl:
    """The trading state machine of a backtest (daemon/engine/engine.py Control): the
    supervisor's rules without hardware. Every change is journalled before it acts."""

    def __init__(self, journal: Journal, latch: KillLatch) -> None:
        self.journal = journal
        self.latch = latch
        self.state = State.TRADING
        self.state_reason = "backtest"
        self.gateway: Any = None
        self.summary: dict | None = None
        self.transitions: list[dict] = []
        self.error_text: str | None = None

    def _set(self, new: State, reason: str, ts_ns: int) -> bool:
        old = self.state
        if new is old:
            self.state_reason = reason
            return True
        if not allowed(old, new):
            return False
        self.journal.audit("state", old=old.value, new=new.value, reason=reason)
        self.state, self.state_reason = new, reason
        self.transitions.append({"ts_ns": ts_ns, "from": old.value, "to": new.value,
                                 "reason": reason})
        return True

    def halt(self, reason: str) -> None:
        if self.state in (State.HALTED, State.FAULT):
            return
        self.latch.trip(LatchKind.HALT, reason)
        self._set(State.HALTED, reason, self.gateway.clock())
        self.gateway.cancel_all(f"halt: {reason}", record_with=lambda: self.journal.set_latch(
            True, LatchKind.HALT.value, reason, state="halted"))

    def reduce(self, reason: str) -> None:
        if self._set(State.REDUCING, reason, self.gateway.clock()):
            self.gateway.cancel_increasing(f"reducing: {reason}")

    def resume(self, reason: str) -> None:
        self._set(State.TRADING, reason, self.gateway.clock())

    def finished(self, summary: dict) -> None:
        self.summary = summary
        if self._set(State.FINISHED, "data finished", self.gateway.clock()):
            self.gateway.cancel_all("replay finished")

    def error(self, where: str, e: BaseException) -> None:
        """The one exception policy: a backtest stops at the first error, with it."""
        self.error_text = f"{where}: {e!r}"
        raise BacktestError(self.error_text) from e


@dataclass
class Backtest:
    """One backtest run: what it read and what it found (the caller writes the report)."""
    cfg: Config
    files: list[str]
    report_dir: Path
    core: Core
    control: BacktestControl
    journal: Journal
    samples: list = field(default_factory=list)
    lines: int = 0
    wall_s: float = 0.0
    cache_hit: bool | None = None


def backtest_config(cfg: Config, strategy: str | None, seed: int | None) -> Config:
    """The config a backtest runs: the user's, with the market source a replay at full
    speed, trading from the first event, and heavy analytics off (their fits arrive at
    wall-clock moments: a replay's orders would depend on the machine's speed)."""
    over: dict[str, Any] = {"market": {"source": "replay", "replay_speed": 0.0},
                            "daemon": {"auto_start": True},
                            "analytics": {"enabled": False}}
    if strategy is not None:
        over["strategy"] = {"name": strategy}
    if seed is not None:
        over["paper"] = {"seed": seed}
    return with_overrides(cfg, **over)


def summary_money(text: str | None) -> str:
    """A report.json amount for the one-line summary: report.json keeps exact decimals (an
    average entry is a 28-digit quotient, so a realised PnL can end in ...000000000522);
    a person reads it to 8 places, the exchanges' finest unit of account."""
    if text is None:
        return "n/a"
    d = Decimal(text).quantize(Decimal("0.00000001"))
    return format(d.normalize() if d else Decimal(0), "f")


def run_backtest(cfg: Config, files: list[str], report_dir: Path, *,
                 progress: TextIO | None = None, sample_interval_s: float = 1.0,
                 cache_dir: Path | None = None, use_cache: bool = False) -> Backtest:
    """Replay `files` through the core; returns the finished run (journal still open)."""
    from daemon.backtest.report import EquitySample

    report_dir.mkdir(parents=True, exist_ok=True)
    path = report_dir / JOURNAL
    for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        p.unlink(missing_ok=True)   # a backtest starts from nothing, every time
    journal = Journal(path, durable=False)
    run = journal.begin_run()
    journal.audit("backtest", version=__version__, files=[str(f) for f in files])
    latch = KillLatch()
    control = BacktestControl(journal, latch)
    core = build_core(cfg, journal=journal, latch=latch, control=control,
                      state=lambda: control.state, run_number=run, replay=list(files))
    control.gateway = core.gateway
    bt = Backtest(cfg, list(files), report_dir, core, control, journal)
    engine, feed, clock, gw = core.engine, core.feed, core.clock, core.gateway
    interval = int(sample_interval_s * 1e9)
    next_sample = 0
    bar = None
    t0 = time.monotonic()

    def sample(ts: int) -> None:
        marks = {s: feed.mark(s) for s in feed.symbols}
        equity = Decimal(0)
        for sym, p in gw.positions.items():
            m = marks.get(sym)
            if m is not None:
                equity += p.pnl_quote(m)   # inverse: coin amounts converted at the mark
            elif not p.qty and gw.instruments[sym].kind == "linear":
                equity += p.realized_pnl - p.fees   # (an inverse one needs a mark)
        bt.samples.append(EquitySample(ts, equity, {s: p.qty for s, p in gw.positions.items()},
                                       marks))

    try:
        groups = feed.replay_groups()
    except ValueError as e:
        raise BacktestError(str(e)) from None
    merged = len(groups) > 1
    if use_cache and not merged:
        cached = cached_events(cfg, feed, files, cache_dir)
        bt.cache_hit = cached.hit
        events: Any = iter(cached)
        total, unit = max(cached.lines, 1), "lines"
        mode = "events"
    elif merged:   # several markets at once: one stream in receive-time order
        events = feed.merged_records()
        total, unit, mode = 1, "bytes", "merged"
    else:
        reader = feed.make_reader(0.0)
        decode = feed.decoder.decode
        events, total, unit, mode = reader, max(reader.bytes_total, 1), "bytes", "raw"
    if progress is not None:
        from daemon.backtest.progress import Progress
        bar = Progress(total, stream=progress, unit=unit)
    on_event = engine.on_event
    n = 0
    try:
        for item in events:
            n += 1
            if mode == "raw":
                ev = decode(item[0], item[1])
                if ev is None:
                    continue
            elif mode == "merged":
                ev = item[2](item[0], item[1])
                if ev is None:
                    continue
            else:
                ev = item
            on_event(ev)
            ts = clock.event_ns
            if ts >= next_sample:
                if next_sample:
                    sample(ts)
                next_sample = ts + interval
            if bar is not None and not n & 4095:
                if mode == "events":
                    bar.update(n, ts, lines=n)
                else:
                    done, total_bytes = feed.bytes_read()
                    bar.total = max(total_bytes, 1)
                    bar.update(done, ts, lines=n)
        feed.lines = n
        feed.finished = True
        engine._on_finished()
        sample(clock.event_ns)
    finally:
        if bar is not None:
            bar.close()
    if engine.failed:
        raise BacktestError(engine.failed)
    bt.lines = n
    bt.wall_s = time.monotonic() - t0
    return bt


def cached_events(cfg: Config, feed: Any, files: list[str], cache_dir: Path | None) -> Any:
    """The decoded events of one market's `files` from the decoded-capture cache (built on
    a miss): the one call both a backtest and a sweep's pre-build make, so they agree on
    the cache key (market prefix, the decoder's default symbol, the reader's settings)."""
    from daemon.market.cache import load_or_build
    (prefix, _paths), = feed.replay_groups()
    return load_or_build([Path(f) for f in files], cache_dir=cache_dir, decoder_prefix=prefix,
                         reader_kwargs=_reader_kwargs(cfg),
                         default_symbol=feed.decoders[prefix].default_symbol)


def _reader_kwargs(cfg: Config) -> dict:
    sc = cfg.sanity
    return {"max_time_jump_s": sc.max_time_jump_s, "max_time_back_s": sc.max_time_back_s}


def meta_of(bt: Backtest, *, sample_interval_s: float) -> dict:
    cfg = bt.cfg
    s = bt.core.engine.strategy
    return {"bot4_version": __version__,
            "files": [Path(f).name for f in bt.files],
            "lines": bt.lines,
            "strategy": {"name": s.name, "params": s.params_dict(), "symbols": s.symbols,
                         "order_notional": str(cfg.strategy.order_notional)},
            "paper": {"seed": cfg.paper.seed, "maker_fee_bps": str(cfg.paper.maker_fee_bps),
                      "taker_fee_bps": str(cfg.paper.taker_fee_bps),
                      "entry_latency_ms": cfg.paper.entry_latency_ms,
                      "md_latency_ms": cfg.paper.md_latency_ms},
            "journal": {"file": JOURNAL, "synchronous": "OFF",
                        "note": "the backtest journal skips the per-commit fsync; the live "
                                "daemon journals with synchronous=FULL"},
            "sample_interval_s": sample_interval_s,
            "states": bt.control.transitions,
            "end": bt.control.summary,
            "engine": {k: v for k, v in bt.core.engine.stats.items()}}


def write_outputs(bt: Backtest, *, sample_interval_s: float = 1.0, png: bool = True) -> dict:
    """report.json (and report.png unless asked not to) in the report directory."""
    from daemon.backtest.report import build_report, write_report

    bt.journal.close()
    gw = bt.core.gateway
    report = build_report(journal_path=bt.report_dir / JOURNAL, samples=bt.samples,
                          sample_interval_s=sample_interval_s,
                          meta=meta_of(bt, sample_interval_s=sample_interval_s),
                          instruments=gw.instruments,
                          pre_trade_rejects=dict(sorted(gw.rejects_by_stage.items())))
    write_report(report, bt.report_dir / REPORT_JSON)
    if png:
        from daemon.backtest.plot import PlotUnavailable, write_png
        try:
            write_png(report, bt.samples, bt.report_dir / REPORT_PNG)
        except PlotUnavailable as e:   # the Pi without the `report` extra: JSON only
            print(f"bot4d backtest: {e}; report.json written without report.png",
                  file=sys.stderr)
    return report


def main(cfg: Config, files: list[str], report_dir: str, *, strategy: str | None,
         seed: int | None, png: bool, use_cache: bool, cache_dir: str | None) -> int:
    """The CLI entry: returns the exit code."""
    try:
        bcfg = backtest_config(cfg, strategy, seed)
    except Exception as e:   # a strategy name the config does not know, a bad seed
        print(f"bot4d backtest: config error: {e}", file=sys.stderr)
        return 78
    out = Path(report_dir)
    try:
        bt = run_backtest(bcfg, files, out, progress=sys.stderr if sys.stderr.isatty()
                          else None, use_cache=use_cache,
                          cache_dir=Path(cache_dir) if cache_dir else None)
        report = write_outputs(bt, png=png)
    except BacktestError as e:
        print(f"bot4d backtest: failed: {e}", file=sys.stderr)
        return 70
    pnl = report.get("pnl", {})
    counts = report.get("counts", {})
    # Wall-clock figures go to the terminal only: report.json is the same on every run.
    print(f"backtest: {bt.lines} lines in {bt.wall_s:.2f} s "
          f"({bt.lines / bt.wall_s if bt.wall_s else 0:,.0f} lines/s"
          f"{', decoded-capture cache ' + ('hit' if bt.cache_hit else 'built') if bt.cache_hit is not None else ''}), "
          f"{counts.get('orders')} orders, {counts.get('fills')} fills, net PnL "
          f"{summary_money(pnl.get('total_net'))}; report in {out}")
    return 0
