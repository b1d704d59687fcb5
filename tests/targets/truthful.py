"""Numpy-API targets (``fn(x, num_groups, weight=None, bias=None, eps=1e-5)``) that behave as some framework
GroupNorms do, for the tests of what the checker's reports say about them (tests/test_truthful_reports.py).
No framework is imported: each reproduces one behaviour in numpy."""

import numpy as np
from hostile import _normalize64  # the float64 two-pass GN the hostile targets use (a sibling file)


def _affine(y, weight, bias):
    shape = (1, y.shape[1]) + (1,) * (y.ndim - 2)
    if weight is not None:
        y = y * np.asarray(weight, dtype=y.dtype).reshape(shape)
    if bias is not None:
        y = y + np.asarray(bias, dtype=y.dtype).reshape(shape)
    return y


def inf_last(x, num_groups, weight=None, bias=None, eps=1e-5):
    """Correct except that the last element of the output is +inf."""
    y = _normalize64(x, num_groups, weight, bias, eps).astype(x.dtype)
    if y.size:
        y.reshape(-1)[-1] = np.inf
    return y


def nan_last(x, num_groups, weight=None, bias=None, eps=1e-5):
    """Correct except that the last element of the output is NaN."""
    y = _normalize64(x, num_groups, weight, bias, eps).astype(x.dtype)
    if y.size:
        y.reshape(-1)[-1] = np.nan
    return y


def one_pass_unclamped(x, num_groups, weight=None, bias=None, eps=1e-5):
    """As ONNX GroupNormalization-21's function body: var = E[x^2] - E[x]^2 in the input's precision, not
    clamped at 0, so offset data gives a negative variance and NaN; eps is honoured."""
    n, c = x.shape[0], x.shape[1]
    if c % num_groups:
        raise ValueError(f"num_groups={num_groups} does not divide C={c}")
    g = x.reshape(n, num_groups, -1)
    mean = g.mean(axis=-1, keepdims=True, dtype=x.dtype)
    mean_sq = (g * g).mean(axis=-1, keepdims=True, dtype=x.dtype)
    with np.errstate(invalid="ignore"):
        y = ((g - mean) / np.sqrt(mean_sq - mean * mean + x.dtype.type(eps))).reshape(x.shape)
    return _affine(y, weight, bias).astype(x.dtype)


def float32_eps(x, num_groups, weight=None, bias=None, eps=1e-5):
    """As ONNX GroupNormalization-18 at float64: computes in float64 with eps rounded to float32 (the
    epsilon attribute is a 32-bit float)."""
    return _normalize64(x, num_groups, weight, bias, float(np.float32(eps))).astype(x.dtype)


def constant_blocks_give_zero(x, num_groups, weight=None, bias=None, eps=1e-5):
    """Correct except that a constant (sample, group) block gives 0 instead of the bias."""
    y = _normalize64(x, num_groups, weight, bias, eps)
    g = np.asarray(x, dtype=np.float64).reshape(x.shape[0], num_groups, -1)
    constant = (g == g[:, :, :1]).all(axis=-1)
    blocks = y.reshape(g.shape)
    blocks[constant] = 0.0
    return blocks.reshape(x.shape).astype(x.dtype)


def batch_statistics(x, num_groups, weight=None, bias=None, eps=1e-5):
    """Statistics over the batch and the group together: each sample's output depends on the others."""
    n, c = x.shape[0], x.shape[1]
    if c % num_groups:
        raise ValueError(f"num_groups={num_groups} does not divide C={c}")
    g = np.asarray(x, dtype=np.float64).reshape(n, num_groups, -1)
    mean = g.mean(axis=(0, 2), keepdims=True)
    var = ((g - mean) ** 2).mean(axis=(0, 2), keepdims=True)
    y = ((g - mean) / np.sqrt(var + eps)).reshape(x.shape)
    return _affine(y, weight, bias).astype(x.dtype)


def nan_on_large_groups(x, num_groups, weight=None, bias=None, eps=1e-5):
    """Slightly wrong (relative error 1e-3) on groups of fewer than 8 values, NaN on larger ones: shrinking
    ends on a marginal case while the worst case met is a NaN output."""
    y = _normalize64(x, num_groups, weight, bias, eps)
    m = x[0].size // num_groups if x.shape[0] else 0
    y = np.full_like(y, np.nan) if m >= 8 else y * (1 + 1e-3) + 1e-3
    return y.astype(x.dtype)
