"""tinygrad.nn.GroupNorm 0.14.0 at float16, against exact arithmetic (no gn_spec code).

tinygrad runs on its interpreter device (DEV=PYTHON: its CPU device compiles with clang, absent on CI), in a
fresh interpreter per call, since DEV fixes the default device for the process.  The module is
``x.reshape(N, G, -1).layernorm(eps)``, and ``Tensor.layernorm`` is ``y = x - mean(x)`` then
``y * (y*y).mean().add(eps).rsqrt()``, where ``Tensor.mean`` accumulates in float32 and casts its result back
to the input's dtype: the mean and the variance are float16 values, eps is added and the reciprocal square
root taken in float16, which SPEC section 3.2 forbids (mu and r in at least float32's precision).

On Python 3.11 the interpreter device has no native float16 (its renderer drops ``half`` from its dtypes below
Python 3.12), so tinygrad emulates it (``codegen/decomp/dtype.py``): inside a kernel float16 operations run in
float32, a cast to float16 only clamps to +-inf beyond 65504, and a value is rounded to float16, subnormals
flushed to zero ("NB: denormals are zero!"), where it is stored between kernels.  So the squares themselves
are float32 here (``(y*y).float()`` is 90000 at y = 300), but their mean, cast to float16, overflows; and a
mean or variance below 2**-14 that is stored between kernels becomes 0.  The gradients' rules
(``RECIPROCAL``: -g*r*r) then overflow on the zero or tiny variance.

Exact values: forwards by exact_gn (rationals, Decimal square root); gradients by mpmath at 50 digits from the
closed-form first derivative dx = r (dy - mean(dy) - xhat mean(dy xhat)) (one group, no affine), the second
order by mpmath.diff of that closed form.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
from typing import Any

import pytest
from exact_gn import exact_gn_rows, worst_relative_error

if importlib.util.find_spec("tinygrad") is None:
    pytest.skip("tinygrad is not installed", allow_module_level=True)

mpmath = pytest.importorskip("mpmath")

# One group of a (1, C) input, no affine; op: forward (y), backward (dx for dy), second (the gradient of
# sum(dx * ggi) with respect to dy and x, as torch.autograd.grad of a gradient gives).
CALL = """
import json, sys
import numpy as np
from tinygrad import Device, Tensor, dtypes, nn
spec = json.loads(sys.argv[1])
dt = getattr(dtypes, spec["dtype"])
def t(name):
    return Tensor(np.array([spec[name]], np.float16), dtype=dt)
x = t("x")
y = nn.GroupNorm(1, x.shape[1], eps=spec["eps"], affine=False)(x)
out = {"device": Device.DEFAULT, "dtype": str(y.dtype)}
if spec["op"] == "forward":
    out["y"] = y.numpy().tolist()[0]
else:
    dy = t("dy")
    (dx,) = y.gradient(x, gradient=dy)
    if spec["op"] == "backward":
        out["dx"] = dx.numpy().tolist()[0]
    else:
        ggo, gx = (dx * t("ggi")).sum().gradient(dy, x)
        out["ggo"], out["gx"] = ggo.numpy().tolist()[0], gx.numpy().tolist()[0]
print(json.dumps(out))
"""


def _tinygrad(op: str, **spec: Any) -> dict[str, Any]:
    env = dict(os.environ, DEV="PYTHON")
    payload = json.dumps({"op": op, "dtype": "float16", **spec})
    done = subprocess.run(
        [sys.executable, "-c", CALL, payload],
        env=env, capture_output=True, text=True, timeout=300, check=True,
    )
    out = json.loads(done.stdout.strip().splitlines()[-1])  # json writes and reads NaN and inf as they are
    assert out["device"] == "PYTHON" and out["dtype"] == "dtypes.half", out
    return out


def _exact_dx(xs: list[Any], dys: list[Any], eps: float) -> list[Any]:
    """dx of one group without affine, in mpmath (the current precision)."""
    m = len(xs)
    mean = mpmath.fsum(xs) / m
    var = mpmath.fsum((x - mean) ** 2 for x in xs) / m
    r = 1 / mpmath.sqrt(var + mpmath.mpf(eps))
    xhat = [(x - mean) * r for x in xs]
    mdy = mpmath.fsum(dys) / m
    mdyx = mpmath.fsum(d * h for d, h in zip(dys, xhat, strict=True)) / m
    return [r * (d - mdy - h * mdyx) for d, h in zip(dys, xhat, strict=True)]


def _mp(values: list[float]) -> list[Any]:
    return [mpmath.mpf(v) for v in values]


def test_float16_small_variance_forward_wrong() -> None:
    """x = 2**-6 * [0.125732421875, -0.132080078125] float16 (shape (1, 2)), G = 1, eps = 1e-5 / 4**6.

    The checker's scaling_identity counterexample, scaled (`gn-spec check tinygrad.nn.GroupNorm --dtype
    float16 --profile quick --seed 0`).  Measured (tinygrad 0.14.0, DEV=PYTHON, Python 3.11): [0.9756,
    -1.0244]; exact: [0.99970, -0.99970].  The mean, -4.96e-5, is a float16 subnormal and is flushed to 0, so
    x itself is normalized; the error, 0.024, is 50 float16 ulps of 1.
    """
    x = [2**-6 * 0.125732421875, 2**-6 * -0.132080078125]
    eps = 1e-5 / 4**6
    got = _tinygrad("forward", x=x, eps=eps)["y"]
    exact = exact_gn_rows([x], 1, eps)
    assert abs(float(exact[0][0]) - 0.99970) < 1e-5
    assert worst_relative_error([got], exact) > 0.02  # float16's u is 2**-11 = 4.9e-4


def test_float16_variance_overflows() -> None:
    """x = [-300, 300] float16, G = 1, eps = 1e-5: the variance 90000 is above float16's 65504, so the
    float16 variance is inf and the output [-0, 0]; exact: [-1, 1] to 1e-10.  (Issue 12 put this down to
    squares formed in float16; on this device they are float32 and it is their mean, cast back to float16,
    that overflows.  The checker's quick runs did not reach |x - mu| >= 256.)"""
    got = _tinygrad("forward", x=[-300.0, 300.0], eps=1e-5)["y"]
    exact = exact_gn_rows([[-300.0, 300.0]], 1, 1e-5)
    assert got == [0.0, 0.0]
    assert all(abs(abs(float(v)) - 1) < 1e-10 for v in exact[0])


def test_float16_backward_nan_where_finite() -> None:
    """x = [-9.626150131225586e-05, -0.0005240440368652344] float16 (shape (1, 2)), G = 1, eps = 1e-10,
    dy = [-0.184326171875, 0.274658203125]: the checker's backward_agreement counterexample (there with a
    bias, which does not enter dx).

    Measured: dx = [nan, nan]; exact: [-2.3376, 2.3376] (var = 4.6e-8 and eps = 1e-10 are both far below
    float16's smallest normal, 6.1e-5: held in float16 they vanish and the reciprocal's gradient overflows).
    """
    x, dy, eps = [-9.626150131225586e-05, -0.0005240440368652344], [-0.184326171875, 0.274658203125], 1e-10
    got = _tinygrad("backward", x=x, dy=dy, eps=eps)["dx"]
    with mpmath.workdps(50):
        exact = _exact_dx(_mp(x), _mp(dy), eps)
    assert all(math.isnan(v) for v in got)
    assert abs(float(exact[0]) + 2.33758) < 1e-4 and abs(float(exact[1]) - 2.33758) < 1e-4


def test_float16_second_order_nan_where_finite() -> None:
    """x = [-5.049705505371094e-4, 2.44903564453125e-3] float16 (shape (1, 2)), G = 1, eps = 1e-5,
    dy = [-0.623046875, 0.04132080078125], cotangent of dx ggi = [-2.32421875, -0.21875]: the checker's
    second_order_agreement counterexample.

    Measured: the gradient of sum(dx * ggi) with respect to x is [nan, nan]; exact: about [29918.8,
    -29918.8], inside float16's range.  var + eps = 1.2e-5, so r = 286 and the reciprocal's gradient
    -g*r*r (8.2e4) overflows float16.
    """
    x = [-5.049705505371094e-4, 2.44903564453125e-3]
    dy, ggi, eps = [-0.623046875, 0.04132080078125], [-2.32421875, -0.21875], 1e-5
    got = _tinygrad("second", x=x, dy=dy, ggi=ggi, eps=eps)["gx"]
    with mpmath.workdps(50):
        def contracted(x0: Any, x1: Any) -> Any:
            dx = _exact_dx([x0, x1], _mp(dy), eps)
            return mpmath.fsum(d * g for d, g in zip(dx, _mp(ggi), strict=True))

        exact = [mpmath.diff(contracted, tuple(_mp(x)), order) for order in ((1, 0), (0, 1))]
    assert all(math.isnan(v) for v in got)
    assert all(math.isfinite(float(v)) and abs(float(v)) < 65504 for v in exact)
    assert abs(abs(float(exact[0])) - 29918.8) < 1
