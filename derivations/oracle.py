"""Exact oracle for Group Normalization: correctly rounded float64 values of the forward, the backward and
the second order, computed from the exact values of the float inputs.

Why this is exact.  For one (sample, group) block of m elements every input is a dyadic rational, so

    mu = sum(x)/m,  d_i = x_i - mu,  var = sum(d^2)/m,  Q = var + eps

are rationals, and with r = Q^(-1/2) every output of one block has the form A + B*r with A, B rational
(r^3 = r/Q and r^5 = r/Q^2 fold back into B).  A per-channel output (grad_weight) sums such terms over the
samples: V = A + sum_n B_n r_n.  The oracle evaluates the closed forms of
``gn_spec.derivations.closed_forms`` exactly (integer vectors over a common denominator, so the per-element
work is plain integer arithmetic; Fractions only for the per-block scalars), brackets each r_n between two
dyadic rationals with an integer square root, and narrows the bracket (doubling the precision) until both
ends round to the same float64 (Ziv's strategy).  Rounding a rational is exact: CPython's int / int is
correctly rounded to nearest, ties to even, including subnormal results, and raises OverflowError only when
the rounded value would exceed the float64 range (the oracle returns +-inf there).

Why the loop ends.  Two roots r_n, r_k are in the same class when r_n / r_k is rational (Q_k / Q_n is the
square of a rational); the oracle merges each class into one term (bucketed by a cheap class invariant, the
square class of Q modulo small primes, then compared exactly).  Square roots of rationals from distinct
classes are linearly independent over the rationals, so V is rational exactly when every class coefficient
is zero (then V is computed exactly, which handles ties, exact zeros, constant groups and m = 1); otherwise V
is irrational, hence neither a float64 nor a midpoint between two, and a fine bracket decides the rounding.

Conventions.
- Inputs: numpy arrays of float16, float32 or float64, taken at their exact values; NaN or inf anywhere raises
  ValueError naming the argument and index.
- eps = 0 with a constant group (Q = 0) leaves the result undefined (0/0): every output of that block, and
  each per-channel sum that includes it, is NaN.  No error is raised, so other blocks stay usable.
- The closed forms used are the ones SPEC.md states; ``python -m gn_spec.derivations`` proves that these
  exact (A, B) forms equal the derivatives of the forward definition.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from fractions import Fraction
from typing import Any

import numpy as np

from gn_spec.derivations import closed_forms as cf
from gn_spec.reference.validate import as_real_array

__all__ = ["group_norm", "group_norm_backward", "group_norm_double_backward", "ulp", "ulp_error"]

_START_BITS = 64  # first precision of the root bracket; doubled until the rounding is decided
_CLASS_PRIMES = (3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47)


# ----------------------------------------------------------------------------------------------------------
# Input handling
# ----------------------------------------------------------------------------------------------------------


def _as_exact_array(value: Any, name: str) -> np.ndarray:
    """``value`` as a float64 array of exactly the same, finite, numbers, or raise naming ``name``.

    The conversion is the reference's own (``gn_spec.reference.validate.as_real_array``: float16, float32,
    float64, a longdouble only when float64 holds it exactly); the oracle adds the refusal of NaN and inf.
    """
    arr64 = as_real_array(value, name)
    bad = ~np.isfinite(arr64)
    if bad.any():
        idx = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(f"{name} contains the non-finite value {float(arr64[idx])!r} at index {idx}; "
                         "the oracle is defined for finite inputs only")
    return arr64


def _check_layout(x: np.ndarray, num_groups: Any) -> tuple[int, int, int, int]:
    """Validate the layout of x and return (N, C, G, S) with S the number of spatial positions."""
    if x.ndim < 2:
        raise ValueError(f"x must have shape (N, C, *spatial), got shape {x.shape}")
    if isinstance(num_groups, bool) or not isinstance(num_groups, (int, np.integer)) or num_groups < 1:
        raise ValueError(f"num_groups={num_groups!r} must be a positive integer")
    n, c = x.shape[0], x.shape[1]
    if c % num_groups:
        raise ValueError(f"num_groups={num_groups} does not divide C={c} (input shape {x.shape})")
    s = math.prod(x.shape[2:])
    if s == 0:
        raise ValueError(f"x has a zero-size spatial extent (shape {x.shape})")
    return n, c, int(num_groups), s


def _per_channel(value: Any, name: str, c: int, default: float) -> np.ndarray:
    if value is None:
        return np.full(c, default)
    arr = _as_exact_array(value, name)
    if arr.shape != (c,):
        raise ValueError(f"{name} must have shape ({c},), got {arr.shape}")
    return arr


def _like_x(value: Any, name: str, shape: tuple[int, ...]) -> np.ndarray:
    if value is None:
        return np.zeros(shape)
    arr = _as_exact_array(value, name)
    if arr.shape != shape:
        raise ValueError(f"{name} must have the shape of x {shape}, got {arr.shape}")
    return arr


def _check_eps(eps: Any) -> Fraction:
    if isinstance(eps, bool) or not isinstance(eps, (int, float, np.integer, np.floating)):
        raise TypeError(f"eps={eps!r} must be a real number")
    e = float(eps)
    if not math.isfinite(e) or e < 0:
        raise ValueError(f"eps={eps!r} must be finite and non-negative")
    return Fraction(e)


# ----------------------------------------------------------------------------------------------------------
# Exact vectors: integers times one rational scale
# ----------------------------------------------------------------------------------------------------------


class ScaledIntVec:
    """An exact vector of one block, element i = ints[i] * scale, implementing ``closed_forms.VectorLike``.

    Every operation costs one or two Fraction operations for the scale and plain integer arithmetic per
    element: adding vectors (or a scalar) first brings both to the common scale scale / den with den the
    denominator of the ratio of the two scales, so the integers stay integers.
    """

    __slots__ = ("ints", "scale")

    def __init__(self, ints: list[int], scale: Fraction) -> None:
        self.ints = ints
        self.scale = scale

    @classmethod
    def from_floats(cls, values: list[float]) -> ScaledIntVec:
        """The exact values of finite floats: integers over their largest (power of two) denominator."""
        ratios = [v.as_integer_ratio() for v in values]
        den = max(d for _, d in ratios)
        return cls([n * (den // d) for n, d in ratios], Fraction(1, den))

    @property
    def size(self) -> int:
        return len(self.ints)

    def _aligned(self, other: ScaledIntVec) -> tuple[list[int], list[int], Fraction]:
        """Both integer vectors over one scale: if self.scale / other.scale = p/q, that is other.scale / q."""
        if not other.scale:
            return self.ints, [0] * len(self.ints), self.scale
        ratio = self.scale / other.scale
        p, q = ratio.numerator, ratio.denominator
        mine = self.ints if p == 1 else [p * a for a in self.ints]
        theirs = other.ints if q == 1 else [q * b for b in other.ints]
        return mine, theirs, other.scale / q

    def __add__(self, other: ScaledIntVec) -> ScaledIntVec:
        a, b, scale = self._aligned(other)
        return ScaledIntVec([x + y for x, y in zip(a, b, strict=True)], scale)

    def __sub__(self, other: ScaledIntVec) -> ScaledIntVec:
        a, b, scale = self._aligned(other)
        return ScaledIntVec([x - y for x, y in zip(a, b, strict=True)], scale)

    def __mul__(self, other: Any) -> ScaledIntVec:
        if isinstance(other, ScaledIntVec):
            return ScaledIntVec([x * y for x, y in zip(self.ints, other.ints, strict=True)],
                                self.scale * other.scale)
        return ScaledIntVec(self.ints, self.scale * other)

    def shift(self, scalar: Any) -> ScaledIntVec:
        const = ScaledIntVec([1] * len(self.ints), Fraction(scalar))
        return self + const if scalar else self

    def sum(self) -> Fraction:
        return sum(self.ints) * self.scale

    def numerators(self) -> tuple[list[int], int]:
        """(n, L) with element i equal to n_i / L exactly."""
        p, q = self.scale.numerator, self.scale.denominator
        return (self.ints if p == 1 else [p * a for a in self.ints]), q


def _block_vectors(arr: np.ndarray, n: int, g: int) -> list[list[ScaledIntVec]]:
    """The exact values of an (N, C, *spatial) array, one vector per (sample, group) block."""
    flat = arr.reshape(n, g, arr[0].size // g if n else 0)
    return [[ScaledIntVec.from_floats(flat[i, j].tolist()) for j in range(g)] for i in range(n)]


def _channel_vectors(vec: np.ndarray, g: int, s: int) -> list[ScaledIntVec]:
    """Per group, the per-channel values repeated over each channel's S positions (the block's layout)."""
    rows = vec.reshape(g, -1).tolist()
    return [ScaledIntVec.from_floats([v for v in row for _ in range(s)]) for row in rows]


# ----------------------------------------------------------------------------------------------------------
# Certified roots and correct rounding
# ----------------------------------------------------------------------------------------------------------


def _round(num: int, den: int) -> float:
    """Correctly rounded (nearest, ties to even) float64 of num/den (den > 0); +-inf past the range."""
    try:
        return num / den
    except OverflowError:
        return math.inf if num > 0 else -math.inf


def _round_fraction(value: Fraction) -> float:
    return _round(value.numerator, value.denominator)


def _rational_sqrt(q: Fraction) -> Fraction | None:
    """sqrt(q) if it is rational, else None (q >= 0, in lowest terms as Fractions are)."""
    a, b = math.isqrt(q.numerator), math.isqrt(q.denominator)
    if a * a == q.numerator and b * b == q.denominator:
        return Fraction(a, b)
    return None


def _square_class_key(q: Fraction) -> tuple[int, ...]:
    """An invariant of q's square class (q ~ q' iff q/q' is a rational square), cheap to compute.

    q and n = num * den differ by the square den^2.  For each small prime p, write n = p^v n' with p not
    dividing n'; the parity of v and whether n' is a square modulo p (Euler's criterion) depend only on the
    square class (for p = 2: n' mod 8, whose odd squares are all 1).  Equal keys are then compared exactly.
    """
    n = q.numerator * q.denominator
    key = []
    for p in (2, *_CLASS_PRIMES):
        v = 0
        while n % p == 0:
            n //= p
            v += 1
        key.append(v & 1)
        key.append(n % 8 if p == 2 else pow(n % p, (p - 1) // 2, p))
    return tuple(key)


class _Root:
    """r = Q^(-1/2) for a rational Q > 0: exact when rational, otherwise bracketed to any precision."""

    def __init__(self, q: Fraction) -> None:
        self.q = q
        s = _rational_sqrt(q)
        self.exact: Fraction | None = None if s is None else 1 / s
        self._cache: dict[int, tuple[int, int]] = {}
        self._key: tuple[int, ...] | None = None

    @property
    def key(self) -> tuple[int, ...]:
        if self._key is None:
            self._key = _square_class_key(self.q)
        return self._key

    def bracket(self, bits: int) -> tuple[int, int]:
        """(R, k) with R 2^-k <= r < (R + 1) 2^-k and R of about ``bits`` bits (k may be negative).

        With r^2 = den/num and R = isqrt(floor(den 4^k / num)):  R^2 <= den 4^k / num < (R + 1)^2.
        """
        if bits not in self._cache:
            num, den = self.q.numerator, self.q.denominator
            k = bits + (num.bit_length() - den.bit_length()) // 2 + 2
            root = math.isqrt((den << 2 * k) // num) if k >= 0 else math.isqrt(den // (num << -2 * k))
            self._cache[bits] = (root, k)
        return self._cache[bits]


def _round_affine(a: int, la: int, b: int, lb: int, root: _Root) -> float:
    """Correctly rounded a/la + (b/lb) r: exact if b = 0 or r is rational, else Ziv's loop on the bracket.

    r irrational and b != 0 make the value irrational, so it is never a float64 or a midpoint: the loop ends.
    """
    if b == 0:
        return _round(a, la)
    if root.exact is not None:
        p, q = root.exact.numerator, root.exact.denominator
        return _round(a * lb * q + b * la * p, la * lb * q)
    bits = _START_BITS
    while True:
        r0, k = root.bracket(bits)
        if k >= 0:  # r in [r0, r0 + 1] / 2^k
            base, step, den = a * lb << k, b * la, la * lb << k
        else:  # r in [r0, r0 + 1] * 2^-k
            base, step, den = a * lb, b * la << -k, la * lb
        f_lo, f_hi = _round(base + step * r0, den), _round(base + step * (r0 + 1), den)
        if f_lo == f_hi:
            return f_lo
        bits *= 2


def _round_block(a: ScaledIntVec | None, b: ScaledIntVec, root: _Root | None) -> list[float]:
    """Correctly rounded a_i + b_i r for every element of a block (a None means 0; root None means NaN)."""
    if root is None:
        return [math.nan] * b.size
    bn, lb = b.numerators()
    an, la = a.numerators() if a is not None else ([0] * b.size, 1)
    return [_round_affine(ai, la, bi, lb, root) for ai, bi in zip(an, bn, strict=True)]


def _log2_estimate(value: Fraction) -> int:
    """About log2 |value| (within 1), for choosing a working precision only; value != 0."""
    return value.numerator.bit_length() - value.denominator.bit_length() if value > 0 else (
        (-value).numerator.bit_length() - value.denominator.bit_length())


def _scaled_bounds(value: Fraction, shift: int) -> tuple[int, int]:
    """(floor, ceil) of value * 2^shift."""
    num, den = value.numerator, value.denominator
    num, den = (num << shift, den) if shift >= 0 else (num, den << -shift)
    return num // den, -((-num) // den)


def _round_combination(a: Fraction, terms: Sequence[tuple[Fraction, _Root]]) -> float:
    """Correctly rounded a + sum_j c_j r_j, the r_j irrational and pairwise in distinct square classes.

    Rational exactly when every c_j is zero (square roots of distinct classes are linearly independent over
    the rationals); otherwise irrational, and the enclosure is narrowed until its two ends round alike.  The
    enclosure is fixed point, [L, H] 2^-K with each term rounded outwards (floor for L, ceil for H), so that
    a sum of many terms with unrelated denominators stays cheap.
    """
    live = [(c, root) for c, root in terms if c != 0]
    if not live:
        return _round_fraction(a)
    sizes = [_log2_estimate(c) - _log2_estimate(root.q) // 2 for c, root in live]
    top = max(sizes + ([_log2_estimate(a)] if a else []))
    bits = _START_BITS
    while True:
        scale = bits + len(live).bit_length() + 2 - top  # K: 2^-K is below 2^-bits of the largest term
        lo, hi = _scaled_bounds(a, scale)
        for c, root in live:
            r0, k = root.bracket(bits)  # r in [r0, r0 + 1] 2^-k
            lo += _scaled_bounds(c * (r0 if c > 0 else r0 + 1), scale - k)[0]
            hi += _scaled_bounds(c * (r0 + 1 if c > 0 else r0), scale - k)[1]
        den = 1 << scale if scale >= 0 else 1
        f_lo = _round(lo if scale >= 0 else lo << -scale, den)
        f_hi = _round(hi if scale >= 0 else hi << -scale, den)
        if f_lo == f_hi:
            return f_lo
        bits *= 2


def _round_sum(terms: Sequence[tuple[Fraction, _Root | None]]) -> float:
    """Correctly rounded sum_n c_n r_n: rational roots fold into the rational part, roots of one square
    class merge into one term (r_n = sqrt(Q_rep / Q_n) r_rep).  A root None (an undefined block) gives NaN.
    """
    if any(root is None for _, root in terms):
        return math.nan
    a = Fraction(0)
    irrational: list[tuple[Fraction, _Root]] = []
    for c, root in terms:
        assert root is not None
        if c == 0:
            continue
        if root.exact is not None:
            a += c * root.exact
        else:
            irrational.append((c, root))
    if len(irrational) <= 1:
        return _round_combination(a, irrational)
    buckets: dict[tuple[int, ...], list[list[Any]]] = {}
    for c, root in irrational:
        bucket = buckets.setdefault(root.key, [])
        for entry in bucket:
            ratio = _rational_sqrt(entry[0].q / root.q)
            if ratio is not None:
                entry[1] += c * ratio
                break
        else:
            bucket.append([root, c])
    return _round_combination(a, [(acc, rep) for bucket in buckets.values() for rep, acc in bucket])


def _make_root(q: Fraction) -> _Root | None:
    return _Root(q) if q > 0 else None


# ----------------------------------------------------------------------------------------------------------
# Public API (same signatures as gn_spec's reference)
# ----------------------------------------------------------------------------------------------------------


def group_norm(
    x: Any, num_groups: int, weight: Any = None, bias: Any = None, eps: float = 1e-5
) -> np.ndarray:
    """Correctly rounded float64 of y = (x - mu) / sqrt(var + eps) * weight[c] + bias[c], per (n, group)."""
    x64 = _as_exact_array(x, "x")
    n, c, g, s = _check_layout(x64, num_groups)
    w = _channel_vectors(_per_channel(weight, "weight", c, 1.0), g, s)
    b = _channel_vectors(_per_channel(bias, "bias", c, 0.0), g, s)
    e = _check_eps(eps)
    xs = _block_vectors(x64, n, g)
    out = np.empty((n, g, c // g * s))
    for i in range(n):
        for j in range(g):
            a_part, b_part, q = cf.block_forward(xs[i][j], w[j], b[j], e)
            out[i, j] = _round_block(a_part, b_part, _make_root(q))
    return out.reshape(x64.shape)


def _over_blocks(
    n: int, g: int, block: Callable[[int, int], tuple[ScaledIntVec, _Root]]
) -> tuple[list[list[ScaledIntVec | None]], list[list[_Root | None]]]:
    """Run block(i, j) for every (sample, group); collect its per-element weight terms and its root.

    The closed forms divide by Q only where r^3 or r^5 is folded in, so Q = 0 (eps = 0 and a constant
    group: undefined) surfaces as ZeroDivisionError; that block keeps its NaN outputs and a None root.
    """
    terms: list[list[ScaledIntVec | None]] = [[None] * g for _ in range(n)]
    roots: list[list[_Root | None]] = [[None] * g for _ in range(n)]
    for i in range(n):
        for j in range(g):
            try:
                terms[i][j], roots[i][j] = block(i, j)
            except ZeroDivisionError:
                pass
    return terms, roots


def _channel_sums(
    terms: list[list[ScaledIntVec | None]], roots: list[list[_Root | None]], c: int, g: int, s: int
) -> np.ndarray:
    """Per channel, the correctly rounded sum over samples n and positions of terms[n][group] * r_{n, group}.

    A term None marks an undefined block (its root is None too), which makes its channels NaN.
    """
    out = np.zeros(c)
    cg = c // g
    for j in range(g):
        per_sample: list[list[Fraction] | None] = []
        for i in range(len(terms)):
            vec = terms[i][j]
            if vec is None:
                per_sample.append(None)
                continue
            nums, den = vec.numerators()
            per_sample.append([Fraction(sum(nums[ch * s:(ch + 1) * s]), den) for ch in range(cg)])
        for ch in range(cg):
            parts = [(Fraction(0) if p is None else p[ch], roots[i][j]) for i, p in enumerate(per_sample)]
            out[j * cg + ch] = _round_sum(parts)
    return out


def group_norm_backward(
    grad_output: Any, x: Any, num_groups: int, weight: Any = None, eps: float = 1e-5
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Correctly rounded (grad_input, grad_weight, grad_bias) of group_norm's VJP with cotangent grad_output.

    grad_weight and grad_bias have shape (C,); with weight None they are what a unit weight and a zero bias
    would receive.
    """
    x64 = _as_exact_array(x, "x")
    n, c, g, s = _check_layout(x64, num_groups)
    dy64 = _like_x(grad_output, "grad_output", x64.shape)
    w = _channel_vectors(_per_channel(weight, "weight", c, 1.0), g, s)
    e = _check_eps(eps)
    xs, dys = _block_vectors(x64, n, g), _block_vectors(dy64, n, g)
    dx = np.full((n, g, c // g * s), math.nan)

    def block(i: int, j: int) -> tuple[ScaledIntVec, _Root]:
        bx, term, q = cf.block_backward(dys[i][j], xs[i][j], w[j], e)
        root = _Root(q)
        dx[i, j] = _round_block(None, bx, root)
        return term, root

    grad_weight = _channel_sums(*_over_blocks(n, g, block), c, g, s)
    # grad_bias_c = sum of dy over the samples and positions of channel c: rational, rounded once.
    dy_c = np.moveaxis(dy64, 1, 0).reshape(c, -1)
    grad_bias = np.array([_round_fraction(sum(map(Fraction, row.tolist()), Fraction(0))) for row in dy_c])
    return dx.reshape(x64.shape), grad_weight, grad_bias


def group_norm_double_backward(
    grad_grad_input: Any, grad_grad_weight: Any, grad_grad_bias: Any, grad_output: Any, x: Any,
    num_groups: int, weight: Any = None, eps: float = 1e-5,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Correctly rounded (grad_grad_output, grad_x, grad_weight): the VJP of group_norm_backward with respect
    to (grad_output, x, weight) for the cotangents (grad_grad_input, grad_grad_weight, grad_grad_bias); a
    cotangent None counts as zero.
    """
    x64 = _as_exact_array(x, "x")
    n, c, g, s = _check_layout(x64, num_groups)
    dy64 = _like_x(grad_output, "grad_output", x64.shape)
    h64 = _like_x(grad_grad_input, "grad_grad_input", x64.shape)
    w = _channel_vectors(_per_channel(weight, "weight", c, 1.0), g, s)
    ggw = _channel_vectors(_per_channel(grad_grad_weight, "grad_grad_weight", c, 0.0), g, s)
    ggb = _channel_vectors(_per_channel(grad_grad_bias, "grad_grad_bias", c, 0.0), g, s)
    e = _check_eps(eps)
    xs, dys, hs = _block_vectors(x64, n, g), _block_vectors(dy64, n, g), _block_vectors(h64, n, g)
    ggo = np.full((n, g, c // g * s), math.nan)
    gx = np.full_like(ggo, math.nan)

    def block(i: int, j: int) -> tuple[ScaledIntVec, _Root]:
        a_o, b_o, term, b_x, q = cf.block_double_backward(
            hs[i][j], ggw[j], ggb[j], dys[i][j], xs[i][j], w[j], e
        )
        root = _Root(q)
        ggo[i, j] = _round_block(a_o, b_o, root)
        gx[i, j] = _round_block(None, b_x, root)
        return term, root

    grad_weight = _channel_sums(*_over_blocks(n, g, block), c, g, s)
    return ggo.reshape(x64.shape), gx.reshape(x64.shape), grad_weight


# ----------------------------------------------------------------------------------------------------------
# Error in ulps
# ----------------------------------------------------------------------------------------------------------


def ulp(exact: Any) -> np.ndarray:
    """ulp(v) = the gap between the two float64 neighbours around |v| on the side away from zero.

    For 2^e <= |v| < 2^(e+1) with e >= -1022 this is 2^(e-52) (numpy's ``spacing``); for zero and subnormals
    it is 2^-1074, the spacing of the subnormal grid.  At a power of two the larger gap is used, so a faithful
    result (one of the two floats around the exact real value) is always within 1 ulp of the correctly rounded
    one.  For +-inf (an exact value that overflows) ulp is inf.
    """
    e = np.abs(np.asarray(exact, dtype=np.float64))
    return np.where(np.isinf(e), np.inf, np.spacing(e))


def ulp_error(computed: Any, exact: Any) -> np.ndarray:
    """|computed - exact| / ulp(exact) per element, in float64 (ulp as in :func:`ulp`).

    ``exact`` is the oracle's correctly rounded value, so a faithfully rounded ``computed`` scores <= 1 and a
    correctly rounded one 0.  Where both are NaN, or both the same infinity, the error is 0; where exactly one
    is NaN or infinite (or they differ otherwise at infinity) it is inf.  The subtraction is done in float64
    (relative error <= 2^-53 of the result, irrelevant at this unit).
    """
    c = np.asarray(computed, dtype=np.float64)
    e = np.asarray(exact, dtype=np.float64)
    c, e = np.broadcast_arrays(c, e)
    with np.errstate(over="ignore", invalid="ignore"):
        err = np.abs(c - e) / ulp(e)
    same = (c == e) | (np.isnan(c) & np.isnan(e))
    err = np.where(same, 0.0, err)
    return np.where(np.isnan(err), np.inf, err)
