"""How Group Normalization cuts its input into blocks, and the two views of x by block.

For x of shape (N, C, *spatial) and G groups, block (n, g) holds the m = (C/G) * S values of channels
g*C/G .. (g+1)*C/G - 1 of sample n, S = prod(spatial) (1 for 2-D input).  This module is the one place that
cut is written down; the reference, the error model, the variants and the properties all view x through it:

- :func:`blocks`: x as (N, G, C/G, S), keeping the channel axis inside a group (per-channel parameters
  broadcast as (1, G, C/G, 1), per-channel sums reduce axes 0 and 3);
- :func:`block_rows`: x as (N, G, m), one row per block (per-block reductions over the last axis).

Both are ``x.reshape``: a view when x is contiguous (the reference's compiled kernels take the contiguous
float64 view of :func:`blocks`), with x's dtype kept.  Numpy only, so that every layer can import it.
"""

from __future__ import annotations

import math

import numpy as np


def group_shape(shape: tuple[int, ...], num_groups: int) -> tuple[int, int, int, int]:
    """(N, G, C/G, S) for an input of ``shape`` (N, C, *spatial); a ValueError names a bad shape or G."""
    if len(shape) < 2 or num_groups < 1 or shape[1] % num_groups:
        raise ValueError(f"num_groups={num_groups} does not divide C of the input shape {tuple(shape)}")
    return (int(shape[0]), int(num_groups), int(shape[1]) // num_groups, math.prod(int(s) for s in shape[2:]))


def blocks(x: np.ndarray, num_groups: int) -> np.ndarray:
    """x (N, C, *spatial) viewed as (N, G, C/G, S)."""
    return x.reshape(group_shape(x.shape, num_groups))


def block_rows(x: np.ndarray, num_groups: int) -> np.ndarray:
    """x (N, C, *spatial) viewed as (N, G, m): one row of m = (C/G) * S values per (sample, group) block."""
    n, g, k, s = group_shape(x.shape, num_groups)
    return x.reshape(n, g, k * s)
