"""Every check that ``python -m gn_spec.derivations`` runs: the closed forms against the derivatives of the
forward definition, the oracle's folded forms, and the identities, for every m and for fixed m.

A check returns True when proved (an exact zero test, see ``symbolic.is_zero``), False when the identity is
false; the scope says for which m it is proved ("every m" in the moment model, or one fixed m).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import sympy as sp

from gn_spec.derivations import closed_forms as cf
from gn_spec.derivations import formulas as F
from gn_spec.derivations.symbolic import (
    Derived,
    ExplicitBlock,
    MomentBlock,
    derive,
    is_zero,
    vectors_equal,
)


@dataclass(frozen=True)
class Result:
    name: str
    scope: str  # "every m", "m = 3", "tensor (2, 4, 3)", ...
    proved: bool
    seconds: float


@dataclass(frozen=True)
class Check:
    name: str
    run: Callable[[], bool]


# ----------------------------------------------------------------------------------------------------------
# Identities, each an equation between vectors (or scalars) of one block
# ----------------------------------------------------------------------------------------------------------

SUM_DX_D = F.mul(F.EPS, F.power(F.R, 3), F.S_GD)  # sum_j dL/dx_j d_j = eps r^3 S_gd

IDENTITIES_LATEX = [
    ("shift invariance", r"y_{j}(x + t) = y_{j}(x) \text{ for every real } t"),
    ("scaling", r"y_{j}(s x;\ s^{2} \epsilon) = y_{j}(x;\ \epsilon) \text{ for every } s > 0"),
    ("grad_input sums to zero", r"\sum_{j=1}^{m} \frac{\partial \mathcal{L}}{\partial x_{j}} = 0"),
    ("grad_input against d",
     rf"\sum_{{j=1}}^{{m}} \frac{{\partial \mathcal{{L}}}}{{\partial x_{{j}}}} d_{{j}} = "
     rf"{sp.latex(SUM_DX_D, order='none')}"
     r" \quad \text{(zero for every } \delta \text{ only when } \epsilon = 0\text{)}"),
    ("one element per group",
     r"m = 1:\ y_{j} = \beta_{j},\ \frac{\partial \mathcal{L}}{\partial x_{j}} = 0,\ "
     r"\frac{\partial \mathcal{L}_2}{\partial \delta_{j}} = \kappa_{j},\ "
     r"\frac{\partial \mathcal{L}_2}{\partial x_{j}} = 0,\ "
     r"\frac{\partial \mathcal{L}_2}{\partial \gamma_{c}} = 0"),
]


def oracle_forms(block: Any) -> dict[str, Any]:
    """The oracle's r-folded closed forms (``closed_forms``) as vectors A + B r on a symbolic block."""
    f = block.field
    eps = block.eps
    a_y, b_y, q = cf.block_forward(f("x"), f("w"), f("b"), eps)
    r = 1 / sp.sqrt(q)
    b_dx, b_dw, _ = cf.block_backward(f("dy"), f("x"), f("w"), eps)
    a_o, b_o, b_gw, b_gx, _ = cf.block_double_backward(f("h"), f("gw"), f("gb"), f("dy"), f("x"), f("w"), eps)
    return {"y": a_y + b_y * r, "dx": b_dx * r, "dw": b_dw * r, "db": f("dy"),
            "ggo": a_o + b_o * r, "gx": b_gx * r, "gwt": b_gw * r}


def _shift_invariance(block: Any, d: Derived) -> bool:
    t = sp.Symbol("t", real=True)
    return vectors_equal(block.substitute(d.y, "x", lambda u: u + t, block.eps), d.y, block)


def _scaling(block: Any, d: Derived) -> bool:
    s = sp.Symbol("s", positive=True)
    return vectors_equal(block.substitute(d.y, "x", lambda u: s * u, s**2 * block.eps), d.y, block)


def _dx_sums_to_zero(block: Any, d: Derived) -> bool:
    return is_zero(d.dx.sum(), block)


def _dx_against_d(block: Any, d: Derived) -> bool:
    x = block.field("x")
    centred = x.shift(-x.sum() / x.size)
    return is_zero((d.dx * centred).sum() - F.evaluate(block)(SUM_DX_D), block)


def _one_element(block: Any, d: Derived) -> bool:
    zero = block.field("x") * 0
    f = block.field
    return all(vectors_equal(a, b, block) for a, b in
               [(d.y, f("b")), (d.dx, zero), (d.ggo, f("gb")), (d.gx, zero), (d.gwt, zero)])


def block_checks(block: Any) -> Iterator[Check]:
    """The checks of one block model; the derivation itself runs lazily in the first check."""
    cache: dict[str, Any] = {}

    def derived() -> Derived:
        if "d" not in cache:
            cache["d"] = derive(block)
        return cache["d"]

    def formula(form: F.Formula) -> Callable[[], bool]:
        return lambda: vectors_equal(getattr(derived(), form.key), F.evaluate(block)(form.expr), block)

    def folded(key: str) -> Callable[[], bool]:
        return lambda: vectors_equal(getattr(derived(), key), oracle_forms(block)[key], block)

    def identity(fn: Callable[[Any, Derived], bool]) -> Callable[[], bool]:
        return lambda: fn(block, derived())

    for form in F.FORMULAS:
        yield Check(f"SPEC closed form {form.name} ({form.key}) = derivative", formula(form))
    for key in ("y", "dx", "dw", "db", "ggo", "gx", "gwt"):
        yield Check(f"oracle folded form {key} = derivative", folded(key))
    yield Check("shift invariance y(x + t) = y(x)", identity(_shift_invariance))
    yield Check("scaling y(s x; s^2 eps) = y(x; eps)", identity(_scaling))
    yield Check("sum_j dx_j = 0", identity(_dx_sums_to_zero))
    yield Check("sum_j dx_j d_j = eps r^3 S_gd", identity(_dx_against_d))
    if block.m == 1:
        yield Check("m = 1: y = b, dx = 0, ggo = ggb, gx = 0, gw = 0", identity(_one_element))


def moment_consistency(m: int) -> Check:
    """The every-m derivation (chain rule through sums) specialised to m agrees with SymPy's diff."""

    def run() -> bool:
        moment, explicit = MomentBlock(), ExplicitBlock(m)
        dm, de = derive(moment), derive(explicit)
        for key, vec in dm.items():
            elems = explicit.elements(getattr(de, key))
            for k in range(m):
                if not is_zero(moment.specialize(vec.expr, explicit, k) - elems[k], explicit):
                    return False
        return True

    return Check("moment calculus = explicit differentiation (all outputs)", run)


# ----------------------------------------------------------------------------------------------------------
# G = 1 is LayerNorm, G = C is InstanceNorm: structural, on small symbolic tensors
# ----------------------------------------------------------------------------------------------------------


def _normalize(values: list[Any], eps: Any) -> list[Any]:
    m = len(values)
    mu = sp.Add(*values) / m
    var = sp.Add(*[(v - mu) ** 2 for v in values]) / m
    return [(v - mu) / sp.sqrt(var + eps) for v in values]


def group_norm_tensor(x: np.ndarray, groups: int, w: list[Any], b: list[Any], eps: Any) -> np.ndarray:
    """GN of an object array (N, C, *spatial): contiguous channel groups, per-channel affine."""
    n, c = x.shape[:2]
    blocks = x.reshape(n, groups, -1)
    normed = [[_normalize(list(blocks[i, g]), eps) for g in range(groups)] for i in range(n)]
    y = np.array(normed, dtype=object).reshape(x.shape)
    for ch in range(c):
        y[:, ch] = y[:, ch] * w[ch] + b[ch]
    return y


def layer_norm_tensor(x: np.ndarray, w: list[Any], b: list[Any], eps: Any) -> np.ndarray:
    """LayerNorm over normalized_shape = (C, *spatial), then the per-channel affine."""
    y = np.empty_like(x)
    for i in range(x.shape[0]):
        y[i] = np.array(_normalize(list(x[i].ravel()), eps), dtype=object).reshape(x.shape[1:])
        for ch in range(x.shape[1]):
            y[i, ch] = y[i, ch] * w[ch] + b[ch]
    return y


def instance_norm_tensor(x: np.ndarray, w: list[Any], b: list[Any], eps: Any) -> np.ndarray:
    """InstanceNorm: each (sample, channel) over its spatial positions, per-channel affine."""
    y = np.empty_like(x)
    for i in range(x.shape[0]):
        for ch in range(x.shape[1]):
            values = list(np.asarray(x[i, ch], dtype=object).ravel())
            normed = np.array([v * w[ch] + b[ch] for v in _normalize(values, eps)], dtype=object)
            y[i, ch] = normed.reshape(x.shape[2:]) if x.ndim > 2 else normed[0]
    return y


def _symbolic_tensor(shape: tuple[int, ...]) -> tuple[np.ndarray, list[Any], list[Any], Any]:
    count = int(np.prod(shape))
    x = np.array(sp.symbols(f"x0:{count}", real=True), dtype=object).reshape(shape)
    w = list(sp.symbols(f"w0:{shape[1]}", real=True))
    b = list(sp.symbols(f"b0:{shape[1]}", real=True))
    return x, w, b, sp.Symbol("epsilon", positive=True)


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    return all(sp.simplify(p - q) == 0 for p, q in zip(a.ravel(), b.ravel(), strict=True))


def norm_identity(kind: str, shape: tuple[int, ...]) -> Check:
    def run() -> bool:
        x, w, b, eps = _symbolic_tensor(shape)
        if kind == "layer":
            return _same(group_norm_tensor(x, 1, w, b, eps), layer_norm_tensor(x, w, b, eps))
        return _same(group_norm_tensor(x, shape[1], w, b, eps), instance_norm_tensor(x, w, b, eps))

    label = "G = 1 equals LayerNorm over (C, *spatial)" if kind == "layer" else "G = C equals InstanceNorm"
    return Check(label, run)


NORM_SHAPES = [(2, 4, 3), (1, 3, 2, 2), (2, 2)]


# ----------------------------------------------------------------------------------------------------------
# Running
# ----------------------------------------------------------------------------------------------------------


def all_checks(max_m: int = 6, consistency_m: int = 3) -> Iterator[tuple[str, Check]]:
    """(scope, check) for everything: every m, then m = 1..max_m, consistency, LayerNorm/InstanceNorm."""
    for check in block_checks(MomentBlock()):
        yield "every m", check
    for m in range(1, max_m + 1):
        for check in block_checks(ExplicitBlock(m)):
            yield f"m = {m}", check
    for m in range(1, consistency_m + 1):
        yield f"m = {m}", moment_consistency(m)
    for shape in NORM_SHAPES:
        for kind in ("layer", "instance"):
            yield f"tensor {shape}", norm_identity(kind, shape)


def run_checks(
    checks: Iterator[tuple[str, Check]], report: Callable[[Result], None] | None = None
) -> list[Result]:
    results = []
    for scope, check in checks:
        start = time.perf_counter()
        try:
            ok = bool(check.run())
        except Exception as exc:  # a crash in a proof is a failed proof, reported with its reason
            ok = False
            print(f"  error in {check.name} [{scope}]: {type(exc).__name__}: {exc}")
        result = Result(check.name, scope, ok, time.perf_counter() - start)
        results.append(result)
        if report is not None:
            report(result)
    return results
