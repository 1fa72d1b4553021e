"""The heavy-analytics interface with a real spawned worker process: jobs run in another
process, a job over its deadline is abandoned without blocking the loop and its worker is
replaced, a crashing worker is reported and replaced, late results are never delivered,
and no NaN gets out.

Timing is only printed (loop lag during an abandoned job), never asserted.
"""
from __future__ import annotations

import asyncio
import os
from pathlib import Path

from daemon.analytics.heavy import HeavyAnalytics, JobResult, LocalHeavyAnalytics
from daemon.analytics.outcome import Outcome
from daemon.analytics.pin import PinEstimate

T = "tests.analytics.jobs_for_tests:"
EXTRA = {"test.pid": T + "pid", "test.echo": T + "echo", "test.spin": T + "spin",
         "test.crash": T + "crash", "test.wait_for": T + "wait_for", "test.boom": T + "boom",
         "test.nan": T + "nan"}
GENEROUS = 120.0  # deadline for jobs that must finish: a spawn on a loaded machine is slow


def run(coro_fn):
    async def main():
        h = LocalHeavyAnalytics(extra_jobs=EXTRA)
        try:
            return await coro_fn(h)
        finally:
            await h.close()
    return asyncio.run(main())


class Ticker:
    """Proves the loop kept running while we awaited a job; records the worst gap."""

    def __init__(self) -> None:
        self.ticks = 0
        self.max_gap = 0.0
        self._task: asyncio.Task | None = None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        last = loop.time()
        while True:
            await asyncio.sleep(0.01)
            now = loop.time()
            self.max_gap = max(self.max_gap, now - last)
            last = now
            self.ticks += 1

    def __enter__(self) -> "Ticker":
        self._task = asyncio.get_running_loop().create_task(self._run())
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()


def test_local_implementation_satisfies_the_protocol() -> None:
    h: HeavyAnalytics = LocalHeavyAnalytics()
    assert callable(h.submit)


def test_job_runs_in_another_process_and_returns() -> None:
    async def scenario(h: LocalHeavyAnalytics):
        r = await h.submit("test.pid", {}, GENEROUS)
        fit = await h.submit("pin.fit", {"buys": [10, 12, 30, 9, 11, 35, 10, 8],
                                         "sells": [11, 9, 10, 33, 12, 10, 9, 31]}, GENEROUS)
        return r, fit
    r, fit = run(scenario)
    assert isinstance(r, JobResult) and r.ok and r.reason is None
    assert isinstance(r.value, int) and r.value != os.getpid()
    assert fit.ok and isinstance(fit.value, Outcome) and isinstance(fit.value.value, PinEstimate)
    assert 0 < fit.value.value.pin < 1


def test_job_over_deadline_is_abandoned_without_blocking_the_loop_and_worker_replaced() -> None:
    async def scenario(h: LocalHeavyAnalytics):
        await h.start()
        first = await h.submit("test.pid", {}, GENEROUS)
        with Ticker() as t:
            late = await h.submit("test.spin", {}, 1.0)
        after = await h.submit("test.pid", {}, GENEROUS)
        return first, late, t, after, dict(h.stats)
    first, late, t, after, stats = run(scenario)
    print(f"\nloop during the abandoned job: {t.ticks} ticks of 10 ms, worst gap {t.max_gap * 1e3:.1f} ms")
    assert not late.ok and late.value is None and "deadline" in (late.reason or "")
    assert t.ticks > 0  # the loop ran while the job was running
    assert stats["deadline"] == 1
    assert after.ok and after.value != first.value  # a new worker process
    assert stats["restarts"] == 1


def test_crashing_worker_is_reported_and_replaced() -> None:
    async def scenario(h: LocalHeavyAnalytics):
        first = await h.submit("test.pid", {}, GENEROUS)
        crash = await h.submit("test.crash", {"code": 3}, GENEROUS)
        after = await h.submit("test.pid", {}, GENEROUS)
        return first, crash, after, dict(h.stats), h.last_problem
    first, crash, after, stats, problem = run(scenario)
    assert not crash.ok and crash.value is None
    assert "crashed (exit code 3)" in (crash.reason or "")
    assert stats["crashed"] == 1 and stats["restarts"] == 1
    assert "exit code 3" in (problem or "")
    assert after.ok and after.value != first.value


def test_abandoned_job_never_delivers_its_result(tmp_path: Path) -> None:
    flag = tmp_path / "go"

    async def scenario(h: LocalHeavyAnalytics):
        await h.start()  # so the deadline falls while the job runs, not while spawning
        stale = await h.submit("test.wait_for", {"path": str(flag), "value": "stale"}, 1.0)
        flag.touch()  # the abandoned job would return now, if its worker were alive
        fresh = await h.submit("test.echo", {"value": "fresh"}, GENEROUS)
        again = await h.submit("test.echo", {"value": "again"}, GENEROUS)
        return stale, fresh, again, dict(h.stats)
    stale, fresh, again, stats = run(scenario)
    assert not stale.ok and "deadline" in (stale.reason or "")
    assert stats["restarts"] == 1  # the worker running it was killed and replaced
    assert (fresh.ok, fresh.value) == (True, "fresh")
    assert (again.ok, again.value) == (True, "again")


def test_late_message_for_an_abandoned_job_is_dropped() -> None:
    # The reader thread hands every message to the loop; one for a job that is no longer
    # pending (abandoned at its deadline) or from a replaced worker must be dropped.
    async def scenario(h: LocalHeavyAnalytics):
        await h.start()
        w = h._worker
        assert w is not None
        fut = asyncio.get_running_loop().create_future()
        fut.cancel()  # what asyncio.timeout leaves behind
        h._pending[999] = fut
        h._on_message(w, (999, True, "late", None))
        h._on_message(w, (12345, True, "unknown", None))
        del h._pending[999]
        ok = await h.submit("test.echo", {"value": 1}, GENEROUS)
        return dict(h.stats), ok
    stats, ok = run(scenario)
    assert stats["late_dropped"] == 2
    assert ok.ok and ok.value == 1


def test_job_exception_is_a_failed_result_and_the_worker_survives() -> None:
    async def scenario(h: LocalHeavyAnalytics):
        a = await h.submit("test.pid", {}, GENEROUS)
        boom = await h.submit("test.boom", {}, GENEROUS)
        b = await h.submit("test.pid", {}, GENEROUS)
        return a, boom, b
    a, boom, b = run(scenario)
    assert not boom.ok and boom.reason == "ValueError: bad input"
    assert a.value == b.value


def test_non_finite_result_unknown_job_and_bad_deadline_are_refused() -> None:
    async def scenario(h: LocalHeavyAnalytics):
        nan = await h.submit("test.nan", {}, GENEROUS)
        unknown = await h.submit("os.system", {"command": "true"}, GENEROUS)
        bad = [await h.submit("test.pid", {}, d) for d in (0, -1, float("nan"), float("inf"))]
        return nan, unknown, bad, dict(h.stats)
    nan, unknown, bad, stats = run(scenario)
    assert not nan.ok and nan.value is None and "non-finite" in (nan.reason or "")
    assert stats["non_finite"] == 1
    assert not unknown.ok and "unknown job" in (unknown.reason or "")
    assert all(not r.ok and "deadline_s" in (r.reason or "") for r in bad)


def test_closed_interface_refuses_jobs() -> None:
    async def scenario():
        h = LocalHeavyAnalytics(extra_jobs=EXTRA)
        await h.submit("test.pid", {}, GENEROUS)
        await h.close()
        return await h.submit("test.pid", {}, GENEROUS)
    r = asyncio.run(scenario())
    assert not r.ok and r.reason == "closed"


def test_every_built_in_job_runs_in_the_worker() -> None:
    import math as _m
    rets = [0.01 * _m.sin(i * 0.7) * (1 + (i % 7) / 3) for i in range(200)]
    payloads = {
        "pin.fit": {"buys": [10, 12, 30, 9, 11, 35], "sells": [11, 9, 10, 33, 12, 10]},
        "garch.fit": {"returns": rets},
        "changepoint.pelt": {"signal": [0.0] * 20 + [5.0] * 20, "penalty": 5.0},
        "game.lemke_howson": {"A": [[3, 0], [0, 2]], "B": [[2, 0], [0, 3]], "dropped_label": 1},
        "game.equilibria": {"A": [[1, -1], [-1, 1]], "B": [[-1, 1], [1, -1]]},
    }

    async def scenario(h: LocalHeavyAnalytics):
        return {name: await h.submit(name, p, GENEROUS) for name, p in payloads.items()}
    from daemon.analytics.worker import JOBS
    assert set(payloads) == set(JOBS)
    results = run(scenario)
    for name, r in results.items():
        assert r.ok and isinstance(r.value, Outcome) and r.value.ok, (name, r)
    assert results["changepoint.pelt"].value.value == [20, 40]


def test_fork_context_is_refused() -> None:
    import pytest
    with pytest.raises(ValueError):
        LocalHeavyAnalytics(context="fork")


def test_close_during_a_job_ends_it_without_waiting_for_its_deadline() -> None:
    async def scenario():
        h = LocalHeavyAnalytics(extra_jobs=EXTRA)
        await h.start()
        job = asyncio.get_running_loop().create_task(h.submit("test.spin", {}, 3600.0))
        while h._worker is None or h._worker.current is None:
            await asyncio.sleep(0)  # until the job has been handed to the worker
        await h.close()
        return await job, dict(h.stats)
    r, stats = asyncio.run(scenario())
    assert not r.ok and r.reason == "worker stopped"
    assert stats["crashed"] == 0 and stats["deadline"] == 0
