"""Group normalization written with explicit loops over samples and groups, as in a textbook.

For each sample n and group g, the block x[n, g*k:(g+1)*k] (k = C // G channels with all their spatial
positions) is normalized by its own mean and biased variance; then the per-channel affine is applied.
"""

import numpy as np


def group_norm(x, num_groups, weight=None, bias=None, eps=1e-5):
    if x.shape[1] % num_groups != 0:
        raise ValueError(f"num_groups={num_groups} does not divide the {x.shape[1]} channels")
    n_samples, c = x.shape[0], x.shape[1]
    k = c // num_groups
    out = np.empty_like(x)
    for n in range(n_samples):
        for g in range(num_groups):
            block = x[n, g * k:(g + 1) * k]
            mean = block.mean()
            var = block.var()
            out[n, g * k:(g + 1) * k] = (block - mean) / np.sqrt(var + eps)
    per_channel = (1, c) + (1,) * (x.ndim - 2)
    if weight is not None:
        out = out * weight.reshape(per_channel)
    if bias is not None:
        out = out + bias.reshape(per_channel)
    return out.astype(x.dtype, copy=False)
