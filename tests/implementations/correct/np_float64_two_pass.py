"""Group normalization computed in float64 whatever the input's dtype, then rounded back to it.

Two passes (mean, then the mean of squared deviations) over a float64 copy, so the statistics of float16 and
float32 input carry far less error than their own precision; only the final rounding to x.dtype remains.
"""

import numpy as np


def group_norm(x, num_groups, weight=None, bias=None, eps=1e-5):
    if x.shape[1] % num_groups != 0:
        raise ValueError(f"num_groups={num_groups} does not divide the {x.shape[1]} channels")
    n, c = x.shape[0], x.shape[1]
    g = x.astype(np.float64).reshape(n, num_groups, -1)
    mean = g.mean(axis=-1, keepdims=True)
    dev = g - mean
    var = (dev * dev).mean(axis=-1, keepdims=True)
    y = (dev / np.sqrt(var + eps)).reshape(x.shape)
    per_channel = (1, c) + (1,) * (x.ndim - 2)
    if weight is not None:
        y = y * weight.astype(np.float64).reshape(per_channel)
    if bias is not None:
        y = y + bias.astype(np.float64).reshape(per_channel)
    return y.astype(x.dtype)
