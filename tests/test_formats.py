"""gn_spec.formats: the table against numpy's and torch's own facts, the one correct rounding against exact
rational arithmetic, the generator's double rounding against torch, and every consumer reading the table."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gn_spec import error_model, formats, strategies
from gn_spec.checker import dtypes
from gn_spec.formats import FORMATS, NAMES, format_of, is_representable, round_through_float32, round_to

NUMPY_NATIVE = {"float16": np.float16, "float32": np.float32, "float64": np.float64}

# ---------------------------------------------------------------------------------------------- the table


@pytest.mark.parametrize("name", sorted(NUMPY_NATIVE))
def test_table_agrees_with_numpy_finfo(name):
    fmt, info = FORMATS[name], np.finfo(NUMPY_NATIVE[name])
    assert fmt.container == np.dtype(NUMPY_NATIVE[name]) and fmt.native
    assert fmt.significand_bits == info.nmant + 1
    assert fmt.unit_roundoff == float(info.eps) / 2
    assert fmt.smallest_subnormal == float(info.smallest_subnormal)
    assert fmt.smallest_normal == float(info.smallest_normal)
    assert fmt.largest == float(info.max)
    assert fmt.max_exponent == info.maxexp - 1


def test_bfloat16_agrees_with_torch_finfo_and_its_bit_patterns():
    fmt, info = FORMATS["bfloat16"], torch.finfo(torch.bfloat16)
    assert fmt.container == np.dtype(np.float32) and not fmt.native
    assert fmt.unit_roundoff == info.eps / 2
    assert fmt.smallest_normal == info.smallest_normal == info.tiny
    assert fmt.largest == info.max
    # 0x0001 is the smallest subnormal, 0x7F7F the largest finite, 0x7F80 +inf
    bits = torch.tensor([0x0001, 0x7F7F, 0x7F80], dtype=torch.int16).view(torch.bfloat16).double().tolist()
    assert bits == [fmt.smallest_subnormal, fmt.largest, math.inf]


@pytest.mark.parametrize("name", ["float16", "bfloat16", "float32", "float64"])
def test_table_agrees_with_ml_dtypes_finfo_where_installed(name):
    ml_dtypes = pytest.importorskip("ml_dtypes")
    info = ml_dtypes.finfo(ml_dtypes.bfloat16 if name == "bfloat16" else NUMPY_NATIVE[name])
    fmt = FORMATS[name]
    assert fmt.significand_bits == info.nmant + 1
    assert fmt.unit_roundoff == float(info.eps) / 2
    assert fmt.smallest_subnormal == float(info.smallest_subnormal)
    assert fmt.largest == float(info.max)


def test_accumulation_formats_follow_the_low_precision_policy():
    for name in ("float16", "bfloat16", "float32"):
        assert FORMATS[name].accumulation_roundoff == 2.0**-24
    assert FORMATS["float64"].accumulation_roundoff == 2.0**-53
    assert all(FORMATS[f.accumulation].significand_bits >= f.significand_bits for f in FORMATS.values())


@pytest.mark.parametrize("name", ["float16", "bfloat16", "float32"])
def test_overflow_threshold_is_the_smallest_magnitude_that_rounds_to_infinity(name):
    fmt = FORMATS[name]
    t = fmt.overflow_threshold
    assert t == fmt.largest + math.ldexp(1.0, fmt.max_exponent - fmt.significand_bits)  # + half an ulp
    below = math.nextafter(t, 0.0)
    rounded = round_to(np.array([t, -t, below, -below]), name).astype(np.float64).tolist()
    assert rounded == [math.inf, -math.inf, fmt.largest, -fmt.largest]


def test_float64_never_overflows_from_a_float64_value():
    assert FORMATS["float64"].overflow_threshold == math.inf
    assert error_model.overflow_threshold("float64") == math.inf


def test_unknown_formats_are_rejected_naming_the_value():
    for bad in ("float8", "int8", None):
        with pytest.raises(ValueError, match=f"dtype={bad!r}"):
            format_of(bad)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match=f"dtype={bad!r}"):
            round_to(np.zeros(2), bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="dtype='float8'"):
        round_through_float32(np.zeros(2), "float8")


# ------------------------------------------------------------------------------- one table, every consumer


def test_every_consumer_takes_its_dtype_list_and_facts_from_the_table():
    assert NAMES == tuple(FORMATS) == ("float16", "bfloat16", "float32", "float64")
    assert error_model.DTYPES is NAMES and strategies.DTYPES is NAMES and dtypes.DTYPE_NAMES is NAMES
    assert dtypes.CONTAINER == {name: f.container for name, f in FORMATS.items()}
    assert dtypes.round_to is round_to and dtypes.is_representable is is_representable
    for name, fmt in FORMATS.items():
        assert error_model.unit_roundoff(name) == fmt.unit_roundoff
        assert error_model.accumulation_roundoff(name) == fmt.accumulation_roundoff
        assert error_model.smallest_subnormal(name) == fmt.smallest_subnormal
        assert error_model.overflow_threshold(name) == fmt.overflow_threshold
    # the generator's per-dtype data ranges are its own policy, but they must cover every format
    assert set(strategies.MAGNITUDES) == set(NAMES)


def test_a_new_format_is_one_table_entry(monkeypatch):
    """Adding a row makes every fact and conversion work for it (here an IEEE binary16 twin)."""
    twin = formats.Format("half_twin", np.dtype(np.float32), 11, 15, "float32")
    monkeypatch.setitem(FORMATS, "half_twin", twin)
    rng = np.random.default_rng(3)
    values = rng.standard_normal(10_000) * 2.0 ** rng.integers(-30, 10, 10_000)
    values = np.concatenate([values, [1e6, 2.0**-25, 65520.0]])  # overflow, a subnormal tie, the threshold
    with np.errstate(over="ignore"):
        expected = values.astype(np.float16).astype(np.float64)
    np.testing.assert_array_equal(round_to(values, "half_twin").astype(np.float64), expected)
    assert error_model.unit_roundoff("half_twin") == 2.0**-11
    assert error_model.overflow_threshold("half_twin") == error_model.overflow_threshold("float16")


# ------------------------------------------------------------------------------------------- round_to


def _nearest(value: float, name: str) -> float:
    """The number of ``name`` nearest to ``value`` (ties to an even last significand bit), by exact rational
    arithmetic on the format's definition: p significand bits, exponents down to 1 - emax, then subnormals
    of fixed spacing; a result above the largest finite number is infinite (IEEE 754, unbounded exponent)."""
    fmt = FORMATS[name]
    v = Fraction(value)
    if v == 0:
        return value
    a = abs(v)
    e = max(math.frexp(value)[1] - 1, 1 - fmt.max_exponent)  # 2**e <= a < 2**(e+1), or the subnormal range
    assert a < Fraction(2) ** (e + 1)
    spacing = Fraction(2) ** (e - fmt.significand_bits + 1)
    k, rest = divmod(a, spacing)
    if rest > spacing / 2 or (rest == spacing / 2 and k % 2 == 1):
        k += 1
    r = k * spacing
    if r > Fraction(fmt.largest):
        return math.copysign(math.inf, value)
    return math.copysign(float(r), value)


def _midpoints(rng: np.random.Generator, name: str, count: int) -> np.ndarray:
    """Exact midpoints between neighbours of ``name`` (normal and subnormal), and their float64 neighbours."""
    fmt = FORMATS[name]
    p = fmt.significand_bits
    m = rng.integers(2 ** (p - 1), 2**p, count).astype(np.float64)
    e = rng.integers(2 - fmt.max_exponent - p, fmt.max_exponent - p + 2, count)  # every binade, the top too
    mids = np.ldexp(m + 0.5, e)  # m + 1/2 has p + 1 bits: exact in float64
    subnormal = np.ldexp(rng.integers(0, 2 ** (p - 1), count) + 0.5, 2 - fmt.max_exponent - p)
    both = np.concatenate([mids, subnormal])
    return np.concatenate([both, np.nextafter(both, np.inf), np.nextafter(both, -np.inf)])


@pytest.mark.parametrize("name", ["float16", "bfloat16", "float32"])
def test_round_to_is_the_correct_rounding_of_ties_subnormals_and_overflow(name):
    fmt = FORMATS[name]
    rng = np.random.default_rng(len(name))
    special = [
        fmt.largest,
        fmt.overflow_threshold,
        math.nextafter(fmt.overflow_threshold, 0.0),
        (fmt.largest + fmt.overflow_threshold) / 2,
        fmt.smallest_subnormal,
        fmt.smallest_subnormal / 2,  # a tie between 0 and eta: to 0
        fmt.smallest_subnormal * 1.5,  # a tie between eta and 2 eta: to 2 eta
        math.nextafter(fmt.smallest_subnormal / 2, 1.0),
        fmt.smallest_normal,
        math.nextafter(fmt.smallest_normal, 0.0),
        1e300,
        5e-324,
    ]
    values = np.concatenate([_midpoints(rng, name, 3000), special])
    values = np.concatenate([values, -values])
    got = round_to(values, name)
    assert got.dtype == fmt.container
    want = [_nearest(float(v), name) for v in values]
    np.testing.assert_array_equal(got.astype(np.float64), want)


@settings(max_examples=300, deadline=None)
@given(st.floats(allow_nan=False, allow_infinity=False), st.sampled_from(NAMES))
def test_round_to_agrees_with_exact_rounding_on_any_float64(value, name):
    got = float(round_to(np.array([value]), name)[0])
    want = _nearest(value, name)
    assert got == want and math.copysign(1.0, got) == math.copysign(1.0, want)


def test_round_to_passes_nan_infinities_and_signed_zeros_without_warnings():
    import warnings

    values = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, -1e-300, 1e300])
    for name in NAMES:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            out = round_to(values, name).astype(np.float64)
        assert np.isnan(out[0]) and out[1:3].tolist() == [math.inf, -math.inf]
        assert np.signbit(out[3:6]).tolist() == [False, True, True] and out[3:5].tolist() == [0.0, 0.0]
        assert out[5] == (-1e-300 if name == "float64" else 0.0)  # underflow keeps the sign
        assert out[6] == (1e300 if name == "float64" else math.inf)
        assert is_representable(values, name)[:5].all()


def test_round_to_bfloat16_of_float32_values_agrees_with_torch():
    """From a float32 value torch's conversion is a single rounding, so it must equal ours."""
    rng = np.random.default_rng(5)
    f32 = np.concatenate(
        [
            (rng.standard_normal(20_000) * 10.0 ** rng.integers(-44, 39, 20_000)).astype(np.float32),
            _midpoints(rng, "bfloat16", 2000).astype(np.float32),
        ]
    )
    with np.errstate(over="ignore"):
        ours = round_to(f32.astype(np.float64), "bfloat16")
    theirs = torch.from_numpy(f32).to(torch.bfloat16).float().numpy()
    assert ours.tobytes() == theirs.tobytes()


# -------------------------------------------------------------------- the generator's double rounding


def test_torch_converts_float64_to_16_bit_formats_through_float32():
    """The claim behind round_through_float32: torch's float64 -> bfloat16 / float16 is a double rounding.

    1 + 2**-8 + 2**-30 is nearer 1 + 2**-7 than 1 in bfloat16, but float32 first rounds it to the midpoint
    1 + 2**-8, which then goes to the even 1.  Likewise for float16 with 1 + 2**-11 + 2**-30."""
    for name, tdtype, x in (
        ("bfloat16", torch.bfloat16, 1 + 2**-8 + 2**-30),
        ("float16", torch.float16, 1 + 2**-11 + 2**-30),
    ):
        via_torch = torch.tensor([x], dtype=torch.float64).to(tdtype).double().item()
        assert via_torch == 1.0 == float(round_through_float32(np.array([x]), name)[0])
        assert float(round_to(np.array([x]), name)[0]) == _nearest(x, name) > 1.0


@pytest.mark.parametrize(("name", "tdtype"), [("bfloat16", torch.bfloat16), ("float16", torch.float16)])
def test_round_through_float32_is_what_torch_does_from_float64(name, tdtype):
    rng = np.random.default_rng(6)
    values = np.concatenate(
        [rng.standard_normal(50_000) * 10.0 ** rng.integers(-6, 6, 50_000), _midpoints(rng, name, 3000)]
    )
    theirs = torch.tensor(values, dtype=torch.float64).to(tdtype).double().numpy()
    np.testing.assert_array_equal(round_through_float32(values, name), theirs)
    # and on these values it is not always the single rounding
    assert np.any(round_through_float32(values, name) != round_to(values, name).astype(np.float64))


@pytest.mark.parametrize("name", NAMES)
def test_round_through_float32_returns_numbers_of_the_format(name):
    rng = np.random.default_rng(8)
    values = rng.standard_normal(20_000) * 10.0 ** rng.integers(-5, 5, 20_000)
    out = round_through_float32(values, name)
    assert out.dtype == np.float64 and np.all(is_representable(out, name))
    if FORMATS[name].significand_bits >= 24:  # float32, float64: a single rounding
        np.testing.assert_array_equal(out, round_to(values, name).astype(np.float64))
