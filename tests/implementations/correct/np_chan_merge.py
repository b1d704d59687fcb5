"""Group normalization with Welford-style statistics merged pairwise (Chan, Golub and LeVeque), in x.dtype.

Every element starts as a partial result (count 1, mean x_i, M2 0); neighbouring partials are merged level
by level with count = na + nb, delta = mean_b - mean_a, mean = mean_a + delta * nb / count,
M2 = M2_a + M2_b + delta^2 * na * nb / count, until one partial per group is left. The merge tree has depth
ceil(log2(m)), so rounding errors grow like log2 of the group size, as in pairwise summation.
"""

import numpy as np


def _merge_level(count, mean, m2):
    k = mean.shape[-1]
    pairs = k // 2
    ca, cb = count[: 2 * pairs : 2], count[1 : 2 * pairs : 2]
    ma, mb = mean[..., : 2 * pairs : 2], mean[..., 1 : 2 * pairs : 2]
    qa, qb = m2[..., : 2 * pairs : 2], m2[..., 1 : 2 * pairs : 2]
    total = ca + cb
    delta = mb - ma
    merged_mean = ma + delta * (cb / total)
    merged_m2 = qa + qb + delta * delta * (ca * cb / total)
    if k % 2:
        total = np.concatenate([total, count[-1:]])
        merged_mean = np.concatenate([merged_mean, mean[..., -1:]], axis=-1)
        merged_m2 = np.concatenate([merged_m2, m2[..., -1:]], axis=-1)
    return total, merged_mean, merged_m2


def group_norm(x, num_groups, weight=None, bias=None, eps=1e-5):
    if x.shape[1] % num_groups != 0:
        raise ValueError(f"num_groups={num_groups} does not divide the {x.shape[1]} channels")
    n, c = x.shape[0], x.shape[1]
    g = x.reshape(n, num_groups, -1)
    m = g.shape[-1]
    count = np.ones(m, dtype=x.dtype)
    mean, m2 = g.copy(), np.zeros_like(g)
    while mean.shape[-1] > 1:
        count, mean, m2 = _merge_level(count, mean, m2)
    var = m2 / x.dtype.type(m)
    y = ((g - mean) / np.sqrt(var + x.dtype.type(eps))).reshape(x.shape)
    per_channel = (1, c) + (1,) * (x.ndim - 2)
    if weight is not None:
        y = y * weight.reshape(per_channel)
    if bias is not None:
        y = y + bias.reshape(per_channel)
    return y.astype(x.dtype, copy=False)
