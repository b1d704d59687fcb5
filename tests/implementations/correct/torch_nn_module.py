"""torch.nn.GroupNorm wrapped as a function with PyTorch's functional signature.

The module is built for the input's channel count and dtype; the caller's weight and bias are substituted
for the module's parameters with torch.func.functional_call, so gradients reach them. A missing weight or
bias is replaced by ones or zeros, which is what the module computes without them.

One case is computed here instead: PyTorch refuses a batch of one sample whose groups hold one value each
(ValueError "Expected more than 1 value per channel when training"), although GN is defined there. Each value
is then its own group's mean, so xhat = (x - x) / sqrt(0 + eps) = 0 (NaN for eps = 0 or a non-finite x, as
the spec has it) and y = bias; writing it as (x - x) keeps autograd's gradients (zero for x) intact.
"""

import torch
from torch.func import functional_call


def group_norm(x, num_groups, weight=None, bias=None, eps=1e-5):
    c = x.shape[1]
    if c % num_groups != 0:
        raise ValueError(f"num_groups={num_groups} does not divide the {x.shape[1]} channels")
    ones = torch.ones(c, dtype=x.dtype, device=x.device)
    w = weight if weight is not None else ones
    b = bias if bias is not None else torch.zeros(c, dtype=x.dtype, device=x.device)
    if x.shape[0] == 1 and x[0].numel() == num_groups:
        per_channel = (1, c) + (1,) * (x.dim() - 2)
        # rsqrt(0) = inf for eps = 0, and 0 * inf = NaN
        rstd = torch.rsqrt(torch.tensor(eps, dtype=x.dtype, device=x.device))
        return (x - x) * rstd * w.reshape(per_channel) + b.reshape(per_channel)
    module = torch.nn.GroupNorm(num_groups, c, eps=eps, affine=True, device=x.device, dtype=x.dtype)
    return functional_call(module, {"weight": w, "bias": b}, (x,))
