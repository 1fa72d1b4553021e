"""The one interface for heavy analytics (PIN fits, GARCH fits, PELT, games), run off the
event loop with a deadline per job.

`HeavyAnalytics` is the Protocol every caller uses: ``await submit(job_name, payload,
deadline_s)`` gives a `JobResult`, never an exception. `LocalHeavyAnalytics` implements
it with one worker process on this machine. A companion host on the LAN will later serve
the same Protocol (a remote implementation: same job names, same payloads, same
JobResult); that implementation is NOT part of this module.

Local implementation:
- the worker is a `multiprocessing` process started with the 'spawn' context (a fresh
  interpreter: the daemon, which runs threads, is never forked), started from an executor
  thread so the loop never waits for it;
- one job at a time (FIFO through an asyncio lock); the deadline covers queueing, a
  worker (re)start and the run;
- results come back on a reader thread per worker, handed to the loop with
  `call_soon_threadsafe`; the loop never blocks on the pipe (sends also go through an
  executor thread);
- a job that misses its deadline is abandoned: its worker is killed (a process cannot be
  interrupted any other way) and replaced, the caller gets ``ok=False, reason="deadline
  ..."`` and the event is counted and logged. A result that arrives for an abandoned job,
  or from a replaced worker, is dropped and counted (`late_dropped`), never delivered;
- a worker that dies (a crash, ``os._exit`` in a job, the OOM killer) fails its job with
  the exit code, is logged and is replaced;
- a result holding NaN or inf anywhere is turned into ``ok=False, reason="non-finite
  ..."``: no NaN escapes to a strategy.

Never call the analytics functions directly from the event loop: come here.
"""
from __future__ import annotations

import asyncio
import dataclasses
import itertools
import logging
import math
import multiprocessing
import threading
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from daemon.analytics.worker import JOBS, worker_main

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class JobResult:
    """``ok``: the job ran and returned ``value`` (for the built-in jobs an `Outcome`).
    Otherwise ``value`` is None and ``reason`` says why (deadline, crash, error, unknown
    job, closed, non-finite result)."""

    job_name: str
    ok: bool
    value: Any
    reason: str | None
    elapsed_s: float


class HeavyAnalytics(Protocol):
    """What the daemon needs from whoever runs heavy work (this machine or a companion)."""

    def submit(self, job_name: str, payload: Mapping[str, Any],
               deadline_s: float) -> Awaitable[JobResult]: ...


def _finite(v: Any, depth: int = 0) -> bool:
    """No NaN/inf anywhere in a (nested) result. Bounded depth: results are small."""
    if depth > 20:
        return True
    if isinstance(v, float):
        return math.isfinite(v)
    if isinstance(v, (str, bytes, int, bool)) or v is None:
        return True
    if dataclasses.is_dataclass(v) and not isinstance(v, type):
        return all(_finite(getattr(v, f.name), depth + 1) for f in dataclasses.fields(v))
    if isinstance(v, Mapping):
        return all(_finite(x, depth + 1) for x in v.values())
    if isinstance(v, (list, tuple)):
        return all(_finite(x, depth + 1) for x in v)
    try:  # numpy scalars and arrays
        import numpy as np
        if isinstance(v, (np.ndarray, np.generic)):
            return bool(np.all(np.isfinite(v))) if np.issubdtype(np.asarray(v).dtype, np.number) else True
    except ImportError:
        pass
    return True


class _Worker:
    """One worker process, its connection and the thread that reads its results."""

    def __init__(self, ctx: Any, jobs: Mapping[str, str], loop: asyncio.AbstractEventLoop,
                 owner: LocalHeavyAnalytics):
        self.conn, child = ctx.Pipe(duplex=True)
        self.proc = ctx.Process(target=worker_main, args=(child, dict(jobs)),
                                name="bot4-heavy", daemon=True)
        self.proc.start()
        child.close()
        self.loop = loop
        self.owner = owner
        self.killed = False   # we killed it (deadline or close): its exit is not a crash
        self.current: int | None = None
        self.ready: asyncio.Future = loop.create_future()
        self.thread = threading.Thread(target=self._read, name="bot4-heavy-reader", daemon=True)
        self.thread.start()

    def _post(self, fn: Any, *args: Any) -> None:
        try:
            self.loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:  # the loop is closed: nobody is waiting any more
            pass

    def _read(self) -> None:
        while True:
            try:
                msg = self.conn.recv()
            except (EOFError, OSError):
                break
            except Exception as e:  # an unpicklable or damaged message: the worker is unusable
                log.error("heavy worker sent an unreadable message: %s", e)
                break
            self._post(self.owner._on_message, self, msg)
        self.proc.join()
        self._post(self.owner._on_exit, self, self.proc.exitcode)

    def kill(self) -> None:
        self.killed = True
        if self.proc.is_alive():
            self.proc.kill()


class LocalHeavyAnalytics:
    """`HeavyAnalytics` on this machine: one spawned worker process, one job at a time.

    ``extra_jobs`` adds names to the job table (``"module:function"``; used by tests).
    ``stats`` counts submitted, ok, failed, deadline, crashed, late_dropped, restarts,
    non_finite. Use from one event loop."""

    def __init__(self, *, extra_jobs: Mapping[str, str] | None = None,
                 context: str = "spawn") -> None:
        if context not in ("spawn", "forkserver"):
            raise ValueError("context must be 'spawn' or 'forkserver' (never fork the daemon)")
        self._ctx = multiprocessing.get_context(context)
        self._jobs = {**JOBS, **(extra_jobs or {})}
        self._lock = asyncio.Lock()
        self._worker: _Worker | None = None
        self._pending: dict[int, asyncio.Future] = {}
        self._ids = itertools.count(1)
        self._closed = False
        self._spawning: asyncio.Task | None = None
        self._spawned = 0
        self.stats: dict[str, int] = dict.fromkeys(
            ("submitted", "ok", "failed", "deadline", "crashed", "late_dropped", "restarts",
             "non_finite"), 0)
        self.last_problem: str | None = None

    # -- public -------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the worker now (and load the job modules in it), so the first job does
        not pay for it. Optional: submit starts it when needed."""
        async with self._lock:
            await self._ensure_worker()

    async def submit(self, job_name: str, payload: Mapping[str, Any],
                     deadline_s: float) -> JobResult:
        """Run `job_name` with `payload` (keyword arguments, picklable) within `deadline_s`
        seconds. Never raises. The payload is pickled on an executor thread: do not mutate
        it until the result is back."""
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        self.stats["submitted"] += 1

        def done(ok: bool, value: Any, reason: str | None) -> JobResult:
            self.stats["ok" if ok else "failed"] += 1
            return JobResult(job_name, ok, value, reason, loop.time() - t0)

        if self._closed:
            return done(False, None, "closed")
        if job_name not in self._jobs:
            return done(False, None, f"unknown job {job_name!r}")
        if not (isinstance(deadline_s, (int, float)) and math.isfinite(deadline_s) and deadline_s > 0):
            return done(False, None, "deadline_s must be a positive number of seconds")
        try:
            async with asyncio.timeout(deadline_s):
                async with self._lock:
                    await self._ensure_worker()
                    ok, value, reason = await self._run(job_name, dict(payload))
        except TimeoutError:
            self.stats["deadline"] += 1
            msg = f"deadline {deadline_s:g}s missed: job abandoned"
            self.last_problem = f"{job_name}: {msg}"
            log.warning("heavy job %s: %s", job_name, msg)
            return done(False, None, msg)
        except Exception as e:  # a worker that cannot start or be written to
            self.last_problem = f"{job_name}: {e}"
            log.error("heavy job %s failed: %s", job_name, e)
            return done(False, None, f"{type(e).__name__}: {e}")
        if ok and not _finite(value):
            self.stats["non_finite"] += 1
            return done(False, None, "non-finite value in the result")
        return done(ok, value if ok else None, reason)

    async def close(self) -> None:
        """Stop the worker (asks it to stop, kills it if it does not within 2 s)."""
        self._closed = True
        if self._spawning is not None and not self._spawning.done():
            try:
                await self._spawning  # it sees _closed and kills what it started
            except BaseException:
                pass
        w, self._worker = self._worker, None
        if w is None:
            return
        loop = asyncio.get_running_loop()
        w.killed = True
        try:
            await loop.run_in_executor(None, w.conn.send, None)
        except (OSError, EOFError):
            pass
        await loop.run_in_executor(None, w.proc.join, 2.0)
        w.kill()
        await loop.run_in_executor(None, w.thread.join, 2.0)

    # -- internals ----------------------------------------------------------------------

    def _start_spawn(self) -> asyncio.Task:
        """The one spawn in progress (started if none): a task, so a caller whose deadline
        expires while waiting cannot orphan a half-started worker."""
        if self._spawning is None or self._spawning.done():
            task = asyncio.get_running_loop().create_task(self._spawn())
            # A spawn nobody awaits any more must not warn "exception never retrieved".
            task.add_done_callback(lambda t: t.cancelled() or t.exception())
            self._spawning = task
        return self._spawning

    async def _spawn(self) -> None:
        loop = asyncio.get_running_loop()
        if self._spawned:
            self.stats["restarts"] += 1
        self._spawned += 1
        # Process start (spawn) writes the child's preparation data: keep it off the loop.
        w = await loop.run_in_executor(None, _Worker, self._ctx, self._jobs, loop, self)
        try:
            if self._closed:
                raise RuntimeError("closed")
            await w.ready
        except BaseException:
            w.kill()
            raise
        self._worker = w

    async def _ensure_worker(self) -> None:
        if self._worker is not None and self._worker.proc.is_alive():
            return
        await asyncio.shield(self._start_spawn())

    async def _run(self, job_name: str, payload: dict[str, Any]) -> tuple[bool, Any, str | None]:
        w = self._worker
        assert w is not None
        loop = asyncio.get_running_loop()
        job_id = next(self._ids)
        fut: asyncio.Future = loop.create_future()
        self._pending[job_id] = fut
        w.current = job_id
        try:
            await loop.run_in_executor(None, w.conn.send, (job_id, job_name, payload))
            _, ok, value, reason = await fut
            return ok, value, reason
        except asyncio.CancelledError:
            # Deadline (or caller cancelled): the worker is busy with a job nobody wants.
            # Killing it is the only way to stop it; the reader thread reports its exit.
            if self._worker is w:
                self._worker = None
                w.kill()
                if not self._closed:
                    self._start_spawn()  # replace it now, not on the next job's clock
            raise
        finally:
            self._pending.pop(job_id, None)
            w.current = None

    def _on_message(self, w: _Worker, msg: tuple) -> None:
        tag = msg[0]
        if tag == "ready":
            if not w.ready.done():
                if msg[1]:
                    w.ready.set_result(None)
                else:
                    w.ready.set_exception(RuntimeError(f"heavy worker cannot load its jobs: {msg[3]}"))
            return
        fut = self._pending.get(tag)
        if w is not self._worker or fut is None or fut.done():
            self.stats["late_dropped"] += 1
            log.warning("heavy result for abandoned job %s dropped", tag)
            return
        fut.set_result(msg)

    def _on_exit(self, w: _Worker, exitcode: int | None) -> None:
        if not w.ready.done():
            w.ready.set_exception(RuntimeError(f"heavy worker exited at start (exit code {exitcode})"))
            w.ready.exception()  # mark retrieved: nobody may be waiting any more
        reason = ("worker stopped" if w.killed else f"worker crashed (exit code {exitcode})")
        if w.current is not None:
            # A job still waiting on this worker (a crash, or close() during a job) ends now
            # rather than at its deadline. After a deadline its future is already done.
            fut = self._pending.get(w.current)
            if fut is not None and not fut.done():
                fut.set_result((w.current, False, None, reason))
        if self._worker is w:
            self._worker = None
            if not w.killed and not self._closed:
                self._start_spawn()
        if w.killed:
            return
        self.stats["crashed"] += 1
        self.last_problem = reason
        log.error("heavy worker died (exit code %s); it is being replaced", exitcode)
