"""The exact oracle returns the correctly rounded float64 of the exact result.

Independent ground truth: the closed forms as SPEC.md prints them (``derivations.formulas``, with r, r^3, r^5
as written, proved equal to the derivatives of the forward definition) evaluated in mpmath's outward-rounded
interval arithmetic, a different formulation and a different arithmetic from the oracle's folded rationals.
Correct rounding is then certified directly: the enclosure of the exact value lies between the midpoints
around the oracle's float64 (touching one only if that float is the even neighbour); the precision of the
enclosure is raised until that is decided.
"""

from __future__ import annotations

import math
from typing import Any

import mpmath
import numpy as np
import pytest
import sympy as sp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from mpmath import iv

from gn_spec.derivations import formulas as F
from gn_spec.derivations import oracle
from gn_spec.derivations.closed_forms import ExprVec

PRECISIONS = (200, 1000, 5000)  # bits of the interval ground truth; then exact SymPy numbers decide the rest
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
NAMES = ["y", "grad_input", "grad_weight", "grad_bias", "grad_grad_output", "grad_x", "grad_weight(2nd)"]
FLOAT_MAX = np.finfo(np.float64).max


# ----------------------------------------------------------------------------------------------------------
# Interval ground truth from the SPEC formulas
# ----------------------------------------------------------------------------------------------------------


class IntervalBlock:
    """One block of mpmath intervals (exact points for the inputs), for ``formulas.evaluate``."""

    def __init__(self, values: dict[str, list[float]], eps: float) -> None:
        self.values = {k: [iv.mpf(v) for v in vs] for k, vs in values.items()}
        self.m = len(values["x"])
        self.eps = iv.mpf(eps)

    def field(self, name: str) -> ExprVec:
        return ExprVec(self.values[name])

    def constant(self, number: Any) -> Any:
        rational = sp.Rational(number)
        return iv.mpf(int(rational.p)) / int(rational.q)


class ExactBlock:
    """One block of exact SymPy numbers (r an exact algebraic number), for ``formulas.evaluate``."""

    def __init__(self, values: dict[str, list[float]], eps: float) -> None:
        self.values = {k: [sp.Rational(v) for v in vs] for k, vs in values.items()}
        self.m = len(values["x"])
        self.eps = sp.Rational(eps)

    def field(self, name: str) -> ExprVec:
        return ExprVec(self.values[name])


def reference_outputs(case: dict[str, Any], make_block: Any, zero: Any) -> list[list[Any]]:
    """All seven outputs (flattened) from the SPEC formulas evaluated on blocks built by ``make_block``
    (intervals or exact numbers), None where undefined (eps = 0 and a constant block)."""
    x = case["x"].astype(np.float64)
    n, c = x.shape[:2]
    g = case["groups"]
    s = x[0, 0].size
    cg = c // g
    per_x = {k: case[k].astype(np.float64).reshape(n, g, -1) for k in ("x", "dy", "h")}
    per_c = {k: np.repeat(case[k].astype(np.float64).reshape(g, cg), s, axis=1)
             for k in ("w", "b", "gw", "gb")}
    out: dict[str, Any] = {k: np.empty((n, g, cg * s), dtype=object) for k in ("y", "dx", "ggo", "gx")}
    chan: dict[str, Any] = {k: [zero] * c for k in ("dw", "db", "gwt")}
    for i in range(n):
        for j in range(g):
            values = {k: v[i, j].tolist() for k, v in per_x.items()}
            values.update({k: v[j].tolist() for k, v in per_c.items()})
            block = make_block(values, case["eps"])
            if case["eps"] == 0 and len(set(values["x"])) == 1:  # undefined, except grad_bias
                results = {f.key: [None] * block.m for f in F.FORMULAS}
                results["db"] = block.field("dy").items
            else:
                ev = F.evaluate(block)
                results = {f.key: ev(f.expr).items for f in F.FORMULAS}
            for key in out:
                out[key][i, j] = results[key]
            for key in chan:
                for k, term in enumerate(results[key]):
                    ch = j * cg + k // s
                    acc = chan[key][ch]
                    chan[key][ch] = None if term is None or acc is None else acc + term
    flat = [out["y"], out["dx"], chan["dw"], chan["db"], out["ggo"], out["gx"], chan["gwt"]]
    return [list(np.asarray(a, dtype=object).ravel()) for a in flat]


def oracle_outputs(case: dict[str, Any]) -> list[np.ndarray]:
    x, g, eps = case["x"], case["groups"], case["eps"]
    w, b = case["w"], case["b"]
    return [
        oracle.group_norm(x, g, w, b, eps),
        *oracle.group_norm_backward(case["dy"], x, g, w, eps),
        *oracle.group_norm_double_backward(case["h"], case["gw"], case["gb"], case["dy"], x, g, w, eps),
    ]


def _is_even(f: float) -> bool:
    """Whether the last significand bit of the float64 f is 0 (0.0 counts as even)."""
    return int(np.float64(f).view(np.int64)) & 1 == 0


def _midpoint(f: float, direction: float) -> Any:
    """The exact midpoint between f and its float64 neighbour towards ``direction`` (past the largest
    float: FLOAT_MAX + 2^970, where rounding to nearest starts to give infinity)."""
    other = float(np.nextafter(f, direction))
    with mpmath.workprec(2200):  # exact: both are floats of nearly equal exponent
        if math.isinf(other):
            return mpmath.mpf(math.copysign(FLOAT_MAX, other)) + math.copysign(2.0**970, other)
        return (mpmath.mpf(f) + mpmath.mpf(other)) / 2


def _verdict(lo_vs_below: int, hi_vs_above: int, hi_vs_below: int, lo_vs_above: int, even: bool) -> str:
    """From the signs of (lo - below), (hi - above), (hi - below), (lo - above) of an enclosure [lo, hi]
    of the exact value and the midpoints around a float f: 'ok' when everything in it rounds to f (ties to
    even), 'wrong' when nothing does, 'undecided' otherwise."""
    if hi_vs_below < 0 or lo_vs_above > 0:
        return "wrong"
    if lo_vs_below > 0 and hi_vs_above < 0:
        return "ok"
    if lo_vs_below >= 0 and hi_vs_above <= 0 and even:  # touching a midpoint is a tie, and ties go to even
        return "ok"
    if lo_vs_below == hi_vs_below == 0 or lo_vs_above == hi_vs_above == 0:  # exactly the tie, f odd
        return "wrong"
    return "undecided"


def _cell(f: float) -> tuple[Any, Any]:
    """The exact midpoints (below, above) around f: values strictly between them round to f."""
    if math.isinf(f):  # +inf collects everything from FLOAT_MAX + 2^970 up (ties to even go to infinity)
        limit = _midpoint(math.copysign(FLOAT_MAX, f), f)
        return (limit, mpmath.inf) if f > 0 else (-mpmath.inf, limit)
    return _midpoint(f, -math.inf), _midpoint(f, math.inf)


def _compare(a: Any, b: Any) -> int:
    """-1, 0 or 1 as a <, = or > b (exact for mpf values and SymPy numbers)."""
    return int(bool(a > b)) - int(bool(a < b))


def rounding_verdict(f: float, enclosure: Any) -> str:
    """Verdict for an interval enclosure (mpmath iv) of the exact value."""
    lo, hi = (mpmath.make_mpf(e) for e in enclosure._mpi_)
    below, above = _cell(f)
    even = math.isinf(f) or _is_even(f)
    return _verdict(_compare(lo, below), _compare(hi, above), _compare(hi, below), _compare(lo, above), even)


def _exact_sign(value: Any) -> int:
    """Sign of an exact SymPy number (rationals and square roots): exact when rational, else by evalf with
    guaranteed digits (an irrational algebraic number is not zero)."""
    value = sp.expand(value)
    if value.is_Rational:
        return _compare(value, 0)
    return _compare(value.evalf(60, strict=True), 0)


def _to_rational(value: Any) -> Any:
    """An exact mpf as a SymPy Rational (None for an infinity)."""
    if mpmath.isinf(value):
        return None
    sign, man, exp, _ = value._mpf_
    return (-1) ** sign * sp.Integer(man) * sp.Integer(2) ** exp


def exact_rounding_verdict(f: float, value: Any) -> str:
    """Verdict for the exact value as a SymPy number (decides ties that no interval can)."""
    below, above = (_to_rational(b) for b in _cell(f))
    lo_below = 1 if below is None else _exact_sign(value - below)
    hi_above = -1 if above is None else _exact_sign(value - above)
    return _verdict(lo_below, hi_above, lo_below, hi_above, math.isinf(f) or _is_even(f))


def assert_oracle_exact(case: dict[str, Any]) -> None:
    """Every oracle output is the correctly rounded exact value, certified by interval enclosures and, for
    what they leave undecided (ties, exact zeros), by exact SymPy numbers."""
    got = [a.ravel().tolist() for a in oracle_outputs(case)]
    pending = {(o, k) for o, vals in enumerate(got) for k in range(len(vals))}
    for prec in PRECISIONS:
        iv.prec = prec
        truth = reference_outputs(case, IntervalBlock, iv.mpf(0))
        for o, k in sorted(pending):
            f, enclosure = got[o][k], truth[o][k]
            where = f"{NAMES[o]}[{k}] of {_describe(case)}"
            if enclosure is None:
                assert math.isnan(f), f"{where}: undefined (eps = 0, constant block) but oracle gave {f!r}"
                pending.discard((o, k))
                continue
            verdict = rounding_verdict(f, enclosure)
            assert verdict != "wrong", f"{where}: oracle {f!r} but the exact value lies in {enclosure}"
            if verdict == "ok":
                pending.discard((o, k))
        if not pending:
            return
    exact = reference_outputs(case, ExactBlock, sp.Integer(0))
    for o, k in sorted(pending):
        verdict = exact_rounding_verdict(got[o][k], exact[o][k])
        where = f"{NAMES[o]}[{k}] of {_describe(case)}"
        assert verdict == "ok", f"{where}: oracle {got[o][k]!r}, exact {exact[o][k]} ({verdict})"


def _describe(case: dict[str, Any]) -> str:
    return f"x.shape={case['x'].shape} dtype={case['x'].dtype} groups={case['groups']} eps={case['eps']!r}"


# ----------------------------------------------------------------------------------------------------------
# Generated cases
# ----------------------------------------------------------------------------------------------------------


@st.composite
def cases(draw: st.DrawFn) -> dict[str, Any]:
    """Small cases (block sizes up to 12) with values anywhere in float64/32/16, incl. subnormals, big
    offsets (|mean|/std up to 1e15), constant blocks, zero and large eps."""
    groups = draw(st.integers(1, 3))
    c = groups * draw(st.integers(1, 3))
    spatial = draw(st.lists(st.integers(1, 3), max_size=2))
    shape = (draw(st.integers(1, 3)), c, *spatial)
    dtype = draw(st.sampled_from([np.float64, np.float64, np.float32, np.float16]))
    width = np.dtype(dtype).itemsize * 8
    big = {16: 2.0**15, 32: 2.0**100, 64: 2.0**100}[width]
    elements = st.floats(-big, big, width=width, allow_nan=False, allow_infinity=False)
    x = draw(hnp.arrays(dtype, shape, elements=elements))
    structure = draw(st.sampled_from(["raw", "offset", "constant", "small"]))
    if structure == "offset":
        offset = draw(st.sampled_from({16: [1e2, 1e3], 32: [1e4, 1e8], 64: [1e4, 1e8, 1e15]}[width]))
        noise = np.random.default_rng(draw(st.integers(0, 2**32 - 1))).standard_normal(shape)
        x = (offset + noise).astype(dtype)
    elif structure == "constant":
        first = x.reshape(shape[0], groups, -1)[:, :, :1]
        x = np.ascontiguousarray(np.broadcast_to(first, (*first.shape[:2], x[0].size // groups)))
        x = x.reshape(shape)
    elif structure == "small":
        x = (x * 1e-30).astype(dtype) if width == 64 else x
    eps = draw(st.sampled_from([0.0, 1e-5, 1.0, 2.0**-20, 1e-300, 1e10]))
    per_elem = st.floats(-1e3, 1e3, width=width, allow_nan=False, allow_infinity=False)
    return {
        "x": x, "groups": groups, "eps": eps,
        "w": draw(hnp.arrays(dtype, (c,), elements=per_elem)),
        "b": draw(hnp.arrays(dtype, (c,), elements=per_elem)),
        "dy": draw(hnp.arrays(dtype, shape, elements=per_elem)),
        "h": draw(hnp.arrays(dtype, shape, elements=per_elem)),
        "gw": draw(hnp.arrays(dtype, (c,), elements=per_elem)),
        "gb": draw(hnp.arrays(dtype, (c,), elements=per_elem)),
    }


@SETTINGS
@given(cases())
def test_correctly_rounded_on_generated_cases(case: dict[str, Any]) -> None:
    assert_oracle_exact(case)


def _case(x: np.ndarray, groups: int, eps: float, seed: int = 0) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    c = x.shape[1]
    case = {"x": x, "groups": groups, "eps": eps,
            "w": rng.standard_normal(c), "b": rng.standard_normal(c), "dy": rng.standard_normal(x.shape),
            "h": rng.standard_normal(x.shape), "gw": rng.standard_normal(c), "gb": rng.standard_normal(c)}
    return case


@pytest.mark.parametrize("scale", [1e-300, 1e-150, 1.0, 1e150, 1e300])
def test_correctly_rounded_across_magnitudes(scale: float) -> None:
    x = np.random.default_rng(1).standard_normal((2, 4, 3)) * scale
    assert_oracle_exact(_case(x, 2, 1e-5))


def test_correctly_rounded_when_variance_is_comparable_to_eps() -> None:
    x = 1.0 + np.random.default_rng(2).standard_normal((2, 4, 3)) * 1e-3
    assert_oracle_exact(_case(x, 2, 1e-6))


# ----------------------------------------------------------------------------------------------------------
# Exact cases
# ----------------------------------------------------------------------------------------------------------


def test_constant_groups_give_exactly_the_bias() -> None:
    """A constant block has xhat = 0: y = bias and grad_weight = sum dy xhat = 0 exactly (grad_input is
    r (g - mean g), not 0)."""
    x = np.repeat(np.array([3.0, -1e8, 0.1, 7.0]), 6).reshape(2, 4, 3)  # each block (2 channels) constant
    w, b = np.array([2.0, -3.0, 0.5, 1.5]), np.array([0.1, -0.2, 1e-300, 7.0])
    dy = np.random.default_rng(3).standard_normal(x.shape)
    y = oracle.group_norm(x, 2, w, b, 1e-5)
    assert np.array_equal(y, np.broadcast_to(b[None, :, None], x.shape))
    assert not oracle.group_norm_backward(dy, x, 2, w, 1e-5)[1].any()


def test_one_element_per_group() -> None:
    """m = 1: output = bias, grad_input = 0, grad_grad_output = ggb, grad_x = 0, grad_weight = 0."""
    rng = np.random.default_rng(4)
    x, dy, h = rng.standard_normal((3, 5)), rng.standard_normal((3, 5)), rng.standard_normal((3, 5))
    w, b, gw, gb = (rng.standard_normal(5) for _ in range(4))
    assert np.array_equal(oracle.group_norm(x, 5, w, b), np.broadcast_to(b, (3, 5)))
    assert not oracle.group_norm_backward(dy, x, 5, w)[0].any()
    ggo, gx, gwt = oracle.group_norm_double_backward(h, gw, gb, dy, x, 5, w)
    assert np.array_equal(ggo, np.broadcast_to(gb, (3, 5)))
    assert not gx.any() and not gwt.any()


def test_exact_ties_round_to_even() -> None:
    """x = (0, 2), eps = 0: r = 1 and xhat = (-1, 1), so y = b -+ 1 exactly; with b = 2^53 + 2 these are
    the midpoints 2^53 + 1 and 2^53 + 3, which round to the even neighbours 2^53 and 2^53 + 4."""
    b = np.array([2.0**53 + 2])
    y = oracle.group_norm(np.array([[[0.0, 2.0]]]), 1, np.array([1.0]), b, 0.0)
    assert y.ravel().tolist() == [2.0**53, 2.0**53 + 4]


def test_cancelling_samples_give_an_exact_zero() -> None:
    """Sample 1 is 3 x sample 0 with eps = 0, so xhat is the same (r_1 = r_0 / 3, one square class) and
    dy_1 = -dy_0 cancels grad_weight exactly: the oracle must merge the roots, not loop forever."""
    x0 = np.array([0.0, 1.0, 5.0])
    x = np.stack([x0, 3 * x0])[:, None, :]
    dy0 = np.array([0.3, -1.0, 2.0])
    dy = np.stack([dy0, -dy0])[:, None, :]
    _, dw, db = oracle.group_norm_backward(dy, x, 1, None, 0.0)
    assert dw.tolist() == [0.0] and db.tolist() == [0.0]
    # grad_weight(2nd) = sum dy r P(h); with h_1 = 3 h_0, P(h_1) = 3 P(h_0) and r_1 = r_0 / 3: cancels too
    h = np.stack([x0 - 2.0, 3 * (x0 - 2.0)])[:, None, :]
    assert oracle.group_norm_double_backward(h, None, None, dy, x, 1, None, 0.0)[2].tolist() == [0.0]


def test_results_past_the_float64_range_are_infinite() -> None:
    w, b = np.array([1.5e308]), np.array([1.5e308])
    y = oracle.group_norm(np.array([[[0.0, 2.0]]]), 1, w, b, 0.0)  # exactly b - w and b + w
    assert y.ravel().tolist() == [0.0, math.inf]


def test_eps_zero_with_a_constant_group_is_nan_in_that_group_only() -> None:
    x = np.array([[[1.0, 1.0], [2.0, 5.0]]])  # group 0 constant, group 1 not
    y = oracle.group_norm(x, 2, eps=0.0)
    assert np.isnan(y[0, 0]).all() and np.isfinite(y[0, 1]).all()
    dx, dw, db = oracle.group_norm_backward(np.ones_like(x), x, 2, eps=0.0)
    assert np.isnan(dx[0, 0]).all() and np.isfinite(dx[0, 1]).all()
    assert math.isnan(dw[0]) and math.isfinite(dw[1]) and np.isfinite(db).all()


def test_empty_batch() -> None:
    x = np.zeros((0, 4, 2))
    assert oracle.group_norm(x, 2).shape == (0, 4, 2)
    dx, dw, db = oracle.group_norm_backward(x, x, 2)
    assert dx.shape == (0, 4, 2) and dw.tolist() == [0.0] * 4 and db.tolist() == [0.0] * 4


# ----------------------------------------------------------------------------------------------------------
# Bad input
# ----------------------------------------------------------------------------------------------------------

GOOD = np.ones((2, 4, 3))


@pytest.mark.parametrize(
    "call, error, message",
    [
        (lambda: oracle.group_norm(np.where(np.arange(24).reshape(2, 4, 3) == 5, np.nan, 1.0), 2),
         ValueError, r"x contains the non-finite value nan at index \(0, 1, 2\)"),
        (lambda: oracle.group_norm_backward(np.full((2, 4, 3), np.inf), GOOD, 2),
         ValueError, "grad_output contains the non-finite value inf"),
        (lambda: oracle.group_norm(GOOD, 2, weight=np.array([1.0, 2.0, np.nan, 1.0])),
         ValueError, r"weight contains the non-finite value nan at index \(2,\)"),
        (lambda: oracle.group_norm_double_backward(None, np.array([1, 1, 1, -np.inf]), None, GOOD, GOOD, 2),
         ValueError, "grad_grad_weight contains the non-finite value -inf"),
        (lambda: oracle.group_norm(np.ones((2, 8, 3)), 3), ValueError, r"num_groups=3 does not divide C=8"),
        (lambda: oracle.group_norm(GOOD, 0), ValueError, "num_groups=0 must be a positive integer"),
        (lambda: oracle.group_norm(GOOD, True), ValueError, "num_groups=True must be a positive integer"),
        (lambda: oracle.group_norm(GOOD, 2, eps=-1e-5), ValueError, "eps=-1e-05 must be finite and non-neg"),
        (lambda: oracle.group_norm(GOOD, 2, eps=math.nan), ValueError, "eps=nan must be finite"),
        (lambda: oracle.group_norm(np.ones((2, 4), dtype=np.int64), 2), TypeError, "dtype int64"),
        (lambda: oracle.group_norm(np.ones(4), 2), ValueError, r"\(N, C, \*spatial\), got shape \(4,\)"),
        (lambda: oracle.group_norm(np.ones((2, 4, 0)), 2), ValueError, "zero-size spatial extent"),
        (lambda: oracle.group_norm(GOOD, 2, bias=np.ones(3)), ValueError, r"bias must have shape \(4,\)"),
        (lambda: oracle.group_norm_backward(np.ones((2, 4)), GOOD, 2), ValueError, "grad_output must have"),
    ],
)
def test_bad_input_is_rejected_with_a_message_naming_it(call: Any, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        call()


# ----------------------------------------------------------------------------------------------------------
# ulp and ulp_error
# ----------------------------------------------------------------------------------------------------------


def test_ulp_definition() -> None:
    assert oracle.ulp(1.0) == 2.0**-52
    assert oracle.ulp(-3.0) == 2.0**-51
    assert oracle.ulp(0.0) == 2.0**-1074
    assert oracle.ulp(2.0**-1070) == 2.0**-1074  # subnormal grid
    assert oracle.ulp(np.inf) == np.inf


def test_ulp_error() -> None:
    up = np.nextafter(1.0, 2.0)
    down = np.nextafter(1.0, 0.0)
    assert oracle.ulp_error(up, 1.0) == 1.0
    assert oracle.ulp_error(down, 1.0) == 0.5  # below a power of two the gap is half as large
    assert oracle.ulp_error(1.0 + 2**-50, 1.0) == 4.0
    assert oracle.ulp_error(5e-324, 0.0) == 1.0
    assert oracle.ulp_error(np.nan, np.nan) == 0.0
    assert oracle.ulp_error(np.inf, np.inf) == 0.0
    assert oracle.ulp_error(1.0, np.nan) == np.inf
    assert oracle.ulp_error(np.nan, 1.0) == np.inf
    assert oracle.ulp_error(np.inf, 1.0) == np.inf
    assert oracle.ulp_error(-np.inf, np.inf) == np.inf
    assert oracle.ulp_error(np.array([1.0, up]), np.array([1.0, 1.0])).tolist() == [0.0, 1.0]
