"""The CS231n spatial group normalization pair built on a layer-norm forward/backward over (N * G) rows.

Group normalization of (N, C, H, W) is layer normalization of the (N * G, C // G * H * W) matrix followed by
a per-channel affine. The layer-norm backward uses the compact form, for each row of m values with
r = 1/sqrt(var + eps): dx = (r / m) * (m * dxhat - sum(dxhat) - xhat * sum(dxhat * xhat)).
"""

import numpy as np


def _layernorm_rows_forward(rows, eps):
    mu = rows.mean(axis=1, keepdims=True)
    var = rows.var(axis=1, keepdims=True)
    r = 1.0 / np.sqrt(var + eps)
    return (rows - mu) * r, r


def _layernorm_rows_backward(dxhat, xhat, r):
    m = xhat.shape[1]
    return (r / m) * (m * dxhat - dxhat.sum(axis=1, keepdims=True)
                      - xhat * (dxhat * xhat).sum(axis=1, keepdims=True))


def spatial_groupnorm_forward(x, gamma, beta, G, gn_param):
    if x.shape[1] % G != 0:
        raise ValueError(f"G={G} does not divide the {x.shape[1]} channels")
    eps = gn_param.get("eps", 1e-5)
    N, C, H, W = x.shape
    xhat_rows, r = _layernorm_rows_forward(x.reshape(N * G, -1), eps)
    x_hat = xhat_rows.reshape(N, C, H, W)
    out = x_hat * gamma.reshape(1, C, 1, 1) + beta.reshape(1, C, 1, 1)
    return out.astype(x.dtype, copy=False), (x_hat, r, gamma, G)


def spatial_groupnorm_backward(dout, cache):
    x_hat, r, gamma, G = cache
    N, C, H, W = dout.shape
    dbeta = dout.sum(axis=(0, 2, 3)).reshape(gamma.shape)
    dgamma = (dout * x_hat).sum(axis=(0, 2, 3)).reshape(gamma.shape)
    dxhat = (dout * gamma.reshape(1, C, 1, 1)).reshape(N * G, -1)
    dx = _layernorm_rows_backward(dxhat, x_hat.reshape(N * G, -1), r)
    return dx.reshape(N, C, H, W).astype(dout.dtype, copy=False), dgamma, dbeta
