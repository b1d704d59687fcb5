"""The error model that judges an implementation's outputs against the faithful reference.

Every output element i is judged in the unit u * s_i, where u is the unit roundoff of the dtype under test and
s_i a per-element scale from a first-order rounding-error analysis of how a conforming implementation computes
GroupNorm (group statistics by summation, then elementwise formulas).  The error

    err_i = |observed_i - expected_i| / (u * s_i)

must not exceed the bound B_i = B(quantity, m, M) + H_i / (u * s_i), where B grows like log2 of the reduction
lengths (group size m, per-channel length M = N * prod(spatial)) and H_i bounds the terms of higher order in
the statistics' errors (they matter only where the mean error approaches sigma).  SPEC.md section 3, "Error
model", derives every constant used here; the names below follow it.

Notation (per (sample, group) block of m elements; a_i = w_c * dy_i; <.> is the mean over the block):
    mu = <x>, v = <(x - mu)**2>, r = (v + eps)**-1/2, A = <|x|>, kappa = A r, X_i = r (|x_i| + A).
"""

from __future__ import annotations

import contextlib
import contextvars
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from gn_spec import layout
from gn_spec.formats import NAMES, format_of

DTYPES = NAMES  # the format names of gn_spec.formats, in its order

# Sequential-run allowance in the summation depth (SPEC.md, "Summation"): pairwise or cascaded summation whose
# base blocks add at most 16 terms one after another has depth <= ceil(log2 M) + 12 per stage (15 sequential
# additions replace log2(16) = 4 tree levels, +1 for the ceilings); two stages (e.g. over the spatial extent,
# then over the channels of a group) give ceil(log2 M) + 1 + 2 * 12.
SEQUENTIAL_ALLOWANCE = 25

# Roundings allowed in the elementwise stage, in the storage precision u: the results of the elementwise
# operations on the longest path of each quantity's formula (SPEC.md, "Elementwise stage").  The statistics
# and every reduction must be carried in at least the accumulation precision u_a.
ELEMENTWISE_ROUNDINGS = {
    "output": 5,
    "grad_input": 8,
    "grad_weight": 3,
    "grad_bias": 1,
    "grad_grad_output": 10,
    "double_grad_input": 14,
    "double_grad_weight": 10,
}
QUANTITIES = tuple(ELEMENTWISE_ROUNDINGS)

# The reference is faithful: |reference - exact| < 1 ulp(exact) <= 2 * 2**-53 * |exact| <= 2 * 2**-53 * s_i.
REFERENCE_ULPS = 2.0
REFERENCE_ROUNDOFF = format_of("float64").unit_roundoff  # 2**-53


def unit_roundoff(dtype: str) -> float:
    """u = 2**-p for a dtype with p significand bits: 2**-11 float16, 2**-8 bfloat16, 2**-24 float32,
    2**-53 float64 (the table in :mod:`gn_spec.formats`)."""
    return format_of(dtype).unit_roundoff


def smallest_subnormal(dtype: str) -> float:
    """eta, the smallest positive subnormal: 2**-24 float16, 2**-133 bfloat16, 2**-149 float32, 2**-1074
    float64."""
    return format_of(dtype).smallest_subnormal


def underflow_floor(dtype: str, roundings: int = 1) -> float:
    """The absolute allowance for ``roundings`` roundings of results to ``dtype`` (SPEC.md, "Underflow").

    With gradual underflow, fl(z) = z (1 + delta) + e with |delta| <= u and |e| <= eta/2 (e = 0 for sums):
    rounding the final result to the dtype adds at most eta/2 that the relative model does not cover.
    """
    return roundings * smallest_subnormal(dtype) / 2.0


def accumulation_roundoff(dtype: str) -> float:
    """u_a, the unit roundoff the reductions must at least achieve: float32's for float16, bfloat16 and
    float32 inputs, float64's for float64 (the low-precision policy, SPEC.md)."""
    return format_of(dtype).accumulation_roundoff


#: The summation classes (SPEC.md, "Summation"): the log-depth bound the verdict uses, and the looser bound of
#: a sequential running sum, which reports use to say which class a failing target meets.
SUMMATIONS = ("log-depth", "sequential")
_SUMMATION: contextvars.ContextVar[str] = contextvars.ContextVar("gn_spec_summation", default="log-depth")
#: The sequential class is derived for M - 1 < 2**23 terms (so (M - 1) u_a <= 1/2 for every u_a <= 2**-24).
SEQUENTIAL_MAX_TERMS = 2**23


@contextlib.contextmanager
def summation_class(name: str) -> Iterator[None]:
    """Judge with the bounds of summation class ``name`` (one of :data:`SUMMATIONS`) inside the block."""
    if name not in SUMMATIONS:
        raise ValueError(f"summation class {name!r} is not one of {SUMMATIONS}")
    token = _SUMMATION.set(name)
    try:
        yield
    finally:
        _SUMMATION.reset(token)


def summation_depth(length: int) -> float:
    """d(M): the allowed depth of a summation of M terms, so its error is at most d(M) u_a sum |terms|.

    Log-depth class (the default): d(M) = min(M - 1, ceil(log2 M) + SEQUENTIAL_ALLOWANCE) for M >= 2 and 0
    for M <= 1: any order reaches M - 1; pairwise or cascaded summation with short sequential runs reaches the
    logarithmic form.  Sequential class (inside ``summation_class("sequential")``): a running sum has depth
    D = M - 1, and its error is at most gamma_D sum |terms| with gamma_D = D u_a / (1 - D u_a) exactly, so
    d(M) = D / (1 - D 2**-24) covers every u_a <= 2**-24 (a factor below 1.08 for the largest groups the
    profiles generate); raises ValueError beyond :data:`SEQUENTIAL_MAX_TERMS`.
    """
    if length <= 1:
        return 0
    if _SUMMATION.get() == "sequential":
        if length > SEQUENTIAL_MAX_TERMS:
            raise ValueError(f"the sequential class is derived for at most 2**23 terms, not {length}")
        depth = length - 1
        return depth / (1.0 - depth * 2.0**-24)
    return min(length - 1, math.ceil(math.log2(length)) + SEQUENTIAL_ALLOWANCE)


def mean_coefficient(m: int) -> float:
    """K_mu(m) = d(m) + 2: |mu_hat - mu| <= K_mu u_a A (the sum, then a division by m or a product with a
    rounded 1/m)."""
    return summation_depth(m) + 2.0


def rstd_coefficient(m: int) -> float:
    """K_r(m) = d(m)/2 + 4: |r_hat - r| <= K_r u_a r to first order.

    The sum of m squared deviations has relative error (d + 3) u_a (subtraction, square, sum, division by
    m); adding eps one more u_a relative to v + eps; r = (v + eps)**-1/2 halves that and adds the square root
    and the division (2 u_a): ((d + 4)/2 + 2) u_a.  (The mean error enters v only at second order.)
    """
    return summation_depth(m) / 2.0 + 4.0


# ---------------------------------------------------------------------------------------------- group layout


@dataclass(frozen=True)
class GroupLayout:
    """x viewed as (N, G, C/G, S) (:func:`gn_spec.layout.blocks`) with per-group statistics of shape
    (N, G, 1, 1), computed in float64.

    The statistics only size the scales, so a few correct digits suffice: a float64 two-pass is ample.
    """

    shape: tuple[int, ...]
    x: np.ndarray  # (N, G, C/G, S)
    mean: np.ndarray  # mu
    rstd: np.ndarray  # r = (v + eps)**-1/2
    abs_mean: np.ndarray  # A = <|x|>
    group_size: int  # m
    channel_length: int  # M = N * S
    eps: float

    @property
    def xhat(self) -> np.ndarray:
        """(x - mu) r, the exact normalized values (to float64 accuracy)."""
        return (self.x - self.mean) * self.rstd

    @property
    def big_x(self) -> np.ndarray:
        """X_i = r (|x_i| + A): the magnitude an error of xhat_i is measured against; it covers the
        centred evaluation (x_i - mu) r and the uncentred one x_i r - mu r alike."""
        return self.rstd * (np.abs(self.x) + self.abs_mean)

    def blocks(self, array: Any) -> np.ndarray:
        """An array of x's shape as (N, G, C/G, S)."""
        return np.asarray(array, dtype=np.float64).reshape(self.x.shape)

    def per_channel(self, values: Any, default: float) -> np.ndarray:
        """A (C,) parameter as (1, G, C/G, 1); None stands for ``default`` everywhere."""
        _, g, cpg, _ = self.x.shape
        if values is None:
            return np.full((1, g, cpg, 1), default)
        return np.asarray(values, dtype=np.float64).reshape(1, g, cpg, 1)

    def group_mean(self, array: np.ndarray) -> np.ndarray:
        """<array> over each group, shape (N, G, 1, 1)."""
        return np.broadcast_to(array, self.x.shape).mean(axis=(2, 3), keepdims=True)

    def channel_sum(self, array: np.ndarray) -> np.ndarray:
        """Sum over the batch and the spatial positions, shape (C,)."""
        return np.broadcast_to(array, self.x.shape).sum(axis=(0, 3)).reshape(-1)

    def full(self, array: np.ndarray) -> np.ndarray:
        """A (N, G, C/G, S)-broadcastable array as x's original shape."""
        return np.broadcast_to(array, self.x.shape).reshape(self.shape)


def group_layout(x: Any, num_groups: int, eps: float) -> GroupLayout:
    """Split x (N, C, *spatial) into groups by :func:`gn_spec.layout.blocks`; mu, r and A per group in
    float64."""
    x = np.asarray(x, dtype=np.float64)
    blocks = layout.blocks(x, num_groups)
    n, _, cpg, s = blocks.shape
    if blocks.size == 0:
        zeros = np.zeros((n, num_groups, 1, 1))
        return GroupLayout(tuple(x.shape), blocks, zeros, zeros + 1.0, zeros, cpg * s, n * s, eps)
    # The scales need r to a few digits also where v << mu**2 (a constant group of 1e26 has v = 0 exactly):
    # one correction step of the mean makes the deviations, and so v, accurate to O(u**2 kappa**2).
    first = blocks.mean(axis=(2, 3), keepdims=True)
    mean = first + (blocks - first).mean(axis=(2, 3), keepdims=True)
    var = ((blocks - mean) ** 2).mean(axis=(2, 3), keepdims=True)
    with np.errstate(divide="ignore"):
        rstd = 1.0 / np.sqrt(var + eps)
    abs_mean = np.abs(blocks).mean(axis=(2, 3), keepdims=True)
    return GroupLayout(tuple(x.shape), blocks, mean, rstd, abs_mean, cpg * s, n * s, eps)


# ---------------------------------------------------------------------------------------------- terms


@dataclass(frozen=True)
class Factor:
    """One computed factor of a term of an output formula (SPEC.md, "Factors").

    ``value`` is |exact value|; the factor's first-order error is at most ``coefficient`` * u_a * ``bound``;
    ``shift`` is the absolute error the mean error alone can cause (for the terms of higher order);
    ``r_power`` counts the factors r inside it (1 for xhat).
    """

    value: np.ndarray
    bound: np.ndarray
    coefficient: float
    shift: np.ndarray | float = 0.0
    r_power: int = 0


@dataclass(frozen=True)
class Term:
    """multiplier * r**r_power * prod(factors); ``multiplier`` holds |exact inputs| and numeric constants."""

    multiplier: np.ndarray | float
    r_power: int
    factors: tuple[Factor, ...] = ()


@dataclass(frozen=True)
class Statistics:
    """The per-group error quantities of the statistics, for one dtype (SPEC.md, "Statistics").

    kappa = A r.  To first order |mu_hat - mu| <= K_mu u_a A and |r_hat - r| <= K_r u_a (1 + kappa) r
    (``rho_first``).  eps_mu = K_mu u_a kappa bounds the shift of any xhat caused by the mean error.  To all
    orders r_hat = r (1 + theta) with -rho_down <= theta <= rho_up:

    - rho_up: the computed v_hat + eps lies within delta_v = (d + 4) u_a (1 + kappa) of v + eps, relative
      (the variance's error, then adding eps), and is at least eps (1 - u_a), because every admitted way of
      computing the variance (two-pass, Welford, Chan's merge) gives v_hat >= 0; the square root and the
      division add a factor (1 + u_a)**2.  So rho_up is the larger of rho_first and (1 + u_a)**2
      min((1 - delta_v)**-1/2, ((v + eps) / (eps (1 - u_a)))**1/2) - 1, the first argument inf once
      delta_v >= 1: a variance known to no digit may come out 0, and then r_hat = eps**-1/2.  (To first
      order the second is delta_v / 2 + 2 u_a <= rho_first.)
    - rho_down = rho_first + min(eps_mu**2 / 2, 1): (1 + delta_v)**-1/2 (1 - u_a)**2 >= 1 - rho_first, and
      the two-pass variance carries v + (mu_hat - mu)**2 >= v, which can only lower r, by the factor
      (1 + (mu_hat - mu)**2 r**2)**-1/2.
    """

    layout: GroupLayout
    dtype: str
    depth: float
    k_mu: float
    k_r: float
    kappa: np.ndarray
    eps_mu: np.ndarray
    rho_first: np.ndarray
    rho_up: np.ndarray
    rho_down: np.ndarray

    def xhat(self) -> Factor:
        """xhat_i = (x_i - mu) r.  Its error is at most K_mu u_a A r (the mean) + K_r u_a (1 + kappa)|xhat_i|
        (r) + 2 u_a |xhat_i| (subtraction, product) + u_a r |x_i| (the uncentred form x_i r - mu r), so
        at most (K_mu + 2) u_a (X_i + (1 + kappa) |xhat_i|), since K_r <= K_mu + 2."""
        lay = self.layout
        value = np.abs(lay.xhat)
        return Factor(value, lay.big_x + (1 + self.kappa) * value, self.k_mu + 2, self.eps_mu, 1)

    def mean(self, f: np.ndarray, products: int) -> Factor:
        """<f>, f a product of exact inputs formed with ``products`` roundings: error at most
        (d + products + 1) u_a <|f|> (the sum and the division by m)."""
        lay = self.layout
        return Factor(np.abs(lay.group_mean(f)), lay.group_mean(np.abs(f)), self.depth + products + 1)

    def mean_xhat(self, f: np.ndarray, products: int) -> Factor:
        """<f xhat>, f as in :meth:`mean`.  Error at most (d + products + 2) u_a <|f| X> (sum, the products
        with f and with xhat, the division; X covers the uncentred form <f x> - mu <f>) + K_mu u_a A r <|f|>
        (the mean) + K_r u_a (1 + kappa) <|f xhat|> (r), so at most (d + products + 2 + K_mu) u_a
        (<|f| X> + (1 + kappa) <|f xhat|>).  The mean error alone shifts it by eps_mu <|f|>."""
        lay = self.layout
        af = np.abs(f)
        return Factor(
            np.abs(lay.group_mean(f * lay.xhat)),
            lay.group_mean(af * lay.big_x) + (1 + self.kappa) * lay.group_mean(af * np.abs(lay.xhat)),
            self.depth + products + 2 + self.k_mu,
            self.eps_mu * lay.group_mean(af),
            1,
        )


def statistics(layout: GroupLayout, dtype: str) -> Statistics:
    """The error quantities of the group statistics of ``layout`` for ``dtype``."""
    m = layout.group_size
    k_mu = mean_coefficient(m)
    k_r = rstd_coefficient(m)
    u_a = accumulation_roundoff(dtype)
    kappa = layout.abs_mean * layout.rstd
    eps_mu = k_mu * u_a * kappa
    rho_first = k_r * u_a * (1 + kappa)
    depth = summation_depth(m)
    delta_v = (depth + 4) * u_a * (1 + kappa)  # the variance's error, then adding eps (SPEC.md 3.4)
    with np.errstate(divide="ignore", invalid="ignore"):
        known = np.where(delta_v < 1, 1.0 / np.sqrt(np.maximum(1 - delta_v, 0.0)), np.inf)
        # v_hat + eps >= eps (1 - u_a) caps r_hat / r at ((v + eps) / (eps (1 - u_a)))**1/2
        eps_cap = 1.0 / (layout.rstd * math.sqrt(layout.eps * (1 - u_a))) if layout.eps > 0 else np.inf
    rho_up = np.maximum(rho_first, (1 + u_a) ** 2 * np.minimum(known, eps_cap) - 1)
    rho_down = rho_first + np.minimum(eps_mu**2 / 2, 1.0)
    return Statistics(layout, dtype, depth, k_mu, k_r, kappa, eps_mu, rho_first, rho_up, rho_down)


@dataclass(frozen=True)
class Magnitudes:
    """First-order scale s, its coefficient K (in u_a) and the higher-order remainder H (absolute)."""

    scale: np.ndarray
    coefficient: float
    remainder: np.ndarray


def magnitudes(stats: Statistics, terms: list[Term]) -> Magnitudes:
    """Scale, coefficient and remainder of a sum of terms.

    For a term T = W r**p prod_k f_k a first-order perturbation gives
        |dT| <= sum_k c_k u_a E_k W r**p prod_{j != k} |f_j| + p K_r u_a (1 + kappa) |T|,
    so T contributes to the scale one component per computed factor, E_k W r**p prod_{j != k} |f_j| with
    coefficient c_k, and (1 + kappa) |T| with coefficient p K_r when p > 0 (|T| with coefficient 0 when it has
    neither); since the error is at most sum_j c_j comp_j <= max_j c_j * sum_j comp_j, the quantity's
    coefficient is the largest c_j.

    To all orders, with P the total power of r, theta its relative error and e_k the error of factor k
    (at most shift_k + c_k u_a E_k, its mean shift and its first-order error),
        |(1 + theta)**P prod_k (f_k + e_k) - prod_k f_k| <= (1 + tau) prod_k (|f_k| + |e_k|) - prod_k |f_k|,
    tau = max((1 + rho_up)**P - 1, 1 - (1 - rho_down)**P); this less its first-order part is the remainder
    H, which keeps the bound valid where the mean error is comparable to the standard deviation, or the
    variance's error to the variance.
    """
    lay = stats.layout
    base_r = lay.rstd
    u_a = accumulation_roundoff(stats.dtype)
    one_plus_kappa = 1 + stats.kappa
    scale: np.ndarray = np.zeros(1)
    remainder: np.ndarray = np.zeros(1)
    coefficient = 0.0
    for term in terms:
        base = term.multiplier * base_r**term.r_power
        values = [f.value for f in term.factors]
        product = base * math.prod(values) if values else base * np.ones(1)
        computed = [k for k, f in enumerate(term.factors) if f.coefficient > 0]
        for k in computed:
            others = math.prod(v for j, v in enumerate(values) if j != k) if len(values) > 1 else 1.0
            scale = scale + base * term.factors[k].bound * others
            coefficient = max(coefficient, term.factors[k].coefficient)
        if term.r_power:
            scale = scale + one_plus_kappa * product
            coefficient = max(coefficient, term.r_power * stats.k_r)
        elif not computed:
            scale = scale + product
        power = term.r_power + sum(f.r_power for f in term.factors)
        tau = np.maximum((1 + stats.rho_up) ** power - 1, 1 - np.maximum(1 - stats.rho_down, 0.0) ** power)
        with np.errstate(over="ignore", invalid="ignore"):  # inf: outside the model's domain, see SPEC.md
            # each factor off by its mean shift and its own first-order error, e_k = c_k u_a E_k
            off = [f.shift + f.coefficient * u_a * f.bound for f in term.factors]
            shifted = base * math.prod(v + o for v, o in zip(values, off, strict=True)) if values else base
            first = sum(
                base * o * math.prod(v for j, v in enumerate(values) if j != k) for k, o in enumerate(off)
            )
            linear = product * (1 + power * stats.rho_first) + first
            extra = np.nan_to_num(np.maximum((1 + tau) * shifted - linear, 0.0), nan=np.inf)
        remainder = remainder + extra
    return Magnitudes(np.asarray(scale), coefficient, np.asarray(remainder))


# ---------------------------------------------------------------------------------------------- tolerances


@dataclass(frozen=True)
class Tolerance:
    """What an output may deviate by: |observed - expected| <= u * bound * scale, elementwise.

    ``scale`` is s_i and ``bound`` is B_i, the allowed err_i in units of u * s_i (B plus the higher-order
    remainder); both have the quantity's shape.  ``floor`` is an absolute allowance on top, eta/2 for each
    rounding of a result to the storage dtype (:func:`underflow_floor`): below the dtype's normal range the
    relative model |fl(z) - z| <= u |z| fails, and a correctly rounded tiny result may be 0.
    """

    quantity: str
    dtype: str
    scale: np.ndarray
    bound: np.ndarray
    floor: float = 0.0

    @property
    def unit(self) -> float:
        return unit_roundoff(self.dtype)

    def allowed(self) -> np.ndarray:
        """The largest admissible |observed - expected| per element."""
        return self.unit * self.bound * self.scale + self.floor


def error_bound(quantity: str, dtype: str, coefficient: float, extra_depth: float = 0) -> float:
    """B = (u_a / u) (coefficient + extra_depth) + elementwise roundings + 2 * 2**-53 / u.

    ``coefficient`` comes from :func:`magnitudes`; ``extra_depth`` is d(M) + 1 for the quantities summed per
    channel over M = N * prod(spatial) elements; the last term is the reference's own error (faithful).
    """
    if quantity not in ELEMENTWISE_ROUNDINGS:
        raise ValueError(f"quantity={quantity!r} is not one of {QUANTITIES}")
    u = unit_roundoff(dtype)
    u_a = accumulation_roundoff(dtype)
    return (
        u_a / u * (coefficient + extra_depth)
        + ELEMENTWISE_ROUNDINGS[quantity]
        + REFERENCE_ULPS * REFERENCE_ROUNDOFF / u
    )


def _elementwise(quantity: str, stats: Statistics, terms: list[Term]) -> Tolerance:
    """Tolerance of an output computed element by element from the terms."""
    lay = stats.layout
    mag = magnitudes(stats, terms)
    scale = lay.full(mag.scale)
    bound = error_bound(quantity, stats.dtype, mag.coefficient) + _ratio(
        lay.full(mag.remainder), scale, stats.dtype
    )
    return Tolerance(quantity, stats.dtype, scale, bound, underflow_floor(stats.dtype))


def _per_channel(quantity: str, stats: Statistics, terms: list[Term]) -> Tolerance:
    """Tolerance of an output summed per channel over the batch and the spatial positions."""
    lay = stats.layout
    mag = magnitudes(stats, terms)
    scale = lay.channel_sum(mag.scale)
    depth = summation_depth(lay.channel_length) + 1
    bound = error_bound(quantity, stats.dtype, mag.coefficient, depth) + _ratio(
        lay.channel_sum(mag.remainder), scale, stats.dtype
    )
    return Tolerance(quantity, stats.dtype, scale, bound, underflow_floor(stats.dtype))


def _ratio(remainder: np.ndarray, scale: np.ndarray, dtype: str) -> np.ndarray:
    """remainder / (u scale), 0 where both are 0 and inf where only the scale is."""
    with np.errstate(divide="ignore", invalid="ignore"):
        out = remainder / (unit_roundoff(dtype) * scale)
    return np.where(remainder > 0, out, 0.0)


def _input(values: np.ndarray) -> Factor:
    """An exact input (no error of its own)."""
    a = np.abs(values)
    return Factor(a, a, 0.0)


def _projection_terms(stats: Statistics, b: np.ndarray, multiplier: np.ndarray | float = 1.0) -> list[Term]:
    """Terms of (P b)_i = r (b_i - <b> - xhat_i <b xhat>), the operator of grad_input (b = w dy) and of
    the second order (b = grad_grad_input); b is a product of at most two inputs (one rounding)."""
    return [
        Term(multiplier * np.abs(b), 1),
        Term(multiplier, 1, (stats.mean(b, 1),)),
        Term(multiplier, 1, (stats.xhat(), stats.mean_xhat(b, 1))),
    ]


def forward_tolerance(x: Any, num_groups: int, weight: Any, bias: Any, eps: float, dtype: str) -> Tolerance:
    """Tolerance of y_i = w_c xhat_i + b_c.

    Scale s_i = |w_c| X_i + |b_c| = |w_c| r (|x_i| + A) + |b_c|.
    """
    stats = statistics(group_layout(x, num_groups, eps), dtype)
    lay = stats.layout
    w = np.abs(lay.per_channel(weight, 1.0))
    b = np.abs(lay.per_channel(bias, 0.0))
    return _elementwise("output", stats, [Term(w, 0, (stats.xhat(),)), Term(b, 0)])


def backward_tolerances(
    grad_output: Any, x: Any, num_groups: int, weight: Any, eps: float, dtype: str
) -> dict[str, Tolerance]:
    """Tolerances of (grad_input, grad_weight, grad_bias):

    grad_input_i  = (P a)_i = r (a_i - <a> - xhat_i <a xhat>),  a = w_c dy
    grad_weight_c = sum_{i in c} dy_i xhat_i
    grad_bias_c   = sum_{i in c} dy_i
    """
    stats = statistics(group_layout(x, num_groups, eps), dtype)
    lay = stats.layout
    dy = lay.blocks(grad_output)
    a = lay.per_channel(weight, 1.0) * dy
    return {
        "grad_input": _elementwise("grad_input", stats, _projection_terms(stats, a)),
        "grad_weight": _per_channel("grad_weight", stats, [Term(np.abs(dy), 0, (stats.xhat(),))]),
        "grad_bias": _per_channel("grad_bias", stats, [Term(np.abs(dy), 0)]),
    }


def double_backward_tolerances(
    grad_grad_input: Any,
    grad_grad_weight: Any,
    grad_grad_bias: Any,
    grad_output: Any,
    x: Any,
    num_groups: int,
    weight: Any,
    eps: float,
    dtype: str,
) -> dict[str, Tolerance]:
    """Tolerances of the second order, the VJP of (grad_input, grad_weight, grad_bias) with cotangents
    (b, gw, gb) = (grad_grad_input, grad_grad_weight, grad_grad_bias), any of them None (zero):

    grad_grad_output_i   = w_c (P b)_i + gw_c xhat_i + gb_c
    double_grad_weight_c = sum_{i in c} dy_i (P b)_i
    double_grad_input_k  = - r**2 xhat_k (<b a> - <b><a> - 3 <b xhat><a xhat>)
                           - r**2 ((b_k - <b>) <a xhat> + (a_k - <a>) <b xhat>)
                           + r (e_k - <e> - xhat_k <e xhat>),      a = w_c dy, e = gw_c dy.
    """
    stats = statistics(group_layout(x, num_groups, eps), dtype)
    lay = stats.layout
    b = np.zeros(lay.x.shape) if grad_grad_input is None else lay.blocks(grad_grad_input)
    gw = lay.per_channel(grad_grad_weight, 0.0)
    gb = lay.per_channel(grad_grad_bias, 0.0)
    w = lay.per_channel(weight, 1.0)
    dy = lay.blocks(grad_output)
    a, e = w * dy, gw * dy
    xh = stats.xhat
    mean, mean_xh = stats.mean, stats.mean_xhat
    ggo = [*_projection_terms(stats, b, np.abs(w)), Term(np.abs(gw), 0, (xh(),)), Term(np.abs(gb), 0)]
    dgw = _projection_terms(stats, b, np.abs(dy))
    dgx = [
        Term(1.0, 2, (xh(), mean(b * a, 2))),
        Term(1.0, 2, (xh(), mean(b, 0), mean(a, 1))),
        Term(3.0, 2, (xh(), mean_xh(b, 0), mean_xh(a, 1))),
        Term(np.abs(b), 2, (mean_xh(a, 1),)),
        Term(1.0, 2, (mean(b, 0), mean_xh(a, 1))),
        Term(np.abs(a), 2, (mean_xh(b, 0),)),
        Term(1.0, 2, (mean(a, 1), mean_xh(b, 0))),
        Term(np.abs(e), 1),
        Term(1.0, 1, (mean(e, 1),)),
        Term(1.0, 1, (xh(), mean_xh(e, 1))),
    ]
    return {
        "grad_grad_output": _elementwise("grad_grad_output", stats, ggo),
        "double_grad_input": _elementwise("double_grad_input", stats, dgx),
        "double_grad_weight": _per_channel("double_grad_weight", stats, dgw),
    }


# ---------------------------------------------------------------------------------------------- judging


@dataclass(frozen=True)
class Judgement:
    """The verdict on one output array.

    ``max_ratio`` is max_i err_i / B_i (at most 1 passes); ``worst_error`` and ``worst_bound`` are err and B
    at the element that attains it, in units of u * scale; NaN or infinity where a finite value was expected
    counts as an infinite ratio (never as the largest float).  ``nonfinite`` counts those elements, and
    ``worst_kind`` says what the worst element is when it is one of them: ``"NaN output"``,
    ``"+inf output"`` or ``"-inf output"`` (empty otherwise).
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
    nonfinite: int = 0
    worst_kind: str = ""

    @property
    def fraction(self) -> float:
        return self.mismatched / self.size if self.size else 0.0


def overflow_threshold(dtype: str) -> float:
    """The smallest magnitude that rounds to infinity in ``dtype`` (round to nearest): (2 - u) 2**emax; inf
    for float64, whose threshold lies beyond its own range."""
    return format_of(dtype).overflow_threshold


def _fmt(value: float, dtype: str) -> str:
    return f"{value:.17g}" if dtype == "float64" else f"{value:.9g}"


def format_value(value: float, dtype: str) -> str:
    """A value as judgement messages write it: all the digits the dtype under test can hold."""
    return _fmt(value, dtype)


def nonfinite_kind(observed: float) -> str:
    """What a non-finite observation is, for messages: ``"NaN output"``, ``"+inf output"``, ``"-inf output"``
    (empty for a finite one)."""
    if math.isnan(observed):
        return "NaN output"
    if math.isinf(observed):
        return "+inf output" if observed > 0 else "-inf output"
    return ""


def format_error(value: float, kind: str = "") -> str:
    """An error figure for people: ``0.031``, ``12.5``, ``inf (NaN output)``, ``inf (+inf output)``."""
    if math.isinf(value) or math.isnan(value):
        return f"inf ({kind})" if kind else "inf"
    return f"{value:.3g}"


def judge(
    quantity: str, observed: Any, expected: np.ndarray, tolerance: Tolerance, *, against: str = "expected"
) -> Judgement:
    """Compare ``observed`` with the reference's ``expected`` under ``tolerance``.

    ``against`` is what the message calls ``expected``: a metamorphic property compares two outputs of the
    target, and its "expected" is the target's other output, not the exact value.

    err_i = |observed_i - expected_i| / (u s_i) (0 where they are equal, also when s_i = 0); element i fails
    when |observed_i - expected_i| > u B_i s_i + floor, that is err_i > B_i + floor / (u s_i).  Where
    ``expected`` is NaN the observed value must be NaN; where it is +-inf it must be equal; a NaN or infinity
    where a finite value is expected fails.
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
    scale = tolerance.scale
    # An exact value beyond the dtype's range rounds to +-inf; that (correctly rounded) answer is accepted.
    overflow = np.abs(expected) >= overflow_threshold(dtype)
    with np.errstate(invalid="ignore", over="ignore"):
        rounded_inf = overflow & np.isinf(obs) & (np.sign(obs) == np.sign(expected))
        diff = np.where(rounded_inf, 0.0, np.abs(obs - expected))  # inf - inf is NaN: judged below
    finite = np.isfinite(expected)
    same_nonfinite = ~finite & ((np.isnan(expected) & np.isnan(obs)) | (expected == obs))
    allowed = tolerance.allowed()
    with np.errstate(divide="ignore", invalid="ignore"):
        err = np.where(diff == 0, 0.0, diff / (u * scale))
        ratio = np.where(diff == 0, 0.0, diff / allowed)
    # NaN and +-inf are infinite errors alike (nan_to_num's default would turn +inf into the largest float)
    err = np.where(
        finite, np.nan_to_num(err, nan=np.inf, posinf=np.inf), np.where(same_nonfinite, 0.0, np.inf)
    )
    ratio = np.where(
        finite, np.nan_to_num(ratio, nan=np.inf, posinf=np.inf), np.where(same_nonfinite, 0.0, np.inf)
    )
    nonfinite = int(np.sum(finite & ~np.isfinite(obs) & ~rounded_inf))
    failing = ratio > 1.0
    flat = int(np.argmax(ratio))
    index = tuple(int(i) for i in np.unravel_index(flat, ratio.shape))
    mismatched = int(failing.sum())
    max_ratio = float(ratio.reshape(-1)[flat])
    worst_error = float(err.reshape(-1)[flat])
    # B_i plus the underflow floor, in the unit u * s_i (infinite where s_i = 0 and only the floor is left).
    with np.errstate(divide="ignore", invalid="ignore"):
        bound_in_unit = np.broadcast_to(allowed / (u * scale), ratio.shape)
    worst_bound = float(bound_in_unit.reshape(-1)[flat])
    o, x = float(obs.reshape(-1)[flat]), float(expected.reshape(-1)[flat])
    kind = nonfinite_kind(o) if math.isfinite(x) and math.isinf(worst_error) else ""
    pct = 100.0 * mismatched / expected.size
    where = f" ({nonfinite} of them non-finite where the exact value is finite)" if nonfinite else ""
    message = (
        f"{quantity}: mismatched elements: {mismatched} / {expected.size} ({pct:.3g}%){where}; "
        f"worst err {format_error(worst_error, kind)} u*scale at index {index} (bound {worst_bound:.3g}): "
        f"observed {_fmt(o, dtype)}, {against} {_fmt(x, dtype)}, "
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
        nonfinite,
        kind,
    )


def _failed_whole(quantity: str, dtype: str, size: int, message: str) -> Judgement:
    return Judgement(quantity, dtype, False, size, size, math.inf, math.inf, 0.0, None, None, None, message)
