"""Known non-conforming variants of Group Normalization, and the diagnosis of a failure by matching them.

People implement GN wrongly in a handful of recurring ways (the bug classes of SPEC.md's "known
non-conforming variants" and of tests/implementations/catalogue.py). Most of them are themselves exact
formulas, so when an implementation fails, evaluating each variant on the counterexample and asking the error
model whether the implementation's output matches it names the likely mistake: "the output matches GN with
Bessel-corrected variance".

Notation: a block is one (sample n, group g) set of m = (C/G) * prod(spatial) values with mean mu and biased
variance var; r = 1/sqrt(var + eps); xhat = (x - mu) * r; GN gives y = weight[c] * xhat + bias[c].

Every forward variant has the reference's signature ``variant(x, num_groups, weight=None, bias=None,
eps=1e-5) -> float64 array`` and is evaluated through the faithful reference (``gn_spec.group_norm``) on
transformed arguments wherever an exact transformation exists (a permutation of channels, a change of eps or
of the affine), so a variant's own error stays within one ulp of float64 and never blurs a diagnosis. The
backward variants take (grad_output, x, num_groups, weight, eps) and return (grad_input, grad_weight,
grad_bias) like ``gn_spec.group_norm_backward``.

A variant explains an observed result when the error model accepts the observed values as the variant's
values (the judge's worst error ratio is at most 1) and the variant is distinguishable from GN on that input
(the judge rejects the variant's own values as GN's); otherwise a variant that coincides with GN there (the
interleaved grouping when G = 1, say) would be blamed for an unrelated failure.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

import gn_spec
from gn_spec import error_model

#: A forward variant: (x, num_groups, weight, bias, eps) -> float64 output of x's shape.
ForwardFn = Callable[[np.ndarray, int, "np.ndarray | None", "np.ndarray | None", float], np.ndarray]
#: A backward variant: (grad_output, x, num_groups, weight, eps) -> (grad_input, grad_weight, grad_bias).
BackwardFn = Callable[
    [np.ndarray, np.ndarray, int, "np.ndarray | None", float], tuple[np.ndarray, np.ndarray, np.ndarray]
]


@dataclass(frozen=True)
class Case:
    """The inputs of one counterexample, in float64 (exact values of the dtype under test).

    ``dtype`` names the format under test ("float16", "bfloat16", "float32", "float64"); ``grad_output`` is
    present for backward cases only.
    """

    x: np.ndarray
    num_groups: int
    weight: np.ndarray | None
    bias: np.ndarray | None
    eps: float
    dtype: str
    grad_output: np.ndarray | None = None


class Judge(Protocol):
    """The error model's verdict on one quantity: the worst element's error as a multiple of its bound.

    ``quantity`` is "output", "grad_input", "grad_weight" or "grad_bias"; ``expected`` is the exact (float64)
    value the observed values are judged against. A result <= 1 means the observed values are accepted.
    """

    def __call__(self, observed: np.ndarray, expected: np.ndarray, case: Case, quantity: str) -> float: ...


@dataclass(frozen=True)
class Variant:
    """A named forward variant; ``explains`` completes the sentence "the output matches GN with ..."."""

    name: str
    explains: str
    forward: ForwardFn
    #: The format whose error model judges the match (None: the format under test). A variant that models a
    #: computation carried out in another precision is judged with that precision's unit roundoff.
    judged_as: str | None = None
    #: Whether the variant is meaningful for a case (e.g. only float64 input can be "computed in float32").
    applies: Callable[[Case], bool] = lambda case: True


@dataclass(frozen=True)
class BackwardVariant:
    """A named backward variant; ``explains`` completes "the gradients match GN's backward with ..."."""

    name: str
    explains: str
    backward: BackwardFn


@dataclass(frozen=True)
class Diagnosis:
    """One variant that explains the observed result; ``ratio`` is the judge's worst error ratio (<= 1)."""

    variant: str
    message: str
    ratio: float


# --------------------------------------------------------------------------------------------------------
# helpers


def _channel_shape(x: np.ndarray) -> tuple[int, ...]:
    """The broadcast shape (1, C, 1, ...) of a per-channel parameter for x."""
    return (1, x.shape[1]) + (1,) * (x.ndim - 2)


def _blocks(x: np.ndarray, num_groups: int) -> np.ndarray:
    """x viewed as (N, G, m): one row per (sample, group) block."""
    return np.asarray(x, dtype=np.float64).reshape(x.shape[0], num_groups, -1)


def _block_variance(x: np.ndarray, num_groups: int) -> np.ndarray:
    """The biased variance of each block, shape (N, G), by the corrected two-pass algorithm.

    mu0 = mean(x); then with d = x - mu0, var = mean(d^2) - mean(d)^2. The correction term removes the
    first-order effect of the rounding error of mu0, so the relative error is O(u log m) rather than
    O(u * |mu| / std) (Chan, Golub and LeVeque, "Algorithms for computing the sample variance", 1983).
    """
    b = _blocks(x, num_groups)
    if b.shape[-1] == 0:
        return np.zeros(b.shape[:2])
    d = b - b.mean(axis=-1, keepdims=True)
    dm = d.mean(axis=-1)
    return np.maximum((d * d).mean(axis=-1) - dm * dm, 0.0)


def _group_norm_block_eps(
    x: np.ndarray, num_groups: int, weight: np.ndarray | None, bias: np.ndarray | None, eps: np.ndarray
) -> np.ndarray:
    """GN where block (n, g) uses its own eps[n, g]: the reference applied one block at a time.

    Used by variants that change only where eps enters: they equal GN with a per-block effective eps. A block
    holding NaN or inf has no finite eps (its variance is not finite); its output is NaN whatever eps is.
    """
    eps = np.where(np.isfinite(eps), eps, 0.0)
    n_samples, channels = x.shape[0], x.shape[1]
    k = channels // num_groups
    w = np.ones(channels) if weight is None else np.asarray(weight, dtype=np.float64)
    b = np.zeros(channels) if bias is None else np.asarray(bias, dtype=np.float64)
    out = np.empty(x.shape)
    for n in range(n_samples):
        for g in range(num_groups):
            ch = slice(g * k, (g + 1) * k)
            block = np.asarray(x[n : n + 1, ch], dtype=np.float64)
            out[n : n + 1, ch] = gn_spec.group_norm(block, 1, w[ch], b[ch], float(eps[n, g]))
    return out


# --------------------------------------------------------------------------------------------------------
# forward variants


def bessel_variance(x: np.ndarray, num_groups: int, weight: Any = None, bias: Any = None, eps: float = 1e-5):
    """GN with the sample variance var' = m / (m - 1) * var.

    (x - mu) / sqrt(m var / (m - 1) + eps) = s * (x - mu) / sqrt(var + s^2 eps) with s = sqrt((m - 1) / m),
    i.e. the reference with eps' = s^2 eps and the weight scaled by s. A one-element block divides by zero
    (NaN), as the sample variance of one value does.
    """
    m = int(np.prod(x.shape[1:])) // num_groups
    if m == 1:
        return np.full(x.shape, np.nan)
    s2 = (m - 1) / m
    w = np.ones(x.shape[1]) if weight is None else np.asarray(weight, dtype=np.float64)
    return gn_spec.group_norm(x, num_groups, w * np.sqrt(s2), bias, eps * s2)


def eps_outside_sqrt(x: np.ndarray, num_groups: int, weight: Any = None, bias: Any = None, eps: float = 1e-5):
    """GN with eps added to the standard deviation: (x - mu) / (sqrt(var) + eps).

    sqrt(var) + eps = sqrt(var + eps') with eps' = 2 eps sqrt(var) + eps^2, a per-block eps.
    """
    sd = np.sqrt(_block_variance(x, num_groups))
    return _group_norm_block_eps(x, num_groups, weight, bias, 2.0 * eps * sd + eps * eps)


def eps_as_clamp(x: np.ndarray, num_groups: int, weight: Any = None, bias: Any = None, eps: float = 1e-5):
    """GN with eps as a floor on the variance: (x - mu) / sqrt(max(var, eps)).

    max(var, eps) = var + eps' with eps' = max(eps - var, 0), a per-block eps.
    """
    var = _block_variance(x, num_groups)
    return _group_norm_block_eps(x, num_groups, weight, bias, np.maximum(eps - var, 0.0))


def eps_ignored(x: np.ndarray, num_groups: int, weight: Any = None, bias: Any = None, eps: float = 1e-5):
    """GN with eps left out: (x - mu) / sqrt(var); a constant block gives 0 / 0 = NaN."""
    y = gn_spec.group_norm(x, num_groups, weight, bias, 0.0)
    constant = _block_variance(x, num_groups) == 0.0
    y = y.reshape(x.shape[0], num_groups, -1)
    y[constant] = np.nan
    return y.reshape(x.shape)


def interleaved_groups(
    x: np.ndarray, num_groups: int, weight: Any = None, bias: Any = None, eps: float = 1e-5
):
    """GN whose group g holds the channels c with c mod G = g instead of a contiguous block.

    Permuting the channels to the order (0, G, 2G, ..., 1, G+1, ...) makes those groups contiguous; the
    reference on the permuted channels, permuted back, is the variant.
    """
    channels = x.shape[1]
    order = np.arange(channels).reshape(channels // num_groups, num_groups).T.reshape(-1)
    w = None if weight is None else np.asarray(weight, dtype=np.float64)[order]
    b = None if bias is None else np.asarray(bias, dtype=np.float64)[order]
    y = gn_spec.group_norm(np.asarray(x)[:, order], num_groups, w, b, eps)
    return y[:, np.argsort(order)]


def per_group_affine(x: np.ndarray, num_groups: int, weight: Any = None, bias: Any = None, eps: float = 1e-5):
    """GN whose affine is per group, as ONNX GroupNormalization-18 read it: weight[g], bias[g] for group g.

    The per-channel parameters become weight'[c] = weight[c // (C/G)] (likewise bias): the first G entries
    are used, one per group.
    """
    group_of = np.arange(x.shape[1]) // (x.shape[1] // num_groups)
    w = None if weight is None else np.asarray(weight, dtype=np.float64)[group_of]
    b = None if bias is None else np.asarray(bias, dtype=np.float64)[group_of]
    return gn_spec.group_norm(x, num_groups, w, b, eps)


def batch_pooled(x: np.ndarray, num_groups: int, weight: Any = None, bias: Any = None, eps: float = 1e-5):
    """GN whose statistics for group g are pooled over all N samples (as batch normalization pools them).

    Rearranging x (N, G, k, S) to one sample (1, G * N * k, S), group-major, makes each pooled set one
    contiguous group of N * k channels; the reference with channel c's parameters repeated over n is the
    variant.
    """
    n_samples, channels = x.shape[0], x.shape[1]
    if n_samples == 0:
        return np.zeros(x.shape)
    k = channels // num_groups
    spatial = x.shape[2:]
    pooled = np.asarray(x, dtype=np.float64).reshape((n_samples, num_groups, k, -1)).transpose(1, 0, 2, 3)
    pooled = pooled.reshape((1, num_groups * n_samples * k) + ((pooled.shape[-1],) if spatial else ()))

    def spread(p: Any) -> np.ndarray | None:
        if p is None:
            return None
        per = np.asarray(p, dtype=np.float64).reshape(num_groups, 1, k)
        return np.broadcast_to(per, (num_groups, n_samples, k)).reshape(-1)

    y = gn_spec.group_norm(pooled, num_groups, spread(weight), spread(bias), eps)
    y = y.reshape(num_groups, n_samples, k, -1).transpose(1, 0, 2, 3)
    return y.reshape(x.shape)


def layer_norm(x: np.ndarray, num_groups: int, weight: Any = None, bias: Any = None, eps: float = 1e-5):
    """GN with num_groups ignored, one group per sample: LayerNorm over (C, *spatial), per-channel affine."""
    return gn_spec.group_norm(x, 1, weight, bias, eps)


def instance_norm(x: np.ndarray, num_groups: int, weight: Any = None, bias: Any = None, eps: float = 1e-5):
    """GN with num_groups ignored and one group per channel: InstanceNorm."""
    return gn_spec.group_norm(x, x.shape[1], weight, bias, eps)


def affine_before_normalizing(
    x: np.ndarray, num_groups: int, weight: Any = None, bias: Any = None, eps: float = 1e-5
):
    """GN applied to weight[c] * x + bias[c], with no affine afterwards."""
    z = np.asarray(x, dtype=np.float64)
    if weight is not None:
        z = z * np.asarray(weight, dtype=np.float64).reshape(_channel_shape(x))
    if bias is not None:
        z = z + np.asarray(bias, dtype=np.float64).reshape(_channel_shape(x))
    return gn_spec.group_norm(z, num_groups, None, None, eps)


def weight_bias_swapped(
    x: np.ndarray, num_groups: int, weight: Any = None, bias: Any = None, eps: float = 1e-5
):
    """GN with weight and bias exchanged: y = bias[c] * xhat + weight[c] (a missing one: 1, 0)."""
    channels = x.shape[1]
    scale = np.ones(channels) if bias is None else np.asarray(bias, dtype=np.float64)
    shift = np.zeros(channels) if weight is None else np.asarray(weight, dtype=np.float64)
    return gn_spec.group_norm(x, num_groups, scale, shift, eps)


def affine_ignored(x: np.ndarray, num_groups: int, weight: Any = None, bias: Any = None, eps: float = 1e-5):
    """GN with weight and bias ignored: y = xhat."""
    return gn_spec.group_norm(x, num_groups, None, None, eps)


def channels_last_without_permute(
    x: np.ndarray, num_groups: int, weight: Any = None, bias: Any = None, eps: float = 1e-5
):
    """GN whose groups are G equal slices of the channels-last layout (N, *spatial, C), each mixing channels.

    The slices are normalized by the reference as the rows of an (N, G, M/G) array; the per-channel affine
    then applies along the channels-last axis, and the result is moved back to (N, C, *spatial).
    """
    nhwc = np.moveaxis(np.asarray(x, dtype=np.float64), 1, -1)
    rows = nhwc.reshape(x.shape[0], num_groups, -1)
    y = gn_spec.group_norm(rows, num_groups, None, None, eps).reshape(nhwc.shape)
    if weight is not None:
        y = y * np.asarray(weight, dtype=np.float64)
    if bias is not None:
        y = y + np.asarray(bias, dtype=np.float64)
    return np.moveaxis(y, -1, 1)


def computed_in_float32(
    x: np.ndarray, num_groups: int, weight: Any = None, bias: Any = None, eps: float = 1e-5
):
    """GN of the inputs rounded to float32, as an implementation that computes in float32 produces.

    Judged with float32's error model: the observed values match when they are as accurate as float32
    arithmetic can make them, and no more.
    """

    def f32(a: Any) -> Any:
        return None if a is None else np.asarray(a, dtype=np.float64).astype(np.float32)

    return gn_spec.group_norm(f32(x), num_groups, f32(weight), f32(bias), float(np.float32(eps)))


def nan_replaced_by_zero(
    x: np.ndarray, num_groups: int, weight: Any = None, bias: Any = None, eps: float = 1e-5
):
    """GN with NaN outputs replaced by 0 (numpy.nan_to_num), instead of propagated."""
    return np.nan_to_num(gn_spec.group_norm(x, num_groups, weight, bias, eps), nan=0.0)


def _has_non_finite(case: Case) -> bool:
    return not bool(np.isfinite(case.x).all())


FORWARD_VARIANTS: tuple[Variant, ...] = (
    Variant("bessel_variance", "Bessel-corrected variance (divided by m - 1 instead of m)", bessel_variance),
    Variant("eps_outside_sqrt", "eps added to the standard deviation, (x - mu) / (sqrt(var) + eps)",
            eps_outside_sqrt),
    Variant("eps_as_clamp", "eps used as a floor on the variance, (x - mu) / sqrt(max(var, eps))",
            eps_as_clamp),
    Variant("eps_ignored", "eps ignored, (x - mu) / sqrt(var)", eps_ignored),
    Variant("interleaved_groups", "interleaved groups (channel c in group c mod G, not contiguous blocks)",
            interleaved_groups),
    Variant("per_group_affine", "a per-group affine, weight[g] and bias[g] for every channel of group g "
            "(the ONNX GroupNormalization-18 reading)", per_group_affine),
    Variant("batch_pooled", "statistics pooled over the whole batch instead of per sample", batch_pooled),
    Variant("layer_norm", "num_groups ignored: one group per sample (LayerNorm)", layer_norm),
    Variant("instance_norm", "num_groups ignored: one group per channel (InstanceNorm)", instance_norm),
    Variant("affine_before_normalizing", "weight and bias applied before normalizing instead of after",
            affine_before_normalizing),
    Variant("weight_bias_swapped", "weight and bias swapped", weight_bias_swapped),
    Variant("affine_ignored", "weight and bias ignored", affine_ignored),
    Variant("channels_last_without_permute", "groups cut from the channels-last layout without a permute "
            "(each group mixes all channels)", channels_last_without_permute),
    Variant("computed_in_float32", "the computation carried out in float32 (float32 accuracy, not float64)",
            computed_in_float32, judged_as="float32", applies=lambda case: case.dtype == "float64"),
    Variant("nan_replaced_by_zero", "NaN outputs replaced by 0 instead of propagated", nan_replaced_by_zero,
            applies=_has_non_finite),
)


# --------------------------------------------------------------------------------------------------------
# backward variants


def _backward_parts(grad_output: np.ndarray, x: np.ndarray, num_groups: int, weight: Any, eps: float):
    """Per block: dxhat = weight[c] * dy and xhat as (N, G, m), r as (N, G, 1); and the reference's grads.

    xhat comes from the reference (GN without affine), r from the corrected two-pass variance.
    """
    dy = np.asarray(grad_output, dtype=np.float64)
    w = np.ones(x.shape[1]) if weight is None else np.asarray(weight, dtype=np.float64)
    dxhat = _blocks(dy * w.reshape(_channel_shape(x)), num_groups)
    xhat = _blocks(gn_spec.group_norm(x, num_groups, None, None, eps), num_groups)
    r = 1.0 / np.sqrt(_block_variance(x, num_groups) + eps)[..., None]
    return dxhat, xhat, r, gn_spec.group_norm_backward(grad_output, x, num_groups, weight, eps)


def backward_missing_mean_term(grad_output: np.ndarray, x: np.ndarray, num_groups: int, weight: Any = None,
                               eps: float = 1e-5):
    """grad_input = r * (dxhat - xhat * mean(dxhat * xhat)): the path through the mean left out."""
    dxhat, xhat, r, (_, gw, gb) = _backward_parts(grad_output, x, num_groups, weight, eps)
    gx = r * (dxhat - xhat * (dxhat * xhat).mean(axis=-1, keepdims=True))
    return gx.reshape(x.shape), gw, gb


def backward_missing_variance_term(grad_output: np.ndarray, x: np.ndarray, num_groups: int,
                                   weight: Any = None, eps: float = 1e-5):
    """grad_input = r * (dxhat - mean(dxhat)): the path through the variance left out."""
    dxhat, _, r, (_, gw, gb) = _backward_parts(grad_output, x, num_groups, weight, eps)
    gx = r * (dxhat - dxhat.mean(axis=-1, keepdims=True))
    return gx.reshape(x.shape), gw, gb


def backward_statistics_detached(grad_output: np.ndarray, x: np.ndarray, num_groups: int,
                                 weight: Any = None, eps: float = 1e-5):
    """grad_input = r * dxhat: mean and variance treated as constants (detached), both paths left out."""
    dxhat, _, r, (_, gw, gb) = _backward_parts(grad_output, x, num_groups, weight, eps)
    return (r * dxhat).reshape(x.shape), gw, gb


def backward_params_averaged_over_batch(grad_output: np.ndarray, x: np.ndarray, num_groups: int,
                                        weight: Any = None, eps: float = 1e-5):
    """grad_weight and grad_bias averaged over the N samples instead of summed (divided by N)."""
    gx, gw, gb = gn_spec.group_norm_backward(grad_output, x, num_groups, weight, eps)
    n = max(x.shape[0], 1)
    return gx, gw / n, gb / n


BACKWARD_VARIANTS: tuple[BackwardVariant, ...] = (
    BackwardVariant("backward_missing_mean_term", "the mean term of grad_input missing",
                    backward_missing_mean_term),
    BackwardVariant("backward_missing_variance_term", "the variance term of grad_input missing",
                    backward_missing_variance_term),
    BackwardVariant("backward_statistics_detached", "the statistics detached (no gradient through mean and "
                    "variance)", backward_statistics_detached),
    BackwardVariant("backward_params_averaged_over_batch",
                    "grad_weight and grad_bias averaged over the batch instead of summed",
                    backward_params_averaged_over_batch),
)


# --------------------------------------------------------------------------------------------------------
# diagnosis


def _as_float64(a: Any) -> np.ndarray:
    return np.asarray(a, dtype=np.float64)


def _judged(judge: Judge, observed: np.ndarray, expected: np.ndarray, case: Case, quantity: str) -> float:
    """The judge's ratio, or inf when the shapes differ (no variant changes the output's shape)."""
    if observed.shape != expected.shape:
        return float("inf")
    return float(judge(observed, expected, case, quantity))


class ErrorModelJudge:
    """The checker's error model (:mod:`gn_spec.error_model`) as a :class:`Judge`.

    The tolerances depend only on the case's inputs and dtype, so each (quantity, dtype) is computed once
    per instance; use one instance per case.
    """

    def __init__(self) -> None:
        self._tolerances: dict[tuple[str, str], Any] = {}

    def _tolerance(self, case: Case, quantity: str) -> Any:
        key = (quantity, case.dtype)
        if key not in self._tolerances:
            if quantity == "output":
                tol = error_model.forward_tolerance(
                    case.x, case.num_groups, case.weight, case.bias, case.eps, case.dtype
                )
            else:
                if case.grad_output is None:
                    raise ValueError(f"judging {quantity} needs the case's grad_output")
                tol = error_model.backward_tolerances(
                    case.grad_output, case.x, case.num_groups, case.weight, case.eps, case.dtype
                )[quantity]
            self._tolerances[key] = tol
        return self._tolerances[key]

    def __call__(self, observed: np.ndarray, expected: np.ndarray, case: Case, quantity: str) -> float:
        return error_model.judge(quantity, observed, expected, self._tolerance(case, quantity)).max_ratio


def diagnose(
    observed: Any,
    x: Any,
    num_groups: int,
    weight: Any = None,
    bias: Any = None,
    eps: float = 1e-5,
    *,
    dtype: str,
    judge: Judge | None = None,
    variants: Sequence[Variant] = FORWARD_VARIANTS,
) -> list[Diagnosis]:
    """The known variants that explain an implementation's forward output on one input, best match first.

    ``observed`` is the implementation's output for (x, num_groups, weight, bias, eps) in format ``dtype``.
    Only a failure is explained: when the judge accepts ``observed`` as GN's output the result is [].
    A variant is reported when the judge accepts ``observed`` as the variant's output (ratio <= 1) and
    rejects the variant's output as GN's (ratio > 1, so the input tells the two apart). Returns [] when
    nothing fits.
    """
    judge = judge or ErrorModelJudge()
    obs = _as_float64(observed)
    xs = _as_float64(x)
    w = None if weight is None else _as_float64(weight)
    b = None if bias is None else _as_float64(bias)
    case = Case(xs, int(num_groups), w, b, float(eps), dtype)
    expected = gn_spec.group_norm(xs, num_groups, w, b, eps)
    if _judged(judge, obs, expected, case, "output") <= 1.0:
        return []  # the output conforms: there is no failure to explain
    found = []
    for v in variants:
        if not v.applies(case):
            continue
        out = v.forward(xs, int(num_groups), w, b, float(eps))
        judged_case = case if v.judged_as is None else Case(xs, case.num_groups, w, b, case.eps, v.judged_as)
        if _judged(judge, out, expected, case, "output") <= 1.0:
            continue  # indistinguishable from GN on this input
        ratio = _judged(judge, obs, out, judged_case, "output")
        if ratio <= 1.0:
            found.append(Diagnosis(v.name, f"the output matches GN with {v.explains}", ratio))
    return sorted(found, key=lambda d: d.ratio)


def diagnose_backward(
    observed: Sequence[Any],
    grad_output: Any,
    x: Any,
    num_groups: int,
    weight: Any = None,
    eps: float = 1e-5,
    *,
    dtype: str,
    judge: Judge | None = None,
    variants: Sequence[BackwardVariant] = BACKWARD_VARIANTS,
) -> list[Diagnosis]:
    """The known backward variants that explain observed (grad_input, grad_weight, grad_bias), best first.

    Entries of ``observed`` may be None (not computed); they are then not compared. Only a failure is
    explained ([] when every compared gradient conforms). A variant is reported when every observed gradient
    matches the variant's (ratio <= 1) and at least one of the compared variant gradients is rejected as GN's.
    """
    judge = judge or ErrorModelJudge()
    xs = _as_float64(x)
    dy = _as_float64(grad_output)
    w = None if weight is None else _as_float64(weight)
    case = Case(xs, int(num_groups), w, None, float(eps), dtype, dy)
    names = ("grad_input", "grad_weight", "grad_bias")
    expected = gn_spec.group_norm_backward(dy, xs, num_groups, w, eps)
    compared = [i for i, o in enumerate(observed) if o is not None]
    if all(_judged(judge, _as_float64(observed[i]), expected[i], case, names[i]) <= 1.0 for i in compared):
        return []  # the gradients conform: there is no failure to explain
    found = []
    for v in variants:
        grads = v.backward(dy, xs, int(num_groups), w, float(eps))
        if max(_judged(judge, grads[i], expected[i], case, names[i]) for i in compared) <= 1.0:
            continue  # indistinguishable from GN's backward on this input
        ratio = max(_judged(judge, _as_float64(observed[i]), grads[i], case, names[i]) for i in compared)
        if ratio <= 1.0:
            found.append(Diagnosis(v.name, f"the gradients match GN's backward with {v.explains}", ratio))
    return sorted(found, key=lambda d: d.ratio)
