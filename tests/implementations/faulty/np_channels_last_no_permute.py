"""Group normalization that moves channels last and then forms groups with a plain reshape.

Bug class: channels-last reshape without the permute. After x is moved to (N, *spatial, C), reshaping to
(N, G, -1) cuts the memory into G equal slabs along the spatial axes, each mixing all channels, instead of
taking channel blocks. Right when there are no spatial dims, or when G = 1.
Seen in: https://github.com/tensorflow/addons/issues/751 (tfa GroupNorm reshapes NHWC to groups without the
transpose) and https://github.com/titu1994/Keras-Group-Normalization/issues/6.
"""

import numpy as np


def group_norm(x, num_groups, weight=None, bias=None, eps=1e-5):
    if x.shape[1] % num_groups != 0:
        raise ValueError(f"num_groups={num_groups} does not divide the {x.shape[1]} channels")
    n = x.shape[0]
    nhwc = np.moveaxis(x, 1, -1)
    g = nhwc.reshape(n, num_groups, -1)
    mean = g.mean(axis=-1, keepdims=True)
    var = g.var(axis=-1, keepdims=True)
    y_nhwc = ((g - mean) / np.sqrt(var + eps)).reshape(nhwc.shape)
    if weight is not None:
        y_nhwc = y_nhwc * weight
    if bias is not None:
        y_nhwc = y_nhwc + bias
    return np.ascontiguousarray(np.moveaxis(y_nhwc, -1, 1)).astype(x.dtype, copy=False)
