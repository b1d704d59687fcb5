"""PyTorch findings confirmed with PyTorch alone: no gn_spec code in the failing call, the exact value
computed here with Python's exact rationals.  Each test passes while the defect is there; when a PyTorch
release fixes it the test fails, and SPEC.md section 3.11 and README's findings are to be updated with it.
"""

from __future__ import annotations

from decimal import Decimal, localcontext
from fractions import Fraction

import pytest

torch = pytest.importorskip("torch")


def _sqrt(q: Fraction) -> Decimal:
    with localcontext() as ctx:
        ctx.prec = 60
        return (Decimal(q.numerator) / Decimal(q.denominator)).sqrt()


def test_torch_float64_create_graph_backward_overflows_on_a_tiny_variance() -> None:
    """x = (0, d) with d = 2e-150, one group, weight 1, bias 0, eps = 1e-300, grad_output = (1, 0).

    Exactly: mu = d/2, var = d^2/4, s = var + eps, r = s^(-1/2) ~ 7.07e149 (a float64 number), and
    grad_input_0 = r (1/2 - d^2 / (8 s)) = -grad_input_1 ~ 1.77e149, finite.  PyTorch 2.13's CPU float64
    backward returns it correctly without create_graph, but with create_graph=True (the formula that can be
    differentiated again) it returns NaN, most likely from a factor r^3 ~ 3.5e449, which overflows float64.
    """
    d, eps = 2e-150, 1e-300
    s = Fraction(d) ** 2 / 4 + Fraction(eps)
    r = 1 / _sqrt(s)
    with localcontext() as ctx:
        ctx.prec = 60
        exact0 = r * (Decimal(1) / 2 - _ratio(Fraction(d) ** 2 / (8 * s)))
    exact = [float(exact0), -float(exact0)]
    assert exact[0] == pytest.approx(1.7677669529663687e149, rel=1e-15)

    def torch_grad_input(create_graph: bool) -> list[float]:
        x = torch.tensor([[0.0, d]], dtype=torch.float64, requires_grad=True)
        w = torch.ones(2, dtype=torch.float64, requires_grad=True)
        b = torch.zeros(2, dtype=torch.float64, requires_grad=True)
        y = torch.nn.functional.group_norm(x, 1, w, b, eps)
        dy = torch.tensor([[1.0, 0.0]], dtype=torch.float64)
        (gx,) = torch.autograd.grad(y, (x,), dy, create_graph=create_graph)
        return gx.reshape(-1).tolist()

    plain = torch_grad_input(False)
    assert plain == pytest.approx(exact, rel=1e-14)  # the first-order kernel is right here
    second_order_capable = torch_grad_input(True)
    assert all(v != v for v in second_order_capable), second_order_capable  # NaN, the finding


def _ratio(q: Fraction) -> Decimal:
    with localcontext() as ctx:
        ctx.prec = 60
        return Decimal(q.numerator) / Decimal(q.denominator)


def test_torch_float16_backward_is_nan_where_the_saved_rstd_overflows() -> None:
    """x = [[[3, 3], [1, 2]]] in float16, two groups, eps = 1e-10, weight 1, bias 0,
    grad_output = [[[0.25, -0.125], [1, 0.5]]].

    Exactly, group 0 is constant: mu = 3, var = 0, r = eps^(-1/2) = 1e5, xhat = 0, so grad_input =
    r (dy - mean(dy)) = 1e5 * (0.1875, -0.1875) = (18750, -18750), finite in float16 (at most 65504).  PyTorch
    2.13's CPU float16 backward keeps the saved rstd in float16, where 1e5 overflows to inf, and returns NaN.
    (Group 1, mu = 1.5, var = 1/4, r ~ 2, has grad_input ~ 0 exactly: finite both ways.)
    """
    eps = 1e-10
    r0 = 1 / _sqrt(Fraction(eps))
    dy0 = [Fraction(1, 4), Fraction(-1, 8)]
    mean = sum(dy0) / 2
    with localcontext() as ctx:
        ctx.prec = 60
        exact0 = [float(r0 * _ratio(d - mean)) for d in dy0]
    assert exact0 == pytest.approx([18750.0, -18750.0], rel=1e-9) and max(map(abs, exact0)) < 65504
    x = torch.tensor([[[3.0, 3.0], [1.0, 2.0]]], dtype=torch.float16, requires_grad=True)
    w = torch.ones(2, dtype=torch.float16, requires_grad=True)
    b = torch.zeros(2, dtype=torch.float16, requires_grad=True)
    y = torch.nn.functional.group_norm(x, 2, w, b, eps)
    dy = torch.tensor([[[0.25, -0.125], [1.0, 0.5]]], dtype=torch.float16)
    (gx,) = torch.autograd.grad(y, (x,), dy)
    group0 = gx[0, 0].float().tolist()
    assert all(v != v for v in group0), group0  # NaN where (18750, -18750) is exact: the finding
    assert all(abs(v) < 1e-2 for v in gx[0, 1].float().tolist())  # the other group is right
