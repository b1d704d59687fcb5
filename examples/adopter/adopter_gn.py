"""A hand-written Group Normalization for torch, as a project adopting gn-spec would have one.

It is built from plain tensor operations (so autograd gives its first and second derivatives) and works in
the input's precision, except that 16-bit inputs are normalized in float32.  It conforms to gn-spec except
in one place, which ``deviations.toml`` declares: a bias without a weight is refused.
"""

import torch


def group_norm(x, num_groups, weight=None, bias=None, eps=1e-5):
    """y = (x - mean) / sqrt(var + eps) * weight + bias, mean and biased var over each (sample, group)."""
    if x.dim() < 2:
        raise ValueError(f"x must have at least 2 dimensions (N, C, ...), got shape {tuple(x.shape)}")
    n, c = x.shape[0], x.shape[1]
    if num_groups <= 0 or c % num_groups:
        raise ValueError(f"num_groups={num_groups} must be positive and divide the {c} channels")
    if bias is not None and weight is None:
        # The deliberate deviation: this project always pairs a bias with a weight.
        raise ValueError("bias without weight is not supported")
    work = x.to(torch.float32) if x.dtype in (torch.float16, torch.bfloat16) else x
    blocks = work.reshape(n, num_groups, -1)
    count = blocks.shape[-1]
    mean = blocks.sum(dim=-1, keepdim=True) / count
    centered = blocks - mean
    var = (centered * centered).sum(dim=-1, keepdim=True) / count
    y = (centered / torch.sqrt(var + eps)).reshape(x.shape)
    per_channel = (1, c) + (1,) * (x.dim() - 2)
    if weight is not None:
        y = y * weight.to(y.dtype).reshape(per_channel)
    if bias is not None:
        y = y + bias.to(y.dtype).reshape(per_channel)
    return y.to(x.dtype)
