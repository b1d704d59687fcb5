"""The error model that judges an implementation's outputs against the faithful reference.

Every output element i is judged in the unit u * s_i, where u is the unit roundoff of the dtype under test and
s_i a per-element scale from a first-order rounding-error analysis of how a conforming implementation computes
GroupNorm (group statistics by summation, then elementwise formulas).  The error

    err_i = |observed_i - expected_i| / (u * s_i)

must not exceed the bound B_i = B(quantity, m, M) + Q_i / (u * s_i), where B grows like log2 of the reduction
lengths (group size m, per-channel length M = N * prod(spatial)) and Q_i is the one second-order term that can
matter (the squared mean error entering the variance of the two-pass algorithm).  SPEC.md, section "Error
model", derives every constant used here; the names below follow it.

Notation (per (sample, group) block g of m elements; a_i = w_c * dy_i; <.> is the mean over the block):
    mu = <x>, v = <(x - mu)**2>, r = (v + eps)**-1/2, A = <|x|>, X_i = r * (|x_i| + A) >= |xhat_i|.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

DTYPES = ("float16", "bfloat16", "float32", "float64")

# Sequential-run allowance in the summation depth (SPEC.md, "Summation"): pairwise or cascaded summation whose
# base blocks add at most 16 terms one after another has depth <= ceil(log2 M) + 12 per stage (15 sequential
# additions replace log2(16) = 4 tree levels, +1 for the ceilings); two stages (e.g. over the spatial extent,
# then over the channels of a group) give ceil(log2 M) + 1 + 2 * 12.
SEQUENTIAL_ALLOWANCE = 25

# Roundings allowed outside the reductions (elementwise operations, each reduction result stored), counted on
# the longest operation path of each quantity's formula (SPEC.md, "Elementwise stage").
ELEMENTWISE_ROUNDINGS = {
    "output": 6,
    "grad_input": 10,
    "grad_weight": 4,
    "grad_bias": 1,
    "grad_grad_output": 12,
    "double_grad_input": 16,
    "double_grad_weight": 12,
}
QUANTITIES = tuple(ELEMENTWISE_ROUNDINGS)

# The reference is faithful: |reference - exact| < 1 ulp(exact) <= 2 * 2**-53 * |exact| <= 2 * 2**-53 * s_i.
REFERENCE_ULPS = 2.0
REFERENCE_ROUNDOFF = 2.0**-53


def unit_roundoff(dtype: str) -> float:
    """u = 2**-p for a dtype with p significand bits: 2**-11 float16, 2**-8 bfloat16, 2**-24 float32,
    2**-53 float64."""
    try:
        return {"float16": 2.0**-11, "bfloat16": 2.0**-8, "float32": 2.0**-24, "float64": 2.0**-53}[dtype]
    except KeyError:
        raise ValueError(f"dtype={dtype!r} is not one of {DTYPES}") from None


def accumulation_roundoff(dtype: str) -> float:
    """u_a, the unit roundoff the reductions must at least achieve: float32's for float16, bfloat16 and
    float32 inputs, float64's for float64 (the low-precision policy, SPEC.md)."""
    return unit_roundoff("float64") if dtype == "float64" else unit_roundoff("float32")


def summation_depth(length: int) -> int:
    """d(M): the allowed depth of a summation of M terms, so its error is at most d(M) * u_a * sum |terms|.

    d(M) = min(M - 1, ceil(log2 M) + SEQUENTIAL_ALLOWANCE) for M >= 2 and 0 for M <= 1: any order reaches
    M - 1; pairwise / cascaded summation with short sequential runs reaches the logarithmic form.
    """
    if length <= 1:
        return 0
    return min(length - 1, math.ceil(math.log2(length)) + SEQUENTIAL_ALLOWANCE)


def mean_coefficient(m: int) -> float:
    """K_mu(m) = d(m) + 2: |mu_hat - mu| <= K_mu * u_a * A (the sum, then a division by m or a product with a
    rounded 1/m)."""
    return summation_depth(m) + 2.0


def rstd_coefficient(m: int) -> float:
    """K_r(m) = d(m)/2 + 4: |r_hat - r| <= K_r * u_a * r to first order.

    The variance sum of m squared deviations has relative error (d + 3) u_a (subtraction, square, sum,
    division);
    adding eps one more u_a relative to v + eps; r = (v + eps)**-1/2 halves that and adds sqrt and division
    (2 u_a): ((d + 4)/2 + 2) u_a.
    """
    return summation_depth(m) / 2.0 + 4.0


def statistics_coefficient(quantity: str, m: int, length: int) -> float:
    """The coefficient, in units of u_a, of the errors coming from the group statistics and the reductions.

    m is the group size, ``length`` M the per-channel reduction length N * prod(spatial).  Each is the sum,
    over
    the factors of the dominant term of the quantity's formula, of the factors' own coefficients (SPEC.md
    table).
    """
    d, dm = summation_depth(m), summation_depth(length)
    k_mu, k_r = mean_coefficient(m), rstd_coefficient(m)
    # P b = r (b - <b> - xhat <b xhat>): its dominant term r * X_i * <|b| X> has three factors r (3 K_r), two
    # deviations x - mu_hat (2 K_mu) and a group sum of products (d + 3).
    projection = 3 * k_r + 2 * k_mu + d + 3
    coefficients = {
        "output": k_mu + k_r,
        "grad_input": projection,
        "grad_weight": dm + k_mu + k_r + 4,
        "grad_bias": float(dm),
        "grad_grad_output": projection + 1,
        "double_grad_input": 5 * k_r + 3 * k_mu + 2 * d + 6,
        "double_grad_weight": projection + dm + 1,
    }
    try:
        return coefficients[quantity]
    except KeyError:
        raise ValueError(f"quantity={quantity!r} is not one of {QUANTITIES}") from None


def error_bound(quantity: str, dtype: str, m: int, length: int) -> float:
    """B(quantity, m, M) in units of u * s_i (without the second-order term Q_i).

    B = (u_a / u) * statistics_coefficient + elementwise roundings + (2**-52 / u) for the reference's own
    error.
    """
    u = unit_roundoff(dtype)
    u_a = accumulation_roundoff(dtype)
    return (
        u_a / u * statistics_coefficient(quantity, m, length)
        + ELEMENTWISE_ROUNDINGS[quantity]
        + REFERENCE_ULPS * REFERENCE_ROUNDOFF / u
    )


# ---------------------------------------------------------------------------------------------- group layout


@dataclass(frozen=True)
class GroupLayout:
    """x viewed as (N, G, C/G, S) with per-group statistics of shape (N, G, 1, 1), computed in float64.

    The statistics only size the scales, so a few correct digits suffice: a float64 two-pass is ample.
    """

    shape: tuple[int, ...]
    x: np.ndarray  # (N, G, C/G, S)
    mean: np.ndarray  # mu
    rstd: np.ndarray  # r = (v + eps)**-1/2
    abs_mean: np.ndarray  # A = <|x|>
    group_size: int  # m
    channel_length: int  # M = N * S

    @property
    def xhat(self) -> np.ndarray:
        """(x - mu) * r, the exact normalized values (to float64 accuracy)."""
        return (self.x - self.mean) * self.rstd

    @property
    def big_x(self) -> np.ndarray:
        """X_i = r (|x_i| + A): the magnitude allowed for xhat_i (centred and uncentred evaluations)."""
        return self.rstd * (np.abs(self.x) + self.abs_mean)

    def blocks(self, array: np.ndarray) -> np.ndarray:
        """Reshape an array of x's shape to (N, G, C/G, S)."""
        return np.asarray(array, dtype=np.float64).reshape(self.x.shape)

    def per_channel(self, values: np.ndarray | None, default: float) -> np.ndarray:
        """A (C,) parameter as (1, G, C/G, 1); None stands for ``default`` everywhere."""
        n, g, cpg, _ = self.x.shape
        if values is None:
            return np.full((1, g, cpg, 1), default)
        return np.asarray(values, dtype=np.float64).reshape(1, g, cpg, 1)

    def group_mean(self, array: np.ndarray) -> np.ndarray:
        """<array> over each group, shape (N, G, 1, 1)."""
        return array.mean(axis=(2, 3), keepdims=True)

    def channel_sum(self, array: np.ndarray) -> np.ndarray:
        """Sum over the batch and the spatial positions, returned with shape (C,)."""
        return array.sum(axis=(0, 3)).reshape(-1)

    def unblock(self, array: np.ndarray) -> np.ndarray:
        return np.broadcast_to(array, self.x.shape).reshape(self.shape)


def group_layout(x: np.ndarray, num_groups: int, eps: float) -> GroupLayout:
    """Split x (N, C, *spatial) into groups and compute mu, r and A per group in float64."""
    x = np.asarray(x, dtype=np.float64)
    n, c = x.shape[0], x.shape[1]
    if c % num_groups:
        raise ValueError(f"num_groups={num_groups} does not divide C={c} (input shape {x.shape})")
    s = math.prod(x.shape[2:])
    blocks = x.reshape(n, num_groups, c // num_groups, s)
    mean = blocks.mean(axis=(2, 3), keepdims=True) if blocks.size else np.zeros((n, num_groups, 1, 1))
    var = ((blocks - mean) ** 2).mean(axis=(2, 3), keepdims=True) if blocks.size else mean
    with np.errstate(divide="ignore"):
        rstd = 1.0 / np.sqrt(var + eps)
    abs_mean = np.abs(blocks).mean(axis=(2, 3), keepdims=True) if blocks.size else mean
    return GroupLayout(tuple(x.shape), blocks, mean, rstd, abs_mean, (c // num_groups) * s, n * s)


# ---------------------------------------------------------------------------------------------- tolerances


@dataclass(frozen=True)
class Tolerance:
    """What an output may deviate by: |observed - expected| <= u * bound * scale, elementwise.

    ``scale`` is s_i; ``bound`` is B_i in units of u * s_i (B plus the second-order term); both have the
    quantity's shape.
    """

    quantity: str
    dtype: str
    scale: np.ndarray
    bound: np.ndarray

    @property
    def unit(self) -> float:
        return unit_roundoff(self.dtype)

    def allowed(self) -> np.ndarray:
        """The largest admissible |observed - expected| per element."""
        return self.unit * self.bound * self.scale


def _second_order_rate(layout: GroupLayout, dtype: str) -> np.ndarray:
    """q_g = (K_mu u_a kappa_g)**2 / 2 with kappa_g = A_g r_g: the relative error of r caused by the squared
    mean error, which the two-pass variance sum((x - mu_hat)**2)/m = v + (mu_hat - mu)**2 carries."""
    k_mu = mean_coefficient(layout.group_size)
    return (k_mu * accumulation_roundoff(dtype) * layout.abs_mean * layout.rstd) ** 2 / 2.0


def _tolerance(
    quantity: str, dtype: str, layout: GroupLayout, scale: np.ndarray, r_sensitivity: np.ndarray, shape: Any
) -> Tolerance:
    """Assemble B_i = B + q_g * R_i / (u s_i), where R_i = sum_k p_k |term_k| over the terms of the exact
    formula with r-power p_k bounds |r * d(out_i)/dr|, so q_g * R_i bounds the second-order error."""
    u = unit_roundoff(dtype)
    base = error_bound(quantity, dtype, layout.group_size, layout.channel_length)
    with np.errstate(divide="ignore", invalid="ignore"):
        extra = np.where(scale > 0, r_sensitivity / (u * scale), 0.0)
    bound = base + np.nan_to_num(extra, nan=0.0, posinf=np.inf)
    return Tolerance(
        quantity, dtype, np.asarray(scale, dtype=np.float64).reshape(shape), bound.reshape(shape)
    )


def forward_tolerance(
    x: np.ndarray,
    num_groups: int,
    weight: np.ndarray | None,
    bias: np.ndarray | None,
    eps: float,
    dtype: str,
) -> Tolerance:
    """Tolerance of y = w_c (x_i - mu) r + b_c.

    s_i = |w_c| r (|x_i| + A) + |b_c|;  R_i = |w_c| r |x_i - mu| (the only term carrying r, power 1).
    """
    lay = group_layout(x, num_groups, eps)
    w = np.abs(lay.per_channel(weight, 1.0))
    b = np.abs(lay.per_channel(bias, 0.0))
    scale = w * lay.big_x + b
    q = _second_order_rate(lay, dtype)
    r_sens = q * w * np.abs(lay.xhat)
    return _tolerance(
        "output",
        dtype,
        lay,
        np.broadcast_to(scale, lay.x.shape),
        np.broadcast_to(r_sens, lay.x.shape),
        lay.shape,
    )


def _projection_magnitudes(lay: GroupLayout, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Scale and r-sensitivity of (P b)_i = r (b_i - <b> - xhat_i <b xhat>), the operator shared by
    grad_input (b = w dy) and the second order (b = grad_grad_input).

    scale_i = r |b_i| + r <|b|> + r X_i <|b| X>;  R_i = r |b_i| + r <|b|> + 3 r |xhat_i| <|b xhat|>.
    """
    ab = np.abs(b)
    r = lay.rstd
    scale = r * ab + r * lay.group_mean(ab) + r * lay.big_x * lay.group_mean(ab * lay.big_x)
    xh = np.abs(lay.xhat)
    r_sens = r * ab + r * lay.group_mean(ab) + 3 * r * xh * lay.group_mean(ab * xh)
    return scale, r_sens


def backward_tolerances(
    grad_output: np.ndarray,
    x: np.ndarray,
    num_groups: int,
    weight: np.ndarray | None,
    eps: float,
    dtype: str,
) -> dict[str, Tolerance]:
    """Tolerances of (grad_input, grad_weight, grad_bias).

    grad_input_i = (P a)_i with a = w dy: scale from :func:`_projection_magnitudes`.
    grad_weight_c = sum_{i in c} dy_i xhat_i:  s_c = sum |dy_i| X_i,  R_c = sum |dy_i xhat_i|.
    grad_bias_c = sum_{i in c} dy_i:          s_c = sum |dy_i|,      no r.
    """
    lay = group_layout(x, num_groups, eps)
    dy = lay.blocks(grad_output)
    q = _second_order_rate(lay, dtype)
    a = lay.per_channel(weight, 1.0) * dy
    s_in, r_in = _projection_magnitudes(lay, a)
    c = x.shape[1]
    s_w = lay.channel_sum(np.abs(dy) * lay.big_x)
    r_w = lay.channel_sum(q * np.abs(dy * lay.xhat))
    s_b = lay.channel_sum(np.abs(dy))
    return {
        "grad_input": _tolerance("grad_input", dtype, lay, s_in, q * r_in, lay.shape),
        "grad_weight": _tolerance("grad_weight", dtype, lay, s_w, r_w, (c,)),
        "grad_bias": _tolerance("grad_bias", dtype, lay, s_b, np.zeros(c), (c,)),
    }


def double_backward_tolerances(
    grad_grad_input: np.ndarray | None,
    grad_grad_weight: np.ndarray | None,
    grad_grad_bias: np.ndarray | None,
    grad_output: np.ndarray,
    x: np.ndarray,
    num_groups: int,
    weight: np.ndarray | None,
    eps: float,
    dtype: str,
) -> dict[str, Tolerance]:
    """Tolerances of the second order (grad_grad_output, double_grad_input, double_grad_weight), the VJP of
    (grad_input, grad_weight, grad_bias) with cotangents (b, gw, gb) = (grad_grad_input, ..._weight,
    ..._bias):

    grad_grad_output_i = w_c (P b)_i + gw_c xhat_i + gb_c
    double_grad_weight_c = sum_{i in c} dy_i (P b)_i
    double_grad_input_k = -r**2 xhat_k (<b a> - <b><a> - 3 <b xhat><a xhat>)
                          - r**2 ((b_k - <b>) <a xhat> + (a_k - <a>) <b xhat>)
                          + r (e_k - <e> - xhat_k <e xhat>),   a = w dy, e = gw_c dy.
    Each scale is the same expression with every factor replaced by its magnitude (xhat -> X, sums of
    |products|); each r-sensitivity weights the centred terms by their power of r.
    """
    lay = group_layout(x, num_groups, eps)
    shape4 = lay.x.shape
    zeros = np.zeros(shape4)
    b = zeros if grad_grad_input is None else lay.blocks(grad_grad_input)
    gw = lay.per_channel(grad_grad_weight, 0.0)
    gb = lay.per_channel(grad_grad_bias, 0.0)
    w = lay.per_channel(weight, 1.0)
    dy = lay.blocks(grad_output)
    a = w * dy
    e = gw * dy
    r = lay.rstd
    q = _second_order_rate(lay, dtype)
    big_x, xh = lay.big_x, np.abs(lay.xhat)
    mean = lay.group_mean

    s_pb, r_pb = _projection_magnitudes(lay, b)
    s_ggo = np.abs(w) * s_pb + np.abs(gw) * big_x + np.abs(gb)
    r_ggo = np.abs(w) * r_pb + np.abs(gw) * xh
    s_dw = lay.channel_sum(np.abs(dy) * s_pb)
    r_dw = lay.channel_sum(q * np.abs(dy) * r_pb)

    ab, aa, ae = np.abs(b), np.abs(a), np.abs(e)
    s_dx = (
        r**2 * big_x * (mean(ab * aa) + mean(ab) * mean(aa) + 3 * mean(ab * big_x) * mean(aa * big_x))
        + r**2 * ((ab + mean(ab)) * mean(aa * big_x) + (aa + mean(aa)) * mean(ab * big_x))
        + r * (ae + mean(ae) + big_x * mean(ae * big_x))
    )
    r_dx = (
        3 * r**2 * xh * (mean(ab * aa) + mean(ab) * mean(aa))
        + 5 * 3 * r**2 * xh * mean(ab * xh) * mean(aa * xh)
        + 3 * r**2 * ((ab + mean(ab)) * mean(aa * xh) + (aa + mean(aa)) * mean(ab * xh))
        + r * (ae + mean(ae))
        + 3 * r * xh * mean(ae * xh)
    )
    c = x.shape[1]
    return {
        "grad_grad_output": _tolerance(
            "grad_grad_output",
            dtype,
            lay,
            np.broadcast_to(s_ggo, shape4),
            np.broadcast_to(q * r_ggo, shape4),
            lay.shape,
        ),
        "double_grad_input": _tolerance("double_grad_input", dtype, lay, s_dx, q * r_dx, lay.shape),
        "double_grad_weight": _tolerance("double_grad_weight", dtype, lay, s_dw, r_dw, (c,)),
    }


# ---------------------------------------------------------------------------------------------- judging


@dataclass(frozen=True)
class Judgement:
    """The verdict on one output array.

    ``max_ratio`` is max_i err_i / B_i (at most 1 passes); ``worst_error`` and ``worst_bound`` are err and B
    at
    the element that attains it, in units of u * scale; NaN or infinity where a finite value was expected
    counts as an infinite ratio.
    """

    quantity: str
    dtype: str
    passed: bool
    size: int
    mismatched: int
    max_ratio: float
    worst_error: float
    worst_bound: float
    worst_index: tuple[int, ...] | None
    observed: float | None
    expected: float | None
    message: str

    @property
    def fraction(self) -> float:
        return self.mismatched / self.size if self.size else 0.0


def _fmt(value: float, dtype: str) -> str:
    return f"{value:.17g}" if dtype == "float64" else f"{value:.9g}"


def judge(quantity: str, observed: Any, expected: np.ndarray, tolerance: Tolerance) -> Judgement:
    """Compare ``observed`` with the reference's ``expected`` under ``tolerance``.

    err_i = |observed_i - expected_i| / (u s_i) (0 where they are equal, also when s_i = 0); element i fails
    when
    err_i > B_i.  Where ``expected`` is NaN the observed value must be NaN; where it is +-inf it must be
    equal; a NaN or infinity where a finite value is expected fails.
    """
    dtype = tolerance.dtype
    expected = np.asarray(expected, dtype=np.float64)
    try:
        obs = np.asarray(observed, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        return _failed_whole(quantity, dtype, expected.size, f"{quantity}: not a numeric array ({exc})")
    if obs.shape != expected.shape:
        return _failed_whole(
            quantity,
            dtype,
            expected.size,
            f"{quantity}: shape {obs.shape}, but should be {expected.shape}",
        )
    if expected.size == 0:
        return Judgement(quantity, dtype, True, 0, 0, 0.0, 0.0, 0.0, None, None, None, f"{quantity}: empty")
    u = tolerance.unit
    scale, bound = tolerance.scale, tolerance.bound
    diff = np.abs(obs - expected)
    finite = np.isfinite(expected)
    same_nonfinite = ~finite & ((np.isnan(expected) & np.isnan(obs)) | (expected == obs))
    with np.errstate(divide="ignore", invalid="ignore"):
        err = np.where(diff == 0, 0.0, diff / (u * scale))
        ratio = np.where(err == 0, 0.0, err / bound)
    err = np.where(finite, np.nan_to_num(err, nan=np.inf), np.where(same_nonfinite, 0.0, np.inf))
    ratio = np.where(finite, np.nan_to_num(ratio, nan=np.inf), np.where(same_nonfinite, 0.0, np.inf))
    failing = ratio > 1.0
    flat = int(np.argmax(ratio))
    index = tuple(int(i) for i in np.unravel_index(flat, ratio.shape))
    mismatched = int(failing.sum())
    max_ratio = float(ratio.reshape(-1)[flat])
    worst_error = float(err.reshape(-1)[flat])
    worst_bound = float(np.broadcast_to(bound, ratio.shape).reshape(-1)[flat])
    o, x = float(obs.reshape(-1)[flat]), float(expected.reshape(-1)[flat])
    pct = 100.0 * mismatched / expected.size
    message = (
        f"{quantity}: mismatched elements: {mismatched} / {expected.size} ({pct:.3g}%); "
        f"worst err {worst_error:.3g} u*scale at index {index} (bound {worst_bound:.3g}): "
        f"observed {_fmt(o, dtype)}, expected {_fmt(x, dtype)}, "
        f"scale {float(np.broadcast_to(scale, ratio.shape).reshape(-1)[flat]):.3g}, "
        f"u = 2**{int(math.log2(u))}"
    )
    return Judgement(
        quantity,
        dtype,
        mismatched == 0,
        expected.size,
        mismatched,
        max_ratio,
        worst_error,
        worst_bound,
        index,
        o,
        x,
        message,
    )


def _failed_whole(quantity: str, dtype: str, size: int, message: str) -> Judgement:
    return Judgement(quantity, dtype, False, size, size, math.inf, math.inf, 0.0, None, None, None, message)
