"""Group Normalization with the right formula and sequential (running-sum) reductions in float32: the mean
and the variance are each one float32 running sum over the group (np.cumsum adds left to right), as a naive
kernel's single loop does.  Its error can exceed the log-depth bound on long groups but stays within the
sequential-summation class (SPEC.md, "Summation")."""

from __future__ import annotations

import numpy as np


def _running_sum(a: np.ndarray) -> np.ndarray:
    return np.cumsum(a, axis=-1, dtype=np.float32)[..., -1:]


def group_norm(x, num_groups, weight=None, bias=None, eps=1e-5):  # noqa: ANN001, ANN201
    n, c = x.shape[:2]
    g = x.reshape(n, num_groups, -1).astype(np.float32)
    m = np.float32(g.shape[-1])
    mean = _running_sum(g) / m
    d = g - mean
    var = _running_sum(d * d) / m
    y = (d / np.sqrt(var + np.float32(eps))).reshape(x.shape)
    shape = (1, c) + (1,) * (x.ndim - 2)
    if weight is not None:
        y = y * weight.astype(np.float32).reshape(shape)
    if bias is not None:
        y = y + bias.astype(np.float32).reshape(shape)
    return y.astype(x.dtype)
