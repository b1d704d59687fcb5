"""Input generation for the conformance checker.

Hypothesis draws the *structure* of a case (shape, groups, eps, affine, a data recipe with its parameters
and a seed) as a small frozen :class:`Case`; :func:`materialize` fills the tensors with numpy from the seed.
Shrinking therefore works on the structure (towards small shapes, ``eps=1e-5``, plain normal data, seed 0)
and a tensor of a million elements costs Hypothesis nothing.

Every value :func:`materialize` returns is a float64 array whose entries are exactly representable in the
dtype under test, so the target and the float64 reference see the same real numbers.

Data recipes (``Case.data``), each per (sample, group) block of m elements:

``plain``     x ~ N(0, 1).
``offset``    x = mu_g + sigma_g z, z ~ N(0, 1), sigma_g = 10**log10_scale * 2**U(-2, 2) and
              |mu_g| / sigma_g = 10**log10_offset * 2**U(-1, 0) with a random sign: the conditioning kappa.
``near_eps``  as ``offset`` but sigma_g**2 = eps * 2**U(-2, 2): the variance is comparable to eps.
``constant``  every group is constant, x = mu_g with |mu_g| = 10**log10_scale * 2**U(0, 1).
``wide``      x = +-10**(log10_scale + U(-3, 3)): magnitudes over six decades inside one group.
``exact``     exact statistics (see :func:`exact_statistics_group`): every partial sum of x and of
              (x - mu)**2 is exactly representable in the accumulation precision, so the mean and the sum of
              squares come out exact in any summation order.
``grid``      values one last-digit step apart, most of them equal (see :func:`grid_group`):
              x = +-q (c + b), b in {0, 1}, the centre c in the top binade of the storage precision
              (float16, bfloat16) or at the domain's largest |mean|/std decade (float32: 1e5, float64:
              1e11), q a power of two that keeps eps below 1e-4 of the variance (grid cases draw the eps
              for which the format's range allows that).  E[x**2] - E[x]**2 cancels there in the
              accumulation precision while the data are exact.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass, fields, replace

import numpy as np
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument

from gn_spec.formats import FORMATS, NAMES, format_of, round_through_float32
from gn_spec.profiles import PROFILE_NAMES, PROFILES, Limits

DTYPES = NAMES  # the format names of gn_spec.formats, in its order
AFFINES = ("none", "weight", "bias", "weight_bias")
# Order matters: Hypothesis shrinks a sampled_from towards its first element.
RECIPES = ("plain", "offset", "exact", "near_eps", "constant", "wide", "grid")
#: The recipes whose blocks have a conditioning decade (``Case.log10_offset``, |mean|/std ~ 10**it).
DECADE_RECIPES = ("offset", "near_eps", "exact", "grid")
EPS_VALUES = (1e-5, 1e-3, 1e-6, 0.1, 1.0, 1e-10)


@dataclass(frozen=True)
class Case:
    """The structure of one generated input; :func:`materialize` turns it into arrays.

    ``log10_offset`` and ``log10_scale`` parametrize the data recipe (see the module docstring);
    ``grad_offset`` is the mean of the upstream gradient (grad_output = grad_offset + N(0, 1)).
    """

    shape: tuple[int, ...]
    num_groups: int
    eps: float = 1e-5
    affine: str = "weight_bias"
    data: str = "plain"
    seed: int = 0
    log10_offset: int = 0
    log10_scale: int = 0
    grad_offset: float = 0.0

    def __post_init__(self) -> None:
        if len(self.shape) < 2 or any(not isinstance(s, int) or s < 0 for s in self.shape):
            raise ValueError(f"shape={self.shape!r} must be (N, C, *spatial) with non-negative ints")
        if self.affine not in AFFINES:
            raise ValueError(f"affine={self.affine!r} is not one of {AFFINES}")
        if self.data not in RECIPES:
            raise ValueError(f"data={self.data!r} is not one of {RECIPES}")
        if not (isinstance(self.num_groups, int) and self.num_groups >= 1):
            raise ValueError(f"num_groups={self.num_groups!r} must be a positive int")

    @property
    def channels(self) -> int:
        return self.shape[1]

    @property
    def valid(self) -> bool:
        """True when num_groups divides C (a valid GroupNorm input)."""
        return self.shape[1] % self.num_groups == 0

    @property
    def group_size(self) -> int:
        """m = (C / G) * prod(spatial), the number of elements normalized together."""
        return (self.shape[1] // self.num_groups) * math.prod(self.shape[2:])

    def describe(self, gradients: bool = True) -> str:
        """One line for a human: shape, groups, eps, affine and how the data was built.

        ``gradients=False`` leaves grad_output out (the description of a case whose calls were forward only).
        """
        recipe = {
            "plain": "x ~ N(0, 1)",
            "offset": f"x = mu_g + sigma_g*N(0,1), sigma_g ~ 1e{self.log10_scale}, "
            f"|mu_g|/sigma_g ~ 1e{self.log10_offset}",
            "near_eps": "x = mu_g + sigma_g*N(0,1), sigma_g**2 ~ eps, "
            f"|mu_g|/sigma_g ~ 1e{self.log10_offset}",
            "constant": f"every group constant, |x| ~ 1e{self.log10_scale}",
            "wide": f"x = +-10**(U(-3, 3)), magnitudes around 1e{self.log10_scale}",
            "exact": f"exact-statistics data (order-independent sums), |mean|/std ~ 1e{self.log10_offset}",
            "grid": "x = q*(c + b), b in {0, 1} mostly 0, c in the top binade of the storage precision or "
            f"|mean|/std in [1e{self.log10_offset}, 1e{self.log10_offset + 1}), eps <= var/1e4 where the "
            "range allows",
        }[self.data]
        grad = f", grad_output = {self.grad_offset:g} + N(0,1)" if self.grad_offset and gradients else ""
        m = self.group_size if self.valid else "?"
        return (
            f"shape={self.shape} num_groups={self.num_groups} (group size m={m})"
            f" eps={self.eps:g} affine={self.affine}; {recipe}{grad}; seed={self.seed}"
        )

    def to_python(self, dtype: str = "float32") -> str:
        """A Python snippet that rebuilds the exact inputs of this case as numpy arrays of ``dtype``."""
        args = ", ".join(f"{f.name}={getattr(self, f.name)!r}" for f in fields(self))
        fmt = format_of(dtype)
        np_dtype = fmt.container.name
        note = "" if fmt.native else f"  # {dtype} values held exactly in {np_dtype} (numpy has no {dtype})"
        return (
            "import numpy as np\n"
            "from gn_spec.strategies import Case, materialize\n\n"
            f"case = Case({args})\n"
            f"inputs = materialize(case, {dtype!r})\n"
            f"x = inputs.x.astype(np.{np_dtype}){note}\n"
            f"weight = None if inputs.weight is None else inputs.weight.astype(np.{np_dtype})\n"
            f"bias = None if inputs.bias is None else inputs.bias.astype(np.{np_dtype})\n"
            f"grad_output = inputs.grad_output.astype(np.{np_dtype})\n"
            f"num_groups, eps = {self.num_groups!r}, {self.eps!r}\n"
        )


@dataclass(frozen=True)
class Inputs:
    """Materialized float64 arrays, every entry exactly representable in the dtype they were built for.

    ``grad_grad_*`` are the cotangents of (grad_input, grad_weight, grad_bias) for the second order; the
    weight and bias ones are None when the case has no weight / no bias.
    """

    x: np.ndarray
    weight: np.ndarray | None
    bias: np.ndarray | None
    grad_output: np.ndarray
    grad_grad_input: np.ndarray
    grad_grad_weight: np.ndarray | None
    grad_grad_bias: np.ndarray | None


# ---------------------------------------------------------------------------------------------- data recipes


def exact_statistics_group(rng: np.random.Generator, m: int, dtype: str, log10_offset: int) -> np.ndarray:
    """m values whose sum and sum of squared deviations are exact in any summation order.

    Construction (the idea oneDNN's benchdnn uses for its normalization tests, in our own form): with a grid
    step q = 2**e, take x_j = q (c + k_j), c an integer centre and k_j integers in symmetric pairs (+k, -k)
    with 1 <= k <= K, plus a k = 0 element when m is odd.  Then every partial sum of x is q times an integer
    of magnitude at most m (|c| + K), and every partial sum of (x - mu)**2 = q**2 k_j**2 is q**2 times an
    integer at most m K**2.  With b = p_a - ceil(log2 m) bits of budget, |c| + K <= 2**(b - 1) and
    K**2 <= 2**b keep both below 2**p_a, so every rounding in any summation order is exact in the
    accumulation precision (p_a significand bits); the mean c q is then the exact quotient sum / m.  The
    values must also fit the storage dtype: |c| + K <= 2**(p - 1).  |c| / K sets the conditioning.
    """
    p_store = FORMATS[dtype].significand_bits
    p_acc = FORMATS[FORMATS[dtype].accumulation].significand_bits
    budget = p_acc - max(1, math.ceil(math.log2(max(m, 2))))  # bits left for |c| + K and for K**2
    c_bits = max(0, min(budget - 1, p_store - 1))
    # kappa ~ |c| / K: for a large log10_offset shrink K (down to 1) to make room for a large centre c.
    k_bits = max(0, min(budget // 2, p_store - 2, c_bits - 1 - math.ceil(log10_offset * math.log2(10)) + 1))
    k_max = 2**k_bits
    c_room = max(0, 2**c_bits - k_max)  # |c| + K <= 2**c_bits
    c = min(c_room, int(round(10.0**log10_offset * k_max / 2))) if log10_offset > 0 else 0
    c *= int(rng.choice([-1, 1]))
    half = rng.integers(1, k_max + 1, size=m // 2) if k_max >= 1 else np.zeros(m // 2, dtype=np.int64)
    ks = np.concatenate([half, -half, np.zeros(m % 2, dtype=np.int64)])
    rng.shuffle(ks)
    step = 2.0 ** int(rng.integers(-4, 5))  # a power of two keeps every product with q exact
    return (c + ks).astype(np.float64) * step


#: The range of the grid recipe's fraction p of stepped values (log2 p).
GRID_LOG2_FRACTION = (-4.0, -1.0)
#: The grid recipe keeps eps at most the variance divided by this, where the format's range allows.
GRID_EPS_RATIO = 1e4


def grid_top_decade(dtype: str) -> int:
    """The decade of 2**p, p the storage precision of ``dtype``: at and above it the grid recipe puts its
    centre in the top binade [2**(p - 1), 2**p), where |mean|/std is 2**(p - 1) / std or more."""
    return math.floor(FORMATS[dtype].significand_bits * math.log10(2.0))


def grid_eps_values(dtype: str) -> tuple[float, ...]:
    """The eps of :data:`EPS_VALUES` that the grid recipe can keep below 1/GRID_EPS_RATIO of the variance in
    ``dtype``: its largest q (2**(emax - p)) with K = 1 and p = 1/16 (variance q**2 15/256) at the top."""
    fmt = FORMATS[dtype]
    log2_largest_variance = 2 * (fmt.max_exponent - fmt.significand_bits) + math.log2(15.0 / 256.0)
    return tuple(e for e in EPS_VALUES if math.log2(e * GRID_EPS_RATIO) <= log2_largest_variance)


def grid_group(rng: np.random.Generator, m: int, dtype: str, log10_offset: int, eps: float) -> np.ndarray:
    """m values x_j = +-q (c + b_j) of ``dtype`` (one sign for the block), b_j = 1 with probability
    p = 2**U(-4, -1) and 0 otherwise (both present when m >= 2): data one step of q apart, most of them
    equal, whose centre c gives |mean|/std = 10**(log10_offset + U(0, 1)), or from
    :func:`grid_top_decade` on lies in the top binade of the storage precision, [2**(p - 1), 2**p - 1).

    Every x_j is an integer below 2**p times a power of two q, so it is exact in ``dtype``; q is the smallest
    that makes the nominal variance q**2 p (1 - p) at least :data:`GRID_EPS_RATIO` eps (then up to 4 times
    more), within the format's range.  Such blocks make E[x**2] - E[x]**2 cancel in the accumulation
    precision: float16 data in float32 have c**2 ~ 2**22 against a variance below 1, so a one-pass variance
    (SPEC §3.12: Flax, Keras, ONNX) often comes out <= 0, and eps is too small to hide it.
    """
    fmt = FORMATS[dtype]
    top = 2**fmt.significand_bits - 1
    fraction = 2.0 ** rng.uniform(*GRID_LOG2_FRACTION)
    std = math.sqrt(fraction * (1.0 - fraction))
    if log10_offset >= grid_top_decade(dtype):  # the top binade, where the cancellation is worst
        centre = int(rng.integers(2 ** (fmt.significand_bits - 1), top))
    else:
        centre = int(round(10.0 ** (log10_offset + rng.uniform(0.0, 1.0)) * std))
    sign = int(rng.choice([-1, 1]))
    stepped = (rng.random(m) < fraction).astype(np.int64)
    if m >= 2 and stepped.sum() in (0, m):
        stepped[int(rng.integers(0, m))] ^= 1
    nominal = std**2
    e = math.ceil(0.5 * math.log2(GRID_EPS_RATIO * eps / nominal)) if eps > 0 else 0
    e = max(e, 1 - fmt.max_exponent) + int(rng.integers(0, 3))  # q at least the smallest normal
    e = min(e, fmt.max_exponent - fmt.significand_bits)  # |x| < q 2**p <= 2**emax
    return sign * (centre + stepped).astype(np.float64) * 2.0**e


def _group_values(case: Case, rng: np.random.Generator, m: int, dtype: str) -> np.ndarray:
    """Values of one (sample, group) block following ``case.data`` (before rounding to ``dtype``)."""
    recipe = case.data
    if recipe == "plain":
        return rng.standard_normal(m)
    if recipe == "exact":
        return exact_statistics_group(rng, m, dtype, case.log10_offset)
    if recipe == "grid":
        return grid_group(rng, m, dtype, case.log10_offset, case.eps)
    if recipe == "constant":
        value = float(rng.choice([-1.0, 1.0])) * 10.0**case.log10_scale * 2.0 ** rng.uniform(0.0, 1.0)
        return np.full(m, value)
    if recipe == "wide":
        signs = rng.choice([-1.0, 1.0], size=m)
        return signs * 10.0 ** (case.log10_scale + rng.uniform(-3.0, 3.0, size=m))
    if recipe == "near_eps":
        sigma = math.sqrt(case.eps) * 2.0 ** rng.uniform(-1.0, 1.0)
    else:  # offset
        sigma = 10.0**case.log10_scale * 2.0 ** rng.uniform(-2.0, 2.0)
    mu = 0.0
    if case.log10_offset > 0 or recipe == "offset":
        mu = float(rng.choice([-1.0, 1.0])) * sigma * 10.0**case.log10_offset * 2.0 ** rng.uniform(-1.0, 0.0)
    return mu + sigma * rng.standard_normal(m)


def materialize(case: Case, dtype: str) -> Inputs:
    """Build the arrays of ``case`` for ``dtype``, deterministically from ``case.seed``.

    The values are drawn in float64, then rounded to ``dtype`` through float32, as torch converts them
    (:func:`gn_spec.formats.round_through_float32`, kept so that every seed gives the inputs it always gave),
    so they are exact in it.
    Every array is always drawn, in a fixed order, so the same case gives the same x whatever is needed later.
    """
    if dtype not in DTYPES:
        raise ValueError(f"dtype={dtype!r} is not one of {DTYPES}")
    rng = np.random.default_rng(case.seed)
    shape = case.shape
    n, c = shape[0], shape[1]
    spatial = math.prod(shape[2:])
    if case.valid:
        g = case.num_groups
        m = (c // g) * spatial
        blocks = np.empty((n, g, m))
        for i in range(n):
            for j in range(g):
                blocks[i, j] = _group_values(case, rng, m, dtype)
        x = blocks.reshape(shape)
    else:  # invalid grouping: only the contract tests use these, plain data is enough
        x = rng.standard_normal(shape)
    weight = rng.choice([-1.0, 1.0], size=c) * 2.0 ** rng.uniform(-2.0, 2.0, size=c)
    bias = rng.standard_normal(c) * 2.0 ** rng.uniform(-2.0, 2.0, size=c)
    grad_output = case.grad_offset + rng.standard_normal(shape)
    grad_grad_input = rng.standard_normal(shape)
    grad_grad_weight = rng.standard_normal(c)
    grad_grad_bias = rng.standard_normal(c)
    has_weight = case.affine in ("weight", "weight_bias")
    has_bias = case.affine in ("bias", "weight_bias")
    return Inputs(
        x=round_through_float32(x, dtype),
        weight=round_through_float32(weight, dtype) if has_weight else None,
        bias=round_through_float32(bias, dtype) if has_bias else None,
        grad_output=round_through_float32(grad_output, dtype),
        grad_grad_input=round_through_float32(grad_grad_input, dtype),
        grad_grad_weight=round_through_float32(grad_grad_weight, dtype) if has_weight else None,
        grad_grad_bias=round_through_float32(grad_grad_bias, dtype) if has_bias else None,
    )


# ---------------------------------------------------------------------------------------------- strategies


# log10 ranges per dtype: (smallest log10_scale, largest log10_scale + log10_offset, largest log10_offset).
# They keep |x| * sqrt(m) and sigma within the dtype's normal range, so that squares neither overflow nor
# underflow in a float32 (resp. float64) accumulator (the model's domain, SPEC.md).
MAGNITUDES = {
    "float16": (-3, 3, 6),
    "bfloat16": (-8, 8, 6),
    "float32": (-8, 12, 6),
    "float64": (-30, 40, 12),
}


def _check_args(profile: str, dtype: str, max_spatial_dims: int) -> None:
    if profile not in PROFILES:
        raise InvalidArgument(f"profile={profile!r} is not one of {PROFILE_NAMES}")
    if dtype not in DTYPES:
        raise InvalidArgument(f"dtype={dtype!r} is not one of {DTYPES}")
    if not 0 <= max_spatial_dims <= 3:
        raise InvalidArgument(f"max_spatial_dims={max_spatial_dims!r} must be in 0..3")


#: pick(lo, hi): an integer in [lo, hi] (a Hypothesis draw, or a numpy Generator's for a shape pool).
Pick = Callable[[int, int], int]


def _small_shape(pick: Pick, limits: Limits, k: int) -> tuple[tuple[int, ...], int]:
    """(shape, num_groups) for a small case of ``k`` spatial dims: G in 1..max_groups, C = G * (1..max
    channels per group)."""
    n = pick(1, limits.max_batch)
    g = pick(1, limits.max_groups)
    cpg = pick(1, limits.max_channels_per_group)
    spatial = tuple(pick(1, limits.max_extent) for _ in range(k))
    return (n, g * cpg, *spatial), g


def _large_shape(pick: Pick, limits: Limits, k: int) -> tuple[tuple[int, ...], int]:
    """(shape, num_groups) with group size m in [large_min, ~large_max]: N = 1, G and C/G at most 2."""
    g = pick(1, 2)
    cpg = pick(1, 2)
    if k == 0:  # LayerNorm-like over a very wide channel axis
        cpg = pick(limits.large_min, limits.large_max)
        return (1, g * cpg), g
    lo = math.ceil((limits.large_min / cpg) ** (1.0 / k))
    hi = max(lo, math.floor((limits.large_max / cpg) ** (1.0 / k)))
    spatial = tuple(pick(lo, hi) for _ in range(k))
    return (1, g * cpg, *spatial), g


def _drawn(shape_of: Callable[[Pick, Limits, int], tuple[tuple[int, ...], int]], limits: Limits,
           spatial_dims: st.SearchStrategy[int]) -> st.SearchStrategy[tuple[tuple[int, ...], int]]:
    @st.composite
    def build(draw: st.DrawFn) -> tuple[tuple[int, ...], int]:
        k = draw(spatial_dims)
        return shape_of(lambda lo, hi: draw(st.integers(lo, hi)), limits, k)

    return build()


#: What every rank's part of a shape pool holds at least once (when the profile's limits allow it): one group
#: (LayerNorm), one channel per group (InstanceNorm), more than one sample, groups of one value.
_POOL_FEATURES: tuple[Callable[[tuple[int, ...], int], bool], ...] = (
    lambda shape, g: g == 1,
    lambda shape, g: shape[1] == g and g > 1,
    lambda shape, g: shape[0] > 1,
    lambda shape, g: shape[1] == g and math.prod(shape[2:]) == 1 and shape[0] > 1,
)


#: One entry of a shape pool: (shape, num_groups, affine).
PoolEntry = tuple[tuple[int, ...], int, str]


@dataclass(frozen=True)
class ShapePool:
    """The structures of a ``--shapes pooled`` run: per spatial rank, ``small`` and ``large`` entries
    (shape, num_groups, affine), each part smallest first (so that Hypothesis shrinks towards the smallest).
    The affine form belongs to the entry because it too is compiled in (a module without a scale is another
    program); each rank's small entries take the four forms in turn."""

    small: dict[int, tuple[PoolEntry, ...]]
    large: dict[int, tuple[PoolEntry, ...]]

    def __len__(self) -> int:
        return sum(len(v) for v in self.small.values()) + sum(len(v) for v in self.large.values())


@functools.lru_cache(maxsize=8)
def shape_pool(profile: str, seed: int) -> ShapePool:
    """The pool of a ``--shapes pooled`` run of ``profile`` with ``seed``: per spatial rank 0..3, the
    profile's ``pool_small`` shapes drawn as a small case draws its shape (the features of
    :data:`_POOL_FEATURES` each present), and ``pool_large`` large-group shapes, the affine forms of
    :data:`AFFINES` given in turn.

    A target that compiles one program per shape (``jax.jit``) pays a compilation for every new structure;
    with every property drawing from one pool, the run meets a few dozen instead of about a thousand, while
    everything else of a case (data, eps, seed, gradients) is drawn as always.

    >>> pool = shape_pool("quick", 0)
    >>> len(pool.small[2]), pool.small[2] == shape_pool("quick", 0).small[2]
    (4, True)
    """
    limits = PROFILES[profile].limits
    rng = np.random.default_rng([seed, 0x5EA9E])

    def pick(lo: int, hi: int) -> int:
        return int(rng.integers(lo, hi + 1))

    def entries(shapes: list[tuple[tuple[int, ...], int]], start: int) -> tuple[PoolEntry, ...]:
        given = [(shape, g, AFFINES[(i + start) % len(AFFINES)]) for i, (shape, g) in enumerate(shapes)]
        return tuple(sorted(given, key=lambda e: (math.prod(e[0]), e)))

    small, large = {}, {}
    for k in range(4):
        start = pick(0, len(AFFINES) - 1)
        shapes: list[tuple[tuple[int, ...], int]] = []
        for feature in _POOL_FEATURES[: limits.pool_small]:
            for _ in range(1000):  # a feature the limits allow turns up within a few dozen draws
                candidate = _small_shape(pick, limits, k)
                if feature(*candidate):
                    shapes.append(candidate)
                    break
        while len(shapes) < limits.pool_small:
            shapes.append(_small_shape(pick, limits, k))
        small[k] = entries(shapes, start)
        large[k] = entries([_large_shape(pick, limits, k) for _ in range(limits.pool_large)], start)
    return ShapePool(small, large)


def _shapes(
    pooled: dict[int, tuple[PoolEntry, ...]] | None,
    shape_of: Callable[[Pick, Limits, int], tuple[tuple[int, ...], int]],
    limits: Limits,
    spatial_dims: st.SearchStrategy[int],
) -> st.SearchStrategy[tuple[tuple[int, ...], int, str | None]]:
    """(shape, num_groups, affine) drawn by ``shape_of`` (affine None: drawn with the rest of the case), or
    an entry of the pool's rank."""
    if pooled is None:
        return _drawn(shape_of, limits, spatial_dims).map(lambda s: (s[0], s[1], None))
    return spatial_dims.flatmap(lambda k: st.sampled_from(pooled[k]))


def case_strategy(
    profile: str,
    dtype: str,
    *,
    max_spatial_dims: int = 3,
    four_d_only: bool = False,
    pool: ShapePool | None = None,
    large_every: int | None = None,
) -> st.SearchStrategy[Case]:
    """Cases for ``profile`` ("quick" | "default" | "thorough") and ``dtype``.

    ``pool``: the shapes come from it (:func:`shape_pool`, ``--shapes pooled``), each rank's and size
    class's drawn as without it; everything else is drawn the same either way.

    Shapes have 0..max_spatial_dims spatial dims (exactly 2 with ``four_d_only``, the CS231n API); group
    counts 1, C and between; group sizes including 1 and non powers of two.  In "default" one case in 12 has
    groups of 1e5 to 2.5e5 elements ("thorough": one in 6, up to 1.2e6; "quick": none); the sizes are the
    profile's :class:`~gn_spec.profiles.Limits`; ``large_every`` overrides the profile's one in 12 (0: no
    large cases).  Every case carries gradients (see :class:`Inputs`).

    Example::

        @given(case_strategy("quick", "float32"))
        def test_something(case): inputs = materialize(case, "float32") ...
    """
    _check_args(profile, dtype, max_spatial_dims)
    limits = PROFILES[profile].limits
    if large_every is not None:
        limits = replace(limits, large_every=large_every)
    spatial_dims: st.SearchStrategy[int] = st.just(2) if four_d_only else st.integers(0, max_spatial_dims)
    small = _shapes(pool.small if pool else None, _small_shape, limits, spatial_dims)
    if limits.large_every and not (pool and not limits.pool_large):
        if four_d_only:
            large_dims: st.SearchStrategy[int] = st.just(2)
        else:  # with no spatial dims a large group is a wide channel axis
            large_dims = st.integers(1, max_spatial_dims) if max_spatial_dims else st.just(0)
        large = _shapes(pool.large if pool else None, _large_shape, limits, large_dims)
        shapes = st.integers(1, limits.large_every).flatmap(
            lambda i: large if i == limits.large_every else small
        )
    else:
        shapes = small
    lo_scale, hi_total, hi_offset = MAGNITUDES[dtype]

    @st.composite
    def build(draw: st.DrawFn) -> Case:
        shape, groups, pooled_affine = draw(shapes)
        data = draw(st.sampled_from(RECIPES))
        eps = draw(st.sampled_from(grid_eps_values(dtype) if data == "grid" else EPS_VALUES))
        top_offset = hi_offset
        if data == "near_eps" and eps > 0:  # |mu| ~ sqrt(eps) 10^offset must stay below 10^hi_total too
            top_offset = max(0, min(hi_offset, hi_total - math.ceil(math.log10(2.0 * math.sqrt(eps)))))
        if data == "grid":  # always its top decade: the last digits; within the domain's 10**hi_offset
            log10_offset = min(hi_offset - 1, grid_top_decade(dtype))
        else:
            log10_offset = draw(st.integers(0, top_offset)) if data in DECADE_RECIPES else 0
        if data == "offset":
            log10_scale = draw(st.integers(lo_scale, hi_total - log10_offset))
        elif data == "wide":  # the recipe spreads magnitudes over a further 1e+-3
            log10_scale = draw(st.integers(lo_scale + 3, hi_total - 3))
        elif data == "constant":  # |x| r = kappa stays below ~1e3 / sqrt(eps): inside the model's domain
            log10_scale = draw(st.integers(-3, min(3, hi_total)))
        else:
            log10_scale = 0
        return Case(
            shape=shape,
            num_groups=groups,
            eps=eps,
            affine=pooled_affine or draw(st.sampled_from(AFFINES)),
            data=data,
            seed=draw(st.integers(0, 2**32 - 1)),
            log10_offset=log10_offset,
            log10_scale=log10_scale,
            grad_offset=draw(st.sampled_from((0.0, 1.0, -10.0))),
        )

    return build()


def invalid_case_strategy(dtype: str = "float32", *, four_d_only: bool = False) -> st.SearchStrategy[Case]:
    """Cases whose num_groups does not divide C (including G > C): a conforming implementation must raise."""
    if dtype not in DTYPES:
        raise InvalidArgument(f"dtype={dtype!r} is not one of {DTYPES}")

    @st.composite
    def build(draw: st.DrawFn) -> Case:
        g = draw(st.integers(2, 8))
        c = draw(st.integers(1, 3 * g).filter(lambda c: c % g != 0))
        k = 2 if four_d_only else draw(st.integers(0, 2))
        spatial = tuple(draw(st.integers(1, 4)) for _ in range(k))
        return Case(
            shape=(draw(st.integers(1, 2)), c, *spatial), num_groups=g, seed=draw(st.integers(0, 2**32 - 1))
        )

    return build()
