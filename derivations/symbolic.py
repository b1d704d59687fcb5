"""Symbolic Group Normalization of one (sample, group) block, and its derivatives from the definition alone.

A block has m elements; element i carries x_i, its channel's weight w_i and bias b_i, the upstream gradient
dy_i, and the second-order cotangents h_i (of dx), gw_i (of dweight) and gb_i (of dbias).  Giving each element
its own w_i is general: the per-channel gradient is the sum of the per-element ones over the channel (chain
rule through w_i = w_c), which is also how <ggw, dweight> = sum_i gw_i dw_i with gw_i = ggw_c.

Two models of a block run the same derivation (:func:`derive`):

- :class:`ExplicitBlock` (fixed m): m symbols per field, SymPy's own ``diff``.
- :class:`MomentBlock` (every m at once): one generic element (fields x, w, ...) and symbols S[f] standing
  for the sums sum_i f(element i) of monomials f, with m a positive integer symbol.  Any scalar built from a
  block is a function of such sums; the chain rule gives its derivative w.r.t. element k's field u as
      dL/du_k = sum_f (dL/dS[f]) * (df/du)(element k),
  since S[f] depends on u_k only through its k-th term.  A sum over elements of an expression polynomial in
  the generic element's fields (coefficients free of fields) maps each monomial f to S[f] (S[1] = m).
  Identities proved in this model hold as rational identities in independent symbols, hence for every m >= 1
  and every data.

Zero tests substitute eps = z^2 - var with z > 0 (so r = 1/z and z^2 = var + eps), which turns every
expression here into a rational function of independent symbols; ``cancel`` then decides zero exactly.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import sympy as sp

from gn_spec.derivations.closed_forms import ExprVec

FIELDS = ("x", "w", "b", "dy", "h", "gw", "gb")
Z = sp.Symbol("z", positive=True)  # z = sqrt(var + eps) in zero tests


# ----------------------------------------------------------------------------------------------------------
# Fixed m: explicit symbols
# ----------------------------------------------------------------------------------------------------------


class ExplicitBlock:
    """A block of m explicit elements: field u is the vector (u_1, ..., u_m) of symbols."""

    def __init__(self, m: int) -> None:
        self.m = m
        self.eps = sp.Symbol("epsilon", positive=True)
        self.symbols = {f: sp.symbols(f"{f}_1:{m + 1}", real=True) for f in FIELDS}

    def field(self, name: str) -> ExprVec:
        return ExprVec(self.symbols[name])

    def grad(self, scalar: Any, name: str) -> ExprVec:
        """The vector (dL/du_1, ..., dL/du_m) by SymPy's differentiation."""
        return ExprVec(sp.diff(scalar, s) for s in self.symbols[name])

    def elements(self, vec: ExprVec) -> list[Any]:
        return list(vec.items)

    def substitute(self, vec: ExprVec, field: str, image: Any, eps: Any) -> ExprVec:
        """The vector with each u_i replaced by image(u_i) for the field u, and eps by ``eps``."""
        reps = {s: image(s) for s in self.symbols[field]}
        reps[self.eps] = eps
        return ExprVec(sp.sympify(e).xreplace(reps) for e in vec.items)

    def variance(self) -> Any:
        xs = self.symbols["x"]
        mu = sp.Add(*xs) / self.m
        return sp.Add(*[(xi - mu) ** 2 for xi in xs]) / self.m


# ----------------------------------------------------------------------------------------------------------
# Every m: one generic element and symbolic sums
# ----------------------------------------------------------------------------------------------------------


class MomentVec:
    """The vector whose element i is ``expr`` evaluated at element i (fields of the generic element)."""

    def __init__(self, block: MomentBlock, expr: Any) -> None:
        self.block = block
        self.expr = sp.sympify(expr)

    @property
    def size(self) -> Any:
        return self.block.m

    def __add__(self, other: MomentVec) -> MomentVec:
        return MomentVec(self.block, self.expr + other.expr)

    def __sub__(self, other: MomentVec) -> MomentVec:
        return MomentVec(self.block, self.expr - other.expr)

    def __mul__(self, other: Any) -> MomentVec:
        value = other.expr if isinstance(other, MomentVec) else other
        return MomentVec(self.block, self.expr * value)

    def shift(self, scalar: Any) -> MomentVec:
        return MomentVec(self.block, self.expr + scalar)

    def sum(self) -> Any:
        return self.block.total(self.expr)


class MomentBlock:
    """A block of symbolic size m, see the module docstring."""

    def __init__(self) -> None:
        self.m = sp.Symbol("m", positive=True, integer=True)
        self.eps = sp.Symbol("epsilon", positive=True)
        self.fields = {f: sp.Symbol(f, real=True) for f in FIELDS}
        self._sums: dict[Any, sp.Symbol] = {}  # monomial in fields -> S[monomial]
        self._monomials: dict[sp.Symbol, Any] = {}

    def field(self, name: str) -> MomentVec:
        return MomentVec(self, self.fields[name])

    def sum_symbol(self, monomial: Any) -> Any:
        """S[monomial] (the sum over the block of the monomial); S[1] = m."""
        if monomial == 1:
            return self.m
        if monomial not in self._sums:
            sym = sp.Symbol(f"S[{sp.sstr(monomial)}]", real=True)
            self._sums[monomial] = sym
            self._monomials[sym] = monomial
        return self._sums[monomial]

    def total(self, expr: Any) -> Any:
        """sum_i expr(element i) for expr polynomial in the fields: each monomial f becomes S[f]."""
        field_set = set(self.fields.values())
        out = []
        for term in sp.Add.make_args(sp.expand(expr, power_base=False, power_exp=False, log=False)):
            mono: list[Any] = []
            coeff: list[Any] = []
            for factor in sp.Mul.make_args(term):
                syms = factor.free_symbols & field_set
                if syms and not (factor.free_symbols <= field_set and factor.is_polynomial(*syms)):
                    raise ValueError(f"cannot sum a term not polynomial in the fields: {factor}")
                (mono if syms else coeff).append(factor)
            out.append(sp.Mul(*coeff) * self.sum_symbol(sp.Mul(*mono)))
        return sp.Add(*out)

    def grad(self, scalar: Any, name: str) -> MomentVec:
        """dL/du at the generic element for L a function of the sums only (chain rule through each S[f])."""
        if scalar.free_symbols & set(self.fields.values()):
            raise ValueError("grad needs a scalar that depends on the fields through sums only")
        u = self.fields[name]
        parts = [sp.diff(scalar, s) * sp.diff(mono, u) for s, mono in self._monomials.items()
                 if s in scalar.free_symbols]
        return MomentVec(self, sp.Add(*parts))

    def elements(self, vec: MomentVec) -> list[Any]:
        return [vec.expr]

    def substitute(self, vec: MomentVec, field: str, image: Any, eps: Any) -> MomentVec:
        """The vector with every element's u replaced by image(u) for the field u, and eps by ``eps``:
        S[f] becomes the sum of f with u replaced, the generic element's u becomes image(u)."""
        u = self.fields[field]
        reps: dict[Any, Any] = {self.eps: eps, u: image(u)}
        for sym, mono in list(self._monomials.items()):
            if u in mono.free_symbols:
                reps[sym] = self.total(mono.xreplace({u: image(u)}))
        return MomentVec(self, vec.expr.xreplace(reps))

    def variance(self) -> Any:
        x = self.fields["x"]
        return self.sum_symbol(x**2) / self.m - (self.sum_symbol(x) / self.m) ** 2

    def specialize(self, expr: Any, block: ExplicitBlock, k: int) -> Any:
        """expr with m, eps, the sums and the generic element's fields replaced by those of ``block``'s
        element k (0-based): how the moment model's results are cross-checked against explicit ``diff``."""
        reps: dict[Any, Any] = {self.m: block.m, self.eps: block.eps}
        for sym, mono in self._monomials.items():
            reps[sym] = sp.Add(*[mono.xreplace({self.fields[f]: block.symbols[f][i] for f in FIELDS})
                                 for i in range(block.m)])
        reps.update({self.fields[f]: block.symbols[f][k] for f in FIELDS})
        return expr.xreplace(reps)


# ----------------------------------------------------------------------------------------------------------
# The derivation from the forward definition
# ----------------------------------------------------------------------------------------------------------

Block = Any  # ExplicitBlock | MomentBlock
Vec = TypeVar("Vec", ExprVec, MomentVec)


def block_size(block: Block) -> Any:
    return block.m


def forward_definition(block: Block) -> Any:
    """y_i = w_i (x_i - mu) / sqrt(var + eps) + b_i with mu = mean(x), var = mean((x - mu)^2)."""
    x, w, b = block.field("x"), block.field("w"), block.field("b")
    m = x.size
    d = x.shift(-x.sum() / m)
    var = (d * d).sum() / m
    return w * d * (1 / sp.sqrt(var + block.eps)) + b


@dataclass
class Derived(Generic[Vec]):
    """The forward and its derivatives for one block, each a vector over the block's elements."""

    y: Vec
    dx: Vec  # dL1/dx with L1 = sum dy y
    dw: Vec  # per-element weight gradient (sum over a channel's elements gives dweight_c)
    db: Vec
    ggo: Vec  # dL2/ddy with L2 = sum h dx + sum gw dw + sum gb db
    gx: Vec  # dL2/dx
    gwt: Vec  # dL2/dw (per element)

    def items(self) -> Iterator[tuple[str, Vec]]:
        yield from vars(self).items()


def derive(block: Block) -> Derived:
    """First and second order by differentiation of the forward definition only."""
    y = forward_definition(block)
    dy = block.field("dy")
    l1 = (dy * y).sum()
    dx, dw, db = block.grad(l1, "x"), block.grad(l1, "w"), block.grad(l1, "b")
    l2 = (block.field("h") * dx).sum() + (block.field("gw") * dw).sum() + (block.field("gb") * db).sum()
    return Derived(y, dx, dw, db, block.grad(l2, "dy"), block.grad(l2, "x"), block.grad(l2, "w"))


def _expand_root_bases(expr: Any) -> Any:
    """Expand the base of every half-integer power, so that e.g. (var(x + t) - var(x) + z^2)^(-1/2) becomes
    (z^2)^(-1/2) = 1/z (z > 0): the step that makes each expression here rational."""
    return expr.replace(
        lambda e: e.is_Pow and e.exp.is_Rational and e.exp.q == 2,
        lambda e: sp.Pow(sp.expand(e.base), e.exp),
    )


def is_zero(expr: Any, block: Block) -> bool:
    """Exact zero test.  With eps = z^2 - var (z > 0) every square root in these expressions becomes a power
    of z times a monomial in positive symbols, the expression is rational in independent symbols, and
    ``cancel`` brings it to 0 exactly when it is identically 0."""
    rational = _expand_root_bases(sp.sympify(expr).subs(block.eps, Z**2 - block.variance()))
    return bool(sp.cancel(sp.together(rational)) == 0)


def vectors_equal(a: Any, b: Any, block: Block) -> bool:
    """Elementwise a == b on the block (every element for a fixed m, the generic element for every m)."""
    return all(is_zero(p - q, block) for p, q in zip(block.elements(a), block.elements(b), strict=True))
