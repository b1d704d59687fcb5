"""Tests of gn_spec.variants: each variant computes its formula, and diagnose() recognises it, and only it.

The variant functions evaluate the reference on transformed arguments; ``NAIVE`` below restates every variant
as the plain float64 formula a user would write, so the transformations are checked against an independent
code path on well-conditioned data (where plain float64 is accurate to ~1e-13).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import gn_spec
from gn_spec import variants as V
from gn_spec.formats import round_to


def _stats(x, g, axes=-1):
    mu = x.mean(axis=axes, keepdims=True)
    return mu, ((x - mu) ** 2).mean(axis=axes, keepdims=True)


def _affine(y, weight, bias, axis=1):
    shape = [1] * y.ndim
    shape[axis] = -1
    if weight is not None:
        y = y * weight.reshape(shape)
    if bias is not None:
        y = y + bias.reshape(shape)
    return y


def _naive_blocks(x, g, var_fn, weight, bias):
    b = x.reshape(x.shape[0], g, -1)
    mu, var = _stats(b, g)
    return _affine(((b - mu) / var_fn(var, b.shape[-1])).reshape(x.shape), weight, bias)


def _naive_interleaved(x, g, w, b, eps):
    blocks = x.reshape(x.shape[0], x.shape[1] // g, g, -1)
    mu, var = _stats(blocks, g, axes=(1, 3))
    return _affine(((blocks - mu) / np.sqrt(var + eps)).reshape(x.shape), w, b)


def _naive_pooled(x, g, w, b, eps):
    blocks = x.reshape(x.shape[0], g, -1)
    mu, var = _stats(blocks, g, axes=(0, 2))
    return _affine(((blocks - mu) / np.sqrt(var + eps)).reshape(x.shape), w, b)


def _naive_channels_last(x, g, w, b, eps):
    nhwc = np.moveaxis(x, 1, -1)
    rows = nhwc.reshape(x.shape[0], g, -1)
    mu, var = _stats(rows, g)
    y = _affine(((rows - mu) / np.sqrt(var + eps)).reshape(nhwc.shape), w, b, axis=-1)
    return np.moveaxis(y, -1, 1)


def _naive_affine_first(x, g, w, b, eps):
    return _naive_blocks(_affine(x, w, b), g, lambda v, m: np.sqrt(v + eps), None, None)


def _naive_per_group(x, g, w, b, eps):
    group_of = np.arange(x.shape[1]) // (x.shape[1] // g)
    return _naive_blocks(x, g, lambda v, m: np.sqrt(v + eps), None if w is None else w[group_of],
                         None if b is None else b[group_of])


def _ones_or(a, n, fill):
    return np.full(n, fill) if a is None else a


def _naive_instance(x, g, w, b, eps):
    return _naive_blocks(x, x.shape[1], lambda v, m: np.sqrt(v + eps), w, b)


def _naive_squares_in_float16(x, g, w, b, eps):
    blocks = x.reshape(x.shape[0], g, -1)
    d = blocks - blocks.mean(axis=-1, keepdims=True)
    with np.errstate(over="ignore"):
        var16 = (d * d).astype(np.float16).astype(np.float64).mean(axis=-1, keepdims=True)
    return _affine((d / np.sqrt(var16 + eps)).reshape(x.shape), w, b)  # d / inf = 0: the bias


def _with_denominator(denominator):
    """The naive variant whose block denominator is denominator(var, m, eps) in place of sqrt(var + eps)."""
    return lambda x, g, w, b, eps: _naive_blocks(x, g, lambda v, m: denominator(v, m, eps), w, b)


NAIVE = {
    "bessel_variance": _with_denominator(lambda v, m, eps: np.sqrt(v * m / (m - 1) + eps)),
    "eps_outside_sqrt": _with_denominator(lambda v, m, eps: np.sqrt(v) + eps),
    "eps_as_clamp": _with_denominator(lambda v, m, eps: np.sqrt(np.maximum(v, eps))),
    "eps_ignored": _with_denominator(lambda v, m, eps: np.sqrt(v)),
    "interleaved_groups": _naive_interleaved,
    "per_group_affine": _naive_per_group,
    "batch_pooled": _naive_pooled,
    "layer_norm": lambda x, g, w, b, eps: _naive_blocks(x, 1, lambda v, m: np.sqrt(v + eps), w, b),
    "instance_norm": _naive_instance,
    "affine_before_normalizing": _naive_affine_first,
    "weight_bias_swapped": lambda x, g, w, b, eps: _naive_blocks(
        x, g, lambda v, m: np.sqrt(v + eps), _ones_or(b, x.shape[1], 1.0), _ones_or(w, x.shape[1], 0.0)),
    "affine_ignored": lambda x, g, w, b, eps: _naive_blocks(x, g, lambda v, m: np.sqrt(v + eps), None, None),
    "channels_last_without_permute": _naive_channels_last,
    "computed_in_float32": lambda x, g, w, b, eps: _naive_blocks(x, g, lambda v, m: np.sqrt(v + eps), w, b),
    "nan_replaced_by_zero": lambda x, g, w, b, eps: np.nan_to_num(
        _naive_blocks(x, g, lambda v, m: np.sqrt(v + eps), w, b), nan=0.0),
    "squares_in_float16": _naive_squares_in_float16,
}

VARIANTS = {v.name: v for v in V.FORWARD_VARIANTS}
BACKWARD = {v.name: v for v in V.BACKWARD_VARIANTS}


def _round(a, dtype):
    """Values of ``a`` rounded to ``dtype``, back in float64."""
    return round_to(np.asarray(a, dtype=np.float64), dtype).astype(np.float64)


def test_every_variant_has_a_naive_formula():
    assert set(NAIVE) == set(VARIANTS)


@pytest.mark.parametrize("name", sorted(NAIVE))
@pytest.mark.parametrize(
    "shape,groups", [((2, 6, 3, 4), 3), ((3, 4, 5), 2), ((2, 8, 2, 3, 2), 4), ((4, 6), 3)]
)
def test_variant_equals_its_naive_formula(name, shape, groups):
    rng = np.random.default_rng(7)
    x = rng.standard_normal(shape) * 2.0 + 0.5
    w = rng.uniform(0.5, 2.0, shape[1]) * rng.choice([-1.0, 1.0], shape[1])
    b = rng.standard_normal(shape[1])
    eps = 0.1  # large enough that every eps variant differs visibly from GN
    got = VARIANTS[name].forward(x, groups, w, b, eps)
    want = NAIVE[name](x, groups, w, b, eps)
    if name == "computed_in_float32":  # the formula of GN on the float32-rounded inputs
        want = NAIVE[name](_round(x, "float32"), groups, _round(w, "float32"), _round(b, "float32"),
                           float(np.float32(eps)))
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def _discriminating_case(dtype: str, seed: int = 0):
    """x (2, 6, 3, 4), G = 3, whose six blocks have standard deviations from far below sqrt(eps) to far above
    it, non-zero means, and per-channel weights and biases of both signs: every forward variant differs from
    GN, and from every other variant, by far more than the dtype's rounding."""
    rng = np.random.default_rng(seed)
    eps = {"float16": 1e-2, "float32": 1e-5, "float64": 1e-5}[dtype]
    root = np.sqrt(eps)
    sd = root * np.array([[1e-2, 1.0, 30.0], [3.0, 0.3, 3e2]])
    mean = sd * np.array([[0.5, -2.0, 3.0], [-1.0, 7.0, 0.25]])
    x = rng.standard_normal((2, 3, 24)) * sd[..., None] + mean[..., None]
    w = rng.uniform(0.5, 2.0, 6) * np.array([1, -1, 1, 1, -1, -1])
    b = rng.uniform(-2.0, 2.0, 6)
    return _round(x.reshape(2, 6, 3, 4), dtype), 3, _round(w, dtype), _round(b, dtype), eps


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
@pytest.mark.parametrize("name", sorted(set(VARIANTS) - {"nan_replaced_by_zero", "computed_in_float32",
                                                          "squares_in_float16"}))
def test_diagnose_names_exactly_the_variant(name, dtype):
    x, g, w, b, eps = _discriminating_case(dtype)
    observed = _round(VARIANTS[name].forward(x, g, w, b, eps), dtype)
    found = V.diagnose(observed, x, g, w, b, eps, dtype=dtype)
    assert [d.variant for d in found] == [name], found
    assert found[0].message.startswith("the output matches GN with ")
    assert 0.0 <= found[0].ratio <= 1.0


def test_float32_computation_of_float64_input_is_diagnosed():
    x, g, w, b, eps = _discriminating_case("float64")
    observed = _round(V.computed_in_float32(x, g, w, b, eps), "float32")
    found = V.diagnose(observed, x, g, w, b, eps, dtype="float64")
    assert [d.variant for d in found] == ["computed_in_float32"]


def test_nan_scrubbed_output_is_diagnosed():
    x, g, w, b, eps = _discriminating_case("float32")
    x[1, 2, 1, 1] = np.nan  # poisons block (1, 1) only
    observed = _round(np.nan_to_num(gn_spec.group_norm(x, g, w, b, eps), nan=0.0), "float32")
    found = V.diagnose(observed, x, g, w, b, eps, dtype="float32")
    assert [d.variant for d in found] == ["nan_replaced_by_zero"]


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
def test_conforming_output_is_not_diagnosed(dtype):
    x, g, w, b, eps = _discriminating_case(dtype)
    observed = _round(gn_spec.group_norm(x, g, w, b, eps), dtype)
    assert V.diagnose(observed, x, g, w, b, eps, dtype=dtype) == []


def test_unrelated_failure_is_not_blamed_on_a_variant():
    x, g, w, b, eps = _discriminating_case("float32")
    observed = _round(gn_spec.group_norm(x, g, w, b, eps), "float32") + 1.0
    assert V.diagnose(observed, x, g, w, b, eps, dtype="float32") == []
    assert V.diagnose(observed[:1], x, g, w, b, eps, dtype="float32") == []  # wrong shape: nothing fits


def test_variant_with_looser_bounds_than_gn_is_not_blamed():
    """The counterexample a one-pass variance (E[x^2] - E[x]^2 in float32) shrank to: two channels of one
    value each, |x| ~ 1.6e6, in one group.  The output is GN's, 1.6e-4 off; InstanceNorm gives the bias there,
    nowhere near it, but its pieces are one-value groups whose bounds (|x| / sqrt(eps) wide) take anything.
    Such a variant must not be named (it was: "matches GN with num_groups ignored ... (InstanceNorm)")."""
    x = np.array([[-1655184.0, -1621616.0]])
    w, b, eps = np.array([-3.4691875, -0.5935024]), np.array([0.34702784, -0.6161028]), 1e-5
    x, w, b = (_round(a, "float32") for a in (x, w, b))
    expected = gn_spec.group_norm(x, 1, w, b, eps)
    observed = _round(expected * (1 + 1.6e-4), "float32")
    score = V.ErrorModelScorer()
    example = V.Counterexample(x, 1, w, b, eps, "float32")
    assert score(observed, expected, example, "output") > 1.0  # a failure to explain
    assert VARIANTS["instance_norm"].match(observed, example, score) <= 1.0  # the loose match
    assert VARIANTS["instance_norm"].match(expected, example, score) <= 1.0  # ... that GN itself passes too
    assert "instance_norm" not in [d.variant for d in V.diagnose(observed, x, 1, w, b, eps, dtype="float32")]


@st.composite
def _structures(draw):
    n = draw(st.integers(1, 3))
    groups = draw(st.integers(1, 4))
    per_group = draw(st.integers(1, 3))
    spatial = tuple(draw(st.lists(st.integers(1, 4), max_size=2)))
    affine = draw(st.booleans())
    seed = draw(st.integers(0, 2**32 - 1))
    return (n, groups * per_group) + spatial, groups, affine, seed


@settings(max_examples=15, deadline=None)
@given(_structures())
def test_variant_recognised_whenever_the_input_tells_it_apart(structure):
    """For random shapes, group counts and data: whenever a variant's float32 output fails as GN's output
    (and its exact output is distinguishable from GN's), diagnose() names that variant among its matches."""
    shape, g, affine, seed = structure
    rng = np.random.default_rng(seed)
    x = _round(rng.standard_normal(shape) * rng.uniform(0.1, 3.0) + rng.uniform(-2.0, 2.0), "float32")
    signs = rng.choice([-1.0, 1.0], shape[1])
    w = _round(rng.uniform(0.5, 2.0, shape[1]) * signs, "float32") if affine else None
    b = _round(rng.standard_normal(shape[1]), "float32") if affine else None
    eps = 1e-3
    score = V.ErrorModelScorer()
    example = V.Counterexample(x, g, w, b, eps, "float32")
    expected = gn_spec.group_norm(x, g, w, b, eps)
    assert V.diagnose(_round(expected, "float32"), x, g, w, b, eps, dtype="float32") == []
    for v in V.FORWARD_VARIANTS:
        if not v.applies(example) or v.judged_as is not None:
            continue
        exact = v.forward(x, g, w, b, eps)
        observed = _round(exact, "float32")
        nan = np.isnan(exact)  # a variant's NaN is no evidence (0/0 has many causes): diagnose() skips it
        numbers = np.where(nan, expected, exact)
        if (score(numbers, expected, example, "output") <= 1.0
                or score(observed, expected, example, "output") <= 1):
            continue  # GN and the variant coincide on this input (e.g. interleaved groups with G = 1)
        with np.errstate(all="ignore"):  # variants make inf and NaN by design (as diagnose() allows)
            loose = v.match(np.where(nan, exact, expected), example, score) <= 1.0
        if loose:
            continue  # the variant's own bounds take GN's values too (one value per piece, tiny eps)
        assert v.name in [d.variant for d in V.diagnose(observed, x, g, w, b, eps, dtype="float32")]


def _backward_case(dtype: str):
    x, g, w, _, eps = _discriminating_case(dtype)
    dy = _round(np.random.default_rng(3).standard_normal(x.shape), dtype)
    return dy, x, g, w, eps


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", sorted(BACKWARD))
def test_diagnose_backward_names_exactly_the_variant(name, dtype):
    dy, x, g, w, eps = _backward_case(dtype)
    observed = [_round(a, dtype) for a in BACKWARD[name].backward(dy, x, g, w, eps)]
    found = V.diagnose_backward(observed, dy, x, g, w, eps, dtype=dtype)
    assert [d.variant for d in found] == [name], found
    assert found[0].message.startswith("the gradients match GN's backward with ")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_conforming_gradients_are_not_diagnosed(dtype):
    dy, x, g, w, eps = _backward_case(dtype)
    observed = [_round(a, dtype) for a in gn_spec.group_norm_backward(dy, x, g, w, eps)]
    assert V.diagnose_backward(observed, dy, x, g, w, eps, dtype=dtype) == []
    observed[1] = None  # a gradient that was not computed is not compared
    assert V.diagnose_backward(observed, dy, x, g, w, eps, dtype=dtype) == []


def test_backward_variants_match_their_formulas():
    """grad_input of each backward variant against the terms of GN's gradient written out in float64."""
    dy, x, g, w, eps = _backward_case("float64")
    blocks = x.reshape(2, g, -1)
    mu, var = _stats(blocks, g)
    r = 1.0 / np.sqrt(var + eps)
    xhat = (blocks - mu) * r
    a = (dy * w.reshape(1, -1, 1, 1)).reshape(2, g, -1)
    mean_term = a.mean(axis=-1, keepdims=True)
    var_term = xhat * (a * xhat).mean(axis=-1, keepdims=True)
    want = {
        "backward_missing_mean_term": r * (a - var_term),
        "backward_missing_variance_term": r * (a - mean_term),
        "backward_statistics_detached": r * a,
    }
    for name, gx in want.items():
        np.testing.assert_allclose(BACKWARD[name].backward(dy, x, g, w, eps)[0], gx.reshape(x.shape),
                                   rtol=1e-12, atol=1e-12)
    _, gw, gb = gn_spec.group_norm_backward(dy, x, g, w, eps)
    _, gw_avg, gb_avg = V.backward_params_averaged_over_batch(dy, x, g, w, eps)
    np.testing.assert_allclose(gw_avg, gw / 2, rtol=1e-15)
    np.testing.assert_allclose(gb_avg, gb / 2, rtol=1e-15)
