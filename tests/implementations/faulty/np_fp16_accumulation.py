"""Group normalization that keeps its running sums in the input's half precision.

Bug class: float16 accumulation. Like a simple kernel whose accumulator register has the input's type, the
group sums are formed one element after another in float16 (a running sum), so once the partial sum is large
each new element is rounded away (a sum of 5000 ones comes out as 2048). Only shows at float16 with large
groups; check it at float16.
Seen in: https://github.com/pytorch/executorch/pull/16727 (group norm accumulating in the input dtype instead
of float32, diverging from ATen in fp16).
"""

import numpy as np


def _running_sum(a):
    # accumulate along the last axis in a's own dtype, element after element
    return np.cumsum(a, axis=-1, dtype=a.dtype)[..., -1:]


def group_norm(x, num_groups, weight=None, bias=None, eps=1e-5):
    if x.shape[1] % num_groups != 0:
        raise ValueError(f"num_groups={num_groups} does not divide the {x.shape[1]} channels")
    n, c = x.shape[0], x.shape[1]
    g = x.reshape(n, num_groups, -1)
    m = g.shape[-1]
    mean = _running_sum(g) / x.dtype.type(m)
    d = g - mean
    var = _running_sum(d * d) / x.dtype.type(m)
    y = (d / np.sqrt(var + x.dtype.type(eps))).reshape(x.shape)
    per_channel = (1, c) + (1,) * (x.ndim - 2)
    if weight is not None:
        y = y * weight.reshape(per_channel)
    if bias is not None:
        y = y + bias.reshape(per_channel)
    return y.astype(x.dtype, copy=False)
