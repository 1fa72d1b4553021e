"""AnalyticsRunner with a real heavy-analytics worker (one spawned LocalHeavyAnalytics for
the whole module, on one event loop) and a real FeatureEngine fed a shared Binance capture
or synthetic trades, on a fake clock.

Shown: the PIN fit is the same as a direct fit on `daemon.analytics.pin.counts_from_trades`
of the same trades and a Glosten-Milgrom floor appears; the GARCH fit reaches the feature
store (``garch_vol`` ready afterwards); a job over its deadline and a fit with no estimate
are counted as failed and nothing is applied; at most one job of a kind is in flight; the
`run()` task works on its own and ends with a bug raised while applying a result.

No timing assertions: conditions are awaited with a deadline.
"""
from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from daemon.analytics import pin as pinmod
from daemon.analytics.heavy import LocalHeavyAnalytics
from daemon.analytics.runner import AnalyticsRunner
from daemon.config import AnalyticsCfg, FeaturesCfg
from daemon.features.engine import FeatureEngine
from daemon.market.capture import CaptureReader
from daemon.market.decode import Decoder
from daemon.market.events import Trade
from tests.market.conftest import shared_data_dir

SYM = "BTCUSDT"
S = 1_000_000_000
CFG = AnalyticsCfg(pin_period_s=1.0, pin_periods=60, pin_every_s=300.0, garch_every_s=300.0,
                   deadline_s=120.0, gm_horizon_s=10.0)   # generous: a loaded machine is slow


class Clock:
    def __init__(self, ns: int = 1_000 * S) -> None:
        self.ns = ns

    def __call__(self) -> int:
        return self.ns


@pytest.fixture(scope="module")
def env() -> Iterator[tuple[asyncio.AbstractEventLoop, LocalHeavyAnalytics]]:
    """One loop and one started worker for the module (a spawn takes ~2 s)."""
    loop = asyncio.new_event_loop()
    heavy = LocalHeavyAnalytics(context="spawn")
    loop.run_until_complete(heavy.start())
    yield loop, heavy
    loop.run_until_complete(heavy.close())
    loop.close()


@pytest.fixture(scope="module")
def capture_trades() -> list[Trade]:
    d = shared_data_dir() / "binance"
    f = d / "spot_btcusdt_20240808.gz"
    if not f.is_file():
        pytest.skip(f"shared capture {f} not found (set BOT4_DATA_DIR)")
    dec = Decoder()
    out = []
    for ns, raw in CaptureReader([f]):
        ev = dec.decode(ns, raw)
        if type(ev) is Trade and ev.symbol == SYM:
            out.append(ev)
    assert len(out) > 5_000
    return out


def synthetic(n_periods: int, *, seed: int = 7, period_ms: int = 1000, t0_ms: int = 1_000_000,
              buys_only: bool = False) -> list[Trade]:
    """Poisson buys/sells per period with information events (EKOP-like), one trade id each."""
    rng = np.random.default_rng(seed)
    out, tid = [], 0
    for k in range(n_periods):
        lb, ls = 8.0, 8.0
        if rng.random() < 0.3:
            if rng.random() < 0.5:
                ls += 12.0
            else:
                lb += 12.0
        nb, ns = int(rng.poisson(lb)), 0 if buys_only else int(rng.poisson(ls))
        for i, side_sell in enumerate([False] * nb + [True] * ns):
            ms = t0_ms + k * period_ms + (i * period_ms) // (nb + ns + 1)
            tid += 1
            out.append(Trade(SYM, ms * 1_000_000, ms, tid, 60_000.0 + (tid % 7), 0.01, side_sell))
    # One trade in the next period closes the last one.
    ms = t0_ms + n_periods * period_ms
    out.append(Trade(SYM, ms * 1_000_000, ms, tid + 1, 60_000.0, 0.01, False))
    return out


async def until(pred, timeout: float = 120.0, what: str = "condition") -> None:
    end = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


def _jobs(r: AnalyticsRunner, job: str) -> dict[str, int]:
    return r.status()["symbols"][SYM]["jobs"][job]


# -- feeding ---------------------------------------------------------------------------------
def test_trades_are_counted_per_period_by_aggressor_side_with_gaps_as_empty_periods() -> None:
    r = AnalyticsRunner(CFG.model_copy(update={"pin_periods": 10}), heavy=None, features=None,
                        symbols=[SYM], clock=Clock())

    def t(ms: int, seller_aggressor: bool) -> Trade:
        return Trade(SYM, 0, ms, 0, 100.0, 1.0, seller_aggressor)

    for ms, sell in [(0, False), (10, True), (999, False), (1000, True), (5500, False)]:
        r.on_trade(t(ms, sell))
    # buyer_is_maker=True is a sell; periods 2..4 had no trades; period 5 is still open.
    assert r.periods(SYM) == [(2, 1), (0, 1), (0, 0), (0, 0), (0, 0)]
    r.on_trade(t(7000, False))     # closes period 5 (one buy), period 6 empty
    assert r.periods(SYM) == [(2, 1), (0, 1), (0, 0), (0, 0), (0, 0), (1, 0), (0, 0)]
    r.on_trade(t(10**12, True))    # a huge gap: bounded by the deque, not by the gap
    assert r.periods(SYM) == [(0, 0)] * 10
    r.on_trade(t(10**12 + 1000, False))
    assert r.periods(SYM) == [(0, 0)] * 9 + [(0, 1)]
    r.on_trade(Trade("ETHUSDT", 0, 0, 0, 1.0, 1.0, False))
    assert r.stats["unknown_symbol"] == 1


# -- PIN + GM floor + GARCH on a shared capture ------------------------------------------------
def test_capture_pin_fit_and_gm_floor_and_garch_reach_the_features(env, capture_trades) -> None:
    loop, heavy = env
    features = FeatureEngine(FeaturesCfg(bar_interval_s=1.0), [SYM])
    clock = Clock()
    r = AnalyticsRunner(CFG, heavy, features, [SYM], clock)
    for tr in capture_trades:
        features.on_trade(tr)
        r.on_trade(tr)
    clock.ns = capture_trades[-1].ts_ns
    assert not features.get(SYM, "garch_vol").ready   # no parameters before the fit
    assert r.floor_bps(SYM) is None                     # no PIN yet

    async def scenario() -> int:
        n = r.cycle()
        await r.wait_idle()
        return n

    assert loop.run_until_complete(scenario()) == 2    # one PIN fit, one GARCH fit
    st = r.status()["symbols"][SYM]
    assert st["last_problem"] is None, st
    assert _jobs(r, "pin.fit") == {"submitted": 1, "ok": 1, "failed": 0, "late": 0,
                                   "skipped_busy": 0}
    assert _jobs(r, "garch.fit")["ok"] == 1

    # The same PIN as a direct fit on the pin module's own bucketing of the same trades:
    # the last 60 closed 1 s periods (the last period is still open).
    _, buys, sells = pinmod.counts_from_trades(capture_trades, 1000)
    ref = pinmod.fit(buys[-61:-1], sells[-61:-1]).value
    p = st["pin"]
    assert st["out_of_order_trades"] == 0
    assert p["n_periods"] == 60 and 0 < p["pin"] < 1
    assert math.isclose(p["pin"], ref.pin, rel_tol=1e-6, abs_tol=1e-9)
    assert math.isclose(p["alpha"], ref.alpha, rel_tol=1e-6, abs_tol=1e-9)
    assert math.isclose(p["delta"], ref.delta, rel_tol=1e-6, abs_tol=1e-9)   # sides not swapped

    # GARCH: the fit is in the feature store, and the floor uses it.
    g = features.get(SYM, "garch_vol")
    assert g.ready and g.value > 0
    assert st["garch"]["n_obs"] == len(features.garch_window(SYM)[1])
    assert st["garch"]["persistence"] <= 1.0
    floor = r.floor_bps(SYM)
    # GM: spread = 2 PIN sigma sqrt(h) mid; sigma per sqrt(s) = per-bar sd / sqrt(bar seconds).
    expect = 2 * p["pin"] * g.value / math.sqrt(1.0) * math.sqrt(10.0) * 1e4
    assert floor is not None and floor > 0
    assert math.isclose(floor, expect, rel_tol=1e-9)
    assert st["floor_bps"] == floor and st["floor_vol"] == "garch_vol"
    print(f"\ncapture: PIN {p['pin']:.4f} (alpha {p['alpha']:.3f}), garch_vol {g.value:.2e}/bar, "
          f"GM floor {floor:.3f} bps")


def test_floor_falls_back_to_ewma_vol_before_any_garch_fit(env) -> None:
    loop, heavy = env
    features = FeatureEngine(FeaturesCfg(bar_interval_s=1.0), [SYM])
    r = AnalyticsRunner(CFG, heavy, features, [SYM], Clock())
    trades = synthetic(70)
    for tr in trades:
        features.on_trade(tr)
        r.on_trade(tr)
    r._sym[SYM].next_due["garch.fit"] = 10**30   # this test: PIN only

    async def scenario() -> None:
        assert r.cycle() == 1
        await r.wait_idle()

    loop.run_until_complete(scenario())
    assert r.pin(SYM) is not None
    assert not features.get(SYM, "garch_vol").ready
    ew = features.get(SYM, "ewma_vol")
    assert ew.ready
    expect = 2 * r.pin(SYM)["pin"] * ew.value * math.sqrt(10.0) * 1e4
    assert math.isclose(r.floor_bps(SYM), expect, rel_tol=1e-9)
    assert r.status()["symbols"][SYM]["floor_vol"] == "ewma_vol"


# -- scheduling ------------------------------------------------------------------------------
def test_at_most_one_job_of_a_kind_in_flight_and_next_one_only_when_due(env) -> None:
    loop, heavy = env
    clock = Clock()
    r = AnalyticsRunner(CFG, heavy, None, [SYM], clock)
    for tr in synthetic(80, seed=3):
        r.on_trade(tr)

    async def scenario() -> None:
        assert r.cycle() == 1
        await asyncio.sleep(0)   # the job has started; its result needs the worker
        clock.ns += 2 * 300 * S   # past due: still only one in flight
        assert r.cycle() == 0
        assert r.status()["symbols"][SYM]["in_flight"] == ["pin.fit"]
        assert _jobs(r, "pin.fit")["skipped_busy"] == 1
        await r.wait_idle()
        assert r.status()["symbols"][SYM]["in_flight"] == []
        first = r.pin(SYM)
        assert first is not None
        assert r.cycle() == 1            # it was due while busy: submitted now
        await r.wait_idle()
        assert r.pin(SYM)["ts_ns"] == clock.ns != first["ts_ns"]
        assert r.cycle() == 0            # not due again yet on this clock
        clock.ns += 300 * S - 1
        assert r.cycle() == 0
        clock.ns += 1
        assert r.cycle() == 1            # pin_every_s after the last submission
        await r.wait_idle()

    loop.run_until_complete(scenario())
    j = _jobs(r, "pin.fit")
    assert j["submitted"] == 3 and j["ok"] == 3 and j["failed"] == 0 and j["skipped_busy"] == 1


def test_not_enough_periods_or_returns_submits_nothing(env) -> None:
    loop, heavy = env
    features = FeatureEngine(FeaturesCfg(bar_interval_s=1.0), [SYM])
    r = AnalyticsRunner(CFG, heavy, features, [SYM], Clock())
    for tr in synthetic(20):
        features.on_trade(tr)
        r.on_trade(tr)

    async def scenario() -> int:
        return r.cycle()

    assert loop.run_until_complete(scenario()) == 0
    assert _jobs(r, "pin.fit")["submitted"] == 0 and _jobs(r, "garch.fit")["submitted"] == 0


def test_garch_is_not_refitted_without_new_returns(env) -> None:
    loop, heavy = env
    features = FeatureEngine(FeaturesCfg(bar_interval_s=1.0), [SYM])
    clock = Clock()
    r = AnalyticsRunner(CFG, heavy, features, [SYM], clock)
    for tr in synthetic(50, seed=11):
        features.on_trade(tr)
    r._sym[SYM].next_due["pin.fit"] = 10**30   # this test: GARCH only

    async def scenario() -> None:
        assert r.cycle() == 1
        await r.wait_idle()
        clock.ns += 300 * S
        assert r.cycle() == 0    # due, but the window is the one already fitted

    loop.run_until_complete(scenario())
    assert _jobs(r, "garch.fit") == {"submitted": 1, "ok": 1, "failed": 0, "late": 0,
                                     "skipped_busy": 0}
    assert features.get(SYM, "garch_vol").ready


# -- failures --------------------------------------------------------------------------------
def test_a_fit_without_an_estimate_is_counted_failed_and_nothing_applied(env) -> None:
    loop, heavy = env
    r = AnalyticsRunner(CFG, heavy, None, [SYM], Clock())
    for tr in synthetic(70, buys_only=True):   # no sells at all: the PIN model has no MLE
        r.on_trade(tr)

    async def scenario() -> None:
        assert r.cycle() == 1
        await r.wait_idle()

    loop.run_until_complete(scenario())
    j = _jobs(r, "pin.fit")
    assert j["submitted"] == 1 and j["failed"] == 1 and j["ok"] == 0 and j["late"] == 0
    assert r.pin(SYM) is None and r.floor_bps(SYM) is None
    assert "no buys or no sells" in r.status()["symbols"][SYM]["last_problem"]


def test_a_job_over_its_deadline_is_counted_late_and_nothing_applied(env) -> None:
    loop, heavy = env
    features = FeatureEngine(FeaturesCfg(bar_interval_s=1.0), [SYM])
    # 1 ms: below the config's bound on purpose (model_copy does not validate); a PIN fit
    # cannot come back from another process that fast.
    r = AnalyticsRunner(CFG.model_copy(update={"deadline_s": 0.001}), heavy, features, [SYM],
                        Clock())
    for tr in synthetic(70, seed=5):
        features.on_trade(tr)
        r.on_trade(tr)
    deadlines_before = heavy.stats["deadline"]

    async def scenario() -> None:
        assert r.cycle() == 2
        await r.wait_idle()

    loop.run_until_complete(scenario())
    for job in ("pin.fit", "garch.fit"):
        j = _jobs(r, job)
        assert j == {"submitted": 1, "ok": 0, "failed": 1, "late": 1, "skipped_busy": 0}, job
    st = r.status()
    assert st["symbols"][SYM]["pin"] is None and st["symbols"][SYM]["garch"] is None
    assert not features.get(SYM, "garch_vol").ready and r.floor_bps(SYM) is None
    assert "deadline" in st["symbols"][SYM]["last_problem"]
    assert st["heavy"]["deadline"] == deadlines_before + 2


# -- the task --------------------------------------------------------------------------------
def test_run_task_fits_on_its_own_and_is_cancellable(env) -> None:
    loop, heavy = env
    features = FeatureEngine(FeaturesCfg(bar_interval_s=1.0), [SYM])
    r = AnalyticsRunner(CFG, heavy, features, [SYM], Clock(), poll_s=0.01)
    for tr in synthetic(70, seed=9):
        features.on_trade(tr)
        r.on_trade(tr)

    async def scenario() -> None:
        task = asyncio.get_running_loop().create_task(r.run())
        await until(lambda: r.pin(SYM) is not None and features.get(SYM, "garch_vol").ready,
                    what="both fits applied by run()")
        assert not task.done()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    loop.run_until_complete(scenario())
    assert r.floor_bps(SYM) is not None


class _BuggyEngine(FeatureEngine):
    def set_garch_fit(self, symbol, fit, *, upto, ts_ns):   # noqa: ANN001
        raise RuntimeError("bug in set_garch_fit")


def test_a_bug_while_applying_a_result_ends_run_with_it(env) -> None:
    loop, heavy = env
    features = _BuggyEngine(FeaturesCfg(bar_interval_s=1.0), [SYM])
    r = AnalyticsRunner(CFG, heavy, features, [SYM], Clock(), poll_s=0.01)
    for tr in synthetic(50, seed=13):
        features.on_trade(tr)

    async def scenario() -> None:
        task = asyncio.get_running_loop().create_task(r.run())
        await until(task.done, what="run() to end with the bug")
        with pytest.raises(RuntimeError, match="bug in set_garch_fit"):
            task.result()

    loop.run_until_complete(scenario())


def test_the_runner_keeps_numpy_and_scipy_out_of_the_daemon_process() -> None:
    # The fits import numpy/scipy in the worker only; the daemon imports the runner.
    import subprocess
    import sys
    code = ("import sys, daemon.analytics.runner; "
            "print(sorted(m for m in ('numpy', 'scipy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=Path(__file__).resolve().parents[2])
    assert out.stdout.strip() == "[]"
