"""Group normalization that normalizes every channel on its own, whatever num_groups is.

Bug class: InstanceNorm regardless of G. Right for num_groups = C only.
Seen in: https://github.com/NVIDIA/TensorRT-Incubator/pull/637 (GroupNorm lowered to InstanceNorm, which is
right only when the channels are regrouped first).
"""

import numpy as np


def group_norm(x, num_groups, weight=None, bias=None, eps=1e-5):
    if x.shape[1] % num_groups != 0:
        raise ValueError(f"num_groups={num_groups} does not divide the {x.shape[1]} channels")
    n, c = x.shape[0], x.shape[1]
    per_chan = x.reshape(n, c, -1)
    mean = per_chan.mean(axis=-1, keepdims=True)
    var = per_chan.var(axis=-1, keepdims=True)
    y = ((per_chan - mean) / np.sqrt(var + eps)).reshape(x.shape)
    per_channel = (1, c) + (1,) * (x.ndim - 2)
    if weight is not None:
        y = y * weight.reshape(per_channel)
    if bias is not None:
        y = y + bias.reshape(per_channel)
    return y.astype(x.dtype, copy=False)
