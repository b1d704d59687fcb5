"""Group normalization in PyTorch that works on a channels-last view and groups it with a plain reshape.

Bug class: channels-last reshape without the permute. x.movedim(1, -1) gives (N, *spatial, C); reshaping
that to (N, G, -1) slices along the spatial axes, so every "group" mixes all channels.
Seen in: https://github.com/tensorflow/addons/issues/751 (NHWC reshaped into groups without the transpose).
"""

import torch


def group_norm(x, num_groups, weight=None, bias=None, eps=1e-5):
    if x.shape[1] % num_groups != 0:
        raise ValueError(f"num_groups={num_groups} does not divide the {x.shape[1]} channels")
    n = x.shape[0]
    nhwc = x.movedim(1, -1)
    g = nhwc.reshape(n, num_groups, -1)
    mean = g.mean(dim=-1, keepdim=True)
    var = g.var(dim=-1, unbiased=False, keepdim=True)
    y = ((g - mean) * torch.rsqrt(var + eps)).reshape(nhwc.shape)
    if weight is not None:
        y = y * weight
    if bias is not None:
        y = y + bias
    return y.movedim(-1, 1)
