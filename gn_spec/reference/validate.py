"""Argument checking for the reference: every bad input gets an error that names the offending value.

``as_real_array`` is also the exact oracle's input conversion (``gn_spec.derivations.oracle``), which adds
only its own refusal of non-finite values.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Any

import numpy as np

from gn_spec import layout

# The float formats whose every value float64 holds exactly.
_EXACT_FLOATS = (np.float16, np.float32, np.float64)


def as_real_array(value: Any, name: str) -> np.ndarray:
    """``value`` as a float64 array holding exactly the same numbers, or a TypeError naming what is wrong.

    Accepts numpy arrays (and anything ``np.asarray`` takes, CPU torch tensors included) of float16, float32
    or float64; a longdouble array only when every value converts to float64 exactly.
    """
    if hasattr(value, "detach") and hasattr(value, "cpu"):  # a torch tensor, possibly requiring grad
        value = value.detach().cpu()
        if str(getattr(value, "dtype", "")) == "torch.bfloat16":
            value = value.float()
        value = value.numpy()
    try:
        arr = np.asarray(value)
    except Exception as exc:  # noqa: BLE001 - any conversion failure is the caller's bad input
        raise TypeError(
            f"{name} must be a real floating-point array, got {type(value).__name__}: {exc}"
        ) from None
    if arr.dtype == np.bool_:
        raise TypeError(f"{name} has dtype bool; gn-spec takes float16, float32 or float64 arrays")
    if np.issubdtype(arr.dtype, np.integer):
        raise TypeError(
            f"{name} has integer dtype {arr.dtype}; convert it to a floating dtype first "
            "(group normalization of integers is not defined by this spec)"
        )
    if np.issubdtype(arr.dtype, np.complexfloating):
        raise TypeError(
            f"{name} has complex dtype {arr.dtype}; group normalization is defined for real input"
        )
    if not np.issubdtype(arr.dtype, np.floating):
        raise TypeError(f"{name} has dtype {arr.dtype}; gn-spec takes float16, float32 or float64 arrays")
    if arr.dtype.type in _EXACT_FLOATS:
        return np.ascontiguousarray(arr, dtype=np.float64)
    converted = arr.astype(np.float64)
    both = np.isfinite(arr) & np.isfinite(converted)
    if not np.array_equal(converted[both].astype(arr.dtype), arr[both]):
        raise TypeError(f"{name} has dtype {arr.dtype} with values that float64 cannot hold exactly")
    return np.ascontiguousarray(converted)


def check_eps(eps: Any) -> float:
    """eps as a float: a real, finite, non-negative number."""
    if isinstance(eps, bool) or not isinstance(eps, numbers.Real):
        raise TypeError(f"eps must be a real number, got {eps!r} of type {type(eps).__name__}")
    value = float(eps)
    if not np.isfinite(value):
        raise ValueError(f"eps={eps!r} is not finite")
    if value < 0:
        raise ValueError(f"eps={eps!r} is negative; eps must be >= 0")
    return value


@dataclass(frozen=True)
class Problem:
    """A validated call: x as float64, per-channel affine as float64 (C,), eps.

    ``x4`` is the contiguous float64 x viewed (N, G, C/G, S) by :func:`gn_spec.layout.blocks`, the array the
    compiled kernels take.
    """

    shape: tuple[int, ...]
    num_groups: int
    x4: np.ndarray
    weight: np.ndarray
    bias: np.ndarray
    eps: float

    @property
    def channels(self) -> int:
        return self.shape[1]


def _check_shape(shape: tuple[int, ...], num_groups: Any) -> int:
    if len(shape) < 2:
        raise ValueError(
            f"input shape {shape} has {len(shape)} dims; group normalization needs (N, C, *spatial) with >= 2"
        )
    if isinstance(num_groups, bool) or not isinstance(num_groups, numbers.Integral):
        raise TypeError(f"num_groups must be a positive integer, got {num_groups!r}")
    groups = int(num_groups)
    if groups < 1:
        raise ValueError(f"num_groups={groups} must be a positive integer")
    channels = shape[1]
    if channels < 1:
        raise ValueError(f"C={channels} channels (input shape {shape}); group normalization needs C >= 1")
    if channels % groups:
        raise ValueError(f"num_groups={groups} does not divide C={channels} (input shape {shape})")
    for axis, size in enumerate(shape[2:], start=2):
        if size == 0:
            raise ValueError(f"input shape {shape} has a zero-size spatial extent (dim {axis})")
    return groups


def _per_channel(value: Any, name: str, channels: int, default: float) -> np.ndarray:
    if value is None:
        return np.full(channels, default)
    arr = as_real_array(value, name)
    if arr.shape != (channels,):
        raise ValueError(
            f"{name} has shape {arr.shape}; it must have shape ({channels},) (one value per channel)"
        )
    return arr


def problem(x: Any, num_groups: Any, weight: Any, bias: Any, eps: Any) -> Problem:
    """Validate a forward-style call and view x as (N, G, C/G, S)."""
    arr = as_real_array(x, "x")
    shape = tuple(int(s) for s in arr.shape)
    groups = _check_shape(shape, num_groups)
    channels = shape[1]
    w = _per_channel(weight, "weight", channels, 1.0)
    b = _per_channel(bias, "bias", channels, 0.0)
    return Problem(shape, groups, layout.blocks(arr, groups), w, b, check_eps(eps))


def same_shape(value: Any, name: str, p: Problem) -> np.ndarray:
    """A cotangent of the input's shape, as float64 viewed like x (zeros when value is None)."""
    if value is None:
        return np.zeros(p.x4.shape)
    arr = as_real_array(value, name)
    if arr.shape != p.shape:
        raise ValueError(f"{name} has shape {arr.shape}; it must match the input's shape {p.shape}")
    return layout.blocks(arr, p.num_groups)


def per_channel(value: Any, name: str, p: Problem) -> np.ndarray:
    """A per-channel cotangent (zeros when value is None)."""
    return _per_channel(value, name, p.channels, 0.0)
