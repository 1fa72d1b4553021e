"""Builds the trading core from a config: the same pieces, wired the same way, for the
daemon (`bot4d run`) and for a backtest (`bot4d backtest`).

clock → feed → paper venue → protection (risk + breakers) → gateway → strategy →
features, data quality, analytics → engine. The caller owns the journal, the kill latch
and the state machine (`control`); this module opens no file, socket or pin.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable

from daemon.config import Config
from daemon.engine.clock import EngineClock
from daemon.engine.engine import Control, Engine
from daemon.engine.executor import Executor
from daemon.execution.gateway import OrderGateway
from daemon.execution.orders import Instrument
from daemon.execution.paper import PaperVenue
from daemon.features.engine import FeatureEngine
from daemon.market.feed import MarketFeed
from daemon.protection import Protection
from daemon.quality.monitor import DataQuality
from daemon.safety.latch import KillLatch
from daemon.store.journal import Journal
from daemon.strategy.registry import build as build_strategy

log = logging.getLogger(__name__)


@dataclass
class Core:
    clock: EngineClock
    feed: MarketFeed
    venue: PaperVenue
    protection: Protection
    gateway: OrderGateway
    engine: Engine
    features: FeatureEngine | None
    quality: DataQuality | None
    restored: list[str]   # what protection restored from the journal (logged by the caller)


def instruments(cfg: Config) -> dict[str, Instrument]:
    return {s: Instrument(s, i.tick_size, i.lot_size, i.min_notional, kind=i.kind,
                          contract_size=i.contract_size)
            for s, i in cfg.instruments.items()}


def paper_venue(cfg: Config) -> PaperVenue:
    """The paper venue, with each instrument's contract (inverse fees are in coin)."""
    p = cfg.paper
    return PaperVenue(maker_fee_bps=p.maker_fee_bps, taker_fee_bps=p.taker_fee_bps,
                      entry_latency_ns=int(p.entry_latency_ms * 1e6),
                      md_latency_ns=int(p.md_latency_ms * 1e6),
                      jitter_ns=int(p.latency_jitter_ms * 1e6), seed=p.seed,
                      lot_sizes={s: i.lot_size for s, i in cfg.instruments.items()},
                      instruments=instruments(cfg))


def build_core(cfg: Config, *, journal: Journal, latch: KillLatch, control: Control,
               state: Callable[[], Any], run_number: int, replay: list[str],
               feed_heartbeat: Any = None, strategy_heartbeat: Any = None,
               on_feed_error: Callable[[str], None] | None = None,
               analytics_factory: Callable[[FeatureEngine | None, EngineClock], Any] | None
               = None) -> Core:
    """`state`: the trading state as the gateway reads it; `analytics_factory`: the
    daemon's heavy-analytics runner (None in a backtest: its fits arrive at wall-clock
    moments, which would make a replay's orders depend on the machine's speed)."""
    clock = EngineClock("event" if cfg.market.source == "replay" else "wall")
    feed = MarketFeed(cfg, replay=replay, heartbeat=feed_heartbeat, on_error=on_feed_error,
                      clock=clock)
    venue = paper_venue(cfg)
    protection = Protection(cfg, journal, [venue.name], clock=clock)
    restored = protection.restore()
    gateway = OrderGateway(latch=latch, state=state, breakers=protection.board,
                           risk=protection.risk, instruments=instruments(cfg), journal=journal,
                           venue=venue, session=f"r{run_number}", clock=clock, mark=feed.mark)
    strategy = build_strategy(cfg.strategy, list(feed.symbols))
    features = quality = analytics = None
    if cfg.features.enabled:   # streaming features: one more stage on the market events
        features = FeatureEngine(cfg.features, list(feed.symbols), contract_usd={
            s: i.contract_size for s, i in cfg.instruments.items() if i.kind == "inverse"})
        protection.features = features   # toxic flow reads VPIN from the store
    if cfg.quality.enabled:   # the data-validation layers read every sane market event
        quality = DataQuality(cfg.quality, list(feed.symbols), venue=cfg.market.exchange)
    if analytics_factory is not None and cfg.analytics.enabled:
        analytics = analytics_factory(features, clock)
    engine = Engine(cfg, clock=clock, feed=feed, venue=venue, gateway=gateway,
                    protection=protection, strategy=strategy, control=control,
                    features=features, quality=quality, analytics=analytics,
                    heartbeat=strategy_heartbeat)
    # Parent orders (flatten, TWAP/AC schedules): children through the same gateway.
    engine.executor = Executor(gateway, clock, feed.books,
                               max_slippage_bps=cfg.execution.max_slippage_bps,
                               cfg=cfg.execution, run=run_number)
    return Core(clock, feed, venue, protection, gateway, engine, features, quality, restored)
