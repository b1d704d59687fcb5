"""The closed forms that SPEC.md states and the reference implements, as SymPy expressions in named symbols.

Each definition and formula is one SymPy expression over display symbols (x_j, \\hat{x}_j, \\bar{g}, ...).
The same expression is (1) printed as LaTeX into SPEC.md and (2) evaluated on a symbolic block by
:func:`evaluate` (sums become block sums, element symbols become vectors), so what the proofs check is
literally what SPEC.md shows.  Expressions are built unevaluated, so they print in the order written.

Element symbols carry the index j (the output element) or i (a summation dummy); both name the same vector.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import sympy as sp

# ----------------------------------------------------------------------------------------------------------
# Display symbols
# ----------------------------------------------------------------------------------------------------------

I_ = sp.Symbol("i")
M = sp.Symbol("m")
EPS = sp.Symbol(r"\epsilon")


def _element(latex: str) -> tuple[sp.Symbol, sp.Symbol]:
    """The symbols of one element quantity with index i and j (``latex`` has a ``{}`` for the index)."""
    return sp.Symbol(latex.format("i")), sp.Symbol(latex.format("j"))


# inputs: field name in the symbolic block -> (symbol_i, symbol_j)
INPUTS = {
    "x": _element("x_{}"),
    "w": _element(r"\gamma_{}"),
    "b": _element(r"\beta_{}"),
    "dy": _element(r"\delta_{}"),
    "h": _element("h_{}"),
    "gw": _element(r"\omega_{}"),
    "gb": _element(r"\kappa_{}"),
}
x_i, x_j = INPUTS["x"]
gam_i, gam_j = INPUTS["w"]
bet_i, bet_j = INPUTS["b"]
del_i, del_j = INPUTS["dy"]
h_i, h_j = INPUTS["h"]
om_i, om_j = INPUTS["gw"]
ka_i, ka_j = INPUTS["gb"]

# derived element quantities
d_i, d_j = _element("d_{}")
xh_i, xh_j = _element(r"\hat{{x}}_{}")
g_i, g_j = _element("g_{}")
v_i, v_j = _element("v_{}")
P_i, P_j = _element("P_{}")

# derived scalars
MU, VAR, R = sp.Symbol(r"\mu"), sp.Symbol(r"\sigma^{2}"), sp.Symbol("r")
G_BAR, GX_BAR = sp.Symbol(r"\bar{g}"), sp.Symbol(r"\overline{g\hat{x}}")
H_BAR, HX_BAR = sp.Symbol(r"\bar{h}"), sp.Symbol(r"\overline{h\hat{x}}")
V_BAR, VX_BAR = sp.Symbol(r"\bar{v}"), sp.Symbol(r"\overline{v\hat{x}}")
S_HD, S_GD, A_HG = sp.Symbol("S_{hd}"), sp.Symbol("S_{gd}"), sp.Symbol("A_{hg}")


# ----------------------------------------------------------------------------------------------------------
# Unevaluated builders (so expressions print in the order written)
# ----------------------------------------------------------------------------------------------------------


def add(*terms: Any) -> Any:
    return sp.Add(*terms, evaluate=False)


def mul(*factors: Any) -> Any:
    return sp.Mul(*factors, evaluate=False)


def neg(term: Any) -> Any:
    return sp.Mul(sp.Integer(-1), term, evaluate=False)


def frac(num: Any, den: Any) -> Any:
    return sp.Mul(num, sp.Pow(den, -1, evaluate=False), evaluate=False)


def power(base: Any, exp: Any) -> Any:
    return sp.Pow(base, sp.sympify(exp), evaluate=False)


def total(term: Any) -> Any:
    """sum_{i=1}^{m} term."""
    return sp.Sum(term, (I_, 1, M))


def mean(term: Any) -> Any:
    return frac(total(term), M)


# ----------------------------------------------------------------------------------------------------------
# Definitions and formulas
# ----------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Definition:
    """symbol := expr.  Element definitions bind both index forms (``symbols`` holds (sym_i, sym_j))."""

    symbols: tuple[sp.Symbol, ...]
    expr: Any  # written with index j for element definitions

    @property
    def latex(self) -> str:
        return f"{sp.latex(self.symbols[-1])} = {sp.latex(self.expr, order='none')}"


@dataclass(frozen=True)
class Formula:
    """One output of the block: ``lhs`` (LaTeX) = ``expr``; ``key`` names the derived vector it equals.

    With ``channel_sum`` the output is per channel: the sum over samples n and elements j of channel c of
    the per-element term ``expr`` (the block proof covers the per-element term, the sum is the chain rule).
    """

    name: str
    lhs: str
    expr: Any
    key: str
    channel_sum: bool = False

    @property
    def latex(self) -> str:
        body = sp.latex(self.expr, order="none")
        if self.channel_sum:
            body = rf"\sum_{{n}} \sum_{{j \in c}} {body}"
        return f"{self.lhs} = {body}"


def _scalar(sym: sp.Symbol, expr: Any) -> Definition:
    return Definition((sym,), expr)


def _elem(pair: tuple[sp.Symbol, sp.Symbol], expr: Any) -> Definition:
    return Definition(pair, expr)


FORWARD_DEFINITIONS = [
    _scalar(MU, mean(x_i)),
    _elem((d_i, d_j), add(x_j, neg(MU))),
    _scalar(VAR, mean(power(d_i, 2))),
    _scalar(R, power(power(add(VAR, EPS), sp.Rational(1, 2)), -1)),
    _elem((xh_i, xh_j), mul(R, d_j)),
]
BACKWARD_DEFINITIONS = [
    _elem((g_i, g_j), mul(gam_j, del_j)),
    _scalar(G_BAR, mean(g_i)),
    _scalar(GX_BAR, mean(mul(g_i, xh_i))),
]
SECOND_ORDER_DEFINITIONS = [
    _scalar(H_BAR, mean(h_i)),
    _scalar(HX_BAR, mean(mul(h_i, xh_i))),
    _elem((P_i, P_j), add(h_j, neg(H_BAR), neg(mul(xh_j, HX_BAR)))),
    _elem((v_i, v_j), mul(om_j, del_j)),
    _scalar(V_BAR, mean(v_i)),
    _scalar(VX_BAR, mean(mul(v_i, xh_i))),
    _scalar(S_HD, total(mul(h_i, d_i))),
    _scalar(S_GD, total(mul(g_i, d_i))),
    _scalar(A_HG, add(total(mul(h_i, g_i)), neg(mul(M, H_BAR, G_BAR)))),
]
DEFINITIONS = FORWARD_DEFINITIONS + BACKWARD_DEFINITIONS + SECOND_ORDER_DEFINITIONS

_L1 = r"\mathcal{L}"
_L2 = r"\mathcal{L}_2"

FORWARD = [Formula("forward", "y_{j}", add(mul(gam_j, xh_j), bet_j), "y")]
BACKWARD = [
    Formula("grad_input", rf"\frac{{\partial {_L1}}}{{\partial x_{{j}}}}",
            mul(R, add(g_j, neg(G_BAR), neg(mul(xh_j, GX_BAR)))), "dx"),
    Formula("grad_weight", rf"\frac{{\partial {_L1}}}{{\partial \gamma_{{c}}}}",
            mul(del_j, xh_j), "dw", True),
    Formula("grad_bias", rf"\frac{{\partial {_L1}}}{{\partial \beta_{{c}}}}", del_j, "db", True),
]
SECOND_ORDER = [
    Formula("grad_grad_output", rf"\frac{{\partial {_L2}}}{{\partial \delta_{{j}}}}",
            add(mul(gam_j, R, P_j), mul(om_j, xh_j), ka_j), "ggo"),
    Formula("grad_x", rf"\frac{{\partial {_L2}}}{{\partial x_{{j}}}}",
            add(neg(frac(mul(power(R, 3), d_j, A_HG), M)),
                frac(mul(3, power(R, 5), d_j, S_HD, S_GD), power(M, 2)),
                neg(mul(frac(power(R, 3), M),
                        add(mul(add(h_j, neg(H_BAR)), S_GD), mul(add(g_j, neg(G_BAR)), S_HD)))),
                mul(R, add(v_j, neg(V_BAR), neg(mul(xh_j, VX_BAR))))), "gx"),
    Formula("grad_weight", rf"\frac{{\partial {_L2}}}{{\partial \gamma_{{c}}}}",
            mul(del_j, R, P_j), "gwt", True),
]
FORMULAS = FORWARD + BACKWARD + SECOND_ORDER


# ----------------------------------------------------------------------------------------------------------
# Evaluation on a symbolic block
# ----------------------------------------------------------------------------------------------------------


def _is_vector(value: Any) -> bool:
    return hasattr(value, "shift")


def _interpret(expr: Any, env: dict[sp.Symbol, Any], block: Any) -> Any:
    """Evaluate a display expression: symbols from ``env``, Sum -> block sum, m and epsilon -> the block's.

    Scalars are combined with Python operators, so a numeric block (mpmath values, with a ``constant``
    method converting SymPy numbers) stays in its own number type.
    """
    if expr == M:
        return block.m
    if expr == EPS:
        return block.eps
    if isinstance(expr, sp.Symbol):
        return env[expr]
    if expr.is_Number:
        return block.constant(expr) if hasattr(block, "constant") else expr
    if isinstance(expr, sp.Sum):
        ((index, lo, hi),) = expr.limits
        if (index, lo, hi) != (I_, 1, M):
            raise ValueError(f"unexpected summation limits {expr.limits}")
        inner = _interpret(expr.function, env, block)
        return inner.sum() if _is_vector(inner) else inner * block.m
    args = [_interpret(a, env, block) for a in expr.args]
    vectors = [a for a in args if _is_vector(a)]
    scalars = [a for a in args if not _is_vector(a)]
    if isinstance(expr, sp.Add):
        scalar = functools.reduce(operator.add, scalars, 0)
        if not vectors:
            return scalar
        out = functools.reduce(operator.add, vectors)
        return out.shift(scalar) if scalars else out
    if isinstance(expr, sp.Mul):
        scalar = functools.reduce(operator.mul, scalars, 1)
        if not vectors:
            return scalar
        return functools.reduce(operator.mul, vectors) * scalar
    if isinstance(expr, sp.Pow):
        base, exp = args
        if not _is_vector(base):
            return base**exp
        if int(exp) != exp or exp < 1:
            raise ValueError(f"only positive integer powers of element quantities: {expr}")
        if hasattr(base, "__pow__"):
            return base ** int(exp)
        return functools.reduce(operator.mul, [base] * int(exp))
    raise ValueError(f"cannot evaluate {expr!r}")


def evaluate(block: Any, definitions: list[Definition] = DEFINITIONS) -> Callable[[Any], Any]:
    """Bind the inputs to the block's fields and the definitions in order; return an evaluator of
    display expressions (a vector for element expressions, a scalar otherwise)."""
    env: dict[sp.Symbol, Any] = {}
    for field, pair in INPUTS.items():
        vec = block.field(field)
        env.update(dict.fromkeys(pair, vec))
    for definition in definitions:
        value = _interpret(definition.expr, env, block)
        env.update(dict.fromkeys(definition.symbols, value))
    return lambda expr: _interpret(expr, env, block)
