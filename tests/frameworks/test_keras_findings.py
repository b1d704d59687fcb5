"""keras.layers.GroupNormalization on its backends, against exact rational arithmetic (no gn_spec code).

Keras picks its backend once per process (KERAS_BACKEND), so each call runs in a fresh interpreter. The layer
computes in float32 (it upcasts float16), takes mean and variance from ``ops.moments`` and returns the fused
form x * inv + (-mean * inv + beta). ``ops.moments`` on the torch and numpy backends is the one-pass
E[x^2] - E[x]^2 with no clamp, so a cancelled variance below -epsilon gives NaN; on jax it is jnp.var (two
passes). (The fused output loses digits when |mean|/std is large, e.g. 2.5e-2 at x = 1e6 + [0, 1, 2, 3], but
that is 0.19 of SPEC section 3's bound, which allows for the input's own rounding at that conditioning: not a
finding.)
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from exact_gn import exact_gn_rows, worst_relative_error

# keras itself is not imported here: without KERAS_BACKEND its import needs tensorflow
if importlib.util.find_spec("keras") is None:
    pytest.skip("keras is not installed", allow_module_level=True)

CALL = """
import json, sys
import numpy as np, keras
x = np.array(json.loads(sys.argv[1]), np.float32)
y = keras.layers.GroupNormalization(groups=1, epsilon=float(sys.argv[2]))(x)
y = y.detach().numpy() if hasattr(y, "detach") else np.asarray(y)
print(json.dumps([[float(v) for v in row] for row in y]))
"""


def _keras(backend: str, x: list[list[float]], eps: float) -> list[list[float]]:
    if importlib.util.find_spec(backend) is None:
        pytest.skip(f"{backend} is not installed")
    env = dict(os.environ, KERAS_BACKEND=backend)
    command = [sys.executable, "-c", CALL, json.dumps(x), repr(eps)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])  # json writes and reads NaN as NaN


# four float32 values within 3 ulp of 100 (float32 spacing is 2**-17 just below 100, 2**-16 above)
NEAR_100 = [[99.9999771118164, 99.99998474121094, 100.00001525878906, 100.0000228881836]]


@pytest.mark.parametrize("backend", ["torch", "numpy"])
def test_one_pass_moments_nan_where_finite(backend: str) -> None:
    """x = NEAR_100 float32, shape (1, 4), groups = 1, epsilon = 1e-3 (the layer's default).

    Measured (keras 3.15.1, torch 2.13.0 / numpy 2.4.6 backends): [nan, nan, nan, nan]; exact: [-7.237878e-4,
    -4.825252e-4, 4.825252e-4, 7.237878e-4] (variance 3.6e-10, |mean|/std 5e6, so the result is nearly
    (x - mean) / sqrt(1e-3)); the computed variance is below -1e-3. The jax backend (two-pass jnp.var)
    returns finite values on the same call.
    """
    exact = exact_gn_rows(NEAR_100, 1, 1e-3)
    got = (_keras(backend, NEAR_100, 1e-3))
    assert all(np.isnan(got[0]))
    assert all(abs(float(v)) < 1e-3 for v in exact[0])
    assert all(np.isfinite((_keras("jax", NEAR_100, 1e-3))[0]))


CALL64 = """
import json, sys
if sys.argv[2] == "jax":
    import jax
    jax.config.update("jax_enable_x64", True)  # JAX's float64 needs it; without it jnp makes float32
import numpy as np, keras
x = np.array(json.loads(sys.argv[1]), np.float64)
y = keras.layers.GroupNormalization(groups=1, epsilon=1e-3, dtype="float64")(x)
y = y.detach().cpu().numpy() if hasattr(y, "detach") else np.asarray(y)
print(json.dumps({"dtype": str(y.dtype), "y": [[float(v) for v in row] for row in y]}))
"""


@pytest.mark.parametrize("backend", ["jax", "torch", "numpy"])
def test_float64_policy_computes_in_float32(backend: str) -> None:
    """x = [[0.1, 0.2, 0.7, 1.3]] float64, groups = 1, epsilon = 1e-3, the layer's dtype policy float64.

    Measured (keras 3.15.1; jax 0.10.2 with jax_enable_x64, torch 2.13.0, numpy backends): the output is
    float64 but [-0.995050847530365, -0.7855664491653442, 0.26185548305511475, 1.5187616348266602] (jax;
    torch and numpy: -0.9950509667396545, ...), float32 numbers; exact: [-0.99505084, -0.78556645,
    0.26185548, 1.51876180] to 8 digits. The worst error is 9e-8 to 1.1e-7 of the largest value, about
    10^9 float64 ulps. The cause: the layer computes in backend.result_type(x.dtype, "float32"), and Keras'
    result_type maps float64 to float32 on every backend but TensorFlow (BIT64_TO_BIT32_DTYPE), so a float64
    layer normalizes in float32 and casts the result back.
    """
    if importlib.util.find_spec(backend) is None:
        pytest.skip(f"{backend} is not installed")
    x = [[0.1, 0.2, 0.7, 1.3]]
    env = dict(os.environ, KERAS_BACKEND=backend)
    command = [sys.executable, "-c", CALL64, json.dumps(x), backend]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300, check=True)
    got = json.loads(done.stdout.strip().splitlines()[-1])
    assert got["dtype"] == "float64"
    err = worst_relative_error(got["y"], exact_gn_rows(x, 1, 1e-3))
    assert err > 1e-9  # float64 arithmetic would be within ~1e-15
    assert all(float(np.float32(v)) == v for v in got["y"][0])  # every value is a float32 number
