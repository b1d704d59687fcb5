"""Group normalization as a custom autograd.Function whose backward is itself differentiable.

The forward saves only its inputs (x, weight). The backward recomputes the statistics from the saved x with
ordinary differentiable ops and returns, per group with r = 1/sqrt(var + eps), xhat = (x - mean) * r and
dxhat = dy * weight: dx = r * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat)), dweight = sum(dy * xhat),
dbias = sum(dy) over the batch and the spatial positions. Because nothing computed without a graph enters
the backward, autograd differentiates it correctly for the double backward.
"""

import torch


def _normalize(x, num_groups, eps):
    n = x.shape[0]
    g = x.reshape(n, num_groups, -1)
    dev = g - g.mean(dim=-1, keepdim=True)  # two passes of Tensor.mean (cascaded sums), not torch.var_mean
    rstd = torch.rsqrt((dev * dev).mean(dim=-1, keepdim=True) + eps)
    return dev * rstd, rstd


class _GroupNorm(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, num_groups, eps):
        ctx.save_for_backward(x, weight)
        ctx.num_groups, ctx.eps, ctx.has_bias = num_groups, eps, bias is not None
        xhat, _ = _normalize(x, num_groups, eps)
        y = xhat.reshape(x.shape)
        per_channel = (1, x.shape[1]) + (1,) * (x.dim() - 2)
        if weight is not None:
            y = y * weight.reshape(per_channel)
        if bias is not None:
            y = y + bias.reshape(per_channel)
        return y

    @staticmethod
    def backward(ctx, dy):
        x, weight = ctx.saved_tensors
        n, c = x.shape[0], x.shape[1]
        per_channel = (1, c) + (1,) * (x.dim() - 2)
        reduce_dims = [0] + list(range(2, x.dim()))
        xg, rstd = _normalize(x, ctx.num_groups, ctx.eps)
        dxhat = dy * weight.reshape(per_channel) if weight is not None else dy
        dxg = dxhat.reshape(n, ctx.num_groups, -1)
        dx = rstd * (dxg - dxg.mean(dim=-1, keepdim=True) - xg * (dxg * xg).mean(dim=-1, keepdim=True))
        xhat = xg.reshape(x.shape)
        dw = (dy * xhat).sum(dim=reduce_dims) if weight is not None else None
        db = dy.sum(dim=reduce_dims) if ctx.has_bias else None
        return dx.reshape(x.shape), dw, db, None, None


def group_norm(x, num_groups, weight=None, bias=None, eps=1e-5):
    if x.shape[1] % num_groups != 0:
        raise ValueError(f"num_groups={num_groups} does not divide the {x.shape[1]} channels")
    return _GroupNorm.apply(x, weight, bias, num_groups, eps)
