"""Group normalization that puts channel c into group c % G.

Bug class: interleaved groups. The channel axis is reshaped as (C // G, G) instead of (G, C // G), so a
group collects every G-th channel rather than a contiguous block. It agrees with GN only for G = 1 or G = C.
Seen in: https://github.com/ZiyueHuang/MXShuffleNet/issues/4 and
https://github.com/megvii-model/ShuffleNet-Series/issues/17 (the (g, n) versus (n, g) order of a channel
reshape mixed up).
"""

import numpy as np


def group_norm(x, num_groups, weight=None, bias=None, eps=1e-5):
    if x.shape[1] % num_groups != 0:
        raise ValueError(f"num_groups={num_groups} does not divide the {x.shape[1]} channels")
    n, c = x.shape[0], x.shape[1]
    g = x.reshape(n, c // num_groups, num_groups, -1)
    mean = g.mean(axis=(1, 3), keepdims=True)
    var = g.var(axis=(1, 3), keepdims=True)
    y = ((g - mean) / np.sqrt(var + eps)).reshape(x.shape)
    per_channel = (1, c) + (1,) * (x.ndim - 2)
    if weight is not None:
        y = y * weight.reshape(per_channel)
    if bias is not None:
        y = y + bias.reshape(per_channel)
    return y.astype(x.dtype, copy=False)
