"""mlx.nn.GroupNorm (mlx 0.32.4, CPU backend) against exact rational arithmetic, no gn_spec code involved.

MLX is channels-last: an (N, C) input is N rows of C channels.  Its GroupNorm has two code paths, chosen by
``pytorch_compatible``: the default (False) reshapes x to (N, -1, G) and takes mean and variance over axis 1
in the input's dtype; True reshapes to contiguous blocks and calls ``mx.fast.layer_norm``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from exact_gn import exact_gn_rows, worst_relative_error

mx = pytest.importorskip("mlx.core")
nn = pytest.importorskip("mlx.nn")


def _gn(x: np.ndarray, groups: int, eps: float, compatible: bool, dtype: object) -> list[list[float]]:
    module = nn.GroupNorm(groups, x.shape[-1], eps=eps, affine=False, pytorch_compatible=compatible)
    return np.array(module(mx.array(x, dtype=dtype)).astype(mx.float64)).tolist()


def test_default_grouping_is_interleaved() -> None:
    """x = [[1, 2, 4, 8]] float32, G = 2, eps = 1e-5, pytorch_compatible=False (the default).

    Measured: [-0.9999978, -0.9999994, 0.9999978, 0.9999994]: the groups are {1, 4} and {2, 8} (channel c in
    group c mod G, from the reshape to (N, -1, G)); GN's groups are the contiguous blocks {1, 2} and {4, 8},
    whose exact output is [-0.99998, 0.99998, -0.9999988, 0.9999988].  The docstring says only that True
    groups "in the same order/grouping as PyTorch"."""
    x = np.array([[1.0, 2.0, 4.0, 8.0]], np.float32)
    got = _gn(x, 2, 1e-5, False, mx.float32)
    assert worst_relative_error(got, exact_gn_rows(x.tolist(), 2, 1e-5)) > 0.5
    interleaved = exact_gn_rows([[1.0, 4.0, 2.0, 8.0]], 2, 1e-5)[0]
    back = [[interleaved[0], interleaved[2], interleaved[1], interleaved[3]]]
    assert worst_relative_error(got, back) < 1e-6
    assert worst_relative_error(_gn(x, 2, 1e-5, True, mx.float32), exact_gn_rows(x.tolist(), 2, 1e-5)) < 1e-6


def test_float64_pytorch_compatible_computes_in_float32() -> None:
    """x = [[0.3, -1.7]] float64, G = 1, eps = 1e-5, pytorch_compatible=True.

    Measured: [0.9999949932098389, -0.9999949932098389] (a float32 number, returned as float64); exact
    0.99999500003750, error 6.8e-9 (float64's unit roundoff is 1.1e-16).  The default path is within 1e-16
    on the same input (G = 1: its grouping is the same).  Likely cause: mx.fast.layer_norm's CPU kernel
    computes in float32 whatever the input's dtype."""
    x = np.array([[0.3, -1.7]], np.float64)
    exact = exact_gn_rows(x.tolist(), 1, 1e-5)
    assert worst_relative_error(_gn(x, 1, 1e-5, True, mx.float64), exact) > 1e-9
    assert worst_relative_error(_gn(x, 1, 1e-5, False, mx.float64), exact) < 1e-15


def test_float16_default_statistics_in_float16() -> None:
    """x = [[1, 1 + 2**-10]] float16, G = 1, eps = 1e-10, pytorch_compatible=False.

    Measured: [0, 1.4140625]; exact [-0.99979, 0.99979].  The mean 1 + 2**-11 is rounded to float16 (to 1)
    before it is subtracted, the variance is taken about that rounded mean (2**-21 instead of 2**-22), and eps
    = 1e-10 becomes 0 in float16.  pytorch_compatible=True (mx.fast.layer_norm) gives [-1, 1], within
    float16's rounding."""
    x = np.array([[1.0, 1.0 + 2.0**-10]], np.float16)
    exact = exact_gn_rows(x.astype(np.float64).tolist(), 1, 1e-10)
    got = _gn(x, 1, 1e-10, False, mx.float16)
    assert got[0][0] == 0.0
    assert worst_relative_error(got, exact) > 0.4
    assert worst_relative_error(_gn(x, 1, 1e-10, True, mx.float16), exact) < 2.0**-10


def test_float16_default_backward_nan_for_one_value_groups() -> None:
    """x = [[0.3], [0.5]] float16 (N = 2, C = 1), G = 1, eps = 1e-5, no affine, dy = 1; mx.vjp.

    Measured: grad_input [nan, nan]; exact 0 (each group holds one value: the output is 0 whatever x is).
    Likely cause: the autodiff of rsqrt(var + eps) in float16: rsqrt(1.0014e-5) = 316 is fine, but its
    derivative -rsqrt**3 / 2 = -1.6e7 overflows float16 (max 65504) and meets x - mean = 0: inf * 0.
    pytorch_compatible=True gives [0, 0]."""
    x = mx.array(np.array([[0.3], [0.5]], np.float16))
    for compatible, finite in ((False, False), (True, True)):
        module = nn.GroupNorm(1, 1, eps=1e-5, affine=False, pytorch_compatible=compatible)
        (gx,) = mx.vjp(module, [x], [mx.ones_like(x)])[1]
        values = np.array(gx.astype(mx.float32)).ravel().tolist()
        if finite:
            assert values == [0.0, 0.0]
        else:
            assert all(math.isnan(v) for v in values)


def _exact_double_grad_x(xs: list[float], dy: list[float], ggi: list[float], eps: float) -> list[float]:
    """d/dx_j of sum_i ggi_i * dL/dx_i for one group, no affine, with dL/dx = (dy - mean(dy) - xhat *
    mean(dy * xhat)) / sqrt(var + eps), in mpmath at 60 digits (mpmath.diff picks its step for that)."""
    mpmath = pytest.importorskip("mpmath")
    mp = mpmath.mp
    mp.dps = 60
    n = len(xs)
    dyv, gv = [mp.mpf(float(v)) for v in dy], [mp.mpf(float(v)) for v in ggi]

    def contracted(*x: object) -> object:
        mean = mp.fsum(x) / n
        sigma = mp.sqrt(mp.fsum((v - mean) ** 2 for v in x) / n + mp.mpf(eps))
        xhat = [(v - mean) / sigma for v in x]
        mdy, mdyx = mp.fsum(dyv) / n, mp.fsum(a * b for a, b in zip(dyv, xhat, strict=True)) / n
        return mp.fsum(g * (d - mdy - h * mdyx) / sigma for g, d, h in zip(gv, dyv, xhat, strict=True))

    point = [mp.mpf(float(v)) for v in xs]
    return [float(mpmath.diff(contracted, point, tuple(int(i == j) for i in range(n)))) for j in range(n)]


@pytest.mark.parametrize("compatible", [False, True])
def test_float32_second_order_wrong_on_large_data(compatible: bool) -> None:
    """x = [[-5e10, 7e5]] float32, G = 1, eps = 1e-5, no affine, dy = [0.25, 0.5], cotangent of grad_input
    [-0.75, -0.125]; the second order as mx.vjp of the mx.vjp (both option values).

    Measured: [1.2499650e-22, -1.2499651e-22] on both paths; exact [3.0e-48, -3.0e-48] (below float32's
    smallest subnormal: the right float32 answer is 0 or a subnormal).  The error is 0.4 times |ggi * dy| /
    sigma**2 = 3e-22, the size of the terms the second derivative is made of: not a rounding of them.  The
    default path at float64 gives 4.7e-38 (within 1e-37 of exact).  Likely cause: the autodiff chain through
    rsqrt(var + eps) in float32 (var ~ 6e20; var**(-3/2) ~ 6e-32, and the terms that should cancel are
    rounded separately).  The checker: second_order_agreement, shape (1, 2), |x| ~ 1e8 scale (3.1e5 u*scale,
    bound 23)."""
    x = np.array([[-5e10, 7e5]], np.float32)
    dy = np.array([[0.25, 0.5]], np.float32)
    ggi = np.array([[-0.75, -0.125]], np.float32)
    module = nn.GroupNorm(1, 2, eps=1e-5, affine=False, pytorch_compatible=compatible)

    def first(d: object, v: object) -> object:
        return mx.vjp(module, [v], [d])[1][0]

    def second(dtype: object) -> list[float]:
        args = [mx.array(dy, dtype=dtype), mx.array(x, dtype=dtype)]
        out = mx.vjp(first, args, [mx.array(ggi, dtype=dtype)])[1][1]
        return np.array(out.astype(mx.float64)).ravel().tolist()

    exact = _exact_double_grad_x(x[0].tolist(), dy[0].tolist(), ggi[0].tolist(), 1e-5)
    assert max(abs(v) for v in exact) < 1e-47
    sigma2 = (float(x[0, 0]) - float(x[0, 1])) ** 2 / 4
    term = 0.75 * 0.25 / sigma2
    got = second(mx.float32)
    assert max(abs(g - e) for g, e in zip(got, exact, strict=True)) > 0.1 * term
    if not compatible:
        assert max(abs(g - e) for g, e in zip(second(mx.float64), exact, strict=True)) < 1e-37
