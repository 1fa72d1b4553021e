"""Jobs that exist only for the heavy-interface tests (registered with `extra_jobs`).

They run inside the heavy worker process: they report their pid, spin past any deadline,
kill their own process, block until a file appears, raise, or return NaN.
"""
from __future__ import annotations

import os
from pathlib import Path


def pid() -> int:
    return os.getpid()


def echo(value: object) -> object:
    return value


def spin() -> None:
    while True:  # never returns: only a deadline ends it
        pass


def crash(code: int) -> None:
    os._exit(code)


def wait_for(path: str, value: object) -> object:
    # Polls a file the test creates after the deadline; returns `value` only if the
    # worker is still alive then (it must not be: an abandoned job's worker is killed).
    p = Path(path)
    while not p.exists():
        os.sched_yield()
    return value


def boom() -> None:
    raise ValueError("bad input")


def nan() -> dict:
    return {"x": [1.0, float("nan")]}
