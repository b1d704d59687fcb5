"""Group normalization that scrubs NaN out of its result.

Bug class: NaN replaced instead of propagated. np.nan_to_num turns the NaN of a group holding a NaN into 0
(and inf into huge finite numbers), hiding bad input instead of propagating it.
Seen in: https://github.com/DASDAE/dascore/pull/793 (normalization silently turning missing values into
valid-looking zeros).
"""

import numpy as np


def group_norm(x, num_groups, weight=None, bias=None, eps=1e-5):
    if x.shape[1] % num_groups != 0:
        raise ValueError(f"num_groups={num_groups} does not divide the {x.shape[1]} channels")
    n, c = x.shape[0], x.shape[1]
    g = x.reshape(n, num_groups, -1)
    mean = g.mean(axis=-1, keepdims=True)
    var = g.var(axis=-1, keepdims=True)
    y = ((g - mean) / np.sqrt(var + eps)).reshape(x.shape)
    per_channel = (1, c) + (1,) * (x.ndim - 2)
    if weight is not None:
        y = y * weight.reshape(per_channel)
    if bias is not None:
        y = y + bias.reshape(per_channel)
    return np.nan_to_num(y).astype(x.dtype, copy=False)
