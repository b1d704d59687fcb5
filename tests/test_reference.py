"""The reference is faithful: every output within one ulp of the exact oracle, on hard float64 inputs.

Ground truth is ``gn_spec.derivations.oracle`` (exact rational arithmetic, correctly rounded); a faithful
result scores at most 1 in ``ulp_error`` and a correctly rounded one 0.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reference_cases import RefCase, ref_cases

import gn_spec
from gn_spec.derivations import oracle

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _all_outputs(module, case: RefCase) -> list[np.ndarray]:  # type: ignore[no-untyped-def]
    a = case.arrays()
    g, eps = case.num_groups, case.eps
    forward = module.group_norm(a["x"], g, a["weight"], a["bias"], eps)
    backward = module.group_norm_backward(a["dy"], a["x"], g, a["weight"], eps)
    second = module.group_norm_double_backward(
        a["ggx"], a["ggw"], a["ggb"], a["dy"], a["x"], g, a["weight"], eps
    )
    return [forward, *backward, *second]


NAMES = ["y", "grad_input", "grad_weight", "grad_bias", "grad_grad_output", "grad_x", "grad_weight(2nd)"]


def assert_faithful(case: RefCase) -> None:
    ours = _all_outputs(gn_spec, case)
    exact = _all_outputs(oracle, case)
    for name, o, e in zip(NAMES, ours, exact, strict=True):
        assert o.dtype == np.float64 and o.shape == e.shape, f"{name}: {o.dtype} {o.shape} vs {e.shape}"
        err = oracle.ulp_error(o, e)
        worst = int(np.argmax(err)) if err.size else 0
        assert err.size == 0 or err.max() <= 1.0, (
            f"{name} not faithful: {err.max():.3g} ulp at flat index {worst}: "
            f"ours {o.ravel()[worst]!r}, exact {e.ravel()[worst]!r} [{case}]"
        )


@SETTINGS
@given(ref_cases())
def test_faithful_on_generated_cases(case: RefCase) -> None:
    assert_faithful(case)


@pytest.mark.parametrize(
    "recipe, power, eps",
    [
        ("offset", 8, 1e-5),  # 1e8 + N(0, 1)
        ("offset", 15, 1e-5),  # |mean| / std = 1e15
        ("magnitude", -300, 1e-5),
        ("magnitude", -300, 0.0),
        ("magnitude", 300, 1e-5),
        ("magnitude", 300, 1e300),
        ("near_eps", 0, 1e-6),
        ("constant", 3, 1e-5),
        ("integers", 0, 0.0),
        ("mixed", 0, 1e-5),
    ],
)
def test_faithful_on_named_hard_cases(recipe: str, power: int, eps: float) -> None:
    for seed in range(3):
        assert_faithful(RefCase((2, 6, 4, 5), 3, eps, recipe, power, True, seed))


def test_faithful_one_element_per_group() -> None:
    """G = C with no spatial dims: m = 1, output is the bias and grad_input is exactly 0."""
    case = RefCase((4, 6), 6, 1e-5, "normal", 0, True, 7)
    assert_faithful(case)
    a = case.arrays()
    assert np.array_equal(
        gn_spec.group_norm(a["x"], 6, a["weight"], a["bias"]), np.broadcast_to(a["bias"], (4, 6))
    )
    assert not np.any(gn_spec.group_norm_backward(a["dy"], a["x"], 6, a["weight"])[0])


@pytest.mark.parametrize("m", [100_003, 1_000_000])
def test_faithful_on_large_groups(m: int) -> None:
    """Groups of 10^5 and 10^6 elements (a non-power of two included), badly conditioned."""
    rng = np.random.default_rng(m)
    x = 1e6 + rng.standard_normal((1, 1, m))
    dy = rng.standard_normal(x.shape)
    ours = [gn_spec.group_norm(x, 1, None, None, 1e-5), gn_spec.group_norm_backward(dy, x, 1, None, 1e-5)[0]]
    exact = [oracle.group_norm(x, 1, None, None, 1e-5), oracle.group_norm_backward(dy, x, 1, None, 1e-5)[0]]
    for o, e in zip(ours, exact, strict=True):
        assert oracle.ulp_error(o, e).max() <= 1.0


def test_constant_group_gives_bias_exactly_and_zero_weight_grad() -> None:
    x = np.full((2, 4, 3, 3), 1e8 + 0.5)
    w = np.array([1.0, -2.0, 3.0, 0.5])
    b = np.array([0.0, 1.5, -2.0, 1e-300])
    assert np.array_equal(gn_spec.group_norm(x, 2, w, b), np.broadcast_to(b[None, :, None, None], x.shape))
    dy = np.random.default_rng(0).standard_normal(x.shape)
    _, grad_weight, _ = gn_spec.group_norm_backward(dy, x, 2, w)
    assert np.array_equal(grad_weight, np.zeros(4))


def test_float32_and_float16_inputs_are_taken_at_their_exact_values() -> None:
    rng = np.random.default_rng(3)
    for dtype in (np.float16, np.float32):
        x = (100 + rng.standard_normal((2, 6, 5))).astype(dtype)
        w = rng.standard_normal(6).astype(dtype)
        assert np.array_equal(
            gn_spec.group_norm(x, 3, w), gn_spec.group_norm(x.astype(np.float64), 3, w.astype(np.float64))
        )
        assert gn_spec.group_norm(x, 3, w).dtype == np.float64


def test_empty_batch() -> None:
    x = np.zeros((0, 4, 3))
    assert gn_spec.group_norm(x, 2).shape == (0, 4, 3)
    gi, gw, gb = gn_spec.group_norm_backward(x, x, 2)
    assert gi.shape == (0, 4, 3) and np.array_equal(gw, np.zeros(4)) and np.array_equal(gb, np.zeros(4))
    ggo, gx, gw2 = gn_spec.group_norm_double_backward(x, None, None, x, x, 2)
    assert ggo.shape == gx.shape == (0, 4, 3) and np.array_equal(gw2, np.zeros(4))


@given(st.integers(0, 3), st.integers(0, 2**31))
@settings(max_examples=20, deadline=None)
def test_non_finite_values_poison_exactly_their_group(group: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((2, 8, 3))
    dy = rng.standard_normal(x.shape)
    bad = x.copy()
    bad[1, 2 * group, 1] = rng.choice([np.nan, np.inf, -np.inf])
    y = gn_spec.group_norm(bad, 4)
    clean = gn_spec.group_norm(x, 4)
    poisoned = np.zeros(x.shape, dtype=bool)
    poisoned[1, 2 * group : 2 * group + 2] = True
    assert np.isnan(y[poisoned]).all()
    assert np.array_equal(y[~poisoned], clean[~poisoned])
    dx, dw, db = gn_spec.group_norm_backward(dy, bad, 4)
    assert np.isnan(dx[poisoned]).all() and np.array_equal(
        dx[~poisoned], gn_spec.group_norm_backward(dy, x, 4)[0][~poisoned]
    )
    channels = np.zeros(8, dtype=bool)
    channels[2 * group : 2 * group + 2] = True
    assert np.isnan(dw[channels]).all() and np.isfinite(dw[~channels]).all()
    assert np.isfinite(db).all()  # grad_bias depends on grad_output alone


def test_eps_zero_with_constant_group_is_nan_in_that_group_only() -> None:
    x = np.random.default_rng(1).standard_normal((1, 4, 3))
    x[0, :2] = 2.0
    y = gn_spec.group_norm(x, 2, eps=0.0)
    assert np.isnan(y[0, :2]).all() and np.isfinite(y[0, 2:]).all()
