"""No time-based rule reads a clock of its own: every module that holds one takes the time
from the engine clock it is given or the event it is fed. A read of the wall or a
monotonic clock in these modules would mix a second clock into the rules (the reject-storm
bug of issue 9), so it fails here; pacing a task (asyncio sleeps and waits) is no read."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RULE_MODULES = sorted(
    [*ROOT.glob("daemon/safety/breakers/*.py"), *ROOT.glob("daemon/risk/*.py"),
     ROOT / "daemon/protection.py", ROOT / "daemon/market/sanity.py",
     *ROOT.glob("daemon/quality/*.py"), *ROOT.glob("daemon/features/*.py"),
     ROOT / "daemon/analytics/runner.py"])
# Not a rule on market time: the live-only REST backfill paces its retries (doubling
# backoff against the exchange's server) on the loop's clock, which is right for it.
PACING_ONLY = {"daemon/quality/backfill_task.py"}
# name -> attributes that read a clock ("*": any call of the bare name)
_TIME = {"time", "time_ns", "monotonic", "monotonic_ns", "perf_counter", "perf_counter_ns",
         "process_time", "clock_gettime", "clock_gettime_ns", "localtime", "gmtime"}
_DATETIME = {"now", "utcnow", "today"}


def clock_reads(source: str) -> list[str]:
    """Every call in `source` that reads a clock, as "line: text"."""
    tree = ast.parse(source)
    out = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        f = node.func
        name = None
        if isinstance(f, ast.Attribute):
            base = f.value
            owner = base.id if isinstance(base, ast.Name) else \
                base.attr if isinstance(base, ast.Attribute) else \
                getattr(base.func, "attr", "") if isinstance(base, ast.Call) else ""
            if owner == "time" and f.attr in _TIME or \
                    owner in ("datetime", "date", "dt") and f.attr in _DATETIME or \
                    f.attr == "time" and owner in ("loop", "_loop", "get_running_loop",
                                                   "get_event_loop"):
                name = f"{owner}.{f.attr}"
        elif isinstance(f, ast.Name) and f.id in _TIME - {"time"} | {"time_ns"}:
            name = f.id   # from time import time_ns, monotonic ...
        if name:
            out.append(f"{node.lineno}: {name}()")
    return out


def test_the_scan_finds_each_kind_of_clock_read():
    src = ("import time, datetime as dt, asyncio\nfrom time import monotonic_ns\n"
           "a = time.time_ns()\nb = dt.datetime.now()\nc = monotonic_ns()\n"
           "d = asyncio.get_running_loop().time()\ne = dt.date.today()\n"
           "await asyncio.sleep(1)\nf = time.sleep\n")
    assert [r.split(": ")[1] for r in clock_reads(src)] == [
        "time.time_ns()", "datetime.now()", "monotonic_ns()",
        "get_running_loop.time()", "date.today()"]


@pytest.mark.parametrize("path", RULE_MODULES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_rule_module_reads_a_clock(path: Path):
    reads = clock_reads(path.read_text())
    rel = str(path.relative_to(ROOT))
    if rel in PACING_ONLY:
        assert reads, f"{rel} no longer reads a clock: take it off PACING_ONLY"
        return
    assert reads == [], f"{rel} reads a clock: {reads}"
