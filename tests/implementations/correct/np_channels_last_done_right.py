"""Group normalization computed on a channels-last copy, with the channel axis split before reducing.

x is moved to (N, *spatial, C) and reshaped to (N, *spatial, G, C // G): splitting the last axis keeps each
group's channels contiguous, and the statistics reduce over the spatial axes and the C // G axis. The result
is moved back to (N, C, *spatial).
"""

import numpy as np


def group_norm(x, num_groups, weight=None, bias=None, eps=1e-5):
    if x.shape[1] % num_groups != 0:
        raise ValueError(f"num_groups={num_groups} does not divide the {x.shape[1]} channels")
    n, c = x.shape[0], x.shape[1]
    nhwc = np.moveaxis(x, 1, -1)
    spatial = nhwc.shape[1:-1]
    g = nhwc.reshape((n,) + spatial + (num_groups, c // num_groups))
    axes = tuple(range(1, 1 + len(spatial))) + (g.ndim - 1,)
    mean = g.mean(axis=axes, keepdims=True)
    var = g.var(axis=axes, keepdims=True)
    y = ((g - mean) / np.sqrt(var + eps)).reshape(nhwc.shape)
    if weight is not None:
        y = y * weight
    if bias is not None:
        y = y + bias
    return np.ascontiguousarray(np.moveaxis(y, -1, 1)).astype(x.dtype, copy=False)
