"""The floating-point formats the checker tests, and how their values travel as numpy arrays.

numpy has float16, float32 and float64 but no bfloat16, so a bfloat16 array travels as a float32 array whose
values are all bfloat16 numbers (every bfloat16 number is a float32 number, so nothing is lost).
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: Names accepted by ``--dtype``, in the order the CLI lists them.
DTYPE_NAMES = ("float16", "bfloat16", "float32", "float64")

#: The numpy dtype that carries values of each format.
CONTAINER: dict[str, np.dtype[Any]] = {
    "float16": np.dtype(np.float16),
    "bfloat16": np.dtype(np.float32),
    "float32": np.dtype(np.float32),
    "float64": np.dtype(np.float64),
}

#: Significand precision p (bits, the implicit bit included) of each format.
PRECISION = {"float16": 11, "bfloat16": 8, "float32": 24, "float64": 53}

#: Largest finite bfloat16 number, (2 - 2**-7) * 2**127.
BFLOAT16_MAX = (2.0 - 2.0**-7) * 2.0**127


def round_to_bfloat16(a: np.ndarray) -> np.ndarray:
    """Round each value of ``a`` to the nearest bfloat16 number (ties to even), returned as float32.

    With a = m * 2**e and 1/2 <= |m| < 1 (``frexp``), the bfloat16 numbers near a are spaced
    2**(max(e, -125) - 8): 8 significant bits, and below 2**-126 the fixed subnormal spacing 2**-133.  Scaling
    by a power of two is exact, so ``rint`` on the scaled value rounds once, correctly, straight from float64
    (no double rounding through float32).  Magnitudes that round above the largest bfloat16 become infinite.
    """
    x = np.asarray(a, dtype=np.float64)
    finite = np.isfinite(x)
    _, e = np.frexp(np.where(finite, x, 1.0))
    k = np.maximum(e, -125) - 8
    y = np.ldexp(np.rint(np.ldexp(np.where(finite, x, 0.0), -k)), k)
    y = np.where(np.abs(y) > BFLOAT16_MAX, np.copysign(np.inf, y), y)
    return np.where(finite, y, x).astype(np.float32)


def round_to(a: np.ndarray, dtype: str) -> np.ndarray:
    """Round ``a`` to the format ``dtype`` (one of :data:`DTYPE_NAMES`), returned in its numpy container."""
    if dtype == "bfloat16":
        return round_to_bfloat16(a)
    return np.asarray(a).astype(CONTAINER[dtype])


def is_representable(a: np.ndarray, dtype: str) -> np.ndarray:
    """Elementwise: is each value of ``a`` exactly a number of ``dtype`` (NaN counts as representable)?"""
    x = np.asarray(a, dtype=np.float64)
    r = round_to(x, dtype).astype(np.float64)
    return (r == x) | (np.isnan(x) & np.isnan(r))
