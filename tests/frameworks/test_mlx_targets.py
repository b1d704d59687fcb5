"""The mlx.nn.GroupNorm adapter (gn_spec/checker/frameworks/mlx_target.py) on small fixed cases.

The adapter is driven in this process (MLX has no process-wide mode to switch) on x of shape (2, 6, 3, 2),
G = 3, for the four affine forms and all three orders.  Expected values are gn_spec's float64 reference (the
adapter is under test here, not the reference): for pytorch_compatible=true on the case as it is, for the
default pytorch_compatible=false on the channels reordered so that MLX's groups (channel c in group c mod G)
become contiguous blocks, and the results ordered back.  The tolerances are loose sanity bounds (a wrong
layout, a dropped weight or a wrong gradient is off by O(1)), not the checker's error model.  Then one
`gn-spec check mlx.nn.GroupNorm --profile quick` per option value, end to end.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from typing import Any

import numpy as np
import pytest

import gn_spec
from gn_spec.checker.adapters import Call
from gn_spec.checker.builtins import BY_NAME, resolve_options, typed_options
from gn_spec.checker.dtypes import CONTAINER, round_to

pytest.importorskip("mlx.core")

from gn_spec.checker.frameworks.mlx_target import MlxAdapter  # noqa: E402

NAME = "mlx.nn.GroupNorm"
SHAPE, G, C, EPS = (2, 6, 3, 2), 3, 6, 1e-5
FORMS = {"weight+bias": ("weight", "bias"), "weight": ("weight",), "bias": ("bias",), "none": ()}
NAMES = {
    "forward": ("x",),
    "backward": ("x", "grad_output"),
    "double_backward": ("x", "grad_output", "grad_grad_input", "grad_grad_weight", "grad_grad_bias"),
}
#: The channel order that makes MLX's default groups contiguous: position k holds channel ORDER[k].
ORDER = np.array([c for g in range(G) for c in range(g, C, G)])


def _adapter(dtype: str, compatible: bool) -> MlxAdapter:
    target = BY_NAME[NAME]
    options = typed_options(target, resolve_options(target, [f"pytorch_compatible={compatible}"]))
    return MlxAdapter(target, dtype, "cpu", "contiguous", options)


def _data(dtype: str) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    shapes = {"x": SHAPE, "weight": (C,), "bias": (C,), "grad_output": SHAPE, "grad_grad_input": SHAPE,
              "grad_grad_weight": (C,), "grad_grad_bias": (C,)}
    return {k: round_to(rng.standard_normal(s), dtype) for k, s in shapes.items()}


def _reorder(a: np.ndarray | None) -> np.ndarray | None:
    return None if a is None else a[:, ORDER] if a.ndim > 1 else a[ORDER]


def _order_back(a: np.ndarray) -> np.ndarray:
    out = np.empty_like(a)
    if a.ndim > 1:
        out[:, ORDER] = a
    else:
        out[ORDER] = a
    return out


def _expected(d: dict[str, Any], op: str, compatible: bool) -> dict[str, np.ndarray]:
    """The reference's results for the inputs ``d`` (present names only), in MLX's grouping."""
    p = d if compatible else {k: _reorder(v) for k, v in d.items()}
    w, b = p.get("weight"), p.get("bias")
    if op == "forward":
        out = {"y": gn_spec.group_norm(p["x"], G, w, b, EPS)}
    elif op == "backward":
        gx, gw, gb = gn_spec.group_norm_backward(p["grad_output"], p["x"], G, w, EPS)
        out = {"y": gn_spec.group_norm(p["x"], G, w, b, EPS), "grad_input": gx}
        if w is not None:
            out["grad_weight"] = gw
        if b is not None:
            out["grad_bias"] = gb
    else:
        ggo, gx, gw = gn_spec.group_norm_double_backward(
            p["grad_grad_input"], p.get("grad_grad_weight"), p.get("grad_grad_bias"), p["grad_output"],
            p["x"], G, w, EPS,
        )
        out = {"grad_grad_output": ggo, "grad_x": gx}
        if w is not None:
            out["grad_weight"] = gw
    return out if compatible else {k: _order_back(v) for k, v in out.items()}


def _plain(value: Any) -> tuple[np.ndarray, str]:
    if hasattr(value, "array"):  # WireArray (bfloat16)
        return np.asarray(value.array, np.float64), str(value.dtype)
    a = np.asarray(value)
    return a.astype(np.float64), str(a.dtype)


@pytest.mark.parametrize("compatible", [False, True])
@pytest.mark.parametrize(("dtype", "tolerance"), [("float32", 1e-4), ("bfloat16", 0.1), ("float16", 0.02)])
def test_adapter_agrees_with_reference(compatible: bool, dtype: str, tolerance: float) -> None:
    """Layout round trip, the four affine forms, all three orders, in the option's grouping; every output
    comes back in the dtype under test with the expected shape."""
    adapter = _adapter(dtype, compatible)
    data = _data(dtype)
    for form, present in FORMS.items():
        for op, names in NAMES.items():
            arrays = {n: data[n] for n in names if not n.startswith("grad_grad_w") or "weight" in present}
            arrays = {n: a for n, a in arrays.items() if n != "grad_grad_bias" or "bias" in present}
            arrays.update({n: data[n] for n in present})
            inputs = {n: adapter.native(n, np.array(a, CONTAINER[dtype])) for n, a in arrays.items()}
            got = getattr(adapter, op)(Call(op, G, EPS, arrays), inputs)
            wanted = _expected(arrays, op, compatible)
            assert set(got) == set(wanted), (form, op, sorted(got))
            for key, value in got.items():
                a, carried = _plain(value)
                assert carried == dtype, (form, op, key, carried)
                assert a.shape == wanted[key].shape, (form, op, key, a.shape)
                err = float(np.max(np.abs(a - wanted[key])))
                assert err < tolerance, (form, op, key, err)


def test_default_grouping_is_not_contiguous() -> None:
    """The default option's forward is O(1) away from contiguous-block GN on the same case: the reordering
    above is what makes it agree, so the test of it is not vacuous."""
    adapter = _adapter("float32", False)
    d = _data("float32")
    got = adapter.forward(Call("forward", G, EPS, {"x": d["x"]}), {"x": d["x"]})["y"]
    assert np.max(np.abs(np.asarray(got, np.float64) - gn_spec.group_norm(d["x"], G, None, None, EPS))) > 0.5


def test_float64_default_computes_in_float64() -> None:
    """pytorch_compatible=false at float64 is within 1e-12 on every order (the inputs reach MLX as float64:
    mx.array of a float64 numpy array without a dtype makes float32).  pytorch_compatible=true is not: it
    computes in float32 (test_mlx_findings.py)."""
    adapter = _adapter("float64", False)
    data = _data("float64")
    for op, names in NAMES.items():
        arrays = {n: data[n] for n in (*names, "weight", "bias")}
        got = getattr(adapter, op)(Call(op, G, EPS, arrays), dict(arrays))
        for key, wanted in _expected(arrays, op, False).items():
            a, carried = _plain(got[key])
            assert carried == "float64"
            assert float(np.max(np.abs(a - wanted))) < 1e-12, (op, key)


@pytest.mark.parametrize("compatible", ["false", "true"])
def test_check_quick_end_to_end(compatible: str, tmp_path: Any) -> None:
    """`gn-spec check mlx.nn.GroupNorm --profile quick`: a verdict, the agreement properties judged; the
    default option's forward failure is diagnosed as interleaved groups, the compatible one passes at
    float32."""
    if importlib.util.find_spec("mlx") is None:  # pragma: no cover - importorskip above
        pytest.skip("mlx is not installed")
    out = tmp_path / "out.json"
    done = subprocess.run(
        [sys.executable, "-m", "gn_spec.cli", "check", NAME, "--target-option",
         f"pytorch_compatible={compatible}", "--profile", "quick", "--seed", "0", "--json", out],
        capture_output=True, text=True, cwd=tmp_path, timeout=900, check=False,
    )
    assert done.returncode == (1 if compatible == "false" else 0), done.stdout[-3000:] + done.stderr[-2000:]
    report = json.loads(out.read_text())
    for name in ("forward_agreement", "backward_agreement", "second_order_agreement"):
        prop = next(p for p in report["properties"] if p["name"] == name)
        assert prop["cases"] > 0, prop
    if compatible == "false":
        assert "interleaved groups" in done.stdout
