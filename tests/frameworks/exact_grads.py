"""Exact first-order gradients of Group Normalization, by mpmath, for the framework tests (no gn_spec code).

The loss sum(dy * GN(x; weight, bias)) is evaluated in mpmath at 60 digits and differentiated by
``mpmath.diff`` (its step chosen for that precision), one partial derivative at a time: no backward formula
is assumed, so a framework's backward is compared with the derivative itself.  Meant for small inputs (a few
dozen elements).
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np

DIGITS = 60


def exact_grads(
    x: np.ndarray, dy: np.ndarray, groups: int, weight: np.ndarray | None, eps: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(d/dx, d/dweight, d/dbias) of sum(dy * GN(x)) for x of shape (N, C, *spatial), each as float64 (the
    weight taken as ones when None; d/dbias is the exact rational sum of dy over all but the channel axis)."""
    import mpmath

    mp = mpmath.mp
    mp.dps = DIGITS
    c = x.shape[1]
    per_channel = int(np.prod(x.shape[2:], dtype=np.int64))
    size = (c // groups) * per_channel  # one (sample, group) block of x.reshape(N, -1)
    flat = [mp.mpf(float(v)) for v in x.reshape(-1)]
    dys = [mp.mpf(float(v)) for v in dy.reshape(-1)]
    w0 = [mp.mpf(1)] * c if weight is None else [mp.mpf(float(v)) for v in weight]
    total = len(flat)

    def loss(*args: object) -> object:
        xs, ws = args[:total], args[total:]
        out = []
        for start in range(0, total, size):
            block = xs[start:start + size]
            mean = mp.fsum(block) / size
            sigma = mp.sqrt(mp.fsum((v - mean) ** 2 for v in block) / size + mp.mpf(eps))
            for k, v in enumerate(block):
                i = start + k
                out.append(dys[i] * ws[(i // per_channel) % c] * (v - mean) / sigma)
        return mp.fsum(out)

    point = flat + w0
    partial = [
        float(mpmath.diff(loss, point, tuple(int(i == j) for i in range(len(point)))))
        for j in range(len(point))
    ]
    grad_bias = [
        float(sum((Fraction(float(v)) for v in np.moveaxis(dy, 1, 0)[ch].reshape(-1)), Fraction(0)))
        for ch in range(c)
    ]
    return np.array(partial[:total]).reshape(x.shape), np.array(partial[total:]), np.array(grad_bias)
