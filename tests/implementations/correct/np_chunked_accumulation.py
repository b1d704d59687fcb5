"""Group normalization with two-level (cascaded) sums in x.dtype: blocks of 256 elements, then the block sums.

Both the mean and the variance pass first add each block of BLOCK consecutive elements of a group, then add
the per-block partial sums; a long group therefore never feeds one long running sum, and the error grows
with log2 of the block size plus log2 of the number of blocks.
"""

import numpy as np

BLOCK = 256


def _cascaded_sum(a):
    m = a.shape[-1]
    pad = (-m) % BLOCK
    if pad:
        a = np.concatenate([a, np.zeros(a.shape[:-1] + (pad,), dtype=a.dtype)], axis=-1)
    partial = a.reshape(a.shape[:-1] + (-1, BLOCK)).sum(axis=-1)
    return partial.sum(axis=-1, keepdims=True)


def group_norm(x, num_groups, weight=None, bias=None, eps=1e-5):
    if x.shape[1] % num_groups != 0:
        raise ValueError(f"num_groups={num_groups} does not divide the {x.shape[1]} channels")
    n, c = x.shape[0], x.shape[1]
    g = x.reshape(n, num_groups, -1)
    m = g.shape[-1]
    mean = _cascaded_sum(g) / x.dtype.type(m)
    dev = g - mean
    var = _cascaded_sum(dev * dev) / x.dtype.type(m)
    y = (dev / np.sqrt(var + x.dtype.type(eps))).reshape(x.shape)
    per_channel = (1, c) + (1,) * (x.ndim - 2)
    if weight is not None:
        y = y * weight.reshape(per_channel)
    if bias is not None:
        y = y + bias.reshape(per_channel)
    return y.astype(x.dtype, copy=False)
