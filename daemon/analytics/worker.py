"""The heavy-analytics worker: the code that runs inside the worker process.

It receives ``(job_id, job_name, payload)`` over a `multiprocessing` connection, calls the
registered function as ``fn(**payload)`` and sends back ``(job_id, ok, value, reason)``.
`None` on the connection means stop. The job table maps names to ``"module:function"``;
the parent decides which names exist, so a message can never name arbitrary code.

Native thread pools are limited to one thread before any job runs: the appliance has few
cores shared with the trading loop, and an OpenBLAS pool spinning on a loaded machine made
the PIN fit ~30x slower in measurement (a 0.7 s fit took 20 s).

This module runs only in the worker process: it must never be imported by the daemon's
event-loop code for anything but `JOBS` and `worker_main` (the spawn target), and it never
touches the event loop, the journal or the network.
"""
from __future__ import annotations

import ctypes
import importlib
import logging
import os
from collections.abc import Callable, Mapping
from typing import Any

log = logging.getLogger(__name__)

JOBS: dict[str, str] = {
    "pin.fit": "daemon.analytics.pin:fit",
    "garch.fit": "daemon.analytics.garch:fit",
    "changepoint.pelt": "daemon.analytics.changepoint:pelt",
    "game.lemke_howson": "daemon.analytics.game:lemke_howson",
    "game.equilibria": "daemon.analytics.game:equilibria",
}

_THREAD_ENV = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
_SET_THREADS = ("openblas_set_num_threads", "scipy_openblas_set_num_threads64_",
                "scipy_openblas_set_num_threads", "openblas_set_num_threads64_")


def limit_native_threads() -> int:
    """One native thread per BLAS: set the environment (for libraries not loaded yet) and
    call the setter of every OpenBLAS already mapped into this process. Returns how many
    loaded libraries were limited."""
    for k in _THREAD_ENV:
        os.environ[k] = "1"
    done = 0
    try:
        with open("/proc/self/maps") as f:
            paths = {line.split()[-1] for line in f if "openblas" in line.lower() and "/" in line}
    except OSError:
        return 0
    for p in sorted(paths):
        try:
            lib = ctypes.CDLL(p)
        except OSError:
            continue
        for name in _SET_THREADS:
            fn = getattr(lib, name, None)
            if fn is not None:
                fn(1)
                done += 1
                break
    return done


def resolve(ref: str) -> Callable[..., Any]:
    mod, _, name = ref.partition(":")
    return getattr(importlib.import_module(mod), name)


def worker_main(conn: Any, jobs: Mapping[str, str]) -> None:
    """The worker process's main loop (spawn target)."""
    limit_native_threads()
    fns: dict[str, Callable[..., Any]] = {}
    try:
        for name, ref in jobs.items():
            fns[name] = resolve(ref)
        limit_native_threads()  # numpy/scipy are loaded now: limit their pools too
        conn.send(("ready", True, sorted(fns), None))
    except Exception as e:  # a job table that cannot load: say so, then stop
        conn.send(("ready", False, None, f"{type(e).__name__}: {e}"))
        return
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return
        if msg is None:
            return
        job_id, name, payload = msg
        try:
            value = fns[name](**payload)
            conn.send((job_id, True, value, None))
        except Exception as e:  # the job's failure is its result, never the worker's end
            try:
                conn.send((job_id, False, None, f"{type(e).__name__}: {e}"))
            except (OSError, EOFError):
                return
