"""Group normalization that multiplies by the bias and adds the weight.

Bug class: weight and bias swapped, y = xhat * bias + weight.
Seen in: https://github.com/Vladkryvoruchko/PSPNet-Keras-tensorflow/issues/31 (normalization parameters
converted in the wrong order).
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
    scale = bias if bias is not None else np.ones(c, dtype=x.dtype)
    shift = weight if weight is not None else np.zeros(c, dtype=x.dtype)
    y = y * scale.reshape(per_channel) + shift.reshape(per_channel)
    return y.astype(x.dtype, copy=False)
