"""Tier 3 of the reference, the exact tier: the blocks and channels the compiled tiers cannot certify.

The values come from the exact rational oracle, ``gn_spec.derivations.oracle`` (proved there), called on one
(sample, group) block at a time, or on one group of every sample for the per-channel sums. The oracle is
imported on first need: almost every call of the reference never reaches this tier. It takes finite blocks
only; the compiled tiers settle non-finite blocks themselves (their outputs are NaN) and never hand them on.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from gn_spec.reference.validate import Problem


def _oracle() -> Any:
    from gn_spec.derivations import oracle

    return oracle


def _channels(p: Problem, g: int) -> slice:
    """The channels of group g."""
    cpg = p.x4.shape[2]
    return slice(int(g) * cpg, (int(g) + 1) * cpg)


def _block(array: np.ndarray, n: int, g: int) -> np.ndarray:
    """Block (n, g) of a (N, G, cpg, S) array, as a (1, cpg, S) input for a one-group oracle call."""
    return array[int(n), int(g)][None]


def _group(array: np.ndarray, g: int) -> np.ndarray:
    """Group g of every sample, as an (N, cpg, S) input for a one-group oracle call."""
    return array[:, int(g)]


def forward(p: Problem, y: np.ndarray, blocks: Iterable[tuple[int, int]]) -> None:
    """y[n, g] = the exact forward of block (n, g), for each block given."""
    for n, g in blocks:
        ch = _channels(p, g)
        y[n, g] = _oracle().group_norm(_block(p.x4, n, g), 1, p.weight[ch], p.bias[ch], p.eps)[0]


def backward(p: Problem, dy: np.ndarray, dx: np.ndarray, blocks: Iterable[tuple[int, int]]) -> None:
    """dx[n, g] = the exact grad_input of block (n, g), for each block given."""
    for n, g in blocks:
        ch = _channels(p, g)
        exact = _oracle().group_norm_backward(_block(dy, n, g), _block(p.x4, n, g), 1, p.weight[ch], p.eps)
        dx[n, g] = exact[0][0]


def backward_channels(
    p: Problem, dy: np.ndarray, grad_weight: np.ndarray, grad_bias: np.ndarray, groups: Iterable[int]
) -> None:
    """grad_weight and grad_bias of every channel of each group given, exactly."""
    for g in groups:
        ch = _channels(p, g)
        exact = _oracle().group_norm_backward(_group(dy, g), _group(p.x4, g), 1, p.weight[ch], p.eps)
        grad_weight[ch] = exact[1]
        grad_bias[ch] = exact[2]


def double_backward(
    p: Problem,
    cotangents: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    ggo: np.ndarray,
    gx: np.ndarray,
    blocks: Iterable[tuple[int, int]],
) -> None:
    """ggo[n, g] and gx[n, g] exactly, for each block given; cotangents = (hh, ggw, ggb, dy)."""
    hh, ggw, ggb, dy = cotangents
    for n, g in blocks:
        ch = _channels(p, g)
        exact = _oracle().group_norm_double_backward(
            _block(hh, n, g), ggw[ch], ggb[ch], _block(dy, n, g), _block(p.x4, n, g), 1, p.weight[ch], p.eps
        )
        ggo[n, g] = exact[0][0]
        gx[n, g] = exact[1][0]


def double_backward_channels(
    p: Problem,
    cotangents: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    grad_weight: np.ndarray,
    groups: Iterable[int],
) -> None:
    """grad_weight of every channel of each group given, exactly; cotangents = (hh, ggw, ggb, dy)."""
    hh, ggw, ggb, dy = cotangents
    for g in groups:
        ch = _channels(p, g)
        exact = _oracle().group_norm_double_backward(
            _group(hh, g), ggw[ch], ggb[ch], _group(dy, g), _group(p.x4, g), 1, p.weight[ch], p.eps
        )
        grad_weight[ch] = exact[2]
