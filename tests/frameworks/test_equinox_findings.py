"""Equinox's GroupNorm against exact arithmetic, with no gn_spec code involved.

``equinox.nn.GroupNorm`` takes one sample, (C, *spatial); its variance is jnp.var (two-pass) clamped at 0,
so it meets none of the one-pass cancellations; what the checker finds is in its JAX-built second order.
"""

from __future__ import annotations

import numpy as np
import pytest
from exact_gn import exact_double_grad_x

jax = pytest.importorskip("jax")
jnp = pytest.importorskip("jax.numpy")
eqx = pytest.importorskip("equinox")


def test_float32_second_order_underflows_on_large_data() -> None:
    """The input of Flax's finding (test_flax_findings.py): x = [3e10, -1e11, 2e5] float32 (one sample,
    C = 3), G = 1, eps = 1e-5, no affine, dy = [0.5, 1, -1], cotangent of grad_input [1, -0.5, 0.25]; the
    second order as jax.vjp of the jax.vjp of the module.

    Measured (equinox 0.13.8, jax 0.10.2): [2.62e-24, -2.06e-22, 2.03e-22], the digits Flax gives; exact
    (mpmath): [-1.57e-22, 2.42e-23, 1.33e-22]. Wrong in sign and in every digit, though the result is a
    normal float32 number. The checker's counterexample (gn-spec check equinox.nn.GroupNorm --seed 0, default
    profile): shape (2, 3, 3), G = 3, +-10**U(-3, 3) scaled by 1e7, double_grad_input 4.7e5 u*scale against
    a bound of 24.
    """
    x = np.array([3.0e10, -1.0e11, 2.0e5], np.float32)
    dy = np.array([0.5, 1.0, -1.0], np.float32)
    ggi = np.array([1.0, -0.5, 0.25], np.float32)
    module = eqx.nn.GroupNorm(1, 3, eps=1e-5, channelwise_affine=False)

    def first(dy: object, x: object) -> object:
        return jax.vjp(module, x)[1](dy)[0]

    _, vjp2 = jax.vjp(first, jnp.asarray(dy), jnp.asarray(x))
    got = np.asarray(vjp2(jnp.asarray(ggi))[1], np.float64)
    exact = exact_double_grad_x(x.tolist(), dy.tolist(), ggi.tolist(), 1e-5)
    scale = max(abs(v) for v in exact)
    assert scale > 1e-23  # the exact result is a normal float32 number
    assert max(abs(g - e) for g, e in zip(got, exact, strict=True)) > 0.5 * scale


def test_float64_second_order_is_right_on_the_same_input() -> None:
    """The control: in float64 (JAX's x64 mode, in its own interpreter) the same chain is right to 1e-9."""
    import subprocess
    import sys
    from pathlib import Path

    code = (
        "import jax; jax.config.update('jax_enable_x64', True)\n"
        "import numpy as np, jax.numpy as jnp, equinox as eqx, sys\n"
        f"sys.path.insert(0, {str(Path(__file__).parent)!r})\n"
        "from exact_gn import exact_double_grad_x\n"
        "x = np.array([3.0e10, -1.0e11, 2.0e5], np.float32).astype(np.float64)\n"
        "dy = np.array([0.5, 1.0, -1.0]); ggi = np.array([1.0, -0.5, 0.25])\n"
        "m = eqx.nn.GroupNorm(1, 3, eps=1e-5, channelwise_affine=False, dtype=jnp.float64)\n"
        "first = lambda dy, x: jax.vjp(m, x)[1](dy)[0]\n"
        "_, vjp2 = jax.vjp(first, jnp.asarray(dy), jnp.asarray(x))\n"
        "got = np.asarray(vjp2(jnp.asarray(ggi))[1])\n"
        "exact = exact_double_grad_x(x.tolist(), dy.tolist(), ggi.tolist(), 1e-5)\n"
        "print(max(abs(g - e) for g, e in zip(got, exact)) / max(abs(e) for e in exact))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert float(done.stdout.strip().splitlines()[-1]) < 1e-9
