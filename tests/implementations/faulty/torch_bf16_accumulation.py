"""Group normalization in PyTorch written like a blocked GPU kernel whose accumulators have the input's type.

Bug class: bfloat16/float16 accumulation. Each of 128 lanes keeps a running sum of its share of the group in
x.dtype, block after block (as `acc = tl.zeros([BLOCK], dtype=x.dtype)` would in Triton), and the lanes are
added at the end. With bfloat16's 8-bit significand, a lane that adds more than a few dozen blocks loses the
small contributions, so large groups get wrong statistics. float32 input is fine; check it at bfloat16.
Seen in: https://github.com/pytorch/executorch/pull/16727 (norms accumulating in the input dtype diverge
from ATen, which accumulates in float32) and https://github.com/kakaobrain/trident/pull/35 (a Triton
GroupNorm inaccurate in float16).
"""

import torch
import torch.nn.functional as F

LANES = 128


def _lane_sum(a):
    m = a.shape[-1]
    a = F.pad(a, (0, (-m) % LANES))
    blocks = a.reshape(a.shape[0], a.shape[1], -1, LANES)
    acc = torch.zeros_like(blocks[:, :, 0, :])
    for i in range(blocks.shape[2]):
        acc = acc + blocks[:, :, i, :]
    return acc.sum(dim=-1, keepdim=True)


def group_norm(x, num_groups, weight=None, bias=None, eps=1e-5):
    if x.shape[1] % num_groups != 0:
        raise ValueError(f"num_groups={num_groups} does not divide the {x.shape[1]} channels")
    n, c = x.shape[0], x.shape[1]
    g = x.reshape(n, num_groups, -1)
    m = g.shape[-1]
    mean = _lane_sum(g) / m
    d = g - mean
    var = _lane_sum(d * d) / m
    y = (d * torch.rsqrt(var + eps)).reshape(x.shape)
    per_channel = (1, c) + (1,) * (x.dim() - 2)
    if weight is not None:
        y = y * weight.reshape(per_channel)
    if bias is not None:
        y = y + bias.reshape(per_channel)
    return y
