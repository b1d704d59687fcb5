"""Group normalization that relies on numpy's mean and var directly on float16 input.

Bug class: squares overflowing at large magnitude. numpy's var squares the deviations in the input's dtype,
so in float16 any |x - mean| above about 256 squares to inf (the largest float16 is 65504), the group's
scale becomes 0 and its output collapses to the bias. Check it at float16 with large-magnitude data.
Seen in: https://github.com/neuroneural/brainchop-cli/pull/56 (fp16 GroupNorm squares overflow before the
float32 accumulation) and https://github.com/keras-team/keras/issues/22586 (float16 GroupNormalization NaN).
"""

import numpy as np


def group_norm(x, num_groups, weight=None, bias=None, eps=1e-5):
    if x.shape[1] % num_groups != 0:
        raise ValueError(f"num_groups={num_groups} does not divide the {x.shape[1]} channels")
    n, c = x.shape[0], x.shape[1]
    g = x.reshape(n, num_groups, -1)
    mean = np.mean(g, axis=-1, keepdims=True)
    var = np.var(g, axis=-1, keepdims=True)
    y = ((g - mean) / np.sqrt(var + eps)).reshape(x.shape)
    per_channel = (1, c) + (1,) * (x.ndim - 2)
    if weight is not None:
        y = y * weight.reshape(per_channel)
    if bias is not None:
        y = y + bias.reshape(per_channel)
    return y.astype(x.dtype, copy=False)
