"""Agreement with the reference: forward, backward and second order, judged by the error model.

Each property computes the exact answer with gn_spec's faithful float64 reference on the very values the
target received (the inputs are exact in the dtype under test) and judges every element i by

    err_i = |observed_i - exact_i| / (u * s_i) <= B_i,

u the unit roundoff of the dtype, s_i the element's scale and B_i its bound from ``gn_spec.error_model``
(SPEC.md, "Error model").  The reference's own error (under one float64 ulp) is part of B_i.
"""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

import gn_spec
from gn_spec.checker.failure_kinds import WRONG_STRUCTURE
from gn_spec.checker.probe import Probe
from gn_spec.checker.property_framework import (
    Draw,
    Outcome,
    default_cases,
    failure_of,
    from_judgements,
    gn_property,
)
from gn_spec.checker.target import CheckConfig, pooled_shapes
from gn_spec.error_model import backward_tolerances, double_backward_tolerances, forward_tolerance, judge
from gn_spec.profiles import PROFILES
from gn_spec.strategies import AFFINES, EPS_VALUES, Case


def has_backward(config: CheckConfig) -> str | None:
    """Backward agreement needs a differentiable API: torch (autograd) or cs231n (its backward function),
    or a built-in target whose framework differentiates."""
    if config.target.kind == "builtin":
        return _builtin_order(config, "backward")
    if config.api in ("torch", "cs231n") or config.target.kind == "reference":
        return None
    return "a plain numpy function has no backward pass (use --api torch or --api cs231n)"


def has_second_order(config: CheckConfig) -> str | None:
    """Second order needs torch.autograd (create_graph=True), or a built-in target that has it."""
    if config.target.kind == "builtin":
        return _builtin_order(config, "second order")
    if config.api == "torch" or config.target.kind == "reference":
        return None
    return f"the {config.api} API has no second-order derivative (use --api torch)"


def _builtin_order(config: CheckConfig, order: str) -> str | None:
    from gn_spec.checker.builtins import BY_NAME

    target = BY_NAME[config.target.location]
    orders, why = target.orders_with(config.target_options)
    if order in orders:
        return None
    return f"{target.name} has no {order}: {why}"


_FORWARD_REPRO = """
observed = as_float64(forward(x, num_groups, weight, bias, eps))
expected = gn_spec.group_norm(x, num_groups, weight, bias, eps)
verdict = judge("output", observed, expected, forward_tolerance(x, num_groups, weight, bias, eps, DTYPE))
print(verdict.message)
assert verdict.passed, "the target does not conform"
"""


@gn_property("forward_agreement")
def forward_agreement(probe: Probe, case: Case, draw: Draw) -> Outcome:
    """The forward output agrees with the reference within the error model.

    y_i = w_c (x_i - mu_g) / sqrt(var_g + eps) + b_c, judged elementwise:
    |y~_i - y_i| <= B(m) u s_i with s_i = |w_c| r_g (|x_i| + <|x|>_g) + |b_c|, r_g = (var_g + eps)^(-1/2).

    Applies to every API, every valid shape (0 to 3 spatial dims), group count, eps and affine choice the
    profile generates.
    """
    inp = probe.inputs(case)
    result = probe.forward(inp.x, case.num_groups, case.eps, inp.weight, inp.bias)
    if result.status != "ok":
        return failure_of(result, "the forward call", repro=_FORWARD_REPRO)
    y = probe.array(result, "y", case.shape)
    if isinstance(y, str):
        return Outcome(
            ok=False, message=f"the forward output: {y}", repro=_FORWARD_REPRO, failure_kind=WRONG_STRUCTURE
        )
    expected = gn_spec.group_norm(inp.x, case.num_groups, inp.weight, inp.bias, case.eps)
    tol = forward_tolerance(inp.x, case.num_groups, inp.weight, inp.bias, case.eps, probe.dtype)
    verdict = from_judgements([judge("output", y, expected, tol)], "the forward output", _FORWARD_REPRO)
    if not verdict.ok:
        verdict.diagnose = lambda: probe.diagnose_forward(y, inp, case)
    return verdict


_BACKWARD_REPRO = """
observed = backward(x, num_groups, weight, bias, eps, grad_output)
expected = dict(zip(("grad_input", "grad_weight", "grad_bias"),
                    gn_spec.group_norm_backward(grad_output, x, num_groups, weight, eps)))
tolerances = backward_tolerances(grad_output, x, num_groups, weight, eps, DTYPE)
verdicts = [judge(name, observed[name], expected[name], tolerances[name]) for name in observed]
for verdict in verdicts:
    print(verdict.message)
assert all(v.passed for v in verdicts), "the target does not conform"
"""


def backward_cases(config: CheckConfig) -> st.SearchStrategy[Case]:
    """The profile's cases, with large groups as many times rarer as backward_agreement weighs in the profile
    (gn_spec.profiles.BACKWARD_EMPHASIS): its weight buys more of the small and middle-sized cases, and as
    many large-group cases as at weight 1 (each costs about 20 small ones, mostly in the exact reference on
    its long groups)."""
    profile = PROFILES[config.profile]
    weight = profile.budget.weight_of("backward_agreement", 1.0)
    return default_cases(config, large_every=round(profile.limits.large_every * weight))


@gn_property(
    "backward_agreement",
    applies=has_backward,
    cases=backward_cases,
    checks=("backward",),
)
def backward_agreement(probe: Probe, case: Case, draw: Draw) -> Outcome:
    """The gradients of x, weight and bias agree with the reference's vector-Jacobian product.

    With a = w dy, xhat = (x - mu) r and means <.> over the group:
    dx_i = r (a_i - <a> - xhat_i <a xhat>),  dw_c = sum_{i in c} dy_i xhat_i,  db_c = sum_{i in c} dy_i,
    each judged elementwise within B u s (``gn_spec.error_model.backward_tolerances``).  torch targets are
    differentiated with torch.autograd.grad; cs231n targets through spatial_groupnorm_backward.  Gradients of
    weight and bias are judged when the case has them (cs231n always has).
    """
    inp = probe.inputs(case)
    request = probe.request(
        "backward",
        inp.x,
        case.num_groups,
        case.eps,
        weight=inp.weight,
        bias=inp.bias,
        grad_output=inp.grad_output,
    )
    result = probe.run([request])[0]
    if result.status != "ok":
        return failure_of(result, "the backward call", repro=_BACKWARD_REPRO)
    exact = gn_spec.group_norm_backward(inp.grad_output, inp.x, case.num_groups, inp.weight, case.eps)
    tolerances = backward_tolerances(
        inp.grad_output, inp.x, case.num_groups, inp.weight, case.eps, probe.dtype
    )
    judgements = []
    c = case.shape[1]
    wanted = [("grad_input", 0, case.shape)]
    wanted += [("grad_weight", 1, (c,))] if inp.weight is not None else []
    wanted += [("grad_bias", 2, (c,))] if inp.bias is not None else []
    observed: list[np.ndarray | None] = [None, None, None]
    for name, k, shape in wanted:
        got = probe.array(result, name, shape)
        if isinstance(got, str):
            return Outcome(
                ok=False, message=f"the backward: {got}", repro=_BACKWARD_REPRO, failure_kind=WRONG_STRUCTURE
            )
        observed[k] = got
        judgements.append(judge(name, got, exact[k], tolerances[name]))
    verdict = from_judgements(judgements, "the backward", _BACKWARD_REPRO)
    if not verdict.ok:
        verdict.diagnose = lambda: probe.diagnose_backward(observed, inp, case)
    return verdict


_SECOND_ORDER_REPRO = """
ggi, ggw, ggb = inputs.grad_grad_input, inputs.grad_grad_weight, inputs.grad_grad_bias
observed = double_backward(x, num_groups, weight, bias, eps, grad_output, ggi, ggw, ggb)
expected = gn_spec.group_norm_double_backward(ggi, ggw, ggb, grad_output, x, num_groups, weight, eps)
tolerances = double_backward_tolerances(ggi, ggw, ggb, grad_output, x, num_groups, weight, eps, DTYPE)
pairs = [("grad_grad_output", "grad_grad_output", 0), ("grad_x", "double_grad_input", 1),
         ("grad_weight", "double_grad_weight", 2)]
verdicts = [judge(q, observed[name], expected[k], tolerances[q]) for name, q, k in pairs if name in observed]
for verdict in verdicts:
    print(verdict.message)
assert all(v.passed for v in verdicts), "the target does not conform"
"""

#: Returned name, error-model quantity and position in group_norm_double_backward's result.
SECOND_ORDER_OUTPUTS = (
    ("grad_grad_output", "grad_grad_output", 0),
    ("grad_x", "double_grad_input", 1),
    ("grad_weight", "double_grad_weight", 2),
)


# Half the examples of the first-order properties: a case costs two differentiations in the worker and the
# reference's second order (often its exact tier) here; 130 cases keep the default profile within a minute.
@gn_property("second_order_agreement", applies=has_second_order, weight=0.5, checks=("second order",))
def second_order_agreement(probe: Probe, case: Case, draw: Draw) -> Outcome:
    """The second derivative (double backward) agrees with the reference.

    For cotangents (ggx, ggw, ggb) of the first-order gradients (dx, dw, db), torch.autograd.grad with
    create_graph=True gives the vector-Jacobian product of the backward with respect to (dy, x, w):
    ggo = w (P ggx) + ggw xhat + ggb (P the group projection b -> r (b - <b> - xhat <b xhat>)), and grad_x,
    grad_w from ``gn_spec.group_norm_double_backward``; each judged within B u s
    (``gn_spec.error_model.double_backward_tolerances``).
    """
    inp = probe.inputs(case)
    request = probe.request(
        "double_backward",
        inp.x,
        case.num_groups,
        case.eps,
        weight=inp.weight,
        bias=inp.bias,
        grad_output=inp.grad_output,
        grad_grad_input=inp.grad_grad_input,
        grad_grad_weight=inp.grad_grad_weight,
        grad_grad_bias=inp.grad_grad_bias,
    )
    result = probe.run([request])[0]
    if result.status != "ok":
        return failure_of(result, "the double backward", repro=_SECOND_ORDER_REPRO)
    args = (
        inp.grad_grad_input,
        inp.grad_grad_weight,
        inp.grad_grad_bias,
        inp.grad_output,
        inp.x,
        case.num_groups,
        inp.weight,
        case.eps,
    )
    exact = gn_spec.group_norm_double_backward(*args)
    tolerances = double_backward_tolerances(*args, probe.dtype)
    judgements = []
    for name, quantity, k in SECOND_ORDER_OUTPUTS:
        if name == "grad_weight" and inp.weight is None:
            continue
        observed = probe.array(result, name, np.shape(exact[k]))
        if isinstance(observed, str):
            return Outcome(
                ok=False,
                message=f"the double backward: {observed}",
                repro=_SECOND_ORDER_REPRO,
                failure_kind=WRONG_STRUCTURE,
            )
        judgements.append(judge(quantity, observed, exact[k], tolerances[quantity]))
    return from_judgements(judgements, "the double backward", _SECOND_ORDER_REPRO)


@st.composite
def single_value_cases(draw: st.DrawFn, config: CheckConfig) -> Case:
    """x of shape (1, C, 1, ..., 1) with G = C: one sample, one value per group (4-D or 5-D where the API or
    memory format needs it)."""
    if config.api == "cs231n":
        spatial = 2
    elif config.memory_format == "channels_last":
        spatial = draw(st.integers(2, 3))
    else:
        spatial = draw(st.integers(0, 3))
    c = draw(st.integers(1, 8))
    eps = draw(st.sampled_from(EPS_VALUES))
    if config.api == "cs231n":
        affine = "weight_bias"
    elif pooled_shapes(config):  # the affine form goes with the shape, as in a shape pool's entries
        affine = AFFINES[(c + spatial + (config.seed or 0)) % len(AFFINES)]
    else:
        affine = draw(st.sampled_from(AFFINES))
    return Case(
        shape=(1, c, *([1] * spatial)),
        num_groups=c,
        eps=eps,
        affine=affine,
        data="wide",
        log10_scale=draw(st.integers(-2, 2)),
        seed=draw(st.integers(0, 2**32 - 1)),
    )


_SINGLE_VALUE_REPRO = """
y = forward(x, num_groups, weight, bias, eps)
expected = gn_spec.group_norm(x, num_groups, weight, bias, eps)
print("output:", as_float64(y).ravel(), " expected (the bias):", expected.ravel())
verdict = judge("output", as_float64(y), expected, forward_tolerance(x, num_groups, weight, bias, eps, DTYPE))
print(verdict.message)
assert verdict.passed, "the target does not conform"
"""


@gn_property("single_value_groups", cases=single_value_cases)
def single_value_groups(probe: Probe, case: Case, draw: Draw) -> Outcome:
    """A single sample whose groups hold one value each is normalized, not rejected: the output is the bias.

    x of shape (1, C, 1, ..., 1), G = C: each group is {x_c}, mu = x_c, var = 0, so
    y_c = w_c * 0 / sqrt(eps) + b_c = b_c, and (torch, cs231n) dx = 0, dw = 0, db = dy; judged like
    forward_agreement and backward_agreement.  PyTorch's F.group_norm raises ValueError here ("Expected more
    than 1 value per channel when training"), a check carried over from batch norm; the other properties draw
    around this input so that such a rejection is reported once, here.
    """
    outcome = forward_agreement(probe, case, draw)
    if outcome.ok and has_backward(probe.config) is None:
        backward = backward_agreement(probe, case, draw)
        if not backward.ok or (backward.ratio or 0.0) > (outcome.ratio or 0.0):
            return backward
    if not outcome.ok and not outcome.repro:
        outcome.repro = _SINGLE_VALUE_REPRO
    return outcome
