"""Drift (issue 11, item 4): PSI, KL divergence and Wasserstein distance between a
reference window and the live window of one monitored series.

The live window is the last `live` samples; the reference is the `reference` samples just
before it (a sliding pair, so a long-running daemon compares today with the recent past,
not with the morning it started). Bins are the reference's quantiles (`bins` of them;
tied quantiles merge, so a discrete series gets fewer bins). Proportions are floored at
EPS = 1e-4 before PSI and KL (an empty bin would make both infinite); KL is
KL(live || reference) = sum p_live ln(p_live / p_ref) over the floored proportions
renormalised, as `scipy.stats.entropy(p_live, p_ref)`. PSI = sum (p_live - p_ref)
ln(p_live / p_ref) (Siddiqi 2006: < 0.1 stable, 0.1-0.25 some shift, > 0.25 shift).
Wasserstein-1 is computed on the raw samples (no bins), as
`scipy.stats.wasserstein_distance`, and judged in units of the reference's standard
deviation so one threshold fits prices, spreads and rates.

`DriftMonitor.push` is O(1) (one array store); `check` is O(n log n) and belongs on the
poll interval, never per event. scipy is a test-only dependency: nothing here imports it.
Never raises on numeric input; non-finite samples are counted and skipped.
"""
from __future__ import annotations

import math

import numpy as np

EPS = 1e-4


def quantile_edges(reference: np.ndarray, bins: int) -> np.ndarray:
    """Interior bin edges: the reference's 1/bins .. (bins-1)/bins quantiles, unique."""
    qs = np.quantile(reference, np.arange(1, bins) / bins)
    return np.unique(qs)


def binned(x: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Proportions of x in the bins (-inf, e0], (e0, e1], ..., (e_last, inf)."""
    idx = np.searchsorted(edges, x, side="left")
    counts = np.bincount(idx, minlength=len(edges) + 1).astype(float)
    return counts / max(len(x), 1)


def floored(p: np.ndarray) -> np.ndarray:
    return np.maximum(p, EPS)


def psi(live: np.ndarray, ref: np.ndarray) -> float:
    """Population stability index of two proportion vectors (floored at EPS)."""
    a, e = floored(live), floored(ref)
    return float(np.sum((a - e) * np.log(a / e)))


def kl(p: np.ndarray, q: np.ndarray) -> float:
    """KL(p || q) in nats after flooring at EPS and normalising both."""
    p, q = floored(p), floored(q)
    p, q = p / p.sum(), q / q.sum()
    return float(np.sum(p * np.log(p / q)))


def wasserstein(a: np.ndarray, b: np.ndarray) -> float:
    """Wasserstein-1 distance between two empirical distributions (equal weights)."""
    a, b = np.sort(a), np.sort(b)
    if len(a) == 0 or len(b) == 0:
        return 0.0
    allv = np.sort(np.concatenate((a, b)))
    deltas = np.diff(allv)
    ca = np.searchsorted(a, allv[:-1], side="right") / len(a)
    cb = np.searchsorted(b, allv[:-1], side="right") / len(b)
    return float(np.sum(np.abs(ca - cb) * deltas))


class DriftMonitor:
    """Reference and live windows of one series, and their PSI / KL / Wasserstein."""

    __slots__ = ("reference", "live", "bins", "psi_max", "kl_max", "w_max", "ring", "pos",
                 "n", "skipped", "last", "drifts")

    def __init__(self, reference: int, live: int, bins: int, psi_max: float, kl_max: float,
                 w_max: float) -> None:
        self.reference, self.live, self.bins = reference, live, bins
        self.psi_max, self.kl_max, self.w_max = psi_max, kl_max, w_max
        self.ring = np.zeros(reference + live)
        self.pos = 0
        self.n = 0
        self.skipped = 0
        self.last: dict = {"ready": False}
        self.drifts = 0

    def push(self, x: float) -> None:
        if not math.isfinite(x):
            self.skipped += 1
            return
        self.ring[self.pos] = x
        self.pos += 1
        if self.pos == len(self.ring):
            self.pos = 0
        if self.n < len(self.ring):
            self.n += 1

    def ready(self) -> bool:
        return self.n == len(self.ring)

    def check(self) -> dict:
        """{"ready", "psi", "kl", "wasserstein" (raw), "wasserstein_sd", "drift"}; drift
        is True when any of the three is above its threshold."""
        if not self.ready():
            self.last = {"ready": False, "samples": self.n, "needed": len(self.ring)}
            return self.last
        chrono = np.roll(self.ring, -self.pos)        # oldest first
        ref, live = chrono[:self.reference], chrono[self.reference:]
        edges = quantile_edges(ref, self.bins)
        pr, pl = binned(ref, edges), binned(live, edges)
        p, k = psi(pl, pr), kl(pl, pr)
        w = wasserstein(live, ref)
        sd = float(np.std(ref))
        if sd > 0:
            wn = w / sd
        else:   # a constant reference: any spread of the live window is a drift
            wn = 0.0 if w == 0 else math.inf
        drift = p > self.psi_max or k > self.kl_max or wn > self.w_max
        if drift:
            self.drifts += 1
        self.last = {"ready": True, "psi": round(p, 6), "kl": round(k, 6),
                     "wasserstein": round(w, 9),
                     "wasserstein_sd": round(wn, 6) if math.isfinite(wn) else 1e9,
                     "drift": bool(drift)}
        return self.last
