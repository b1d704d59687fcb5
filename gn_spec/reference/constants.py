"""The constants the reference's tiers share, each defined once, with its derivation on the line beside it.

u = 2^-53 is the unit roundoff of float64; a double-double (dd) carries about 106 bits. Where two tiers need
different values (their rescaling windows) both are here, named for their tier, each with its own reason.
"""

from __future__ import annotations

from gn_spec.reference.jit import jit as _jit

# -- the dd format and the error of dd evaluation ------------------------------------------------------------

U_DD = 2.0**-104  # unit of the dd format, 4 u^2: each dd operation in dd.py errs by a small multiple of it
K_OPS = 64.0  # each dd operation errs by at most 5 U_DD (relative), no result chains over 12: 60 <= 64


@_jit
def sum_err(per_lane: float, merges: float) -> float:
    """Error of a compensated dd sum, in units of U_DD times the sum of the terms' magnitudes.

    A Sum2-like accumulator (Ogita, Rump and Oishi: TwoSum on the high part, each error and each term's own
    low part q_i, |q_i| <= 2u |p_i|, added into the low part in float64) of n terms p_i with A = sum |p_i|
    has |t_i| <= u A for its TwoSum errors, so sum |t_i + q_i| <= (n + 2) u A, and the n + 1 roundings of
    the low-order accumulation cost at most u times that: (n + 2)^2 u^2 A = (n + 2)^2 / 4 U_DD A. Each of
    ``merges`` dd additions combining partial sums (lanes, rows) adds at most U_DD A, and K_OPS covers the
    representation error of the terms, the (1 + n u) factors and the dd operations applied to the sum later.
    The precise tier sums in one accumulator (merges = 0); the fast tier in lanes merged at the end.
    """
    return K_OPS + merges + 0.25 * (per_lane + 2.0) ** 2


# -- certification: when a bound E on a result's dd error (before the final rounding) makes it faithful ------

CERT_ULPS = 0.25  # E < ulp(y)/4 keeps the exact value within one float64 spacing of y even at a power of two
CERT_REL = CERT_ULPS * 2.0**-53  # 2^-55: ulp(y) > 2^-53 |y| for normal y, so E <= 2^-55 |y| < ulp(y)/4
CERT_MIN = 2.0**-1020  # fast tier: below this |y| may be subnormal (double rounding): never certified there
UNDER = 2.0**-1068  # fast tier: covers the absolute errors (2^-1075 each) of a result's underflowed products
UNDER_A = 2.0**-1070  # fast tier: the absolute error underflow adds to a per-channel dd coefficient (A, W, P)

# -- rescaling: blocks whose largest magnitude lies outside a window are multiplied by 2^-e (exact) first ----

EXP_CLAMP = 1000  # |e| <= 1000 keeps the scale 2^-e a normal float64 (normal exponents reach -1022 .. 1023)
# precise tier: it sums the values themselves (centred values are rescaled again before squaring), so
# |x| < 2^500 keeps a sum of up to 2^523 of them finite and |x| > 2^-500 keeps their TwoSum errors
# (2^-106 below) at least 2^-606, normal.
PRECISE_WINDOW = 2.0**500
# fast tier: it squares x - c unscaled, so |x - c| in [2^-400, 2^400] puts the squares in [2^-800, 2^800]:
# a sum of up to 2^223 of them stays finite and their dd low parts (2^-106 below, >= 2^-906) stay normal.
FAST_WINDOW = 2.0**400


@_jit
def outside(amax: float, window: float) -> bool:
    """True when a largest magnitude amax > 0 lies outside [1 / window, window]: the block needs rescaling."""
    return amax > window or 0.0 < amax < 1.0 / window
