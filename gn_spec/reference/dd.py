"""Double-double arithmetic: error-free transformations compiled with numba.

A double-double (dd) number is an unevaluated sum ``hi + lo`` of two float64 with ``|lo| <= ulp(hi) / 2``; it
carries about 106 significant bits. The reference keeps every intermediate of Group Normalization in dd, so
that the final rounding to float64 is the only rounding that a result visibly suffers.

The primitives follow the classical error-free transformations (Knuth's TwoSum, Dekker's FastTwoSum, TwoProd
through a fused multiply-add) and the "accurate" dd addition of Bailey's QD library; each is a few lines and
states its exactness claim in its docstring.
"""

from __future__ import annotations

import numba
from numba.core import types
from numba.extending import intrinsic

# No inline="always": numba's own inlining re-types and re-lowers every primitive at every call site, which
# made the first run after an install compile 30 s of kernels (serially, on an idle 2-core machine) instead
# of 17 s.  LLVM still inlines these small functions into the kernels once they are linked, so the kernels
# run as fast (benchmarks/reference_speed.py: 25.9 against 26.4 ms forward + backward, measured 2026-12-03).
# Inlining never changes a result here: without fastmath, LLVM neither reassociates nor contracts into FMAs.
_jit = numba.njit(cache=True, error_model="numpy")


@intrinsic
def fma(typingctx, a, b, c):
    """a * b + c with a single rounding (LLVM's llvm.fma.f64; a hardware FMA where the CPU has one)."""
    sig = types.float64(types.float64, types.float64, types.float64)

    def codegen(context, builder, signature, args):
        return builder.fma(*args)

    return sig, codegen


@_jit
def two_sum(a: float, b: float) -> tuple[float, float]:
    """(s, e) with s = fl(a + b) and s + e = a + b exactly (Knuth; no precondition, no overflow assumed)."""
    s = a + b
    bb = s - a
    e = (a - (s - bb)) + (b - bb)
    return s, e


@_jit
def fast_two_sum(a: float, b: float) -> tuple[float, float]:
    """(s, e) with s = fl(a + b) and s + e = a + b exactly, provided |a| >= |b| or a == 0 (Dekker)."""
    s = a + b
    e = b - (s - a)
    return s, e


@_jit
def two_prod(a: float, b: float) -> tuple[float, float]:
    """(p, e) with p = fl(a * b) and p + e = a * b exactly, barring underflow of e."""
    p = a * b
    return p, fma(a, b, -p)  # type: ignore[call-arg]  # numba supplies typingctx


@_jit
def dd_add(ah: float, al: float, bh: float, bl: float) -> tuple[float, float]:
    """(a + b) in dd, relative error below 2^-104 of |a| + |b| (the accurate, sloppy-free variant)."""
    s, e = two_sum(ah, bh)
    t, f = two_sum(al, bl)
    e += t
    s, e = fast_two_sum(s, e)
    e += f
    return fast_two_sum(s, e)


@_jit
def dd_add_d(ah: float, al: float, b: float) -> tuple[float, float]:
    """(a + b) in dd for a float64 b; relative error below 2^-105 of |a| + |b|."""
    s, e = two_sum(ah, b)
    e += al
    return fast_two_sum(s, e)


@_jit
def dd_mul(ah: float, al: float, bh: float, bl: float) -> tuple[float, float]:
    """a * b in dd, relative error below 2^-103 (the neglected al*bl is below 2^-106 of the product)."""
    p, e = two_prod(ah, bh)
    e += ah * bl + al * bh
    return fast_two_sum(p, e)


@_jit
def dd_mul_d(ah: float, al: float, b: float) -> tuple[float, float]:
    """a * b in dd for a float64 b, relative error below 2^-104."""
    p, e = two_prod(ah, b)
    e += al * b
    return fast_two_sum(p, e)


@_jit
def dd_div(ah: float, al: float, bh: float, bl: float) -> tuple[float, float]:
    """a / b in dd by one long-division step with an exact remainder; relative error below 2^-103.

    When the quotient is a float64 the remainder step returns it exactly, which keeps constant groups exact.
    """
    q1 = ah / bh
    ph, pl = dd_mul_d(bh, bl, q1)
    rh, rl = dd_add(ah, al, -ph, -pl)
    q2 = rh / bh
    ph, pl = dd_mul_d(bh, bl, q2)
    rh, rl = dd_add(rh, rl, -ph, -pl)
    q3 = rh / bh
    q1, q2 = fast_two_sum(q1, q2)
    return dd_add_d(q1, q2, q3)


@_jit
def dd_rsqrt(vh: float, vl: float) -> tuple[float, float]:
    """1 / sqrt(v) in dd for v > 0: one Newton step y + y (1 - v y^2) / 2 from the float64 estimate.

    The float64 estimate has relative error about 2^-53; Newton's quadratic convergence and the dd evaluation
    of the residual 1 - v y^2 (computed exactly up to 2^-106) leave a relative error below 2^-102.
    """
    y = 1.0 / vh**0.5
    th, tl = dd_mul_d(vh, vl, y)
    th, tl = dd_mul_d(th, tl, y)
    rh, rl = dd_add(1.0, 0.0, -th, -tl)
    ch, cl = dd_mul_d(rh, rl, 0.5 * y)
    return dd_add_d(ch, cl, y)



@_jit
def dd_mean(sh: float, sl: float, m: float) -> tuple[float, float]:
    """s / m in dd (s renormalized first, as a running sum's low part may exceed half an ulp of its high)."""
    sh, sl = fast_two_sum(sh, sl)
    return dd_div(sh, sl, m, 0.0)
