"""Targets with PyTorch's functional signature ``fn(x, num_groups, weight=None, bias=None, eps=1e-5)`` (numpy
API), each broken or hostile in one way that the checker must report as non-conformance with the right reason.
``good`` and ``good_working_precision`` are correct, for contrast."""

import ctypes
import os
import sys
import time

import numpy as np


def _normalize64(x, num_groups, weight, bias, eps):
    """Two-pass GroupNorm in float64, returned in float64."""
    n, c = x.shape[0], x.shape[1]
    if c % num_groups:
        raise ValueError(f"num_groups={num_groups} does not divide C={c}")
    g = np.asarray(x, dtype=np.float64).reshape(n, num_groups, -1)
    mean = g.mean(axis=-1, keepdims=True)
    var = ((g - mean) ** 2).mean(axis=-1, keepdims=True)
    y = ((g - mean) / np.sqrt(var + eps)).reshape(x.shape)
    shape = (1, c) + (1,) * (x.ndim - 2)
    if weight is not None:
        y = y * np.asarray(weight, dtype=np.float64).reshape(shape)
    if bias is not None:
        y = y + np.asarray(bias, dtype=np.float64).reshape(shape)
    return y


def good(x, num_groups, weight=None, bias=None, eps=1e-5):
    """Correct: float64 internally, rounded to the input's dtype."""
    return _normalize64(x, num_groups, weight, bias, eps).astype(x.dtype)


def good_working_precision(x, num_groups, weight=None, bias=None, eps=1e-5):
    """Correct: two passes in the input's own precision (numpy's pairwise summation)."""
    n, c = x.shape[0], x.shape[1]
    if c % num_groups:
        raise ValueError(f"num_groups={num_groups} does not divide C={c}")
    g = x.reshape(n, num_groups, -1)
    mean = g.mean(axis=-1, keepdims=True)
    d = g - mean
    var = (d * d).mean(axis=-1, keepdims=True)
    y = (d / np.sqrt(var + x.dtype.type(eps))).reshape(x.shape)
    shape = (1, c) + (1,) * (x.ndim - 2)
    if weight is not None:
        y = y * weight.reshape(shape)
    if bias is not None:
        y = y + bias.reshape(shape)
    return y


def segfault(x, num_groups, weight=None, bias=None, eps=1e-5):
    """Dereferences a null pointer: the worker dies of SIGSEGV."""
    return ctypes.string_at(0)


def abort(x, num_groups, weight=None, bias=None, eps=1e-5):
    """Calls abort(3): SIGABRT."""
    os.abort()


def os_exit(x, num_groups, weight=None, bias=None, eps=1e-5):
    """Ends the process at once with status 3."""
    os._exit(3)


def sys_exit(x, num_groups, weight=None, bias=None, eps=1e-5):
    """Raises SystemExit(4)."""
    sys.exit(4)


def keyboard_interrupt(x, num_groups, weight=None, bias=None, eps=1e-5):
    """Raises KeyboardInterrupt."""
    raise KeyboardInterrupt


def hang(x, num_groups, weight=None, bias=None, eps=1e-5):
    """Never returns."""
    while True:
        time.sleep(1)


def returns_none(x, num_groups, weight=None, bias=None, eps=1e-5):
    """Forgets the return statement."""
    good(x, num_groups, weight, bias, eps)


def returns_list(x, num_groups, weight=None, bias=None, eps=1e-5):
    """Returns nested Python lists instead of an array."""
    return good(x, num_groups, weight, bias, eps).tolist()


def wrong_shape(x, num_groups, weight=None, bias=None, eps=1e-5):
    """Returns the output flattened per sample, shape (N, C * prod(spatial))."""
    return good(x, num_groups, weight, bias, eps).reshape(x.shape[0], -1)


def wrong_dtype(x, num_groups, weight=None, bias=None, eps=1e-5):
    """Returns float64 whatever the input dtype (right values, wrong dtype)."""
    return _normalize64(x, num_groups, weight, bias, eps)


def raises(x, num_groups, weight=None, bias=None, eps=1e-5):
    """Raises on valid input."""
    raise RuntimeError("not implemented for this input")


def modifies_input(x, num_groups, weight=None, bias=None, eps=1e-5):
    """Right values, but scribbles over x (subtracts the mean in place)."""
    y = good(x, num_groups, weight, bias, eps)
    x -= x.mean()
    return y


def accepts_bad_groups(x, num_groups, weight=None, bias=None, eps=1e-5):
    """Never checks that num_groups divides C: uneven groups via array_split."""
    if x.shape[1] % num_groups == 0:
        return good(x, num_groups, weight, bias, eps)
    parts = [good(p, 1, None, None, eps) for p in np.array_split(x, num_groups, axis=1) if p.shape[1]]
    return np.concatenate(parts, axis=1)


def nondeterministic(x, num_groups, weight=None, bias=None, eps=1e-5):
    """Adds a random last-bit perturbation: the same input gives different outputs."""
    y = good(x, num_groups, weight, bias, eps)
    direction = np.where(np.random.random(y.shape) < 0.5, -np.inf, np.inf).astype(y.dtype)
    return np.nextafter(y, direction)


def bessel(x, num_groups, weight=None, bias=None, eps=1e-5):
    """Wrong values: the unbiased (Bessel-corrected) variance."""
    n, c = x.shape[0], x.shape[1]
    if c % num_groups:
        raise ValueError(f"num_groups={num_groups} does not divide C={c}")
    g = x.astype(np.float64).reshape(n, num_groups, -1)
    var = g.var(axis=-1, ddof=1, keepdims=True) if g.shape[-1] > 1 else np.zeros_like(g[..., :1])
    y = ((g - g.mean(axis=-1, keepdims=True)) / np.sqrt(var + eps)).reshape(x.shape)
    shape = (1, c) + (1,) * (x.ndim - 2)
    if weight is not None:
        y = y * weight.reshape(shape)
    if bias is not None:
        y = y + bias.reshape(shape)
    return y.astype(x.dtype)


#: Not callable: naming it as the target is a usage error.
NOT_A_FUNCTION = 42
