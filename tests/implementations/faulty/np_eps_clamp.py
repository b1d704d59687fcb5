"""Group normalization that uses eps as a floor for the variance instead of adding it.

Bug class: eps as a clamp, y = (x - mu) / sqrt(max(var, eps)). Identical to GN for var = 0, but wherever
var >= eps the eps term is missing, which shows for variance comparable to eps.
Seen in: https://github.com/pytorch/pytorch/issues/50473 (clamping versus adding eps across PyTorch ops) and
https://github.com/pytorch/pytorch/pull/190058 (an eps documented as added but implemented as a clamp).
"""

import numpy as np


def group_norm(x, num_groups, weight=None, bias=None, eps=1e-5):
    if x.shape[1] % num_groups != 0:
        raise ValueError(f"num_groups={num_groups} does not divide the {x.shape[1]} channels")
    n, c = x.shape[0], x.shape[1]
    g = x.reshape(n, num_groups, -1)
    mean = g.mean(axis=-1, keepdims=True)
    var = g.var(axis=-1, keepdims=True)
    y = ((g - mean) / np.sqrt(np.maximum(var, eps))).reshape(x.shape)
    per_channel = (1, c) + (1,) * (x.ndim - 2)
    if weight is not None:
        y = y * weight.reshape(per_channel)
    if bias is not None:
        y = y + bias.reshape(per_channel)
    return y.astype(x.dtype, copy=False)
