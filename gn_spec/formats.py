"""The floating-point formats gn-spec knows: one table of their facts, and the conversions to them.

Every module that needs a dtype list, a precision, a range or a rounding takes it from here, so adding a
format is one entry in :data:`FORMATS`.  A format is a binary IEEE-754-style format with p significand bits
(the implicit bit included), largest exponent emax, gradual underflow and infinities.

numpy has float16, float32 and float64 but no bfloat16, so a bfloat16 array travels in a float32 container
whose values are all bfloat16 numbers (every bfloat16 number is a float32 number, so nothing is lost).

Conversions: :func:`round_to` rounds once, to nearest with ties to even, from float64 (the one correct
rounding); :func:`round_through_float32` is the double rounding torch applies and the input generator keeps
(see its docstring for why).
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Format:
    """One floating-point format: its name, numpy container, precision p, range emax and accumulation format.

    The derived facts (properties) follow from p and emax: u = 2**-p, smallest subnormal 2**(2 - emax - p),
    largest finite (2 - 2**(1 - p)) 2**emax.
    """

    name: str
    container: np.dtype[Any]  # the numpy dtype that carries its values
    significand_bits: int  # p, the implicit bit included
    max_exponent: int  # emax
    # The format whose unit roundoff the reductions must at least achieve (the low-precision policy, SPEC.md).
    accumulation: str

    @property
    def native(self) -> bool:
        """True when the container is this format itself (numpy converts to it, correctly rounding)."""
        info = np.finfo(self.container)
        return bool(info.nmant + 1 == self.significand_bits and info.maxexp - 1 == self.max_exponent)

    @property
    def unit_roundoff(self) -> float:
        """u = 2**-p, half the distance from 1 to the next number."""
        return math.ldexp(1.0, -self.significand_bits)

    @property
    def accumulation_roundoff(self) -> float:
        """u_a, the unit roundoff of :attr:`accumulation`."""
        return FORMATS[self.accumulation].unit_roundoff

    @property
    def smallest_normal(self) -> float:
        """2**(1 - emax)."""
        return math.ldexp(1.0, 1 - self.max_exponent)

    @property
    def smallest_subnormal(self) -> float:
        """eta = 2**(1 - emax - (p - 1)), the spacing of the subnormals."""
        return math.ldexp(1.0, 2 - self.max_exponent - self.significand_bits)

    @property
    def largest(self) -> float:
        """The largest finite number, (2 - 2**(1 - p)) 2**emax."""
        return math.ldexp(2.0 - math.ldexp(1.0, 1 - self.significand_bits), self.max_exponent)

    @property
    def overflow_threshold(self) -> float:
        """The smallest magnitude that rounds to infinity (round to nearest): (2 - u) 2**emax, the largest
        finite number plus half its last place.  As a float64 it is rounded up (so ``|v| >= threshold`` is
        exact for float64 v), and it is inf where it lies beyond float64's range (float64 itself)."""
        p = self.significand_bits
        exact = Fraction(2 ** (p + 1) - 1, 2**p) * Fraction(2) ** self.max_exponent
        if exact > Fraction(sys.float_info.max):
            return math.inf
        value = float(exact)
        return value if Fraction(value) >= exact else math.nextafter(value, math.inf)


def _format(name: str, container: type, p: int, emax: int, accumulation: str) -> Format:
    return Format(name, np.dtype(container), p, emax, accumulation)


#: Every format by name, in the order the CLI lists them.  Adding a format is one entry here.
FORMATS: dict[str, Format] = {
    f.name: f
    for f in (
        _format("float16", np.float16, 11, 15, "float32"),
        _format("bfloat16", np.float32, 8, 127, "float32"),
        _format("float32", np.float32, 24, 127, "float32"),
        _format("float64", np.float64, 53, 1023, "float64"),
    )
}

#: The format names, in table order.
NAMES: tuple[str, ...] = tuple(FORMATS)


def format_of(name: str) -> Format:
    """The :class:`Format` called ``name``; ValueError naming the value when there is none."""
    try:
        return FORMATS[name]
    except (KeyError, TypeError):
        raise ValueError(f"dtype={name!r} is not one of {NAMES}") from None


def _round_scaled(x: np.ndarray, fmt: Format) -> np.ndarray:
    """Round float64 ``x`` to ``fmt`` once, to nearest with ties to even, as float64.

    With x = m 2**e and 1/2 <= |m| < 1 (``frexp``), the numbers of the format near x are spaced
    2**(max(e, 2 - emax) - p): p significant bits, and below the smallest normal 2**(1 - emax) the fixed
    subnormal spacing.  Scaling by a power of two is exact, so ``rint`` of the scaled value is the one
    rounding.  Magnitudes that round above the largest finite number become infinite; NaN and inf pass.
    """
    finite = np.isfinite(x)
    _, e = np.frexp(np.where(finite, x, 1.0))
    k = np.maximum(e, 2 - fmt.max_exponent) - fmt.significand_bits
    y = np.ldexp(np.rint(np.ldexp(np.where(finite, x, 0.0), -k)), k)
    y = np.where(np.abs(y) > fmt.largest, np.copysign(np.inf, y), y)
    return np.where(finite, y, x)


def round_to(a: Any, dtype: str) -> np.ndarray:
    """Round ``a`` to the format ``dtype`` once (to nearest, ties to even), returned in its numpy container.

    Values of a float16/32/64 array are taken exactly; anything else is converted by numpy as ``astype``
    does (for the formats without a numpy dtype, to float64 first).  Magnitudes beyond the range become
    +-inf without numpy's overflow warning (that is the correctly rounded result); NaN stays NaN.
    """
    fmt = format_of(dtype)
    x = np.asarray(a)
    with np.errstate(over="ignore"):
        if fmt.native:
            return x.astype(fmt.container)
        return _round_scaled(x.astype(np.float64), fmt).astype(fmt.container)


def is_representable(a: Any, dtype: str) -> np.ndarray:
    """Elementwise: is each value of ``a`` exactly a number of ``dtype`` (NaN and +-inf count as such)?"""
    x = np.asarray(a, dtype=np.float64)
    r = round_to(x, dtype).astype(np.float64)
    return (r == x) | (np.isnan(x) & np.isnan(r))


def round_through_float32(a: Any, dtype: str) -> np.ndarray:
    """Round float64 ``a`` to float32, then that to ``dtype``, returned as float64: a double rounding.

    This is how torch converts a float64 tensor to float16 or bfloat16 (``.to(torch.bfloat16)`` goes through
    float32; seen with torch 2.13 on CPU, and tests/test_formats.py checks it on every run).  It differs from
    :func:`round_to` only where the float32 rounding lands exactly on a midpoint of ``dtype`` (about one
    float16 value in 14000 of the generator's, one bfloat16 value in 10**5).  The input generator
    (:func:`gn_spec.strategies.materialize`) uses it because it did so since 0.1.0: a different rounding
    would change the inputs of saved seeds and counterexamples.  Any value it returns is a number of
    ``dtype``; only which neighbour is chosen differs.
    """
    fmt = format_of(dtype)
    x = np.asarray(a, dtype=np.float64)
    if fmt.significand_bits > 24:  # wider than float32 (float64): one rounding, here a copy
        return round_to(x, dtype).astype(np.float64)
    with np.errstate(over="ignore"):
        return round_to(x.astype(np.float32), dtype).astype(np.float64)
