"""torch.nn.GroupNorm wrapped as a function with PyTorch's functional signature, and nothing else.

Bug class: an exception on valid input, inherited from the framework. torch.nn.functional.group_norm refuses a
batch of one sample whose groups hold one value each (ValueError "Expected more than 1 value per channel
when training"), e.g. x of shape (1, C) or (1, C, 1, 1) with num_groups = C. GN is defined there (every value
is its group's mean, so the output is the bias); correct/torch_nn_module.py computes that case itself.
Seen in: https://github.com/pytorch/pytorch/issues/19250 (the request that normalization over a single
element should raise, as BatchNorm does) and https://github.com/ZwwWayne/mmMOT/issues/38 (the error hit by a
model with GroupNorm at batch size 1).
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
