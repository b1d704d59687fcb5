"""The ONNX and OpenVINO built-in targets' adapters (gn_spec/checker/frameworks/onnx_targets.py) and one
end-to-end ``gn-spec check`` per target and runtime.

The adapter tests call each adapter on small fixed, well-conditioned cases and compare with gn_spec's
reference within a sanity tolerance (a few units of the dtype's precision): they test the adapter's wiring
(shapes, scale/bias mapping, dtype), not the framework's accuracy, which is the checker's job.  Each test
skips when its framework is absent, except under GN_SPEC_REQUIRE_FRAMEWORKS=1 (conftest.py).
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

import gn_spec
from gn_spec.checker.adapters import Call, Unexpressible, Unsupported
from gn_spec.checker.builtins import BY_NAME

#: (target, runtime option or None, the modules it needs)
ONNX_RUNTIMES = {
    "onnxruntime": ("onnx", "onnxruntime"),
    "reference": ("onnx",),
    "openvino": ("onnx", "openvino"),
}
#: a sanity tolerance per dtype: the cases below are well conditioned, a wiring error is O(1)
SANITY = {"float16": 1e-2, "float32": 1e-5, "float64": 1e-5}  # float64 stash_type=1 computes in float32


def _needs(*modules: str) -> None:
    for m in modules:
        pytest.importorskip(m)


def _adapter(name: str, dtype: str, **options: object):  # type: ignore[no-untyped-def]
    from gn_spec.checker.frameworks import onnx_targets

    target = BY_NAME[name]
    cls = getattr(onnx_targets, target.adapter.partition(":")[2])
    defaults = {o.name: o.default for o in target.options}
    return cls(target, dtype, "cpu", "contiguous", {**defaults, **options})


def _forward(adapter, x, g, weight=None, bias=None, eps=1e-5):  # type: ignore[no-untyped-def]
    arrays = {"x": x}
    arrays.update({} if weight is None else {"weight": weight})
    arrays.update({} if bias is None else {"bias": bias})
    inputs = {k: adapter.native(k, a) for k, a in arrays.items()}
    return adapter.forward(Call("forward", g, eps, arrays), inputs)["y"]


def _case(shape=(2, 6, 3), seed=0):  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(seed)
    return rng.standard_normal(shape), rng.uniform(0.5, 2.0, shape[1]), rng.standard_normal(shape[1])


def _cases() -> list:  # type: ignore[type-arg]
    out = []
    for runtime, modules in ONNX_RUNTIMES.items():
        target = BY_NAME["onnx.GroupNormalization-21"]
        dtypes = target.option_dtypes["runtime"].get(runtime, target.dtypes)
        out += [pytest.param(runtime, d, modules, id=f"{runtime}-{d}") for d in dtypes]
    return out


def _close(y, x, g, weight, bias, dtype, eps=1e-5) -> None:  # type: ignore[no-untyped-def]
    assert isinstance(y, np.ndarray) and y.dtype == np.dtype(dtype) and y.shape == x.shape
    c = np.dtype(dtype)
    w = None if weight is None else weight.astype(c)
    b = None if bias is None else bias.astype(c)
    exact = gn_spec.group_norm(x.astype(c), g, w, b, float(np.float32(eps)))
    assert np.max(np.abs(y.astype(np.float64) - exact)) < SANITY[dtype] * max(1.0, np.max(np.abs(exact)))


@pytest.mark.parametrize(("runtime", "dtype", "modules"), _cases())
def test_gn21_agrees_with_reference(runtime: str, dtype: str, modules: tuple[str, ...]) -> None:
    """GroupNormalization-21 on each runtime, per-channel weight and bias, 3-D x: within the sanity bound."""
    _needs(*modules)
    x, w, b = _case()
    adapter = _adapter("onnx.GroupNormalization-21", dtype, runtime=runtime)
    _close(_forward(adapter, x, 3, w, b), x, 3, w, b, dtype)


@pytest.mark.parametrize(("runtime", "dtype", "modules"), _cases())
def test_gn18_group_constant_affine_passes_per_group_values(runtime: str, dtype: str, modules) -> None:  # type: ignore[no-untyped-def]
    """A weight and bias constant within each group reach GroupNormalization-18 as one value per group."""
    _needs(*modules)
    x, w, b = _case((2, 6, 2, 2))
    w, b = np.repeat(w[:3], 2), np.repeat(b[:3], 2)  # 3 groups of 2 channels
    adapter = _adapter("onnx.GroupNormalization-18", dtype, runtime=runtime)
    _close(_forward(adapter, x, 3, w, b), x, 3, w, b, dtype)


@pytest.mark.parametrize("which", ["weight", "bias"])
def test_gn18_within_group_varying_affine_is_unexpressible(which: str) -> None:
    _needs("onnx", "onnxruntime")
    x, w, b = _case()
    varying = {"weight": w, "bias": b}
    adapter = _adapter("onnx.GroupNormalization-18", "float32")
    with pytest.raises(Unexpressible, match=f"one {which} per group; this {which} varies within group 0"):
        _forward(adapter, x, 3, **{which: varying[which]})
    assert adapter.cache.built == 0  # refused before any model was built


@pytest.mark.parametrize(("name", "modules"), [
    ("onnx.GroupNormalization-18", ("onnx", "onnxruntime")),
    ("onnx.GroupNormalization-21", ("onnx", "onnxruntime")),
    ("openvino.GroupNormalization-12", ("openvino",)),
])
def test_absent_affine_is_ones_and_zeros(name: str, modules: tuple[str, ...]) -> None:
    """No weight and no bias gives plain normalization; bias only and weight only agree with the reference;
    the notes say that ones and zeros are passed."""
    _needs(*modules)
    x, w, b = _case((1, 4, 5))
    if name.endswith("-18"):
        w, b = np.repeat(w[:2], 2), np.repeat(b[:2], 2)
    adapter = _adapter(name, "float32")
    assert any("ones or zeros" in n for n in adapter.notes)
    for weight, bias in ((None, None), (None, b), (w, None)):
        _close(_forward(adapter, x, 2, weight, bias), x, 2, weight, bias, "float32")


def test_models_are_cached_per_shape_groups_eps() -> None:
    _needs("onnx", "onnxruntime")
    adapter = _adapter("onnx.GroupNormalization-21", "float32")
    x, w, b = _case()
    first = _forward(adapter, x, 3, w, b)
    again = _forward(adapter, x, 3, None, b)  # same shape, G, eps: the same session
    assert (adapter.cache.built, adapter.cache.hits) == (1, 1)
    _forward(adapter, x, 2, w, b)  # another G
    _forward(adapter, x, 3, w, b, eps=1e-3)  # another eps
    _forward(adapter, x[:1], 3, w, b)  # another shape
    assert (adapter.cache.built, adapter.cache.hits) == (4, 1)
    assert np.array_equal(first, _forward(adapter, x, 3, w, b)) and not np.array_equal(first, again)


def test_openvino_precision_hint_is_noted() -> None:
    _needs("openvino")
    adapter = _adapter("openvino.GroupNormalization-12", "float32")
    assert any("inference precision hint f32 set" in n for n in adapter.notes)
    x, w, b = _case()
    _close(_forward(adapter, x, 3, w, b), x, 3, w, b, "float32")


def test_forward_only() -> None:
    _needs("onnx", "onnxruntime")
    adapter = _adapter("onnx.GroupNormalization-21", "float32")
    x, w, b = _case()
    with pytest.raises(Unsupported, match="forward only"):
        adapter.backward(Call("backward", 3, 1e-5, {"x": x}), {"x": x})


def test_gn18_deprecation_does_not_stop_the_model() -> None:
    """onnx.checker refuses opset 18 as deprecated; the adapter says so and runs the model anyway."""
    _needs("onnx", "onnxruntime")
    adapter = _adapter("onnx.GroupNormalization-18", "float64")
    assert any("onnx.checker refuses" in n and "deprecated" in n for n in adapter.notes)
    x = np.arange(8.0).reshape(1, 4, 2)
    y = _forward(adapter, x, 2)
    expected = (x[0, :2] - 1.5) / np.sqrt(1.25 + float(np.float32(1e-5)))  # mean 1.5, variance 1.25
    assert np.allclose(y[0, :2], expected, rtol=0, atol=1e-12)


#: what a run without --property checks: every property of the catalogue
ALL: tuple[str, ...] = ()
#: the subset run for the non-default runtimes (the full catalogue runs once per target, on its default
#: runtime, to keep this file near a minute): the forward judged, a contract, and the gradient properties
SOME = ("forward_agreement", "output_shape_and_dtype", "backward_agreement", "second_order_agreement",
        "gradient_shapes_and_dtypes")

END_TO_END = [
    pytest.param(
        f"onnx.GroupNormalization-{v}",
        (f"runtime={runtime}",),
        modules,
        ALL if runtime == "onnxruntime" else SOME,
        id=f"{v}-{runtime}",
    )
    for v in (18, 21)
    for runtime, modules in ONNX_RUNTIMES.items()
] + [pytest.param("openvino.GroupNormalization-12", (), ("openvino",), ALL, id="openvino-12")]


@pytest.mark.parametrize(("name", "options", "modules", "properties"), END_TO_END)
def test_end_to_end_quick(  # type: ignore[no-untyped-def]
    name: str, options: tuple[str, ...], modules: tuple[str, ...], properties: tuple[str, ...], tmp_path
):
    """``gn-spec check NAME --profile quick --seed 0``: a verdict for every property run, the gradient
    properties not applicable, and the JSON and the console saying forward only."""
    from gn_spec.properties import PROPERTY_NAMES

    _needs(*modules)
    command = [sys.executable, "-m", "gn_spec.cli", "check", name, "--profile", "quick", "--seed", "0"]
    for text in options:
        command += ["--target-option", text]
    for prop in properties:
        command += ["--property", prop]
    command += ["--json", str(tmp_path / "out.json")]
    done = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert done.returncode in (0, 1), done.stderr[-3000:]
    report = json.loads((tmp_path / "out.json").read_text())
    statuses = {p["name"]: p["status"] for p in report["properties"]}
    assert set(statuses) == set(properties or PROPERTY_NAMES)
    assert set(statuses.values()) <= {"passed", "failed", "not applicable"}, statuses
    for gradient in ("backward_agreement", "second_order_agreement", "gradient_shapes_and_dtypes"):
        assert statuses[gradient] == "not applicable"
    assert statuses["output_shape_and_dtype"] in ("passed", "failed")
    assert report["checked"] == ["forward"]
    assert report["verdict_text"].startswith(report["verdict"] + " (forward only")
    assert "forward only" in done.stdout.splitlines()[-1]
    assert report["environment"]["adapter_notes"], "the adapter's notes reach the report"
    for option in options:
        assert option in report["target_options"]


def test_openvino_float64_is_a_usage_error(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """OpenVINO's CPU plugin has no f64 inference precision: asking for it is refused before any run."""
    _needs("onnx", "openvino")
    command = [sys.executable, "-m", "gn_spec.cli", "check", "onnx.GroupNormalization-21", "--target-option",
               "runtime=openvino", "--dtype", "float64"]
    done = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert done.returncode == 2
    assert "runtime=openvino does not support --dtype float64; its dtypes: float16, float32" in done.stderr
