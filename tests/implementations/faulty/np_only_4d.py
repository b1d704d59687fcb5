"""Group normalization written for (N, C, H, W) input only.

Bug class: only 4-D input handled. The statistics reduce over the axes (2, 3, 4) of the grouped
(N, G, C // G, *spatial) view, which is the whole group only when there are exactly two spatial dims: a 5-D
input gets statistics per last-axis position, and 2-D or 3-D input raises an AxisError.
Seen in: https://github.com/PaddlePaddle/Paddle/pull/34773 (GroupNorm supported 4-D only; for more dims the
output was not correct) and https://github.com/apple/coremltools/issues/2047 (GroupNorm only NCHW).
"""

import numpy as np


def group_norm(x, num_groups, weight=None, bias=None, eps=1e-5):
    if x.shape[1] % num_groups != 0:
        raise ValueError(f"num_groups={num_groups} does not divide the {x.shape[1]} channels")
    n, c = x.shape[0], x.shape[1]
    g = x.reshape((n, num_groups, c // num_groups) + x.shape[2:])
    mean = g.mean(axis=(2, 3, 4), keepdims=True)
    var = g.var(axis=(2, 3, 4), keepdims=True)
    y = ((g - mean) / np.sqrt(var + eps)).reshape(x.shape)
    per_channel = (1, c) + (1,) * (x.ndim - 2)
    if weight is not None:
        y = y * weight.reshape(per_channel)
    if bias is not None:
        y = y + bias.reshape(per_channel)
    return y.astype(x.dtype, copy=False)
