"""The quality score (layer 5): five parts in [0, 1] over one poll interval, and the score.

  completeness = received / (received + missing): trades whose exchange ids were never
                 seen count as missing, and so does each depth gap or reported feed gap
  timeliness   = (1 - late events / events) x (1 - silence / interval length): an event is
                 late when its latency is more than `late_ms` above the lowest latency of
                 the recent intervals (the capture clocks are skewed by ~1.3 s, so only
                 the excess is judged); silence is the time the feed spent beyond
                 `stale_s` without any event
  validity     = events with usable values (finite positive prices and sizes, bid <= ask,
                 a valid book) / events
  consistency  = cross-source samples without a problem / samples
  accuracy     = 1 - Kalman outliers / prices filtered
A part with nothing to judge in the interval is 1 (no evidence against the data), except
timeliness, which an interval of silence drives to 0.

score = geometric mean of the five parts: one part that fails completely fails the score
(a product), while small losses on several parts stay small. This module is arithmetic
only: no state, no clock, never raises, never returns NaN.
"""
from __future__ import annotations

import math

PARTS = ("completeness", "timeliness", "validity", "consistency", "accuracy")


def _ratio(good: float, total: float) -> float:
    if not total > 0:
        return 1.0
    r = good / total
    return 0.0 if r < 0 or r != r else 1.0 if r > 1 else r


def parts(*, received: int, missing: int, events: int, late: int, silence_ns: int,
          interval_ns: int, invalid: int, samples: int, sample_problems: int,
          filtered: int, outliers: int) -> dict[str, float]:
    silent = _ratio(silence_ns, interval_ns) if interval_ns > 0 else 0.0
    timely = _ratio(events - late, events) * (1.0 - silent)
    return {
        "completeness": _ratio(received, received + missing),
        "timeliness": timely if events or not silence_ns else 0.0,
        "validity": _ratio(events - invalid, events),
        "consistency": _ratio(samples - sample_problems, samples),
        "accuracy": _ratio(filtered - outliers, filtered),
    }


def score(p: dict[str, float]) -> float:
    """Geometric mean of the parts (0 if any part is 0)."""
    logs = 0.0
    for name in PARTS:
        v = p.get(name, 1.0)
        if not v > 0:
            return 0.0
        logs += math.log(min(v, 1.0))
    return math.exp(logs / len(PARTS))
