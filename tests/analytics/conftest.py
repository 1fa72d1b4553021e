"""Analytics tests run the optimisers in the test process: limit OpenBLAS to one thread
while they run (as the heavy worker does), then restore it. On a loaded 2-core machine a
spinning BLAS pool made one PIN fit ~30x slower; correctness does not depend on it."""
from __future__ import annotations

import ctypes
from collections.abc import Iterator

import numpy  # noqa: F401  (loads OpenBLAS so it can be found below)
import pytest
import scipy.optimize  # noqa: F401

_PAIRS = (("openblas_get_num_threads", "openblas_set_num_threads"),
          ("scipy_openblas_get_num_threads64_", "scipy_openblas_set_num_threads64_"),
          ("scipy_openblas_get_num_threads", "scipy_openblas_set_num_threads"))


def _openblas_libs() -> list[tuple[object, object]]:
    try:
        with open("/proc/self/maps") as f:
            paths = sorted({ln.split()[-1] for ln in f if "openblas" in ln.lower() and "/" in ln})
    except OSError:
        return []
    out = []
    for p in paths:
        try:
            lib = ctypes.CDLL(p)
        except OSError:
            continue
        for get, set_ in _PAIRS:
            g, s = getattr(lib, get, None), getattr(lib, set_, None)
            if g is not None and s is not None:
                out.append((g, s))
                break
    return out


@pytest.fixture(autouse=True, scope="module")
def _one_blas_thread() -> Iterator[None]:
    libs = _openblas_libs()
    before = [g() for g, _ in libs]
    for _, s in libs:
        s(1)
    yield
    for (_, s), n in zip(libs, before):
        s(n)
