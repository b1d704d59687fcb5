"""Group normalization that applies weight and bias before normalizing instead of after.

Bug class: affine before normalizing, y = normalize(weight * x + bias). The output has zero mean and unit
variance per group no matter what weight and bias are (up to eps), so the affine is lost.
Seen in: https://github.com/octo-models/octo/issues/14 (normalization operations applied in the wrong order).
"""

import numpy as np


def group_norm(x, num_groups, weight=None, bias=None, eps=1e-5):
    if x.shape[1] % num_groups != 0:
        raise ValueError(f"num_groups={num_groups} does not divide the {x.shape[1]} channels")
    n, c = x.shape[0], x.shape[1]
    per_channel = (1, c) + (1,) * (x.ndim - 2)
    if weight is not None:
        x = x * weight.reshape(per_channel)
    if bias is not None:
        x = x + bias.reshape(per_channel)
    g = x.reshape(n, num_groups, -1)
    mean = g.mean(axis=-1, keepdims=True)
    var = g.var(axis=-1, keepdims=True)
    y = ((g - mean) / np.sqrt(var + eps)).reshape(x.shape)
    return y.astype(x.dtype, copy=False)
