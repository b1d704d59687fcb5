"""Compiled per-group kernels of the reference (numba, parallel over (sample, group) blocks).

Every kernel takes the input viewed as ``(N, G, cpg, S)`` (cpg = channels per group, S = spatial size) and
works on one (n, g) block at a time. Inside a block the arithmetic is double-double (``_dd``); the only
rounding a result suffers that is not far below 2^-100 is the final rounding to float64.

Scaling. A block is first summed as it is; when its largest magnitude lies outside [2^-500, 2^500] it is
summed again after multiplying by 2^-e1 (exact), so sums can neither overflow nor lose their low parts to
underflow. Centred values are then scaled by 2^-e2 so that the largest lies in [1/2, 2) before squaring.
With those two exact scalings ``d_i = (x_i - mu) 2^-(e1+e2)`` and

    xhat_i = d_i * rho * 2^kx,        r = 1/sqrt(var + eps) = rho * 2^kr,

where rho is computed from the scaled variance and the scaled eps (see ``_normalizer``).

Certification. Next to each result the kernels evaluate a first-order a-priori bound E on the dd error (before
the final rounding). When E is not below a quarter ulp of the rounded result the element is counted in
``uncertified``; the Python layer recomputes such blocks with the exact oracle, so the published results are
faithful everywhere.
"""

from __future__ import annotations

import math

import numpy as np
from numba import prange

from gn_spec.reference.dd import (
    dd_add,
    dd_add_d,
    dd_div,
    dd_mul,
    dd_mul_d,
    dd_rsqrt,
    fast_two_sum,
    two_prod,
    two_sum,
)
from gn_spec.reference.jit import block_kernel
from gn_spec.reference.jit import jit as _jit

# Unit of the dd format, and the safety factor that covers the constants of the dd operations chained to form
# any one result (each operation's relative error is at most 5 u_dd; no result chains more than 12 of them).
U_DD = 2.0**-104
K_OPS = 64.0


@_jit
def _sum_err(n: float) -> float:
    """Bound, in units of U_DD times the sum of |terms|, on a compensated dd sum of n terms plus K_OPS.

    The running sums here are Sum2-like (TwoSum on the high part, the errors added into the low part in
    float64), whose worst-case error is gamma_(n-1)^2 sum |t| ~ (n u)^2 sum |t| = (n^2 / 4) U_DD sum |t|; the
    (n + 2)^2 / 4 form covers the final renormalization.
    """
    return K_OPS + (n + 2.0) ** 2 / 4.0


@_jit
def _exponent(v: float) -> int:
    """e such that 2^(e-1) <= |v| < 2^e (frexp's exponent); 0 for v == 0."""
    if v == 0.0:
        return 0
    return math.frexp(v)[1]


@_jit
def _ulp(v: float) -> float:
    """The spacing of float64 at v (2^-1074 at and below the subnormal range)."""
    e = _exponent(v)
    if v == 0.0 or e - 53 < -1074:
        return 2.0**-1074
    return math.ldexp(1.0, e - 53)


@_jit
def _block_sum(xg, p1: float):
    """Sum of p1 * x over a block, as an exact dd when possible, with extremes and a finiteness flag.

    Neumaier-style accumulation where the compensation term itself is accumulated by TwoSum: the part ``lost``
    that would have been dropped is bounded, and the dd (sh, sl) is the exact sum when lost == 0.
    """
    s = 0.0
    c = 0.0
    lost = 0.0
    amax = 0.0
    vmin = np.inf
    vmax = -np.inf
    finite = True
    for j in range(xg.shape[0]):
        for i in range(xg.shape[1]):
            v = xg[j, i] * p1
            if not np.isfinite(v):
                finite = False
            s, e = two_sum(s, v)
            c, f = two_sum(c, e)
            lost += abs(f)
            a = abs(v)
            if a > amax:
                amax = a
            if v < vmin:
                vmin = v
            if v > vmax:
                vmax = v
    sh, sl = two_sum(s, c)
    return sh, sl, lost, amax, vmin, vmax, finite


@_jit
def _centered(v: float, m: float, sh: float, sl: float, fh: float, fl: float) -> tuple[float, float]:
    """(m v - S) * f in dd, with f = 2^-e2 / m: the centred, scaled value, relative error below 2^-101.

    Forming m v - S (both exact dd when the block sum is exact) before dividing keeps d_i accurate relative to
    d_i itself rather than to the mean, which is what badly conditioned blocks (|mean|/std up to 1e15) need.
    """
    ph, pl = two_prod(m, v)
    th, tl = dd_add(ph, pl, -sh, -sl)
    return dd_mul(th, tl, fh, fl)


@_jit
def _stats(xg, eps: float):
    """Everything later passes need about one block, as a flat tuple (see the module docstring).

    Returns (ok, p1, sh, sl, fh, fl, rho_h, rho_l, kx, kr, d0, dr, const) where p1 = 2^-e1 scales x, (sh, sl)
    is
    the scaled sum, (fh, fl) = 2^-e2 / m, ok is False for a block holding NaN or inf (its outputs are NaN),
    d0 > 0 says the block sum is inexact (the caller then falls back to the exact oracle), dr bounds the
    relative error of rho, and const is True when every value of the block is equal (var is exactly 0).
    """
    cpg, S = xg.shape
    m = float(cpg * S)
    p1 = 1.0
    sh, sl, lost, amax, vmin, vmax, finite = _block_sum(xg, p1)
    if not finite:
        return False, p1, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0, 0, 0.0, 0.0, False
    e1 = 0
    if not np.isfinite(sh) or amax > 2.0**500 or (0.0 < amax < 2.0**-500):
        e1 = min(max(_exponent(amax), -1000), 1000)
        p1 = math.ldexp(1.0, -e1)
        sh, sl, lost, amax, vmin, vmax, finite = _block_sum(xg, p1)
    const = vmin == vmax
    if const and eps == 0.0:  # 0/0: the block's outputs are undefined (NaN)
        return False, p1, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0, 0, 0.0, 0.0, False
    # Largest centred magnitude (from the extremes; halved first so the difference cannot overflow).
    mu = sh / m
    dmax = 2.0 * max(0.5 * vmax - 0.5 * mu, 0.5 * mu - 0.5 * vmin)
    e2 = 0 if const else min(max(_exponent(dmax), -1000), 1000)
    fh, fl = dd_div(math.ldexp(1.0, -e2), 0.0, m, 0.0)
    # Second pass: variance of the scaled centred values (a sum of positive dd squares).
    qh = 0.0
    ql = 0.0
    if not const:
        for j in range(cpg):
            for i in range(S):
                dh, dl = _centered(xg[j, i] * p1, m, sh, sl, fh, fl)
                th, tl = dd_mul(dh, dl, dh, dl)
                qh, e = two_sum(qh, th)
                ql += e + tl
        qh, ql = fast_two_sum(qh, ql)
    vh, vl = dd_mul(qh, ql, 1.0 / m, 0.0) if m == 1.0 else dd_div(qh, ql, m, 0.0)
    rho_h, rho_l, kx = _normalizer(vh, vl, eps, e1 + e2)
    kr = kx - e1 - e2
    # Error bookkeeping for certification: d0 > 0 flags an inexact block sum (the caller falls back to the
    # exact oracle); dr bounds the relative error of rho (the variance sums m positive dd terms).
    d0 = lost
    dr = _sum_err(m) * U_DD
    return True, p1, sh, sl, fh, fl, rho_h, rho_l, kx, kr, d0, dr, const


@_jit
def _normalizer(vh: float, vl: float, eps: float, e: int):
    """rho and kx with 1/sqrt(var + eps) = rho * 2^(kx - e), given the variance v of values scaled by 2^-e.

    The scaled eps is eps * 2^-2e. When it would exceed 2^900 the (scaled) variance, at most 4, is below
    2^-898 of it and is dropped: rho = 1/sqrt(eps) and kx = e; likewise when the variance is exactly 0 (a
    constant block, whose scaled eps could underflow). Otherwise rho = 1/sqrt(v + eps 2^-2e), kx = 0.
    eps = 0 with a zero variance gives rho = inf (the result is undefined; outputs become NaN).
    """
    if eps > 0.0 and (vh == 0.0 or _exponent(eps) - 2 * e > 900):
        rh, rl = dd_rsqrt(eps, 0.0)
        return rh, rl, e
    es = math.ldexp(eps, -2 * e)
    wh, wl = dd_add_d(vh, vl, es)
    if wh <= 0.0:
        return np.inf, 0.0, 0
    rh, rl = dd_rsqrt(wh, wl)
    return rh, rl, 0


@block_kernel
def forward_kernel(x, w, b, eps, y, uncertified, todo):
    """y[n, g] = w_c * xhat + b_c for the blocks marked in todo, and the count of results not certified."""
    N, G, cpg, S = x.shape
    m = float(cpg * S)
    for ng in prange(N * G):
        n = ng // G
        g = ng % G
        if not todo[n, g]:
            continue
        xg = x[n, g]
        ok, p1, sh, sl, fh, fl, rho_h, rho_l, kx, kr, d0, dr, const = _stats(xg, eps)
        bad = 0
        for j in range(cpg):
            c = g * cpg + j
            wc = w[c]
            bc = b[c]
            for i in range(S):
                if not ok:
                    y[n, g, j, i] = np.nan
                    continue
                if const:
                    xh = 0.0
                    xl = 0.0
                    exh = 0.0
                else:
                    dh, dl = _centered(xg[j, i] * p1, m, sh, sl, fh, fl)
                    xh, xl = dd_mul(dh, dl, rho_h, rho_l)
                    if kx != 0:
                        xh = math.ldexp(xh, kx)
                        xl = math.ldexp(xl, kx)
                    exh = abs(xh) * (K_OPS * U_DD + dr)  # relative error of d times rho
                ph, pl = dd_mul_d(xh, xl, wc)
                yh, yl = dd_add_d(ph, pl, bc)
                out = _round_dd(yh, yl)
                y[n, g, j, i] = out
                err = abs(wc) * exh + 4.0 * U_DD * (abs(ph) + abs(bc))
                if not _certified(err, out):
                    bad += 1
        # An inexact block sum shifts every centred value; such rare blocks go to the exact oracle whole.
        uncertified[n, g] = bad if d0 == 0.0 or not ok else cpg * S


@_jit
def _acc(sh: float, sl: float, th: float, tl: float) -> tuple[float, float]:
    """Neumaier accumulation of the dd term t into the running dd sum s (error ~ count * u^2 * sum |t|)."""
    s, e = two_sum(sh, th)
    return s, sl + (e + tl)


@_jit
def _mean(sh: float, sl: float, m: float) -> tuple[float, float]:
    """s / m in dd."""
    sh, sl = fast_two_sum(sh, sl)
    return dd_div(sh, sl, m, 0.0)


@_jit
def _scaled(h: float, l: float, k: int) -> tuple[float, float]:
    """(h + l) * 2^k, exact barring over- or underflow."""
    if k == 0:
        return h, l
    return math.ldexp(h, k), math.ldexp(l, k)


@_jit
def _round_dd(h: float, l: float) -> float:
    """The float64 nearest to h + l; h alone when h overflowed (then l is NaN from inf - inf)."""
    if not np.isfinite(h):
        return h
    return h + l


@_jit
def _add_out(ah: float, al: float, bh: float, bl: float) -> tuple[float, float]:
    """a + b in dd for two output terms, letting an overflowed term (inf) decide the result alone."""
    if not (np.isfinite(ah) and np.isfinite(bh)):
        return ah + bh, 0.0
    return dd_add(ah, al, bh, bl)


@_jit
def _certified(err: float, out: float) -> bool:
    """True when an a-priori error bound (before the final rounding) is below a quarter ulp of the result.

    An infinite result is accepted as it stands: it arises only when the dd value exceeds the float64 range.
    """
    if np.isinf(out):
        return True
    return err == 0.0 or err < 0.25 * _ulp(out)


@block_kernel
def backward_kernel(dy, x, w, eps, dx, part, part_err, uncertified, todo):
    """dx for the blocks marked in todo; per (n, c) partial sums for grad_weight and grad_bias.

    With g_i = w_c dy_i, d_i the scaled centred values and xhat_i = d_i rho 2^kx:
        dx_i = r (g_i - mean(g) - xhat_i mean(g xhat)),  mean(g xhat) = rho 2^kx mean((g - mean g) d).
    The centred form mean((g - mean g) d) is exactly invariant to any common shift of d, and is exactly 0
    for a constant g, so the cancellation it hides cannot leave a rounding residue.
    part[n, c] holds (sum dy xhat, sum dy) as dd pairs (4 numbers); part_err[n, c] bounds their errors.
    """
    N, G, cpg, S = x.shape
    m = float(cpg * S)
    for ng in prange(N * G):
        n = ng // G
        g = ng % G
        if not todo[n, g]:
            continue
        xg = x[n, g]
        dyg = dy[n, g]
        ok, p1, sh, sl, fh, fl, rho_h, rho_l, kx, kr, d0, dr, const = _stats(xg, eps)
        # Pass A: the block sums.
        sgh = sgl = sgdh = sgdl = sdh = sdl = 0.0
        ag = agd = ad = 0.0
        finite = ok
        for j in range(cpg):
            c = g * cpg + j
            wc = w[c]
            cdh = cdl = cyh = cyl = 0.0
            acd = acy = 0.0
            for i in range(S):
                t = dyg[j, i]
                if not np.isfinite(t):
                    finite = False
                cyh, cyl = _acc(cyh, cyl, t, 0.0)
                acy += abs(t)
                if not ok:
                    continue
                if const:
                    dh = dl = 0.0
                else:
                    dh, dl = _centered(xg[j, i] * p1, m, sh, sl, fh, fl)
                gh, gl = two_prod(wc, t)
                sgh, sgl = _acc(sgh, sgl, gh, gl)
                ph, pl = dd_mul(gh, gl, dh, dl)
                sgdh, sgdl = _acc(sgdh, sgdl, ph, pl)
                agd += abs(ph)
                sdh, sdl = _acc(sdh, sdl, dh, dl)
                ph, pl = dd_mul_d(dh, dl, t)
                cdh, cdl = _acc(cdh, cdl, ph, pl)
                ag += abs(gh)
                ad += abs(dh)
                acd += abs(ph)
            if not ok:
                cdh = np.nan
            # sum dy xhat = rho 2^kx sum dy d
            qh, ql = dd_mul(cdh, cdl, rho_h, rho_l)
            qh, ql = _scaled(qh, ql, kx)
            part[n, c, 0] = qh
            part[n, c, 1] = ql
            part[n, c, 2] = cyh
            part[n, c, 3] = cyl
            part_err[n, c, 0] = math.ldexp(acd * abs(rho_h), kx) * (_sum_err(S) * U_DD + dr)
            part_err[n, c, 1] = acy * _sum_err(S) * U_DD
        if not finite:
            for j in range(cpg):
                for i in range(S):
                    dx[n, g, j, i] = np.nan
            uncertified[n, g] = 0
            continue
        gbh, gbl = _mean(sgh, sgl, m)
        # K = mean((g - mean g) d) = (sum g d - mean(g) sum d) / m
        th, tl = dd_mul(gbh, gbl, sdh, sdl)
        th, tl = dd_add(sgdh, sgdl, -th, -tl)
        kh, kl = _mean(th, tl, m)
        # Q = K rho^2 2^(2 kx): the coefficient of d_i in the bracket.
        qh, ql = dd_mul(rho_h, rho_l, rho_h, rho_l)
        qh, ql = dd_mul(qh, ql, kh, kl)
        qh, ql = _scaled(qh, ql, 2 * kx)
        # Bound on the error of Q (relative error of rho^2 plus the error of K's sums).
        mg = ag / m
        kerr = _sum_err(m) * U_DD * (agd + abs(gbh) * ad) / m
        qabs = math.ldexp(rho_h * rho_h, 2 * kx)
        eq = abs(qh) * (2.0 * dr + K_OPS * U_DD) + qabs * kerr
        bad = 0
        for j in range(cpg):
            c = g * cpg + j
            wc = w[c]
            for i in range(S):
                gh, gl = two_prod(wc, dyg[j, i])
                if const:
                    dh = dl = 0.0
                else:
                    dh, dl = _centered(xg[j, i] * p1, m, sh, sl, fh, fl)
                th, tl = dd_add(gh, gl, -gbh, -gbl)
                ph, pl = dd_mul(dh, dl, qh, ql)
                th, tl = dd_add(th, tl, -ph, -pl)
                oh, ol = dd_mul(th, tl, rho_h, rho_l)
                out = math.ldexp(_round_dd(oh, ol), kr)
                dx[n, g, j, i] = out
                et = _sum_err(m) * U_DD * (abs(gh) + mg) + abs(dh) * eq + K_OPS * U_DD * abs(ph)
                err = math.ldexp(rho_h * (et + abs(th) * (K_OPS * U_DD + dr)), kr)
                if not _certified(err, out):
                    bad += 1
        uncertified[n, g] = bad if d0 == 0.0 else cpg * S


@_jit
def reduce_parts(part, part_err, out, out_err):
    """Sum per-(n, c) dd partials over n: out[c, k] = sum_n part[n, c, k] (k-th dd pair), with bounds."""
    N, C, K2 = part.shape
    for c in range(C):
        for k in range(K2 // 2):
            sh = sl = 0.0
            e = 0.0
            for n in range(N):
                sh, sl = _acc(sh, sl, part[n, c, 2 * k], part[n, c, 2 * k + 1])
                e += part_err[n, c, k] + _sum_err(N) * U_DD * abs(part[n, c, 2 * k])
            out[c, k] = sh + sl
            out_err[c, k] = e


@_jit
def _acc_at(sums, k: int, th: float, tl: float) -> None:
    """Neumaier-accumulate the dd term t into the k-th dd pair of the array ``sums``."""
    s, e = two_sum(sums[2 * k], th)
    sums[2 * k] = s
    sums[2 * k + 1] += e + tl


@_jit
def _centred_mean(sums, mags, k: int, kd: int, mean_h: float, mean_l: float, m: float):
    """K = mean((a - mean a) d) = (sum a d - mean(a) sum d) / m from the dd sums k (of a d) and kd (of d).

    Returns K (dd) and a bound on its error; the centred form is exactly invariant to a common shift of d.
    """
    th, tl = dd_mul(mean_h, mean_l, sums[2 * kd], sums[2 * kd + 1])
    th, tl = dd_add(sums[2 * k], sums[2 * k + 1], -th, -tl)
    kh, kl = _mean(th, tl, m)
    err = _sum_err(m) * U_DD * (mags[k] + abs(mean_h) * mags[kd]) / m
    return kh, kl, err


# Indices of the block sums of the double backward (dd pairs in `sums`, magnitudes in `mags`).
_H, _G, _D, _HD, _GD, _HG, _V, _VD = 0, 1, 2, 3, 4, 5, 6, 7


@block_kernel
def double_backward_kernel(hh, ggw, ggb, dy, x, w, eps, ggo, gx, part, part_err, uncertified):
    """Second order: the VJP of the backward with cotangents (hh = grad_grad_input, ggw, ggb).

    With g = w dy, v = ggw_c dy, d the scaled centred values, a = rho 2^kx (xhat = d a), R2 = a^2 and
    K_z = mean((z - mean z) d) for z in (h, g, v), Cov = mean(h g) - mean(h) mean(g):

        grad_grad_output_i = w_c r ((h_i - mean h) - d_i R2 K_h) + ggw_c xhat_i + ggb_c
        grad_x_j = r^2 a [d_j (3 R2 K_h K_g - Cov) - (h_j - mean h) K_g - (g_j - mean g) K_h]
                   + r ((v_j - mean v) - d_j R2 K_v)
        grad_weight_c = sum over (n, i in c) of r dy_i ((h_i - mean h) - d_i R2 K_h)

    (SPEC.md derives these from the forward definition; derivations/ proves them.) part[n, c] holds the
    per-(n, c) dd partial of grad_weight, part_err[n, c] its error bound.
    """
    N, G, cpg, S = x.shape
    m = float(cpg * S)
    KU = K_OPS * U_DD
    for ng in prange(N * G):
        n = ng // G
        g = ng % G
        xg = x[n, g]
        ok, p1, sh, sl, fh, fl, rho_h, rho_l, kx, kr, d0, dr, const = _stats(xg, eps)
        if m == 1.0 and ok and np.isfinite(dy[n, g, 0, 0]) and np.isfinite(hh[n, g, 0, 0]):
            # One element per group: every centred quantity is exactly 0, so (derivations, m = 1 identity)
            # grad_grad_output = ggb_c, grad_x = 0 and the block adds 0 to grad_weight, all exact.
            ggo[n, g, 0, 0] = ggb[g]
            gx[n, g, 0, 0] = 0.0
            for k in range(6):
                part[n, g, k] = 0.0
            for k in range(3):
                part_err[n, g, k] = 0.0
            uncertified[n, g] = 0
            continue
        sums = np.zeros(16)
        mags = np.zeros(8)
        finite = ok
        for j in range(cpg):
            c = g * cpg + j
            wc = w[c]
            wv = ggw[c]
            csum = np.zeros(6)
            cmag = np.zeros(3)
            for i in range(S):
                t = dy[n, g, j, i]
                h = hh[n, g, j, i]
                if not (np.isfinite(t) and np.isfinite(h)):
                    finite = False
                if const:
                    dh = dl = 0.0
                else:
                    dh, dl = _centered(xg[j, i] * p1, m, sh, sl, fh, fl)
                gh, gl = two_prod(wc, t)
                vh, vl = two_prod(wv, t)
                _acc_at(sums, _H, h, 0.0)
                _acc_at(sums, _G, gh, gl)
                _acc_at(sums, _D, dh, dl)
                ph, pl = dd_mul_d(dh, dl, h)
                _acc_at(sums, _HD, ph, pl)
                mags[_HD] += abs(ph)
                ph, pl = dd_mul(gh, gl, dh, dl)
                _acc_at(sums, _GD, ph, pl)
                mags[_GD] += abs(ph)
                ph, pl = dd_mul_d(gh, gl, h)
                _acc_at(sums, _HG, ph, pl)
                mags[_HG] += abs(ph)
                _acc_at(sums, _V, vh, vl)
                ph, pl = dd_mul(vh, vl, dh, dl)
                _acc_at(sums, _VD, ph, pl)
                mags[_VD] += abs(ph)
                mags[_H] += abs(h)
                mags[_G] += abs(gh)
                mags[_D] += abs(dh)
                mags[_V] += abs(vh)
                # per-channel partials of grad_weight: sum dy h, sum dy, sum dy d
                ph, pl = two_prod(t, h)
                _acc_at(csum, 0, ph, pl)
                cmag[0] += abs(ph)
                _acc_at(csum, 1, t, 0.0)
                cmag[1] += abs(t)
                ph, pl = dd_mul_d(dh, dl, t)
                _acc_at(csum, 2, ph, pl)
                cmag[2] += abs(ph)
            for k in range(6):
                part[n, c, k] = csum[k]
            for k in range(3):
                part_err[n, c, k] = cmag[k]
        if not finite:
            for j in range(cpg):
                for i in range(S):
                    ggo[n, g, j, i] = np.nan
                    gx[n, g, j, i] = np.nan
                for k in range(6):
                    part[n, g * cpg + j, k] = np.nan
            uncertified[n, g] = 0
            continue
        us = _sum_err(m) * U_DD  # relative error of a block sum, per unit of its magnitude
        hbh, hbl = _mean(sums[0], sums[1], m)
        gbh, gbl = _mean(sums[2], sums[3], m)
        vbh, vbl = _mean(sums[12], sums[13], m)
        e_hb = us * mags[_H] / m
        e_gb = us * mags[_G] / m
        e_vb = us * mags[_V] / m
        khh, khl, e_kh = _centred_mean(sums, mags, _HD, _D, hbh, hbl, m)
        kgh, kgl, e_kg = _centred_mean(sums, mags, _GD, _D, gbh, gbl, m)
        kvh, kvl, e_kv = _centred_mean(sums, mags, _VD, _D, vbh, vbl, m)
        ch, cl = dd_mul(hbh, hbl, gbh, gbl)
        mh, ml = _mean(sums[10], sums[11], m)
        ch, cl = dd_add(mh, ml, -ch, -cl)  # Cov = mean(h g) - mean(h) mean(g)
        e_cov = us * (mags[_HG] / m + abs(hbh * gbh))
        # R2 = rho^2 2^(2 kx) multiplies K_h and K_v before the power of two is applied: in a constant
        # block K = 0 while 2^(2 kx) alone may overflow.
        r2h, r2l = dd_mul(rho_h, rho_l, rho_h, rho_l)
        a_abs = math.ldexp(r2h, 2 * kx)
        # R2 K_h, R2 K_v, and 3 R2 K_h K_g - Cov
        rkh, rkl = dd_mul(r2h, r2l, khh, khl)
        rkh, rkl = _scaled(rkh, rkl, 2 * kx)
        e_rkh = abs(rkh) * (2.0 * dr + KU) + (a_abs * e_kh if e_kh > 0.0 else 0.0)
        rvh, rvl = dd_mul(r2h, r2l, kvh, kvl)
        rvh, rvl = _scaled(rvh, rvl, 2 * kx)
        e_rkv = abs(rvh) * (2.0 * dr + KU) + (a_abs * e_kv if e_kv > 0.0 else 0.0)
        th, tl = dd_mul(rkh, rkl, kgh, kgl)
        th, tl = dd_mul_d(th, tl, 3.0)
        e_t = abs(th) * KU + 3.0 * (abs(kgh) * e_rkh + abs(rkh) * e_kg)
        coh, col = dd_add(th, tl, -ch, -cl)
        e_co = e_t + e_cov + KU * (abs(th) + abs(ch))
        bad = 0
        for j in range(cpg):
            c = g * cpg + j
            wc = w[c]
            wv = ggw[c]
            bc = ggb[c]
            for i in range(S):
                t = dy[n, g, j, i]
                h = hh[n, g, j, i]
                if const:
                    dh = dl = 0.0
                else:
                    dh, dl = _centered(xg[j, i] * p1, m, sh, sl, fh, fl)
                ad = abs(dh)
                # grad_grad_output
                uh, ul = dd_add_d(-hbh, -hbl, h)  # h - mean h
                ph, pl = dd_mul(dh, dl, rkh, rkl)
                Th, Tl = dd_add(uh, ul, -ph, -pl)
                e_T = KU * (abs(h) + abs(ph)) + e_hb + ad * e_rkh
                ph, pl = dd_mul(Th, Tl, rho_h, rho_l)
                ph, pl = dd_mul_d(ph, pl, wc)
                t1h, t1l = _scaled(ph, pl, kr)
                e1 = math.ldexp(abs(wc) * rho_h * (e_T + abs(Th) * (dr + KU)), kr)
                ph, pl = dd_mul(dh, dl, rho_h, rho_l)
                ph, pl = dd_mul_d(ph, pl, wv)
                t2h, t2l = _scaled(ph, pl, kx)
                e2 = abs(t2h) * (KU + dr)
                oh, ol = _add_out(t1h, t1l, t2h, t2l)
                oh, ol = _add_out(oh, ol, bc, 0.0)
                out = _round_dd(oh, ol)
                ggo[n, g, j, i] = out
                err = e1 + e2 + KU * (abs(t1h) + abs(t2h) + abs(bc))
                cert = _certified(err, out)
                # grad_x: B = d (3 R2 Kh Kg - Cov) - (h - mean h) K_g - (g - mean g) K_h
                gh, gl = two_prod(wc, t)
                bh, bl = dd_mul(dh, dl, coh, col)
                ph, pl = dd_mul(uh, ul, kgh, kgl)
                bh, bl = dd_add(bh, bl, -ph, -pl)
                qh, ql = dd_add(gh, gl, -gbh, -gbl)  # g - mean g
                ph, pl = dd_mul(qh, ql, khh, khl)
                bh, bl = dd_add(bh, bl, -ph, -pl)
                e_B = (
                    ad * e_co
                    + abs(uh) * e_kg
                    + e_hb * abs(kgh)
                    + abs(qh) * e_kh
                    + e_gb * abs(khh)
                    + KU * (ad * abs(coh) + (abs(h) + abs(hbh)) * abs(kgh) + (abs(gh) + abs(gbh)) * abs(khh))
                )
                ph, pl = dd_mul(rho_h, rho_l, rho_h, rho_l)
                ph, pl = dd_mul(ph, pl, rho_h, rho_l)
                ph, pl = dd_mul(ph, pl, bh, bl)
                s1h, s1l = _scaled(ph, pl, 2 * kr + kx)
                e_s1 = math.ldexp(rho_h**3 * (e_B + abs(bh) * (3.0 * dr + KU)), 2 * kr + kx)
                # second part: (v - mean v) - d R2 K_v
                vh, vl = two_prod(wv, t)
                vh, vl = dd_add(vh, vl, -vbh, -vbl)
                ph, pl = dd_mul(dh, dl, rvh, rvl)
                Vh, Vl = dd_add(vh, vl, -ph, -pl)
                e_V = KU * (abs(vh) + abs(ph)) + e_vb + ad * e_rkv
                ph, pl = dd_mul(Vh, Vl, rho_h, rho_l)
                s2h, s2l = _scaled(ph, pl, kr)
                e_s2 = math.ldexp(rho_h * (e_V + abs(Vh) * (dr + KU)), kr)
                oh, ol = _add_out(s1h, s1l, s2h, s2l)
                out = _round_dd(oh, ol)
                gx[n, g, j, i] = out
                err = e_s1 + e_s2 + KU * (abs(s1h) + abs(s2h))
                if not (cert and _certified(err, out)):
                    bad += 1
        # grad_weight partials: r [sum dy h - mean(h) sum dy - R2 K_h sum dy d]
        for j in range(cpg):
            c = g * cpg + j
            ph, pl = dd_mul(hbh, hbl, part[n, c, 2], part[n, c, 3])
            Ph, Pl = dd_add(part[n, c, 0], part[n, c, 1], -ph, -pl)
            qh, ql = dd_mul(rkh, rkl, part[n, c, 4], part[n, c, 5])
            Ph, Pl = dd_add(Ph, Pl, -qh, -ql)
            e_P = (
                _sum_err(S) * U_DD * (part_err[n, c, 0] + abs(hbh) * part_err[n, c, 1])
                + e_hb * part_err[n, c, 1]
                + abs(rkh) * _sum_err(S) * U_DD * part_err[n, c, 2]
                + e_rkh * part_err[n, c, 2]
            )
            ph, pl = dd_mul(Ph, Pl, rho_h, rho_l)
            ph, pl = _scaled(ph, pl, kr)
            part[n, c, 0] = ph
            part[n, c, 1] = pl
            part_err[n, c, 0] = math.ldexp(rho_h * (e_P + abs(Ph) * (dr + KU)), kr)
        uncertified[n, g] = bad if d0 == 0.0 else cpg * S
