"""Group normalization with one scale and one shift per group, as ONNX GroupNormalization-18 specified.

Bug class: per-group affine parameters. The author followed the opset-18 text (scale and bias of shape
(num_groups,)) and applies weight[g], bias[g] to every channel of group g, ignoring the remaining entries of
the per-channel (C,) parameters PyTorch passes.
Seen in: https://github.com/onnx/onnx/issues/5466 (GroupNormalization-18 scale/bias per group, fixed to
per channel in opset 21).
"""

import numpy as np


def group_norm(x, num_groups, weight=None, bias=None, eps=1e-5):
    if x.shape[1] % num_groups != 0:
        raise ValueError(f"num_groups={num_groups} does not divide the {x.shape[1]} channels")
    n = x.shape[0]
    g = x.reshape(n, num_groups, -1)
    mean = g.mean(axis=-1, keepdims=True)
    var = g.var(axis=-1, keepdims=True)
    y = (g - mean) / np.sqrt(var + eps)
    if weight is not None:
        y = y * weight[:num_groups].reshape(1, num_groups, 1)
    if bias is not None:
        y = y + bias[:num_groups].reshape(1, num_groups, 1)
    return y.reshape(x.shape).astype(x.dtype, copy=False)
