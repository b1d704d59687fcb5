"""The JAX and Keras built-in targets' adapters (gn_spec/checker/frameworks/jax_targets.py, keras_target.py).

Each adapter runs in its own interpreter (adapter_probe.py): float64 switches JAX's 64-bit mode on for the
whole process and Keras fixes its backend at its first import.  The probe reports every output's shape, dtype
and largest difference from gn_spec's float64 reference on x of shape (2, 6, 3, 2), G = 3, for the four affine
forms; the tolerances are loose sanity bounds (a wrong layout, a dropped weight or a gradient of the wrong
quantity is off by O(1)), not the checker's error model.  Then one `gn-spec check NAME --profile quick` per
target, end to end.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from typing import Any

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))

#: (target, options, the distributions it needs)
JAX_TARGETS = [
    ("flax.linen.GroupNorm", ("use_fast_variance=false",), ("flax", "jax")),
    ("flax.nnx.GroupNorm", ("use_fast_variance=false",), ("flax", "jax")),
    ("equinox.nn.GroupNorm", (), ("equinox", "jax")),
]
KERAS = "keras.layers.GroupNormalization"
KERAS_TARGETS = [(KERAS, (f"backend={b}",), ("keras", b)) for b in ("jax", "torch", "numpy")]

SHAPE = [2, 6, 3, 2]
OUTPUTS = {
    "forward": lambda w, b: {"y"},
    "backward": lambda w, b: (
        {"y", "grad_input"} | ({"grad_weight"} if w else set()) | ({"grad_bias"} if b else set())
    ),
    "double_backward": lambda w, b: {"grad_grad_output", "grad_x"} | ({"grad_weight"} if w else set()),
}
FORMS = {"weight+bias": (True, True), "weight": (True, False), "bias": (False, True), "none": (False, False)}


def _need(modules: tuple[str, ...]) -> None:
    for m in modules:
        if importlib.util.find_spec(m) is None:
            pytest.skip(f"{m} is not installed")


_CACHE: dict[tuple[str, str, tuple[str, ...]], dict[str, Any]] = {}


def probe(target: str, dtype: str, options: tuple[str, ...]) -> dict[str, Any]:
    key = (target, dtype, options)
    if key not in _CACHE:
        command = [sys.executable, os.path.join(HERE, "adapter_probe.py"), target, dtype, *options]
        done = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
        assert done.returncode == 0, done.stderr[-3000:]
        _CACHE[key] = json.loads(done.stdout.strip().splitlines()[-1])
    return _CACHE[key]


def _check(result: dict[str, Any], dtype: str, tolerance: float, differentiates: bool) -> None:
    for form, (w, b) in FORMS.items():
        for op, expected in OUTPUTS.items():
            got = result[f"{form} {op}"]
            if not differentiates and op != "forward":
                assert "no autodiff" in got["unsupported"], got
                continue
            assert set(got) == expected(w, b), (form, op, sorted(got))
            for name, out in got.items():
                like_x = name not in ("grad_weight", "grad_bias")
                assert out["shape"] == (SHAPE if like_x else [6]), (form, op, name, out)  # layout came back
                assert out["dtype"] == dtype, (form, op, name, out)
                assert out["error"] is not None and out["error"] < tolerance, (form, op, name, out)


@pytest.mark.parametrize(("target", "options", "needs"), JAX_TARGETS + KERAS_TARGETS[:2])
def test_float32_agrees_with_reference(target: str, options: tuple[str, ...], needs: tuple[str, ...]) -> None:
    """Layout round trip, the four affine forms, all three orders, within 1e-4 (float32 on O(1) data)."""
    _need(needs)
    _check(probe(target, "float32", options), "float32", 1e-4, differentiates=True)


@pytest.mark.parametrize(("target", "options", "needs"), JAX_TARGETS)
def test_float64_computes_in_float64(target: str, options: tuple[str, ...], needs: tuple[str, ...]) -> None:
    """With 64-bit mode on, every output is float64 and within 1e-12: a float32 computation would be ~1e-7
    off (the Keras layer is: see test_keras_findings.py)."""
    _need(needs)
    result = probe(target, "float64", options)
    assert any("jax_enable_x64" in n for n in result["notes"]), result["notes"]
    _check(result, "float64", 1e-12, differentiates=True)


@pytest.mark.parametrize(("target", "options", "needs"), JAX_TARGETS)
def test_bfloat16_round_trip(target: str, options: tuple[str, ...], needs: tuple[str, ...]) -> None:
    """bfloat16 goes in as jnp.bfloat16 and comes back tagged bfloat16 (8 bits: within 0.1 on O(1) data)."""
    _need(needs)
    _check(probe(target, "bfloat16", options), "bfloat16", 0.1, differentiates=True)


def test_keras_numpy_backend_forward_only() -> None:
    """backend=numpy: the forward agrees, backward and double backward raise Unsupported saying why."""
    _need(("keras",))
    _check(probe(KERAS, "float32", ("backend=numpy",)), "float32", 1e-4, differentiates=False)


def test_keras_tensorflow_backend_is_a_usage_error(tmp_path: Any) -> None:
    """backend=tensorflow without TensorFlow installed: exit 2, naming what to install."""
    _need(("keras",))
    if importlib.util.find_spec("tensorflow") is not None:
        pytest.skip("tensorflow is installed here")
    done = subprocess.run(
        [sys.executable, "-m", "gn_spec.cli", "check", KERAS, "--target-option", "backend=tensorflow"],
        capture_output=True, text=True, cwd=tmp_path, timeout=120, check=False,
    )
    assert done.returncode == 2, done.stderr
    assert "needs tensorflow" in done.stderr
