"""A correct CS231n-style pair (numpy), gamma and beta of shape (C,)."""

import numpy as np


def spatial_groupnorm_forward(x, gamma, beta, G, gn_param):
    eps = gn_param.get("eps", 1e-5)
    n, c, h, w = x.shape
    if c % G:
        raise ValueError(f"G={G} does not divide C={c}")
    g = x.astype(np.float64).reshape(n, G, -1)
    mu = g.mean(axis=2, keepdims=True)
    r = 1.0 / np.sqrt(((g - mu) ** 2).mean(axis=2, keepdims=True) + eps)
    xhat = ((g - mu) * r).reshape(x.shape)
    out = xhat * gamma.reshape(1, c, 1, 1) + beta.reshape(1, c, 1, 1)
    return out.astype(x.dtype), (xhat, r, gamma, G, x.dtype)


def spatial_groupnorm_backward(dout, cache):
    xhat, r, gamma, G, dtype = cache
    n, c, h, w = dout.shape
    d = dout.astype(np.float64)
    dbeta = d.sum(axis=(0, 2, 3))
    dgamma = (d * xhat).sum(axis=(0, 2, 3))
    a = (d * gamma.reshape(1, c, 1, 1)).reshape(n, G, -1)
    xh = xhat.reshape(n, G, -1)
    dx = r * (a - a.mean(axis=2, keepdims=True) - xh * (a * xh).mean(axis=2, keepdims=True))
    return dx.reshape(dout.shape).astype(dtype), dgamma.astype(dtype), dbeta.astype(dtype)
