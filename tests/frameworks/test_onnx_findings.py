"""ONNX GroupNormalization (opsets 18 and 21) on onnxruntime and onnx.reference, against exact arithmetic.

The operator's function body (``onnx.defs.get_schema('GroupNormalization', 21)``, context-dependent) computes
Var = ReduceMean(X*X) - Mean*Mean with no clamp, then Sqrt(Var + epsilon): when the subtraction cancels to
below -epsilon the square root is NaN although every exact value is finite. Opset 21 stashes in float32
(stash_type = 1); opset 18 computes in the input type and takes one scale and bias per group.
No gn_spec code is involved.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from exact_gn import exact_gn_rows, worst_relative_error

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto  # noqa: E402
from onnx import helper as oh  # noqa: E402
from onnx.reference import ReferenceEvaluator  # noqa: E402


def _model(opset: int, elem_type: int, groups: int, eps: float = 1e-5) -> object:
    node = oh.make_node("GroupNormalization", ["x", "s", "b"], ["y"], num_groups=groups, epsilon=eps)
    ins = [oh.make_tensor_value_info(n, elem_type, None) for n in "xsb"]
    graph = oh.make_graph([node], "gn", ins, [oh.make_tensor_value_info("y", elem_type, None)])
    return oh.make_model(graph, opset_imports=[oh.make_opsetid("", opset)], ir_version=10)


def _ort(model: object, feeds: dict[str, np.ndarray]) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, feeds)[0]


def _reference(model: object, feeds: dict[str, np.ndarray]) -> np.ndarray:
    return ReferenceEvaluator(model).run(None, feeds)[0]


# three groups of five float16 values near 1.5e4 (float16 spacing there is 8)
X15 = [15240, 15248, 15240, 15240, 15248, 15248, 15248, 15240, 15240, 15248]
X15 += [15240, 15248, 15248, 15248, 15248]


@pytest.mark.parametrize("runner", [_ort, _reference], ids=["onnxruntime", "onnx.reference"])
def test_opset21_float16_nan_where_finite(runner) -> None:
    """x = X15 as float16, shape (1, 15), G = 3, eps = 1e-5, scale 1, bias 0.

    Measured (onnxruntime 1.32.0 and onnx 1.23.2 reference, identical): group 3 ([15240, 15248, 15248,
    15248, 15248]) is all NaN; exact: [-1.999999, 0.5, 0.5, 0.5, 0.5] (mean 15246.4,
    variance 10.24, |mean|/std 4.8e3; eps makes -2 one ppm short). Groups 1 and 2 are finite but 2% off
    (e.g. -0.7998 where exact is -0.816496).
    """
    x = np.array([X15], np.float16)
    feeds = {"x": x, "s": np.ones(15, np.float16), "b": np.zeros(15, np.float16)}
    got = runner(_model(21, TensorProto.FLOAT16, 3), feeds).astype(np.float64)
    exact = exact_gn_rows(x.astype(np.float64).tolist(), 3, 1e-5)
    assert np.allclose([float(v) for v in exact[0][10:]], [-2.0, 0.5, 0.5, 0.5, 0.5], rtol=1e-5)
    assert np.isnan(got[0, 10:]).all()
    assert all(math.isfinite(v) for v in exact[0])


@pytest.mark.parametrize("runner", [_ort, _reference], ids=["onnxruntime", "onnx.reference"])
def test_opset21_float32_two_values_nan(runner) -> None:
    """x = [[744.33251953125, 744.7369995117188]] float32, shape (1, 2), G = 1, eps = 1e-5.

    Measured: [nan, nan] on both runners; exact: [-0.999878, 0.999878] (variance 0.0409, |mean|/std 3.7e3).
    """
    x = np.array([[744.33251953125, 744.7369995117188]], np.float32)
    feeds = {"x": x, "s": np.ones(2, np.float32), "b": np.zeros(2, np.float32)}
    got = runner(_model(21, TensorProto.FLOAT, 1), feeds).astype(np.float64)
    exact = exact_gn_rows(x.astype(np.float64).tolist(), 1, 1e-5)
    assert np.isnan(got).all()
    assert worst_relative_error(got.tolist(), exact) == math.inf
    assert abs(float(exact[0][0]) + 0.999878) < 1e-6


@pytest.mark.parametrize("runner", [_ort, _reference], ids=["onnxruntime", "onnx.reference"])
def test_opset18_scale_is_per_group(runner) -> None:
    """Opset 18 takes scale and bias of length num_groups: a per-channel weight cannot be expressed.

    x = arange(8) as (1, 4, 2) float32, G = 2. Scale [1, 2] (one per group) runs and multiplies the whole
    second group by 2; scale [1, 2, 3, 4] (one per channel) is refused by both runners (onnxruntime: a Mul
    broadcast failure "2 by 4"; onnx.reference: a TypeError from the function body).
    """
    model = _model(18, TensorProto.FLOAT, 2)
    x = np.arange(8, dtype=np.float32).reshape(1, 4, 2)
    per_group = runner(model, {"x": x, "s": np.array([1, 2], np.float32), "b": np.zeros(2, np.float32)})
    assert np.allclose(per_group[0, 2:], 2 * per_group[0, :2])
    with pytest.raises(Exception):  # noqa: B017 - the two runners raise unrelated types
        runner(model, {"x": x, "s": np.arange(1, 5, dtype=np.float32), "b": np.zeros(4, np.float32)})


@pytest.mark.parametrize("runner", [_ort, _reference], ids=["onnxruntime", "onnx.reference"])
def test_opset18_float64_one_pass_variance(runner) -> None:
    """Opset 18 computes the same unclamped E[x^2] - E[x]^2 in the input type: at float64 too.

    x = [[1e9, 1e9, 1e9 + 1]] float64, G = 1, eps = float32(1e-5): measured [nan, nan, nan] on both runners
    (exact [-0.707091, -0.707091, 1.414182]; |mean|/std 2.1e9). x = [[1e8, 1e8 + 1]]: measured
    [-158.1139, 158.1139] (the variance cancelled to 0, leaving 0.5 / sqrt(eps)) where exact is
    [-0.99998, 0.99998]. gn-spec check onnx.GroupNormalization-18 --dtype float64 finds both kinds.
    """
    eps = float(np.float32(1e-5))
    model = _model(18, TensorProto.DOUBLE, 1, eps)
    feeds = {"s": np.ones(1), "b": np.zeros(1)}
    x = np.array([[1e9, 1e9, 1e9 + 1]])
    got = runner(model, {"x": x, **feeds})
    exact = exact_gn_rows(x.tolist(), 1, eps)
    assert np.isnan(got).all()
    assert np.allclose([float(v) for v in exact[0]], [-0.7070909, -0.7070909, 1.4141817], rtol=1e-6)
    x = np.array([[1e8, 1e8 + 1]])
    got = runner(model, {"x": x, **feeds})
    exact = exact_gn_rows(x.tolist(), 1, eps)
    assert abs(float(exact[0][1]) - 0.99998) < 1e-5
    assert np.allclose(got, [[-158.1139, 158.1139]], rtol=1e-6)
    assert worst_relative_error(got.tolist(), exact) > 100


@pytest.mark.parametrize("runner", [_ort, _reference], ids=["onnxruntime", "onnx.reference"])
def test_opset18_float32_two_values_nan(runner) -> None:
    """The float32 case of test_opset21_float32_two_values_nan on opset 18 (statistics in float32 as well):
    measured [nan, nan]; exact [-0.999878, 0.999878]."""
    x = np.array([[744.33251953125, 744.7369995117188]], np.float32)
    feeds = {"x": x, "s": np.ones(1, np.float32), "b": np.zeros(1, np.float32)}
    got = runner(_model(18, TensorProto.FLOAT, 1), feeds).astype(np.float64)
    exact = exact_gn_rows(x.astype(np.float64).tolist(), 1, 1e-5)
    assert np.isnan(got).all()
    assert abs(float(exact[0][0]) + 0.999878) < 1e-6


def test_opset18_float16_reference_squares_overflow() -> None:
    """onnx.reference runs opset 18's body in float16: X*X overflows float16 (max 65504) once |x| >= 256.

    x = [[300, 301]] float16, G = 1: measured [nan, nan] (inf - inf), exact [-0.99998, 0.99998]; onnxruntime
    returns [-1, 1] here. gn-spec check onnx.GroupNormalization-18 --target-option runtime=reference --dtype
    float16 fails single_value_groups and forward_agreement with such NaNs (and with 0 where x*x is inf but
    the squared mean is not).
    """
    x = np.array([[300, 301]], np.float16)
    feeds = {"x": x, "s": np.ones(1, np.float16), "b": np.zeros(1, np.float16)}
    model = _model(18, TensorProto.FLOAT16, 1)
    with np.errstate(over="ignore", invalid="ignore"):
        got = _reference(model, feeds)
    exact = exact_gn_rows(x.astype(np.float64).tolist(), 1, 1e-5)
    assert np.isnan(got).all()
    assert abs(float(exact[0][1]) - 0.99998) < 1e-5
    assert np.allclose(_ort(model, feeds).astype(np.float64), [[-1, 1]], atol=1e-3)


def test_opset18_float16_onnxruntime_nan_where_finite() -> None:
    """X15 of test_opset21_float16_nan_where_finite on opset 18, float16, G = 3, onnxruntime: group 3 is all
    NaN again (exact [-2, 0.5, 0.5, 0.5, 0.5])."""
    x = np.array([X15], np.float16)
    feeds = {"x": x, "s": np.ones(3, np.float16), "b": np.zeros(3, np.float16)}
    got = _ort(_model(18, TensorProto.FLOAT16, 3), feeds).astype(np.float64)
    exact = exact_gn_rows(x.astype(np.float64).tolist(), 3, 1e-5)
    assert np.isnan(got[0, 10:]).all()
    assert all(math.isfinite(v) for v in exact[0])


@pytest.mark.parametrize("runner", [_ort, _reference], ids=["onnxruntime", "onnx.reference"])
def test_opset21_constant_group_nan(runner) -> None:
    """A constant group, whose exact output is 0 (x - mean = 0), comes out NaN: the one-pass variance of five
    equal values is negative in float32 by more than a small eps.

    x = -1.9326171875 (float16) five times, shape (1, 1, 5), G = 1, eps = 1e-10 (as float32), stash_type 1:
    measured [nan]*5 on both runners. gn-spec check onnx.GroupNormalization-21 --dtype float16 shrinks
    forward_agreement to this case.
    """
    x = np.full((1, 1, 5), -1.9326171875, np.float16)
    feeds = {"x": x, "s": np.ones(1, np.float16), "b": np.zeros(1, np.float16)}
    got = runner(_model(21, TensorProto.FLOAT16, 1, 1e-10), feeds)
    exact = exact_gn_rows(x.reshape(1, 5).astype(np.float64).tolist(), 1, float(np.float32(1e-10)))
    assert all(v == 0 for v in exact[0])
    assert np.isnan(got).all()


@pytest.mark.parametrize("runner", [_ort, _reference], ids=["onnxruntime", "onnx.reference"])
def test_opset21_stash_float64_constant_group_nan(runner) -> None:
    """stash_type = 11 (statistics in float64) does not save the one-pass variance: for a constant group of
    large float32 values, E[x^2] - E[x]^2 rounds (at float64, relative 2**-53 of x^2 = 5.9e11) to a negative
    number well below -eps.

    x = 767343.5625 (float32) 147 times, shape (1, 3, 7, 7), G = 1, eps = 1e-5 (as float32), stash_type 11:
    measured all NaN on both runners; exact: every output 0 (x - mean = 0). gn-spec check
    onnx.GroupNormalization-21 --target-option stash_type=11 fails constant_groups_give_bias on this case.
    """
    x = np.full((1, 3, 7, 7), 767343.5625, np.float32)
    eps = float(np.float32(1e-5))
    attrs = {"num_groups": 1, "epsilon": eps, "stash_type": 11}
    node = oh.make_node("GroupNormalization", ["x", "s", "b"], ["y"], **attrs)
    ins = [oh.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in "xsb"]
    graph = oh.make_graph([node], "gn", ins, [oh.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    model = oh.make_model(graph, opset_imports=[oh.make_opsetid("", 21)], ir_version=10)
    got = runner(model, {"x": x, "s": np.ones(3, np.float32), "b": np.zeros(3, np.float32)})
    exact = exact_gn_rows(x.reshape(1, -1).astype(np.float64).tolist(), 1, eps)
    assert all(v == 0 for v in exact[0])
    assert np.isnan(got).all()
