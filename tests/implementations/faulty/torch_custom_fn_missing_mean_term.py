"""Group normalization as a custom autograd.Function whose hand-derived backward drops the mean term.

Bug class: backward missing the mean term. The gradient of x should be
r * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat)) per group; this backward leaves out -mean(dxhat), the
path through the group mean, so grad_input no longer sums to zero over a group.
Seen in: https://github.com/mlpack/mlpack/pull/2474 (a batch-norm backward step missing one of its terms)
and https://github.com/AlexeyAB/darknet/issues/4605 (mean_delta missing part of its gradient).
"""

import torch


class _GroupNorm(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, num_groups, eps):
        ctx.save_for_backward(x, weight)
        ctx.num_groups, ctx.eps, ctx.has_bias = num_groups, eps, bias is not None
        n, c = x.shape[0], x.shape[1]
        g = x.reshape(n, num_groups, -1)
        mean = g.mean(dim=-1, keepdim=True)
        var = g.var(dim=-1, unbiased=False, keepdim=True)
        y = ((g - mean) * torch.rsqrt(var + eps)).reshape(x.shape)
        per_channel = (1, c) + (1,) * (x.dim() - 2)
        if weight is not None:
            y = y * weight.reshape(per_channel)
        if bias is not None:
            y = y + bias.reshape(per_channel)
        return y

    @staticmethod
    def backward(ctx, dy):
        x, weight = ctx.saved_tensors
        num_groups = ctx.num_groups
        n, c = x.shape[0], x.shape[1]
        per_channel = (1, c) + (1,) * (x.dim() - 2)
        reduce_dims = [0] + list(range(2, x.dim()))
        g = x.reshape(n, num_groups, -1)
        mean = g.mean(dim=-1, keepdim=True)
        rstd = torch.rsqrt(g.var(dim=-1, unbiased=False, keepdim=True) + ctx.eps)
        xg = (g - mean) * rstd
        dxhat = dy * weight.reshape(per_channel) if weight is not None else dy
        dxg = dxhat.reshape(n, num_groups, -1)
        dx = rstd * (dxg - xg * (dxg * xg).mean(dim=-1, keepdim=True))
        xhat = xg.reshape(x.shape)
        dw = (dy * xhat).sum(dim=reduce_dims) if weight is not None else None
        db = dy.sum(dim=reduce_dims) if ctx.has_bias else None
        return dx.reshape(x.shape), dw, db, None, None


def group_norm(x, num_groups, weight=None, bias=None, eps=1e-5):
    if x.shape[1] % num_groups != 0:
        raise ValueError(f"num_groups={num_groups} does not divide the {x.shape[1]} channels")
    return _GroupNorm.apply(x, weight, bias, num_groups, eps)
