"""Powers of two shared by the tiers: exponents, ulps, exact rescaling, and the normalizer rho 2^k.

Both compiled tiers keep their statistics scaled by a power of two (exact) and apply it at the end; this
module holds what they do alike, so that neither reaches into the other's private names.
"""

from __future__ import annotations

import math

import numpy as np

from gn_spec.reference.dd import dd_add_d, dd_rsqrt
from gn_spec.reference.jit import jit as _jit


@_jit
def exponent(v: float) -> int:
    """e such that 2^(e-1) <= |v| < 2^e (frexp's exponent); 0 for v == 0."""
    if v == 0.0:
        return 0
    return math.frexp(v)[1]


@_jit
def ulp(v: float) -> float:
    """The spacing of float64 at v (2^-1074 at and below the subnormal range)."""
    e = exponent(v)
    if v == 0.0 or e - 53 < -1074:
        return 2.0**-1074
    return math.ldexp(1.0, e - 53)


@_jit
def scaled(h: float, l: float, k: int) -> tuple[float, float]:
    """(h + l) * 2^k, exact barring over- or underflow."""
    if k == 0:
        return h, l
    return math.ldexp(h, k), math.ldexp(l, k)


@_jit
def normalizer(vh: float, vl: float, eps: float, e: int):
    """rho and kx with 1/sqrt(var + eps) = rho * 2^(kx - e), given the variance v of values scaled by 2^-e.

    The scaled eps is eps * 2^-2e. When it would exceed 2^900 the (scaled) variance, at most 4, is below
    2^-898 of it and is dropped: rho = 1/sqrt(eps) and kx = e; likewise when the variance is exactly 0 (a
    constant block, whose scaled eps could underflow). Otherwise rho = 1/sqrt(v + eps 2^-2e), kx = 0.
    eps = 0 with a zero variance gives rho = inf (the result is undefined; outputs become NaN).
    """
    if eps > 0.0 and (vh == 0.0 or exponent(eps) - 2 * e > 900):
        rh, rl = dd_rsqrt(eps, 0.0)
        return rh, rl, e
    es = math.ldexp(eps, -2 * e)
    wh, wl = dd_add_d(vh, vl, es)
    if wh <= 0.0:
        return np.inf, 0.0, 0
    rh, rl = dd_rsqrt(wh, wl)
    return rh, rl, 0
