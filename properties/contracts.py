"""Contracts: what a Group Normalization must do besides computing the right numbers.

Output shape, dtype (and device) equal to the input's; inputs left unmodified; invalid num_groups rejected
with an exception; gradients in their parameters' shapes and the input dtype; repeated calls giving identical
outputs; and no tampering with numpy or gn_spec in the process that runs the target.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
from hypothesis import strategies as st

from gn_spec.checker.failure_kinds import (
    ACCEPTED_INVALID,
    CRASHED,
    MODIFIED_INPUT,
    NONDETERMINISTIC,
    TAMPERED,
    WRONG_STRUCTURE,
)
from gn_spec.checker.probe import Probe
from gn_spec.checker.property_framework import Draw, Outcome, default_cases, failure_of, gn_property
from gn_spec.checker.reproducer import BEFORE_IMPORT
from gn_spec.checker.target import CheckConfig
from gn_spec.checker.worker_process import CallResult
from gn_spec.properties.agreement import has_backward
from gn_spec.strategies import Case, invalid_case_strategy


def _returned(probe: Probe, result: CallResult, name: str, shape: tuple[int, ...]) -> str | None:
    """None when output ``name`` is an array of the API's type with ``shape``, the dtype under test and
    (torch) the device under test; else what is wrong with it."""
    d: dict[str, Any] = result.outputs.get(name, {})
    problem = probe.array(result, name, shape)
    if isinstance(problem, str):
        return problem
    if d.get("dtype") != probe.dtype:
        return f"{name} has dtype {d.get('dtype')}, expected {probe.dtype} (the input's)"
    if probe.api == "torch" and str(d.get("device", "")).split(":")[0] != probe.config.device:
        return f"{name} is on device {d.get('device')}, expected {probe.config.device} (the input's)"
    return None


_SHAPE_REPRO = """
y = forward(x, num_groups, weight, bias, eps)
print(type(y), getattr(y, "shape", None), getattr(y, "dtype", None), "for input", x.shape, DTYPE)
shape = tuple(getattr(y, "shape", ()))
assert shape == x.shape, f"the output: y has shape {shape}, expected {x.shape} (the input's)"
dtype = str(getattr(y, "dtype", type(y).__name__)).replace("torch.", "")
assert dtype == DTYPE, f"the output: y has dtype {dtype}, expected {DTYPE} (the input's)"
"""


@gn_property("output_shape_and_dtype")
def output_shape_and_dtype(probe: Probe, case: Case, draw: Draw) -> Outcome:
    """The output has the input's type, shape and dtype (and, for torch, device).

    shape(GN(x)) = shape(x),  dtype(GN(x)) = dtype(x);  numpy targets return numpy.ndarray, torch targets
    torch.Tensor on x's device.
    """
    inp = probe.inputs(case)
    result = probe.forward(inp.x, case.num_groups, case.eps, inp.weight, inp.bias)
    if result.status != "ok":
        return failure_of(result, "the forward call", repro=_SHAPE_REPRO)
    problem = _returned(probe, result, "y", case.shape)
    if problem is None:
        return Outcome.passed()
    return Outcome(
        ok=False, message=f"the output: {problem}", repro=_SHAPE_REPRO, failure_kind=WRONG_STRUCTURE
    )


def _changed(sent: np.ndarray, after: np.ndarray) -> str | None:
    """None when ``after`` holds the very values sent (bit for bit, NaN positions included)."""
    if after.shape != sent.shape:
        return f"its shape became {after.shape} (was {sent.shape})"
    a, b = np.asarray(after, dtype=np.float64), np.asarray(sent, dtype=np.float64)
    same = (a == b) | (np.isnan(a) & np.isnan(b))
    if same.all():
        return None
    first = tuple(int(i) for i in np.argwhere(~same)[0])
    return (
        f"{int((~same).sum())} of {same.size} values changed, first at index {first}: "
        f"{b[first]!r} became {a[first]!r}"
    )


_UNMODIFIED_REPRO = """
def copies(arrays):
    return [None if a is None else (a.detach().clone() if hasattr(a, "clone") else a.copy()) for a in arrays]


def modified(call, names, arrays, before):
    plain = [[as_float64(a) if hasattr(a, "clone") else a for a in v] for v in (arrays, before)]
    changed = [n for n, a, b in zip(names, *plain) if a is not None and not np.array_equal(a, b, equal_nan=1)]
    print(call, "modified:", ", ".join(changed) or "nothing")
    assert not changed, f"{call} modified its input {changed[0]}"


args = [native(x, True), native(weight), native(bias)]
before = copies(args)
target(args[0], num_groups, args[1], args[2], eps)
modified("the forward call", ("x", "weight", "bias"), args, before)
if "torch" in globals():  # the checker's backward call too: torch.autograd.grad through the same function
    leaves = _leaves(x, weight, bias)
    dy = native(grad_output, True)
    names = list(leaves) + ["grad_output"]
    arrays = list(leaves.values()) + [dy]
    before = copies(arrays)
    y = target(leaves["x"], num_groups, leaves.get("weight"), leaves.get("bias"), eps)
    _grad(y, list(leaves.values()), dy)
    modified("the backward call", names, arrays, before)
"""

_UNMODIFIED_REPRO_CS231N = """
args = [native(x), native(weight), native(bias)]
before = [a.copy() for a in args]
out, cache = forward_fn(args[0], args[1], args[2], num_groups, {"eps": eps})
dout = native(grad_output)
dout_before = dout.copy()
backward_fn(dout, cache)
changed = [name for name, a, b in zip(("x", "weight", "bias", "grad_output"), args + [dout],
                                      before + [dout_before]) if not np.array_equal(a, b, equal_nan=True)]
print("modified by the forward and backward calls:", ", ".join(changed) or "nothing")
assert not changed, f"the call modified its input {changed[0]}"
"""


@gn_property("input_not_modified", checks=("forward", "backward"))
def input_not_modified(probe: Probe, case: Case, draw: Draw) -> Outcome:
    """The implementation leaves its input arrays as they were.

    x, weight, bias (and grad_output in a backward pass) after the call = before the call, bit for bit.
    The worker sends back the very arrays (tensors) it passed; the comparison is made here, in the checker.
    """
    inp = probe.inputs(case)
    g, eps = case.num_groups, case.eps
    requests = [probe.request("forward", inp.x, g, eps, weight=inp.weight, bias=inp.bias, return_inputs=True)]
    if has_backward(probe.config) is None:
        requests.append(
            probe.request(
                "backward",
                inp.x,
                g,
                eps,
                weight=inp.weight,
                bias=inp.bias,
                grad_output=inp.grad_output,
                return_inputs=True,
            )
        )
    repro = _UNMODIFIED_REPRO_CS231N if probe.api == "cs231n" else _UNMODIFIED_REPRO
    for request, result in zip(requests, probe.run(requests), strict=True):
        what = f"the {request.op} call"
        if result.status not in ("ok", "unsupported"):
            return failure_of(result, what, repro=repro)
        for name, sent in request.arrays.items():
            d = result.inputs_after.get(name)
            if d is None or "array" not in d:
                return Outcome(
                    ok=False,
                    repro=repro,
                    message=f"{what}: its argument {name} could not be read "
                    f"back (it became {d.get('type') if d else 'nothing'})",
                    failure_kind=MODIFIED_INPUT,
                )
            change = _changed(sent, result.arrays[d["array"]])
            if change is not None:
                return Outcome(
                    ok=False,
                    message=f"{what} modified its input {name}: {change}",
                    repro=repro,
                    failure_kind=MODIFIED_INPUT,
                )
    return Outcome.passed()


def invalid_cases(config: CheckConfig) -> st.SearchStrategy[Case]:
    return invalid_case_strategy(config.dtype, four_d_only=config.api == "cs231n")


_INVALID_REPRO = """
try:
    y = forward(x, num_groups, weight, bias, eps)
except Exception as exc:
    print("rejected, as required:", repr(exc))
else:
    raise AssertionError(f"num_groups={num_groups} does not divide C={x.shape[1]}, yet the call returned a "
                         f"{type(y).__module__.split('.')[0]}.{type(y).__name__} instead of raising")
"""


@gn_property("rejects_invalid_groups", cases=invalid_cases)
def rejects_invalid_groups(probe: Probe, case: Case, draw: Draw) -> Outcome:
    """num_groups that does not divide C is rejected with an exception.

    C mod G != 0  =>  the call raises (an Exception; not SystemExit, not a crash), rather than returning
    numbers computed from some other grouping.  Cases include G > C.
    """
    inp = probe.inputs(case)
    result = probe.forward(inp.x, case.num_groups, case.eps, inp.weight, inp.bias)
    c = case.shape[1]
    if result.status == "raised" and result.exception is not None and result.exception.get("is_exception"):
        return Outcome.passed()
    if result.status == "ok" or result.status == "bad_return":
        returned = result.outputs.get("y", {})
        what = f"a {returned.get('type', 'value')}" if returned else "a value"
        return Outcome(
            ok=False,
            repro=_INVALID_REPRO,
            message=f"num_groups={case.num_groups} does not divide C={c}, yet the call returned {what} "
            "instead of raising",
            failure_kind=ACCEPTED_INVALID,
        )
    return failure_of(
        result,
        f"with num_groups={case.num_groups} not dividing C={c} the call did not raise an Exception",
        repro=_INVALID_REPRO,
        # a BaseException that is no Exception (SystemExit, ...) ends the caller's program: a crash
        kind=CRASHED if result.status == "raised" else None,
    )


def affine_cases(config: CheckConfig) -> st.SearchStrategy[Case]:
    return default_cases(config).map(lambda c: replace(c, affine="weight_bias"))


_GRAD_SHAPE_REPRO = """
grads = backward(x, num_groups, weight, bias, eps, grad_output)
print({name: g.shape for name, g in grads.items()}, "weight shape", weight.shape)
for name, shape in (("grad_input", x.shape), ("grad_weight", weight.shape), ("grad_bias", weight.shape)):
    assert grads[name].shape == shape, f"the backward: {name} has shape {grads[name].shape}, expected {shape}"
"""


@gn_property("gradient_shapes_and_dtypes", applies=has_backward, cases=affine_cases, checks=("backward",))
def gradient_shapes_and_dtypes(probe: Probe, case: Case, draw: Draw) -> Outcome:
    """The gradients come back in their arguments' shapes and the input dtype.

    shape(dx) = shape(x),  shape(dgamma) = shape(dbeta) = shape(gamma) = (C,),  all of x's dtype.
    (A classic CS231n slip returns dgamma of shape (1, C, 1, 1).)
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
        return failure_of(result, "the backward call", repro=_GRAD_SHAPE_REPRO)
    c = case.shape[1]
    for name, shape in (("grad_input", case.shape), ("grad_weight", (c,)), ("grad_bias", (c,))):
        problem = _returned(probe, result, name, shape)
        if problem is not None:
            return Outcome(
                ok=False,
                message=f"the backward: {problem}",
                repro=_GRAD_SHAPE_REPRO,
                failure_kind=WRONG_STRUCTURE,
            )
    return Outcome.passed()


_REPEAT_REPRO = """
y1 = as_float64(forward(x, num_groups, weight, bias, eps))
y2 = as_float64(forward(x, num_groups, weight, bias, eps))
print("identical:", np.array_equal(y1, y2, equal_nan=True), " largest difference:", np.nanmax(np.abs(y1 -
y2)))
assert np.array_equal(y1, y2, equal_nan=True) and np.array_equal(np.signbit(y1), np.signbit(y2)), (
    "two calls on the same input gave different outputs")
"""


@gn_property("repeated_calls_identical", weight=0.5)
def repeated_calls_identical(probe: Probe, case: Case, draw: Draw) -> Outcome:
    """Calling twice on the same input gives the same output, bit for bit.

    GN(x) computed twice: identical values (NaNs in the same places); a run-to-run difference means the result
    depends on something other than the input (uninitialized memory, races, state kept between calls).
    """
    inp = probe.inputs(case)
    request = probe.request("forward", inp.x, case.num_groups, case.eps, weight=inp.weight, bias=inp.bias)
    results = probe.run([request, request])
    arrays = []
    for result in results:
        if result.status != "ok":
            return failure_of(result, "the forward call", repro=_REPEAT_REPRO)
        y = probe.array(result, "y", case.shape)
        if isinstance(y, str):
            return Outcome(
                ok=False, message=f"the output: {y}", repro=_REPEAT_REPRO, failure_kind=WRONG_STRUCTURE
            )
        arrays.append(y)
    change = _changed(arrays[0], arrays[1])
    if change is None and np.array_equal(np.signbit(arrays[0]), np.signbit(arrays[1])):
        return Outcome.passed()
    return Outcome(
        ok=False,
        repro=_REPEAT_REPRO,
        message=f"two calls on the same input gave different outputs: {change or 'signs of zeros differ'}",
        failure_kind=NONDETERMINISTIC,
    )


_TAMPER_REPRO = f"""
from gn_spec.checker.worker_main import TamperGuard, watch_environment

guard = TamperGuard()
watch_environment(guard, API)  # what the worker fingerprints, before the target is imported
{BEFORE_IMPORT}
forward(x, num_groups, weight, bias, eps)
if "backward" in globals():  # an API with gradients: the worker calls the backward too
    backward(x, num_groups, weight, bias, eps, grad_output)
changes = guard.changes()
print("changed by importing or calling the target:", "; ".join(changes) or "nothing")
assert not changes, "the target tampered with its environment: " + "; ".join(changes)
"""


def one_small_case(config: CheckConfig) -> st.SearchStrategy[Case]:
    return st.just(Case(shape=(2, 4, 3, 3) if config.api == "cs231n" else (2, 4, 3), num_groups=2))


@gn_property("no_tampering", cases=one_small_case, weight=0.0, runs_last=True)
def no_tampering(probe: Probe, case: Case, draw: Draw) -> Outcome:
    """Neither importing nor calling the target alters numpy, gn_spec or torch in its process.

    Before importing the target the worker fingerprints the callables bound in numpy, numpy.lib.format, json,
    multiprocessing.connection, every gn_spec module (and torch, torch.autograd, torch.nn.functional,
    torch.Tensor for the torch API); after the import and after every call it reports the bindings that were
    replaced or deleted.  This property runs last and fails if any report, from any property's calls, was
    non-empty.  (The verdicts themselves are safe either way: they are made in the checker's own process.)
    """
    inp = probe.inputs(case)
    probe.forward(inp.x, case.num_groups, case.eps, inp.weight, inp.bias)
    seen = probe.worker.tampered
    if not seen:
        return Outcome.passed()
    listed = "; ".join(f"{change} {when}" for change, when in list(seen.items())[:8])
    more = f" (and {len(seen) - 8} more)" if len(seen) > 8 else ""
    return Outcome(
        ok=False,
        repro=_TAMPER_REPRO,
        message=f"the target tampered with its environment: {listed}{more}",
        failure_kind=TAMPERED,
    )
