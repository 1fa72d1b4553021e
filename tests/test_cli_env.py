"""bot4d's process settings made before any numerical or config library is imported
(daemon/cli.py): no BLAS worker threads, no pydantic plugin discovery, and an operator's
own environment setting wins. Each check runs a real Python process, because these
settings only work if they are in place before numpy/pydantic are first imported."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

PROBE = ("import os, daemon.cli, numpy, pydantic.plugin._loader as l; "
         "print(len(os.listdir('/proc/self/task')), len(list(l.get_plugins())), "
         "os.environ['OPENBLAS_NUM_THREADS'], os.environ['PYDANTIC_DISABLE_PLUGINS'])")


def _probe(**env: str) -> list[str]:
    e = {k: v for k, v in os.environ.items()
         if k not in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "PYDANTIC_DISABLE_PLUGINS")}
    e.update(env)
    out = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, env=e, check=True,
                         capture_output=True, text=True).stdout.split()
    return out


def test_the_daemon_starts_no_blas_worker_threads_and_loads_no_pydantic_plugins() -> None:
    threads, plugins, blas, pyd = _probe()
    assert (blas, pyd) == ("1", "__all__")
    assert threads == "1"       # numpy imported, and still only the main thread
    assert plugins == "0"


def test_an_operators_own_setting_wins() -> None:
    threads, _, blas, _ = _probe(OPENBLAS_NUM_THREADS="2")
    assert blas == "2"
    assert int(threads) >= 2    # OpenBLAS started its worker as the operator asked
