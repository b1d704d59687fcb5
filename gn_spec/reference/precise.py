"""Tier 2 of the reference, the precise tier: an exact block sum, then a second pass over centred values.

Every kernel takes the input viewed as ``(N, G, cpg, S)`` (cpg = channels per group, S = spatial size) and
works on one (n, g) block at a time. Inside a block the arithmetic is double-double (``dd``); the only
rounding a result suffers that is not far below 2^-100 is the final rounding to float64. The fast tier
(``fast``) hands this tier the blocks it cannot certify (forward and backward); the double backward has no
fast tier and starts here.

Scaling. A block is first summed as it is; when its largest magnitude lies outside the window
``constants.PRECISE_WINDOW`` ([2^-500, 2^500]) it is summed again after multiplying by 2^-e1 (exact), so
sums can neither overflow nor lose their low parts to underflow. Centred values are then scaled by 2^-e2 so
that the largest lies in [1/2, 2) before squaring. With those two exact scalings
``d_i = (x_i - mu) 2^-(e1+e2)`` and

    xhat_i = d_i * rho * 2^kx,        r = 1/sqrt(var + eps) = rho * 2^kr,

where rho is computed from the scaled variance and the scaled eps (see ``scaling.normalizer``).

Certification. Next to each result the kernels evaluate a first-order a-priori bound E on the dd error (before
the final rounding). When E is not below a quarter ulp of the rounded result (``constants.CERT_ULPS``) the
element is counted in ``uncertified``; the dispatch in ``gn_spec.reference`` recomputes such blocks with the
exact tier (``exact``), so the published results are faithful everywhere.
"""

from __future__ import annotations

import math
from collections import namedtuple

import numpy as np
from numba import prange

from gn_spec.reference.constants import (
    CERT_ULPS,
    EXP_CLAMP,
    K_OPS,
    PRECISE_WINDOW,
    U_DD,
    outside,
    sum_err,
)
from gn_spec.reference.dd import (
    dd_add,
    dd_add_d,
    dd_div,
    dd_mean,
    dd_mul,
    dd_mul_d,
    fast_two_sum,
    two_prod,
    two_sum,
)
from gn_spec.reference.jit import block_kernel
from gn_spec.reference.jit import jit as _jit
from gn_spec.reference.scaling import exponent, normalizer, scaled, ulp

#: A block's plain sum: (sh, sl) the dd sum, exact when lost == 0, with the extremes and a finiteness flag.
RawSum = namedtuple("RawSum", ["sh", "sl", "lost", "amax", "vmin", "vmax", "finite"])

#: What later passes need about one block (see ``_stats``).
BlockStats = namedtuple(
    "BlockStats", ["ok", "p1", "sh", "sl", "fh", "fl", "rho_h", "rho_l", "kx", "kr", "d0", "dr", "const"]
)


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
    return RawSum(sh, sl, lost, amax, vmin, vmax, finite)


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
    """Everything later passes need about one block, as a ``BlockStats`` (see the module docstring).

    p1 = 2^-e1 scales x, (sh, sl) is the scaled sum, (fh, fl) = 2^-e2 / m, (rho_h, rho_l), kx and kr as in
    the module docstring; ok is False for a block holding NaN or inf (its outputs are NaN), d0 > 0 says the
    block sum is inexact (the kernels then hand the whole block to the exact tier), dr bounds the relative
    error of rho, and const is True when every value of the block is equal (var is exactly 0).
    """
    cpg, S = xg.shape
    m = float(cpg * S)
    p1 = 1.0
    raw = _block_sum(xg, p1)
    if not raw.finite:
        return BlockStats(False, p1, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0, 0, 0.0, 0.0, False)
    e1 = 0
    if not np.isfinite(raw.sh) or outside(raw.amax, PRECISE_WINDOW):
        e1 = min(max(exponent(raw.amax), -EXP_CLAMP), EXP_CLAMP)
        p1 = math.ldexp(1.0, -e1)
        raw = _block_sum(xg, p1)
    sh, sl, vmin, vmax = raw.sh, raw.sl, raw.vmin, raw.vmax
    const = vmin == vmax
    if const and eps == 0.0:  # 0/0: the block's outputs are undefined (NaN)
        return BlockStats(False, p1, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0, 0, 0.0, 0.0, False)
    # Largest centred magnitude (from the extremes; halved first so the difference cannot overflow).
    mu = sh / m
    dmax = 2.0 * max(0.5 * vmax - 0.5 * mu, 0.5 * mu - 0.5 * vmin)
    e2 = 0 if const else min(max(exponent(dmax), -EXP_CLAMP), EXP_CLAMP)
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
    rho_h, rho_l, kx = normalizer(vh, vl, eps, e1 + e2)
    kr = kx - e1 - e2
    # Error bookkeeping for certification: d0 > 0 flags an inexact block sum (the caller falls back to the
    # exact oracle); dr bounds the relative error of rho (the variance sums m positive dd terms).
    d0 = raw.lost
    dr = sum_err(m, 0.0) * U_DD
    return BlockStats(True, p1, sh, sl, fh, fl, rho_h, rho_l, kx, kr, d0, dr, const)


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
        st = _stats(xg, eps)
        ok, p1, sh, sl, fh, fl = st.ok, st.p1, st.sh, st.sl, st.fh, st.fl
        rho_h, rho_l, kx, dr, const = st.rho_h, st.rho_l, st.kx, st.dr, st.const
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
        # An inexact block sum shifts every centred value; such rare blocks go to the exact tier whole.
        uncertified[n, g] = bad if st.d0 == 0.0 or not ok else cpg * S


@_jit
def _acc(sh: float, sl: float, th: float, tl: float) -> tuple[float, float]:
    """Neumaier accumulation of the dd term t into the running dd sum s (error ~ count * u^2 * sum |t|)."""
    s, e = two_sum(sh, th)
    return s, sl + (e + tl)


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
    return err == 0.0 or err < CERT_ULPS * ulp(out)


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
        st = _stats(xg, eps)
        ok, p1, sh, sl, fh, fl = st.ok, st.p1, st.sh, st.sl, st.fh, st.fl
        rho_h, rho_l, kx, kr, dr, const = st.rho_h, st.rho_l, st.kx, st.kr, st.dr, st.const
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
            qh, ql = scaled(qh, ql, kx)
            part[n, c, 0] = qh
            part[n, c, 1] = ql
            part[n, c, 2] = cyh
            part[n, c, 3] = cyl
            part_err[n, c, 0] = math.ldexp(acd * abs(rho_h), kx) * (sum_err(S, 0.0) * U_DD + dr)
            part_err[n, c, 1] = acy * sum_err(S, 0.0) * U_DD
        if not finite:
            for j in range(cpg):
                for i in range(S):
                    dx[n, g, j, i] = np.nan
            uncertified[n, g] = 0
            continue
        gbh, gbl = dd_mean(sgh, sgl, m)
        # K = mean((g - mean g) d) = (sum g d - mean(g) sum d) / m
        th, tl = dd_mul(gbh, gbl, sdh, sdl)
        th, tl = dd_add(sgdh, sgdl, -th, -tl)
        kh, kl = dd_mean(th, tl, m)
        # Q = K rho^2 2^(2 kx): the coefficient of d_i in the bracket.
        qh, ql = dd_mul(rho_h, rho_l, rho_h, rho_l)
        qh, ql = dd_mul(qh, ql, kh, kl)
        qh, ql = scaled(qh, ql, 2 * kx)
        # Bound on the error of Q (relative error of rho^2 plus the error of K's sums).
        mg = ag / m
        kerr = sum_err(m, 0.0) * U_DD * (agd + abs(gbh) * ad) / m
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
                et = sum_err(m, 0.0) * U_DD * (abs(gh) + mg) + abs(dh) * eq + K_OPS * U_DD * abs(ph)
                err = math.ldexp(rho_h * (et + abs(th) * (K_OPS * U_DD + dr)), kr)
                if not _certified(err, out):
                    bad += 1
        uncertified[n, g] = bad if st.d0 == 0.0 else cpg * S


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
                e += part_err[n, c, k] + sum_err(N, 0.0) * U_DD * abs(part[n, c, 2 * k])
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
    kh, kl = dd_mean(th, tl, m)
    err = sum_err(m, 0.0) * U_DD * (mags[k] + abs(mean_h) * mags[kd]) / m
    return kh, kl, err


# Indices of the block sums of the double backward (dd pairs in `sums`, magnitudes in `mags`).
_H, _G, _D, _HD, _GD, _HG, _V, _VD = 0, 1, 2, 3, 4, 5, 6, 7
# Indices of the per-(n, c) partials of its grad_weight (dd pairs in `part`, magnitudes in `part_err`).
_DYH, _DY, _DYD = 0, 1, 2  # sum dy h, sum dy, sum dy d

#: The per-block coefficients of the double backward's closed forms, with their error bounds (``e_*``):
#: the means of h, g, v; K_h, K_g, K_v; R2 K_h, R2 K_v; and 3 R2 K_h K_g - Cov (``co``).
DoubleBackwardCoefficients = namedtuple(
    "DoubleBackwardCoefficients",
    [
        "hbh", "hbl", "e_hb", "gbh", "gbl", "e_gb", "vbh", "vbl", "e_vb",
        "khh", "khl", "e_kh", "kgh", "kgl", "e_kg",
        "rkh", "rkl", "e_rkh", "rvh", "rvl", "e_rkv", "coh", "col", "e_co",
    ],
)


@_jit
def _pair_mean(sums, k: int, m: float) -> tuple[float, float]:
    """The k-th dd pair of ``sums`` divided by m, in dd."""
    return dd_mean(sums[2 * k], sums[2 * k + 1], m)


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
    per-(n, c) dd partial of grad_weight, part_err[n, c] its error bound. Per block: the sums
    (``_double_backward_sums``), the coefficients (``_double_backward_coefficients``), the per-element
    outputs (``_double_backward_outputs``), the grad_weight partials (``_double_backward_weight``).
    """
    N, G, cpg, S = x.shape
    m = float(cpg * S)
    for ng in prange(N * G):
        n = ng // G
        g = ng % G
        st = _stats(x[n, g], eps)
        if m == 1.0 and st.ok and np.isfinite(dy[n, g, 0, 0]) and np.isfinite(hh[n, g, 0, 0]):
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
        sums, mags, finite = _double_backward_sums(
            hh[n, g], ggw, dy[n, g], x[n, g], w, g, st, part[n], part_err[n]
        )
        if not finite:
            for j in range(cpg):
                for i in range(S):
                    ggo[n, g, j, i] = np.nan
                    gx[n, g, j, i] = np.nan
                for k in range(6):
                    part[n, g * cpg + j, k] = np.nan
            uncertified[n, g] = 0
            continue
        co = _double_backward_coefficients(sums, mags, st, m)
        bad = _double_backward_outputs(
            hh[n, g], ggw, ggb, dy[n, g], x[n, g], w, g, st, co, ggo[n, g], gx[n, g]
        )
        _double_backward_weight(g, cpg, S, st, co, part[n], part_err[n])
        uncertified[n, g] = bad if st.d0 == 0.0 else cpg * S


@_jit
def _double_backward_sums(hg, ggw, dyg, xg, w, g, st, part, part_err):
    """Pass A over one block: its dd sums (``_H`` .. ``_VD``) with their magnitudes, and into part[c] and
    part_err[c] (c the block's channels) the per-channel dd sums ``_DYH``, ``_DY``, ``_DYD`` and magnitudes.

    Returns (sums, mags, finite); finite is False when the block or its cotangents hold NaN or inf.
    """
    cpg, S = xg.shape
    m = float(cpg * S)
    p1, sh, sl, fh, fl = st.p1, st.sh, st.sl, st.fh, st.fl
    sums = np.zeros(16)
    mags = np.zeros(8)
    finite = st.ok
    for j in range(cpg):
        c = g * cpg + j
        wc = w[c]
        wv = ggw[c]
        csum = np.zeros(6)
        cmag = np.zeros(3)
        for i in range(S):
            t = dyg[j, i]
            h = hg[j, i]
            if not (np.isfinite(t) and np.isfinite(h)):
                finite = False
            if st.const:
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
            ph, pl = two_prod(t, h)
            _acc_at(csum, _DYH, ph, pl)
            cmag[_DYH] += abs(ph)
            _acc_at(csum, _DY, t, 0.0)
            cmag[_DY] += abs(t)
            ph, pl = dd_mul_d(dh, dl, t)
            _acc_at(csum, _DYD, ph, pl)
            cmag[_DYD] += abs(ph)
        for k in range(6):
            part[c, k] = csum[k]
        for k in range(3):
            part_err[c, k] = cmag[k]
    return sums, mags, finite


@_jit
def _double_backward_coefficients(sums, mags, st, m: float):
    """The block's ``DoubleBackwardCoefficients`` from its sums (see ``double_backward_kernel``)."""
    KU = K_OPS * U_DD
    dr, kx = st.dr, st.kx
    us = sum_err(m, 0.0) * U_DD  # relative error of a block sum, per unit of its magnitude
    hbh, hbl = _pair_mean(sums, _H, m)
    gbh, gbl = _pair_mean(sums, _G, m)
    vbh, vbl = _pair_mean(sums, _V, m)
    e_hb = us * mags[_H] / m
    e_gb = us * mags[_G] / m
    e_vb = us * mags[_V] / m
    khh, khl, e_kh = _centred_mean(sums, mags, _HD, _D, hbh, hbl, m)
    kgh, kgl, e_kg = _centred_mean(sums, mags, _GD, _D, gbh, gbl, m)
    kvh, kvl, e_kv = _centred_mean(sums, mags, _VD, _D, vbh, vbl, m)
    ch, cl = dd_mul(hbh, hbl, gbh, gbl)
    mh, ml = _pair_mean(sums, _HG, m)
    ch, cl = dd_add(mh, ml, -ch, -cl)  # Cov = mean(h g) - mean(h) mean(g)
    e_cov = us * (mags[_HG] / m + abs(hbh * gbh))
    # R2 = rho^2 2^(2 kx) multiplies K_h and K_v before the power of two is applied: in a constant
    # block K = 0 while 2^(2 kx) alone may overflow.
    r2h, r2l = dd_mul(st.rho_h, st.rho_l, st.rho_h, st.rho_l)
    a_abs = math.ldexp(r2h, 2 * kx)
    # R2 K_h, R2 K_v, and 3 R2 K_h K_g - Cov
    rkh, rkl = dd_mul(r2h, r2l, khh, khl)
    rkh, rkl = scaled(rkh, rkl, 2 * kx)
    e_rkh = abs(rkh) * (2.0 * dr + KU) + (a_abs * e_kh if e_kh > 0.0 else 0.0)
    rvh, rvl = dd_mul(r2h, r2l, kvh, kvl)
    rvh, rvl = scaled(rvh, rvl, 2 * kx)
    e_rkv = abs(rvh) * (2.0 * dr + KU) + (a_abs * e_kv if e_kv > 0.0 else 0.0)
    th, tl = dd_mul(rkh, rkl, kgh, kgl)
    th, tl = dd_mul_d(th, tl, 3.0)
    e_t = abs(th) * KU + 3.0 * (abs(kgh) * e_rkh + abs(rkh) * e_kg)
    coh, col = dd_add(th, tl, -ch, -cl)
    e_co = e_t + e_cov + KU * (abs(th) + abs(ch))
    return DoubleBackwardCoefficients(
        hbh, hbl, e_hb, gbh, gbl, e_gb, vbh, vbl, e_vb,
        khh, khl, e_kh, kgh, kgl, e_kg,
        rkh, rkl, e_rkh, rvh, rvl, e_rkv, coh, col, e_co,
    )  # fmt: skip


@_jit
def _double_backward_outputs(hg, ggw, ggb, dyg, xg, w, g, st, co, ggo, gx) -> int:
    """grad_grad_output and grad_x of one block (ggo, gx: its (cpg, S) views); the count uncertified."""
    cpg, S = xg.shape
    m = float(cpg * S)
    KU = K_OPS * U_DD
    p1, sh, sl, fh, fl = st.p1, st.sh, st.sl, st.fh, st.fl
    rho_h, rho_l, kx, kr, dr = st.rho_h, st.rho_l, st.kx, st.kr, st.dr
    hbh, hbl, e_hb, gbh, gbl, e_gb = co.hbh, co.hbl, co.e_hb, co.gbh, co.gbl, co.e_gb
    vbh, vbl, e_vb = co.vbh, co.vbl, co.e_vb
    khh, khl, e_kh, kgh, kgl, e_kg = co.khh, co.khl, co.e_kh, co.kgh, co.kgl, co.e_kg
    rkh, rkl, e_rkh, rvh, rvl, e_rkv = co.rkh, co.rkl, co.e_rkh, co.rvh, co.rvl, co.e_rkv
    coh, col, e_co = co.coh, co.col, co.e_co
    bad = 0
    for j in range(cpg):
        c = g * cpg + j
        wc = w[c]
        wv = ggw[c]
        bc = ggb[c]
        for i in range(S):
            t = dyg[j, i]
            h = hg[j, i]
            if st.const:
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
            t1h, t1l = scaled(ph, pl, kr)
            e1 = math.ldexp(abs(wc) * rho_h * (e_T + abs(Th) * (dr + KU)), kr)
            ph, pl = dd_mul(dh, dl, rho_h, rho_l)
            ph, pl = dd_mul_d(ph, pl, wv)
            t2h, t2l = scaled(ph, pl, kx)
            e2 = abs(t2h) * (KU + dr)
            oh, ol = _add_out(t1h, t1l, t2h, t2l)
            oh, ol = _add_out(oh, ol, bc, 0.0)
            out = _round_dd(oh, ol)
            ggo[j, i] = out
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
            s1h, s1l = scaled(ph, pl, 2 * kr + kx)
            e_s1 = math.ldexp(rho_h**3 * (e_B + abs(bh) * (3.0 * dr + KU)), 2 * kr + kx)
            # second part: (v - mean v) - d R2 K_v
            vh, vl = two_prod(wv, t)
            vh, vl = dd_add(vh, vl, -vbh, -vbl)
            ph, pl = dd_mul(dh, dl, rvh, rvl)
            Vh, Vl = dd_add(vh, vl, -ph, -pl)
            e_V = KU * (abs(vh) + abs(ph)) + e_vb + ad * e_rkv
            ph, pl = dd_mul(Vh, Vl, rho_h, rho_l)
            s2h, s2l = scaled(ph, pl, kr)
            e_s2 = math.ldexp(rho_h * (e_V + abs(Vh) * (dr + KU)), kr)
            oh, ol = _add_out(s1h, s1l, s2h, s2l)
            out = _round_dd(oh, ol)
            gx[j, i] = out
            err = e_s1 + e_s2 + KU * (abs(s1h) + abs(s2h))
            if not (cert and _certified(err, out)):
                bad += 1
    return bad


@_jit
def _double_backward_weight(g, cpg, S, st, co, part, part_err) -> None:
    """Finish the block's grad_weight partials in place: r [sum dy h - mean(h) sum dy - R2 K_h sum dy d].

    part, part_err: the sample's (C, 6) and (C, 3) rows; pair 0 of part[c] becomes the partial, part_err[c, 0]
    its bound.
    """
    KU = K_OPS * U_DD
    us = sum_err(S, 0.0) * U_DD
    hbh, hbl, e_hb, rkh, rkl, e_rkh = co.hbh, co.hbl, co.e_hb, co.rkh, co.rkl, co.e_rkh
    for j in range(cpg):
        c = g * cpg + j
        ph, pl = dd_mul(hbh, hbl, part[c, 2 * _DY], part[c, 2 * _DY + 1])
        Ph, Pl = dd_add(part[c, 2 * _DYH], part[c, 2 * _DYH + 1], -ph, -pl)
        qh, ql = dd_mul(rkh, rkl, part[c, 2 * _DYD], part[c, 2 * _DYD + 1])
        Ph, Pl = dd_add(Ph, Pl, -qh, -ql)
        e_P = (
            us * (part_err[c, _DYH] + abs(hbh) * part_err[c, _DY])
            + e_hb * part_err[c, _DY]
            + abs(rkh) * sum_err(S, 0.0) * U_DD * part_err[c, _DYD]
            + e_rkh * part_err[c, _DYD]
        )
        ph, pl = dd_mul(Ph, Pl, st.rho_h, st.rho_l)
        ph, pl = scaled(ph, pl, st.kr)
        part[c, 0] = ph
        part[c, 1] = pl
        part_err[c, 0] = math.ldexp(st.rho_h * (e_P + abs(Ph) * (st.dr + KU)), st.kr)
