"""Glosten–Milgrom (1985) spread from the probability of informed trading: a floor for the
market maker's quoted spread.

Model. The asset's value over the horizon h is V_H = m (1 + g/2) or V_L = m (1 - g/2) with
equal probability, where m is the mid and g the relative value gap. A fraction alpha of
the orders come from informed traders (they buy when V = V_H, sell when V = V_L); the rest
buy or sell with probability 1/2. A competitive, risk-neutral maker quotes the expected
value conditional on the order's side:

    ask = E[V | buy]  = m (1 + alpha g / 2),   bid = E[V | sell] = m (1 - alpha g / 2),
    spread = ask - bid = alpha g m.

alpha is the PIN (`daemon.analytics.pin`): the probability that a trade is informed. The
gap comes from volatility: g / 2 = sigma sqrt(h), one standard deviation of the log price
over the horizon at which private information becomes public (sigma is the log-return
volatility per sqrt(second), h in seconds). So spread = 2 alpha sigma sqrt(h) m.

Units: mid, spread and offsets in the quote currency per unit of the base asset
(Decimal, money); spread_bps in basis points of the mid. A quote tighter than this loses
to informed flow on average; the market maker may use it as a floor, never as its quote.

Pure O(1) arithmetic (safe on the event loop). Inputs that are not finite or out of range
give ``Outcome(None, reason)``, never NaN.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import ROUND_CEILING, Decimal

from daemon.analytics.outcome import Outcome, fail, ok


@dataclass(frozen=True, slots=True)
class GmSpread:
    alpha: float
    value_gap_rel: float   # g, relative to the mid
    spread: Decimal        # ask - bid, quote currency
    half_spread: Decimal   # ask - mid = mid - bid
    spread_bps: Decimal


def gm_spread(alpha: float, sigma_per_sqrt_s: float, horizon_s: float, mid: Decimal,
              tick: Decimal | None = None) -> Outcome[GmSpread]:
    """The Glosten–Milgrom spread floor for informed-trading probability `alpha` (the PIN),
    log-return volatility `sigma_per_sqrt_s` and information horizon `horizon_s`, at `mid`.

    With `tick`, the half-spread is rounded UP to a whole number of ticks (a floor must not
    be rounded below itself) and the spread is twice that."""
    if not (math.isfinite(alpha) and math.isfinite(sigma_per_sqrt_s) and math.isfinite(horizon_s)):
        return fail("non-finite input")
    if not 0.0 <= alpha <= 1.0:
        return fail("alpha must be a probability")
    if sigma_per_sqrt_s < 0 or horizon_s < 0:
        return fail("volatility and horizon must be non-negative")
    if not mid.is_finite() or mid <= 0:
        return fail("mid must be positive")
    if tick is not None and (not tick.is_finite() or tick <= 0):
        return fail("tick must be positive")
    g = 2.0 * sigma_per_sqrt_s * math.sqrt(horizon_s)
    if not math.isfinite(g):
        return fail("value gap overflows")
    half = Decimal(repr(alpha * g / 2.0)) * mid
    if tick is not None:
        half = (half / tick).to_integral_value(rounding=ROUND_CEILING) * tick
    spread = 2 * half
    bps = spread / mid * Decimal(10_000)
    return ok(GmSpread(alpha, g, spread, half, bps))
