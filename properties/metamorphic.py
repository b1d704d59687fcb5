"""Metamorphic properties: identities between two calls of the target, needing no reference values.

Each compares the target's output on an input with its output on a transformed input for which the exact
results are related exactly (equal, permuted, or the bias).  The tolerance comes from the error model by the
triangle inequality: if a conforming implementation keeps |y~_i - y_i| <= B_i u s_i on each call, and the
exact values agree, then

    |y~(1)_i - y~(2)_i| <= u (B(1)_i s(1)_i + B(2)_i s(2)_i),

with each call's B and s computed by ``gn_spec.error_model.forward_tolerance`` at its own input.  The
transformations are built so that the transformed input is exactly representable in the dtype under test
(power of two scalings, shifts on a common grid, permutations), so the exact identities hold for the very
values the target receives.  The helper functions are public so that reproducers can rebuild the transformed
inputs.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace

import numpy as np
from hypothesis import assume
from hypothesis import strategies as st

from gn_spec.checker.failure_kinds import WRONG_STRUCTURE, WRONG_VALUES, of_judgement
from gn_spec.checker.probe import Probe
from gn_spec.checker.property_framework import Draw, Outcome, default_cases, failure_of, gn_property
from gn_spec.checker.target import CheckConfig
from gn_spec.error_model import Judgement, Tolerance, format_value, forward_tolerance, judge
from gn_spec.formats import FORMATS, is_representable
from gn_spec.layout import block_rows
from gn_spec.strategies import MAGNITUDES, Case, Inputs

# ---------------------------------------------------------------------------------------------- helpers


def exact_in(a: np.ndarray, dtype: str) -> bool:
    """Every value of ``a`` is finite and exactly a number of ``dtype``."""
    return bool(np.all(np.isfinite(a)) and np.all(is_representable(a, dtype)))


def combined_tolerance(first: Tolerance, second: Tolerance) -> Tolerance:
    """The tolerance for comparing two observed outputs whose exact values agree.

    |y~(1) - y~(2)| <= u (B1 s1 + B2 s2) = u * B * s with s = s1 + s2 and B = (B1 s1 + B2 s2) / s, the
    scale-weighted mean of the two bounds (B1 where both scales vanish); the underflow floors add up, since
    both outputs were rounded to the dtype.
    """
    scale = first.scale + second.scale
    weighted = first.bound * first.scale + second.bound * second.scale
    with np.errstate(divide="ignore", invalid="ignore"):
        bound = np.where(scale > 0, weighted / scale, np.maximum(first.bound, second.bound))
    return Tolerance(first.quantity, first.dtype, scale, bound, first.floor + second.floor)


def compare(
    label: str,
    observed: np.ndarray,
    against: np.ndarray,
    tol1: Tolerance,
    tol2: Tolerance,
    *,
    against_label: str = "the other call gave",
    exact: Callable[[], np.ndarray] | None = None,
) -> Judgement:
    """Judge two observed outputs against each other with :func:`combined_tolerance`.

    ``against`` is the target's own other output: the message names it ``against_label`` (not "expected"),
    and on a failure adds the reference's exact value at the worst element, ``exact()`` being the exact
    values of ``observed`` (equal to those of ``against`` by the identity), so that the reader sees which of
    the two outputs is wrong.
    """
    j = judge(label, observed, against, combined_tolerance(tol1, tol2), against=against_label)
    if j.passed or exact is None or j.worst_index is None:
        return j
    value = float(np.asarray(exact(), dtype=np.float64)[j.worst_index])
    return replace(j, message=f"{j.message}; exact value (reference): {format_value(value, j.dtype)}")


def reference_output(case: Case, inputs: Inputs, x: np.ndarray, eps: float) -> Callable[[], np.ndarray]:
    """The reference's GN(x; eps) with the case's groups, weight and bias, computed when called."""

    def exact() -> np.ndarray:
        from gn_spec import group_norm

        return np.asarray(group_norm(x, case.num_groups, inputs.weight, inputs.bias, eps), dtype=np.float64)

    return exact


def forward_pair(
    probe: Probe,
    case: Case,
    inputs: Inputs,
    first: tuple[np.ndarray, float, str],
    second: tuple[np.ndarray, float, str],
    repro: str,
) -> tuple[np.ndarray, np.ndarray] | Outcome:
    """Two forward calls (x, eps, label) with the case's groups, weight and bias, in one round trip.

    Returns both float64 outputs, or the Outcome of the first call that failed.
    """
    g, w, b = case.num_groups, inputs.weight, inputs.bias
    runs = (first, second)
    results = probe.run([probe.request("forward", x, g, eps, weight=w, bias=b) for x, eps, _ in runs])
    ys = []
    for result, (x, _, label) in zip(results, runs, strict=True):
        if result.status != "ok":
            return failure_of(result, f"the forward call on {label}", repro=repro)
        y = probe.array(result, "y", x.shape)
        if isinstance(y, str):
            return Outcome(
                ok=False,
                message=f"the forward output on {label}: {y}",
                repro=repro,
                failure_kind=WRONG_STRUCTURE,
            )
        ys.append(y)
    return ys[0], ys[1]


def tolerances(probe: Probe, case: Case, inputs: Inputs, *runs: tuple[np.ndarray, float]) -> list[Tolerance]:
    """forward_tolerance of each (x, eps) with the case's groups, weight and bias."""
    return [
        forward_tolerance(x, case.num_groups, inputs.weight, inputs.bias, eps, probe.dtype) for x, eps in runs
    ]


def verdict(j: Judgement, message: str, repro: str) -> Outcome:
    if j.passed:
        return Outcome.passed(j.max_ratio, j.worst_error)
    return Outcome(
        ok=False,
        ratio=j.max_ratio,
        units=j.worst_error,
        message=message,
        detail=j.message,
        repro=repro,
        nonfinite=j.nonfinite,
        kind=j.worst_kind,
        failure_kind=of_judgement(j.nonfinite, j.worst_kind),
    )


# x as (N, G, m), one row per (sample, group) block, under the name reproducer scripts import from here (those
# written by gn-spec 0.1.0 and by this module's repro text): the view itself is gn_spec.layout.block_rows.
blocks_of = block_rows


# ---------------------------------------------------------------------------------------------- shift


def max_shift_bits(dtype: str) -> int:
    """Largest shift exponent drawn: |c| up to 2**bits * max|x|, limited by the dtype's precision (p - 3, so
    the data keeps two bits) and by the conditioning the error model's domain covers (|mu|/sigma <= 10**k)."""
    return min(FORMATS[dtype].significand_bits - 3, int(MAGNITUDES[dtype][2] * math.log2(10)))


def shift_pair(
    x: np.ndarray, num_groups: int, dtype: str, shift_bits: int, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(x1, x2, c): x1 = x on a per-block grid, x2 = x1 + c[n, g], both exactly representable in ``dtype``.

    For a block with max |x| < 2**E, the grid is 2**q with q = E + k - (p - 1) (k = shift_bits, p the dtype's
    precision): x1 = 2**q rint(x / 2**q) has |x1| <= 2**(p-1-k) 2**q, and c = 2**q rint(t 2**(p-1)),
    1/2 <= |t| < 1, has |c| <= 2**(p-1) 2**q, so x1 + c is an integer of magnitude at most 2**p times 2**q:
    exact.  k is lowered per block so that |x2| stays within the dtype's magnitude domain; a block where the
    construction is still not exact (underflow) gets c = 0.
    """
    p = FORMATS[dtype].significand_bits
    hi = MAGNITUDES[dtype][1] * math.log2(10)
    b = block_rows(np.asarray(x, dtype=np.float64), num_groups)
    rng = np.random.default_rng(seed)
    top = np.max(np.abs(b), axis=2) if b.shape[2] else np.zeros(b.shape[:2])
    e = np.floor(np.log2(np.where(top > 0, top, 1.0))) + 1
    k = np.clip(np.minimum(shift_bits, np.floor(hi - e - 1)), 0, None)
    q = (e + k - (p - 1)).astype(np.int64)[..., None]
    x1 = np.ldexp(np.rint(np.ldexp(b, -q)), q)
    t = rng.uniform(0.5, 1.0, size=b.shape[:2]) * rng.choice([-1.0, 1.0], size=b.shape[:2])
    c = np.ldexp(np.rint(t * 2.0 ** (p - 1)), q[..., 0])
    x2 = x1 + c[..., None]
    for n, g in np.ndindex(*b.shape[:2]):
        if not (exact_in(x1[n, g], dtype) and exact_in(x2[n, g], dtype)):
            x1[n, g], x2[n, g], c[n, g] = b[n, g], b[n, g], 0.0
    return x1.reshape(x.shape), x2.reshape(x.shape), c


_SHIFT_REPRO = """
from gn_spec.properties.metamorphic import shift_pair
x1, x2, shifts = shift_pair(inputs.x, num_groups, DTYPE, {bits}, {seed})
y1 = as_float64(forward(x1, num_groups, weight, bias, eps))
y2 = as_float64(forward(x2, num_groups, weight, bias, eps))
print("shifts per (sample, group):", shifts.tolist())
print("largest |GN(x + c) - GN(x)|:", np.nanmax(np.abs(y2 - y1)), "at",
np.unravel_index(np.nanargmax(np.abs(y2 - y1)), y1.shape))
from gn_spec.properties.metamorphic import compare
j = compare("GN(x + c) against GN(x)", y2, y1, forward_tolerance(x2, num_groups, weight, bias, eps, DTYPE),
            forward_tolerance(x1, num_groups, weight, bias, eps, DTYPE))
print(j.message)
assert j.passed, "shifting each (sample, group) by a constant changed the output (shift exponent {bits})"
"""


@gn_property("shift_invariance", weight=0.5)
def shift_invariance(probe: Probe, case: Case, draw: Draw) -> Outcome:
    """Adding a constant to each (sample, group) block leaves the output unchanged.

    GN(x + c)_i = GN(x)_i  for any c constant on each block (n, g): mu shifts by c and x - mu, var do not.
    Shifts reach 2**k max|x| (k drawn up to p - 3), so |mu|/sigma grows to ~2**k: implementations whose error
    grows faster than the model's u (|x| + |mu|) r (one-pass E[x^2] - E[x]^2 in working precision) fail here.
    Tolerance: u (B1 s1 + B2 s2), both from forward_tolerance at x and at x + c.
    """
    bits = draw(st.integers(0, max_shift_bits(probe.dtype)))
    inp = probe.inputs(case)
    x1, x2, _ = shift_pair(inp.x, case.num_groups, probe.dtype, bits, case.seed)
    repro = _SHIFT_REPRO.format(bits=bits, seed=case.seed)
    pair = forward_pair(probe, case, inp, (x1, case.eps, "x"), (x2, case.eps, "x + c"), repro)
    if isinstance(pair, Outcome):
        return pair
    y1, y2 = pair
    t1, t2 = tolerances(probe, case, inp, (x1, case.eps), (x2, case.eps))
    j = compare(
        "GN(x + c) against GN(x)",
        y2,
        y1,
        t2,
        t1,
        against_label="unshifted, the same element gave",
        exact=reference_output(case, inp, x2, case.eps),
    )
    return verdict(
        j, f"shifting each (sample, group) by a constant changed the output (shift exponent {bits})", repro
    )


# ---------------------------------------------------------------------------------------------- scaling


def scaling_exponent(x: np.ndarray, dtype: str, k: int) -> int:
    """``k`` clamped so that 2**k max|x| lies in the dtype's magnitude domain (MAGNITUDES), then halved
    towards 0 until 2**k x is exact in the dtype."""
    lo, hi, _ = MAGNITUDES[dtype]
    top = float(np.max(np.abs(x))) if x.size else 0.0
    if top > 0:
        k = min(k, math.floor(hi * math.log2(10) - math.log2(top)))
        k = max(k, math.ceil(lo * math.log2(10) - math.log2(top)))
    while k != 0 and not exact_in(np.ldexp(x, k), dtype):
        k = int(k / 2)
    return k


_SCALE_REPRO = """
k = {k}
y1 = as_float64(forward(x, num_groups, weight, bias, eps))
y2 = as_float64(forward(np.ldexp(inputs.x, k).astype(x.dtype), num_groups, weight, bias, eps * 4.0**k))
print("largest |GN(2**k x; 4**k eps) - GN(x; eps)|:", np.nanmax(np.abs(y2 - y1)))
from gn_spec.properties.metamorphic import compare
j = compare("GN(2**k x; 4**k eps) against GN(x; eps)", y2, y1,
            forward_tolerance(np.ldexp(inputs.x, k), num_groups, weight, bias, eps * 4.0**k, DTYPE),
            forward_tolerance(inputs.x, num_groups, weight, bias, eps, DTYPE))
print(j.message)
assert j.passed, "scaling x by 2**{k} and eps by 4**{k} changed the output"
"""


@gn_property("scaling_identity", weight=0.5)
def scaling_identity(probe: Probe, case: Case, draw: Draw) -> Outcome:
    """Scaling x by s and eps by s^2 leaves the output unchanged.

    GN(s x; s^2 eps)_i = GN(x; eps)_i  for s > 0: mu and x - mu scale by s, var + eps by s^2.
    s = 2**k (k drawn in [-40, 40], kept inside the dtype's magnitude domain) makes s x and s^2 eps exact.
    Tolerance: u (B1 s1 + B2 s2) with both scales from forward_tolerance (here s1 = s2 exactly).
    """
    inp = probe.inputs(case)
    k = scaling_exponent(inp.x, probe.dtype, draw(st.integers(-40, 40)))
    xs, eps_s = np.ldexp(inp.x, k), case.eps * 4.0**k
    repro = _SCALE_REPRO.format(k=k)
    pair = forward_pair(probe, case, inp, (inp.x, case.eps, "x"), (xs, eps_s, f"2**{k} x"), repro)
    if isinstance(pair, Outcome):
        return pair
    y1, y2 = pair
    t1, t2 = tolerances(probe, case, inp, (inp.x, case.eps), (xs, eps_s))
    j = compare(
        f"GN(2**{k} x; 4**{k} eps) against GN(x; eps)",
        y2,
        y1,
        t2,
        t1,
        against_label="unscaled, the same element gave",
        exact=reference_output(case, inp, xs, eps_s),
    )
    return verdict(j, f"scaling x by 2**{k} and eps by 4**{k} changed the output", repro)


# ---------------------------------------------------------------------------------------------- batch


_BATCH_REPRO = """
index = {index}
y = as_float64(forward(x, num_groups, weight, bias, eps))
y_sub = as_float64(forward(x[index], num_groups, weight, bias, eps))
print("largest |GN(x[P]) - GN(x)[P]|:", np.nanmax(np.abs(y_sub - y[index])))
from dataclasses import replace
from gn_spec.properties.metamorphic import compare
t1 = forward_tolerance(inputs.x, num_groups, weight, bias, eps, DTYPE)
t1p = replace(t1, scale=t1.scale[index], bound=t1.bound[index])
j = compare("GN(x[P]) against GN(x)[P]", y_sub, y[index],
            forward_tolerance(inputs.x[index], num_groups, weight, bias, eps, DTYPE), t1p)
print(j.message)
assert j.passed, "the output of a sample depends on the other samples (P = {index})"
"""


@gn_property("batch_independence", weight=0.5)
def batch_independence(probe: Probe, case: Case, draw: Draw) -> Outcome:
    """Each sample is normalized on its own: selecting, reordering or repeating samples commutes with GN.

    GN(x[P])_n = GN(x)_{P(n)}  for any index list P into the batch (statistics never mix samples).
    Tolerance: u (B1 s1 + B2 s2) with s2 the scales at x taken at P.
    """
    n = case.shape[0]
    assume(n >= 1)
    # two samples at least when groups hold one value: (1, C) with G = C is single_value_groups' business
    index = draw(st.lists(st.integers(0, n - 1), min_size=2 if case.group_size == 1 else 1, max_size=n + 2))
    inp = probe.inputs(case)
    repro = _BATCH_REPRO.format(index=index)
    pair = forward_pair(
        probe, case, inp, (inp.x, case.eps, "x"), (inp.x[index], case.eps, f"x[{index}]"), repro
    )
    if isinstance(pair, Outcome):
        return pair
    y1, y2 = pair
    t1, t2 = tolerances(probe, case, inp, (inp.x, case.eps), (inp.x[index], case.eps))
    t1p = replace(t1, scale=t1.scale[index], bound=t1.bound[index])
    j = compare(
        f"GN(x[P]) against GN(x)[P], P = {index}",
        y2,
        y1[index],
        t2,
        t1p,
        against_label="in the whole batch x, the same sample gave",
        exact=reference_output(case, inp, inp.x[index], case.eps),
    )
    return verdict(j, f"the output of a sample depends on the other samples (P = {index})", repro)


# ---------------------------------------------------------------------------------------------- spatial


def has_spatial(config: CheckConfig) -> st.SearchStrategy[Case]:
    """The default cases that have at least one spatial dimension."""
    return default_cases(config).filter(lambda c: len(c.shape) >= 3)


def spatial_permutation(shape: tuple[int, ...], salt: int) -> np.ndarray:
    """A permutation of the prod(spatial) positions, from ``salt`` (0 is the identity)."""
    s = math.prod(shape[2:])
    return np.arange(s) if salt == 0 else np.random.default_rng(salt).permutation(s)


def permute_spatial(a: np.ndarray, perm: np.ndarray) -> np.ndarray:
    """a (N, C, *spatial) with the flattened spatial positions reordered by ``perm``."""
    return a.reshape(a.shape[0], a.shape[1], -1)[:, :, perm].reshape(a.shape)


_SPATIAL_REPRO = """
from gn_spec.properties.metamorphic import permute_spatial, spatial_permutation
perm = spatial_permutation(x.shape, {salt})
y = as_float64(forward(x, num_groups, weight, bias, eps))
y_perm = as_float64(forward(permute_spatial(x, perm), num_groups, weight, bias, eps))
print("largest |GN(x o pi) - GN(x) o pi|:", np.nanmax(np.abs(y_perm - permute_spatial(y, perm))))
from dataclasses import replace
from gn_spec.properties.metamorphic import compare
t1 = forward_tolerance(inputs.x, num_groups, weight, bias, eps, DTYPE)
t1p = replace(t1, scale=permute_spatial(t1.scale, perm), bound=permute_spatial(t1.bound, perm))
t2 = forward_tolerance(permute_spatial(inputs.x, perm), num_groups, weight, bias, eps, DTYPE)
j = compare("GN(x o pi) against GN(x) o pi", y_perm, permute_spatial(y, perm), t2, t1p)
print(j.message)
assert j.passed, "permuting spatial positions (salt {salt}) did not permute the output alike"
"""


@gn_property("spatial_permutation_equivariance", cases=has_spatial, weight=0.5)
def spatial_permutation_equivariance(probe: Probe, case: Case, draw: Draw) -> Outcome:
    """Permuting spatial positions permutes the output the same way.

    GN(x o pi) = GN(x) o pi  for any permutation pi of the positions in prod(spatial) (the statistics are
    symmetric functions of each block).  Cases with at least one spatial dimension.
    Tolerance: u (B1 s1 + B2 s2) with s2 the scales at x permuted.
    """
    salt = draw(st.integers(0, 2**16))
    perm = spatial_permutation(case.shape, salt)
    inp = probe.inputs(case)
    xp = permute_spatial(inp.x, perm)
    repro = _SPATIAL_REPRO.format(salt=salt)
    pair = forward_pair(
        probe, case, inp, (inp.x, case.eps, "x"), (xp, case.eps, "x with permuted positions"), repro
    )
    if isinstance(pair, Outcome):
        return pair
    y1, y2 = pair
    t1, t2 = tolerances(probe, case, inp, (inp.x, case.eps), (xp, case.eps))
    t1p = replace(t1, scale=permute_spatial(t1.scale, perm), bound=permute_spatial(t1.bound, perm))
    j = compare(
        "GN(x o pi) against GN(x) o pi",
        y2,
        permute_spatial(y1, perm),
        t2,
        t1p,
        against_label="unpermuted, the same position gave",
        exact=reference_output(case, inp, xp, case.eps),
    )
    return verdict(j, f"permuting spatial positions (salt {salt}) did not permute the output alike", repro)


# ---------------------------------------------------------------------------------------------- constant


def constant_blocks(x: np.ndarray, num_groups: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(x', mask): about half the (sample, group) blocks (at least one) made constant, each equal to its first
    value (so exact in the dtype); mask (N, G) marks them."""
    b = block_rows(np.array(x, dtype=np.float64), num_groups)
    rng = np.random.default_rng(seed)
    mask = rng.random(b.shape[:2]) < 0.5
    if b.shape[0] * b.shape[1]:
        mask.reshape(-1)[rng.integers(mask.size)] = True
    b[mask] = b[mask][:, :1]
    return b.reshape(x.shape), mask


_CONSTANT_REPRO = """
from gn_spec.properties.metamorphic import blocks_of, constant_blocks
xc, mask = constant_blocks(inputs.x, num_groups, case.seed)
y = blocks_of(as_float64(forward(xc.astype(x.dtype), num_groups, weight, bias, eps)), num_groups)
b = np.zeros(x.shape[1]) if bias is None else bias.astype(np.float64)
expected = blocks_of(np.broadcast_to(b.reshape(1, -1, *([1] * (x.ndim - 2))), x.shape), num_groups)
print("constant blocks (sample, group):", np.argwhere(mask).tolist())
print("largest |GN - bias| over them:", np.max(np.abs(y[mask] - expected[mask])))
from dataclasses import replace
tol = forward_tolerance(xc, num_groups, weight, bias, eps, DTYPE)
pick = np.broadcast_to(mask[:, :, None], y.shape).reshape(x.shape)
j = judge("output of constant blocks", y.reshape(x.shape)[pick], expected.reshape(x.shape)[pick],
          replace(tol, scale=tol.scale[pick], bound=tol.bound[pick]), against="the bias (exact)")
print(j.message)
assert j.passed, "a constant (sample, group) block did not give the bias"
"""


@gn_property("constant_groups_give_bias", weight=0.5)
def constant_groups_give_bias(probe: Probe, case: Case, draw: Draw) -> Outcome:
    """A constant block's output is the bias.

    x_i = v on block (n, g)  =>  mu = v, var = 0, GN(x)_i = w_c * 0 / sqrt(eps) + b_c = b_c exactly (eps > 0).
    About half the blocks are made constant.  Tolerance: B u s at x, where s = |w| r (|v| + |v|) + |b| with
    r = eps^(-1/2) accounts for a mean that is not computed exactly.
    """
    assume(case.eps > 0)
    inp = probe.inputs(case)
    g, eps, w, b = case.num_groups, case.eps, inp.weight, inp.bias
    xc, mask = constant_blocks(inp.x, g, case.seed)
    note = constant_note(mask)
    result = probe.run([probe.request("forward", xc, g, eps, weight=w, bias=b)])[0]
    if result.status != "ok":
        return replace(failure_of(result, "the forward call", repro=_CONSTANT_REPRO), inputs_note=note)
    y = probe.array(result, "y", case.shape)
    if isinstance(y, str):
        return Outcome(
            ok=False,
            message=f"the forward output: {y}",
            repro=_CONSTANT_REPRO,
            inputs_note=note,
            failure_kind=WRONG_STRUCTURE,
        )
    bias = np.zeros(case.shape[1]) if b is None else b
    expected = np.broadcast_to(bias.reshape(1, -1, *([1] * (len(case.shape) - 2))), case.shape)
    tol = forward_tolerance(xc, g, w, b, eps, probe.dtype)
    pick = np.broadcast_to(mask[:, :, None], block_rows(xc, g).shape).reshape(case.shape)
    sub = replace(tol, scale=tol.scale[pick], bound=tol.bound[pick])
    j = judge("output of constant blocks", y[pick], expected[pick], sub, against="the bias (exact)")
    out = verdict(j, "a constant (sample, group) block did not give the bias", _CONSTANT_REPRO)
    out.inputs_note = note
    return out


def constant_note(mask: np.ndarray) -> str:
    """How constant_blocks changed the case's data, for the counterexample's description."""
    blocks = [tuple(int(i) for i in b) for b in np.argwhere(mask)]
    return f"; then the (sample, group) blocks {blocks} made constant (each equal to its first value)"


# ---------------------------------------------------------------------------------------------- NaN


def with_nan(x: np.ndarray, num_groups: int, block: int, seed: int) -> np.ndarray:
    """x with one NaN at a random position of (sample, group) block ``block`` (row-major over (N, G))."""
    b = block_rows(np.array(x, dtype=np.float64), num_groups)
    n, g = divmod(block, b.shape[1])
    b[n, g, np.random.default_rng(seed).integers(b.shape[2])] = np.nan
    return b.reshape(x.shape)


_NAN_REPRO = """
from gn_spec.properties.metamorphic import blocks_of, with_nan
block = {block}
y = blocks_of(as_float64(forward(x, num_groups, weight, bias, eps)), num_groups)
y_nan = blocks_of(as_float64(forward(with_nan(inputs.x, num_groups, block, case.seed).astype(x.dtype),
                                     num_groups, weight, bias, eps)), num_groups)
n, g = divmod(block, y.shape[1])
print("NaN block (sample, group):", (n, g), "all NaN there:", bool(np.all(np.isnan(y_nan[n, g]))))
others = np.ones(y.shape[:2], bool)
others[n, g] = False
print("elsewhere, NaNs:", int(np.isnan(y_nan[others]).sum()), " largest change:",
np.nanmax(np.abs(y_nan[others] - y[others]), initial=0))
left = int(np.sum(~np.isnan(y_nan[n, g])))
message = "a NaN in block (sample %d, group %d) left %d of its %d outputs not NaN" % (n, g, left, y.shape[2])
assert not left, message
if others.any():
    from dataclasses import replace
    from gn_spec.properties.metamorphic import compare
    tol = forward_tolerance(inputs.x, num_groups, weight, bias, eps, DTYPE)
    scale, bound = (blocks_of(a, num_groups)[others] for a in (tol.scale, tol.bound))
    t = replace(tol, scale=scale, bound=bound)
    j = compare("other blocks with a NaN against without", y_nan[others], y[others], t, t)
    print(j.message)
    assert j.passed, "a NaN in block (sample %d, group %d) changed the output of other blocks" % (n, g)
"""


@gn_property("nan_stays_in_group", weight=0.5)
def nan_stays_in_group(probe: Probe, case: Case, draw: Draw) -> Outcome:
    """A NaN in one (sample, group) block makes that block's output NaN and leaves every other block alone.

    x_j = NaN, j in block (n, g)  =>  GN(x)_i = NaN for i in (n, g), and GN(x)_i = GN(x')_i elsewhere, x' the
    input without the NaN (SPEC.md: non-finite values).  Tolerance elsewhere: u (B s + B s) at x'.
    """
    n_blocks = case.shape[0] * case.num_groups
    assume(n_blocks >= 1 and case.group_size >= 1)
    block = draw(st.integers(0, n_blocks - 1))
    inp = probe.inputs(case)
    g = case.num_groups
    xn = with_nan(inp.x, g, block, case.seed)
    repro = _NAN_REPRO.format(block=block)
    pair = forward_pair(probe, case, inp, (inp.x, case.eps, "x"), (xn, case.eps, "x with a NaN"), repro)
    if isinstance(pair, Outcome):
        return pair
    clean, dirty = block_rows(pair[0], g), block_rows(pair[1], g)
    n, gg = divmod(block, g)
    not_nan = int(np.sum(~np.isnan(dirty[n, gg])))
    if not_nan:
        return Outcome(
            ok=False,
            message=f"a NaN in block (sample {n}, group {gg}) left {not_nan} of its "
            f"{dirty.shape[2]} outputs not NaN",
            repro=repro,
            failure_kind=WRONG_VALUES,
        )
    others = np.ones(clean.shape[:2], dtype=bool)
    others[n, gg] = False
    if not others.any():
        return Outcome.passed(0.0, 0.0)
    (tol,) = tolerances(probe, case, inp, (inp.x, case.eps))
    tb, bb = block_rows(tol.scale, g)[others], block_rows(tol.bound, g)[others]
    t = replace(tol, scale=tb, bound=bb)
    clean_exact = reference_output(case, inp, inp.x, case.eps)
    j = compare(
        f"other blocks with a NaN in block ({n}, {gg}) against without",
        dirty[others],
        clean[others],
        t,
        t,
        against_label="without the NaN, the same element gave",
        exact=lambda: block_rows(clean_exact(), g)[others],
    )
    return verdict(j, f"a NaN in block (sample {n}, group {gg}) changed the output of other blocks", repro)
