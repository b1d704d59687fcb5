"""The canonical float64 Group Normalization: forward, backward and second order, faithful everywhere.

Definitions (SPEC.md section 1). For x of shape (N, C, *spatial) and G groups, each (sample n, group g) block
holds the m = (C/G) * prod(spatial) values of channels g*C/G .. (g+1)*C/G - 1 of sample n, and

    mu = mean(x),  var = mean((x - mu)^2)  (biased),  xhat = (x - mu) / sqrt(var + eps),
    y = weight[c] * xhat + bias[c]         (per-channel affine).

How accuracy is obtained, in tiers. The compiled tiers evaluate every formula in double-double arithmetic
(``dd``) and bound their own error (``constants``); what they cannot certify is redone by the next tier:

- tier 1, ``fast``: one pass for the statistics, shifted by a value of the block;
- tier 2, ``precise``: an exact block sum, then a second pass over the centred values;
- tier 3, ``exact``: the exact rational oracle (``gn_spec.derivations.oracle``), block by block.

Which quantities have which tiers: the forward and the backward's grad_input start in the fast tier; the
double backward's outputs start in the precise tier (it has no fast tier). Per-channel sums (the backward's
grad_weight and grad_bias, the double backward's grad_weight) are summed over samples from the block tiers'
partials (``precise.reduce_parts``), and a channel whose sum is not certified is recomputed by the exact
tier. Every result is therefore within one ulp of the exact real value (faithful); in practice almost all are
correctly rounded. ``_forward``, ``_backward`` and ``_double_backward`` take the tiers to run as an argument,
so that tests can force each tier on its own.

Non-finite input. A NaN or infinity anywhere in a block makes every output of that block NaN and no other
output; per-channel gradients of the channels in such a block are NaN as well (they sum over it), except
grad_bias, which depends on grad_output alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from gn_spec.reference import exact, fast, precise, validate
from gn_spec.reference.constants import CERT_ULPS
from gn_spec.reference.validate import Problem

FAST, PRECISE, EXACT = "fast", "precise", "exact"
#: The tiers each quantity runs through, in order (each redoes what the one before could not certify).
FORWARD_TIERS = BACKWARD_TIERS = (FAST, PRECISE, EXACT)
DOUBLE_BACKWARD_TIERS = (PRECISE, EXACT)


def group_norm(
    x: Any, num_groups: int, weight: Any = None, bias: Any = None, eps: float = 1e-5
) -> np.ndarray:
    """Group Normalization of x (N, C, *spatial): y = weight[c] * (x - mu) / sqrt(var + eps) + bias[c].

    mu and the biased variance var are taken over each (sample, group) block of C/num_groups contiguous
    channels and all spatial positions. Inputs of float16/float32/float64 are used at their exact values; the
    result is float64 and within one ulp of the exact real result.

    >>> import numpy as np
    >>> group_norm(np.array([[1.0, 3.0, 5.0, 7.0]]), num_groups=2, eps=0.0)
    array([[-1.,  1., -1.,  1.]])
    """
    p = validate.problem(x, num_groups, weight, bias, eps)
    return _forward(p, FORWARD_TIERS)[0].reshape(p.shape)


def group_norm_backward(
    grad_output: Any, x: Any, num_groups: int, weight: Any = None, eps: float = 1e-5
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The vector-Jacobian product of ``group_norm`` at x with cotangent grad_output.

    Returns (grad_input, grad_weight, grad_bias), float64, faithful. With g = weight[c] * grad_output and
    means
    over each block:

        grad_input = (g - mean(g) - xhat * mean(g * xhat)) / sqrt(var + eps)
        grad_weight[c] = sum over samples and positions of channel c of grad_output * xhat
        grad_bias[c] = sum over samples and positions of channel c of grad_output

    grad_weight and grad_bias have shape (C,) also when weight is None (what a unit weight and a zero bias
    would receive).
    """
    p = validate.problem(x, num_groups, weight, None, eps)
    dy = validate.same_shape(grad_output, "grad_output", p)
    dx, grad_weight, grad_bias, _, _ = _backward(p, dy, BACKWARD_TIERS)
    return dx.reshape(p.shape), grad_weight, grad_bias


def group_norm_double_backward(
    grad_grad_input: Any,
    grad_grad_weight: Any,
    grad_grad_bias: Any,
    grad_output: Any,
    x: Any,
    num_groups: int,
    weight: Any = None,
    eps: float = 1e-5,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Second order: the VJP of ``group_norm_backward`` with respect to (grad_output, x, weight).

    The incoming cotangents pair with the backward's outputs: grad_grad_input with grad_input,
    grad_grad_weight with grad_weight, grad_grad_bias with grad_bias; any of them may be None (zero). Returns
    (grad_grad_output, grad_x, grad_weight), float64, faithful: what ``torch.autograd`` computes when it
    differentiates PyTorch's group_norm backward (double backward). The closed forms are in SPEC.md and in
    ``precise.double_backward_kernel``.
    """
    p = validate.problem(x, num_groups, weight, None, eps)
    dy = validate.same_shape(grad_output, "grad_output", p)
    hh = validate.same_shape(grad_grad_input, "grad_grad_input", p)
    ggw = validate.per_channel(grad_grad_weight, "grad_grad_weight", p)
    ggb = validate.per_channel(grad_grad_bias, "grad_grad_bias", p)
    ggo, gx, grad_weight, _, _ = _double_backward(p, (hh, ggw, ggb, dy), DOUBLE_BACKWARD_TIERS)
    return ggo.reshape(p.shape), gx.reshape(p.shape), grad_weight


# ---------------------------------------------------------------------------------------------------------
# dispatch over the tiers
#
# Each function takes the tiers to run, a non-empty part, in order, of the quantity's tiers: the first tier
# computes every block, each later one the blocks (and channels) left uncertified. Besides the results they
# return what the last tier left uncertified: a count per (n, g) block and the list of channels (both empty
# when the exact tier ran). The public functions run all the tiers.


def _check_tiers(tiers: Sequence[str], allowed: tuple[str, ...]) -> None:
    if tiers is allowed:  # the public functions' call: nothing to check
        return
    order = [allowed.index(t) if t in allowed else -1 for t in tiers]
    if not tiers or -1 in order or order != sorted(set(order)):
        raise ValueError(f"tiers={tuple(tiers)!r} must be a non-empty part, in order, of {allowed}")


def _blocks(uncertified: np.ndarray | None, shape: tuple[int, ...]) -> list[tuple[int, int]]:
    """The (n, g) blocks a tier computes: all of them (uncertified is None) or those counted uncertified."""
    if uncertified is None:
        return [(n, g) for n in range(shape[0]) for g in range(shape[1])]
    return [(int(n), int(g)) for n, g in zip(*np.nonzero(uncertified), strict=True)]


def _forward(p: Problem, tiers: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """(y viewed (N, G, cpg, S), the per-block count of results the last tier left uncertified)."""
    _check_tiers(tiers, FORWARD_TIERS)
    y = np.empty(p.x4.shape)
    uncertified = np.zeros(p.x4.shape[:2], dtype=np.int64)
    if not y.size:
        return y, uncertified
    for k, tier in enumerate(tiers):
        if k and not uncertified.any():
            break
        if tier == FAST:
            fast.forward_fast.pick(p.x4.size)(p.x4, p.weight, p.bias, p.eps, y, uncertified)
        elif tier == PRECISE:
            todo = uncertified > 0 if k else np.ones(uncertified.shape, dtype=bool)
            precise.forward_kernel.pick(p.x4.size)(p.x4, p.weight, p.bias, p.eps, y, uncertified, todo)
        else:
            exact.forward(p, y, _blocks(uncertified if k else None, uncertified.shape))
            uncertified[:] = 0
    return y, uncertified


def _backward(
    p: Problem, dy: np.ndarray, tiers: Sequence[str]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[int]]:
    """(dx viewed (N, G, cpg, S), grad_weight, grad_bias, uncertified blocks, uncertified channels)."""
    _check_tiers(tiers, BACKWARD_TIERS)
    N, G, cpg, S = p.x4.shape
    C = p.channels
    dx = np.empty(p.x4.shape)
    part = np.zeros((N, C, 4))
    part_err = np.zeros((N, C, 2))
    uncertified = np.zeros((N, G), dtype=np.int64)
    compiled = [t for t in tiers if t != EXACT]
    for k, tier in enumerate(compiled):
        if not dx.size or (k and not uncertified.any()):
            break
        if tier == FAST:
            fast.backward_fast.pick(p.x4.size)(dy, p.x4, p.weight, p.eps, dx, part, part_err, uncertified)
        else:
            todo = uncertified > 0 if k else np.ones(uncertified.shape, dtype=bool)
            precise.backward_kernel.pick(p.x4.size)(
                dy, p.x4, p.weight, p.eps, dx, part, part_err, uncertified, todo
            )
    sums, sums_err = _reduce(part, part_err, C)
    grad_weight, grad_bias = sums[:, 0].copy(), sums[:, 1].copy()
    channels = _uncertified_channels(sums, sums_err) if compiled else list(range(C))
    if EXACT in tiers:
        exact.backward(p, dy, dx, _blocks(uncertified if compiled else None, (N, G)))
        exact.backward_channels(p, dy, grad_weight, grad_bias, sorted({c // cpg for c in channels}))
        uncertified[:] = 0
        channels = []
    return dx, grad_weight, grad_bias, uncertified, channels


def _double_backward(
    p: Problem, cotangents: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray], tiers: Sequence[str]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[int]]:
    """(ggo, gx viewed (N, G, cpg, S), grad_weight, uncertified blocks, uncertified channels);
    cotangents = (hh, ggw, ggb, dy)."""
    _check_tiers(tiers, DOUBLE_BACKWARD_TIERS)
    hh, ggw, ggb, dy = cotangents
    N, G, cpg, S = p.x4.shape
    C = p.channels
    ggo = np.empty(p.x4.shape)
    gx = np.empty(p.x4.shape)
    part = np.zeros((N, C, 6))
    part_err = np.zeros((N, C, 3))
    uncertified = np.zeros((N, G), dtype=np.int64)
    compiled = PRECISE in tiers
    if compiled and gx.size:
        precise.double_backward_kernel.pick(p.x4.size)(
            hh, ggw, ggb, dy, p.x4, p.weight, p.eps, ggo, gx, part, part_err, uncertified
        )
    sums, sums_err = _reduce(
        np.ascontiguousarray(part[:, :, :2]), np.ascontiguousarray(part_err[:, :, :1]), C
    )
    grad_weight = sums[:, 0].copy()
    channels = _uncertified_channels(sums[:, :1], sums_err) if compiled else list(range(C))
    if EXACT in tiers:
        exact.double_backward(p, cotangents, ggo, gx, _blocks(uncertified if compiled else None, (N, G)))
        exact.double_backward_channels(p, cotangents, grad_weight, sorted({c // cpg for c in channels}))
        uncertified[:] = 0
        channels = []
    return ggo, gx, grad_weight, uncertified, channels


def _reduce(part: np.ndarray, part_err: np.ndarray, channels: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel sums over the samples of the blocks' dd partials, with their error bounds."""
    out = np.zeros((channels, part.shape[2] // 2))
    err = np.zeros_like(out)
    if part.shape[0]:
        precise.reduce_parts(part, part_err, out, err)
    return out, err


def _uncertified_channels(values: np.ndarray, errors: np.ndarray) -> list[int]:
    """Channels whose per-channel sums carry an error bound not below a quarter ulp (NaN sums excepted)."""
    finite = np.isfinite(values)
    ulp = np.spacing(np.abs(np.where(finite, values, 0.0)))
    bad = finite & (errors > 0) & ~(errors < CERT_ULPS * ulp)
    return sorted({int(c) for c in np.nonzero(bad)[0]})


def warm_up() -> None:
    """Compile every kernel now (serial and parallel builds) rather than inside the first timed call.

    numba compiles on first use and caches the machine code on disk, so only the first run after an install
    pays (tens of seconds on a small machine); later runs load the cache in well under a second. The checker
    calls this before it starts timing anything.
    """
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 2, 3))
    w = np.ones(2)
    for kernels in (
        fast.forward_fast,
        fast.backward_fast,
        precise.forward_kernel,
        precise.backward_kernel,
        precise.double_backward_kernel,
    ):
        for build in (kernels.serial, kernels.parallel):
            _compile(build, kernels, x, w)


def _compile(build: Any, kernels: Any, x: np.ndarray, w: np.ndarray) -> None:
    """Run one build of a kernel once on a tiny problem (which compiles it)."""
    p = validate.problem(x, 1, w, w, 1e-5)
    n, g, _, _ = p.x4.shape
    out = np.empty(p.x4.shape)
    unc = np.zeros((n, g), dtype=np.int64)
    todo = np.ones((n, g), dtype=bool)
    part, part_err = np.zeros((n, p.channels, 6)), np.zeros((n, p.channels, 3))
    if kernels is fast.forward_fast:
        build(p.x4, p.weight, p.bias, p.eps, out, unc)
    elif kernels is precise.forward_kernel:
        build(p.x4, p.weight, p.bias, p.eps, out, unc, todo)
    elif kernels is fast.backward_fast:
        build(p.x4, p.x4, p.weight, p.eps, out, part[:, :, :4].copy(), part_err[:, :, :2].copy(), unc)
    elif kernels is precise.backward_kernel:
        build(p.x4, p.x4, p.weight, p.eps, out, part[:, :, :4].copy(), part_err[:, :, :2].copy(), unc, todo)
    else:
        build(p.x4, w, w, p.x4, p.x4, p.weight, p.eps, out, out.copy(), part, part_err, unc)
    _reduce(np.zeros((n, p.channels, 4)), np.zeros((n, p.channels, 2)), p.channels)
    _reduce(np.zeros((n, p.channels, 2)), np.zeros((n, p.channels, 1)), p.channels)
