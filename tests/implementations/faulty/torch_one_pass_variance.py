"""Group normalization in PyTorch with the one-pass variance E[x^2] - E[x]^2, as fused kernels often do.

Bug class: one-pass variance in working precision. Catastrophic cancellation when |mean| >> std; the
variance can come out negative (NaN) or zero.
Seen in: https://github.com/pytorch/executorch/pull/16727 (portable group_norm computing Var[x] as
E[x^2] - E[x]^2) and https://github.com/openvinotoolkit/openvino/pull/36587 (review: one-pass variance
cancels in float32).
"""

import torch


def group_norm(x, num_groups, weight=None, bias=None, eps=1e-5):
    if x.shape[1] % num_groups != 0:
        raise ValueError(f"num_groups={num_groups} does not divide the {x.shape[1]} channels")
    n, c = x.shape[0], x.shape[1]
    g = x.reshape(n, num_groups, -1)
    mean = g.mean(dim=-1, keepdim=True)
    var = (g * g).mean(dim=-1, keepdim=True) - mean * mean
    y = ((g - mean) * torch.rsqrt(var + eps)).reshape(x.shape)
    per_channel = (1, c) + (1,) * (x.dim() - 2)
    if weight is not None:
        y = y * weight.reshape(per_channel)
    if bias is not None:
        y = y + bias.reshape(per_channel)
    return y
