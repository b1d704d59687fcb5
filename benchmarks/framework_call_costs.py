"""What a framework GroupNorm costs per call: import, first call (tracing/compilation), a repeat call.

Each framework runs in its own interpreter (keras fixes its backend at import), so the import time is real.
The onnxruntime, onnx.reference and openvino calls build their session / compiled model inside the call, as
a checker meeting a new shape would.
For jax it also times forward + vjp of flax.linen.GroupNorm over 20 different small shapes three ways: under
jax.jit (one compilation per new shape), eagerly (op-by-op dispatch, each primitive compiled once and cached),
and inside jax.disable_jit(). Frameworks that are not installed are reported as absent.

    python benchmarks/framework_call_costs.py
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

PROBES: dict[str, tuple[dict[str, str], str]] = {
    "flax.linen": ({}, """
import flax.linen as nn, jax, numpy as np
m = nn.GroupNorm(num_groups=2); x = np.ones((2, 4, 6), np.float32)
p = m.init(jax.random.PRNGKey(0), x)
CALL = lambda: np.asarray(m.apply(p, x))
"""),
    "flax.nnx": ({}, """
from flax import nnx; import numpy as np, jax.numpy as jnp
m = nnx.GroupNorm(6, num_groups=2, rngs=nnx.Rngs(0)); x = jnp.ones((2, 4, 6), jnp.float32)
CALL = lambda: np.asarray(m(x))
"""),
    "equinox": ({}, """
import equinox as eqx, numpy as np, jax.numpy as jnp
m = eqx.nn.GroupNorm(2, 6); x = jnp.ones((6, 4), jnp.float32)
CALL = lambda: np.asarray(m(x))
"""),
    **{f"keras-{b}": ({"KERAS_BACKEND": b}, """
import keras, numpy as np
m = keras.layers.GroupNormalization(groups=2); x = np.ones((2, 4, 6), np.float32)
CALL = lambda: keras.ops.convert_to_numpy(m(x))
""") for b in ("jax", "torch", "numpy", "tensorflow")},
    "onnxruntime": ({}, """
import numpy as np, onnxruntime as ort
from onnx import helper as h, TensorProto as T
node = h.make_node("GroupNormalization", ["x", "s", "b"], ["y"], num_groups=2)
g = h.make_graph([node], "g", [h.make_tensor_value_info(n, T.FLOAT, None) for n in "xsb"],
                 [h.make_tensor_value_info("y", T.FLOAT, None)])
mdl = h.make_model(g, opset_imports=[h.make_opsetid("", 21)], ir_version=10).SerializeToString()
f = {"x": np.ones((2, 6, 4), np.float32), "s": np.ones(6, np.float32), "b": np.zeros(6, np.float32)}
CALL = lambda: ort.InferenceSession(mdl, providers=["CPUExecutionProvider"]).run(None, f)[0]
"""),
    "onnx.reference": ({}, """
import numpy as np
from onnx import helper as h, TensorProto as T
from onnx.reference import ReferenceEvaluator
node = h.make_node("GroupNormalization", ["x", "s", "b"], ["y"], num_groups=2)
g = h.make_graph([node], "g", [h.make_tensor_value_info(n, T.FLOAT, None) for n in "xsb"],
                 [h.make_tensor_value_info("y", T.FLOAT, None)])
mdl = h.make_model(g, opset_imports=[h.make_opsetid("", 21)], ir_version=10)
f = {"x": np.ones((2, 6, 4), np.float32), "s": np.ones(6, np.float32), "b": np.zeros(6, np.float32)}
CALL = lambda: ReferenceEvaluator(mdl).run(None, f)[0]
"""),
    "openvino": ({}, """
import numpy as np, openvino as ov, openvino.opset12 as ops
def CALL():
    p = ops.parameter([2, 6, 4], np.float32)
    w, b = ops.constant(np.ones(6, np.float32)), ops.constant(np.zeros(6, np.float32))
    y = ops.group_normalization(p, w, b, 2, 1e-5)
    return ov.compile_model(ov.Model([y], [p]), "CPU")(np.ones((2, 6, 4), np.float32))[0]
"""),
    "paddle": ({}, """
import numpy as np, paddle
m = paddle.nn.GroupNorm(2, 6); x = paddle.ones([2, 6, 4])
CALL = lambda: m(x).numpy()
"""),
    "mlx": ({}, """
import numpy as np, mlx.core as mx, mlx.nn as mnn
m = mnn.GroupNorm(2, 6); x = mx.ones((2, 4, 6))
CALL = lambda: np.array(m(x))
"""),
    "tinygrad (DEV=PYTHON)": ({"DEV": "PYTHON"}, """
from tinygrad import Tensor, nn
m = nn.GroupNorm(2, 6)
CALL = lambda: m(Tensor.ones(2, 6, 4)).numpy()
"""),
}

TIMER = """
import json, time
t0 = time.perf_counter()
{setup}
t1 = time.perf_counter(); CALL(); t2 = time.perf_counter(); CALL(); t3 = time.perf_counter()
print(json.dumps({{"import_setup_s": t1 - t0, "first_call_s": t2 - t1, "repeat_call_s": t3 - t2}}))
"""

JAX_SHAPES = """
import json, time
import numpy as np, jax, jax.numpy as jnp, flax.linen as nn
m = nn.GroupNorm(num_groups=2)
shapes = [(1 + i % 3, 2 + i % 4, 2 * (1 + i // 4)) for i in range(20)]  # 20 distinct (N, S, C), C even
params = {s: m.init(jax.random.PRNGKey(0), jnp.ones(s)) for s in shapes}
def fwd_vjp(p, x):
    y, back = jax.vjp(lambda x: m.apply(p, x), x)
    return y, back(jnp.ones_like(y))
jitted = jax.jit(fwd_vjp)
def sweep(f, ctx=None):
    t = time.perf_counter(); per = []
    for s in shapes:
        u = time.perf_counter()
        x = jnp.asarray(np.random.default_rng(0).standard_normal(s), jnp.float32)
        if ctx is None:
            jax.block_until_ready(f(params[s], x))
        else:
            with ctx():
                jax.block_until_ready(f(params[s], x))
        per.append(time.perf_counter() - u)
    return {"total_s": time.perf_counter() - t, "first_s": per[0], "median_s": sorted(per)[10]}
out = {"jit": sweep(jitted), "jit (second sweep, cached)": sweep(jitted), "no jit (eager)": sweep(fwd_vjp),
       "jax.disable_jit()": sweep(fwd_vjp, jax.disable_jit)}
print(json.dumps(out))
"""


def _run(code: str, env: dict[str, str]) -> dict[str, object] | str:
    done = subprocess.run([sys.executable, "-c", code], env=dict(os.environ, **env), capture_output=True,
                          text=True, timeout=600)
    if done.returncode != 0:
        return done.stderr.strip().splitlines()[-1][:70] if done.stderr.strip() else f"rc {done.returncode}"
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    print(f"{'framework':24} {'import+setup s':>15} {'first call s':>13} {'repeat call s':>14}")
    for name, (env, setup) in PROBES.items():
        r = _run(TIMER.format(setup=setup), env)
        if isinstance(r, str):
            print(f"{name:24} absent or failing: {r}")
        else:
            cols = f"{r['import_setup_s']:15.3f} {r['first_call_s']:13.4f} {r['repeat_call_s']:14.5f}"
            print(f"{name:24} {cols}")
    r = _run(JAX_SHAPES, {})
    print("\nflax.linen.GroupNorm forward + vjp over 20 distinct shapes")
    if isinstance(r, str):
        print(f"  absent or failing: {r}")
        return
    print(f"  {'mode':28} {'total s':>9} {'first s':>9} {'median s':>9}")
    for mode, v in r.items():
        assert isinstance(v, dict)
        print(f"  {mode:28} {v['total_s']:9.3f} {v['first_s']:9.4f} {v['median_s']:9.5f}")


if __name__ == "__main__":
    main()
