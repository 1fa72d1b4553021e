"""Two-player bimatrix games solved by Lemke–Howson, and the market makers' quoting game.

Lemke–Howson (1964), in the tableau form of von Stengel (Handbook of Game Theory vol. 3,
ch. 45, 2002). Payoffs are shifted to be positive (equilibria do not change); with row
payoffs A (m x n) and column payoffs B, the polytopes are

    P = {x >= 0 : B^T x <= 1}  (labels: i where x_i = 0, m+j where (B^T x)_j = 1)
    Q = {y >= 0 : A y <= 1}    (labels: i where (A y)_i = 1, m+j where y_j = 0)

Starting from the artificial equilibrium (0, 0), label k is dropped: the variable with label
k enters its tableau, the minimum-ratio test picks the leaving variable, whose label then
enters the other tableau, and so on until label k leaves. The normalised (x, y) is a Nash
equilibrium. Ties in the ratio test (degenerate games) are broken lexicographically
(ratios of (rhs, B^-1 row) vectors), which guarantees termination and a genuine
equilibrium. Arithmetic is exact (`fractions.Fraction`; floats are converted exactly), so
no tolerance decides a pivot. Every equilibrium reachable from (0,0) with some dropped
label is found by `equilibria` (all m+n labels); in degenerate games or games with more
equilibria than the paths reach, that is not every equilibrium (LH's known limit).

The quoting game (`maker_game`): two makers each quote Tight (half-spread h_T) or Wide
(h_W), in bps of the mid. Per period, U uninformed unit orders and I = U pi/(1-pi) informed
ones arrive (pi = the PIN). Both kinds hit the best quote; at equal quotes the makers split
the flow, Tight against Wide takes the share q (the wide maker keeps 1-q, from size beyond
the top level). Uninformed flow falls to kappa U when both quote wide (it is price
sensitive); informed flow does not (its edge g, the adverse move after an informed fill, in
bps, exceeds the spread). A maker's payoff, in bps x units per period:

    share x ( U_eff h_own + I (h_own - g) )

This module is pure computation, called only where a strategy asks for it (through
`daemon.analytics.heavy` when the game is large); it never returns NaN or inf.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

from daemon.analytics.outcome import Outcome, fail, ok

MAX_PIVOTS = 100_000


@dataclass(frozen=True, slots=True)
class Equilibrium:
    """A mixed-strategy Nash equilibrium: probabilities over rows and columns, and each
    player's expected payoff (in the units of the payoff matrices)."""

    row: tuple[float, ...]
    col: tuple[float, ...]
    row_payoff: float
    col_payoff: float
    dropped_label: int
    pivots: int


class _Tableau:
    """Rows r: sum_c T[r][c] v_c = T[r][-1] over the variables indexed by label; `basis[r]`
    is the label basic in row r. `lex_cols` are the initial-basis columns (= B^-1)."""

    def __init__(self, rows: list[list[Fraction]], basis: list[int], lex_cols: list[int]):
        self.rows = rows
        self.basis = basis
        self.lex_cols = lex_cols

    def pivot(self, entering: int) -> int | None:
        """Enter `entering`, return the label that leaves (None: unbounded ray)."""
        best_r: int | None = None
        best_key: tuple[Fraction, ...] | None = None
        for r, row in enumerate(self.rows):
            p = row[entering]
            if p > 0:
                key = (row[-1] / p,) + tuple(row[c] / p for c in self.lex_cols)
                if best_key is None or key < best_key:
                    best_key, best_r = key, r
        if best_r is None:
            return None
        prow = self.rows[best_r]
        p = prow[entering]
        prow[:] = [v / p for v in prow]
        for r, row in enumerate(self.rows):
            if r != best_r and row[entering] != 0:
                f = row[entering]
                row[:] = [v - f * pv for v, pv in zip(row, prow)]
        leaving = self.basis[best_r]
        self.basis[best_r] = entering
        return leaving

    def values(self, labels: range) -> list[Fraction]:
        out = [Fraction(0)] * len(labels)
        for r, lab in enumerate(self.basis):
            if lab in labels:
                out[lab - labels.start] = self.rows[r][-1]
        return out


def _as_fractions(m: Sequence[Sequence[float]]) -> list[list[Fraction]] | str:
    rows = [list(r) for r in m]
    if not rows or not rows[0]:
        return "empty payoff matrix"
    n = len(rows[0])
    if any(len(r) != n for r in rows):
        return "ragged payoff matrix"
    out = []
    for r in rows:
        fr = []
        for v in r:
            if not math.isfinite(float(v)):
                return "non-finite payoff"
            fr.append(Fraction(v) if isinstance(v, (int, Fraction)) else Fraction(float(v)))
        out.append(fr)
    return out


def lemke_howson(A: Sequence[Sequence[float]], B: Sequence[Sequence[float]],
                 dropped_label: int = 0) -> Outcome[Equilibrium]:
    """One Nash equilibrium of the bimatrix game (A row payoffs, B column payoffs, both
    m x n), by the Lemke–Howson path that drops `dropped_label` (0..m-1 the row player's
    strategies, m..m+n-1 the column player's, as in nashpy)."""
    fa, fb = _as_fractions(A), _as_fractions(B)
    if isinstance(fa, str):
        return fail(fa)
    if isinstance(fb, str):
        return fail(fb)
    m, n = len(fa), len(fa[0])
    if len(fb) != m or len(fb[0]) != n:
        return fail("A and B must have the same shape")
    if not 0 <= dropped_label < m + n:
        return fail(f"dropped_label must be in 0..{m + n - 1}")
    # Shift both to strictly positive payoffs: the polytopes are then bounded.
    lo = min(min(min(r) for r in fa), min(min(r) for r in fb))
    shift = 1 - lo if lo <= 0 else Fraction(0)
    pa = [[v + shift for v in r] for r in fa]
    pb = [[v + shift for v in r] for r in fb]
    one = Fraction(1)
    # Q: r_i + sum_j A_ij y_j = 1; columns by label (r_i: i, y_j: m+j).
    q_rows = [[one if c == i else Fraction(0) for c in range(m)] + pa[i] + [one] for i in range(m)]
    q = _Tableau(q_rows, list(range(m)), list(range(m)))
    # P: sum_i B_ij x_i + s_j = 1; columns by label (x_i: i, s_j: m+j).
    p_rows = [[pb[i][j] for i in range(m)] + [one if c == j else Fraction(0) for c in range(n)] + [one]
              for j in range(n)]
    p = _Tableau(p_rows, list(range(m, m + n)), list(range(m, m + n)))
    tab = p if dropped_label < m else q
    entering = dropped_label
    pivots = 0
    while True:
        leaving = tab.pivot(entering)
        pivots += 1
        if leaving is None:
            return fail("unbounded pivot (should not happen with positive payoffs)")
        if leaving == dropped_label:
            break
        if pivots >= MAX_PIVOTS:
            return fail(f"no equilibrium after {MAX_PIVOTS} pivots")
        tab = q if tab is p else p
        entering = leaving
    x = p.values(range(0, m))
    y = q.values(range(m, m + n))
    sx, sy = sum(x), sum(y)
    if sx <= 0 or sy <= 0:
        return fail("path ended at the artificial equilibrium")
    x = [v / sx for v in x]
    y = [v / sy for v in y]
    row_pay = sum(x[i] * fa[i][j] * y[j] for i in range(m) for j in range(n))
    col_pay = sum(x[i] * fb[i][j] * y[j] for i in range(m) for j in range(n))
    return ok(Equilibrium(tuple(float(v) for v in x), tuple(float(v) for v in y),
                          float(row_pay), float(col_pay), dropped_label, pivots))


def equilibria(A: Sequence[Sequence[float]], B: Sequence[Sequence[float]]) -> Outcome[list[Equilibrium]]:
    """Every equilibrium reached by dropping each of the m+n labels, without duplicates
    (the first label reaching it is kept)."""
    m, n = len(A), len(A[0]) if len(A) else 0
    found: list[Equilibrium] = []
    seen: set[tuple[tuple[float, ...], tuple[float, ...]]] = set()
    for k in range(m + n):
        res = lemke_howson(A, B, k)
        if res.value is None:
            return fail(res.reason or "lemke_howson failed")
        key = (tuple(round(v, 12) for v in res.value.row), tuple(round(v, 12) for v in res.value.col))
        if key not in seen:
            seen.add(key)
            found.append(res.value)
    return ok(found)


def is_nash(A: Sequence[Sequence[float]], B: Sequence[Sequence[float]],
            row: Sequence[float], col: Sequence[float], tol: float = 1e-9) -> bool:
    """Best-response check: no pure deviation improves either player's payoff by more
    than `tol`."""
    m, n = len(A), len(A[0])
    row_pay = [sum(A[i][j] * col[j] for j in range(n)) for i in range(m)]
    col_pay = [sum(row[i] * B[i][j] for i in range(m)) for j in range(n)]
    v_row = sum(row[i] * row_pay[i] for i in range(m))
    v_col = sum(col[j] * col_pay[j] for j in range(n))
    return max(row_pay) <= v_row + tol and max(col_pay) <= v_col + tol


@dataclass(frozen=True, slots=True)
class MakerGameParams:
    """The quoting game's inputs; spreads and the adverse move in bps of the mid, flows in
    unit orders per period. See the module docstring for the model."""

    half_spread_tight_bps: float
    half_spread_wide_bps: float
    uninformed_per_period: float
    pin: float
    adverse_move_bps: float
    tight_share_vs_wide: float = 0.9
    wide_participation: float = 0.5


TIGHT, WIDE = 0, 1


def maker_game(p: MakerGameParams) -> Outcome[tuple[list[list[float]], list[list[float]]]]:
    """Payoff matrices (A for us, rows; B for the competitor, columns), strategies
    [Tight, Wide]. Symmetric: B = A^T."""
    vals = (p.half_spread_tight_bps, p.half_spread_wide_bps, p.uninformed_per_period, p.pin,
            p.adverse_move_bps, p.tight_share_vs_wide, p.wide_participation)
    if not all(math.isfinite(v) for v in vals):
        return fail("non-finite game parameter")
    if not 0 <= p.pin < 1:
        return fail("pin must be in [0, 1)")
    if not (0 <= p.tight_share_vs_wide <= 1 and 0 <= p.wide_participation <= 1):
        return fail("shares must be in [0, 1]")
    if p.uninformed_per_period < 0 or p.half_spread_tight_bps < 0 or p.half_spread_wide_bps < p.half_spread_tight_bps:
        return fail("need 0 <= tight <= wide half-spread and non-negative flow")
    u = p.uninformed_per_period
    inf = u * p.pin / (1 - p.pin)
    h = (p.half_spread_tight_bps, p.half_spread_wide_bps)
    share = {(TIGHT, TIGHT): 0.5, (WIDE, WIDE): 0.5,
             (TIGHT, WIDE): p.tight_share_vs_wide, (WIDE, TIGHT): 1 - p.tight_share_vs_wide}
    a = [[0.0, 0.0], [0.0, 0.0]]
    for own in (TIGHT, WIDE):
        for other in (TIGHT, WIDE):
            u_eff = u * (p.wide_participation if (own, other) == (WIDE, WIDE) else 1.0)
            a[own][other] = share[(own, other)] * (u_eff * h[own] + inf * (h[own] - p.adverse_move_bps))
    b = [[a[j][i] for j in (TIGHT, WIDE)] for i in (TIGHT, WIDE)]
    return ok((a, b))


def quote_choice(p: MakerGameParams) -> Outcome[Equilibrium]:
    """Our side of the quoting game: the reachable equilibrium with the highest payoff for
    us (row player); ``row[0]`` is the probability of quoting tight."""
    g = maker_game(p)
    if g.value is None:
        return fail(g.reason or "bad game")
    eqs = equilibria(*g.value)
    if eqs.value is None:
        return fail(eqs.reason or "no equilibrium")
    return ok(max(eqs.value, key=lambda e: e.row_payoff))
