"""Targets that hang: on some inputs (2-D x with more than one group) or on every call."""

from __future__ import annotations

import time

import numpy as np


def _two_pass(x: np.ndarray, num_groups: int, weight, bias, eps: float) -> np.ndarray:  # noqa: ANN001
    n, c = x.shape[:2]
    g = x.reshape(n, num_groups, -1).astype(np.float64)
    y = (g - g.mean(-1, keepdims=True)) / np.sqrt(g.var(-1, keepdims=True) + eps)
    y = y.reshape(x.shape)
    shape = (1, c) + (1,) * (x.ndim - 2)
    if weight is not None:
        y = y * np.asarray(weight, np.float64).reshape(shape)
    if bias is not None:
        y = y + np.asarray(bias, np.float64).reshape(shape)
    return y.astype(x.dtype)


def hangs_on_2d_groups(x, num_groups, weight, bias, eps):  # noqa: ANN001, ANN201
    """Correct, except that it never returns on 2-D input with more than one group."""
    if x.ndim == 2 and num_groups > 1:
        while True:
            time.sleep(1)
    return _two_pass(x, num_groups, weight, bias, eps)


def hangs_always(x, num_groups, weight, bias, eps):  # noqa: ANN001, ANN201
    """Never returns."""
    while True:
        time.sleep(1)
