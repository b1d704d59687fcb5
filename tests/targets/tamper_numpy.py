"""Imports fine and computes correctly, but replaces numpy.mean at import time (tampering)."""

import numpy as np

_original_mean = np.mean


def _mean(*args, **kwargs):
    return _original_mean(*args, **kwargs)


np.mean = _mean


def group_norm(x, num_groups, weight=None, bias=None, eps=1e-5):
    from hostile import good

    return good(x, num_groups, weight, bias, eps)
