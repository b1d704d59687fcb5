"""Tampers on its first call rather than at import: rebinds numpy.allclose to always say True."""

import numpy as np
from hostile import good


def group_norm(x, num_groups, weight=None, bias=None, eps=1e-5):
    np.allclose = lambda *args, **kwargs: True
    return good(x, num_groups, weight, bias, eps)
