"""Exact Group Normalization of one group, in rational arithmetic, for the framework findings.

Nothing here comes from gn_spec: the findings in this folder must stand without the checker. Every input
(data, eps, weight, bias) is taken as the exact rational value of the binary float it is, the mean and the
biased variance are exact fractions, and the one irrational step, the square root, is done in Decimal at
60 significant digits, far more than any float needs.
"""

from __future__ import annotations

import math
from decimal import Decimal, localcontext
from fractions import Fraction

DIGITS = 60


def exact_group(xs: list[float], eps: float) -> list[Decimal]:
    """(x_i - mean) / sqrt(var + eps) for one group, each to DIGITS significant digits."""
    fx = [Fraction(float(x)) for x in xs]
    n = len(fx)
    mean = sum(fx, Fraction(0)) / n
    var = sum(((x - mean) ** 2 for x in fx), Fraction(0)) / n
    denom = var + Fraction(float(eps))
    with localcontext() as ctx:
        ctx.prec = DIGITS
        root = (Decimal(denom.numerator) / Decimal(denom.denominator)).sqrt()
        return [(Decimal((x - mean).numerator) / Decimal((x - mean).denominator)) / root for x in fx]


def exact_gn_rows(rows: list[list[float]], groups: int, eps: float) -> list[list[Decimal]]:
    """Exact GN of each row of an (N, C) input, channels split into `groups` equal consecutive groups."""
    out = []
    for row in rows:
        size = len(row) // groups
        out.append([y for g in range(groups) for y in exact_group(row[g * size:(g + 1) * size], eps)])
    return out


def worst_relative_error(got: list[list[float]], exact: list[list[Decimal]]) -> float:
    """max |got - exact| / max(max |exact|, 1): inf when `got` holds a NaN or an infinity."""
    scale = max(max(abs(v) for row in exact for v in row), Decimal(1))
    worst = 0.0
    for grow, erow in zip(got, exact, strict=True):
        for g, e in zip(grow, erow, strict=True):
            if not math.isfinite(g):
                return math.inf
            worst = max(worst, float(abs(Decimal(g) - e) / scale))
    return worst


def exact_double_grad_x(xs: list[float], dy: list[float], ggi: list[float], eps: float) -> list[float]:
    """d/dx_j of sum_i ggi_i * dL/dx_i for one group with no affine, where dL/dx = (dy - mean(dy) - xhat *
    mean(dy * xhat)) / sqrt(var + eps): the first-order gradient in mpmath at 60 digits, differentiated by
    mpmath.diff (its step is chosen for that precision)."""
    import mpmath

    mp = mpmath.mp
    n = len(xs)

    def contracted(*x: object) -> object:
        mean = mp.fsum(x) / n
        var = mp.fsum((v - mean) ** 2 for v in x) / n
        sigma = mp.sqrt(var + mp.mpf(eps))
        xhat = [(v - mean) / sigma for v in x]
        mdy = mp.fsum(dyv) / n
        mdyx = mp.fsum(a * b for a, b in zip(dyv, xhat, strict=True)) / n
        return mp.fsum(g * (d - mdy - h * mdyx) / sigma for g, d, h in zip(gv, dyv, xhat, strict=True))

    with mpmath.workdps(60):
        dyv, gv = [mp.mpf(v) for v in dy], [mp.mpf(v) for v in ggi]
        point = [mp.mpf(float(v)) for v in xs]
        return [float(mpmath.diff(contracted, point, tuple(int(i == j) for i in range(n)))) for j in range(n)]
