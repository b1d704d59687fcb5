"""The fast tier of the reference: one pass for the statistics, one for the outputs, in double-double.

Each (sample, group) block is shifted by one of its own elements, c = x[0]: every x_i - c is an exact
double-double (TwoSum), and the block's statistics come from sums over those exact differences,

    T = sum (x_i - c),  Q = sum (x_i - c)^2,  delta = mu - c = T / m,  var = Q / m - delta^2,

all accumulated in double-double in a single pass. Because c is a value of the block, |delta| and every
|x_i - c| are bounded by the block's range, so nothing here loses accuracy relative to the spread of the data,
whatever |mean| / std is; the cancellation in Q / m - delta^2 costs at most log2(m) bits of the 106
(delta^2 <= (m - 1) var for c inside the data). The centred values are then d_i = (x_i - c) - delta,
formed in dd.

Each output carries an a-priori bound on its dd error; results the bound cannot certify (within a quarter ulp
before the final rounding) are counted per block, and the caller recomputes those blocks with the precise tier
(``_kernels``) and, failing that, with the exact oracle. Blocks whose range is outside [2^-400, 2^400] are
rescaled by a power of two first, exactly as in the precise tier.
"""

from __future__ import annotations

import math

import numpy as np
from numba import prange

from gn_spec._dd import dd_add, dd_add_d, dd_add_sloppy, dd_mul, dd_mul_d, fast_two_sum, two_prod, two_sum
from gn_spec._jit import block_kernel
from gn_spec._jit import jit as _jit
from gn_spec._kernels import K_OPS, U_DD, _exponent, _mean, _normalizer

# A result is certified when its bound E satisfies E <= CERT * |result| (or E == 0): for a normal result,
# 2^-55 |y| is below a quarter of ulp(y), which is what faithful rounding of the dd value needs.
CERT = 2.0**-55
TINY = 2.0**-1020  # below this a result may be subnormal (double rounding): never certified here


@_jit
def _pow2(k: int) -> float:
    return math.ldexp(1.0, k)


@_jit
def _shift_step(acc, v: float, c: float):  # type: ignore[no-untyped-def]
    """Add one value to the shifted-sum state (th, tl, qh, ql, a, amax): T += v - c, Q += (v - c)^2."""
    th, tl, qh, ql, a, amax = acc
    s, e = two_sum(v, -c)
    th, t = two_sum(th, s)
    tl += t + e
    ph, pl = two_prod(s, s)
    pl += 2.0 * s * e
    qh, t = two_sum(qh, ph)
    ql += t + pl
    return th, tl, qh, ql, a + abs(s), max(amax, abs(s))


@_jit
def _merge(p, q):  # type: ignore[no-untyped-def]
    """Combine two shifted-sum states (dd additions of the sums)."""
    th, tl = dd_add(p[0], p[1], q[0], q[1])
    qh, ql = dd_add(p[2], p[3], q[2], q[3])
    return th, tl, qh, ql, p[4] + q[4], max(p[5], q[5])


@_jit
def _shift_sums(xg, p1: float, c: float):  # type: ignore[no-untyped-def]
    """One pass: T = sum(v - c) and Q = sum((v - c)^2) in dd for v = p1 x, plus sum |v - c| and max |v - c|.

    Four independent accumulators (lanes) break the dependency chain of the compensated additions, so the
    processor overlaps them; the lanes are merged with dd additions at the end.
    """
    flat = xg.reshape(-1)
    M = flat.size
    z = (0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
    l0 = l1 = l2 = l3 = z
    i = 0
    while i + 4 <= M:
        l0 = _shift_step(l0, flat[i] * p1, c)
        l1 = _shift_step(l1, flat[i + 1] * p1, c)
        l2 = _shift_step(l2, flat[i + 2] * p1, c)
        l3 = _shift_step(l3, flat[i + 3] * p1, c)
        i += 4
    while i < M:
        l0 = _shift_step(l0, flat[i] * p1, c)
        i += 1
    return _merge(_merge(l0, l1), _merge(l2, l3))


@_jit
def _needs_rescale(qh: float, amax: float) -> bool:
    return not np.isfinite(qh) or amax > 2.0**400 or 0.0 < amax < 2.0**-400


@_jit
def _finish_stats(th, tl, qh, ql, a, m, eps, e):  # type: ignore[no-untyped-def]
    """delta, the normalizer, and the error bounds, from the shifted sums of a block scaled by 2^-e.

    Returns (delta_h, delta_l, e_delta, rho_h, rho_l, kx, kr, dr, zero_var): e_delta bounds the error of
    delta,
    dr the relative error of rho; zero_var says var == 0 exactly (a constant block).
    """
    dh, dl = _mean(th, tl, m)
    e_delta = (K_OPS + m) * U_DD * a / m
    mh, ml = _mean(qh, ql, m)
    sh, sl = dd_mul(dh, dl, dh, dl)
    vh, vl = dd_add(mh, ml, -sh, -sl)
    zero_var = qh == 0.0
    if vh < 0.0:  # only rounding can make it negative; the true variance is >= 0
        vh = vl = 0.0
    rho_h, rho_l, kx = _normalizer(vh, vl, eps, e)
    # error of var: the sums (count m) and delta^2; relative to var + eps it perturbs rho by half as much
    e_var = (K_OPS + m) * U_DD * (mh + sh) + 2.0 * abs(dh) * e_delta
    denom = vh + math.ldexp(eps, -2 * e) if kx == 0 else math.ldexp(eps, -2 * e)
    dr = K_OPS * U_DD
    if e_var > 0.0:
        dr += 0.5 * e_var / denom if denom > 0.0 else np.inf
    return dh, dl, e_delta, rho_h, rho_l, kx, kx - e, dr, zero_var


@_jit
def _centred(v: float, c: float, dh: float, dl: float) -> tuple[float, float, float]:
    """d = (v - c) - delta in dd, and |v - c| (for the error bound)."""
    s, e = two_sum(v, -c)
    t, f = two_sum(s, -dh)
    h, l = fast_two_sum(t, (e + f) - dl)
    return h, l, abs(s)


@_jit
def _block_stats(xg, eps):  # type: ignore[no-untyped-def]
    """The statistics of one block: (p1, c, delta_h, delta_l, e_delta, rho_h, rho_l, kx, kr, dr, ok)."""
    cpg, S = xg.shape
    m = float(cpg * S)
    p1 = 1.0
    e = 0
    c = xg[0, 0]
    th, tl, qh, ql, a, amax = _shift_sums(xg, p1, c)
    if not np.isfinite(c) or not np.isfinite(th):
        ok = np.isfinite(c)
        for j in range(cpg):
            for i in range(S):
                ok = ok and np.isfinite(xg[j, i])
        if not ok:
            return p1, c, 0.0, 0.0, 0.0, 0.0, 0.0, 0, 0, 0.0, False
    if _needs_rescale(qh, amax) or not np.isfinite(th):
        if not np.isfinite(amax):  # x - c overflowed: find the largest magnitude directly
            amax = 0.0
            for j in range(cpg):
                for i in range(S):
                    amax = max(amax, abs(xg[j, i]))
            amax *= 2.0
        e = min(max(_exponent(amax), -1000), 1000)
        p1 = _pow2(-e)
        c = xg[0, 0] * p1
        th, tl, qh, ql, a, amax = _shift_sums(xg, p1, c)
    dh, dl, e_delta, rho_h, rho_l, kx, kr, dr, zero_var = _finish_stats(th, tl, qh, ql, a, m, eps, e)
    ok = not (zero_var and eps == 0.0)  # 0/0: undefined, NaN
    return p1, c, dh, dl, e_delta, rho_h, rho_l, kx, kr, dr, ok


@block_kernel
def forward_fast(x, w, b, eps, y, uncertified):  # type: ignore[no-untyped-def]
    """y = w_c * d * rho * 2^kx + b_c for every block; counts the results the bound cannot certify."""
    N, G, cpg, S = x.shape
    KU = K_OPS * U_DD
    for ng in prange(N * G):
        n = ng // G
        g = ng % G
        xg = x[n, g]
        p1, c, dh, dl, e_delta, rho_h, rho_l, kx, kr, dr, ok = _block_stats(xg, eps)
        if not ok:
            y[n, g] = np.nan
            uncertified[n, g] = 0
            continue
        ah = math.ldexp(rho_h, kx)  # xhat = d * a
        al = math.ldexp(rho_l, kx)
        bad = 0
        for j in range(cpg):
            ch = g * cpg + j
            wc = w[ch]
            bc = b[ch]
            for i in range(S):
                d_h, d_l, s = _centred(xg[j, i] * p1, c, dh, dl)
                xh, xl = dd_mul(d_h, d_l, ah, al)
                ph, pl = dd_mul_d(xh, xl, wc)
                yh, yl = dd_add_d(ph, pl, bc)
                out = yh + yl
                y[n, g, j, i] = out
                e_d = KU * (s + abs(dh)) + e_delta
                err = abs(wc) * ah * e_d + abs(ph) * (dr + KU) + KU * abs(bc)
                cert = err == 0.0 or (err <= CERT * abs(out) and abs(out) >= TINY)
                bad += 0 if cert else 1
        uncertified[n, g] = bad


@_jit
def _grad_step(acc, v: float, c: float, t: float, wc: float):  # type: ignore[no-untyped-def]
    """Add one (x, dy) pair to the backward's pass-1 state.

    State: the shifted sums (th, tl, qh, ql, a, amax) of ``_shift_step``; sum g and sum g (x - c) in dd with
    their magnitudes (g = w_c dy); and the channel's sum dy and sum dy (x - c) in dd with their magnitudes.
    """
    th, tl, qh, ql, a, amax, sgh, sgl, sch, scl, ag, agc, yh, yl, zh, zl, ay, az = acc
    s, e = two_sum(v, -c)
    th, u = two_sum(th, s)
    tl += u + e
    ph, pl = two_prod(s, s)
    pl += 2.0 * s * e
    qh, u = two_sum(qh, ph)
    ql += u + pl
    gh, gl = two_prod(wc, t)
    sgh, u = two_sum(sgh, gh)
    sgl += u + gl
    ph, pl = dd_mul(gh, gl, s, e)
    sch, u = two_sum(sch, ph)
    scl += u + pl
    yh, u = two_sum(yh, t)
    yl += u
    rh, rl = dd_mul_d(s, e, t)
    zh, u = two_sum(zh, rh)
    zl += u + rl
    return (
        th, tl, qh, ql, a + abs(s), max(amax, abs(s)),
        sgh, sgl, sch, scl, ag + abs(gh), agc + abs(ph),
        yh, yl, zh, zl, ay + abs(t), az + abs(rh),
    )  # fmt: skip


@_jit
def _grad_merge(p, q):  # type: ignore[no-untyped-def]
    """Combine two pass-1 states of the backward."""
    th, tl, qh, ql, a, amax = _merge(p[:6], q[:6])
    sgh, sgl = dd_add(p[6], p[7], q[6], q[7])
    sch, scl = dd_add(p[8], p[9], q[8], q[9])
    yh, yl = dd_add(p[12], p[13], q[12], q[13])
    zh, zl = dd_add(p[14], p[15], q[14], q[15])
    return (
        th, tl, qh, ql, a, amax, sgh, sgl, sch, scl, p[10] + q[10], p[11] + q[11],
        yh, yl, zh, zl, p[16] + q[16], p[17] + q[17],
    )  # fmt: skip


_Z18 = (0.0,) * 18


@_jit
def _grad_row(xrow, dyrow, p1: float, c: float, wc: float):  # type: ignore[no-untyped-def]
    """Pass 1 of the backward over one channel of a block, in two interleaved lanes."""
    S = xrow.size
    l0 = l1 = _Z18
    i = 0
    while i + 2 <= S:
        l0 = _grad_step(l0, xrow[i] * p1, c, dyrow[i], wc)
        l1 = _grad_step(l1, xrow[i + 1] * p1, c, dyrow[i + 1], wc)
        i += 2
    if i < S:
        l0 = _grad_step(l0, xrow[i] * p1, c, dyrow[i], wc)
    return _grad_merge(l0, l1)


@block_kernel
def backward_fast(dy, x, w, eps, dx, part, part_err, uncertified):  # type: ignore[no-untyped-def]
    """dx for every block and the per-(n, c) partial sums of grad_weight and grad_bias, in two passes.

    Pass 1 accumulates the shifted statistics together with sum g, sum g (x - c) (g = w_c dy) and, per
    channel, sum dy and sum dy (x - c); then, with d = (x - c) - delta,
        mean(g d) = (sum g (x - c) - delta sum g) / m,   sum_c dy xhat = a (sum dy (x - c) - delta sum dy),
        dx_i = r ((g_i - mean g) - d_i a^2 mean(g d)).
    """
    N, G, cpg, S = x.shape
    m = float(cpg * S)
    KU = K_OPS * U_DD
    for ng in prange(N * G):
        n = ng // G
        g = ng % G
        xg = x[n, g]
        p1 = 1.0
        e = 0
        c = xg[0, 0]
        ok = True
        for attempt in range(2):
            blk = _Z18
            for j in range(cpg):
                r = _grad_row(xg[j], dy[n, g, j], p1, c, w[g * cpg + j])
                blk = _grad_merge(blk, r[:12] + _Z18[:6])
                part[n, g * cpg + j, 0] = r[14]  # sum dy (x - c), finished below
                part[n, g * cpg + j, 1] = r[15]
                part[n, g * cpg + j, 2] = r[12]  # sum dy
                part[n, g * cpg + j, 3] = r[13]
                part_err[n, g * cpg + j, 0] = r[17]
                part_err[n, g * cpg + j, 1] = r[16]
            if attempt == 0 and (not np.isfinite(blk[0]) or _needs_rescale(blk[2], blk[5])):
                st = _block_stats(xg, eps)  # finiteness check and rescaling (rare)
                p1, c, ok = st[0], st[1], st[10]
                e = -_exponent(p1) + 1
                if not ok or p1 == 1.0:
                    break
                continue
            break
        th, tl, qh, ql, a, amax, sgh, sgl, sch, scl, ag, agc = blk[:12]
        dh, dl, e_delta, rho_h, rho_l, kx, kr, dr, zero_var = _finish_stats(th, tl, qh, ql, a, m, eps, e)
        ok = ok and not (zero_var and eps == 0.0)
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
            e_z = (K_OPS + S) * U_DD * (az + abs(dh) * ay) + e_delta * ay
            part_err[n, ch, 0] = ah * e_z + abs(qh) * (dr + KU)
            part_err[n, ch, 1] = (K_OPS + S) * U_DD * ay
        if not finite:
            dx[n, g] = np.nan
            uncertified[n, g] = 0
            continue
        gbh, gbl = _mean(sgh, sgl, m)
        # mean(g d) = (sum g (x - c) - delta sum g) / m
        qh, ql = dd_mul(dh, dl, sgh, sgl)
        qh, ql = dd_add(sch, scl, -qh, -ql)
        kh, kl = _mean(qh, ql, m)
        e_k = ((K_OPS + m) * U_DD * (agc + abs(dh) * ag) + e_delta * ag) / m
        a2h, a2l = dd_mul(ah, al, ah, al)
        Qh, Ql = dd_mul(a2h, a2l, kh, kl)  # a^2 mean(g d): the coefficient of d_i
        e_Q = abs(Qh) * (2.0 * dr + KU) + a2h * e_k
        rh = math.ldexp(rho_h, kr)  # r = 1/sqrt(var + eps); finite unless the result overflows anyway
        rl = math.ldexp(rho_l, kr)
        e_gbar = (K_OPS + m) * U_DD * ag / m
        bad = 0
        for j in range(cpg):
            ch = g * cpg + j
            wc = w[ch]
            for i in range(S):
                d_h, d_l, s = _centred(xg[j, i] * p1, c, dh, dl)
                gh, gl = two_prod(wc, dy[n, g, j, i])
                th, tl = dd_add_sloppy(gh, gl, -gbh, -gbl)
                ph, pl = dd_mul(d_h, d_l, Qh, Ql)
                th, tl = dd_add_sloppy(th, tl, -ph, -pl)
                oh, ol = dd_mul(th, tl, rh, rl)
                out = oh + ol
                dx[n, g, j, i] = out
                e_d = KU * (s + abs(dh)) + e_delta
                e_t = KU * (abs(gh) + abs(gbh) + abs(ph)) + e_gbar + abs(d_h) * e_Q + abs(Qh) * e_d
                err = rh * (e_t + abs(th) * (dr + KU))
                cert = err == 0.0 or (err <= CERT * abs(out) and abs(out) >= TINY)
                bad += 0 if cert else 1
        uncertified[n, g] = bad
