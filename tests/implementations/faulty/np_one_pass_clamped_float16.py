"""Group normalization of float16 data with float32 statistics and a one-pass variance clamped at 0.

Bug class: one-pass variance max(0, E[x^2] - E[x]^2), statistics in float32. The clamp hides the negative
variances, but where |mean| is large next to the spread the subtraction still cancels to 0 and the output
becomes (x - mean) / sqrt(eps). For float16 data the float32 statistics cancel only near the top of
float16's precision (|mean| / step ~ 2**10 to 2**11), which random data rarely reach (gn-spec's grid recipe
does).
Seen in: flax `linen/normalization.py` (`use_fast_variance=True`, the default, SPEC §3.12) and the clamp added
to Equinox in https://github.com/patrick-kidger/equinox/pull/314.
"""

import numpy as np


def group_norm(x, num_groups, weight=None, bias=None, eps=1e-5):
    if x.shape[1] % num_groups != 0:
        raise ValueError(f"num_groups={num_groups} does not divide the {x.shape[1]} channels")
    n, c = x.shape[0], x.shape[1]
    g = x.astype(np.float32).reshape(n, num_groups, -1)
    mean = g.mean(axis=-1, keepdims=True)
    var = np.maximum(np.float32(0), (g * g).mean(axis=-1, keepdims=True) - mean * mean)
    y = ((g - mean) / np.sqrt(var + np.float32(eps))).reshape(x.shape)
    per_channel = (1, c) + (1,) * (x.ndim - 2)
    if weight is not None:
        y = y * weight.astype(np.float32).reshape(per_channel)
    if bias is not None:
        y = y + bias.astype(np.float32).reshape(per_channel)
    return y.astype(x.dtype)
