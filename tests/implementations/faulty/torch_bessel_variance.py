"""Group normalization in PyTorch that calls Tensor.var with its default settings.

Bug class: Bessel-corrected variance. torch.var defaults to the unbiased estimate (dividing by m - 1), so
the output is scaled by sqrt((m - 1) / m) and one-element groups give NaN.
Seen in: https://github.com/pytorch/pytorch/issues/22617 (a manual GroupNorm built on torch.var disagrees
with nn.GroupNorm).
"""

import torch


def group_norm(x, num_groups, weight=None, bias=None, eps=1e-5):
    if x.shape[1] % num_groups != 0:
        raise ValueError(f"num_groups={num_groups} does not divide the {x.shape[1]} channels")
    n, c = x.shape[0], x.shape[1]
    g = x.reshape(n, num_groups, -1)
    mean = g.mean(dim=-1, keepdim=True)
    var = g.var(dim=-1, keepdim=True)
    y = ((g - mean) / torch.sqrt(var + eps)).reshape(x.shape)
    per_channel = (1, c) + (1,) * (x.dim() - 2)
    if weight is not None:
        y = y * weight.reshape(per_channel)
    if bias is not None:
        y = y + bias.reshape(per_channel)
    return y
