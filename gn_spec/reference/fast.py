"""Tier 1 of the reference, the fast tier: one pass for the statistics, one for the outputs, in double-double.

Each (sample, group) block is shifted by one of its own elements, c = x[0]: every x_i - c is an exact
double-double (TwoSum), and the block's statistics come from sums over those exact differences,

    T = sum (x_i - c),  Q = sum (x_i - c)^2,  delta = mu - c = T / m,  var = Q / m - delta^2,

all accumulated in double-double in a single pass. Because c is a value of the block, |delta| and every
|x_i - c| are bounded by the block's range, so nothing here loses accuracy relative to the spread of the data,
whatever |mean| / std is; the cancellation in Q / m - delta^2 costs at most log2(m) bits of the 106
(delta^2 <= (m - 1) var for c inside the data). The centred values are then d_i = (x_i - c) - delta,
formed in dd.

Each output carries an a-priori bound on its dd error; results the bound cannot certify
(``constants.CERT_REL``, a sufficient test for a quarter ulp before the final rounding) are counted per
block, and the dispatch in
``gn_spec.reference`` recomputes those blocks with the precise tier (``precise``) and, failing that, with the
exact tier (``exact``). Blocks whose range is outside ``constants.FAST_WINDOW`` ([2^-400, 2^400], narrower
than the precise tier's, since this tier squares x - c unscaled) are rescaled by a power of two first.
"""

from __future__ import annotations

import math
from collections import namedtuple

import numpy as np
from numba import prange

from gn_spec.reference.constants import (
    CERT_MIN,
    CERT_REL,
    EXP_CLAMP,
    FAST_WINDOW,
    K_OPS,
    U_DD,
    UNDER,
    UNDER_A,
    outside,
    sum_err,
)
from gn_spec.reference.dd import dd_add, dd_add_d, dd_mean, dd_mul, dd_mul_d, fma, two_sum
from gn_spec.reference.jit import block_kernel
from gn_spec.reference.jit import jit as _jit
from gn_spec.reference.scaling import exponent, normalizer

#: One pass's shifted sums of a block: T = (th, tl), Q = (qh, ql), a = sum |v - c|, amax = max |v - c|, and
#: ks, their error constant (``constants.sum_err``).
ShiftSums = namedtuple("ShiftSums", ["th", "tl", "qh", "ql", "a", "amax", "ks"])

#: The normalization of a block from its shifted sums (see ``_finish_stats``).
Normalized = namedtuple("Normalized", ["dh", "dl", "e_delta", "rho_h", "rho_l", "kx", "kr", "dr", "zero_var"])

#: A block's statistics (see ``_block_stats``): the scale p1, the shift c, ok, and the ``Normalized`` values.
FastStats = namedtuple("FastStats", ["p1", "c", "ok", "norm"])

#: One channel's pass-1 sums in the backward (see ``_grad_row``).
RowSums = namedtuple("RowSums", ["th", "tl", "qh", "ql", "a", "amax", "yh", "yl", "zh", "zl", "ay", "az"])

@_jit
def _pow2(k: int) -> float:
    return math.ldexp(1.0, k)


# Lanes of the vectorized reductions. A reduction keeps LANES independent compensated accumulators in a small
# (state, lane) array and adds element i0 + k to lane k; the loop over the lanes has no dependency between its
# iterations, so LLVM's loop vectorizer evaluates it in packed SIMD instructions (bit-identical, lane by lane,
# to the scalar code: no reassociation is involved). The lane count is min(LANES, count), a run-time value, so
# the lane loop is not fully unrolled (which would leave it to the SLP vectorizer, which numba does not run).
LANES = 32


@_jit
def _lane_count(M: int) -> int:
    return max(min(LANES, M), 1)


@_jit
def _shift_step(acc, k, v, c):
    """Add one value to lane k of the shifted-sum state: T += v - c, Q += (v - c)^2, sum and max of |v - c|.

    acc rows: 0, 1 = T in dd; 2, 3 = Q in dd; 4 = sum |v - c|; 5 = max |v - c|. v - c = s + e exactly
    (TwoSum) and (s + e)^2 = s^2 + 2 s e + e^2 with s^2 = ph + fma(s, s, -ph) exactly; the dropped e^2 and the
    rounding of fma(2 s, e, .) are below 2 u^2 s^2.
    """
    s, e = two_sum(v, -c)
    th, t = two_sum(acc[0, k], s)
    acc[0, k] = th
    acc[1, k] += t + e
    ph = s * s
    pl = fma(2.0 * s, e, fma(s, s, -ph))
    qh, t = two_sum(acc[2, k], ph)
    acc[2, k] = qh
    acc[3, k] += t + pl
    a = abs(s)
    acc[4, k] += a
    acc[5, k] = max(acc[5, k], a)


@_jit
def _shift_sums(xg, p1: float, c: float):
    """One pass: T = sum(v - c) and Q = sum((v - c)^2) in dd for v = p1 x, plus sum |v - c| and max |v - c|.

    The block is added in lanes (``LANES``), vectorized; the lanes are merged with dd additions at the end.
    Returns a ``ShiftSums``; its ks is the error constant of the sums (``constants.sum_err``).
    """
    flat = xg.reshape(-1)
    M = flat.size
    L = _lane_count(M)
    acc = np.zeros((6, L))
    R = M // L
    for r in range(R):
        i0 = r * L
        for k in range(L):
            _shift_step(acc, k, flat[i0 + k] * p1, c)
    for k in range(M - R * L):
        _shift_step(acc, k, flat[R * L + k] * p1, c)
    th = tl = qh = ql = a = amax = 0.0
    for k in range(L):
        th, tl = dd_add(th, tl, acc[0, k], acc[1, k])
        qh, ql = dd_add(qh, ql, acc[2, k], acc[3, k])
        a += acc[4, k]
        amax = max(amax, acc[5, k])
    return ShiftSums(th, tl, qh, ql, a, amax, sum_err(R + 1.0, L))


@_jit
def _needs_rescale(qh: float, amax: float) -> bool:
    return not np.isfinite(qh) or outside(amax, FAST_WINDOW)


@_jit
def _finish_stats(th, tl, qh, ql, a, m, eps, e, ks):
    """delta, the normalizer, and the error bounds, from the shifted sums of a block scaled by 2^-e.

    ks bounds the error of the sums T and Q in units of U_DD times a = sum |x - c| and Q respectively
    (``constants.sum_err``). Returns a ``Normalized``: (dh, dl) is delta in dd, e_delta bounds its error, dr
    the relative error of rho; zero_var says var == 0 exactly (a constant block).
    """
    dh, dl = dd_mean(th, tl, m)
    e_delta = ks * U_DD * a / m
    mh, ml = dd_mean(qh, ql, m)
    sh, sl = dd_mul(dh, dl, dh, dl)
    vh, vl = dd_add(mh, ml, -sh, -sl)
    zero_var = qh == 0.0
    if vh < 0.0:  # only rounding can make it negative; the true variance is >= 0
        vh = vl = 0.0
    rho_h, rho_l, kx = normalizer(vh, vl, eps, e)
    # error of var: the sum Q and delta^2; relative to var + eps it perturbs rho by half as much
    e_var = ks * U_DD * (mh + sh) + 2.0 * abs(dh) * e_delta
    denom = vh + math.ldexp(eps, -2 * e) if kx == 0 else math.ldexp(eps, -2 * e)
    dr = K_OPS * U_DD
    if e_var > 0.0:
        dr += 0.5 * e_var / denom if denom > 0.0 else np.inf
    return Normalized(dh, dl, e_delta, rho_h, rho_l, kx, kx - e, dr, zero_var)


@_jit
def _block_stats(xg, eps):
    """The statistics of one block, as a ``FastStats``: the scale p1 = 2^-e, the shift c (in scaled units),
    ok (False for a block holding NaN or inf, or constant with eps = 0: its outputs are NaN) and ``norm``."""
    cpg, S = xg.shape
    m = float(cpg * S)
    p1 = 1.0
    e = 0
    c = xg[0, 0]
    t = _shift_sums(xg, p1, c)
    if not np.isfinite(c) or not np.isfinite(t.th):
        ok = np.isfinite(c)
        for j in range(cpg):
            for i in range(S):
                ok = ok and np.isfinite(xg[j, i])
        if not ok:
            return FastStats(p1, c, False, Normalized(0.0, 0.0, 0.0, 0.0, 0.0, 0, 0, 0.0, False))
    if _needs_rescale(t.qh, t.amax) or not np.isfinite(t.th):
        amax = t.amax
        if not np.isfinite(amax):  # x - c overflowed: find the largest magnitude directly
            amax = 0.0
            for j in range(cpg):
                for i in range(S):
                    amax = max(amax, abs(xg[j, i]))
            amax *= 2.0
        e = min(max(exponent(amax), -EXP_CLAMP), EXP_CLAMP)
        p1 = _pow2(-e)
        c = xg[0, 0] * p1
        t = _shift_sums(xg, p1, c)
    norm = _finish_stats(t.th, t.tl, t.qh, t.ql, t.a, m, eps, e, t.ks)
    ok = not (norm.zero_var and eps == 0.0)  # 0/0: undefined, NaN
    return FastStats(p1, c, ok, norm)


@block_kernel
def forward_fast(x, w, b, eps, y, uncertified):
    """y = A_c (v - c) + B_c for every block, counting the results the bound cannot certify.

    With a = rho 2^kx (so that xhat = (v - mu) a for v = p1 x) and delta = mu - c, each channel's
    y = w_c xhat + b_c is A_c (v - c) + B_c with A_c = w_c a and B_c = b_c - A_c delta, both formed once in
    dd; per element v - c = s + e exactly (TwoSum), A (s + e) is formed in dd (dropping A_l e and two
    roundings: below 1.5 U_DD |A_h s|) and B added (below 1.25 U_DD (|A s| + |B|)).

    Error before the final rounding, against y = alpha (v - mu) + b with alpha = w_c r exact:
    (A - alpha)(v - mu) + A ((mu - c) - delta) + (error of B) + (the two per-element errors above), where
    |A - alpha| <= (dr + 2 U_DD) |alpha|, |v - mu| <= |s| (1 + u) + |delta| + e_delta, |delta - (mu - c)| <=
    e_delta and B's error is below KU (|b| + |A delta|). Bounded, with every factor (1 + O(u)) absorbed by
    doubling, by c0 + c1 |s| with c1 = 2 |A_h| (dr + KU) and c0 = 2 |A_h| ((dr + KU)(|delta| + e_delta) +
    e_delta) + KU (|b| + |B|). Products that underflow lose at most 2^-1075 each, absolutely: a term UNDER
    covers them wherever a product is not exactly zero, and UNDER_A bounds the absolute error that
    underflow adds to A itself (multiplied by |v - mu|).
    """
    N, G, cpg, S = x.shape
    KU = K_OPS * U_DD
    for ng in prange(N * G):
        n = ng // G
        g = ng % G
        xg = x[n, g]
        st = _block_stats(xg, eps)
        p1, c, nm = st.p1, st.c, st.norm
        dh, dl, e_delta, rho_h, rho_l, kx, dr = nm.dh, nm.dl, nm.e_delta, nm.rho_h, nm.rho_l, nm.kx, nm.dr
        if not st.ok:
            y[n, g] = np.nan
            uncertified[n, g] = 0
            continue
        ah = math.ldexp(rho_h, kx)  # xhat = (v - mu) * a
        al = math.ldexp(rho_l, kx)
        bad = 0
        for j in range(cpg):
            ch = g * cpg + j
            wc = w[ch]
            bc = b[ch]
            Ah, Al = dd_mul_d(ah, al, wc)
            qh, ql = dd_mul(Ah, Al, dh, dl)
            Bh, Bl = dd_add_d(-qh, -ql, bc)
            c1 = 2.0 * abs(Ah) * (dr + KU) + UNDER_A
            c0 = 2.0 * abs(Ah) * ((dr + KU) * (abs(dh) + e_delta) + e_delta) + KU * (abs(bc) + abs(Bh))
            c0 += UNDER_A * (abs(dh) + e_delta)
            if Ah != 0.0 and dh != 0.0:
                c0 += UNDER
            for i in range(S):
                s, e = two_sum(xg[j, i] * p1, -c)
                ph = Ah * s
                pl = fma(s, Al, fma(e, Ah, fma(s, Ah, -ph)))
                yh, t = two_sum(ph, Bh)
                out = yh + (t + (pl + Bl))
                y[n, g, j, i] = out
                err = c0 + c1 * abs(s) + (UNDER if s != 0.0 else 0.0)
                cert = err == 0.0 or (err <= CERT_REL * abs(out) and abs(out) >= CERT_MIN)
                bad += 0 if cert else 1
        uncertified[n, g] = bad


@_jit
def _grad_step(acc, k, v, c, t):
    """Add one (x, dy) pair, v = p1 x and t = dy, to lane k of the backward's pass-1 state.

    acc rows: 0-5 the shifted sums of ``_shift_step``; 6, 7 = sum t in dd; 8, 9 = sum t (v - c) in dd;
    10 = sum |t|; 11 = sum |t s|. With v - c = s + e exactly, (s + e) t = rh + fma(s, t, -rh) + e t exactly
    for rh = fl(s t); the one rounding of fma(e, t, .) is below 2 u^2 |s t|.
    """
    s, e = two_sum(v, -c)
    th, u = two_sum(acc[0, k], s)
    acc[0, k] = th
    acc[1, k] += u + e
    ph = s * s
    pl = fma(2.0 * s, e, fma(s, s, -ph))
    qh, u = two_sum(acc[2, k], ph)
    acc[2, k] = qh
    acc[3, k] += u + pl
    a = abs(s)
    acc[4, k] += a
    acc[5, k] = max(acc[5, k], a)
    yh, u = two_sum(acc[6, k], t)
    acc[6, k] = yh
    acc[7, k] += u
    rh = s * t
    rl = fma(e, t, fma(s, t, -rh))
    zh, u = two_sum(acc[8, k], rh)
    acc[8, k] = zh
    acc[9, k] += u + rl
    acc[10, k] += abs(t)
    acc[11, k] += abs(rh)


@_jit
def _grad_row(acc, xrow, dyrow, p1: float, c: float):
    """Pass 1 of the backward over one channel of a block, in the lanes of acc (vectorized, see ``LANES``).

    Returns the channel's sums, lanes merged, as a ``RowSums``: T = (th, tl), Q = (qh, ql), a = sum |x - c|,
    amax = max |x - c|, sum dy = (yh, yl), sum dy (x - c) = (zh, zl), ay = sum |dy|, az = sum |dy (x - c)|.
    """
    S = xrow.size
    L = acc.shape[1]
    acc[:] = 0.0
    R = S // L
    for r in range(R):
        i0 = r * L
        for k in range(L):
            _grad_step(acc, k, xrow[i0 + k] * p1, c, dyrow[i0 + k])
    for k in range(S - R * L):
        _grad_step(acc, k, xrow[R * L + k] * p1, c, dyrow[R * L + k])
    th = tl = qh = ql = a = amax = yh = yl = zh = zl = ay = az = 0.0
    for k in range(L):
        th, tl = dd_add(th, tl, acc[0, k], acc[1, k])
        qh, ql = dd_add(qh, ql, acc[2, k], acc[3, k])
        a += acc[4, k]
        amax = max(amax, acc[5, k])
        yh, yl = dd_add(yh, yl, acc[6, k], acc[7, k])
        zh, zl = dd_add(zh, zl, acc[8, k], acc[9, k])
        ay += acc[10, k]
        az += acc[11, k]
    return RowSums(th, tl, qh, ql, a, amax, yh, yl, zh, zl, ay, az)


@block_kernel
def backward_fast(dy, x, w, eps, dx, part, part_err, uncertified):
    """dx for every block and the per-(n, c) partial sums of grad_weight and grad_bias, in two passes.

    Pass 1 accumulates the shifted statistics together with sum g, sum g (x - c) (g = w_c dy) and, per
    channel, sum dy and sum dy (x - c); then, with d = (x - c) - delta,
        mean(g d) = (sum g (x - c) - delta sum g) / m,   sum_c dy xhat = a (sum dy (x - c) - delta sum dy),
        dx_i = r ((g_i - mean g) - d_i a^2 mean(g d)) = W_c dy_i - P (x_i - c) + K,
    with W_c = r w_c, P = r a^2 mean(g d) and K = P delta - r mean(g) formed once in dd. Per element
    x - c = s + e exactly (TwoSum), W dy and P (s + e) are formed in dd (below 0.75 U_DD |W_h dy| and
    1.5 U_DD |P_h s|) and the three dd terms added (below 3 U_DD of the sum of their magnitudes).

    Error before the final rounding, against the exact W* dy - P* (x - c) + K*: (W - W*) dy is below
    (dr + 2 U_DD) |W dy| (r's relative error); (P - P*)(x - c) below e_P |s| (1 + u), with e_P from the
    errors e_Q of a^2 mean(g d) and dr of r; K - K* below e_K, from e_delta, e_P, e_gbar, dr and the dd
    operations. With the (1 + O(u)) factors absorbed by doubling: c0 + cy |dy| + cs |s|, cy = 2 |W_h|
    (dr + KU), cs = 2 (e_P + KU |P_h|), c0 = 2 e_K + KU |K_h|, plus UNDER where a product may have
    underflowed and UNDER_A per unit of |dy| and |x - mu| for the absolute error underflow adds to W and P.
    """
    N, G, cpg, S = x.shape
    m = float(cpg * S)
    KU = K_OPS * U_DD
    L = _lane_count(S)
    per_lane = S // L + 1.0
    ks_row = sum_err(per_lane, L)  # the per-channel sums
    ks = sum_err(per_lane, L + cpg + 1)  # the block sums: lanes, channels merged, the products by w_c
    for ng in prange(N * G):
        n = ng // G
        g = ng % G
        xg = x[n, g]
        acc = np.empty((12, L))
        p1 = 1.0
        e = 0
        c = xg[0, 0]
        ok = True
        for attempt in range(2):
            # block sums T, Q, sum g = sum_c w_c sum dy, sum g (x - c) = sum_c w_c sum dy (x - c)
            th = tl = qh = ql = a = amax = sgh = sgl = sch = scl = ag = agc = 0.0
            for j in range(cpg):
                wc = w[g * cpg + j]
                r = _grad_row(acc, xg[j], dy[n, g, j], p1, c)
                th, tl = dd_add(th, tl, r.th, r.tl)
                qh, ql = dd_add(qh, ql, r.qh, r.ql)
                a += r.a
                amax = max(amax, r.amax)
                ph, pl = dd_mul_d(r.yh, r.yl, wc)
                sgh, sgl = dd_add(sgh, sgl, ph, pl)
                ph, pl = dd_mul_d(r.zh, r.zl, wc)
                sch, scl = dd_add(sch, scl, ph, pl)
                ag += abs(wc) * r.ay
                agc += abs(wc) * r.az
                part[n, g * cpg + j, 0] = r.zh  # sum dy (x - c), finished below
                part[n, g * cpg + j, 1] = r.zl
                part[n, g * cpg + j, 2] = r.yh  # sum dy
                part[n, g * cpg + j, 3] = r.yl
                part_err[n, g * cpg + j, 0] = r.az
                part_err[n, g * cpg + j, 1] = r.ay
            if attempt == 0 and (not np.isfinite(th) or _needs_rescale(qh, amax)):
                st = _block_stats(xg, eps)  # finiteness check and rescaling (rare)
                p1, c, ok = st.p1, st.c, st.ok
                e = -exponent(p1) + 1
                if not ok or p1 == 1.0:
                    break
                continue
            break
        nm = _finish_stats(th, tl, qh, ql, a, m, eps, e, ks)
        dh, dl, e_delta, rho_h, rho_l = nm.dh, nm.dl, nm.e_delta, nm.rho_h, nm.rho_l
        kx, kr, dr = nm.kx, nm.kr, nm.dr
        ok = ok and not (nm.zero_var and eps == 0.0)
        ah = math.ldexp(rho_h, kx)  # xhat = d * a
        al = math.ldexp(rho_l, kx)
        finite = ok
        for j in range(cpg):
            ch = g * cpg + j
            zh, zl, yh, yl = part[n, ch, 0], part[n, ch, 1], part[n, ch, 2], part[n, ch, 3]
            az, ay = part_err[n, ch, 0], part_err[n, ch, 1]
            finite = finite and np.isfinite(yh)
            # sum dy xhat = a (sum dy (x - c) - delta sum dy)
            qh, ql = dd_mul(dh, dl, yh, yl)
            qh, ql = dd_add(zh, zl, -qh, -ql)
            qh, ql = dd_mul(qh, ql, ah, al)
            part[n, ch, 0] = qh if ok else np.nan
            part[n, ch, 1] = ql
            e_z = ks_row * U_DD * (az + abs(dh) * ay) + e_delta * ay
            part_err[n, ch, 0] = ah * e_z + abs(qh) * (dr + KU)
            part_err[n, ch, 1] = ks_row * U_DD * ay
        if not finite:
            dx[n, g] = np.nan
            uncertified[n, g] = 0
            continue
        gbh, gbl = dd_mean(sgh, sgl, m)
        # mean(g d) = (sum g (x - c) - delta sum g) / m
        qh, ql = dd_mul(dh, dl, sgh, sgl)
        qh, ql = dd_add(sch, scl, -qh, -ql)
        kh, kl = dd_mean(qh, ql, m)
        e_k = (ks * U_DD * (agc + abs(dh) * ag) + e_delta * ag) / m
        a2h, a2l = dd_mul(ah, al, ah, al)
        Qh, Ql = dd_mul(a2h, a2l, kh, kl)  # a^2 mean(g d): the coefficient of d_i
        e_Q = abs(Qh) * (2.0 * dr + KU) + a2h * e_k
        rh = math.ldexp(rho_h, kr)  # r = 1/sqrt(var + eps); finite unless the result overflows anyway
        rl = math.ldexp(rho_l, kr)
        e_gbar = ks * U_DD * ag / m
        # dx_i = W_c dy_i - P (x_i - c) + K with W_c = r w_c, P = r a^2 mean(g d), K = P delta - r mean(g)
        Ph, Pl = dd_mul(rh, rl, Qh, Ql)
        e_P = rh * (e_Q + (dr + KU) * (abs(Qh) + e_Q))
        k1h, k1l = dd_mul(Ph, Pl, dh, dl)
        k2h, k2l = dd_mul(rh, rl, gbh, gbl)
        Kh, Kl = dd_add(k1h, k1l, -k2h, -k2l)
        e_K = abs(Ph) * e_delta + e_P * (abs(dh) + e_delta) + rh * (e_gbar + abs(gbh) * (dr + KU))
        e_K += KU * (abs(k1h) + abs(k2h))
        cs = 2.0 * (e_P + KU * abs(Ph)) + UNDER_A
        c0 = 2.0 * e_K + KU * abs(Kh) + UNDER_A * (abs(dh) + e_delta)
        if (Ph != 0.0 and dh != 0.0) or (rh != 0.0 and gbh != 0.0):
            c0 += UNDER
        bad = 0
        for j in range(cpg):
            ch = g * cpg + j
            Wh, Wl = dd_mul_d(rh, rl, w[ch])
            cy = 2.0 * abs(Wh) * (dr + KU) + UNDER_A
            for i in range(S):
                t = dy[n, g, j, i]
                s, e = two_sum(xg[j, i] * p1, -c)
                gh = Wh * t
                gl = fma(t, Wl, fma(Wh, t, -gh))
                ph = Ph * s
                pl = fma(s, Pl, fma(e, Ph, fma(s, Ph, -ph)))
                th, t1 = two_sum(gh, -ph)
                uh, t2 = two_sum(th, Kh)
                out = uh + ((t1 + t2) + ((gl - pl) + Kl))
                dx[n, g, j, i] = out
                err = c0 + cy * abs(t) + cs * abs(s) + (UNDER if (t != 0.0 or s != 0.0) else 0.0)
                cert = err == 0.0 or (err <= CERT_REL * abs(out) and abs(out) >= CERT_MIN)
                bad += 0 if cert else 1
        uncertified[n, g] = bad
