"""Offline change-point report (layer 4, "PELT offline for reports"): the exact PELT
segmentation (daemon.analytics.changepoint.pelt) of the 1 s sample series the quality
layers keep, next to what the online detectors (CUSUM, BOCPD) reported.

The series are the drift windows' rings (the last drift_reference + drift_live samples of
return, spread, event rate and basis per feed). PELT's cost is "normal" (changes in mean
and variance) and its penalty defaults to the BIC-like 2 log(n) per change point
(Killick et al. 2012 use this order of penalty); each series is standardised first, so
one penalty fits all units.

Heavy (O(n) to O(n^2)) and for reports only: call it from the heavy-analytics worker or
a command, never from the event loop. Never raises on the data; a series PELT cannot
segment says why.
"""
from __future__ import annotations

import math

import numpy as np

from daemon.analytics.changepoint import pelt
from daemon.quality.monitor import DataQuality


def segment(series: np.ndarray, penalty: float | None = None, min_size: int = 5) -> dict:
    """{"n", "penalty", "breakpoints" (segment ends, last = n), "means"} or {"error"}."""
    y = np.asarray(series, dtype=float)
    y = y[np.isfinite(y)]
    n = int(y.size)
    if n < 2 * min_size:
        return {"n": n, "error": f"need at least {2 * min_size} finite samples"}
    pen = 2.0 * math.log(n) if penalty is None else penalty
    out = pelt(y, pen, cost="normal", min_size=min_size)
    if not out.ok:
        return {"n": n, "penalty": pen, "error": out.reason}
    bkps = out.value
    starts = [0] + bkps[:-1]
    means = [round(float(np.mean(y[a:b])), 6) for a, b in zip(starts, bkps)]
    return {"n": n, "penalty": round(pen, 6), "breakpoints": bkps, "means": means}


def changepoint_report(dq: DataQuality, penalty: float | None = None) -> dict:
    """Per feed and series: PELT's segmentation of the kept samples and the online
    detectors' counts, JSON-able."""
    out: dict[str, dict] = {}
    for f in dq._feeds.values():
        per: dict[str, dict] = {}
        for name, mon in f.drift.items():
            chrono = np.roll(mon.ring, -mon.pos)[-mon.n:] if mon.n else np.zeros(0)
            seg = segment(chrono, penalty)
            seg["online"] = {"cusum": f.cusum[name].signals,
                             "bocpd": len(f.bocpd[name].changes) if name in f.bocpd
                             else None}
            per[name] = seg
        out[f.key] = per
    return out
