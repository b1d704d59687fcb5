"""A torch target whose forward is torch's and whose backward raises without touching any input."""

import torch


class _RaisingBackward(torch.autograd.Function):
    @staticmethod
    def forward(ctx, y):
        return y.clone()

    @staticmethod
    def backward(ctx, grad):
        raise RuntimeError("this backward is not implemented")


def group_norm(x, num_groups, weight=None, bias=None, eps=1e-5):
    return _RaisingBackward.apply(torch.nn.functional.group_norm(x, num_groups, weight, bias, eps))
