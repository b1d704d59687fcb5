"""The closed forms of one (sample, group) block, written once in vector notation and evaluated two ways.

A block has m elements x_i with their channel's weight w_i and bias b_i (so a per-channel parameter appears
once per element of its channel), upstream gradient dy_i, and for the second order the incoming cotangents
h_i = ggx_i, ggw_i, ggb_i (each element carries its channel's ggw, ggb).  With

    d_i = x_i - mean(x),   Q = mean(d^2) + eps = var + eps,   r = Q^(-1/2),   xhat_i = r d_i,

every output is A + B r with A, B rational functions of the inputs (r^2 = 1/Q folds r^3 and r^5 into B).
The functions below return those A and B.  They only use vector operations (``+``, ``-``, elementwise ``*``,
multiplication by a scalar, ``.sum()``), so the same code runs on

- :class:`ExprVec`, a list of scalars (SymPy expressions in ``gn_spec.derivations.symbolic``, which proves the
  results equal the derivatives of the forward definition), and
- the oracle's exact integer vectors (``gn_spec.derivations.oracle``), which round them correctly.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, Protocol, TypeVar

V = TypeVar("V", bound="VectorLike")


class VectorLike(Protocol):
    """The operations the closed forms need from a vector of one block's values."""

    @property
    def size(self) -> Any: ...  # the number of elements m (a SymPy symbol in the every-m model)
    def __add__(self: V, other: V) -> V: ...
    def __sub__(self: V, other: V) -> V: ...
    def __mul__(self: V, other: Any) -> V: ...  # elementwise with a vector, or by a scalar
    def shift(self: V, scalar: Any) -> V: ...  # add the scalar to every element
    def sum(self) -> Any: ...


class ExprVec:
    """A list of scalars (numbers or SymPy expressions) with the vector operations of the closed forms."""

    def __init__(self, items: Iterable[Any]) -> None:
        self.items = list(items)

    @property
    def size(self) -> int:
        return len(self.items)

    def __iter__(self) -> Iterator[Any]:
        return iter(self.items)

    def __add__(self, other: ExprVec) -> ExprVec:
        return ExprVec(a + b for a, b in zip(self.items, other.items, strict=True))

    def __sub__(self, other: ExprVec) -> ExprVec:
        return ExprVec(a - b for a, b in zip(self.items, other.items, strict=True))

    def __mul__(self, other: Any) -> ExprVec:
        if isinstance(other, ExprVec):
            return ExprVec(a * b for a, b in zip(self.items, other.items, strict=True))
        return ExprVec(a * other for a in self.items)

    def __pow__(self, exponent: int) -> ExprVec:
        """Elementwise power (for intervals, x**2 encloses a square better than x*x does)."""
        return ExprVec(a**exponent for a in self.items)

    def shift(self, scalar: Any) -> ExprVec:
        return ExprVec(a + scalar for a in self.items)

    def sum(self) -> Any:
        total = self.items[0]
        for a in self.items[1:]:
            total = total + a
        return total


def centered(x: V, eps: Any) -> tuple[V, Any]:
    """d = x - mean(x) and Q = mean(d^2) + eps = var + eps (biased variance, eps inside the root)."""
    m = x.size
    d = x.shift(-x.sum() / m)
    return d, (d * d).sum() / m + eps


def project(h: V, d: V, q: Any) -> V:
    """P(h) = h - mean(h) - xhat mean(h xhat), with xhat mean(h xhat) = d sum(h d) / (m Q): free of r."""
    m = h.size
    return h.shift(-h.sum() / m) - d * ((h * d).sum() / (m * q))


def block_forward(x: V, w: V, b: V, eps: Any) -> tuple[V, V, Any]:
    """y_i = w_i xhat_i + b_i = b_i + r (w_i d_i).  Returns (A, B, Q)."""
    d, q = centered(x, eps)
    return b, w * d, q


def block_backward(dy: V, x: V, w: V, eps: Any) -> tuple[V, V, Any]:
    """The VJP of the forward with cotangent dy, every factor of r pulled out.

    dx_i = r (g_i - mean(g) - xhat_i mean(g xhat)) = r P(g)_i with g_i = w_i dy_i  (A = 0);
    the weight terms dy_i xhat_i = r (dy_i d_i), summed per channel by the caller;
    the bias terms are dy_i themselves (rational).  Returns (B of dx, B of the weight terms, Q).
    """
    d, q = centered(x, eps)
    return project(w * dy, d, q), dy * d, q


def block_double_backward(h: V, ggw: V, ggb: V, dy: V, x: V, w: V, eps: Any) -> tuple[V, V, V, V, Any]:
    """The VJP of the backward, w.r.t. (dy, x, w), for cotangents (h, ggw, ggb) of (dx, dweight, dbias).

    grad_grad_output_i = ggb_i + r (w_i P(h)_i + ggw_i d_i)
    grad_weight terms  = r dy_i P(h)_i                             (summed per channel by the caller)
    grad_x_j           = r [ d_j (3 S_hd S_gd / (m^2 Q^2) - A_hg / (m Q))
                             - ((h_j - mean h) S_gd + (g_j - mean g) S_hd) / (m Q) + P(v)_j ]
    with g = w dy, v = ggw dy, S_hd = sum h d, S_gd = sum g d, A_hg = sum h g - m mean(h) mean(g).
    Returns (A of grad_grad_output, B of grad_grad_output, B of the grad_weight terms, B of grad_x, Q).
    """
    m = x.size
    d, q = centered(x, eps)
    g = w * dy
    ph = project(h, d, q)
    s_hd, s_gd = (h * d).sum(), (g * d).sum()
    h_sum, g_sum = h.sum(), g.sum()
    a_hg = (h * g).sum() - h_sum * g_sum / m
    c_d = 3 * s_hd * s_gd / (m * m * q * q) - a_hg / (m * q)
    gx = (d * c_d
          - h.shift(-h_sum / m) * (s_gd / (m * q))
          - g.shift(-g_sum / m) * (s_hd / (m * q))
          + project(ggw * dy, d, q))
    return ggb, w * ph + ggw * d, dy * ph, gx, q
