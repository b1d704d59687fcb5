"""Replaces gn_spec.group_norm at import time with its own function (tampering with the judge's reference,
which would matter if the reference ran in the target's process)."""

from hostile import good

import gn_spec

gn_spec.group_norm = good


def group_norm(x, num_groups, weight=None, bias=None, eps=1e-5):
    return good(x, num_groups, weight, bias, eps)
