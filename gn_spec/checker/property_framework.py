"""The property framework: what a property is, how it is registered, what it returns, and in what order the
catalogue runs.

A property is a plain function ``prop(probe, case, draw) -> Outcome`` (``probe``: the target as the
properties reach it, a :class:`~gn_spec.checker.probe.Probe`), registered with the decorator
:func:`gn_property` as a :class:`PropertySpec` in :data:`REGISTRY`.  :func:`failure_of` and
:func:`from_judgements` build the :class:`Outcome` of a call; :func:`default_cases` is the strategy of cases a
property gets unless it names its own.  :func:`in_declared_order` puts the registered properties in catalogue
order (``gn_spec.properties`` declares its modules; the runner, :mod:`gn_spec.checker.runner`, drives them
with Hypothesis in that order).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from hypothesis import strategies as st

from gn_spec.checker import failure_kinds
from gn_spec.checker.probe import Probe
from gn_spec.checker.target import CheckConfig, pooled_shapes
from gn_spec.checker.worker_process import CallResult
from gn_spec.error_model import Judgement
from gn_spec.strategies import Case, case_strategy, shape_pool

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
    them (e.g. blocks made constant), appended to the counterexample; ``headline``: what went wrong in a few
    words, where that is not the property's claim being false (a call that raised, crashed or hung says so,
    instead of a headline such as "leaves its input arrays as they were" for an input nobody modified);
    ``unexpressible``: the target cannot take this valid input at all (a call answered ``unexpressible``):
    the runner records it and goes on judging the inputs the target can express; ``failure_kind``: what kind
    of failure it is, one of :data:`gn_spec.checker.failure_kinds.KINDS` (every failing Outcome has one).
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
    headline: str = ""
    unexpressible: bool = False
    failure_kind: str = ""

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
    what a verdict built on it covers and whether its cases' grad_output is passed to the target;
    ``runs_last``: it must be the last property of the catalogue (see :func:`in_declared_order`).
    """

    name: str
    function: Callable[[Probe, Case, Draw], Outcome]
    applies: Callable[[CheckConfig], str | None]
    cases: Callable[[CheckConfig], st.SearchStrategy[Case]]
    weight: float = 1.0
    checks: tuple[str, ...] = ("forward",)
    runs_last: bool = False

    def weight_in(self, profile: str) -> float:
        """The property's weight under ``profile`` (a profile may weigh a property more: its ``weights``)."""
        from gn_spec.profiles import PROFILES

        return PROFILES[profile].budget.weight_of(self.name, self.weight)

    @property
    def summary(self) -> str:
        doc = (self.function.__doc__ or self.name).strip()
        return doc.splitlines()[0].rstrip(".")

    @property
    def module(self) -> str:
        """The module that defines the property's function (where its place in the catalogue comes from)."""
        return self.function.__module__


#: Every registered property, in the order of registration.
REGISTRY: list[PropertySpec] = []


def default_cases(config: CheckConfig, **constraints: Any) -> st.SearchStrategy[Case]:
    """The profile's cases, restricted to what the API and memory format can take.

    cs231n takes 4-D x, gamma and beta always (so its cases always have weight and bias); channels_last exists
    for 4-D and 5-D only, so under it the cases are 4-D or 5-D (5-D by filtering the general strategy).
    Single-value inputs (:func:`is_single_value_input`) are left to their own property.
    """
    if pooled_shapes(config):
        if config.seed is None:
            raise ValueError("--shapes pooled: the pool is drawn from the run's seed, and none was given")
        constraints["pool"] = shape_pool(config.profile, config.seed)
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
    runs_last: bool = False,
) -> Callable[[Callable[[Probe, Case, Draw], Outcome]], Callable[[Probe, Case, Draw], Outcome]]:
    """Register a property function under ``name`` (the decorator of every function in gn_spec.properties)."""

    def register(fn: Callable[[Probe, Case, Draw], Outcome]) -> Callable[[Probe, Case, Draw], Outcome]:
        if any(p.name == name for p in REGISTRY):
            raise ValueError(f"property {name!r} is registered twice")
        REGISTRY.append(PropertySpec(name, fn, applies, cases, weight, checks, runs_last))
        return fn

    return register


def in_declared_order(specs: Iterable[PropertySpec], modules: Sequence[str]) -> list[PropertySpec]:
    """``specs`` in catalogue order: by module, in the order ``modules`` lists them, and within a module in
    the order the module defines them (its decorators run top to bottom), whatever order the modules were
    imported in.

    Raises RuntimeError for a property defined in a module that ``modules`` does not list (it would have no
    place in the order), for more than one property marked ``runs_last``, and for a property that would run
    after the one marked ``runs_last`` (``no_tampering`` judges every call made before it, so a property
    after it would go unwatched).
    """
    place = {m: i for i, m in enumerate(modules)}
    specs = list(specs)
    for spec in specs:
        if spec.module not in place:
            raise RuntimeError(
                f"property {spec.name!r} is defined in {spec.module}, which is not one of the catalogue's "
                f"modules {list(modules)}: add the module to MODULES in gn_spec.properties"
            )
    ordered = sorted(specs, key=lambda s: place[s.module])  # stable: definition order within a module
    names = [s.name for s in ordered]
    last = [s.name for s in ordered if s.runs_last]
    if len(last) > 1:
        raise RuntimeError(f"only one property can run last; {last} are all marked runs_last")
    if last and names[-1] != last[0]:
        after = names[names.index(last[0]) + 1 :]
        raise RuntimeError(
            f"{last[0]!r} must run last (it covers every call made before it), but {after} would run after "
            f"it: define them before it, or in a module listed before its module"
        )
    return ordered


def failure_of(result: CallResult, what: str, repro: str = "", kind: str | None = None) -> Outcome:
    """An Outcome for a call that did not return (raised, crashed, hung, bad structure); its kind comes from
    the call's status (:data:`~gn_spec.checker.failure_kinds.BY_CALL_STATUS`) unless ``kind`` is given."""
    reason = result.reason()
    return Outcome(
        ok=False,
        message=f"{what}: {reason}",
        process=result.is_failure_of_process,
        detail=((result.exception or {}).get("traceback", "") or result.log).rstrip(),
        repro=repro,
        headline=CALL_FAILURE_HEADLINES.get(result.status, "a call did not return values"),
        unexpressible=result.status == "unexpressible",
        failure_kind=kind or failure_kinds.BY_CALL_STATUS.get(result.status, failure_kinds.CRASHED),
    )


#: The headline of a failure that is a call not returning, by CallResult status: what happened, not the claim.
CALL_FAILURE_HEADLINES = {
    "raised": "the call raised an exception instead of returning",
    "crashed": "the target's process crashed",
    "timeout": "the target hung (no answer within the timeout)",
    "protocol_error": "the target's call could not be completed",
    "bad_return": "the target returned something that is not the expected arrays",
    "unexpressible": "the target cannot express this valid input",
}


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
        failure_kind=failure_kinds.of_judgement(first.nonfinite, first.worst_kind),
    )
