"""Known non-conforming variants of Group Normalization, and the diagnosis of a failure by matching them.

People implement GN wrongly in a handful of recurring ways (the bug classes of SPEC.md's "known
non-conforming variants" and of tests/implementations/catalogue.py). Most of them are themselves exact
formulas, so when an implementation fails, evaluating each variant on the counterexample and asking the error
model whether the implementation's output matches it names the likely mistake: "the output matches GN with
Bessel-corrected variance".

Notation: a block is one (sample n, group g) set of m = (C/G) * prod(spatial) values with mean mu and biased
variance var; r = 1/sqrt(var + eps); xhat = (x - mu) * r; GN gives y = weight[c] * xhat + bias[c].

Every forward variant is Group Normalization of rearranged data or with another eps or affine: a set of
:class:`Piece` s, each a GN problem whose values the faithful reference (``gn_spec.group_norm``) computes.
So a variant's own error stays within one ulp of float64 and never blurs a diagnosis, and an implementation
of the variant is judged piece by piece with the error model exactly as GN is, with each piece's statistics
and magnitudes (a variant's outputs can be far larger than GN's: eps outside the square root, say). The
variants are also plain functions with the reference's signature ``variant(x, num_groups, weight=None,
bias=None, eps=1e-5) -> float64 array``. The backward variants take (grad_output, x, num_groups, weight, eps)
and return (grad_input, grad_weight, grad_bias) like ``gn_spec.group_norm_backward``; their values are
judged with GN's backward tolerances, which bound them (each drops terms of GN's gradient or divides it).

A variant explains an observed result when the error model accepts the observed values as the variant's
values (the scorer's worst error ratio is at most 1) and the variant is distinguishable from GN on that input,
both ways: the scorer rejects the variant's own values as GN's, and GN's exact values as the variant's;
otherwise a variant that coincides with GN there (the interleaved grouping when G = 1, say), or whose own
bounds are wide enough to take GN's values too, would be blamed for an unrelated failure.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

import gn_spec
from gn_spec import error_model
from gn_spec.formats import format_of, round_to
from gn_spec.layout import block_rows

#: A backward variant: (grad_output, x, num_groups, weight, eps) -> (grad_input, grad_weight, grad_bias).
BackwardFn = Callable[
    [np.ndarray, np.ndarray, int, "np.ndarray | None", float], tuple[np.ndarray, np.ndarray, np.ndarray]
]


@dataclass(frozen=True)
class Counterexample:
    """The inputs of one counterexample as the diagnosis takes them: float64 arrays (exact values of the
    dtype under test) and the name of that dtype.

    ``dtype`` names the format under test ("float16", "bfloat16", "float32", "float64"); ``grad_output`` is
    present for backward counterexamples only.  (Not :class:`gn_spec.strategies.Case`, which describes a
    generated input by its structure and a seed.)  Each :class:`Piece` of a variant is scored as a
    counterexample of its own.
    """

    x: np.ndarray
    num_groups: int
    weight: np.ndarray | None
    bias: np.ndarray | None
    eps: float
    dtype: str
    grad_output: np.ndarray | None = None


class Scorer(Protocol):
    """How well observed values match expected ones on a counterexample: the worst element's error as a
    multiple of its bound (the ``max_ratio`` of :func:`gn_spec.error_model.judge` for
    :class:`ErrorModelScorer`).

    ``quantity`` is "output", "grad_input", "grad_weight" or "grad_bias"; ``expected`` is the exact (float64)
    value the observed values are scored against. A result <= 1 means the observed values are accepted.
    """

    def __call__(
        self, observed: np.ndarray, expected: np.ndarray, example: Counterexample, quantity: str
    ) -> float: ...


@dataclass(frozen=True)
class BackwardVariant:
    """A named backward variant; ``explains`` completes "the gradients match GN's backward with ..."."""

    name: str
    explains: str
    backward: BackwardFn


@dataclass(frozen=True)
class Diagnosis:
    """One variant that explains the observed result; ``ratio`` is the scorer's worst error ratio (<= 1)."""

    variant: str
    message: str
    ratio: float


@dataclass(frozen=True)
class Piece:
    """One Group Normalization problem inside a variant.

    The variant's output at the flat positions ``index`` (an integer array of the piece's input's shape) is
    GN(x, num_groups, weight, bias, eps) of the piece. Every forward variant here is a set of pieces that
    covers the output once: the variant is GN of rearranged data, or GN with another eps or affine. So the
    variant's values come from the faithful reference, and the error model judges an implementation of the
    variant piece by piece exactly as it judges GN, with each piece's own statistics and magnitudes.
    """

    index: np.ndarray
    x: np.ndarray
    num_groups: int
    weight: np.ndarray | None
    bias: np.ndarray | None
    eps: float


PiecesFn = Callable[[np.ndarray, int, "np.ndarray | None", "np.ndarray | None", float], list[Piece]]


@dataclass(frozen=True)
class Variant:
    """A named forward variant; ``explains`` completes the sentence "the output matches GN with ..."."""

    name: str
    explains: str
    pieces: PiecesFn
    #: Applied elementwise to the pieces' GN values (None: nothing), e.g. NaN replaced by 0.
    post: Callable[[np.ndarray], np.ndarray] | None = None
    #: The format whose error model judges the match (None: the format under test). A variant that models a
    #: computation carried out in another precision is judged with that precision's unit roundoff.
    judged_as: str | None = None
    #: Whether the variant is meaningful for a counterexample (e.g. only float64 input can be "computed in
    #: float32").
    applies: Callable[[Counterexample], bool] = lambda example: True
    #: A mark every output of the variant carries, checked on the observed output (None: no such mark).  A
    #: variant judged in another, coarser precision has bounds that also take GN's exact values, so
    #: matching them is no evidence; what is, is the mark (values that are all numbers of that precision).
    signature: Callable[[np.ndarray], bool] | None = None

    def forward(self, x: Any, num_groups: int, weight: Any = None, bias: Any = None, eps: float = 1e-5):
        """The variant's output for the reference's arguments, float64, of x's shape."""
        x = np.asarray(x, dtype=np.float64)
        out = np.empty(x.size)
        for p in self.pieces(x, num_groups, _f64(weight), _f64(bias), float(eps)):
            out[p.index] = self._values(p)
        return out.reshape(x.shape)

    def _values(self, p: Piece) -> np.ndarray:
        y = gn_spec.group_norm(p.x, p.num_groups, p.weight, p.bias, p.eps)
        return y if self.post is None else self.post(y)

    def match(self, observed: np.ndarray, example: Counterexample, scorer: Scorer) -> float:
        """The scorer's worst ratio for ``observed`` taken as this variant's output (<= 1: it matches)."""
        if observed.shape != example.x.shape:
            return float("inf")
        flat = observed.reshape(-1)
        dtype = self.judged_as or example.dtype
        worst = 0.0
        for p in self.pieces(example.x, example.num_groups, example.weight, example.bias, example.eps):
            piece_example = Counterexample(p.x, p.num_groups, p.weight, p.bias, p.eps, dtype)
            worst = max(worst, float(scorer(flat[p.index], self._values(p), piece_example, "output")))
        return worst


def _f64(a: Any) -> np.ndarray | None:
    return None if a is None else np.asarray(a, dtype=np.float64)


# --------------------------------------------------------------------------------------------------------
# helpers


def _channel_shape(x: np.ndarray) -> tuple[int, ...]:
    """The broadcast shape (1, C, 1, ...) of a per-channel parameter for x."""
    return (1, x.shape[1]) + (1,) * (x.ndim - 2)


def _positions(x: np.ndarray) -> np.ndarray:
    """The flat position of every element of x, in x's shape (what a piece's ``index`` is cut from)."""
    return np.arange(x.size).reshape(x.shape)


def _block_variance(x: np.ndarray, num_groups: int) -> np.ndarray:
    """The biased variance of each block, shape (N, G), by the corrected two-pass algorithm.

    mu0 = mean(x); then with d = x - mu0, var = mean(d^2) - mean(d)^2. The correction term removes the
    first-order effect of the rounding error of mu0, so the relative error is O(u log m) rather than
    O(u * |mu| / std) (Chan, Golub and LeVeque, "Algorithms for computing the sample variance", 1983).
    """
    b = block_rows(np.asarray(x, dtype=np.float64), num_groups)
    if b.shape[-1] == 0:
        return np.zeros(b.shape[:2])
    d = b - b.mean(axis=-1, keepdims=True)
    dm = d.mean(axis=-1)
    return np.maximum((d * d).mean(axis=-1) - dm * dm, 0.0)


def _whole(x: np.ndarray, num_groups: int, weight: np.ndarray | None, bias: np.ndarray | None,
           eps: float) -> list[Piece]:
    """The variant is GN of x itself with other arguments: one piece."""
    return [Piece(_positions(x), x, num_groups, weight, bias, eps)]


def _block_by_block(x: np.ndarray, num_groups: int, weight: np.ndarray | None, bias: np.ndarray | None,
                    eps: np.ndarray) -> list[Piece]:
    """GN where block (n, g) has its own eps[n, g]: one piece per block (G = 1 on x[n:n+1, channels of g]).

    A block holding NaN or inf has no finite eps (its variance is not finite); its output is NaN whatever eps
    is, so it gets 0.
    """
    eps = np.where(np.isfinite(eps), eps, 0.0)
    k = x.shape[1] // num_groups
    pos = _positions(x)
    pieces = []
    for n in range(x.shape[0]):
        for g in range(num_groups):
            ch = slice(g * k, (g + 1) * k)
            w = None if weight is None else weight[ch]
            b = None if bias is None else bias[ch]
            pieces.append(Piece(pos[n : n + 1, ch], x[n : n + 1, ch], 1, w, b, float(eps[n, g])))
    return pieces


# --------------------------------------------------------------------------------------------------------
# forward variants, as pieces


def _bessel_variance(x: np.ndarray, num_groups: int, weight: Any, bias: Any, eps: float) -> list[Piece]:
    """GN with the sample variance var' = m / (m - 1) * var.

    (x - mu) / sqrt(m var / (m - 1) + eps) = s * (x - mu) / sqrt(var + s^2 eps) with s = sqrt((m - 1) / m):
    the reference with eps' = s^2 eps and the weight scaled by s. For m = 1, s = 0 gives eps' = 0 and the
    reference's 0/0 = NaN, as the sample variance of one value has.
    """
    m = int(np.prod(x.shape[1:])) // num_groups
    s2 = (m - 1) / m if m else 1.0
    w = np.ones(x.shape[1]) if weight is None else weight
    return _whole(x, num_groups, w * np.sqrt(s2), bias, eps * s2)


def _eps_outside_sqrt(x: np.ndarray, num_groups: int, weight: Any, bias: Any, eps: float) -> list[Piece]:
    """GN with eps added to the standard deviation: (x - mu) / (sqrt(var) + eps).

    sqrt(var) + eps = sqrt(var + eps') with eps' = 2 eps sqrt(var) + eps^2, a per-block eps.
    """
    sd = np.sqrt(_block_variance(x, num_groups))
    return _block_by_block(x, num_groups, weight, bias, 2.0 * eps * sd + eps * eps)


def _eps_as_clamp(x: np.ndarray, num_groups: int, weight: Any, bias: Any, eps: float) -> list[Piece]:
    """GN with eps as a floor on the variance: (x - mu) / sqrt(max(var, eps)).

    max(var, eps) = var + eps' with eps' = max(eps - var, 0), a per-block eps.
    """
    return _block_by_block(x, num_groups, weight, bias, np.maximum(eps - _block_variance(x, num_groups), 0.0))


def _eps_ignored(x: np.ndarray, num_groups: int, weight: Any, bias: Any, eps: float) -> list[Piece]:
    """GN with eps left out: (x - mu) / sqrt(var), the reference with eps = 0 (a constant block is NaN)."""
    return _whole(x, num_groups, weight, bias, 0.0)


def _interleaved_groups(x: np.ndarray, num_groups: int, weight: Any, bias: Any, eps: float) -> list[Piece]:
    """GN whose group g holds the channels c with c mod G = g instead of a contiguous block.

    Taking the channels in the order (0, G, 2G, ..., 1, G + 1, ...) makes those groups contiguous: the
    variant is GN of x[:, order] with the parameters in the same order.
    """
    c = x.shape[1]
    order = np.arange(c).reshape(c // num_groups, num_groups).T.reshape(-1)
    return [Piece(_positions(x)[:, order], x[:, order], num_groups, None if weight is None else weight[order],
                  None if bias is None else bias[order], eps)]


def _per_group_affine(x: np.ndarray, num_groups: int, weight: Any, bias: Any, eps: float) -> list[Piece]:
    """GN whose affine is per group, as ONNX GroupNormalization-18 read it: weight[g], bias[g] for group g.

    The per-channel parameters become weight'[c] = weight[c // (C/G)] (likewise bias): the first G entries
    are used, one per group.
    """
    group_of = np.arange(x.shape[1]) // (x.shape[1] // num_groups)
    return _whole(x, num_groups, None if weight is None else weight[group_of],
                  None if bias is None else bias[group_of], eps)


def _batch_pooled(x: np.ndarray, num_groups: int, weight: Any, bias: Any, eps: float) -> list[Piece]:
    """GN whose statistics for group g are pooled over all N samples (as batch normalization pools them).

    Rearranging (N, G, k, S) to one sample (1, G * N * k, S), group-major, makes each pooled set one
    contiguous group of N * k channels; channel (g, n, j) takes the parameters of channel g * k + j.
    """
    n, c = x.shape[0], x.shape[1]
    if n == 0:
        return []
    k = c // num_groups

    def pool(a: np.ndarray) -> np.ndarray:
        return a.reshape(n, num_groups, k, -1).transpose(1, 0, 2, 3).reshape(1, num_groups * n * k, -1)

    def spread(p: np.ndarray | None) -> np.ndarray | None:
        if p is None:
            return None
        return np.broadcast_to(p.reshape(num_groups, 1, k), (num_groups, n, k)).reshape(-1)

    return [Piece(pool(_positions(x)), pool(x), num_groups, spread(weight), spread(bias), eps)]


def _layer_norm(x: np.ndarray, num_groups: int, weight: Any, bias: Any, eps: float) -> list[Piece]:
    """GN with num_groups ignored, one group per sample: LayerNorm over (C, *spatial), per-channel affine."""
    return _whole(x, 1, weight, bias, eps)


def _instance_norm(x: np.ndarray, num_groups: int, weight: Any, bias: Any, eps: float) -> list[Piece]:
    """GN with num_groups ignored, one group per channel: InstanceNorm."""
    return _whole(x, x.shape[1], weight, bias, eps)


def _affine_before_normalizing(x: np.ndarray, num_groups: int, weight: Any, bias: Any,
                               eps: float) -> list[Piece]:
    """GN applied to z = weight[c] * x + bias[c] (z in float64), with no affine afterwards."""
    z = x
    if weight is not None:
        z = z * weight.reshape(_channel_shape(x))
    if bias is not None:
        z = z + bias.reshape(_channel_shape(x))
    return [Piece(_positions(x), z, num_groups, None, None, eps)]


def _weight_bias_swapped(x: np.ndarray, num_groups: int, weight: Any, bias: Any, eps: float) -> list[Piece]:
    """GN with weight and bias exchanged: y = bias[c] * xhat + weight[c] (a missing one: 1, 0)."""
    c = x.shape[1]
    scale = np.ones(c) if bias is None else bias
    shift = np.zeros(c) if weight is None else weight
    return _whole(x, num_groups, scale, shift, eps)


def _affine_ignored(x: np.ndarray, num_groups: int, weight: Any, bias: Any, eps: float) -> list[Piece]:
    """GN with weight and bias ignored: y = xhat."""
    return _whole(x, num_groups, None, None, eps)


def _channels_last_without_permute(x: np.ndarray, num_groups: int, weight: Any, bias: Any,
                                   eps: float) -> list[Piece]:
    """GN whose groups are G equal slices of the channels-last layout (N, *spatial, C), each mixing channels.

    Slice (n, g) holds L = C * prod(spatial) / G values whose channels cycle fastest; normalizing it and
    then applying each value's channel parameters is GN of the slice laid out as (1, L) (L channels of one
    value, one group) with per-element parameters: one piece per slice.
    """
    n = x.shape[0]
    channel = np.broadcast_to(np.arange(x.shape[1]).reshape(_channel_shape(x)), x.shape)

    def rows(a: np.ndarray) -> np.ndarray:
        return np.moveaxis(a, 1, -1).reshape(n, num_groups, -1)

    pos, vals, chan = rows(_positions(x)), rows(x), rows(channel)
    return [Piece(pos[i, g][None, :], vals[i, g][None, :], 1, None if weight is None else weight[chan[i, g]],
                  None if bias is None else bias[chan[i, g]], eps)
            for i in range(n) for g in range(num_groups)]


def _computed_in_float32(x: np.ndarray, num_groups: int, weight: Any, bias: Any, eps: float) -> list[Piece]:
    """GN of the inputs rounded to float32, as an implementation that computes in float32 produces.

    Judged with float32's error model: the observed values match when they are as accurate as float32
    arithmetic can make them, and no more.
    """

    def f32(a: np.ndarray) -> np.ndarray:
        return a.astype(np.float32).astype(np.float64)

    w = None if weight is None else f32(weight)
    b = None if bias is None else f32(bias)
    return [Piece(_positions(x), f32(x), num_groups, w, b, float(np.float32(eps)))]


def _scaled_blocks(x: np.ndarray, num_groups: int, weight: np.ndarray | None, bias: np.ndarray | None,
                   eps: float, factor: np.ndarray) -> list[Piece]:
    """GN whose block (n, g) is normalized by factor[n, g] in place of r = 1/sqrt(var + eps): one piece per
    block, y = weight[c] * (x - mu) * factor + bias[c].

    The piece is the block's own GN with its weight multiplied by factor / r, so the reference computes the
    values and the error model judges them with the block's statistics. factor 0 gives the bias; a block
    whose r is not finite (constant, eps = 0) has x - mu = 0, and keeps GN's piece.
    """
    var = _block_variance(x, num_groups)
    pieces = _block_by_block(x, num_groups, weight, bias, np.full(var.shape, eps))
    out = []
    for p, f, v in zip(pieces, factor.reshape(-1), var.reshape(-1), strict=True):
        if v + eps > 0.0 and np.isfinite(f):
            w = np.ones(p.x.shape[1]) if p.weight is None else p.weight
            p = Piece(p.index, p.x, 1, w * (f * np.sqrt(v + eps)), p.bias, p.eps)
        out.append(p)
    return out


def _squares_in_float16(x: np.ndarray, num_groups: int, weight: Any, bias: Any, eps: float) -> list[Piece]:
    """GN whose variance is the mean of the deviations' squares each rounded to float16 (as tinygrad forms
    (x - mu) * (x - mu) in the tensor's float16 before a float32 mean).

    var16 = mean(fl16((x - mu)^2)): a square at or above 65520 rounds to inf, so a block with a deviation of
    about 256 or more gets r = 0 and outputs its bias; squares below 2**-25 round to 0. Each block is GN
    normalized by 1/sqrt(var16 + eps) (the float32 mean's own rounding is below GN's float16 tolerance).
    """
    b = block_rows(x, num_groups)
    d = b - b.mean(axis=-1, keepdims=True) if b.shape[-1] else b
    with np.errstate(over="ignore"):
        var16 = round_to(d * d, "float16").astype(np.float64).mean(axis=-1) if b.shape[-1] else d.sum(-1)
    with np.errstate(divide="ignore"):
        factor = np.where(np.isinf(var16), 0.0, 1.0 / np.sqrt(var16 + eps))
    return _scaled_blocks(x, num_groups, weight, bias, eps, factor)


def _nan_replaced_by_zero(x: np.ndarray, num_groups: int, weight: Any, bias: Any, eps: float) -> list[Piece]:
    """GN with NaN outputs replaced by 0 (numpy.nan_to_num), instead of propagated: GN's piece, then post."""
    return _whole(x, num_groups, weight, bias, eps)


def _zero_nan(y: np.ndarray) -> np.ndarray:
    return np.nan_to_num(y, nan=0.0, posinf=np.inf, neginf=-np.inf)


def _has_non_finite(example: Counterexample) -> bool:
    return not bool(np.isfinite(example.x).all())


def _finite_float16(example: Counterexample) -> bool:
    return example.dtype == "float16" and not _has_non_finite(example)


def _float32_numbers(observed: np.ndarray) -> bool:
    """Every finite observed value is a float32 number (what a computation in float32 returns)."""
    finite = observed[np.isfinite(observed)]
    return bool(np.array_equal(finite.astype(np.float32).astype(np.float64), finite))


FORWARD_VARIANTS: tuple[Variant, ...] = (
    Variant("bessel_variance", "Bessel-corrected variance (divided by m - 1 instead of m)", _bessel_variance),
    Variant("eps_outside_sqrt", "eps added to the standard deviation, (x - mu) / (sqrt(var) + eps)",
            _eps_outside_sqrt),
    Variant("eps_as_clamp", "eps used as a floor on the variance, (x - mu) / sqrt(max(var, eps))",
            _eps_as_clamp),
    Variant("eps_ignored", "eps ignored, (x - mu) / sqrt(var)", _eps_ignored),
    Variant("interleaved_groups", "interleaved groups (channel c in group c mod G, not contiguous blocks)",
            _interleaved_groups),
    Variant("per_group_affine", "a per-group affine, weight[g] and bias[g] for every channel of group g "
            "(the ONNX GroupNormalization-18 reading)", _per_group_affine),
    Variant("batch_pooled", "statistics pooled over the whole batch instead of per sample", _batch_pooled),
    Variant("layer_norm", "num_groups ignored: one group per sample (LayerNorm)", _layer_norm),
    Variant("instance_norm", "num_groups ignored: one group per channel (InstanceNorm)", _instance_norm),
    Variant("affine_before_normalizing", "weight and bias applied before normalizing instead of after",
            _affine_before_normalizing),
    Variant("weight_bias_swapped", "weight and bias swapped", _weight_bias_swapped),
    Variant("affine_ignored", "weight and bias ignored", _affine_ignored),
    Variant("channels_last_without_permute", "groups cut from the channels-last layout without a permute "
            "(each group mixes all channels)", _channels_last_without_permute),
    Variant("computed_in_float32", "the computation carried out in float32 (float32 accuracy, not float64)",
            _computed_in_float32, judged_as="float32", applies=lambda example: example.dtype == "float64",
            signature=_float32_numbers),
    Variant("nan_replaced_by_zero", "NaN outputs replaced by 0 instead of propagated", _nan_replaced_by_zero,
            post=_zero_nan, applies=_has_non_finite),
    Variant("squares_in_float16", "the squared deviations rounded to float16 before they are averaged "
            "(a square of 65520 or more is inf, and the block gives its bias)", _squares_in_float16,
            applies=_finite_float16),
)

_FORWARD_BY_NAME: dict[str, Variant] = {v.name: v for v in FORWARD_VARIANTS}


def _public(name: str) -> Callable[..., np.ndarray]:
    variant = _FORWARD_BY_NAME[name]

    def forward(x: Any, num_groups: int, weight: Any = None, bias: Any = None,
                eps: float = 1e-5) -> np.ndarray:
        return variant.forward(x, num_groups, weight, bias, eps)

    forward.__name__ = forward.__qualname__ = name
    forward.__doc__ = variant.pieces.__doc__
    return forward


# The forward variants as plain functions with the reference's signature (float64 output of x's shape).
bessel_variance = _public("bessel_variance")
eps_outside_sqrt = _public("eps_outside_sqrt")
eps_as_clamp = _public("eps_as_clamp")
eps_ignored = _public("eps_ignored")
interleaved_groups = _public("interleaved_groups")
per_group_affine = _public("per_group_affine")
batch_pooled = _public("batch_pooled")
layer_norm = _public("layer_norm")
instance_norm = _public("instance_norm")
affine_before_normalizing = _public("affine_before_normalizing")
weight_bias_swapped = _public("weight_bias_swapped")
affine_ignored = _public("affine_ignored")
channels_last_without_permute = _public("channels_last_without_permute")
computed_in_float32 = _public("computed_in_float32")
nan_replaced_by_zero = _public("nan_replaced_by_zero")
squares_in_float16 = _public("squares_in_float16")


# --------------------------------------------------------------------------------------------------------
# forward variants with a rounding-dependent variance: the one-pass family


def _one_pass_envelope(x: np.ndarray, num_groups: int, dtype: str) -> tuple[np.ndarray, np.ndarray]:
    """Per block, (var, E): the exact variance and a bound on |var' - var| for var' = E[x^2] - E[x]^2
    evaluated in floating point, in any summation order.

    The sums are accumulated in the format's accumulation precision u_a (float32 for 16-bit input, as
    frameworks do; SPEC.md section 3.2), and up to four intermediates (the mean, the mean of squares, the
    square of the mean, their difference) may be stored in the input's format, unit u (Flax on float16 input
    rounds its mean so). With A = mean(|x|) and E2 = mean(x^2): in u_a, the mean of squares errs by at most
    gamma_{m+1} E2 (a rounding per square, m - 1 additions, a division), the mean by gamma_m A, its square
    then by about gamma_{2m+1} A^2, and the difference by u_a |E2' - M'^2|; so gamma_{2m+4} (E2 + A^2)
    bounds them, where gamma_k = k u_a / (1 - k u_a) (inf once k u_a >= 1). Each rounding to the input's
    format adds at most u (E2 + A^2) to first order: E = (gamma_{2m+4} + 4 u) (E2 + A^2).
    """
    b = block_rows(x, num_groups)
    m = b.shape[-1]
    var = _block_variance(x, num_groups)
    if m == 0:
        return var, np.zeros_like(var)
    fmt = format_of(dtype)
    ua = fmt.accumulation_roundoff
    k = 2 * m + 4
    gamma = k * ua / (1.0 - k * ua) if k * ua < 1.0 else np.inf
    return var, (gamma + 4.0 * fmt.unit_roundoff) * ((b * b).mean(axis=-1) + np.abs(b).mean(axis=-1) ** 2)


@dataclass(frozen=True)
class OnePassVariant:
    """A variant whose variance is the one-pass E[x^2] - E[x]^2 of floating-point arithmetic, and what it
    does with the result: ``rule`` "unclamped" (a value below -eps gives NaN), "clamped" (max(var', 0)) or
    "inv_std_one" (r = 1 where var' <= 0, as Apex's kernels do).

    Its output is not one formula: var' depends on the summation order and the precision of accumulation.
    What every such output shares is its shape: each block is GN's (x - mu) times one factor r' (or NaN), with
    r' = 1/sqrt(v + eps) for a v within the one-pass error bound of the block's variance
    (:func:`_one_pass_envelope`). So :meth:`match` fits that factor to the observed block, takes the nearest
    factor the rule allows, and judges the observed block against GN normalized by it with the error model
    (:func:`_scaled_blocks`), exactly as a Piece variant is judged. There are no exact values to compare with
    GN's; the diagnosis asks instead that no other variant fits the same evidence (:func:`diagnose`).
    """

    name: str
    explains: str
    rule: str

    def applies(self, example: Counterexample) -> bool:
        return not _has_non_finite(example)

    def _candidates(self, s_fit: float, var: float, bound: float, eps: float) -> list[float]:
        """The factors the rule allows for a block that is nearest to s_fit (NaN: a NaN block)."""
        lo, hi = var - bound, var + bound
        out = []
        floor = lo if self.rule == "unclamped" else max(lo, 0.0)
        with np.errstate(divide="ignore", invalid="ignore"):
            s_lo = 1.0 / np.sqrt(hi + eps)
            s_hi = 1.0 / np.sqrt(floor + eps) if floor + eps > 0.0 else np.inf
        if self.rule == "inv_std_one" and floor == 0.0 and lo <= 0.0:
            # r' = 1/sqrt(v + eps) for v > 0 only: v = 0 itself gives 1, not 1/sqrt(eps)
            out.append(1.0)
        out.append(float(np.clip(s_fit, s_lo, s_hi)) if np.isfinite(s_fit) else 1.0 / np.sqrt(var + eps))
        if self.rule == "unclamped" and lo + eps < 0.0:
            out.append(np.nan)
        return out

    def match(self, observed: np.ndarray, example: Counterexample, scorer: Scorer) -> float:
        """The scorer's worst ratio for ``observed`` taken as an output of this variant (<= 1: it matches)."""
        x, g, eps = example.x, example.num_groups, example.eps
        if observed.shape != x.shape or x.size == 0:
            return float("inf")
        var, bound = _one_pass_envelope(x, g, example.dtype)
        c = x.shape[1]
        w = np.ones(c) if example.weight is None else example.weight
        bias = np.zeros(c) if example.bias is None else example.bias
        shape = _channel_shape(x)
        d = block_rows(x, g)
        a = block_rows(np.broadcast_to(w.reshape(shape), x.shape), g) * (d - d.mean(axis=-1, keepdims=True))
        t = block_rows(observed - np.broadcast_to(bias.reshape(shape), x.shape), g)
        obs = block_rows(observed, g)
        worst = 0.0
        for n in range(var.shape[0]):
            for j in range(var.shape[1]):
                ok = np.isfinite(t[n, j])
                den = float((a[n, j][ok] ** 2).sum())
                s_fit = float((a[n, j][ok] * t[n, j][ok]).sum()) / den if den > 0.0 else np.nan
                best = np.inf
                for f in self._candidates(s_fit, float(var[n, j]), float(bound[n, j]), eps):
                    if np.isnan(f):
                        best = min(best, 0.0 if np.isnan(obs[n, j]).all() else np.inf)
                        continue
                    best = min(best, self._block_ratio(observed, example, scorer, n, j, f))
                worst = max(worst, best)
        return worst

    @staticmethod
    def _block_ratio(observed: np.ndarray, example: Counterexample, scorer: Scorer, n: int, j: int,
                     factor: float) -> float:
        """The ratio of block (n, j) of ``observed`` against GN normalized by ``factor`` there."""
        x, g = example.x, example.num_groups
        k = x.shape[1] // g
        ch = slice(j * k, (j + 1) * k)
        xb = x[n : n + 1, ch]
        wb = None if example.weight is None else example.weight[ch]
        bb = None if example.bias is None else example.bias[ch]
        (p,) = _scaled_blocks(xb, 1, wb, bb, example.eps, np.array([[factor]]))
        piece_example = Counterexample(p.x, 1, p.weight, p.bias, p.eps, example.dtype)
        expected = gn_spec.group_norm(p.x, 1, p.weight, p.bias, p.eps)
        return float(scorer(observed[n : n + 1, ch], expected, piece_example, "output"))


ONE_PASS_VARIANTS: tuple[OnePassVariant, ...] = (
    OnePassVariant("one_pass_clamped", "a one-pass variance E[x^2] - E[x]^2 in floating point that is not "
                   "negative here (clamped at 0, as Flax's fast variance and Equinox do, or cancelled to a "
                   "value >= 0)", "clamped"),
    OnePassVariant("one_pass_unclamped", "a one-pass variance E[x^2] - E[x]^2 in floating point, not "
                   "clamped: it cancelled below 0 (as ONNX GroupNormalization's function body and Keras' "
                   "ops.moments compute it)", "unclamped"),
    OnePassVariant("one_pass_inv_std_one", "a one-pass variance E[x^2] - E[x]^2 in floating point, and "
                   "1/std taken as 1 where it came out <= 0 (as Apex's kernels do)", "inv_std_one"),
)


#: The forward variants by name, the one-pass family included.
VARIANTS_BY_NAME: dict[str, Variant | OnePassVariant] = {**_FORWARD_BY_NAME,
                                                         **{v.name: v for v in ONE_PASS_VARIANTS}}


# --------------------------------------------------------------------------------------------------------
# backward variants


def _backward_parts(grad_output: np.ndarray, x: np.ndarray, num_groups: int, weight: Any, eps: float):
    """Per block: dxhat = weight[c] * dy and xhat as (N, G, m), r as (N, G, 1); and the reference's grads.

    xhat comes from the reference (GN without affine), r from the corrected two-pass variance.
    """
    dy = np.asarray(grad_output, dtype=np.float64)
    w = np.ones(x.shape[1]) if weight is None else np.asarray(weight, dtype=np.float64)
    dxhat = block_rows(dy * w.reshape(_channel_shape(x)), num_groups)
    xhat = block_rows(gn_spec.group_norm(x, num_groups, None, None, eps), num_groups)
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


def _quiet(fn: Callable[..., list[Diagnosis]]) -> Callable[..., list[Diagnosis]]:
    """Run ``fn`` with numpy's floating-point warnings off.

    Variants produce NaN and inf by design (0/0 when eps is ignored, the sample variance of one value); those
    warnings are not the caller's concern."""

    @functools.wraps(fn)
    def quiet(*args: Any, **kwargs: Any) -> list[Diagnosis]:
        with np.errstate(all="ignore"):
            return fn(*args, **kwargs)

    return quiet


def _as_float64(a: Any) -> np.ndarray:
    return np.asarray(a, dtype=np.float64)


def _score(scorer: Scorer, observed: np.ndarray, expected: np.ndarray, example: Counterexample,
           quantity: str) -> float:
    """The scorer's ratio, or inf when the shapes differ (no variant changes the output's shape)."""
    if observed.shape != expected.shape:
        return float("inf")
    return float(scorer(observed, expected, example, quantity))


class ErrorModelScorer:
    """The checker's error model (:mod:`gn_spec.error_model`) as a :class:`Scorer`.

    A tolerance depends only on the counterexample's inputs, its dtype and the quantity, so it is computed
    once per (counterexample, quantity) for as long as the scorer lives (one diagnosis).
    """

    def __init__(self) -> None:
        self._tolerances: dict[tuple[int, str], tuple[Counterexample, Any]] = {}

    def _tolerance(self, example: Counterexample, quantity: str) -> Any:
        key = (id(example), quantity)
        if key not in self._tolerances:
            if quantity == "output":
                tol = error_model.forward_tolerance(
                    example.x, example.num_groups, example.weight, example.bias, example.eps, example.dtype
                )
            else:
                if example.grad_output is None:
                    raise ValueError(f"scoring {quantity} needs the counterexample's grad_output")
                tol = error_model.backward_tolerances(
                    example.grad_output, example.x, example.num_groups, example.weight, example.eps,
                    example.dtype,
                )[quantity]
            self._tolerances[key] = (example, tol)  # holding the example keeps its id from being reused
        return self._tolerances[key][1]

    def __call__(
        self, observed: np.ndarray, expected: np.ndarray, example: Counterexample, quantity: str
    ) -> float:
        return error_model.judge(quantity, observed, expected, self._tolerance(example, quantity)).max_ratio


@_quiet
def diagnose(
    observed: Any,
    x: Any,
    num_groups: int,
    weight: Any = None,
    bias: Any = None,
    eps: float = 1e-5,
    *,
    dtype: str,
    scorer: Scorer | None = None,
    variants: Sequence[Variant] = FORWARD_VARIANTS,
    one_pass: Sequence[OnePassVariant] = ONE_PASS_VARIANTS,
) -> list[Diagnosis]:
    """The known variants that explain an implementation's forward output on one input, best match first.

    ``observed`` is the implementation's output for (x, num_groups, weight, bias, eps) in format ``dtype``.
    Only a failure is explained: when the scorer accepts ``observed`` as GN's output the result is [].
    A variant is reported when the scorer accepts ``observed`` as the variant's output (ratio <= 1) and
    the input tells the two apart both ways: the variant's output is rejected as GN's, and GN's output is
    rejected as the variant's (a variant judged piece by piece can have much looser bounds than GN: one
    value per group with |x| >> sqrt(eps), say, where any output near GN's would "match"). A NaN of the
    variant tells nothing apart: NaN outputs have many causes (eps ignored gives 0/0 on a constant block,
    and so does a one-pass variance that came out negative), so both tests compare where the variant gives a
    number only.  A variant judged in another precision (float32 for float64 input), whose bounds
    take GN's values too, is named only when the observed output carries its mark (``Variant.signature``).
    The one-pass family (:class:`OnePassVariant`) is named when one of its members fits and the others do not
    (:func:`_one_pass_diagnoses`), and no formula variant fits too: a cancelled variance can take many
    values, so an output that a formula also explains singles out neither. Returns [] when nothing fits.
    """
    scorer = scorer or ErrorModelScorer()
    obs = _as_float64(observed)
    xs = _as_float64(x)
    w = None if weight is None else _as_float64(weight)
    b = None if bias is None else _as_float64(bias)
    example = Counterexample(xs, int(num_groups), w, b, float(eps), dtype)
    expected = gn_spec.group_norm(xs, num_groups, w, b, eps)
    if _score(scorer, obs, expected, example, "output") <= 1.0:
        return []  # the output conforms: there is no failure to explain
    found = []
    for v in variants:
        if not v.applies(example):
            continue
        own = v.forward(xs, example.num_groups, w, b, example.eps)
        nan = np.isnan(own)
        if _score(scorer, np.where(nan, expected, own), expected, example, "output") <= 1.0:
            continue  # indistinguishable from GN on this input (where the variant gives a number)
        if v.signature is not None and not v.signature(obs):
            continue  # the observed output lacks the variant's mark
        if v.judged_as is None and v.match(np.where(nan, own, expected), example, scorer) <= 1.0:
            # the variant's own tolerance admits GN's exact output: a match would say nothing.  (A variant
            # judged in another precision, float32 for float64 input, is that loose by design: it names
            # the precision, and its signature tells it apart.)
            continue
        ratio = v.match(obs, example, scorer)
        if ratio <= 1.0:
            found.append(Diagnosis(v.name, f"the output matches GN with {v.explains}", ratio))
    passes = _one_pass_diagnoses(obs, example, scorer, one_pass)
    if passes and found:
        # a one-pass variance and a formula both explain the output: the evidence does not single either out
        # (a cancelled variance can be any value in its envelope, e.g. 0, as eps used as a floor gives)
        return []
    return sorted(found + passes, key=lambda d: d.ratio)


def _one_pass_diagnoses(observed: np.ndarray, example: Counterexample, scorer: Scorer,
                        family: Sequence[OnePassVariant]) -> list[Diagnosis]:
    """The one-pass variants the evidence singles out among themselves.

    Their outputs nest: every output of the clamped variant is one the unclamped and the r = 1 variants can
    give too (an unclamped var' that happens to be >= 0; a tiny positive var' gives r ~ 1/sqrt(eps)). So
    when the clamped variant fits, it alone is named (its message says the variance was not negative here);
    the others are named only when the clamped one does not fit, and then only one that fits alone: NaN
    blocks tell "unclamped", r = 1 on a cancelled block tells Apex's rule, and an output both could give
    tells neither.
    """
    fits = [v for v in family if v.applies(example) and v.match(observed, example, scorer) <= 1.0]
    if any(v.rule == "clamped" for v in fits):
        fits = [v for v in fits if v.rule == "clamped"]
    if len(fits) != 1:
        return []
    (v,) = fits
    return [Diagnosis(v.name, f"the output matches GN with {v.explains}", v.match(observed, example, scorer))]


@_quiet
def diagnose_backward(
    observed: Sequence[Any],
    grad_output: Any,
    x: Any,
    num_groups: int,
    weight: Any = None,
    eps: float = 1e-5,
    *,
    dtype: str,
    scorer: Scorer | None = None,
    variants: Sequence[BackwardVariant] = BACKWARD_VARIANTS,
) -> list[Diagnosis]:
    """The known backward variants that explain observed (grad_input, grad_weight, grad_bias), best first.

    Entries of ``observed`` may be None (not computed); they are then not compared. Only a failure is
    explained ([] when every compared gradient conforms). A variant is reported when every observed gradient
    matches the variant's (ratio <= 1) and at least one of the compared variant gradients is rejected as GN's.
    """
    scorer = scorer or ErrorModelScorer()
    xs = _as_float64(x)
    dy = _as_float64(grad_output)
    w = None if weight is None else _as_float64(weight)
    example = Counterexample(xs, int(num_groups), w, None, float(eps), dtype, dy)
    names = ("grad_input", "grad_weight", "grad_bias")
    expected = gn_spec.group_norm_backward(dy, xs, num_groups, w, eps)
    compared = [i for i, o in enumerate(observed) if o is not None]
    if all(_score(scorer, _as_float64(observed[i]), expected[i], example, names[i]) <= 1.0
           for i in compared):
        return []  # the gradients conform: there is no failure to explain
    found = []
    for v in variants:
        grads = v.backward(dy, xs, int(num_groups), w, float(eps))
        if max(_score(scorer, grads[i], expected[i], example, names[i]) for i in compared) <= 1.0:
            continue  # indistinguishable from GN's backward on this input
        ratio = max(_score(scorer, _as_float64(observed[i]), grads[i], example, names[i]) for i in compared)
        if ratio <= 1.0:
            found.append(Diagnosis(v.name, f"the gradients match GN's backward with {v.explains}", ratio))
    return sorted(found, key=lambda d: d.ratio)
