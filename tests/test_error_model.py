"""The error model accepts correct implementations written in several ways and rejects small real bugs.

Every test here can fail: the acceptance tests fail if a bound is too tight (or a scale misses a sensitivity),
the rejection tests fail if it is too loose.  Expected values come from the faithful reference.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import gn_spec
from gn_spec import error_model as em
from gn_spec.formats import round_to
from gn_spec.strategies import Case, case_strategy, materialize

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), database=None)

# ------------------------------------------------------------------------------------- implementations
# Written the way users write them; `acc` is the numpy dtype the statistics are accumulated in.


def _per_channel(values: np.ndarray, ndim: int) -> np.ndarray:
    return values.reshape((1, -1) + (1,) * (ndim - 2))


def _affine(y: np.ndarray, weight, bias, dtype) -> np.ndarray:
    if weight is not None:
        y = y * _per_channel(weight.astype(dtype), y.ndim)
    if bias is not None:
        y = y + _per_channel(bias.astype(dtype), y.ndim)
    return y


def two_pass(x, num_groups, weight, bias, eps, acc=np.float32):
    """mean = sum/m, var = sum((x - mean)^2)/m (numpy's pairwise sums), all in `acc`."""
    xa = x.astype(acc)
    g = xa.reshape(x.shape[0], num_groups, -1)
    mean = g.mean(axis=-1, keepdims=True)
    var = ((g - mean) ** 2).mean(axis=-1, keepdims=True)
    y = ((g - mean) / np.sqrt(var + acc(eps))).reshape(x.shape)
    return _affine(y, weight, bias, acc)


def cascaded_welford(x, num_groups, weight, bias, eps, acc=np.float32, block=16):
    """Welford's update over blocks of `block` elements, then Chan's pairwise merge of the blocks (the shape
    of PyTorch's CPU kernel)."""
    g = x.astype(acc).reshape(x.shape[0] * num_groups, -1)
    m = g.shape[1]
    pad = (-m) % block
    values = np.concatenate([g, np.zeros((g.shape[0], pad), acc)], axis=1).reshape(g.shape[0], -1, block)
    valid = (np.arange(m + pad) < m).reshape(-1, block)
    count = np.zeros(values.shape[:2], acc)
    mean = np.zeros(values.shape[:2], acc)
    m2 = np.zeros(values.shape[:2], acc)
    for k in range(block):
        take = valid[:, k]
        xk = values[:, :, k]
        new_count = count + take
        delta = xk - mean
        mean = np.where(take, mean + delta / np.maximum(new_count, 1), mean)
        m2 = np.where(take, m2 + delta * (xk - mean), m2)
        count = new_count
    while count.shape[1] > 1:  # pairwise merge: a tree of depth log2(number of blocks)
        if count.shape[1] % 2:
            count, mean, m2 = (
                np.concatenate([a, np.zeros((a.shape[0], 1), acc)], 1) for a in (count, mean, m2)
            )
        ca, cb = count[:, 0::2], count[:, 1::2]
        n = ca + cb
        delta = mean[:, 1::2] - mean[:, 0::2]
        frac = np.where(n > 0, cb / np.maximum(n, 1), 0)
        mean = mean[:, 0::2] + delta * frac
        m2 = m2[:, 0::2] + m2[:, 1::2] + delta * delta * ca * frac
        count = n
    var = (m2[:, :1] / acc(m)).astype(acc)
    y = ((g - mean[:, :1]) / np.sqrt(var + acc(eps))).reshape(x.shape)
    return _affine(y, weight, bias, acc)


def low_precision(impl, dtype):
    """Compute with `impl` in float32 from the exact low-precision inputs; round the output once."""

    def run(x, num_groups, weight, bias, eps):
        return round_to(impl(x, num_groups, weight, bias, eps, acc=np.float32), dtype).astype(np.float64)

    return run


def unbiased_variance(x, num_groups, weight, bias, eps, acc=np.float32):
    """Bug: Bessel-corrected variance sum((x - mean)^2) / (m - 1)."""
    g = x.astype(acc).reshape(x.shape[0], num_groups, -1)
    mean = g.mean(axis=-1, keepdims=True)
    var = g.var(axis=-1, ddof=1, keepdims=True)
    return _affine(((g - mean) / np.sqrt(var + acc(eps))).reshape(x.shape), weight, bias, acc)


def eps_outside_sqrt(x, num_groups, weight, bias, eps, acc=np.float32):
    """Bug: (x - mean) / (sqrt(var) + eps)."""
    g = x.astype(acc).reshape(x.shape[0], num_groups, -1)
    mean = g.mean(axis=-1, keepdims=True)
    std = np.sqrt(((g - mean) ** 2).mean(axis=-1, keepdims=True))
    return _affine(((g - mean) / (std + acc(eps))).reshape(x.shape), weight, bias, acc)


def one_pass(x, num_groups, weight, bias, eps, acc=np.float32):
    """Bug: var = E[x^2] - E[x]^2 in the working precision (clamped at 0)."""
    g = x.astype(acc).reshape(x.shape[0], num_groups, -1)
    mean = g.mean(axis=-1, keepdims=True)
    var = np.maximum((g * g).mean(axis=-1, keepdims=True) - mean * mean, 0)
    return _affine(((g - mean) / np.sqrt(var + acc(eps))).reshape(x.shape), weight, bias, acc)


def float16_accumulation(x, num_groups, weight, bias, eps, acc=np.float16):
    """Bug: running (sequential) sums kept in float16, as a kernel whose accumulator has the input's type."""
    g = x.astype(np.float16).reshape(x.shape[0], num_groups, -1)
    m = np.float16(g.shape[-1])
    mean = np.cumsum(g, axis=-1, dtype=np.float16)[..., -1:] / m
    dev = g - mean
    var = np.cumsum(dev * dev, axis=-1, dtype=np.float16)[..., -1:] / m
    y = (dev / np.sqrt(var + np.float16(eps))).reshape(x.shape)
    return _affine(y, weight, bias, np.float16).astype(np.float64)


# ---------------------------------------------------------------------------------------------- helpers


def forward_judgement(impl, case: Case, dtype: str) -> em.Judgement:
    inputs = materialize(case, dtype)
    args = (inputs.x, case.num_groups, inputs.weight, inputs.bias, case.eps)
    observed = np.asarray(impl(*args), dtype=np.float64)
    expected = gn_spec.group_norm(*args)
    return em.judge("output", observed, expected, em.forward_tolerance(*args, dtype))


def large_case(data: str, m_spatial: int, **kw) -> Case:
    return Case(
        shape=(2, 4, m_spatial), num_groups=2, eps=1e-5, affine="weight_bias", data=data, seed=11, **kw
    )


# ---------------------------------------------------------------------------------------------- units, depths


def test_unit_roundoffs_are_half_an_ulp_of_one():
    assert em.unit_roundoff("float32") == float(np.finfo(np.float32).eps) / 2
    assert em.unit_roundoff("float64") == float(np.finfo(np.float64).eps) / 2
    assert em.unit_roundoff("float16") == float(np.finfo(np.float16).eps) / 2
    assert em.unit_roundoff("bfloat16") == 2.0**-8
    assert em.accumulation_roundoff("float16") == em.accumulation_roundoff("bfloat16") == 2.0**-24
    assert em.accumulation_roundoff("float64") == 2.0**-53
    with pytest.raises(ValueError, match="dtype='int8'"):
        em.unit_roundoff("int8")


def test_summation_depth_is_logarithmic_and_never_above_m_minus_1():
    assert [em.summation_depth(m) for m in (0, 1, 2, 3, 17)] == [0, 0, 1, 2, 16]
    assert em.summation_depth(2**20) == 20 + em.SEQUENTIAL_ALLOWANCE
    assert em.summation_depth(2**20 + 1) == 21 + em.SEQUENTIAL_ALLOWANCE
    # doubling a large group costs one level, not twice the error
    assert em.summation_depth(2**21) - em.summation_depth(2**20) == 1


def test_low_precision_bound_is_the_elementwise_count_plus_a_tiny_accumulation_term():
    coefficient = 3 * em.mean_coefficient(10**6)
    b16 = em.error_bound("output", "float16", coefficient)
    assert em.ELEMENTWISE_ROUNDINGS["output"] < b16 < em.ELEMENTWISE_ROUNDINGS["output"] + 0.1
    b32 = em.error_bound("output", "float32", coefficient)
    assert b32 == pytest.approx(coefficient + em.ELEMENTWISE_ROUNDINGS["output"], rel=1e-6)


# ---------------------------------------------------------------------------------------------- scales


@SETTINGS
@given(case_strategy("quick", "float64"))
def test_every_scale_dominates_the_exact_value(case):
    """s_i >= |exact_i| for all seven quantities: each term's components bound |term| (SPEC.md)."""
    i = materialize(case, "float64")
    g, eps = case.num_groups, case.eps
    exact = {"output": gn_spec.group_norm(i.x, g, i.weight, i.bias, eps)}
    exact.update(
        zip(
            ("grad_input", "grad_weight", "grad_bias"),
            gn_spec.group_norm_backward(i.grad_output, i.x, g, i.weight, eps),
            strict=True,
        )
    )
    dd = (i.grad_grad_input, i.grad_grad_weight, i.grad_grad_bias, i.grad_output, i.x, g, i.weight, eps)
    exact.update(
        zip(
            ("grad_grad_output", "double_grad_input", "double_grad_weight"),
            gn_spec.group_norm_double_backward(*dd),
            strict=True,
        )
    )
    tols = {"output": em.forward_tolerance(i.x, g, i.weight, i.bias, eps, "float64")}
    tols.update(em.backward_tolerances(i.grad_output, i.x, g, i.weight, eps, "float64"))
    tols.update(em.double_backward_tolerances(*dd, "float64"))
    for name, value in exact.items():
        assert tols[name].scale.shape == value.shape, name
        assert np.all(np.abs(value) <= tols[name].scale * (1 + 1e-12)), name


def _perturb(values, rng, u):
    """values * (1 + delta) with |delta| <= u: what a backward-stable implementation may compute with."""
    if values is None:
        return None
    return values * (1 + rng.uniform(-u, u, size=values.shape))


@SETTINGS
@given(case_strategy("quick", "float32"), st.integers(0, 2**32 - 1))
def test_relative_input_perturbations_of_size_u_stay_within_the_bound(case, seed):
    """The scale is a condition number: the exact GN of inputs perturbed by a relative u (backward
    stability) must be accepted.  This fails if a scale misses a sensitivity path (e.g. of r on kappa)."""
    rng = np.random.default_rng(seed)
    u = em.unit_roundoff("float32")
    i = materialize(case, "float32")
    g, eps = case.num_groups, case.eps
    x, w, b, dy = (_perturb(a, rng, u) for a in (i.x, i.weight, i.bias, i.grad_output))
    got = em.judge(
        "output",
        gn_spec.group_norm(x, g, w, b, eps),
        gn_spec.group_norm(i.x, g, i.weight, i.bias, eps),
        em.forward_tolerance(i.x, g, i.weight, i.bias, eps, "float32"),
    )
    assert got.passed, got.message
    tols = em.backward_tolerances(i.grad_output, i.x, g, i.weight, eps, "float32")
    observed = gn_spec.group_norm_backward(dy, x, g, w, eps)
    expected = gn_spec.group_norm_backward(i.grad_output, i.x, g, i.weight, eps)
    for name, o, e in zip(("grad_input", "grad_weight", "grad_bias"), observed, expected, strict=True):
        verdict = em.judge(name, o, e, tols[name])
        assert verdict.passed, verdict.message
    gg = (_perturb(i.grad_grad_input, rng, u), _perturb(i.grad_grad_weight, rng, u), None)
    dd_tols = em.double_backward_tolerances(
        i.grad_grad_input, i.grad_grad_weight, None, i.grad_output, i.x, g, i.weight, eps, "float32"
    )
    observed = gn_spec.group_norm_double_backward(*gg, dy, x, g, w, eps)
    expected = gn_spec.group_norm_double_backward(
        i.grad_grad_input, i.grad_grad_weight, None, i.grad_output, i.x, g, i.weight, eps
    )
    for name, o, e in zip(
        ("grad_grad_output", "double_grad_input", "double_grad_weight"), observed, expected, strict=True
    ):
        verdict = em.judge(name, o, e, dd_tols[name])
        assert verdict.passed, verdict.message


# ---------------------------------------------------------------------------------------------- acceptance


CORRECT = {
    "two-pass float32": (two_pass, "float32"),
    "cascaded Welford float32": (cascaded_welford, "float32"),
    "two-pass float64": (lambda *a: two_pass(*a, acc=np.float64), "float64"),
    "cascaded Welford float64": (lambda *a: cascaded_welford(*a, acc=np.float64), "float64"),
    "float32 input computed in float64": (lambda *a: two_pass(*a, acc=np.float64), "float32"),
    "float16 with float32 accumulation": (low_precision(two_pass, "float16"), "float16"),
    "bfloat16 with float32 accumulation": (low_precision(cascaded_welford, "bfloat16"), "bfloat16"),
}


@pytest.mark.parametrize("name", CORRECT)
def test_correct_implementations_pass_on_generated_cases(name):
    impl, dtype = CORRECT[name]

    @SETTINGS
    @given(case_strategy("quick", dtype))
    def check(case):
        verdict = forward_judgement(impl, case, dtype)
        assert verdict.passed, f"{case.describe()}: {verdict.message}"

    check()


@pytest.mark.parametrize("name", CORRECT)
@pytest.mark.parametrize("data,offset", [("plain", 0), ("offset", 3), ("exact", 2), ("near_eps", 2)])
def test_correct_implementations_pass_on_large_groups(name, data, offset):
    """Groups of 2 * 20011 elements (a prime spatial extent): where the log2 growth of the bound matters."""
    impl, dtype = CORRECT[name]
    verdict = forward_judgement(impl, large_case(data, 20011, log10_offset=offset), dtype)
    assert verdict.passed, verdict.message


# ---------------------------------------------------------------------------------------------- rejection


def test_unbiased_variance_is_rejected_at_large_m_in_float32():
    """The normalized values shrink by sqrt((m - 1)/m): relative 1/(2m) = 6e-5, about 1000 u, at m = 8192;
    in the model's unit that is about 340 u*s against B = 47."""
    case = large_case("plain", 4096)
    verdict = forward_judgement(unbiased_variance, case, "float32")
    assert not verdict.passed
    assert verdict.max_ratio > 3, verdict.message
    assert "mismatched elements" in verdict.message


def test_unbiased_variance_is_rejected_in_float64_at_a_million_elements():
    case = Case(shape=(1, 1, 1_000_003), num_groups=1, seed=5)
    verdict = forward_judgement(lambda *a: unbiased_variance(*a, acc=np.float64), case, "float64")
    assert not verdict.passed and verdict.max_ratio > 100, verdict.message


def test_eps_outside_the_square_root_is_rejected():
    case = large_case("near_eps", 64)
    verdict = forward_judgement(eps_outside_sqrt, case, "float32")
    assert not verdict.passed and verdict.max_ratio > 10, verdict.message


def test_one_pass_variance_is_rejected_on_offset_data_but_the_two_pass_is_not():
    case = large_case("offset", 257, log10_offset=3)
    assert forward_judgement(two_pass, case, "float32").passed
    verdict = forward_judgement(one_pass, case, "float32")
    assert not verdict.passed and verdict.max_ratio > 3, verdict.message


def test_float16_accumulation_is_rejected_where_float32_accumulation_passes():
    case = large_case("plain", 8192)  # m = 16384
    assert forward_judgement(low_precision(two_pass, "float16"), case, "float16").passed
    verdict = forward_judgement(float16_accumulation, case, "float16")
    assert not verdict.passed and verdict.max_ratio > 3, verdict.message


def test_float64_input_computed_in_float32_is_rejected():
    case = large_case("plain", 7)
    verdict = forward_judgement(lambda *a: two_pass(*a, acc=np.float32).astype(np.float64), case, "float64")
    assert not verdict.passed and verdict.max_ratio > 1e3, verdict.message


def test_backward_computed_in_float32_is_rejected_at_float64():
    i = materialize(large_case("plain", 5), "float64")
    expected = gn_spec.group_norm_backward(i.grad_output, i.x, 2, i.weight, 1e-5)
    f32 = [a.astype(np.float32) for a in (i.grad_output, i.x, i.weight)]
    observed = gn_spec.group_norm_backward(f32[0], f32[1], 2, f32[2], 1e-5)  # exact on rounded inputs
    observed = [o.astype(np.float32).astype(np.float64) for o in observed]
    tols = em.backward_tolerances(i.grad_output, i.x, 2, i.weight, 1e-5, "float64")
    for name, o, e in zip(("grad_input", "grad_weight", "grad_bias"), observed, expected, strict=True):
        assert not em.judge(name, o, e, tols[name]).passed, name


# ---------------------------------------------------------------------------------------------- judge


def _tol(shape, dtype="float32", scale=1.0, bound=4.0):
    return em.Tolerance("output", dtype, np.full(shape, scale), np.full(shape, bound))


def test_judge_reports_count_index_and_values_in_the_model_unit():
    u = em.unit_roundoff("float32")
    expected = np.zeros((2, 3, 4))
    observed = expected.copy()
    observed[1, 2, 3] = 10 * u  # err 10 u*scale, bound 4
    observed[0, 1, 0] = 3 * u  # within the bound
    verdict = em.judge("output", observed, expected, _tol(expected.shape))
    assert not verdict.passed
    assert (verdict.mismatched, verdict.size, verdict.worst_index) == (1, 24, (1, 2, 3))
    assert verdict.worst_error == pytest.approx(10) and verdict.max_ratio == pytest.approx(2.5)
    assert verdict.message.startswith("output: mismatched elements: 1 / 24 (4.17%); worst err 10 u*scale")
    assert "index (1, 2, 3) (bound 4)" in verdict.message


def test_judge_nan_rules():
    expected = np.array([1.0, np.nan, 2.0])
    assert em.judge("output", np.array([1.0, np.nan, 2.0]), expected, _tol(3)).passed
    missing_nan = em.judge("output", np.array([1.0, 0.0, 2.0]), expected, _tol(3))
    assert not missing_nan.passed and missing_nan.worst_index == (1,)
    spurious_nan = em.judge("output", np.array([np.nan, np.nan, 2.0]), expected, _tol(3))
    assert not spurious_nan.passed and spurious_nan.worst_index == (0,)
    assert not em.judge("output", np.array([1.0, np.nan, np.inf]), expected, _tol(3)).passed


def test_judge_accepts_overflow_to_infinity_only_beyond_the_dtype_range():
    expected = np.array([70000.0, -65600.0, 60000.0])
    observed = np.array([np.inf, -np.inf, np.inf])
    verdict = em.judge("grad_bias", observed, expected, _tol(3, "float16"))
    assert verdict.mismatched == 1 and verdict.worst_index == (2,)


def test_judge_reports_shape_mismatch_and_non_numeric_output():
    verdict = em.judge("grad_weight", np.zeros((1, 4, 1, 1)), np.zeros(4), _tol(4))
    assert not verdict.passed and "shape (1, 4, 1, 1), but should be (4,)" in verdict.message
    assert not em.judge("output", "nonsense", np.zeros(2), _tol(2)).passed


def test_judge_exact_zero_scale_requires_exact_equality():
    assert em.judge("output", np.zeros(2), np.zeros(2), _tol(2, scale=0.0)).passed
    assert not em.judge("output", np.array([0.0, 1e-300]), np.zeros(2), _tol(2, scale=0.0)).passed


def test_underflow_floor_accepts_a_correctly_rounded_result_below_the_subnormal_range():
    """y = w xhat with w = eta (float16's smallest subnormal) and |xhat| = 0.447: the exact outputs are
    +-0.447 eta, which round to 0 in float16.  The relative model alone would call 0 an error of hundreds of
    u*scale; the derived floor eta/2 accepts it and still rejects +-eta (0.553 eta away)."""
    eta = em.smallest_subnormal("float16")
    assert eta == 2.0**-24 and np.float16(eta) > 0 and np.float16(eta / 2) == 0
    x, w, b = np.array([[[0.0, 1.0]]]), np.array([eta]), np.array([0.0])
    expected = gn_spec.group_norm(x, 1, w, b, eps=1.0)
    assert np.all(np.abs(expected) < eta / 2) and np.all(expected != 0)
    tol = em.forward_tolerance(x, 1, w, b, 1.0, "float16")
    assert tol.floor == eta / 2
    rounded = expected.astype(np.float16).astype(np.float64)
    assert np.all(rounded == 0)
    verdict = em.judge("output", rounded, expected, tol)
    assert verdict.passed and verdict.worst_error > 100  # hundreds of u*scale, all of it underflow
    one_step_off = np.sign(expected) * eta
    assert not em.judge("output", one_step_off, expected, tol).passed
    # without the floor the correctly rounded answer would be a false alarm
    assert not em.judge("output", rounded, expected, dataclasses.replace(tol, floor=0.0)).passed


def test_underflow_floor_is_half_the_smallest_subnormal_per_rounding():
    for dtype, exponent in (("float16", -24), ("bfloat16", -133), ("float32", -149), ("float64", -1074)):
        assert em.underflow_floor(dtype) == 2.0**exponent / 2
        assert em.underflow_floor(dtype, 2) == 2.0**exponent
    # the floor is the half-ulp of the smallest normal number, u * tiny: above it the relative model covers it
    for dtype, numpy_dtype in (("float16", np.float16), ("float32", np.float32), ("float64", np.float64)):
        assert em.underflow_floor(dtype) == float(np.finfo(numpy_dtype).tiny) * em.unit_roundoff(dtype)
    with pytest.raises(ValueError, match="float8"):
        em.smallest_subnormal("float8")


def test_bound_grows_with_log2_of_the_group_size():
    small = em.forward_tolerance(
        np.random.default_rng(0).standard_normal((1, 1, 2**10)), 1, None, None, 1e-5, "float32"
    )
    large = em.forward_tolerance(
        np.random.default_rng(0).standard_normal((1, 1, 2**20)), 1, None, None, 1e-5, "float32"
    )
    # ten more levels of summation add ten to the coefficient of xhat, K_mu + 2 = d(m) + 4
    assert large.bound.min() - small.bound.min() == pytest.approx(10, abs=1e-3)
    assert math.isfinite(large.bound.max())


# ---------------------------------------------------------------------------------------------- PyTorch


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_pytorch_cpu_forward_backward_and_double_backward_conform(dtype):
    """A sanity check of the model against a widely used implementation (SPEC.md: findings)."""
    torch = pytest.importorskip("torch")
    functional = pytest.importorskip("torch.nn.functional")
    tdt = getattr(torch, dtype)

    def tensor(a, grad=True):
        return None if a is None else torch.tensor(a, dtype=tdt, requires_grad=grad)

    @SETTINGS
    # PyTorch's two refusals of valid input are findings with tests of their own (SPEC.md 3.11,
    # test_checker_conformance.py): N * m == 1 ("Expected more than 1 value per channel") and gradients
    # through a bias without a weight (RuntimeError).  This test is about the values, so it leaves them out.
    @given(
        case_strategy("quick", dtype).filter(lambda c: c.shape[0] * c.group_size > 1 and c.affine != "bias")
    )
    def check(case):
        i = materialize(case, dtype)
        g, eps = case.num_groups, case.eps
        x, w, b, dy = tensor(i.x), tensor(i.weight), tensor(i.bias), tensor(i.grad_output)
        y = functional.group_norm(x, g, w, b, eps)
        names = [n for n, t in (("grad_input", x), ("grad_weight", w), ("grad_bias", b)) if t is not None]
        wrt = [t for t in (x, w, b) if t is not None]
        grads = dict(zip(names, torch.autograd.grad(y, wrt, dy, create_graph=True), strict=True))
        observed = {"output": y}
        observed.update(grads)
        firsts = [grads["grad_input"]] + ([grads["grad_weight"]] if w is not None else [])
        cotangents = [tensor(i.grad_grad_input, False)] + (
            [tensor(i.grad_grad_weight, False)] if w is not None else []
        )
        seconds = torch.autograd.grad(firsts, [dy, x] + ([w] if w is not None else []), cotangents)
        second_names = ("grad_grad_output", "double_grad_input", "double_grad_weight")
        observed.update(zip(second_names, seconds, strict=False))
        ggw = i.grad_grad_weight if w is not None else None
        dd = (i.grad_grad_input, ggw, None, i.grad_output, i.x, g, i.weight, eps)
        expected = {"output": gn_spec.group_norm(i.x, g, i.weight, i.bias, eps)}
        expected.update(
            zip(
                ("grad_input", "grad_weight", "grad_bias"),
                gn_spec.group_norm_backward(i.grad_output, i.x, g, i.weight, eps),
                strict=True,
            )
        )
        expected.update(
            zip(
                ("grad_grad_output", "double_grad_input", "double_grad_weight"),
                gn_spec.group_norm_double_backward(*dd),
                strict=True,
            )
        )
        tols = {"output": em.forward_tolerance(i.x, g, i.weight, i.bias, eps, dtype)}
        tols.update(em.backward_tolerances(i.grad_output, i.x, g, i.weight, eps, dtype))
        tols.update(em.double_backward_tolerances(*dd, dtype))
        for name, value in observed.items():
            verdict = em.judge(name, value.detach().double().numpy(), expected[name], tols[name])
            assert verdict.passed, f"{case.describe()}: {verdict.message}"

    check()


@pytest.mark.xfail(
    strict=True,
    raises=AssertionError,  # the judge's verdict, nothing else
    reason="finding: torch 2.13 CPU group_norm backward sums grad_bias serially (per SIMD lane); its error "
    "grows faster than log2 of the channel length",
)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_pytorch_cpu_grad_bias_of_a_long_channel(dtype):
    """A real PyTorch defect, kept as a strict xfail so a fixed release is noticed (SPEC.md 3.11).

    One channel of M = 3·10⁶ elements, grad_output = -10 + N(0, 1): every term has the same sign, so a
    sequential running sum rounds at magnitudes up to 10 M and its error grows like sqrt(M) or faster;
    the bound, d(M) + 1 + 1 ≈ 49 u·Σ|dy|, grows like log2 M (what pairwise or cascaded summation achieves, and
    what torch.sum does on the same data).  Measured: err/B = 1.37 (float32) and 1.84 (float64).
    """
    torch = pytest.importorskip("torch")
    tdt = getattr(torch, dtype)
    rng = np.random.default_rng(0)
    shape = (1, 1, 3000, 1000)
    x = torch.tensor(rng.standard_normal(shape), dtype=tdt, requires_grad=True)
    weight = torch.ones(1, dtype=tdt)  # (a bias without a weight makes PyTorch's backward raise)
    bias = torch.zeros(1, dtype=tdt, requires_grad=True)
    dy = torch.tensor(-10 + rng.standard_normal(shape), dtype=tdt)
    torch.nn.functional.group_norm(x, 1, weight, bias, 1e-5).backward(dy)
    dy64 = dy.double().numpy()
    exact = np.array([math.fsum(dy64.reshape(-1))])
    tol = em.backward_tolerances(dy64, x.detach().double().numpy(), 1, None, 1e-5, dtype)["grad_bias"]
    # the same data through a log-depth sum conforms: the bound is not the problem
    assert em.judge("grad_bias", np.array([float(dy.sum())]), exact, tol).passed
    verdict = em.judge("grad_bias", bias.grad.double().numpy(), exact, tol)
    assert verdict.passed, verdict.message


#: Seven float32 groups of two values with |mean| ~ 1e6 sigma (the offset recipe, rounded); the last group
#: holds two neighbouring float32 numbers, -527696.3125 and -527696.375, so kappa ~ 1.7e7 > 1/u.
WELFORD_CANCELS = [[717835.0625, 717836.375, -499919.875, -499920.625, 2601839.0, 2601842.25, -164912.1875,
                    -164912.046875, 810119.125, 810120.4375, -601365.3125, -601363.0, -527696.3125,
                    -527696.375]]


def test_a_welford_variance_cancelled_to_zero_is_within_the_model():
    """The model admits updating algorithms (Welford, Chan's merge, SPEC.md 3.4): their variance errs by up to
    (d + 3) u_a (v + A sigma), which exceeds v itself once kappa is near 1/u_a.  There the computed variance
    may be 0 and r_hat = eps**-1/2, so the bound on r must follow (1 - delta_v)**-1/2, capped by eps, not
    its first-order part K_r u_a (1 + kappa) (which admitted r_hat <= 5.5 r here: the derivation was wrong).
    Float32 Welford (``cascaded_welford``: one block per group here) on the last group: running mean
    -527696.375 (the second value), m2 = 0, so the first output is 0.0625 / sqrt(eps) = 6250 where the exact
    value is 1."""
    x = np.array(WELFORD_CANCELS, np.float32).astype(np.float64)
    eps = 1e-10
    observed = cascaded_welford(x, 7, None, None, eps).astype(np.float64)
    assert observed[0, 12] == pytest.approx(0.0625 / math.sqrt(eps), rel=1e-6)  # the variance cancelled
    verdict = em.judge("output", observed, gn_spec.group_norm(x, 7, None, None, eps),
                       em.forward_tolerance(x, 7, None, None, eps, "float32"))
    assert verdict.passed, verdict.message
    # the first-order rstd bound would not admit it, and the all-orders one stays finite where eps > 0
    stats = em.statistics(em.group_layout(x, 7, eps), "float32")
    assert (1 + stats.rho_first.ravel()[6]) < 0.0625 / math.sqrt(eps) * stats.layout.rstd.ravel()[6]
    assert np.all(np.isfinite(stats.rho_up)) and np.all(stats.rho_up >= stats.rho_first)


def test_rstd_bound_is_first_order_where_the_variance_is_known():
    """Where delta_v = (d + 4) u_a (1 + kappa) is small, rho_up is rho_first, the first-order bound (no
    loosening of well-conditioned groups)."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 8, 50)) + 100.0
    stats = em.statistics(em.group_layout(x, 4, 1e-5), "float32")
    assert np.array_equal(stats.rho_up, stats.rho_first)


def test_pytorch_cpu_float32_far_offset_group_is_welfords_cancellation():
    """Was a recorded finding (a strict xfail until 2026-12-03): the false-alarm soak's counterexample for
    torch.nn.GroupNorm at float32 (seed 1112), three groups of two values, no affine, where PyTorch's double
    backward returns grad_grad_output = 8388608 = 2**23 (exact -3.3e-4).  The second group holds two
    neighbouring float32 numbers (-7098073.5, -7098073.0; kappa ~ 2.8e7 > 1/u): PyTorch's Welford variance
    cancels to 0 there, its saved rstd is eps**-1/2 = 316 where r = 4, and its forward gives -158 where the
    exact value is -1.  The model admits that variance for updating algorithms (SPEC.md 3.4), so once the
    rstd bound follows it to all orders, this is within the bound; the two-pass formula differentiated
    twice by autograd, whose variance never falls below v, conforms too."""
    torch = pytest.importorskip("torch")
    case = Case(
        shape=(1, 3, 2), num_groups=3, eps=1e-05, affine="none", data="offset", seed=1100,
        log10_offset=6, log10_scale=1,
    )
    i = materialize(case, "float32")
    x = torch.tensor(i.x, dtype=torch.float32, requires_grad=True)
    _, _, rstd = torch.ops.aten.native_group_norm(x.detach(), None, None, 1, 3, 2, 3, 1e-5)
    assert float(rstd[0, 1]) == pytest.approx(1e-5**-0.5, rel=1e-6)  # PyTorch's variance of group 2 is 0
    dy = torch.tensor(i.grad_output, dtype=torch.float32, requires_grad=True)
    ggi = torch.tensor(i.grad_grad_input, dtype=torch.float32)
    blocks = x.reshape(1, 3, 2)
    centred = blocks - blocks.mean(-1, keepdim=True)
    composite = (centred / torch.sqrt((centred * centred).mean(-1, keepdim=True) + 1e-5)).reshape(x.shape)
    native = torch.nn.functional.group_norm(x, 3, None, None, 1e-5)
    args = (i.grad_grad_input, None, None, i.grad_output, i.x, 3, None, 1e-05)
    expected = gn_spec.group_norm_double_backward(*args)
    tol = em.double_backward_tolerances(*args, "float32")["grad_grad_output"]
    for y in (composite, native):
        (gx,) = torch.autograd.grad(y, [x], dy, create_graph=True)
        (ggo,) = torch.autograd.grad([gx], [dy], [ggi])
        verdict = em.judge("grad_grad_output", ggo.double().numpy(), expected[0], tol)
        assert verdict.passed, verdict.message
