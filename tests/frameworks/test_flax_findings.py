"""Flax's GroupNorms (linen and nnx) against exact rational arithmetic, with no gn_spec code involved.

Both default to ``use_fast_variance=True``: the variance is E[x^2] - E[x]^2 in float32, clamped at zero.
On data whose mean is large against its spread the subtraction cancels every significant bit, the clamp
turns the result into 0, and the output becomes (x - mean) / sqrt(eps): about 1000 times too large at the
default eps = 1e-6. Flax is channels-last: an (N, C) input is N rows of C channels.
"""

from __future__ import annotations

import numpy as np
import pytest
from exact_gn import exact_double_grad_x, exact_gn_rows, worst_relative_error

jax = pytest.importorskip("jax")
jnp = pytest.importorskip("jax.numpy")
linen = pytest.importorskip("flax.linen")
nnx = pytest.importorskip("flax.nnx")


def _linen(x: np.ndarray, groups: int, **kwargs: object) -> list[list[float]]:
    module = linen.GroupNorm(num_groups=groups, **kwargs)
    params = module.init(jax.random.PRNGKey(0), x)
    return np.asarray(module.apply(params, x), dtype=np.float64).tolist()


def test_linen_fast_variance_collapses_on_offset_data() -> None:
    """x = [[10000, 10001, 10002, 10003]] float32, G = 1, eps = 1e-6 (default).

    Measured (flax 0.12.8): [-1500, -500, 500, 1500]; exact: [-1.34164, -0.447213, 0.447213, 1.34164] (mean
    10001.5, variance 1.25); worst error 1117 times the largest exact value. With use_fast_variance=False the
    same call is within 1e-6.
    """
    x = np.array([[10000, 10001, 10002, 10003]], np.float32)
    exact = exact_gn_rows(x.astype(np.float64).tolist(), 1, 1e-6)
    got = _linen(x, 1)
    assert worst_relative_error(got, exact) > 100
    assert worst_relative_error(_linen(x, 1, use_fast_variance=False), exact) < 1e-6


def test_nnx_float16_offset_data() -> None:
    """x = [[1025, 1025, 1024, 1024, 1026, 1023]] float16, G = 2, eps = 1e-6 (default), |mean|/std ~ 2e3.

    Measured (flax 0.12.8), default construction: [333.25, 333.25, -666.75, -0.2722, 1.3608, -1.0887] (float32
    out, as the float32 parameters promote it); with dtype=param_dtype=float16: [333.25, 333.25, -666.5, ...].
    Exact: [0.707105, 0.707105, -1.414210, -0.267261, 1.336306, -1.069045]. Group 1's variance (2/9) is
    cancelled to 0 by the one-pass formula in float32; the error is 470 times the largest exact value.
    """
    x = np.array([[1025, 1025, 1024, 1024, 1026, 1023]], np.float16)
    exact = exact_gn_rows(x.astype(np.float64).tolist(), 2, 1e-6)
    for kwargs in ({}, {"dtype": jnp.float16, "param_dtype": jnp.float16}):
        module = nnx.GroupNorm(6, num_groups=2, rngs=nnx.Rngs(0), **kwargs)
        got = np.asarray(module(jnp.asarray(x)), dtype=np.float64).tolist()
        assert worst_relative_error(got, exact) > 100, kwargs
        assert got[0][2] < -600, kwargs


def test_float32_second_order_underflows_on_large_data() -> None:
    """linen and nnx: x = [[3e10, -1e11, 2e5]] float32 (rounded), G = 1, eps = 1e-5, no affine,
    use_fast_variance=False;
    dy = [0.5, 1, -1], cotangent of grad_input [1, -0.5, 0.25]; the second order as jax.vjp of the jax.vjp.

    Measured (flax 0.12.8, jax 0.10.2): [2.6e-24, -2.06e-22, 2.03e-22]; exact: [-1.57e-22, 2.42e-23,
    1.33e-22]. Wrong in sign and in every digit, though the result (~1e-22) is far inside float32's range
    (float64 gets it right); likely an intermediate underflow: the variance is ~3e21, and the chain that
    autodiff builds through rsqrt has terms like var**(-5/2) ~ 1e-54, below float32's smallest subnormal.
    The checker's counterexample: shape (1, 3), data
    +-10**U(-3, 3) scaled by 1e8 (second_order_agreement, double_grad_input 2.35e5 u*scale, bound 24).
    """
    x = np.array([[3.0e10, -1.0e11, 2.0e5]], np.float32)
    dy = np.array([[0.5, 1.0, -1.0]], np.float32)
    ggi = np.array([[1.0, -0.5, 0.25]], np.float32)
    kwargs = dict(num_groups=1, epsilon=1e-5, use_scale=False, use_bias=False, use_fast_variance=False)
    module = linen.GroupNorm(**kwargs)
    exact = exact_double_grad_x(x[0].tolist(), dy[0].tolist(), ggi[0].tolist(), 1e-5)
    scale = max(abs(v) for v in exact)
    assert scale > 1e-23  # the exact result is a normal float32 number
    for apply in (lambda v: module.apply({"params": {}}, v), nnx.GroupNorm(3, rngs=nnx.Rngs(0), **kwargs)):

        def first(dy: object, x: object, apply: object = apply) -> object:
            return jax.vjp(apply, x)[1](dy)[0]

        _, vjp2 = jax.vjp(first, jnp.asarray(dy), jnp.asarray(x))
        got = np.asarray(vjp2(jnp.asarray(ggi))[1], np.float64)[0]
        assert max(abs(g - e) for g, e in zip(got, exact, strict=True)) > 0.5 * scale


@pytest.mark.parametrize("fast", [True, False])
def test_float16_backward_nan_for_one_value_groups(fast: bool) -> None:
    """x = [[1.5], [-0.75]] float16 (N = 2, C = 1), G = 1, eps = 1e-10, bias only, dy = [[0.5], [1]]; jax.vjp.

    Measured (flax 0.12.8, linen and nnx, either use_fast_variance): grad_input [0, nan]; exact [0, 0]
    (each group holds one value, so the output is the bias whatever x is). Likely cause (flax
    ``linen/normalization.py``): x enters twice, cast to float32 in ``_compute_stats`` and promoted in
    ``_normalize``'s ``x - mean``; the transpose of each cast rounds its own cotangent to float16, and the
    two, +-rsqrt(eps) dy = +-1e5 for dy = 1, overflow float16 (largest 65504) to +inf and -inf, whose sum
    is NaN. dy = 0.5 (5e4 each) gives 0; eps = 1e-9 gives 0 for both. The checker's counterexample:
    backward_agreement, shape (2, 1, 1), G = 1, eps = 1e-10, bias only."""
    x = jnp.asarray(np.array([[1.5], [-0.75]], np.float16))
    dy = jnp.asarray(np.array([[0.5], [1.0]], np.float16))
    kwargs = dict(num_groups=1, epsilon=1e-10, use_scale=False, use_bias=True, use_fast_variance=fast,
                  dtype=jnp.float16, param_dtype=jnp.float16)
    module = linen.GroupNorm(**kwargs)
    params = module.init(jax.random.PRNGKey(0), x)
    layer = nnx.GroupNorm(1, rngs=nnx.Rngs(0), **kwargs)
    for apply in (lambda v: module.apply(params, v), layer):
        y, vjp = jax.vjp(apply, x)
        got = np.asarray(vjp(dy.astype(y.dtype))[0], np.float64).ravel().tolist()
        assert got[0] == 0.0 and np.isnan(got[1]), got
