"""The built-in target paddle.nn.functional.group_norm: its adapter
(gn_spec/checker/frameworks/paddle_target.py) on small fixed cases against exact values, its options and
registry entry, and one quick check end to end.

Exact values: the forward by rationals (exact_gn.py), the gradients by mpmath derivatives (exact_grads.py).
Paddle's backward is right only where a weight is given and the bias is small (test_paddle_findings.py), so
the values of the other gradients are compared with paddle's own direct call instead: what is tested there
is that the adapter passes paddle's answer through, in the layout it came from.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from exact_gn import exact_gn_rows
from exact_grads import exact_grads

from gn_spec.checker import builtins
from gn_spec.checker.adapters import Call
from gn_spec.checker.builtins import BY_NAME
from gn_spec.checker.options import UsageError

paddle = pytest.importorskip("paddle")
F = pytest.importorskip("paddle.nn.functional")

NAME = "paddle.nn.functional.group_norm"
TARGET = BY_NAME[NAME]
GROUPS, EPS = 2, 1e-5
RNG = np.random.default_rng(12)
X = RNG.standard_normal((2, 4, 3))  # (N, C, L): two groups of two channels
W, B = RNG.standard_normal(4), RNG.standard_normal(4)
DY = RNG.standard_normal((2, 4, 3))
FORMS = {"weight+bias": (True, True), "weight": (True, False), "bias": (False, True), "none": (False, False)}
TOLERANCE = {"float32": 2e-6, "float64": 1e-13}  # relative to the largest exact value: a few ulps


def _adapter(dtype: str, *options: str) -> Any:
    from gn_spec.checker.frameworks.paddle_target import PaddleAdapter

    typed = builtins.typed_options(TARGET, builtins.resolve_options(TARGET, list(options)))
    return PaddleAdapter(TARGET, dtype, "cpu", "contiguous", typed)


def _run(adapter: Any, op: str, dtype: str, **arrays: np.ndarray | None) -> dict[str, Any]:
    given = {k: np.asarray(v, dtype) for k, v in arrays.items() if v is not None}
    inputs = {k: adapter.native(k, a) for k, a in given.items()}
    return getattr(adapter, op)(Call(op, GROUPS, EPS, given), inputs)


def _exact_forward(x: np.ndarray, weight: np.ndarray | None, bias: np.ndarray | None) -> np.ndarray:
    rows = [[float(v) for v in sample.reshape(-1)] for sample in x]
    xhat = np.array([[float(v) for v in row] for row in exact_gn_rows(rows, GROUPS, EPS)]).reshape(x.shape)
    w = np.ones(x.shape[1]) if weight is None else weight
    b = np.zeros(x.shape[1]) if bias is None else bias
    return xhat * w[None, :, None] + b[None, :, None]


def _close(got: np.ndarray, exact: np.ndarray, dtype: str) -> None:
    scale = float(np.max(np.abs(exact)))
    assert got.shape == exact.shape
    assert float(np.max(np.abs(got - exact))) <= TOLERANCE[dtype] * scale, np.max(np.abs(got - exact))


@pytest.mark.parametrize("data_format", ["NCHW", "NHWC"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("form", FORMS)
def test_forward_is_exact_to_a_few_ulps(form: str, dtype: str, data_format: str) -> None:
    """The four affine forms, both layouts: y comes back (N, C, L) in the dtype, within a few ulps."""
    w, b = (W if FORMS[form][0] else None), (B if FORMS[form][1] else None)
    x = X.astype(dtype).astype(np.float64)
    out = _run(_adapter(dtype, f"data_format={data_format}"), "forward", dtype, x=x, weight=w, bias=b)
    assert set(out) == {"y"} and out["y"].dtype == np.dtype(dtype)
    ws = None if w is None else w.astype(dtype).astype(np.float64)
    bs = None if b is None else b.astype(dtype).astype(np.float64)
    _close(out["y"].astype(np.float64), _exact_forward(x, ws, bs), dtype)


@pytest.mark.parametrize("data_format", ["NCHW", "NHWC"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_backward_with_weight_and_bias_is_exact(dtype: str, data_format: str) -> None:
    """grad_input, grad_weight and grad_bias against mpmath's derivatives (the form paddle gets right)."""
    x, dy, w, b = (a.astype(dtype).astype(np.float64) for a in (X, DY, W, B))
    out = _run(_adapter(dtype, f"data_format={data_format}"), "backward", dtype,
               x=x, weight=w, bias=b, grad_output=dy)
    assert set(out) == {"y", "grad_input", "grad_weight", "grad_bias"}
    assert all(v.dtype == np.dtype(dtype) for v in out.values())
    gx, gw, gb = exact_grads(x, dy, GROUPS, w, EPS)
    _close(out["grad_input"].astype(np.float64), gx, dtype)
    _close(out["grad_weight"].astype(np.float64), gw, dtype)
    _close(out["grad_bias"].astype(np.float64), gb, dtype)


def _direct(x: np.ndarray, dy: np.ndarray, w: np.ndarray | None, b: np.ndarray | None) -> list[np.ndarray]:
    """paddle.grad of group_norm called directly, NCHW: [grad_x, grad_weight?, grad_bias?]."""
    leaves = [paddle.to_tensor(x, stop_gradient=False)]
    wt = None if w is None else paddle.to_tensor(w, stop_gradient=False)
    bt = None if b is None else paddle.to_tensor(b, stop_gradient=False)
    leaves += [t for t in (wt, bt) if t is not None]
    y = F.group_norm(leaves[0], num_groups=GROUPS, epsilon=EPS, weight=wt, bias=bt)
    return [g.numpy() for g in paddle.grad([y], leaves, grad_outputs=[paddle.to_tensor(dy)])]


@pytest.mark.parametrize("data_format", ["NCHW", "NHWC"])
@pytest.mark.parametrize("form", FORMS)
def test_backward_passes_paddles_gradients_through(form: str, data_format: str) -> None:
    """Every affine form, both layouts: the gradients named as the case has them, equal to paddle's own
    NCHW call (float64; the forms without a weight are wrong in paddle itself: see the findings)."""
    w, b = (W if FORMS[form][0] else None), (B if FORMS[form][1] else None)
    out = _run(_adapter("float64", f"data_format={data_format}"), "backward", "float64",
               x=X, weight=w, bias=b, grad_output=DY)
    names = ["grad_input"] + ["grad_weight"] * (w is not None) + ["grad_bias"] * (b is not None)
    assert set(out) == {"y", *names}
    for name, expected in zip(names, _direct(X, DY, w, b), strict=True):
        np.testing.assert_allclose(out[name], expected, rtol=1e-14, atol=1e-14, err_msg=name)


@pytest.mark.parametrize("data_format", ["NCHW", "NHWC"])
def test_second_order_raises_paddles_own_error(data_format: str) -> None:
    """The double backward builds the first order with create_graph=True, which paddle 3.3.1 refuses: the
    error is paddle's, raised in the backward stage, and the registry lists no second order."""
    adapter = _adapter("float64", f"data_format={data_format}")
    with pytest.raises(RuntimeError, match="group_norm_grad doesn't have any grad op"):
        _run(adapter, "double_backward", "float64", x=X, weight=W, bias=B, grad_output=DY,
             grad_grad_input=DY, grad_grad_weight=W, grad_grad_bias=B)
    assert adapter.stage.name == "backward"
    assert "second order" not in TARGET.orders and "group_norm_grad" in TARGET.no_gradients


def test_options_are_parsed_and_noted() -> None:
    assert builtins.resolve_options(TARGET, []) == ("data_format=NCHW",)
    assert builtins.resolve_options(TARGET, ["data_format=NHWC"]) == ("data_format=NHWC",)
    with pytest.raises(UsageError, match="data_format=NCL: expected one of NCHW, NHWC"):
        builtins.resolve_options(TARGET, ["data_format=NCL"])
    assert not any("channels moved" in n for n in _adapter("float32").notes)
    assert any("channels moved last" in n for n in _adapter("float32", "data_format=NHWC").notes)


def test_half_precision_is_refused_with_paddles_reason() -> None:
    for dtype in ("float16", "bfloat16"):
        with pytest.raises(UsageError, match="registered for float32 and float64 only"):
            builtins.check_runnable(TARGET, dtype, "cpu", "contiguous", ("data_format=NCHW",))
    row = {r["name"]: r for r in builtins.listing()}[NAME]
    assert row["dtypes"].startswith("float32, float64 (")
    assert row["supports"].startswith("forward, backward (no second order: ")


@pytest.mark.parametrize("data_format", ["NCHW", "NHWC"])
def test_check_quick_end_to_end(data_format: str, tmp_path: Path) -> None:
    """`gn-spec check paddle.nn.functional.group_norm --profile quick`: does not conform (exit 1), forward and
    backward judged, the second order not applicable, and the backward's failure diagnosed as paddle's."""
    out = tmp_path / "out.json"
    done = subprocess.run(
        [sys.executable, "-m", "gn_spec.cli", "check", NAME, "--target-option", f"data_format={data_format}",
         "--profile", "quick", "--seed", "0", "--quiet", "--json", out],
        capture_output=True, text=True, cwd=tmp_path, timeout=900, check=False,
    )
    assert done.returncode == 1, done.stdout[-2000:] + done.stderr[-2000:]
    report = json.loads(out.read_text())
    assert report["checked"] == ["forward", "backward"]
    props = {p["name"]: p for p in report["properties"]}
    assert props["forward_agreement"]["cases"] > 0 and props["backward_agreement"]["cases"] > 0
    assert props["second_order_agreement"]["status"] == "not applicable"
    kinds = {p["kind"] for p in report["properties"] if p["status"] == "failed"}
    assert "wrong shape or dtype" not in kinds and "crashed" not in kinds, kinds
    assert "mean term of grad_input missing" in " ".join(props["backward_agreement"]["diagnosis"])
