"""Group normalization as a custom autograd.Function whose backward reuses forward intermediates.

Bug class: a first-order backward that is not itself differentiable. The forward stores the normalized
values and 1/std on ctx and the backward builds the (correct) first-order gradient from them. Those stored
tensors were computed without a graph, so when autograd differentiates the backward (double backward, e.g.
for a gradient penalty) their dependence on x is silently dropped: forward and first order conform, second
order does not.
Seen in: https://github.com/pytorch/pytorch/issues/58509 and https://github.com/pytorch/pytorch/issues/76185
(custom Function intermediates make double backward silently wrong).
"""

import torch


class _GroupNorm(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, num_groups, eps):
        n, c = x.shape[0], x.shape[1]
        g = x.reshape(n, num_groups, -1)
        mean = g.mean(dim=-1, keepdim=True)
        var = g.var(dim=-1, unbiased=False, keepdim=True)
        rstd = torch.rsqrt(var + eps)
        xhat = ((g - mean) * rstd).reshape(x.shape)
        per_channel = (1, c) + (1,) * (x.dim() - 2)
        y = xhat
        if weight is not None:
            y = y * weight.reshape(per_channel)
        if bias is not None:
            y = y + bias.reshape(per_channel)
        ctx.save_for_backward(weight)
        ctx.xhat, ctx.rstd, ctx.num_groups = xhat, rstd, num_groups
        ctx.has_bias = bias is not None
        return y

    @staticmethod
    def backward(ctx, dy):
        (weight,) = ctx.saved_tensors
        xhat, rstd, num_groups = ctx.xhat, ctx.rstd, ctx.num_groups
        n, c = dy.shape[0], dy.shape[1]
        per_channel = (1, c) + (1,) * (dy.dim() - 2)
        reduce_dims = [0] + list(range(2, dy.dim()))
        dxhat = dy * weight.reshape(per_channel) if weight is not None else dy
        dxg = dxhat.reshape(n, num_groups, -1)
        xg = xhat.reshape(n, num_groups, -1)
        dx = rstd * (dxg - dxg.mean(dim=-1, keepdim=True) - xg * (dxg * xg).mean(dim=-1, keepdim=True))
        dw = (dy * xhat).sum(dim=reduce_dims) if weight is not None else None
        db = dy.sum(dim=reduce_dims) if ctx.has_bias else None
        return dx.reshape(dy.shape), dw, db, None, None


def group_norm(x, num_groups, weight=None, bias=None, eps=1e-5):
    if x.shape[1] % num_groups != 0:
        raise ValueError(f"num_groups={num_groups} does not divide the {x.shape[1]} channels")
    return _GroupNorm.apply(x, weight, bias, num_groups, eps)
