"""The canonical float64 Group Normalization: forward, backward and second order, faithful everywhere.

Definitions (SPEC.md section 1). For x of shape (N, C, *spatial) and G groups, each (sample n, group g) block
holds the m = (C/G) * prod(spatial) values of channels g*C/G .. (g+1)*C/G - 1 of sample n, and

    mu = mean(x),  var = mean((x - mu)^2)  (biased),  xhat = (x - mu) / sqrt(var + eps),
    y = weight[c] * xhat + bias[c]         (per-channel affine).

How accuracy is obtained, in three tiers. The compiled kernels evaluate every formula in double-double
arithmetic and bound their own error. The fast tier (``_fast``: one pass for the statistics, shifted by a
value of the block) serves almost every block; a block with a result its bound cannot certify is redone by
the precise tier (``_kernels``: an exact block sum, then a second pass), and results still uncertified (heavy
cancellation, a block sum not exact in double-double) by the exact rational oracle
(``gn_spec.derivations.oracle``). Every result is therefore within
one ulp of the exact real value (faithful); in practice almost all are correctly rounded.

Non-finite input. A NaN or infinity anywhere in a block makes every output of that block NaN and no other
output; per-channel gradients of the channels in such a block are NaN as well (they sum over it), except
grad_bias, which depends on grad_output alone.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from gn_spec.reference import fast as _fast
from gn_spec.reference import precise as _kernels
from gn_spec.reference import validate as _validate
from gn_spec.reference.validate import Problem


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
    p = _validate.problem(x, num_groups, weight, bias, eps)
    y = np.empty(p.x4.shape)
    uncertified = np.zeros(p.x4.shape[:2], dtype=np.int64)
    if y.size:
        _fast.forward_fast.pick(p.x4.size)(p.x4, p.weight, p.bias, p.eps, y, uncertified)
    if uncertified.any():
        _kernels.forward_kernel.pick(p.x4.size)(
            p.x4, p.weight, p.bias, p.eps, y, uncertified, uncertified > 0
        )
    for n, g in zip(*np.nonzero(uncertified), strict=True):
        channels = _group_channels(p, g)
        y[n, g] = (
            _oracle()
            .group_norm(_block(p.x4, n, g, p), 1, p.weight[channels], p.bias[channels], p.eps)
            .reshape(y.shape[2:])
        )
    return y.reshape(p.shape)


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
    p = _validate.problem(x, num_groups, weight, None, eps)
    dy = _validate.same_shape(grad_output, "grad_output", p)
    N, G, cpg, S = p.x4.shape
    C = p.channels
    dx = np.empty(p.x4.shape)
    part = np.zeros((N, C, 4))
    part_err = np.zeros((N, C, 2))
    uncertified = np.zeros((N, G), dtype=np.int64)
    if dx.size:
        _fast.backward_fast.pick(p.x4.size)(dy, p.x4, p.weight, p.eps, dx, part, part_err, uncertified)
    if uncertified.any():
        _kernels.backward_kernel.pick(p.x4.size)(
            dy, p.x4, p.weight, p.eps, dx, part, part_err, uncertified, uncertified > 0
        )
    sums, sums_err = _reduce(part, part_err, C)
    grad_weight, grad_bias = sums[:, 0], sums[:, 1]
    for n, g in zip(*np.nonzero(uncertified), strict=True):
        channels = _group_channels(p, g)
        exact = _oracle().group_norm_backward(
            _block(dy, n, g, p), _block(p.x4, n, g, p), 1, p.weight[channels], p.eps
        )
        dx[n, g] = exact[0].reshape(dx.shape[2:])
    for c in _uncertified_channels(sums, sums_err):
        g = c // cpg
        channels = _group_channels(p, g)
        exact = _oracle().group_norm_backward(
            _group(dy, g, p), _group(p.x4, g, p), 1, p.weight[channels], p.eps
        )
        grad_weight[channels] = exact[1]
        grad_bias[channels] = exact[2]
    return dx.reshape(p.shape), grad_weight.copy(), grad_bias.copy()


# ---------------------------------------------------------------------------------------------------------
# helpers


def _oracle() -> Any:
    """The exact oracle, imported on first need (only uncertified results use it)."""
    from gn_spec.derivations import oracle

    return oracle


def _group_channels(p: Problem, g: int) -> slice:
    cpg = p.x4.shape[2]
    return slice(int(g) * cpg, (int(g) + 1) * cpg)


def _block(array: np.ndarray, n: int, g: int, p: Problem) -> np.ndarray:
    """Block (n, g) of a (N, G, cpg, S) array, as a (1, cpg, S) input for a one-group oracle call."""
    return array[int(n), int(g)][None]


def _group(array: np.ndarray, g: int, p: Problem) -> np.ndarray:
    """Group g of every sample, as an (N, cpg, S) input for a one-group oracle call."""
    return array[:, int(g)]


def _reduce(part: np.ndarray, part_err: np.ndarray, channels: int) -> tuple[np.ndarray, np.ndarray]:
    out = np.zeros((channels, part.shape[2] // 2))
    err = np.zeros_like(out)
    if part.shape[0]:
        _kernels.reduce_parts(part, part_err, out, err)
    return out, err


def _uncertified_channels(values: np.ndarray, errors: np.ndarray) -> list[int]:
    """Channels whose per-channel sums carry an error bound not below a quarter ulp (NaN sums excepted)."""
    finite = np.isfinite(values)
    ulp = np.spacing(np.abs(np.where(finite, values, 0.0)))
    bad = finite & (errors > 0) & ~(errors < 0.25 * ulp)
    return sorted({int(c) for c in np.nonzero(bad)[0]})


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
    ``_kernels.double_backward_kernel``.
    """
    p = _validate.problem(x, num_groups, weight, None, eps)
    dy = _validate.same_shape(grad_output, "grad_output", p)
    hh = _validate.same_shape(grad_grad_input, "grad_grad_input", p)
    ggw = _validate.per_channel(grad_grad_weight, "grad_grad_weight", p)
    ggb = _validate.per_channel(grad_grad_bias, "grad_grad_bias", p)
    N, G, cpg, S = p.x4.shape
    C = p.channels
    ggo = np.empty(p.x4.shape)
    gx = np.empty(p.x4.shape)
    part = np.zeros((N, C, 6))
    part_err = np.zeros((N, C, 3))
    uncertified = np.zeros((N, G), dtype=np.int64)
    if gx.size:
        _kernels.double_backward_kernel.pick(p.x4.size)(
            hh, ggw, ggb, dy, p.x4, p.weight, p.eps, ggo, gx, part, part_err, uncertified
        )
    sums, sums_err = _reduce(
        np.ascontiguousarray(part[:, :, :2]), np.ascontiguousarray(part_err[:, :, :1]), C
    )
    grad_weight = sums[:, 0]
    for n, g in zip(*np.nonzero(uncertified), strict=True):
        ch = _group_channels(p, g)
        h_b, dy_b, x_b = (_block(a, n, g, p) for a in (hh, dy, p.x4))
        exact = _oracle().group_norm_double_backward(h_b, ggw[ch], ggb[ch], dy_b, x_b, 1, p.weight[ch], p.eps)
        ggo[n, g] = exact[0].reshape(ggo.shape[2:])
        gx[n, g] = exact[1].reshape(gx.shape[2:])
    for c in _uncertified_channels(sums[:, :1], sums_err):
        g = c // cpg
        ch = _group_channels(p, g)
        exact = _oracle().group_norm_double_backward(
            _group(hh, g, p), ggw[ch], ggb[ch], _group(dy, g, p), _group(p.x4, g, p), 1, p.weight[ch], p.eps
        )
        grad_weight[ch] = exact[2]
    return ggo.reshape(p.shape), gx.reshape(p.shape), grad_weight.copy()


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
        _fast.forward_fast,
        _fast.backward_fast,
        _kernels.forward_kernel,
        _kernels.backward_kernel,
        _kernels.double_backward_kernel,
    ):
        for build in (kernels.serial, kernels.parallel):
            _compile(build, kernels, x, w)


def _compile(build: Any, kernels: Any, x: np.ndarray, w: np.ndarray) -> None:
    """Run one build of a kernel once on a tiny problem (which compiles it)."""
    p = _validate.problem(x, 1, w, w, 1e-5)
    n, g, _, _ = p.x4.shape
    out = np.empty(p.x4.shape)
    unc = np.zeros((n, g), dtype=np.int64)
    todo = np.ones((n, g), dtype=bool)
    part, part_err = np.zeros((n, p.channels, 6)), np.zeros((n, p.channels, 3))
    if kernels is _fast.forward_fast:
        build(p.x4, p.weight, p.bias, p.eps, out, unc)
    elif kernels is _kernels.forward_kernel:
        build(p.x4, p.weight, p.bias, p.eps, out, unc, todo)
    elif kernels is _fast.backward_fast:
        build(p.x4, p.x4, p.weight, p.eps, out, part[:, :, :4].copy(), part_err[:, :, :2].copy(), unc)
    elif kernels is _kernels.backward_kernel:
        build(p.x4, p.x4, p.weight, p.eps, out, part[:, :, :4].copy(), part_err[:, :, :2].copy(), unc, todo)
    else:
        build(p.x4, w, w, p.x4, p.x4, p.weight, p.eps, out, out.copy(), part, part_err, unc)
    _reduce(np.zeros((n, p.channels, 4)), np.zeros((n, p.channels, 2)), p.channels)
    _reduce(np.zeros((n, p.channels, 2)), np.zeros((n, p.channels, 1)), p.channels)
