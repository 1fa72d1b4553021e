"""Prometheus metrics for /metrics: one collector that reads the supervisor and the operator's
view at scrape time, so between scrapes the daemon does nothing for them.

Names follow Prometheus conventions: `bot4_` prefix, base units (seconds, bytes; money in
the quote currency, quantities in the base currency), `_total` for counters, labels with
small fixed value sets (state, symbol, component, stage...). The process metrics
(`bot4_process_resident_memory_bytes`, CPU, open fds) come from prometheus_client's
ProcessCollector.

What it must never do: change anything it reads, take a lock the loop needs, or raise out
of a scrape because one source is missing (a section that is absent is skipped; what
exists is still exported).
"""
from __future__ import annotations

import logging
import time
from typing import Any, Iterator

from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.core import (CounterMetricFamily, GaugeMetricFamily,
                                    HistogramMetricFamily, Metric, SummaryMetricFamily)

from daemon import __version__
from daemon.states import State

log = logging.getLogger("bot4d.metrics")

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_LATCH_KINDS = ("estop", "halt")
_BREAKER_STATES = ("closed", "open", "half_open")


def _num(v: Any) -> float:
    try:
        return float(v)
    except (TypeError, ValueError, ArithmeticError):
        return float("nan")


class Bot4Collector:
    def __init__(self, op: Any) -> None:
        self.op = op

    def collect(self) -> Iterator[Metric]:
        for part in (self._state, self._safety, self._orders, self._money, self._market,
                     self._loop, self._watchdog, self._journal, self._view):
            try:
                yield from part()
            except Exception:   # noqa: BLE001 - one broken source must not empty the scrape
                log.exception("metrics: %s failed", part.__name__)

    def _state(self) -> Iterator[Metric]:
        sup, op = self.op.sup, self.op
        info = GaugeMetricFamily("bot4_info", "bot4d build and mode", labels=["version", "sim"])
        info.add_metric([__version__, str(bool(sup.opts.sim)).lower()], 1)
        yield info
        g = GaugeMetricFamily("bot4_state", "1 for the daemon's current trading state",
                              labels=["state"])
        for s in State:
            g.add_metric([s.value], 1 if sup.state is s else 0)
        yield g
        c = CounterMetricFamily("bot4_state_transitions", "state changes into each state",
                                labels=["state"])
        for s in State:
            c.add_metric([s.value], op.transitions.get(s.value, 0))
        yield c
        yield GaugeMetricFamily("bot4_uptime_seconds", "seconds since the daemon started",
                                value=time.monotonic() - sup.started)

    def _safety(self) -> Iterator[Metric]:
        sup, op = self.op.sup, self.op
        g = GaugeMetricFamily("bot4_latch_tripped", "1 when the kill latch is tripped, by kind",
                              labels=["kind"])
        kind = sup.latch.kind.value if sup.latch.kind is not None else None
        for k in _LATCH_KINDS:
            g.add_metric([k], 1 if sup.latch.tripped and kind == k else 0)
        yield g
        panel = getattr(sup, "panel", None)
        if panel is not None:
            yield GaugeMetricFamily("bot4_estop_circuit_closed",
                                    "1 when the e-stop circuit is closed (healthy)",
                                    value=1 if panel.estop.circuit_closed() else 0)
        c = CounterMetricFamily("bot4_estop_edges", "e-stop edges handled by the loop "
                                "(open: a press that tripped; close: a release)",
                                labels=["edge"])
        for e, n in op.estop_edges.items():
            c.add_metric([e], n)
        yield c
        from daemon.operator.view import breaker_states
        g = GaugeMetricFamily("bot4_breaker_state", "1 for each circuit breaker's current "
                              "state", labels=["breaker", "state"])
        states = breaker_states(sup)
        for name, state in states.items():
            for s in _BREAKER_STATES:
                g.add_metric([name, s], 1 if state == s else 0)
        yield g
        c = CounterMetricFamily("bot4_breaker_trips", "moves of each breaker into open "
                                "(sampled every 0.5 s)", labels=["breaker"])
        for name in sorted(set(states) | set(op.breaker_trips)):
            c.add_metric([name], op.breaker_trips.get(name, 0))
        yield c

    def _orders(self) -> Iterator[Metric]:
        gw = getattr(self.op.sup, "gateway", None)
        if gw is None:
            return
        st = gw.stats
        yield CounterMetricFamily("bot4_orders_submitted", "orders sent to the venue",
                                  value=st.get("submitted", 0))
        yield CounterMetricFamily("bot4_order_cancels", "cancel requests sent",
                                  value=st.get("cancels", 0))
        yield CounterMetricFamily("bot4_fills", "fills applied", value=st.get("fills", 0))
        by_stage = getattr(gw, "rejects_by_stage", None)
        c = CounterMetricFamily("bot4_orders_rejected", "orders refused by the gateway (by "
                                "check) or rejected by the venue", labels=["reason"])
        if by_stage is not None:
            for stage, n in sorted(by_stage.items()):
                c.add_metric([stage], n)
        else:
            c.add_metric(["gateway"], st.get("rejected", 0))
        c.add_metric(["venue"], self.op.orders_closed.get("rejected", 0))
        yield c
        c = CounterMetricFamily("bot4_orders_closed", "orders that ended, by final status",
                                labels=["status"])
        for k in ("filled", "cancelled", "rejected", "expired"):
            c.add_metric([k], self.op.orders_closed.get(k, 0))
        yield c
        yield GaugeMetricFamily("bot4_orders_open", "orders open at the venue",
                                value=len(gw.open))

    def _money(self) -> Iterator[Metric]:
        total, per = self.op.pnl()
        yield GaugeMetricFamily("bot4_pnl", "PnL in quote currency: realised - fees + "
                                "unrealised at the trusted mark", value=_num(total))
        gauges = {
            "qty": GaugeMetricFamily("bot4_position", "position: base currency, contracts for an "
                                     "inverse (COIN-M) instrument",
                                     labels=["symbol"]),
            "realized": GaugeMetricFamily("bot4_realized_pnl", "realised PnL, quote currency",
                                          labels=["symbol"]),
            "unrealized": GaugeMetricFamily("bot4_unrealized_pnl", "unrealised PnL at the "
                                            "trusted mark, quote currency", labels=["symbol"]),
            "fees": GaugeMetricFamily("bot4_fees", "fees paid, quote currency",
                                      labels=["symbol"]),
        }
        for sym, d in per.items():
            for k, g in gauges.items():
                g.add_metric([sym], _num(d[k]))
        yield from gauges.values()

    def _market(self) -> Iterator[Metric]:
        m = getattr(self.op.sup, "market", None)
        if m is None:
            return
        valid = GaugeMetricFamily("bot4_book_valid", "1 when the symbol's order book is "
                                  "trusted", labels=["symbol"])
        gaps = CounterMetricFamily("bot4_book_gaps", "order book sequence gaps",
                                   labels=["symbol"])
        resyncs = CounterMetricFamily("bot4_book_resyncs", "order book resyncs",
                                      labels=["symbol"])
        for sym, ok in m.book_validity().items():
            valid.add_metric([sym], 1 if ok else 0)
            st = m.books[sym].stats
            gaps.add_metric([sym], st.get("gaps", 0))
            resyncs.add_metric([sym], st.get("resyncs", 0))
        yield from (valid, gaps, resyncs)
        age = GaugeMetricFamily("bot4_market_data_age_seconds", "seconds since the symbol's "
                                "book last moved (market-data lag, 0.5 s resolution)",
                                labels=["symbol"])
        for sym, a in self.op.market_age().items():
            age.add_metric([sym], a)
        yield age
        ev = sum(v for k, v in m.decoder.stats.items() if k in _event_kinds())
        yield CounterMetricFamily("bot4_market_events", "market events decoded", value=ev)

    def _loop(self) -> Iterator[Metric]:
        h = self.op.loop_lag
        yield HistogramMetricFamily("bot4_event_loop_lag_seconds", "how late the event loop "
                                    "woke a 0.5 s timer", buckets=h.cumulative(),
                                    sum_value=h.sum)
        yield GaugeMetricFamily("bot4_event_loop_lag_max_seconds", "largest event-loop lag "
                                "seen since start", value=h.max)

    def _watchdog(self) -> Iterator[Metric]:
        sup = self.op.sup
        yield CounterMetricFamily("bot4_watchdog_pings", "WATCHDOG=1 pings sent to systemd",
                                  value=sup.pings)
        yield GaugeMetricFamily("bot4_watchdog_pings_blocked", "1 while pings are withheld "
                                "(a stalled component or a fault: systemd will restart us)",
                                value=1 if sup._pings_blocked else 0)
        age = GaugeMetricFamily("bot4_heartbeat_age_seconds", "seconds since each component's "
                                "last heartbeat", labels=["component"])
        dl = GaugeMetricFamily("bot4_heartbeat_deadline_seconds", "each component's heartbeat "
                               "deadline", labels=["component"])
        for name, d in sup.watchdog.snapshot().items():
            if isinstance(d, dict):
                if "age_s" in d:
                    age.add_metric([name], _num(d["age_s"]))
                if "deadline_s" in d:
                    dl.add_metric([name], _num(d["deadline_s"]))
        yield from (age, dl)

    def _journal(self) -> Iterator[Metric]:
        sup = self.op.sup
        j = getattr(sup, "journal", None)
        if j is None:
            return
        yield CounterMetricFamily("bot4_journal_commits", "durable journal commits",
                                  value=j.commits)
        if hasattr(j, "commit_seconds_sum"):
            yield SummaryMetricFamily("bot4_journal_commit_seconds", "journal COMMIT "
                                      "latency (fsync included)", count_value=j.commits,
                                      sum_value=j.commit_seconds_sum)
            yield GaugeMetricFamily("bot4_journal_commit_max_seconds", "slowest journal "
                                    "COMMIT since start", value=j.commit_seconds_max)
        yield GaugeMetricFamily("bot4_journal_ok", "0 once a journal write has failed",
                                value=1 if sup.journal_failed is None else 0)

    def _view(self) -> Iterator[Metric]:
        a = self.op.alerts.status()
        c = CounterMetricFamily("bot4_alerts", "alerts by outcome", labels=["outcome"])
        for k in ("queued", "deduped", "rate_limited", "queue_full", "filtered", "given_up"):
            c.add_metric([k], a.get(k, 0))
        yield c
        yield CounterMetricFamily("bot4_alert_sends", "alert deliveries to one URL",
                                  value=a.get("sent", 0))
        yield CounterMetricFamily("bot4_alert_send_failures", "failed alert deliveries "
                                  "(each retry counts)", value=a.get("failed_attempts", 0))
        yield GaugeMetricFamily("bot4_alerts_pending", "alerts waiting to be delivered",
                                value=a.get("pending", 0))
        web = self.op.web
        if web is not None:
            yield GaugeMetricFamily("bot4_web_clients", "status pages connected for live "
                                    "updates", value=web.clients)


def _event_kinds() -> frozenset[str]:
    from daemon.market.feed import _EVENT_KINDS
    return frozenset(_EVENT_KINDS)


def registry(op: Any) -> CollectorRegistry:
    """A registry of our own (not the global one): nothing else registers into it."""
    reg = CollectorRegistry(auto_describe=False)
    reg.register(Bot4Collector(op))
    ProcessCollector(namespace="bot4", registry=reg)
    return reg


def render(reg: CollectorRegistry) -> bytes:
    return generate_latest(reg)
