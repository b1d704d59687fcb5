"""CS231n spatial group normalization whose backward averages dgamma and dbeta over the batch.

Bug class: grad of weight/bias not summed over the batch. Each sample's contribution is summed over the
spatial positions but the batch is averaged (as if the parameters' gradient were a mean loss), so the
parameter gradients are N times too small. Right for N = 1 only.
Seen in: https://github.com/pytorch/pytorch/issues/140913 (GroupNorm weight gradient wrong while the input
gradient is right) and https://github.com/PaddlePaddle/Paddle/issues/54244 (GroupNorm weight grad wrong).
"""

import numpy as np


def spatial_groupnorm_forward(x, gamma, beta, G, gn_param):
    if x.shape[1] % G != 0:
        raise ValueError(f"G={G} does not divide the {x.shape[1]} channels")
    eps = gn_param.get("eps", 1e-5)
    N, C, H, W = x.shape
    xg = x.reshape(N, G, -1)
    mu = xg.mean(axis=2, keepdims=True)
    xc = xg - mu
    var = (xc * xc).mean(axis=2, keepdims=True)
    rstd = 1.0 / np.sqrt(var + eps)
    x_hat = (xc * rstd).reshape(N, C, H, W)
    out = gamma.reshape(1, C, 1, 1) * x_hat + beta.reshape(1, C, 1, 1)
    cache = (x_hat, rstd, gamma, G)
    return out.astype(x.dtype, copy=False), cache


def spatial_groupnorm_backward(dout, cache):
    x_hat, rstd, gamma, G = cache
    N, C, H, W = dout.shape
    dgamma = np.sum(dout * x_hat, axis=(2, 3)).mean(axis=0).reshape(gamma.shape)
    dbeta = np.sum(dout, axis=(2, 3)).mean(axis=0).reshape(gamma.shape)
    dxhat = (dout * gamma.reshape(1, C, 1, 1)).reshape(N, G, -1)
    xh = x_hat.reshape(N, G, -1)
    dx = rstd * (dxhat - dxhat.mean(axis=2, keepdims=True) - xh * (dxhat * xh).mean(axis=2, keepdims=True))
    return dx.reshape(N, C, H, W).astype(dout.dtype, copy=False), dgamma, dbeta
