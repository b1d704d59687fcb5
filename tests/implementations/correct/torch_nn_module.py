"""torch.nn.GroupNorm wrapped as a function with PyTorch's functional signature.

The module is built for the input's channel count and dtype; the caller's weight and bias are substituted
for the module's parameters with torch.func.functional_call, so gradients reach them. A missing weight or
bias is replaced by ones or zeros, which is what the module computes without them.
"""

import torch
from torch.func import functional_call


def group_norm(x, num_groups, weight=None, bias=None, eps=1e-5):
    if x.shape[1] % num_groups != 0:
        raise ValueError(f"num_groups={num_groups} does not divide the {x.shape[1]} channels")
    c = x.shape[1]
    module = torch.nn.GroupNorm(num_groups, c, eps=eps, affine=True, device=x.device, dtype=x.dtype)
    params = {
        "weight": weight if weight is not None else torch.ones(c, dtype=x.dtype, device=x.device),
        "bias": bias if bias is not None else torch.zeros(c, dtype=x.dtype, device=x.device),
    }
    return functional_call(module, params, (x,))
