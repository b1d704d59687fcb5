"""torch-API targets: a correct one written with torch operations, and broken ones."""

import numpy as np
import torch


def good(x, num_groups, weight=None, bias=None, eps=1e-5):
    """Correct: two passes in the input's precision (float32 for 16-bit inputs), autograd-differentiable."""
    n, c = x.shape[0], x.shape[1]
    if c % num_groups:
        raise ValueError(f"num_groups={num_groups} does not divide C={c}")
    work = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
    g = work.reshape(n, num_groups, -1)
    mean = g.mean(dim=-1, keepdim=True)
    d = g - mean
    var = (d * d).mean(dim=-1, keepdim=True)
    y = (d * torch.rsqrt(var + eps)).reshape(x.shape)
    shape = (1, c) + (1,) * (x.dim() - 2)
    if weight is not None:
        y = y * weight.to(y.dtype).reshape(shape)
    if bias is not None:
        y = y + bias.to(y.dtype).reshape(shape)
    return y.to(x.dtype)


def returns_ndarray(x, num_groups, weight=None, bias=None, eps=1e-5):
    """Computes correctly but returns a numpy array, which autograd cannot differentiate."""
    return good(x, num_groups, weight, bias, eps).detach().cpu().numpy()


def complex_output(x, num_groups, weight=None, bias=None, eps=1e-5):
    """Returns a complex tensor."""
    return good(x, num_groups, weight, bias, eps).to(torch.complex64)


def segfault_in_backward(x, num_groups, weight=None, bias=None, eps=1e-5):
    """Forward is right; the backward pass kills the process."""

    class Crash(torch.autograd.Function):
        @staticmethod
        def forward(ctx, t):
            return t.clone()

        @staticmethod
        def backward(ctx, g):
            import ctypes

            ctypes.string_at(0)
            return g

    return Crash.apply(good(x, num_groups, weight, bias, eps))


_ = np  # numpy stays imported: the worker's tamper check must not mind a target that imports it
