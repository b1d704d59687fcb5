"""Group normalization whose variance divides by m - 1 instead of m.

Bug class: Bessel-corrected (sample) variance. The group statistics use
var = sum((x - mu)^2) / (m - 1), so every normalized value is off by the factor sqrt((m - 1) / m) (when
eps is negligible), and a group of one element divides by zero.
Seen in: https://github.com/pytorch/pytorch/issues/22617 (a hand-written GroupNorm using the unbiased
variance disagrees with nn.GroupNorm).
"""

import numpy as np


def group_norm(x, num_groups, weight=None, bias=None, eps=1e-5):
    if x.shape[1] % num_groups != 0:
        raise ValueError(f"num_groups={num_groups} does not divide the {x.shape[1]} channels")
    n, c = x.shape[0], x.shape[1]
    g = x.reshape(n, num_groups, -1)
    mean = g.mean(axis=-1, keepdims=True)
    var = g.var(axis=-1, ddof=1, keepdims=True)
    y = ((g - mean) / np.sqrt(var + eps)).reshape(x.shape)
    per_channel = (1, c) + (1,) * (x.ndim - 2)
    if weight is not None:
        y = y * weight.reshape(per_channel)
    if bias is not None:
        y = y + bias.reshape(per_channel)
    return y.astype(x.dtype, copy=False)
