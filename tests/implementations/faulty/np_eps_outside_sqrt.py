"""Group normalization that adds eps to the standard deviation.

Bug class: eps outside the square root, y = (x - mu) / (sqrt(var) + eps). It agrees with GN only when eps
is negligible next to sqrt(var); for variance comparable to eps, or constant groups, the scale is wrong.
Seen in: https://github.com/taokong/group_normalization/issues/1 (eps added to the std, not the variance).
"""


def group_norm(x, num_groups, weight=None, bias=None, eps=1e-5):
    if x.shape[1] % num_groups != 0:
        raise ValueError(f"num_groups={num_groups} does not divide the {x.shape[1]} channels")
    n, c = x.shape[0], x.shape[1]
    g = x.reshape(n, num_groups, -1)
    mean = g.mean(axis=-1, keepdims=True)
    std = g.std(axis=-1, keepdims=True)
    y = ((g - mean) / (std + eps)).reshape(x.shape)
    per_channel = (1, c) + (1,) * (x.ndim - 2)
    if weight is not None:
        y = y * weight.reshape(per_channel)
    if bias is not None:
        y = y + bias.reshape(per_channel)
    return y.astype(x.dtype, copy=False)
