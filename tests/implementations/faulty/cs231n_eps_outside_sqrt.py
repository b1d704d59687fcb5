"""CS231n spatial group normalization that adds eps to the standard deviation.

Bug class: eps outside the square root, xhat = (x - mu) / (sqrt(var) + eps), in forward and backward.
Seen in: https://github.com/keras-team/keras/pull/8726 (epsilon moved between the variance and the
denominator) and https://github.com/taokong/group_normalization/issues/1.
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
    rstd = 1.0 / (np.sqrt(var) + eps)
    x_hat = (xc * rstd).reshape(N, C, H, W)
    out = gamma.reshape(1, C, 1, 1) * x_hat + beta.reshape(1, C, 1, 1)
    cache = (x_hat, rstd, gamma, G)
    return out.astype(x.dtype, copy=False), cache


def spatial_groupnorm_backward(dout, cache):
    x_hat, rstd, gamma, G = cache
    N, C, H, W = dout.shape
    dgamma = np.sum(dout * x_hat, axis=(0, 2, 3)).reshape(gamma.shape)
    dbeta = np.sum(dout, axis=(0, 2, 3)).reshape(gamma.shape)
    dxhat = (dout * gamma.reshape(1, C, 1, 1)).reshape(N, G, -1)
    xh = x_hat.reshape(N, G, -1)
    dx = rstd * (dxhat - dxhat.mean(axis=2, keepdims=True) - xh * (dxhat * xh).mean(axis=2, keepdims=True))
    return dx.reshape(N, C, H, W).astype(dout.dtype, copy=False), dgamma, dbeta
