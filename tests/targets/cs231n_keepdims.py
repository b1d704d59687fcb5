"""CS231n pair whose backward returns dgamma and dbeta of shape (1, C, 1, 1) instead of gamma's (C,)."""

from cs231n_good import spatial_groupnorm_backward as _backward
from cs231n_good import spatial_groupnorm_forward  # noqa: F401


def spatial_groupnorm_backward(dout, cache):
    dx, dgamma, dbeta = _backward(dout, cache)
    return dx, dgamma.reshape(1, -1, 1, 1), dbeta.reshape(1, -1, 1, 1)
