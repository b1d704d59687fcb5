"""Flax's GroupNorms (linen and nnx) against exact rational arithmetic, with no gn_spec code involved.

Both default to ``use_fast_variance=True``: the variance is E[x^2] - E[x]^2 in float32, clamped at zero.
On data whose mean is large against its spread the subtraction cancels every significant bit, the clamp
turns the result into 0, and the output becomes (x - mean) / sqrt(eps): about 1000 times too large at the
default eps = 1e-6. Flax is channels-last: an (N, C) input is N rows of C channels.
"""

from __future__ import annotations

import numpy as np
import pytest
from exact_gn import exact_gn_rows, worst_relative_error

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
