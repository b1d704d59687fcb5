"""Group normalization that always computes in float32 and casts the result back to the input's dtype.

Bug class: float64 input computed in float32. For float64 input the result carries float32 rounding errors
(about 1e-7 relative) where float64 accuracy is owed. Check it at float64.
Seen in: https://github.com/google/flax/issues/612 (LayerNorm casts its input to float32 regardless of dtype).
"""

import numpy as np


def group_norm(x, num_groups, weight=None, bias=None, eps=1e-5):
    if x.shape[1] % num_groups != 0:
        raise ValueError(f"num_groups={num_groups} does not divide the {x.shape[1]} channels")
    orig_dtype = x.dtype
    x = x.astype(np.float32)
    n, c = x.shape[0], x.shape[1]
    g = x.reshape(n, num_groups, -1)
    mean = g.mean(axis=-1, keepdims=True)
    var = g.var(axis=-1, keepdims=True)
    y = ((g - mean) / np.sqrt(var + np.float32(eps))).reshape(x.shape)
    per_channel = (1, c) + (1,) * (x.ndim - 2)
    if weight is not None:
        y = y * weight.astype(np.float32).reshape(per_channel)
    if bias is not None:
        y = y + bias.astype(np.float32).reshape(per_channel)
    return y.astype(orig_dtype)
