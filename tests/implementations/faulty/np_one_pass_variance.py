"""Group normalization with the one-pass variance E[x^2] - E[x]^2 in the input's precision.

Bug class: one-pass variance in working precision. When |mean| is large next to the standard deviation the
two terms cancel catastrophically (the relative error of var grows like (mean / std)^2 * u), and the
difference can even turn negative and give NaN.
Seen in: https://github.com/PaddlePaddle/Paddle/issues/16654 (group_norm variance negative, output NaN) and
https://github.com/openvinotoolkit/openvino/pull/36587 (E[x^2] - E[x]^2 cancels in float32).
"""

import numpy as np


def group_norm(x, num_groups, weight=None, bias=None, eps=1e-5):
    if x.shape[1] % num_groups != 0:
        raise ValueError(f"num_groups={num_groups} does not divide the {x.shape[1]} channels")
    n, c = x.shape[0], x.shape[1]
    g = x.reshape(n, num_groups, -1)
    mean = g.mean(axis=-1, keepdims=True)
    mean_sq = (g * g).mean(axis=-1, keepdims=True)
    var = mean_sq - mean * mean
    y = ((g - mean) / np.sqrt(var + eps)).reshape(x.shape)
    per_channel = (1, c) + (1,) * (x.ndim - 2)
    if weight is not None:
        y = y * weight.reshape(per_channel)
    if bias is not None:
        y = y + bias.reshape(per_channel)
    return y.astype(x.dtype, copy=False)
