"""Group normalization in PyTorch that runs in float32 "for speed" and casts back to the input's dtype.

Bug class: float64 input computed in float32. Forward and gradients of float64 input carry float32 rounding
errors. Check it at float64.
Seen in: https://github.com/google/flax/issues/612 (LayerNorm casts its input to float32 regardless of dtype).
"""

import torch


def group_norm(x, num_groups, weight=None, bias=None, eps=1e-5):
    if x.shape[1] % num_groups != 0:
        raise ValueError(f"num_groups={num_groups} does not divide the {x.shape[1]} channels")
    dtype = x.dtype
    xf = x.float()
    n, c = x.shape[0], x.shape[1]
    g = xf.reshape(n, num_groups, -1)
    mean = g.mean(dim=-1, keepdim=True)
    var = g.var(dim=-1, unbiased=False, keepdim=True)
    y = ((g - mean) * torch.rsqrt(var + eps)).reshape(x.shape)
    per_channel = (1, c) + (1,) * (x.dim() - 2)
    if weight is not None:
        y = y * weight.float().reshape(per_channel)
    if bias is not None:
        y = y + bias.float().reshape(per_channel)
    return y.to(dtype)
