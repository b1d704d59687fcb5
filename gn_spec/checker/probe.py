"""What a property sees: a :class:`Probe` that calls the target through the worker, and the :class:`Outcome`
a property returns for one generated case.

Properties (``gn_spec.properties``) are plain functions ``prop(probe, case, draw) -> Outcome`` registered with
:func:`gn_property`; the runner (:mod:`gn_spec.checker.runner`) drives them with Hypothesis.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from hypothesis import assume
from hypothesis import strategies as st

from gn_spec.checker.client import CallRequest, CallResult, Worker
from gn_spec.checker.dtypes import CONTAINER
from gn_spec.checker.target import CheckConfig
from gn_spec.error_model import Judgement
from gn_spec.strategies import Case, Inputs, case_strategy, materialize

#: ``draw(strategy)``: extra Hypothesis draws a property makes beyond the case (a shift, a permutation, ...).
Draw = Callable[[st.SearchStrategy[Any]], Any]


@dataclass
class Outcome:
    """The verdict of a property on one case.

    ``ratio``: the worst judged error as a fraction of its bound (None when no numbers were judged);
    ``units``: the same error in the unit u * scale; ``message``: why it failed, one line; ``detail``: the
    worst element, observed against expected; ``repro``: Python lines that show the failure, run after the
    inputs are rebuilt (see :mod:`gn_spec.checker.reproducer`); ``process``: the failure was a crash or hang,
    which is costly to reproduce, so shrinking it is rationed; ``diagnose``: called once on the final
    counterexample, it names the known mistakes (``gn_spec.variants``) that explain the observed values;
    ``nonfinite``: outputs that were NaN or +-inf where the exact value is finite, and ``kind``: what the
    worst one was when the worst error is such an element (``"NaN output"``, ``"+inf output"``, ...);
    ``inputs_note``: how the inputs passed differ from the case's description, when the property changed
    them (e.g. blocks made constant), appended to the counterexample.
    """

    ok: bool
    ratio: float | None = None
    units: float | None = None
    message: str = ""
    detail: str = ""
    repro: str = ""
    process: bool = False
    diagnose: Callable[[], list[str]] | None = None
    nonfinite: int = 0
    kind: str = ""
    inputs_note: str = ""

    @staticmethod
    def passed(ratio: float | None = None, units: float | None = None) -> Outcome:
        return Outcome(ok=True, ratio=ratio, units=units)


@dataclass(frozen=True)
class PropertySpec:
    """A registered property: its function and when and on what it runs.

    ``applies(config)`` returns None when the property applies to the configuration, else the reason it does
    not; ``cases(config)`` is the Hypothesis strategy of cases it is fed; ``weight`` scales the profile's
    number of examples (metamorphic properties make two or more calls a case and need fewer cases);
    ``checks``: what of the target it judges (``"forward"``, ``"backward"``, ``"second order"``), which is
    what a verdict built on it covers and whether its cases' grad_output is passed to the target.
    """

    name: str
    function: Callable[[Probe, Case, Draw], Outcome]
    applies: Callable[[CheckConfig], str | None]
    cases: Callable[[CheckConfig], st.SearchStrategy[Case]]
    weight: float = 1.0
    checks: tuple[str, ...] = ("forward",)

    @property
    def summary(self) -> str:
        doc = (self.function.__doc__ or self.name).strip()
        return doc.splitlines()[0].rstrip(".")


REGISTRY: list[PropertySpec] = []


def default_cases(config: CheckConfig, **constraints: Any) -> st.SearchStrategy[Case]:
    """The profile's cases, restricted to what the API and memory format can take.

    cs231n takes 4-D x, gamma and beta always (so its cases always have weight and bias); channels_last exists
    for 4-D and 5-D only, so under it the cases are 4-D or 5-D (5-D by filtering the general strategy).
    Single-value inputs (:func:`is_single_value_input`) are left to their own property.
    """
    if config.api == "cs231n":
        constraints["four_d_only"] = True
        strategy = case_strategy(config.profile, config.dtype, **constraints).map(
            lambda c: replace(c, affine="weight_bias")
        )
    elif config.memory_format == "channels_last" and not constraints.get("four_d_only"):
        four = case_strategy(config.profile, config.dtype, **{**constraints, "four_d_only": True})
        five = case_strategy(config.profile, config.dtype, **constraints).filter(lambda c: len(c.shape) == 5)
        strategy = st.one_of(four, five)
    else:
        strategy = case_strategy(config.profile, config.dtype, **constraints)
    return strategy.filter(lambda c: not is_single_value_input(c))


def is_single_value_input(case: Case) -> bool:
    """N * m = 1: one sample whose groups hold one value each, e.g. x of shape (1, C) with G = C.

    Valid input (its output is the bias), but PyTorch's F.group_norm rejects it ("Expected more than 1 value
    per channel when training"), so it gets a property of its own (``single_value_groups``) and the other
    properties draw around it: otherwise every property of such a target would report the same rejection.
    """
    return case.shape[0] * case.group_size == 1


def always(config: CheckConfig) -> str | None:
    return None


def gn_property(
    name: str,
    *,
    applies: Callable[[CheckConfig], str | None] = always,
    cases: Callable[[CheckConfig], st.SearchStrategy[Case]] = default_cases,
    weight: float = 1.0,
    checks: tuple[str, ...] = ("forward",),
) -> Callable[[Callable[[Probe, Case, Draw], Outcome]], Callable[[Probe, Case, Draw], Outcome]]:
    """Register a property function under ``name`` (the decorator of every function in gn_spec.properties)."""

    def register(fn: Callable[[Probe, Case, Draw], Outcome]) -> Callable[[Probe, Case, Draw], Outcome]:
        if any(p.name == name for p in REGISTRY):
            raise ValueError(f"property {name!r} is registered twice")
        REGISTRY.append(PropertySpec(name, fn, applies, cases, weight, checks))
        return fn

    return register


def native_arrays(
    inputs: Inputs, dtype: str, names: tuple[str, ...] = ("x", "weight", "bias")
) -> dict[str, np.ndarray]:
    """The wire arrays of ``inputs`` (in the dtype's numpy container), leaving out absent weight/bias."""
    out = {}
    for name in names:
        a = getattr(inputs, name)
        if a is not None:
            out[name] = np.asarray(a).astype(CONTAINER[dtype])
    return out


class Probe:
    """The target as the properties see it: calls go through the worker; nothing of the target runs here."""

    def __init__(self, config: CheckConfig, worker: Worker) -> None:
        self.config = config
        self.worker = worker
        self.calls = 0

    @property
    def dtype(self) -> str:
        return self.config.dtype

    @property
    def api(self) -> str:
        return self.config.api

    def inputs(self, case: Case) -> Inputs:
        """The case's arrays for the dtype under test.

        A case whose values overflow the dtype (materialize can round a large offset to infinity in float16)
        is not a valid finite input; it is rejected here (``assume``) rather than judged.
        """
        inputs = materialize(case, self.config.dtype)
        assume(bool(np.all(np.isfinite(inputs.x))))
        return inputs

    def run(self, requests: list[CallRequest]) -> list[CallResult]:
        self.calls += len(requests)
        return self.worker.run(requests)

    def request(
        self,
        op: str,
        x: np.ndarray,
        num_groups: int,
        eps: float,
        *,
        weight: np.ndarray | None = None,
        bias: np.ndarray | None = None,
        return_inputs: bool = False,
        **more: np.ndarray | None,
    ) -> CallRequest:
        """A call of ``op`` on float64 arrays (exact in the dtype), converted to the dtype's container."""
        container = CONTAINER[self.config.dtype]
        arrays = {"x": x, "weight": weight, "bias": bias, **more}
        wire = {k: np.asarray(v).astype(container) for k, v in arrays.items() if v is not None}
        return CallRequest(op, num_groups, eps, wire, return_inputs)

    def forward(
        self,
        x: np.ndarray,
        num_groups: int,
        eps: float,
        weight: np.ndarray | None = None,
        bias: np.ndarray | None = None,
        return_inputs: bool = False,
    ) -> CallResult:
        return self.run(
            [
                self.request(
                    "forward", x, num_groups, eps, weight=weight, bias=bias, return_inputs=return_inputs
                )
            ]
        )[0]

    def diagnose_forward(self, observed: np.ndarray, inputs: Inputs, case: Case) -> list[str]:
        """Known mistakes (``gn_spec.variants``) that explain a failing forward output, best match first."""
        from gn_spec import variants

        found = variants.diagnose(
            observed,
            inputs.x,
            case.num_groups,
            inputs.weight,
            inputs.bias,
            case.eps,
            dtype=self.config.dtype,
        )
        return [d.message for d in found]

    def diagnose_backward(self, observed: list[np.ndarray | None], inputs: Inputs, case: Case) -> list[str]:
        """Known backward mistakes that explain failing (grad_input, grad_weight, grad_bias), best first."""
        from gn_spec import variants

        found = variants.diagnose_backward(
            observed,
            inputs.grad_output,
            inputs.x,
            case.num_groups,
            inputs.weight,
            case.eps,
            dtype=self.config.dtype,
        )
        return [d.message for d in found]

    # -- reading results ----------------------------------------------------------------------------------
    def array(self, result: CallResult, name: str, shape: tuple[int, ...]) -> np.ndarray | str:
        """The returned value ``name`` as float64, or a sentence saying why it is not a usable array."""
        d = result.outputs.get(name)
        if d is None:
            return f"returned no {name}"
        expected_kind = "tensor" if self.config.api == "torch" else "ndarray"
        what = {"tensor": "a torch.Tensor", "ndarray": "a numpy.ndarray"}[expected_kind]
        if d.get("kind") != expected_kind:
            return f"{name} is {_described(d)}, not {what}"
        if "array" not in d:
            return f"{name} is an array of dtype {d.get('dtype')}, which is not a real number type"
        a = result.arrays[d["array"]]
        if tuple(a.shape) != tuple(shape):
            return f"{name} has shape {tuple(a.shape)}, expected {tuple(shape)}"
        return np.asarray(a, dtype=np.float64)


def _described(d: dict[str, Any]) -> str:
    kind = d.get("kind")
    if kind == "sequence":
        return f"a {d.get('type')} of length {d.get('length')}"
    if kind == "other":
        return "None" if d.get("type") == "NoneType" else f"a {d.get('type')} ({d.get('repr', '')[:60]})"
    return f"a {d.get('type')} of dtype {d.get('dtype')} and shape {tuple(d.get('shape', ()))}"


def failure_of(result: CallResult, what: str, repro: str = "") -> Outcome:
    """An Outcome for a call that did not return (raised, crashed, hung, bad structure)."""
    reason = result.reason()
    return Outcome(
        ok=False,
        message=f"{what}: {reason}",
        process=result.is_failure_of_process,
        detail=((result.exception or {}).get("traceback", "") or result.log).rstrip(),
        repro=repro,
    )


def from_judgements(judgements: list[Judgement], what: str, repro: str = "") -> Outcome:
    """One Outcome from the judgements of a call's outputs: the worst ratio decides, failures named."""
    worst = max(judgements, key=lambda j: j.max_ratio)
    failed = [j for j in judgements if not j.passed]
    if not failed:
        return Outcome.passed(worst.max_ratio, worst.worst_error)
    first = max(failed, key=lambda j: j.max_ratio)
    names = ", ".join(j.quantity for j in failed)
    return Outcome(
        ok=False,
        ratio=first.max_ratio,
        units=first.worst_error,
        message=f"{what} disagrees with the reference beyond the error model ({names})",
        detail="\n".join(j.message for j in failed),
        repro=repro,
        nonfinite=sum(j.nonfinite for j in judgements),
        kind=first.worst_kind,
    )
