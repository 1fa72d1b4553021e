"""`DataQuality`: the facade of the data-quality layers, fed the market events the daemon
already has, keeping counts and a verdict per symbol and layer, and deciding the alerting
layer's outcome.

Layers (issue 11 item 5) and what makes each one a fault:
  1 benford      the rolling first-digit MAD of trade sizes is above Nigrini's marginal
                 band (0.015) and more than `benford_mad_margin` above the MAD of the
                 symbol's own first full window
  2 kalman       a price outlier (innovation test) or a gap (no price for `kalman_gap_s`)
                 in the last poll interval
  3 sources      a reconciliation problem (stale source, disagreement with the consensus,
                 spot/futures divergence) that lasted `source_hold_s`
  4 changepoint  reported only ("changed"): a market regime change is not a data fault
  5 score        the quality score of the last interval is below `score_min`
  6 alerting     the outcome: the most severe action of the layers in fault
  7 monitoring   `status()` (and `bot4ctl quality`), with the REST backfill counts
  and drift (item 4) on 1 s samples of return, spread, event rate and basis.
A layer in fault with an action other than "off" raises one `QualityAlert` when it enters
the fault (or escalates from "reducing" to "breaker"); it re-arms when the layer is ok again.

Feeds: every event belongs to (venue, symbol); the venue given to the constructor is the
primary one (status key = the symbol), another venue's feed of a configured symbol is
keyed "venue:SYMBOL" (e.g. "usdm:BTCUSDT") and is what spot is reconciled against.

Cost: every `on_*` call is O(1) (counters, a ring store, one Kalman step) plus, once per
`changepoint_sample_s` of event time per feed, one reconciliation check; change points,
Benford statistics, drift and the score run in `poll`, at most once per `poll_interval_s`.
Time is always the event time passed in: this module never reads a clock. It never
raises on market data (bad values are counted as invalid), never puts NaN or inf in
`status()`, and never acts: the daemon reads `poll()`'s alerts and acts on them.
"""
from __future__ import annotations

import logging
import math
from collections import deque
from dataclasses import dataclass
from typing import Any

from daemon.config import QualityCfg
from daemon.market.events import Quote, Trade
from daemon.quality import benford as bf
from daemon.quality import score as sc
from daemon.quality.changepoint import Bocpd, Cusum
from daemon.quality.drift import DriftMonitor
from daemon.quality.kalman import PriceFilter
from daemon.quality.sources import CrossVenue, VenuePrices

log = logging.getLogger(__name__)

LAYERS = ("benford", "kalman", "sources", "changepoint", "score", "alerting", "monitoring",
          "drift")
SERIES = ("return_bps", "spread_bps", "events", "basis_bps")
# BOCPD (an O(bocpd_max_run) numpy step per sample) runs on the price series only; the
# CUSUM (O(1)) and drift run on all of them.
BOCPD_SERIES = ("return_bps", "basis_bps")
_SEVERITY = {"off": 0, "reducing": 1, "breaker": 2}
_MAX_PENDING = 3600           # samples kept when poll is not called (bounded memory)
_MAX_BACKFILL = 100           # missing-trade windows kept for the backfill
_INF = math.inf               # (a global, not math.inf's two lookups, on the per-event paths)


@dataclass(frozen=True, slots=True)
class QualityAlert:
    symbol: str     # the feed's key: "BTCUSDT" (primary venue) or "usdm:BTCUSDT"
    layer: str
    action: str     # "reducing" | "breaker"
    reason: str
    ts_ns: int


@dataclass(frozen=True, slots=True)
class MissingTrades:
    """Trades the exchange numbered but we never received: the backfill's window."""
    symbol: str
    venue: str
    first_id: int
    last_id: int
    start_ms: int       # exchange time of the trade before the hole
    end_ms: int         # exchange time of the trade after it


def _fin(x: Any, nd: int = 6) -> Any:
    """A JSON-safe number: rounded, and None instead of NaN/inf."""
    if isinstance(x, float):
        return round(x, nd) if math.isfinite(x) else None
    return x


class _Feed:
    """Everything kept for one (venue, symbol)."""

    def __init__(self, cfg: QualityCfg, key: str, symbol: str, venue: str) -> None:
        self.key, self.symbol, self.venue = key, symbol, venue
        self.prices = VenuePrices(cfg.source_trades)
        self.kalman = PriceFilter(cfg.kalman_level_var, cfg.kalman_obs_var, cfg.kalman_z,
                                  cfg.kalman_adapt_n, cfg.kalman_gap_s)
        self.digits = bf.RollingDigits(cfg.benford_window)
        self.cross = CrossVenue(cfg.cross_venue_bps, cfg.cross_venue_halflife_s,
                                cfg.changepoint_sample_s)
        self.cusum = {s: Cusum(cfg.cusum_k, cfg.cusum_h, cfg.cusum_warmup) for s in SERIES}
        self.bocpd = {s: Bocpd(cfg.bocpd_expected_run, cfg.bocpd_max_run,
                               cfg.bocpd_clip_sigmas, cfg.cusum_warmup)
                      for s in BOCPD_SERIES}
        self.drift = {s: DriftMonitor(cfg.drift_reference, cfg.drift_live, cfg.drift_bins,
                                      cfg.drift_psi_max, cfg.drift_kl_max,
                                      cfg.drift_wasserstein_max) for s in SERIES}
        # Interval counters (since the last poll); totals are kept in `total`.
        self.trades = self.quotes = self.books = 0   # events = their sum (`ev`)
        self.invalid = self.late = self.missing = self.depth_gaps = self.feed_gaps = 0
        self.duplicates = 0
        self.silence = 0
        self.samples = self.sample_problems = 0
        self.total: dict[str, int] = dict.fromkeys(
            ("events", "trades", "quotes", "books", "invalid", "late", "missing_trades",
             "depth_gaps", "feed_gaps", "duplicates", "samples", "sample_problems",
             "stale", "disagree", "no_majority", "cross_venue", "polls"), 0)
        self.last_ns = 0
        self.silence_mark = 0
        self.iv_start = 0
        self.first_ns = 0
        self.last_id: int | None = None
        self.last_exch_ms = 0
        self.lat_min = math.inf
        self.lat_mins: deque[float] = deque(maxlen=10)
        self.lat_floor = math.inf
        self.book_ok_once = False
        self.book_gaps_seen = 0
        self.next_sample = 0
        self.ev_at_sample = 0
        self.prev_consensus: float | None = None
        self.consensus: float | None = None
        self.consensus_ns = 0
        self.pending: list[tuple[float, float, float, float]] = []
        self.problem_since: dict[tuple[str, str], int] = {}
        self.sources_fault: str | None = None
        self.last_problem: str | None = None
        self.k_outliers = self.k_gaps = self.k_obs = 0    # kalman totals at the last poll
        self.verdict: dict[str, str] = dict.fromkeys(LAYERS, "warming")
        self.reason: dict[str, str] = {}
        self.score = 1.0
        self.parts: dict[str, float] = dict.fromkeys(sc.PARTS, 1.0)
        self.benford: dict[str, Any] = {}
        self.cp_changed = 0
        self.active: dict[str, str] = {}
        self.alerts = 0
        # REST backfill of the missing-trade windows (live only): what `on_backfill` saw.
        self.backfill: dict[str, Any] = {"windows": 0, "fetched": 0, "failed": 0,
                                         "given_up": 0, "trades": 0, "last_error": None}

    @property
    def ev(self) -> int:
        """Events in the current interval (kept as three counters: one add per event)."""
        return self.trades + self.quotes + self.books


class DataQuality:
    def __init__(self, cfg: QualityCfg, symbols: list[str], venue: str = "spot") -> None:
        self.cfg = cfg
        self.venue = venue
        self.symbols = list(symbols)
        self._feeds: dict[tuple[str, str], _Feed] = {}
        self._primary: dict[str, _Feed] = {}
        for s in self.symbols:
            f = _Feed(cfg, s, s, venue)
            self._feeds[(venue, s)] = f
            self._primary[s] = f
        self._stale_ns = int(cfg.stale_s * 1e9)
        self._src_stale_ns = int(cfg.source_stale_s * 1e9)
        self._hold_ns = int(cfg.source_hold_s * 1e9)
        self._sample_ns = max(int(cfg.changepoint_sample_s * 1e9), 1)
        self._poll_ns = int(cfg.poll_interval_s * 1e9)
        self._late_ms = cfg.late_ms
        self._next_poll = 0
        self.next_poll_ns = 0       # poll() before this event time returns [] at once
        self.polls = 0
        self.unknown = 0            # events of symbols not configured (ignored)
        self.backfill: deque[MissingTrades] = deque(maxlen=_MAX_BACKFILL)

    # -- feeding (hot path) ---------------------------------------------------------------
    def _feed(self, symbol: str, venue: str | None) -> _Feed | None:
        if venue is None or venue == self.venue:
            return self._primary.get(symbol)
        f = self._feeds.get((venue, symbol))
        if f is None:
            if symbol not in self._primary:
                return None
            f = self._feeds[(venue, symbol)] = _Feed(self.cfg, f"{venue}:{symbol}", symbol,
                                                     venue)
        return f

    def _tick(self, f: _Feed, ts: int) -> None:
        last = f.last_ns
        if ts > last:
            if last:
                start = last + self._stale_ns
                if start < f.silence_mark:
                    start = f.silence_mark
                if ts > start:
                    f.silence += ts - start
                    f.silence_mark = ts
            else:
                f.first_ns = f.iv_start = ts
                f.next_sample = ts + self._sample_ns
            f.last_ns = ts
        if ts >= f.next_sample:
            self._sample(f, ts)

    def on_trade(self, t: Trade, venue: str | None = None) -> None:
        f = self._primary.get(t.symbol) if venue is None or venue == self.venue \
            else self._feed(t.symbol, venue)
        if f is None:
            self.unknown += 1
            return
        ts = t.ts_ns
        f.trades += 1
        if ts >= f.next_sample or ts - f.last_ns > self._stale_ns:
            self._tick(f, ts)
        elif ts > f.last_ns:
            f.last_ns = ts
        price, qty = t.price, t.qty
        if not (0 < price < _INF and 0 < qty < _INF):
            f.invalid += 1
            return
        tid = t.trade_id
        if f.last_id is not None:
            d = tid - f.last_id
            if d > 1:
                f.missing += d - 1
                f.backfill["windows"] += 1
                self.backfill.append(MissingTrades(t.symbol, f.venue, f.last_id + 1, tid - 1,
                                                   f.last_exch_ms, t.exch_ms))
            elif d <= 0:
                f.duplicates += 1     # replayed or out of order: not new information
                return
        f.last_id = tid
        f.last_exch_ms = t.exch_ms
        lat = ts * 1e-6 - t.exch_ms
        if lat < f.lat_min:
            f.lat_min = lat
        if lat - f.lat_floor > self._late_ms:
            f.late += 1
        f.kalman.update(price, ts)
        f.prices.on_trade(price, ts)
        f.digits.push(qty)

    def on_quote(self, q: Quote, venue: str | None = None) -> None:
        # ~70 % of all events: kept to a few attribute stores.
        f = self._primary.get(q.symbol) if venue is None or venue == self.venue \
            else self._feed(q.symbol, venue)
        if f is None:
            self.unknown += 1
            return
        f.quotes += 1
        ts = q.ts_ns
        if ts >= f.next_sample or ts - f.last_ns > self._stale_ns:
            self._tick(f, ts)
        elif ts > f.last_ns:
            f.last_ns = ts
        bid, ask = q.bid, q.ask
        if not (0 < bid <= ask < math.inf):
            f.invalid += 1
            return
        p = f.prices
        p.bid = bid
        p.ask = ask
        p.quote_ns = ts

    def on_book(self, symbol: str, book: Any, ts_ns: int, venue: str | None = None) -> None:
        """After each depth diff or snapshot the book applied (`book`: OrderBook)."""
        f = self._primary.get(symbol) if venue is None or venue == self.venue \
            else self._feed(symbol, venue)
        if f is None:
            self.unknown += 1
            return
        f.books += 1
        if ts_ns >= f.next_sample or ts_ns - f.last_ns > self._stale_ns:
            self._tick(f, ts_ns)
        elif ts_ns > f.last_ns:
            f.last_ns = ts_ns
        gaps = book.stats["gaps"]
        if gaps != f.book_gaps_seen:
            f.depth_gaps += gaps - f.book_gaps_seen
            f.book_gaps_seen = gaps
        if not book.valid:
            # Before the first sync the book is simply not built yet: not a data fault.
            if f.book_ok_once:
                f.invalid += 1
            return
        f.book_ok_once = True
        p = f.prices           # the mid is read from the book once per sample, not here
        p.book = book
        p.book_ns = ts_ns

    def on_event(self, ev: object, book: Any = None, venue: str | None = None) -> None:
        """Any market event (what the engine hands over for each admitted event): quotes,
        trades, and depth diffs/snapshots with the book that applied them."""
        t = type(ev)
        if t is Quote:
            self.on_quote(ev, venue)          # type: ignore[arg-type]
        elif t is Trade:
            self.on_trade(ev, venue)          # type: ignore[arg-type]
        elif book is not None:
            self.on_book(ev.symbol, book, ev.ts_ns, venue)   # type: ignore[attr-defined]

    def on_gap(self, symbol: str, ts_ns: int, reason: str, venue: str | None = None) -> None:
        """A gap the feed itself knows of (reconnect, resync): counted as missing data."""
        f = self._feed(symbol, venue)
        if f is None:
            return
        f.feed_gaps += 1
        log.info("%s: feed gap at %d: %s", f.key, ts_ns, reason)

    # -- once per sample interval of a feed --------------------------------------------------
    def _sample(self, f: _Feed, ts: int) -> None:
        cfg = self.cfg
        f.next_sample = ts + self._sample_ns
        consensus, problems = f.prices.check(ts, self._src_stale_ns, cfg.source_max_bps)
        basis = math.nan
        if consensus is not None:
            f.prev_consensus, f.consensus, f.consensus_ns = f.consensus, consensus, ts
            # The spot feed (else the primary venue's) owns the basis and samples it.
            other = self._counterpart(f)
            if other is not None and other.consensus is not None \
                    and ts - other.consensus_ns <= self._src_stale_ns \
                    and (f.venue == "spot" or other.venue != "spot" and f.venue == self.venue):
                off = f.cross.sample(consensus, other.consensus)
                if f.cross.last_basis is not None:
                    basis = f.cross.last_basis
                if off is not None:
                    problems.append(("cross_venue", other.key, round(off, 3)))
        f.samples += 1
        seen = set()
        for kind, source, figure in problems:
            key = (kind, source)
            seen.add(key)
            f.total[kind] += 1
            since = f.problem_since.setdefault(key, ts)
            f.last_problem = f"{kind} {source} ({figure:g})"
            if ts - since >= self._hold_ns and f.sources_fault is None:
                f.sources_fault = (f"{kind} {source}: {figure:g} "
                                   f"{'s silent' if kind == 'stale' else 'bps'}, for "
                                   f"{(ts - since) / 1e9:.1f} s")
        for key in [k for k in f.problem_since if k not in seen]:
            del f.problem_since[key]
        if problems:
            f.sample_problems += 1
        ret = math.nan
        if f.prev_consensus and consensus is not None and f.consensus_ns == ts:
            ret = (consensus / f.prev_consensus - 1.0) * 1e4
        spread = f.prices.half_spread_bps * 2.0 if f.prices.quote_ns else math.nan
        rate = float(f.ev + f.total["events"] - f.ev_at_sample)
        f.ev_at_sample = f.ev + f.total["events"]
        if len(f.pending) < _MAX_PENDING:
            f.pending.append((ret, spread, rate, basis))

    def _counterpart(self, f: _Feed) -> _Feed | None:
        for (_venue, sym), g in self._feeds.items():
            if sym == f.symbol and g is not f:
                return g
        return None

    # -- the poll: heavy tests, the score, verdicts and alerts ------------------------------
    def poll(self, now_ns: int) -> list[QualityAlert]:
        """Run the heavy tests if `poll_interval_s` has passed since the last run (event
        time); the new alerts (layers that entered a fault or escalated), else []. Before
        any feed has data a poll evaluates and schedules nothing."""
        if now_ns < self._next_poll:
            return []
        feeds = [f for f in self._feeds.values() if f.last_ns]
        if not feeds:
            # Nothing to evaluate yet: the interval starts with the data, on the data's
            # clock (before a replay's first event the engine clock still reads the wall).
            return []
        self._next_poll = self.next_poll_ns = now_ns + self._poll_ns
        self.polls += 1
        alerts: list[QualityAlert] = []
        for f in feeds:
            self._evaluate(f, now_ns)
            alerts.extend(self._alerts(f, now_ns))
        return alerts

    def _evaluate(self, f: _Feed, now: int) -> None:
        cfg = self.cfg
        # Silence up to now (a feed that stopped sends nothing that would count it).
        start = max(f.last_ns + self._stale_ns, f.silence_mark)
        if now > start:
            f.silence += now - start
            f.silence_mark = now
        interval = max(now - f.iv_start, 1)
        # (4) change points and drift on the samples since the last poll
        changed = 0
        for row in f.pending:
            for name, x in zip(SERIES, row):
                if x != x:
                    continue
                if f.cusum[name].update(x) is not None:
                    changed += 1
                b = f.bocpd.get(name)
                if b is not None and b.update(x) is not None:
                    changed += 1
                f.drift[name].push(x)
        f.pending.clear()
        f.cp_changed += changed
        f.verdict["changepoint"] = "changed" if changed else (
            "ok" if f.cusum["return_bps"].tab is not None else "warming")
        # (2) Kalman
        k = f.kalman
        outl, gaps, obs = k.outliers - f.k_outliers, k.gaps - f.k_gaps, k.observations - f.k_obs
        f.k_outliers, f.k_gaps, f.k_obs = k.outliers, k.gaps, k.observations
        worst_z = k.worst_z
        k.worst_z = 0.0
        if outl or gaps:
            f.verdict["kalman"] = "fault"
            f.reason["kalman"] = (f"{outl} price outlier(s) (largest |z| {worst_z:.1f} > "
                                  f"{cfg.kalman_z:g}), {gaps} gap(s) over "
                                  f"{cfg.kalman_gap_s:g} s in {interval / 1e9:.1f} s")
        else:
            f.verdict["kalman"] = "ok" if k.observations > 1 else "warming"
        # (1) Benford
        d = f.digits
        if d.n >= 100:
            m = bf.mad(d.counts)
            f.benford = {"mad": m, "chi2": bf.chi_square(d.counts),
                         "conformity": bf.conformity(m)}
            if d.reference is not None:
                ref = bf.mad(d.reference)
                f.benford["reference_mad"] = ref
                if m > bf.NIGRINI_BANDS[-1][0] and m > ref + cfg.benford_mad_margin:
                    f.verdict["benford"] = "fault"
                    f.reason["benford"] = (f"first-digit MAD {m:.4f} ({bf.conformity(m)}) "
                                           f"vs {ref:.4f} in the reference window, margin "
                                           f"{cfg.benford_mad_margin:g}")
                else:
                    f.verdict["benford"] = "ok"
                    # A whole new window passed without a fault: it becomes the reference,
                    # so the test follows the slow drift of a day's sizes (a manipulation
                    # that ramps up slower than one window per margin is not caught).
                    if d.since_reference >= d.window:
                        d.renew_reference()
        # (3) sources
        if f.sources_fault is not None:
            f.verdict["sources"] = "fault"
            f.reason["sources"] = f.sources_fault
            f.sources_fault = None
        else:
            f.verdict["sources"] = "ok" if f.samples or f.total["samples"] else "warming"
        # drift
        drifted = []
        ready = False
        for name, mon in f.drift.items():
            r = mon.check()
            ready = ready or r["ready"]
            if r.get("drift"):
                drifted.append(f"{name} psi {r['psi']:.3f} kl {r['kl']:.3f} "
                               f"w {r['wasserstein_sd']:.2f} sd")
        f.verdict["drift"] = "fault" if drifted else "ok" if ready else "warming"
        if drifted:
            f.reason["drift"] = "; ".join(drifted)
        # (5) score over the interval
        silence = min(f.silence, interval)
        f.parts = sc.parts(received=f.trades,
                           missing=f.missing + f.depth_gaps + f.feed_gaps, events=f.ev,
                           late=f.late, silence_ns=silence, interval_ns=interval,
                           invalid=f.invalid, samples=f.samples,
                           sample_problems=f.sample_problems, filtered=obs, outliers=outl)
        f.score = sc.score(f.parts)
        if f.score < cfg.score_min:
            f.verdict["score"] = "fault"
            worst = min(f.parts, key=f.parts.get)
            f.reason["score"] = (f"score {f.score:.3f} < {cfg.score_min:g} (lowest: {worst} "
                                 f"{f.parts[worst]:.3f}; {f.missing} trades missing, "
                                 f"{f.depth_gaps} depth gaps, {silence / 1e9:.1f} s silent, "
                                 f"{f.invalid} invalid of {f.ev} events)")
        else:
            f.verdict["score"] = "ok"
        # roll the interval into the totals
        t = f.total
        for name, v in (("events", f.ev), ("trades", f.trades), ("quotes", f.quotes),
                        ("books", f.books), ("invalid", f.invalid), ("late", f.late),
                        ("missing_trades", f.missing), ("depth_gaps", f.depth_gaps),
                        ("feed_gaps", f.feed_gaps), ("duplicates", f.duplicates),
                        ("samples", f.samples), ("sample_problems", f.sample_problems)):
            t[name] += v
        t["polls"] += 1
        f.trades = f.quotes = f.books = f.invalid = f.late = f.missing = 0
        f.depth_gaps = f.feed_gaps = f.duplicates = f.silence = 0
        f.samples = f.sample_problems = 0
        if math.isfinite(f.lat_min):
            f.lat_mins.append(f.lat_min)
            f.lat_floor = min(f.lat_mins)
        f.lat_min = math.inf
        f.iv_start = now
        f.verdict["monitoring"] = "ok"

    def _alerts(self, f: _Feed, now: int) -> list[QualityAlert]:
        cfg = self.cfg
        out: list[QualityAlert] = []
        for layer, action in (("benford", cfg.benford_action), ("kalman", cfg.kalman_action),
                              ("sources", cfg.sources_action), ("drift", cfg.drift_action),
                              ("score", cfg.score_action)):
            if f.verdict[layer] != "fault":
                f.active.pop(layer, None)
                continue
            if layer == "score" and f.score < cfg.score_breaker_below:
                action = "breaker"
            if action == "off":
                continue
            if _SEVERITY[action] > _SEVERITY.get(f.active.get(layer, "off"), 0):
                f.active[layer] = action
                f.alerts += 1
                out.append(QualityAlert(f.key, layer, action, f.reason.get(layer, layer), now))
        worst = max(f.active.values(), key=_SEVERITY.__getitem__, default="none")
        f.verdict["alerting"] = "ok" if worst == "none" else worst
        return out

    # -- reading -------------------------------------------------------------------------------
    def outcome(self) -> str:
        """The most severe action in force over all feeds: "none", "reducing", "breaker"."""
        worst = "none"
        for f in self._feeds.values():
            for a in f.active.values():
                if worst == "none" or _SEVERITY[a] > _SEVERITY[worst]:
                    worst = a
        return worst

    def missing_trades(self) -> list[MissingTrades]:
        """Windows of trades never received (oldest first), for the REST backfill; taken."""
        out = list(self.backfill)
        self.backfill.clear()
        return out

    def on_backfill(self, window: MissingTrades, trades: int, error: str | None = None,
                    gave_up: bool = False) -> None:
        """The outcome of one REST fetch of `window`: `trades` aggregate trades, or `error`
        (`gave_up`: the last attempt). Counted only: aggregate ids are not the stream's
        trade ids, so the trades never re-enter the id sequence or the layers."""
        f = self._feed(window.symbol, window.venue)
        if f is None:
            return
        b = f.backfill
        if error is None:
            b["fetched"] += 1
            b["trades"] += trades
        else:
            b["failed"] += 1
            b["given_up"] += int(gave_up)
            b["last_error"] = error[:300]

    def status(self) -> dict:
        """{"polls", "outcome", "symbols": {key: {...}}}, JSON-able, no NaN/inf."""
        syms: dict[str, dict] = {}
        for f in self._feeds.values():
            t = f.total
            k = f.kalman
            lvl = k.level()
            d = f.digits
            cross = f.cross
            layers = {
                "benford": {"verdict": f.verdict["benford"], "trades": d.n,
                            "skipped": d.skipped,
                            **{kk: _fin(v) for kk, v in f.benford.items()}},
                "kalman": {"verdict": f.verdict["kalman"], "prices": k.observations,
                           "outliers": k.outliers, "gaps": k.gaps, "rejected": k.rejected,
                           "level": _fin(lvl, 8), "last_z": _fin(min(k.last_z, 1e9), 3)},
                "sources": {"verdict": f.verdict["sources"], "samples": t["samples"] + f.samples,
                            "stale": t["stale"], "disagree": t["disagree"],
                            "no_majority": t["no_majority"], "cross_venue": t["cross_venue"],
                            "basis_bps": _fin(cross.last_basis, 3),
                            "basis_avg_bps": _fin(cross.avg, 3) if cross.n else None,
                            "last_problem": f.last_problem},
                "changepoint": {"verdict": f.verdict["changepoint"], "changes": f.cp_changed,
                                "cusum": {s: c.signals for s, c in f.cusum.items()},
                                "bocpd": {s: len(b.changes) for s, b in f.bocpd.items()}},
                "score": {"verdict": f.verdict["score"], "score": _fin(f.score, 4),
                          "parts": {p: _fin(v, 4) for p, v in f.parts.items()}},
                "alerting": {"verdict": f.verdict["alerting"], "alerts": f.alerts,
                             "active": dict(f.active)},
                "monitoring": {"verdict": f.verdict["monitoring"],
                               **{kk: t[kk] + getattr(f, a) for kk, a in (
                                   ("events", "ev"), ("trades", "trades"),
                                   ("quotes", "quotes"), ("books", "books"),
                                   ("invalid", "invalid"), ("late", "late"),
                                   ("missing_trades", "missing"),
                                   ("depth_gaps", "depth_gaps"),
                                   ("feed_gaps", "feed_gaps"),
                                   ("duplicates", "duplicates"))},
                               "last_event_ns": f.last_ns, "backfill": dict(f.backfill)},
                "drift": {"verdict": f.verdict["drift"],
                          **{s: {kk: _fin(v) for kk, v in m.last.items()}
                             for s, m in f.drift.items()}},
            }
            for name, lay in layers.items():
                if f.verdict.get(name) == "fault" and name in f.reason:
                    lay["reason"] = f.reason[name]
            syms[f.key] = {"venue": f.venue, "symbol": f.symbol, "score": _fin(f.score, 4),
                           "parts": {p: _fin(v, 4) for p, v in f.parts.items()},
                           "outcome": f.verdict["alerting"] if f.active else "none",
                           "layers": layers}
        return {"polls": self.polls, "outcome": self.outcome(), "unknown_events": self.unknown,
                "symbols": syms}
