"""The input strategies: coverage, determinism, exact representability, exact statistics and shrinking."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, find, given, settings
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument, NoSuchExample

from gn_spec.formats import FORMATS, is_representable, round_through_float32
from gn_spec.strategies import (
    DTYPES,
    MAGNITUDES,
    RECIPES,
    Case,
    case_strategy,
    exact_statistics_group,
    grid_eps_values,
    invalid_case_strategy,
    materialize,
)

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), database=None)
FIND = settings(
    max_examples=2000, deadline=None, suppress_health_check=list(HealthCheck), database=None, derandomize=True
)


def _kappa(case: Case, dtype: str) -> float:
    """max over groups of |mean| / std of the materialized x (inf for a constant group)."""
    blocks = materialize(case, dtype).x.reshape(case.shape[0], case.num_groups, -1)
    std = blocks.std(axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(np.nan_to_num(np.abs(blocks.mean(axis=-1)) / std, nan=0.0).max())


# ---------------------------------------------------------------------------------------------- materialize


@pytest.mark.parametrize("dtype", DTYPES)
def test_materialized_values_are_exact_in_the_dtype_finite_and_deterministic(dtype):
    @SETTINGS
    @given(case_strategy("quick", dtype))
    def check(case):
        first, again = materialize(case, dtype), materialize(case, dtype)
        for name in (
            "x",
            "weight",
            "bias",
            "grad_output",
            "grad_grad_input",
            "grad_grad_weight",
            "grad_grad_bias",
        ):
            a, b = getattr(first, name), getattr(again, name)
            if a is None:
                assert b is None and (name in ("weight", "grad_grad_weight", "bias", "grad_grad_bias"))
                continue
            assert a.dtype == np.float64 and np.all(np.isfinite(a)), name
            np.testing.assert_array_equal(a, b)
            assert np.all(is_representable(a, dtype)), name
        assert first.x.shape == case.shape
        assert (first.weight is None) == (case.affine in ("none", "bias"))
        assert (first.bias is None) == (case.affine in ("none", "weight"))

    check()


def test_the_same_case_gives_the_same_x_whatever_the_dtype_rounding():
    case = Case(shape=(2, 6, 5), num_groups=3, data="offset", seed=3, log10_offset=2)
    x64 = materialize(case, "float64").x
    np.testing.assert_array_equal(materialize(case, "float32").x, round_through_float32(x64, "float32"))


def test_generator_bfloat16_rounding_matches_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    f32 = (
        np.concatenate(
            [
                rng.standard_normal(5000) * 10.0 ** rng.integers(-40, 38, 5000),
                # ties: a bf16 value plus exactly half its last place, both parities
                (np.arange(1, 200, dtype=np.float32) * 2**-7 + 1 + 2**-8),
                [0.0, -0.0, np.inf, -np.inf, 3.3895314e38, 3.4e38, 1e-45, -1e-40],
            ]
        )
        .astype(np.float32)
        .astype(np.float64)
    )
    expected = torch.tensor(f32, dtype=torch.float64).to(torch.bfloat16).double().numpy()
    np.testing.assert_array_equal(round_through_float32(f32, "bfloat16"), expected)
    assert np.isnan(round_through_float32(np.array([np.nan]), "bfloat16")[0])


def test_generator_rounding_rejects_unknown_dtypes():
    with pytest.raises(ValueError, match="dtype='int8'"):
        round_through_float32(np.zeros(2), "int8")
    with pytest.raises(ValueError, match="dtype='float8'"):
        materialize(Case(shape=(1, 2), num_groups=1), "float8")


# ----------------------------------------------------------------------------------- exact statistics


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("m", [1, 2, 7, 1000, 65537])
@pytest.mark.parametrize("log10_offset", [0, 2, 8])
def test_exact_statistics_sums_are_exact_in_any_order(dtype, m, log10_offset):
    acc = np.float64 if dtype == "float64" else np.float32
    rng = np.random.default_rng(m + log10_offset)
    x = exact_statistics_group(rng, m, dtype, log10_offset)
    assert np.all(is_representable(x, dtype))
    total = math.fsum(x)
    mean = total / m
    dev2 = (x - mean) ** 2
    squares = math.fsum(dev2)
    for order in (np.arange(m), np.arange(m)[::-1], rng.permutation(m)):
        xs = x[order].astype(acc)
        # sequential (a running sum), pairwise (numpy) and the two-level sum of a blocked kernel
        assert float(np.cumsum(xs, dtype=acc)[-1]) == total
        assert float(np.sum(xs, dtype=acc)) == total
        assert float(np.sum(np.add.reduceat(xs, np.arange(0, m, 64)), dtype=acc)) == total
        assert float(xs.mean(dtype=acc)) == mean  # the mean is exact, so the deviations are too
        d2 = (xs - acc(mean)) ** 2
        assert float(np.cumsum(d2, dtype=acc)[-1]) == squares
        assert float(np.sum(d2, dtype=acc)) == squares


def test_exact_statistics_reach_large_conditioning():
    x = exact_statistics_group(np.random.default_rng(1), 1000, "float32", 6)
    assert abs(x.mean()) / x.std() > 1e3


@pytest.mark.parametrize("dtype", DTYPES)
def test_grid_blocks_are_one_last_digit_apart_at_the_top(dtype):
    """Every grid block holds two neighbouring multiples c q and (c + 1) q; for float16 and bfloat16 c lies
    in the top binade [2**(p - 1), 2**p) of the storage precision, for float32 and float64 |mean|/std in the
    domain's top decade (below 10**6 and 10**12, SPEC §3.8); the step is large enough that
    eps <= var / 1e4 (nominal) wherever the format's range allows it, and grid cases draw only such eps."""
    p = FORMATS[dtype].significand_bits
    top_binade = 2 ** (p - 1) <= 2 ** (max(MAGNITUDES[dtype][2] - 1, 0) * math.log2(10))

    @SETTINGS
    @given(case_strategy("default", dtype).filter(lambda c: c.data == "grid" and c.group_size >= 2))
    def check(case):
        assert case.eps in grid_eps_values(dtype)
        for block in materialize(case, dtype).x.reshape(-1, case.group_size):
            values = np.unique(block)
            assert len(values) == 2, values
            step = values[1] - values[0]
            centre = np.abs(values).min() / step
            assert centre == int(centre) and centre + 1 < 2**p
            assert step**2 >= 4e4 * case.eps  # q**2 p (1 - p) >= 1e4 eps with p (1 - p) <= 1/4
            if top_binade:
                assert centre >= 2 ** (p - 1), (centre, values)
            else:
                # nominally in [10**d, 10**(d + 1)); the block's own share of stepped values moves it
                kappa, d = abs(block.mean()) / block.std(), case.log10_offset
                assert 10 ** (d - 1) <= kappa < 10 ** (d + 2)

    check()


# ---------------------------------------------------------------------------------------------- coverage


def test_default_profile_covers_the_structure_the_model_needs():
    strategy = case_strategy("default", "float32")
    assert find(strategy, lambda c: c.group_size >= 100_000, settings=FIND).group_size >= 100_000
    assert find(strategy, lambda c: c.group_size == 1 and c.num_groups > 1, settings=FIND)
    assert find(strategy, lambda c: 1 < c.num_groups < c.channels and c.group_size % 2 == 1, settings=FIND)
    assert find(strategy, lambda c: c.num_groups == c.channels > 1 and len(c.shape) == 5, settings=FIND)
    assert find(strategy, lambda c: len(c.shape) == 2 and c.num_groups == 1 and c.channels > 1, settings=FIND)
    for recipe in RECIPES:
        assert find(strategy, lambda c, r=recipe: c.data == r, settings=FIND).data == recipe
    for eps in (1e-10, 1.0):
        assert find(strategy, lambda c, e=eps: c.eps == e, settings=FIND).eps == eps


@pytest.mark.parametrize("dtype,kappa", [("float32", 1e5), ("float64", 1e11), ("float16", 1e3)])
def test_conditioning_spans_many_orders_of_magnitude(dtype, kappa):
    found = find(
        case_strategy("quick", dtype),
        lambda c: c.data == "offset" and _kappa(c, dtype) > kappa,
        settings=FIND,
    )
    assert _kappa(found, dtype) > kappa


def test_thorough_profile_reaches_bigger_groups_than_default():
    big = find(case_strategy("thorough", "float32"), lambda c: c.group_size > 300_000, settings=FIND)
    assert big.group_size > 300_000
    with pytest.raises(NoSuchExample):
        find(
            case_strategy("default", "float32"),
            lambda c: c.group_size > 300_000,
            settings=settings(FIND, max_examples=300),
        )


def test_four_d_only_and_max_spatial_dims():
    @SETTINGS
    @given(
        case_strategy("default", "float32", four_d_only=True),
        case_strategy("quick", "float32", max_spatial_dims=1),
    )
    def check(four, flat):
        assert len(four.shape) == 4 and four.valid
        assert len(flat.shape) <= 3 and flat.valid

    check()


def test_invalid_cases_never_divide():
    @SETTINGS
    @given(invalid_case_strategy("float32"), invalid_case_strategy("float16", four_d_only=True))
    def check(case, four):
        assert case.channels % case.num_groups != 0 and not case.valid
        assert len(four.shape) == 4 and not four.valid
        assert materialize(case, "float32").x.shape == case.shape

    check()


def test_strategy_arguments_are_validated():
    with pytest.raises(InvalidArgument, match="profile='fast'"):
        case_strategy("fast", "float32")
    with pytest.raises(InvalidArgument, match="dtype='half'"):
        case_strategy("quick", "half")
    with pytest.raises(InvalidArgument, match="max_spatial_dims=4"):
        case_strategy("quick", "float32", max_spatial_dims=4)
    with pytest.raises(ValueError, match="affine='both'"):
        Case(shape=(1, 2), num_groups=1, affine="both")
    with pytest.raises(ValueError, match=r"shape=\(4,\)"):
        Case(shape=(4,), num_groups=1)


# ------------------------------------------------------------------------------------- shrinking, text


def test_shrinking_goes_to_the_smallest_plainest_case():
    minimal = find(case_strategy("default", "float32"), lambda c: True)
    assert minimal == Case(shape=(1, 1), num_groups=1, eps=1e-5, affine="none", data="plain", seed=0)
    # a failure that needs offset data and a big group shrinks to the least of both
    found = find(
        case_strategy("default", "float32"),
        lambda c: c.data == "offset" and c.log10_offset >= 3 and c.group_size >= 50,
        settings=FIND,
    )
    assert found.log10_offset == 3 and found.group_size < 100 and found.seed == 0


def test_describe_and_to_python_rebuild_the_same_inputs():
    case = Case(
        shape=(2, 6, 5),
        num_groups=3,
        eps=1e-3,
        affine="weight_bias",
        data="offset",
        seed=42,
        log10_offset=4,
        log10_scale=-2,
        grad_offset=1.0,
    )
    text = case.describe()
    for piece in ("shape=(2, 6, 5)", "num_groups=3", "m=10", "eps=0.001", "1e4", "seed=42"):
        assert piece in text
    for dtype in ("float32", "bfloat16"):
        namespace: dict = {}
        exec(case.to_python(dtype), namespace)
        expected = materialize(case, dtype)
        np.testing.assert_array_equal(namespace["x"].astype(np.float64), expected.x)
        np.testing.assert_array_equal(namespace["bias"].astype(np.float64), expected.bias)
        assert namespace["num_groups"] == 3 and namespace["eps"] == 1e-3


@given(st.data())
@settings(max_examples=20, deadline=None, database=None)
def test_cases_are_hashable_values(data):
    case = data.draw(case_strategy("quick", "float64"))
    assert case == eval(repr(case), {"Case": Case}) and hash(case) == hash(eval(repr(case), {"Case": Case}))


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32"])
def test_generator_rounding_overflows_to_infinity_without_a_warning(dtype):
    """Round to nearest takes values beyond the range to +-inf; that is the intended result, so numpy's
    overflow RuntimeWarning must not leak into the checker's console output."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = round_through_float32(np.array([1e300, -1e300, 1.0]), dtype)
    np.testing.assert_array_equal(out, [np.inf, -np.inf, 1.0])
