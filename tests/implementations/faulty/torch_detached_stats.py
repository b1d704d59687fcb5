"""Group normalization in PyTorch that detaches the group statistics "for stability".

Bug class: gradient through the statistics severed. The forward output is right, but mean and variance are
treated as constants by autograd, so grad_input lacks the terms that flow through them (it should sum to
zero over each group and be orthogonal to the normalized values; it does neither).
Seen in: https://github.com/abhiskk/ladder/issues/2 (variance computed detached from the graph breaks the
backward pass of a normalization).
"""

import torch


def group_norm(x, num_groups, weight=None, bias=None, eps=1e-5):
    if x.shape[1] % num_groups != 0:
        raise ValueError(f"num_groups={num_groups} does not divide the {x.shape[1]} channels")
    n, c = x.shape[0], x.shape[1]
    g = x.reshape(n, num_groups, -1)
    mean = g.mean(dim=-1, keepdim=True).detach()
    var = g.var(dim=-1, unbiased=False, keepdim=True).detach()
    y = ((g - mean) / torch.sqrt(var + eps)).reshape(x.shape)
    per_channel = (1, c) + (1,) * (x.dim() - 2)
    if weight is not None:
        y = y * weight.reshape(per_channel)
    if bias is not None:
        y = y + bias.reshape(per_channel)
    return y
