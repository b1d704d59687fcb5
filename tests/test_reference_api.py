"""The reference's contract: error messages, identities, agreement with PyTorch and finite differences."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from reference_cases import MODERATE_EPS, RefCase, ref_cases

import gn_spec
from gn_spec import error_model

# --------------------------------------------------------------------------------------------------------
# Bad input: a clear error naming the offending value


X = np.zeros((2, 8, 4, 4))


@pytest.mark.parametrize(
    "call, error, message",
    [
        (
            lambda: gn_spec.group_norm(X, 3),
            ValueError,
            "num_groups=3 does not divide C=8 (input shape (2, 8, 4, 4))",
        ),
        (lambda: gn_spec.group_norm(X, 0), ValueError, "num_groups=0 must be a positive integer"),
        (lambda: gn_spec.group_norm(X, -2), ValueError, "num_groups=-2 must be a positive integer"),
        (lambda: gn_spec.group_norm(X, 2.0), TypeError, "num_groups must be a positive integer, got 2.0"),
        (lambda: gn_spec.group_norm(X, True), TypeError, "num_groups must be a positive integer, got True"),
        (lambda: gn_spec.group_norm(np.zeros(8), 2), ValueError, "input shape (8,) has 1 dims"),
        (lambda: gn_spec.group_norm(np.zeros((2, 8, 0)), 2), ValueError, "zero-size spatial extent (dim 2)"),
        (lambda: gn_spec.group_norm(np.zeros((2, 0)), 1), ValueError, "C=0 channels"),
        (
            lambda: gn_spec.group_norm(X, 2, np.ones(4)),
            ValueError,
            "weight has shape (4,); it must have shape (8,)",
        ),
        (lambda: gn_spec.group_norm(X, 2, None, np.ones((1, 8))), ValueError, "bias has shape (1, 8)"),
        (lambda: gn_spec.group_norm(X, 2, eps=-1e-5), ValueError, "eps=-1e-05 is negative"),
        (lambda: gn_spec.group_norm(X, 2, eps=float("nan")), ValueError, "eps=nan is not finite"),
        (lambda: gn_spec.group_norm(X, 2, eps=float("inf")), ValueError, "eps=inf is not finite"),
        (lambda: gn_spec.group_norm(X, 2, eps="1e-5"), TypeError, "eps must be a real number, got '1e-5'"),
        (lambda: gn_spec.group_norm(X.astype(np.int64), 2), TypeError, "x has integer dtype int64"),
        (lambda: gn_spec.group_norm(X.astype(bool), 2), TypeError, "x has dtype bool"),
        (lambda: gn_spec.group_norm(X.astype(complex), 2), TypeError, "x has complex dtype complex128"),
        (lambda: gn_spec.group_norm(X, 2, np.ones(8, dtype=np.int32)), TypeError, "weight has integer dtype"),
        (lambda: gn_spec.group_norm_backward(np.zeros((2, 8, 4)), X, 2), ValueError, "grad_output has shape"),
        (
            lambda: gn_spec.group_norm_double_backward(None, np.ones(3), None, X, X, 2),
            ValueError,
            "grad_grad_weight has shape (3,)",
        ),
        (lambda: gn_spec.group_norm_backward(X, X, 5), ValueError, "num_groups=5 does not divide C=8"),
    ],
)
def test_bad_input_names_the_offending_value(call, error, message) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(error) as info:
        call()
    assert message in str(info.value)


def test_exact_longdouble_accepted_inexact_rejected() -> None:
    x = np.arange(16, dtype=np.longdouble).reshape(2, 8)
    assert np.array_equal(gn_spec.group_norm(x, 2), gn_spec.group_norm(x.astype(np.float64), 2))
    if np.finfo(np.longdouble).nmant > 52:  # a genuine extended type on this platform
        with pytest.raises(TypeError, match="float64 cannot hold exactly"):
            gn_spec.group_norm(x / 3, 2)


def test_torch_tensor_input_is_accepted() -> None:
    x = torch.randn(2, 4, 3, dtype=torch.float32, requires_grad=True)
    assert np.array_equal(gn_spec.group_norm(x, 2), gn_spec.group_norm(x.detach().numpy(), 2))


# --------------------------------------------------------------------------------------------------------
# Identities: G = 1 is LayerNorm over (C, *spatial); G = C is InstanceNorm (per-channel affine in both)


def _agrees(
    quantity: str, theirs: torch.Tensor | np.ndarray, ours: np.ndarray, tol: error_model.Tolerance
) -> None:
    """A float64 implementation (here PyTorch) sits within the derived error model around the reference."""
    observed = theirs.detach().numpy() if isinstance(theirs, torch.Tensor) else theirs
    judgement = error_model.judge(quantity, observed, ours, tol)
    assert judgement.passed, judgement.message


def _affine(case: RefCase) -> tuple[np.ndarray, np.ndarray]:
    a = case.arrays()
    c = case.shape[1]
    w = np.ones(c) if a["weight"] is None else a["weight"]
    b = np.zeros(c) if a["bias"] is None else a["bias"]
    return w, b


@settings(max_examples=40, deadline=None)
@given(ref_cases(recipes=("normal", "offset", "near_eps", "integers")))
def test_g1_is_layer_norm_and_gc_is_instance_norm(case: RefCase) -> None:
    """GN with G = 1 equals LayerNorm over (C, *spatial) followed by the per-channel affine; GN with G = C
    equals InstanceNorm (torch's layer_norm / instance_norm in float64, within the float64 error model)."""
    a = case.arrays()
    x, eps = a["x"], case.eps
    w, b = _affine(case)
    n, c = x.shape[:2]
    shape = (1, c) + (1,) * (x.ndim - 2)
    xt = torch.tensor(x)
    layer = torch.nn.functional.layer_norm(xt, x.shape[1:], eps=eps)
    layer = layer * torch.tensor(w).reshape(shape) + torch.tensor(b).reshape(shape)
    tol = error_model.forward_tolerance(x, 1, w, b, eps, "float64")
    _agrees("output", layer, gn_spec.group_norm(x, 1, w, b, eps), tol)
    if x[0, 0].size == 1:
        return  # torch's instance_norm refuses one element per channel
    inst = torch.nn.functional.instance_norm(
        xt.reshape(n, c, -1), weight=torch.tensor(w), bias=torch.tensor(b), eps=eps, use_input_stats=True
    ).reshape(x.shape)
    tol = error_model.forward_tolerance(x, c, w, b, eps, "float64")
    _agrees("output", inst, gn_spec.group_norm(x, c, w, b, eps), tol)


# --------------------------------------------------------------------------------------------------------
# PyTorch float64 through torch.autograd: forward, backward, double backward


def torch_all(case: RefCase) -> dict[str, torch.Tensor]:
    """Forward, backward and double backward of torch.nn.functional.group_norm in float64."""
    a = case.arrays()
    w, b = _affine(case)
    xt = torch.tensor(a["x"], requires_grad=True)
    wt = torch.tensor(w, requires_grad=True)
    bt = torch.tensor(b, requires_grad=True)
    dyt = torch.tensor(a["dy"], requires_grad=True)
    y = torch.nn.functional.group_norm(xt, case.num_groups, wt, bt, case.eps)
    gx, gw, gb = torch.autograd.grad(y, (xt, wt, bt), dyt, create_graph=True)
    total = (gx * torch.tensor(a["ggx"])).sum() + (gw * torch.tensor(a["ggw"])).sum()
    total = total + (gb * torch.tensor(a["ggb"])).sum()
    ggo, dgx, dgw = torch.autograd.grad(total, (dyt, xt, wt), allow_unused=True, materialize_grads=True)
    names = [
        "output",
        "grad_input",
        "grad_weight",
        "grad_bias",
        "grad_grad_output",
        "double_grad_input",
        "double_grad_weight",
    ]
    return dict(zip(names, (y, gx, gw, gb, ggo, dgx, dgw), strict=True))


@settings(max_examples=40, deadline=None)
@given(
    ref_cases(
        recipes=("normal", "offset", "near_eps", "magnitude", "integers"),
        eps_values=MODERATE_EPS,
        max_power=30,
        max_offset=12,
    )
)
def test_agrees_with_torch_float64_first_and_second_order(case: RefCase) -> None:
    """PyTorch float64 (CPU), differentiated by torch.autograd, sits within the float64 error model around
    the reference, on inputs whose intermediates stay far from overflow and underflow, and with |mean|/std
    up to 1e12 (the float64 domain the checker generates, SPEC 3.8). Beyond it, at 1e15 with two values a
    group, torch's double backward was seen 9x over the bound (grad_grad_output -1048576 where the exact
    value is -2.30): an open question for the model's second-order remainder, recorded in the notes."""
    a = case.arrays()
    w, b = _affine(case)
    x, dy, g, eps = a["x"], a["dy"], case.num_groups, case.eps
    if case.shape[1] // g * int(np.prod(case.shape[2:])) == 1:
        return  # torch refuses one value per group in training mode
    theirs = torch_all(case)
    ours = {"output": gn_spec.group_norm(x, g, w, b, eps)}
    ours.update(
        zip(
            ["grad_input", "grad_weight", "grad_bias"],
            gn_spec.group_norm_backward(dy, x, g, w, eps),
            strict=True,
        )
    )
    second = gn_spec.group_norm_double_backward(a["ggx"], a["ggw"], a["ggb"], dy, x, g, w, eps)
    ours.update(zip(["grad_grad_output", "double_grad_input", "double_grad_weight"], second, strict=True))
    tols = {"output": error_model.forward_tolerance(x, g, w, b, eps, "float64")}
    tols.update(error_model.backward_tolerances(dy, x, g, w, eps, "float64"))
    tols.update(
        error_model.double_backward_tolerances(a["ggx"], a["ggw"], a["ggb"], dy, x, g, w, eps, "float64")
    )
    for name, value in ours.items():
        _agrees(name, theirs[name], value, tols[name])


# --------------------------------------------------------------------------------------------------------
# Finite differences: the backward is the derivative of the forward, the second order that of the backward


def _central(f, h: float) -> float:  # type: ignore[no-untyped-def]
    return (f(h) - f(-h)) / (2 * h)


def _check_derivative(f, analytic: float, scale: float, magnitude: float) -> None:  # type: ignore[no-untyped-def]
    """Richardson-checked central difference of a smooth scalar function f(t) at t = 0.

    D(h) = f'(0) + c h^2 + O(h^4), so D(h) - D(2h) = -3 c h^2 + O(h^4) estimates the truncation error of D(h)
    (a third of it, with margin 2); rounding in f (each value faithful, |f| <= magnitude) adds at most
    2 * 2^-52 * magnitude / (2h) in units of f. The analytic derivative must agree within their sum, plus 3%
    of the truncation estimate's own error (the O(h^4) term) folded into the factor 2.
    """
    h = scale
    d1, d2 = _central(f, h), _central(f, 2 * h)
    trunc = abs(d1 - d2)
    rounding = 4 * 2.0**-52 * magnitude / h
    assert abs(d1 - analytic) <= 2 * trunc + 4 * rounding, (d1, d2, analytic)


def _exact_direction(base: np.ndarray, v: np.ndarray, h: float) -> np.ndarray:
    """v rounded so that base + t v is exact for |t| <= 2h (h a power of two): each step h v a multiple of
    twice the largest spacing of base (spacings are powers of two, so a multiple of every smaller one)."""
    quantum = 2 * np.spacing(np.abs(base)).max()
    return np.round(h * v / quantum) * quantum / h


@settings(max_examples=30, deadline=None)
@given(ref_cases(max_block=40, recipes=("normal", "offset", "near_eps")), st.integers(0, 2**31))
def test_backward_and_second_order_match_finite_differences(case: RefCase, seed: int) -> None:
    a = case.arrays()
    x, dy, g, eps = a["x"], a["dy"], case.num_groups, case.eps
    w, b = _affine(case)
    if case.shape[1] // g * int(np.prod(case.shape[2:])) == 1:
        return  # one element per group: the output is constant in x
    rng = np.random.default_rng(seed)
    v = rng.standard_normal(x.shape)
    vw = rng.standard_normal(w.shape)
    # scale the step to the spread of each group (its std), so the directions are comparable
    std = np.sqrt(x.reshape(x.shape[0], g, -1).var(-1) + eps)
    v = (v.reshape(x.shape[0], g, -1) * std[..., None]).reshape(x.shape)
    h = 2.0**-14
    # make x + t v and w + t vw exact for t in {+-h, +-2h}: steps are multiples of twice the largest spacing
    v, vw = _exact_direction(x, v, h), _exact_direction(w, vw, h)

    def loss(t: float) -> float:
        return float(np.sum(dy * gn_spec.group_norm(x + t * v, g, w + t * vw, b, eps)))

    gx, gw, _ = gn_spec.group_norm_backward(dy, x, g, w, eps)
    magnitude = float(np.sum(np.abs(dy) * (np.abs(gn_spec.group_norm(x, g, w, b, eps)) + 1)))
    _check_derivative(loss, float(np.sum(gx * v) + np.sum(gw * vw)), h, magnitude)

    # second order: d/dt <ggx, dx(x + t v, w + t vw)> + <ggw, dw(...)> = <grad_x, v> + <grad_weight, vw>
    ggx, ggw, ggb = a["ggx"], a["ggw"], a["ggb"]

    def inner(t: float) -> float:
        dx_, dw_, db_ = gn_spec.group_norm_backward(dy, x + t * v, g, w + t * vw, eps)
        return float(np.sum(ggx * dx_) + np.sum(ggw * dw_) + np.sum(ggb * db_))

    ggo, dgx, dgw = gn_spec.group_norm_double_backward(ggx, ggw, ggb, dy, x, g, w, eps)
    mag2 = float(np.sum(np.abs(ggx * gx)) + np.sum(np.abs(ggw * gw)) + np.sum(np.abs(ggb)) * np.abs(dy).sum())
    _check_derivative(inner, float(np.sum(dgx * v) + np.sum(dgw * vw)), h, mag2 + 1e-300)
    # the backward is linear in grad_output, so <ggo, u> = <ggx, dx(u)> + <ggw, dw(u)> + <ggb, db(u)> exactly
    u = rng.standard_normal(x.shape)
    dx_u, dw_u, db_u = gn_spec.group_norm_backward(u, x, g, w, eps)
    lhs = float(np.sum(ggo * u))
    rhs = float(np.sum(ggx * dx_u) + np.sum(ggw * dw_u) + np.sum(ggb * db_u))
    terms = float(
        np.sum(np.abs(ggo * u))
        + np.sum(np.abs(ggx * dx_u))
        + np.sum(np.abs(ggw * dw_u))
        + np.sum(np.abs(ggb * db_u))
    )
    assert abs(lhs - rhs) <= 4 * x.size * 2.0**-52 * terms  # recursive float64 sums of faithful products


@pytest.mark.xfail(
    strict=True, reason="finding: torch 2.13 float64 group_norm backward overflows (r^3) for var ~ 1e-300"
)
def test_torch_float64_backward_with_tiny_variance() -> None:
    """A real PyTorch defect, kept as a strict xfail so a fixed release is noticed: for a group whose
    variance and eps are near 1e-300, r = 1/sqrt(var + eps) ~ 1e150 is representable and so is the exact
    grad_input (~1e149), but torch's CPU kernel forms r^3 (~1e450, inf) and returns NaN."""
    case = RefCase((1, 2), 1, 1e-300, "near_eps", 0, False, 0)
    a = case.arrays()
    theirs = torch_all(case)["grad_input"].detach().numpy()
    ours = gn_spec.group_norm_backward(a["dy"], a["x"], 1, None, 1e-300)[0]
    tol = error_model.backward_tolerances(a["dy"], a["x"], 1, None, 1e-300, "float64")["grad_input"]
    assert np.isfinite(ours).all()
    _agrees("grad_input", theirs, ours, tol)
