"""Group normalization with a hand-written tree reduction that assumes power-of-two group sizes.

Bug class: non-power-of-two group sizes mishandled. The sum halves the group repeatedly, adding the second
half onto the first; when a level has an odd length its last element is silently dropped, so the mean and
variance are wrong unless the group size is a power of two.
Seen in: https://github.com/flagos-ai/FlagGems/issues/4984 (group_norm wrong when C // num_groups is not a
power of two).
"""

import numpy as np


def _tree_sum(a):
    while a.shape[-1] > 1:
        half = a.shape[-1] // 2
        a = a[..., :half] + a[..., half:2 * half]
    return a


def group_norm(x, num_groups, weight=None, bias=None, eps=1e-5):
    if x.shape[1] % num_groups != 0:
        raise ValueError(f"num_groups={num_groups} does not divide the {x.shape[1]} channels")
    n, c = x.shape[0], x.shape[1]
    g = x.reshape(n, num_groups, -1)
    m = g.shape[-1]
    mean = _tree_sum(g) / m
    d = g - mean
    var = _tree_sum(d * d) / m
    y = (d / np.sqrt(var + eps)).reshape(x.shape)
    per_channel = (1, c) + (1,) * (x.ndim - 2)
    if weight is not None:
        y = y * weight.reshape(per_channel)
    if bias is not None:
        y = y + bias.reshape(per_channel)
    return y.astype(x.dtype, copy=False)
