"""Group normalization that saves memory by normalizing the caller's array in place.

Bug class: the input modified in place. The returned values are right, but the caller's x now holds the
normalized data.
Seen in: https://github.com/pytorch/vision/issues/517 (Normalize() transform operating in place on its input).
"""

import numpy as np


def group_norm(x, num_groups, weight=None, bias=None, eps=1e-5):
    if x.shape[1] % num_groups != 0:
        raise ValueError(f"num_groups={num_groups} does not divide the {x.shape[1]} channels")
    n, c = x.shape[0], x.shape[1]
    g = x.reshape(n, num_groups, -1)  # a view of x for contiguous input
    mean = g.mean(axis=-1, keepdims=True)
    var = g.var(axis=-1, keepdims=True)
    g -= mean
    g /= np.sqrt(var + eps)
    y = g.reshape(x.shape)
    per_channel = (1, c) + (1,) * (x.ndim - 2)
    if weight is not None:
        y = y * weight.reshape(per_channel)
    if bias is not None:
        y = y + bias.reshape(per_channel)
    return y.astype(x.dtype, copy=False)
