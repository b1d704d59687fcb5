"""Group normalization from elementary PyTorch ops, differentiated (to any order) by autograd.

x is viewed as (N, G, -1); per row, the mean and then the mean of the squared deviations (two passes, both
by Tensor.mean, whose cascaded summation keeps the error growing like log2 of the group size; torch.var_mean
accumulates sequentially and is far less accurate for large float64 groups); y = (x - mean) * rsqrt(var + eps)
reshaped back, then the per-channel affine. Every step is a differentiable op, so autograd produces the
backward and the double backward.
"""

import torch


def group_norm(x, num_groups, weight=None, bias=None, eps=1e-5):
    if x.shape[1] % num_groups != 0:
        raise ValueError(f"num_groups={num_groups} does not divide the {x.shape[1]} channels")
    n, c = x.shape[0], x.shape[1]
    g = x.reshape(n, num_groups, -1)
    dev = g - g.mean(dim=-1, keepdim=True)
    var = (dev * dev).mean(dim=-1, keepdim=True)
    y = (dev * torch.rsqrt(var + eps)).reshape(x.shape)
    per_channel = (1, c) + (1,) * (x.dim() - 2)
    if weight is not None:
        y = y * weight.reshape(per_channel)
    if bias is not None:
        y = y + bias.reshape(per_channel)
    return y
