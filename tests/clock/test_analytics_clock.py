"""The heavy-analytics scheduler on the engine clock, in replay (event time) and live
(wall time): a PIN fit is submitted every `pin_every_s` of the clock the runner is given,
never earlier. The fit runs in this process (the real `pin.fit`): what is under test is
when the runner submits it, not the worker."""
from __future__ import annotations

import asyncio
from typing import Any, Mapping

from daemon.analytics.heavy import JobResult
from daemon.analytics.runner import PIN_JOB, AnalyticsRunner
from daemon.analytics.worker import JOBS, resolve
from daemon.config import AnalyticsCfg
from daemon.market.events import Trade
from tests.clock.conftest import Timeline

SYM = "BTCUSDT"
MS = 1_000_000


class InProcessHeavy:
    """The HeavyAnalytics interface, each job run here by the worker's own job table."""

    def __init__(self) -> None:
        self.submitted: list[str] = []

    async def submit(self, job_name: str, payload: Mapping[str, Any],
                     deadline_s: float) -> JobResult:
        self.submitted.append(job_name)
        return JobResult(job_name, True, resolve(JOBS[job_name])(**payload), None, 0.0)


def _periods(r: AnalyticsRunner, tl: Timeline, n: int) -> None:
    """n one-second PIN periods of trades (buys and sells in a changing mix)."""
    tid = 0
    for k in range(n + 1):
        for i in range(8 + (k * 7) % 5):
            tid += 1
            ts = tl.at(k + i * 0.05)
            r.on_trade(Trade(SYM, ts, ts // MS, tid, 100.0, 0.1, (tid + k) % 3 == 0))


def test_pin_fits_are_scheduled_on_the_engine_clock(tl):
    cfg = AnalyticsCfg(pin_period_s=1, pin_periods=10, pin_every_s=30)
    heavy = InProcessHeavy()
    r = AnalyticsRunner(cfg, heavy, None, [SYM], tl.clock)

    async def scenario() -> None:
        _periods(r, tl, 10)
        assert r.cycle() == 1                      # due at once
        await r.wait_idle()
        t0 = (tl.clock() - tl.base) / 1e9
        tl.at(t0 + 29.999)
        assert r.cycle() == 0, "submitted again before pin_every_s"
        due.append(tl.at(t0 + 30))
        assert r.cycle() == 1
        await r.wait_idle()

    due: list[int] = []

    asyncio.run(scenario())
    assert heavy.submitted == [PIN_JOB, PIN_JOB]
    assert r.pin(SYM)["ts_ns"] == due[0]          # the fit is as of the engine's time


def test_garch_fits_are_scheduled_on_the_engine_clock(tl):
    from daemon.analytics.runner import GARCH_JOB
    from daemon.config import FeaturesCfg
    from daemon.features.engine import FeatureEngine
    features = FeatureEngine(FeaturesCfg(bar_interval_s=1.0), [SYM])
    cfg = AnalyticsCfg(pin_period_s=1, pin_periods=10_000, garch_every_s=30)
    heavy = InProcessHeavy()
    r = AnalyticsRunner(cfg, heavy, features, [SYM], tl.clock)
    tid = 0

    def bars(first: int, n: int) -> None:   # one trade per second: one bar (return) each
        nonlocal tid
        for k in range(first, first + n):
            tid += 1
            ts = tl.at(k + 0.5)
            features.on_trade(Trade(SYM, ts, ts // MS, tid, 100.0 + (k * 37 % 11) * 0.1,
                                    0.1, tid % 2 == 0))

    async def scenario() -> None:
        bars(0, 40)
        assert r.cycle() == 1
        await r.wait_idle()
        t0 = tl.clock()
        bars(40, 29)                     # new returns, 29 s later: not due yet
        assert r.cycle() == 0, "submitted again before garch_every_s"
        tl.at((t0 - tl.base) / 1e9 + 30)
        assert r.cycle() == 1
        await r.wait_idle()

    asyncio.run(scenario())
    assert heavy.submitted == [GARCH_JOB, GARCH_JOB]
