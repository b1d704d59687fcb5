"""A target whose defect shows only on large groups: correct, but off by 0.5 when a group holds 64 or more
values (the final minimal-shape pass must report a group of exactly 64 when it can)."""

from __future__ import annotations

import numpy as np
from hangs import _two_pass


def wrong_from_m_64(x, num_groups, weight, bias, eps):  # noqa: ANN001, ANN201
    y = _two_pass(x, num_groups, weight, bias, eps)
    m = x.size // (x.shape[0] * num_groups) if x.size else 0
    return (y + np.asarray(0.5, y.dtype)) if m >= 64 else y
