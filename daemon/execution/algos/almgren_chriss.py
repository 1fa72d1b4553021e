"""Almgren–Chriss optimal liquidation schedule (linear impact, discrete time).

Reference: R. Almgren and N. Chriss, "Optimal Execution of Portfolio Transactions",
Journal of Risk 3(2), 2000, §1 (model) and §2 (efficient frontier, explicit solution,
half-life). Sell X units over T in N periods of tau = T/N. The price is an arithmetic
random walk with volatility sigma (price per sqrt(time unit)); selling n units in a period
moves it down permanently by gamma*n, and the period's fills suffer a temporary
discount epsilon + eta*n/tau. The schedule minimises E[cost] + lambda*Var[cost], where cost is
the implementation shortfall X*S0 - sum(n_k * fill price_k):

    eta_tilde = eta - gamma*tau/2                 (must be > 0)
    cosh(kappa*tau) = 1 + lambda*sigma^2*tau^2 / (2*eta_tilde)
    x_k = X sinh(kappa (T - t_k)) / sinh(kappa T),   t_k = k tau,  n_k = x_{k-1} - x_k
    E = gamma X^2/2 + epsilon X + eta_tilde X^2 tanh(kappa tau/2)
          (tau sinh(2 kappa T) + 2 T sinh(kappa tau)) / (2 tau^2 sinh^2(kappa T))
    V = sigma^2 X^2 (tau sinh(kappa T) cosh(kappa (T - tau)) - T sinh(kappa tau))
          / (2 sinh^2(kappa T) sinh(kappa tau))

lambda = 0 gives the straight line x_k = X (1 - k/N) (TWAP), E = gamma X^2/2 + epsilon X +
eta_tilde X^2/T. The drift alpha of the paper is left out (zero), as in its frontier.

Units: pick one time unit for T, tau and sigma (the paper uses days; on a crypto venue
seconds are natural) and use `impact.py` to estimate gamma, eta and sigma in it.

Use:
    p = ACParams(X=Decimal("2.0"), T=600.0, N=10, sigma=..., gamma=..., eta=...,
                 epsilon=..., lam=1e-6)
    tr = optimal_trajectory(p)           # floats: holdings, trades, kappa, E, V
    tr.lot_quantities(Decimal("0.001"))  # Decimal per slice, sum exactly X
    sched = tr.schedule(start_ns, time_unit_ns=1_000_000_000, lot=Decimal("0.001"),
                        max_slice=Decimal("0.5"))   # a twap.Schedule, driven the same way
    efficient_frontier(p, [0.0, 1e-7, 1e-6])

What it never does: send orders, read the market, or decide to liquidate. It only says
how much to trade in each period. It is not for flatten on e-stop, which is an immediate
sweep, never a schedule.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from decimal import Decimal

from daemon.execution.algos.twap import Schedule, lots_down

# Below this kappa*T the sinh/cosh closed forms lose digits to cancellation (relative error
# ~1e-16/(kappa T)^2) while the straight-line limit is off by only O((kappa T)^2): use the
# straight line there.
_LINEAR_KAPPA_T = 1e-6


@dataclass(frozen=True, slots=True)
class ACParams:
    """Inputs of the model; see the module docstring for units."""

    X: Decimal          # units to sell, > 0
    T: float            # horizon, time units
    N: int              # number of periods
    sigma: float        # price volatility per sqrt(time unit)
    gamma: float        # permanent impact: price per unit traded
    eta: float          # temporary impact: price per (unit per time unit)
    epsilon: float      # fixed cost per unit: half spread plus fees
    lam: float          # risk aversion, 1/price units; 0 = minimum expected cost

    def __post_init__(self) -> None:
        if not isinstance(self.X, Decimal) or self.X <= 0:
            raise ValueError(f"X must be a positive Decimal, got {self.X!r}")
        if not (self.T > 0 and math.isfinite(self.T)):
            raise ValueError(f"T must be positive, got {self.T}")
        if self.N < 1:
            raise ValueError(f"N must be >= 1, got {self.N}")
        for name in ("sigma", "gamma", "eta", "epsilon", "lam"):
            v = getattr(self, name)
            if not (v >= 0 and math.isfinite(v)):
                raise ValueError(f"{name} must be finite and >= 0, got {v}")
        if self.eta_tilde <= 0:
            raise ValueError(f"eta - gamma*tau/2 = {self.eta_tilde} must be > 0: temporary "
                             "impact too small for the permanent impact at this tau")

    @property
    def tau(self) -> float:
        return self.T / self.N

    @property
    def eta_tilde(self) -> float:
        return self.eta - self.gamma * self.tau / 2


def discrete_kappa(p: ACParams) -> float:
    """kappa solving cosh(kappa tau) = 1 + lambda sigma^2 tau^2 / (2 eta_tilde)."""
    a = p.lam * p.sigma ** 2 * p.tau ** 2 / (2 * p.eta_tilde)
    # acosh(1 + a) = log1p(a + sqrt(a (a + 2))): exact for small a, where acosh(1 + a)
    # would first round 1 + a and lose most of a.
    return math.log1p(a + math.sqrt(a * (a + 2))) / p.tau


def continuous_kappa(p: ACParams) -> float:
    """kappa_tilde = sqrt(lambda sigma^2 / eta_tilde), the tau -> 0 limit of kappa."""
    return math.sqrt(p.lam * p.sigma ** 2 / p.eta_tilde)


def holdings_fraction(kappa: float, T: float, t: float) -> float:
    """sinh(kappa (T - t)) / sinh(kappa T), written with exponentials so it neither
    overflows nor loses digits for large kappa T."""
    if kappa * T < _LINEAR_KAPPA_T:
        return (T - t) / T
    num = -math.expm1(-2 * kappa * (T - t))
    den = -math.expm1(-2 * kappa * T)
    return math.exp(-kappa * t) * num / den


def closed_form_cost(p: ACParams, kappa: float) -> tuple[float, float]:
    """(E, V) of the optimal trajectory by the paper's closed forms (module docstring)."""
    X = float(p.X)
    T, tau, et = p.T, p.tau, p.eta_tilde
    fixed = 0.5 * p.gamma * X ** 2 + p.epsilon * X
    if kappa * T < _LINEAR_KAPPA_T:
        n = p.N
        return (fixed + et * X ** 2 / T,
                p.sigma ** 2 * X ** 2 * T * (1 - 1 / n) * (1 - 1 / (2 * n)) / 3)
    kT, kt = kappa * T, kappa * tau
    # Every sinh/cosh ratio is written with decaying exponentials so a large kappa T (a
    # very risk-averse trader) neither overflows nor divides inf by inf.
    one_m = -math.expm1(-2 * kT)                                 # 1 - exp(-2 kT)
    inv_sinh2 = 4 * math.exp(-2 * kT) / one_m ** 2               # 1 / sinh^2(kT)
    # sinh(k tau) / sinh^2(kT)
    sinh_t_over_sinh2 = 2 * math.exp(kt - 2 * kT) * -math.expm1(-2 * kt) / one_m ** 2
    E = fixed + et * X ** 2 * math.tanh(kt / 2) * (
        tau * 2 / math.tanh(kT) + 2 * T * sinh_t_over_sinh2) / (2 * tau ** 2)
    # cosh(k(T - tau)) / (sinh(kT) sinh(k tau))
    cosh_over = (2 * math.exp(-2 * kt) * (1 + math.exp(-2 * (kT - kt)))
                 / (one_m * -math.expm1(-2 * kt)))
    V = 0.5 * p.sigma ** 2 * X ** 2 * (tau * cosh_over - T * inv_sinh2)
    return E, V


def trajectory_cost(p: ACParams, holdings: Sequence[float]) -> tuple[float, float]:
    """(E, V) of *any* trajectory x_0 = X .. x_N = 0 (the paper's general formulas):
    E = gamma X^2/2 + epsilon sum|n_k| + (eta_tilde/tau) sum n_k^2,
    V = sigma^2 tau sum_{k=1..N} x_k^2."""
    if len(holdings) != p.N + 1:
        raise ValueError(f"need N+1 = {p.N + 1} holdings, got {len(holdings)}")
    X = float(p.X)
    trades = [a - b for a, b in zip(holdings, holdings[1:])]
    E = (0.5 * p.gamma * X ** 2 + p.epsilon * sum(abs(n) for n in trades)
         + p.eta_tilde / p.tau * sum(n * n for n in trades))
    V = p.sigma ** 2 * p.tau * sum(x * x for x in holdings[1:])
    return E, V


def lot_quantities(trades: Sequence[float], total: Decimal, lot: Decimal) -> list[Decimal]:
    """Float trade sizes as Decimal, each rounded DOWN to `lot`, the remainder in the last
    so the list sums exactly to `total` (a multiple of `lot`)."""
    if not isinstance(total, Decimal) or total <= 0 or lots_down(total, lot) != total:
        raise ValueError(f"total {total!r} must be a positive multiple of lot {lot}")
    if not trades:
        raise ValueError("no trades")
    lot_f = float(lot)
    out: list[Decimal] = []
    left = total
    for n in trades[:-1]:
        # The 1e-9-lot nudge keeps float noise (a value like 199999.99999999997 meaning
        # 200000) from losing a whole lot; it cannot add a material amount.
        lots = max(0, math.floor(n / lot_f + 1e-9))
        q = min(Decimal(lots) * lot, left)
        out.append(q)
        left -= q
    out.append(left)
    return out


@dataclass(frozen=True, slots=True)
class Trajectory:
    """The optimal trajectory for `params` (floats; use `lot_quantities` for money)."""

    params: ACParams
    kappa: float
    kappa_tilde: float
    times: tuple[float, ...]       # t_0 .. t_N
    holdings: tuple[float, ...]    # x_0 = X .. x_N = 0
    trades: tuple[float, ...]      # n_1 .. n_N, sold during ((k-1) tau, k tau]
    expected_cost: float           # E, closed form
    variance: float                # V, closed form

    @property
    def half_life(self) -> float:
        """theta = 1/kappa, the paper's "half-life" of the trade (inf for lambda = 0)."""
        return math.inf if self.kappa == 0 else 1 / self.kappa

    @property
    def utility(self) -> float:
        """E + lambda V, the objective this trajectory minimises."""
        return self.expected_cost + self.params.lam * self.variance

    def lot_quantities(self, lot: Decimal) -> list[Decimal]:
        """n_1..n_N as Decimal rounded down to `lot`, the remainder in the last slice."""
        return lot_quantities(self.trades, self.params.X, lot)

    def schedule(self, start_ns: int, time_unit_ns: int, lot: Decimal, *,
                 max_slice: Decimal | None = None,
                 max_participation: Decimal | None = None) -> Schedule:
        """A `twap.Schedule` of this trajectory: slice k (n_k) falls due at the start of
        its period, start_ns + (k-1) tau time_unit_ns. Slices over the limit are deferred
        as any Schedule does (which flattens the curve towards TWAP; say so to the user)."""
        if time_unit_ns <= 0:
            raise ValueError(f"time_unit_ns must be positive, got {time_unit_ns}")
        tau_ns = self.params.tau * time_unit_ns
        times = [start_ns + round(k * tau_ns) for k in range(self.params.N)]
        return Schedule(list(zip(times, self.lot_quantities(lot), strict=True)), lot=lot,
                        max_slice=max_slice, max_participation=max_participation)


def optimal_trajectory(p: ACParams) -> Trajectory:
    """The Almgren–Chriss optimal trajectory for `p`."""
    kappa = discrete_kappa(p)
    X = float(p.X)
    times = tuple(k * p.tau for k in range(p.N + 1))
    holdings = [X * holdings_fraction(kappa, p.T, t) for t in times]
    holdings[0], holdings[-1] = X, 0.0     # exact ends, whatever the rounding
    trades = tuple(a - b for a, b in zip(holdings, holdings[1:]))
    E, V = closed_form_cost(p, kappa)
    return Trajectory(p, kappa, continuous_kappa(p), times, tuple(holdings), trades, E, V)


@dataclass(frozen=True, slots=True)
class FrontierPoint:
    lam: float
    kappa: float
    expected_cost: float
    variance: float


def efficient_frontier(p: ACParams, lambdas: Sequence[float]) -> list[FrontierPoint]:
    """(E, V) of the optimal trajectory for each lambda (all else as in `p`), in the order
    given. Along increasing lambda, E rises and V falls."""
    out = []
    for lam in lambdas:
        tr = optimal_trajectory(replace(p, lam=lam))
        out.append(FrontierPoint(lam, tr.kappa, tr.expected_cost, tr.variance))
    return out
