"""Benford first-digit test (layer 1): chi-square and mean absolute deviation (MAD) of the
first significant digits of trade sizes, with Nigrini's conformity bands.

Nigrini (2012), *Benford's Law*, Wiley, table 7.1, first digits: MAD <= 0.006 close
conformity, <= 0.012 acceptable, <= 0.015 marginally acceptable, above: nonconformity.
The chi-square has 8 degrees of freedom (critical value 15.507 at 5 %). With thousands of
trades the chi-square rejects almost any real data set (Nigrini's own caveat), which is why
the MAD and its bands carry the verdict.

Real exchange trade sizes do not follow Benford (round lots, minimum sizes, algorithms
that slice orders at one size), so the alert compares the live window's MAD with the MAD
of the symbol's own reference window: a size distribution that moves away from Benford by
more than a margin is suspect. `RollingDigits.push` is O(1); the statistics are O(9).
This module never reads a clock and never raises on bad input (non-finite or non-positive
sizes are counted and skipped).
"""
from __future__ import annotations

import math

BENFORD = tuple(math.log10(1 + 1 / d) for d in range(1, 10))
NIGRINI_BANDS = ((0.006, "close"), (0.012, "acceptable"), (0.015, "marginal"))
CHI2_CRIT_8DF_5PCT = 15.507
_DIGIT_MEMO: dict[float, int] = {}   # size -> first_digit(size), see RollingDigits.push
_DIGIT_MEMO_MAX = 4096


def first_digit(x: float) -> int:
    """1..9 for a finite positive x, else 0 (not a size)."""
    if not (x > 0 and x < math.inf):
        return 0
    if x < 1e-290 or x > 1e290:
        return int(f"{x:e}"[0])     # 10.0 ** e under- or overflows out here
    e = math.floor(math.log10(x))
    d = int(x / 10.0 ** e)
    # log10 rounds near a power of ten (9.999999999999999e-05 gives e = -4, d = 0; a
    # value just above one can give d = 10): step the exponent once.
    if d == 0:
        d = int(x / 10.0 ** (e - 1))
    elif d >= 10:
        d = int(x / 10.0 ** (e + 1))
    return d if 1 <= d <= 9 else 1


def proportions(counts: list[int]) -> list[float]:
    n = sum(counts)
    return [c / n for c in counts] if n else [0.0] * 9


def mad(counts: list[int], expected: tuple[float, ...] | list[float] = BENFORD) -> float:
    """Nigrini's MAD: mean over the 9 digits of |observed - expected proportion|."""
    p = proportions(counts)
    return sum(abs(a - e) for a, e in zip(p, expected)) / 9.0


def chi_square(counts: list[int], expected: tuple[float, ...] | list[float] = BENFORD
               ) -> float:
    """Pearson's chi-square of the 9 digit counts against the expected proportions."""
    n = sum(counts)
    if n == 0:
        return 0.0
    return sum((c - n * e) ** 2 / (n * e) for c, e in zip(counts, expected) if e > 0)


def conformity(m: float) -> str:
    for limit, label in NIGRINI_BANDS:
        if m <= limit:
            return label
    return "nonconformity"


class RollingDigits:
    """First-digit counts over the last `window` sizes (a ring of digits), and a reference:
    the counts of the first full window, renewed by `renew_reference` (the monitor does,
    once a whole new window has passed while the layer was not in fault)."""

    __slots__ = ("window", "ring", "pos", "n", "counts", "reference", "skipped",
                 "since_reference")

    def __init__(self, window: int) -> None:
        self.window = window
        self.ring = bytearray(window)
        self.pos = 0
        self.n = 0
        self.counts = [0] * 9
        self.reference: list[int] | None = None
        self.skipped = 0
        self.since_reference = 0   # sizes pushed since the reference was taken

    def push(self, size: float) -> None:
        # Trade sizes repeat (lot multiples: 0.00009 BTC is a sixth of a day's trades), so
        # the pure first_digit is memoised; the memo is dropped when it grows too big.
        d = _DIGIT_MEMO.get(size)
        if d is None:
            d = first_digit(size)
            if len(_DIGIT_MEMO) >= _DIGIT_MEMO_MAX:
                _DIGIT_MEMO.clear()
            _DIGIT_MEMO[size] = d
        if d == 0:
            self.skipped += 1
            return
        ring, pos = self.ring, self.pos
        if self.n == self.window:
            self.counts[ring[pos] - 1] -= 1
        else:
            self.n += 1
        ring[pos] = d
        self.counts[d - 1] += 1
        self.since_reference += 1
        self.pos = pos + 1 if pos + 1 < self.window else 0
        if self.reference is None and self.n == self.window and self.pos == 0:
            self.renew_reference()

    def renew_reference(self) -> None:
        self.reference = list(self.counts)
        self.since_reference = 0

    def full(self) -> bool:
        return self.n == self.window
