"""The Flax, Equinox and Keras (jax backend) adapters trace eps (one compiled program serves every eps)
instead of compiling it in: the outputs, gradients and second-order results must be those of the program
with eps a constant, bit for bit, at every dtype, or the speed-up would change what is judged.  Each dtype
runs in its own interpreter (float64 needs JAX's 64-bit mode, which is set once per process)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import pytest

SCRIPT = r"""
import json, sys
import numpy as np
from gn_spec.checker.adapters import Call
from gn_spec.checker.builtins import BY_NAME
from gn_spec.checker.frameworks import jax_targets
from gn_spec.strategies import EPS_VALUES

name, dtype = sys.argv[1], sys.argv[2]
if name.startswith("keras"):
    from gn_spec.checker.frameworks import keras_target

    options = {"backend": "jax"}
    traced = keras_target.KerasAdapter(BY_NAME[name], dtype, "cpu", "contiguous", options)

    class Constant(type(traced)):
        static = ("num_groups", "eps")

    constant = Constant(traced.layers.keras, [], BY_NAME[name], dtype, options)
else:
    cls = {"flax.linen.GroupNorm": jax_targets.FlaxLinenAdapter,
           "flax.nnx.GroupNorm": jax_targets.FlaxNnxAdapter,
           "equinox.nn.GroupNorm": jax_targets.EquinoxAdapter}[name]

    class Constant(cls):
        static = ("num_groups", "eps")

    traced = cls(BY_NAME[name], dtype, "cpu", "contiguous", {"use_fast_variance": True})
    constant = Constant(BY_NAME[name], dtype, "cpu", "contiguous", {"use_fast_variance": True})
assert "eps" not in traced.static and "eps a traced argument" in " ".join(traced.notes)
container = np.float64 if dtype == "float64" else np.float32
rng = np.random.default_rng(1)
compared = differences = 0
for trial in range(2):
    g, cpg = int(rng.integers(1, 4)), int(rng.integers(1, 4))
    shape = (int(rng.integers(1, 3)), g * cpg, int(rng.integers(1, 6)))
    scale, offset = 10.0 ** rng.integers(-2, 3), 10.0 ** rng.integers(0, 4)
    def arr(*s, off=0.0):
        a = (rng.standard_normal(s) * scale + off).astype(container)
        return a.astype(np.float16).astype(container) if dtype == "float16" else a
    arrays = {"x": arr(*shape, off=offset), "weight": arr(shape[1]), "bias": arr(shape[1]),
              "grad_output": arr(*shape), "grad_grad_input": arr(*shape), "grad_grad_weight": arr(shape[1])}
    if dtype == "bfloat16":
        import ml_dtypes
        arrays = {k: v.astype(ml_dtypes.bfloat16).astype(np.float32) for k, v in arrays.items()}
    for eps in EPS_VALUES:
        for op in ("forward", "backward", "double_backward"):
            call = Call(op, g, eps, arrays)
            a = getattr(traced, op)(call, {k: traced.native(k, v) for k, v in arrays.items()})
            b = getattr(constant, op)(call, {k: constant.native(k, v) for k, v in arrays.items()})
            for key in a:
                compared += 1
                x, y = np.asarray(a[key].array if hasattr(a[key], "array") else a[key]), np.asarray(
                    b[key].array if hasattr(b[key], "array") else b[key])
                same = x.dtype == y.dtype and np.array_equal(x, y, equal_nan=True) and np.array_equal(
                    np.signbit(x), np.signbit(y))
                differences += not same
print(json.dumps({"compared": compared, "differences": differences}))
"""


@pytest.mark.parametrize(
    "name, dtype",
    [("flax.linen.GroupNorm", d) for d in ("float16", "bfloat16", "float32", "float64")]
    + [("flax.nnx.GroupNorm", "float32")]
    + [("keras.layers.GroupNormalization", d) for d in ("float16", "bfloat16", "float32", "float64")]
    + [("equinox.nn.GroupNorm", d) for d in ("float16", "bfloat16", "float32", "float64")],
)
def test_traced_eps_gives_the_constant_eps_results_bit_for_bit(name: str, dtype: str) -> None:
    framework = name.split(".")[0]
    if importlib.util.find_spec(framework) is None or importlib.util.find_spec("jax") is None:
        pytest.skip(f"{framework} (with jax) is not installed")
    done = subprocess.run([sys.executable, "-c", SCRIPT, name, dtype], capture_output=True, text=True,
                          timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["compared"] >= 2 * 6 * 5 and result["differences"] == 0, result
