"""Group normalization that normalizes each sample over all of (C, *spatial), whatever num_groups is.

Bug class: LayerNorm regardless of G. Right for num_groups = 1 only.
Seen in: https://github.com/pytorch/pytorch/pull/159736 and https://github.com/keras-team/tf-keras/issues/195
(GroupNorm and LayerNorm taken for one another).
"""

import numpy as np


def group_norm(x, num_groups, weight=None, bias=None, eps=1e-5):
    if x.shape[1] % num_groups != 0:
        raise ValueError(f"num_groups={num_groups} does not divide the {x.shape[1]} channels")
    n, c = x.shape[0], x.shape[1]
    flat = x.reshape(n, -1)
    mean = flat.mean(axis=-1, keepdims=True)
    var = flat.var(axis=-1, keepdims=True)
    y = ((flat - mean) / np.sqrt(var + eps)).reshape(x.shape)
    per_channel = (1, c) + (1,) * (x.ndim - 2)
    if weight is not None:
        y = y * weight.reshape(per_channel)
    if bias is not None:
        y = y + bias.reshape(per_channel)
    return y.astype(x.dtype, copy=False)
