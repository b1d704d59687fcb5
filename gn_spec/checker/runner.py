"""The check run: each property driven by Hypothesis against the worker, then a :class:`Report`.

Per property, Hypothesis draws cases (structure only; numpy fills the values), steers towards large errors
with ``hypothesis.target`` on the worst error ratio, and on the first failure stops generating and shrinks to
a minimal counterexample; the other properties still run.  Shrinking is rationed, counted in calls (not
seconds, so that ``--seed`` reproduces the whole run): a crash or hang costs a worker restart each time, so
such failures shrink only a few steps.  Nothing is written to the user's folder (no example database).

With a deviations file (:mod:`gn_spec.checker.deviations`), a generated input in a declared region is
counted and not judged (the property is not called on it, and it does not count against the property's
budget of cases: Hypothesis goes on generating until that many inputs outside the regions were judged); a
failure of a declared kind in a region is counted and excused (and not counted as a case either); a
property declared failing as a whole that fails is an expected failure.  After the property's run its regions
are re-checked on a few of the inputs they excluded.
Without one, nothing of this runs: the same seed gives the same cases and verdicts.

``jobs=N`` (``--jobs``) runs the properties in N processes of the checker, each with its own worker of the
target (:func:`_run_in_processes`); a property's result does not depend on the process that runs it (its
Hypothesis seed is its own, and Hypothesis does not mix constants of the checker's own source into the
cases: :func:`_fixed_generation`), so the report is that of ``jobs=1`` but for timings and call counters.
What does differ: the hang budget (:data:`~gn_spec.checker.worker_process.HANG_BUDGET`) is each process's,
and a target that keeps state from call to call sees another sequence of calls.
"""

from __future__ import annotations

import contextlib
import datetime
import math
import random
import tempfile
import time
import warnings
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any, TextIO

import hypothesis
import numpy as np
from hypothesis import HealthCheck, Phase, Verbosity, given
from hypothesis import strategies as st
from hypothesis.errors import HypothesisDeprecationWarning, HypothesisException, Unsatisfiable

from gn_spec.checker import reproducer
from gn_spec.checker.builtins import BY_NAME
from gn_spec.checker.deviations import (
    RECHECK_EXAMPLES,
    REPRODUCES,
    STALE,
    UNDECIDED,
    UNMATCHED,
    Deviation,
    Deviations,
    case_fields,
    for_config,
)
from gn_spec.checker.failure_kinds import KINDS
from gn_spec.checker.jobs import JobProcesses
from gn_spec.checker.options import CONFIG, RUN, signature_with_options, validated
from gn_spec.checker.probe import Probe
from gn_spec.checker.property_framework import (
    CALL_FAILURE_HEADLINES,
    Outcome,
    PropertySpec,
    default_cases,
    is_single_value_input,
)
from gn_spec.checker.report import (
    EXPECTED_FAILURE,
    FAILED,
    NOT_APPLICABLE,
    PASSED,
    DeviationOutcome,
    PropertyResult,
    Report,
    format_ratio,
)
from gn_spec.checker.target import CheckConfig, UsageError, compiles_per_shape, make_config, processes_for
from gn_spec.checker.worker_process import HANG_BUDGET, WorkerProcess
from gn_spec.error_model import summation_class
from gn_spec.formats import round_to
from gn_spec.profiles import PROFILES
from gn_spec.reference import compile_cache
from gn_spec.strategies import Case

#: Hung calls a property may spend shrinking a hang, after the first.
HANG_SHRINKS = 1


class CheckerBug(BaseException):
    """gn-spec itself failed while judging (not the target): reported with a traceback, never as a verdict."""


class _Failed(Exception):
    """A property failed on a case; Hypothesis shrinks the case while this keeps being raised."""

    def __init__(self, case: Case, outcome: Outcome) -> None:
        super().__init__(outcome.message)
        self.case, self.outcome = case, outcome


class _StopShrinking(BaseException):
    """The shrinking budget is spent: end the Hypothesis run and keep the smallest failure seen so far."""


class _StopGenerating(BaseException):
    """The property's work budget is spent before any failure: it passed on the cases judged so far."""


class _Reproduced(BaseException):
    """The strict re-check of a deviation's region met a failure: the deviation still holds."""

    def __init__(self, case: Case, outcome: Outcome) -> None:
        super().__init__(outcome.message)
        self.case, self.outcome = case, outcome


@dataclass
class _Tally:
    cases: int = 0
    worst: float | None = None
    worst_units: float | None = None
    worst_kind: str = ""
    worst_nonfinite: int = 0
    worst_case: tuple[Case, str] | None = None  # the case of the worst failing ratio, and its detail
    failures: int = 0
    process_failures: int = 0
    hangs: int = 0
    last: tuple[Case, Outcome] | None = None
    work: float = 0.0
    shrink_work: float = 0.0
    unexpressible: int = 0  # generated inputs the target cannot take (not judged), and the first of them
    first_unexpressible: tuple[Case, Outcome] | None = None
    stop: BaseException | None = None  # the budget stop raised into Hypothesis, if one was


def target_score(ratio: float) -> float:
    """What Hypothesis climbs: log2 of the error ratio, in steps of 1/4 (about 19%).

    The steps keep the target phase from chasing improvements in the last digits, which cost most of a run's
    time (measured: 80% of second_order_agreement's) for no better counterexample; a ratio that grows by a
    fifth or more still counts.  Non-finite ratios (NaN where a number was due) and zero map to the ends.
    """
    if not ratio > 0:
        return -60.0
    if not math.isfinite(ratio):
        return 60.0
    return max(-60.0, min(60.0, round(4 * math.log2(ratio)) / 4))


def checked_by(spec: PropertySpec, config: CheckConfig) -> list[str]:
    """What of the target ``spec`` judged under ``config``: its ``checks`` that the API has."""
    from gn_spec.properties.agreement import has_backward, has_second_order

    able = {"backward": has_backward(config) is None, "second order": has_second_order(config) is None}
    return [c for c in spec.checks if able.get(c, True)]


def cases_for(spec: PropertySpec, config: CheckConfig) -> st.SearchStrategy[Case]:
    """``spec``'s cases, with eps rounded to the format a built-in target stores it in (ONNX's epsilon is a
    32-bit float): the target is judged against GN with the eps it holds, which is the format's doing."""
    cases = spec.cases(config)
    eps_format = eps_format_of(config)
    if eps_format is None:
        return cases
    return cases.map(lambda c: replace(c, eps=float(round_to(np.float64(c.eps), eps_format))))


def eps_format_of(config: CheckConfig) -> str | None:
    """The format the target stores eps in, where that is not the dtype under test (else None)."""
    if config.target.kind != "builtin":
        return None
    return BY_NAME[config.target.location].eps_format


@contextlib.contextmanager
def _fixed_generation() -> Iterator[None]:
    """Hypothesis without the constants it harvests from the source of "local" modules (those imported from
    outside site-packages and the standard library: gn-spec itself in an editable install, the user's
    script), which it mixes into a few of the numbers it draws.  They say nothing about the target (which is
    never imported here), and they depend on which modules this process happens to have imported, so they
    would make the cases of a seed differ between a property run alone, after others, in a ``--jobs``
    process or under pytest.  Internal to Hypothesis: where it is not there, nothing is changed.
    """
    try:
        from hypothesis.internal.conjecture import providers

        original = providers._get_local_constants
        empty = providers.Constants()
        cache = providers.CONSTANTS_CACHE.cache
    except (ImportError, AttributeError):  # another Hypothesis: no local constants to leave out
        yield
        return
    providers._get_local_constants = lambda: empty
    cache.clear()  # its entries may hold constants harvested before
    try:
        yield
    finally:
        providers._get_local_constants = original
        cache.clear()


def property_seed(seed: int, name: str) -> int:
    """Each property's Hypothesis seed: the run's seed mixed with the property's name."""
    return (seed + zlib.crc32(name.encode())) % 2**32


def run_property(
    spec: PropertySpec,
    probe: Probe,
    seed: int,
    progress: TextIO | None = None,
    deviations: Deviations | None = None,
) -> PropertyResult:
    """Drive one property with Hypothesis and summarize it (``deviations``: the declared ones, if any),
    judged with the bounds of the run's summation class (``--summation``)."""
    with summation_class(probe.config.summation):
        return _run_property(spec, probe, seed, progress, deviations)


def _run_property(
    spec: PropertySpec,
    probe: Probe,
    seed: int,
    progress: TextIO | None,
    deviations: Deviations | None,
) -> PropertyResult:
    config = probe.config
    start = time.perf_counter()
    reason = spec.applies(config)
    if reason is not None:
        return PropertyResult(
            spec.name, spec.summary, NOT_APPLICABLE, message=reason, replay=replay_of(config, spec)
        )
    budget = PROFILES[config.profile].budget
    weight = spec.weight_in(config.profile)
    tally = _Tally()
    active = [] if deviations is None else deviations.for_property(spec.name, config)
    regions = [d for d in active if d.cases is not None and d.kinds is None]  # not judged at all
    narrowed = [d for d in active if d.cases is not None and d.kinds is not None]  # failures excused
    counted = {d.number: 0 for d in active}  # inputs excluded (regions), failures excused (narrowed)
    seen = {d.number: 0 for d in narrowed}  # region inputs the property was called on (narrowed)
    kept: dict[int, list[Case]] = {d.number: [] for d in regions}  # for the strict re-check

    @hypothesis.settings(
        max_examples=max(1, round(budget.examples * weight)),
        database=None,
        deadline=None,
        derandomize=False,
        phases=(Phase.explicit, Phase.generate, Phase.target, Phase.shrink),
        suppress_health_check=list(HealthCheck),
        verbosity=Verbosity.quiet,
        report_multiple_bugs=False,
        print_blob=False,
    )
    @hypothesis.seed(property_seed(seed, spec.name))
    @given(case=cases_for(spec, config), data=st.data())
    def check(case: Case, data: st.DataObject) -> None:
        fields = case_fields(case, config.dtype) if regions or narrowed else {}
        if regions:
            hit = next((d for d in regions if d.covers(fields)), None)
            if hit is not None:  # a declared region: counted, not judged, and not one of the property's cases
                counted[hit.number] += 1
                if len(kept[hit.number]) < RECHECK_EXAMPLES and case not in kept[hit.number]:
                    kept[hit.number].append(case)
                hypothesis.reject()  # so the inputs outside the regions get the property's whole budget
        elements = math.prod(case.shape)
        if tally.last is None:
            tally.work += elements  # a property of weight above 1 may process that many times the work
            if tally.work > budget.work * max(weight, 1.0) and tally.cases:
                tally.stop = _StopGenerating()
                raise tally.stop
        else:  # shrinking: the same budget for every weight (the two-call properties' elements count half)
            tally.shrink_work += elements * min(max(weight, 0.5), 1.0)
            if tally.shrink_work > budget.shrink_work:
                tally.stop = _StopShrinking()
                raise tally.stop
        try:
            # the judging meets NaN and inf on purpose: no numpy RuntimeWarning may reach the user's console
            with np.errstate(all="ignore"):
                outcome = spec.function(probe, case, data.draw)
        except (HypothesisException, _Failed, _StopShrinking, _StopGenerating):
            raise
        except Exception as exc:
            raise CheckerBug(f"property {spec.name} raised {exc!r} on {case.describe()}") from exc
        if outcome.unexpressible:  # recorded, not judged: the property goes on with the inputs it can take
            tally.unexpressible += 1
            tally.first_unexpressible = tally.first_unexpressible or (case, outcome)
            return
        if not outcome.ok and outcome.failure_kind not in KINDS:
            raise CheckerBug(
                f"property {spec.name} failed without a known failure kind ({outcome.failure_kind!r}; "
                f"known: {', '.join(KINDS)}): {outcome.message}"
            )
        if narrowed:
            inside = [d for d in narrowed if d.covers(fields)]
            for d in inside:
                seen[d.number] += 1
            excused = next((d for d in inside if d.excuses(outcome.failure_kind)), None)
            if not outcome.ok and excused is not None:  # a declared failure: counted, not a verdict
                counted[excused.number] += 1
                hypothesis.reject()  # nor one of the property's cases, as an input in a region
        tally.cases += 1
        if outcome.ratio is not None:
            if tally.worst is None or not outcome.ratio <= tally.worst:
                tally.worst, tally.worst_units = outcome.ratio, outcome.units
                tally.worst_kind, tally.worst_nonfinite = outcome.kind, outcome.nonfinite
                if not outcome.ok:
                    tally.worst_case = (case, outcome.detail + outcome.inputs_note)
            hypothesis.target(target_score(outcome.ratio), label="log2(error / bound)")
        if outcome.ok:
            return
        if tally.failures == 0 and progress is not None:
            first_line = outcome.message.splitlines()[0] if outcome.message else "failed"
            progress.write(f"    {spec.name}: found a failure, shrinking it: {first_line}\n")
            progress.flush()
        tally.failures += 1
        tally.process_failures += outcome.process
        tally.hangs += outcome.headline == CALL_FAILURE_HEADLINES["timeout"]
        tally.last = (case, outcome)
        # a hang ends the property: at most HANG_SHRINKS more hung calls go into shrinking it, none once the
        # run's hang budget is spent (each hung call costs a timeout and a worker restart)
        if (
            tally.failures > budget.shrink_failures
            or tally.process_failures > budget.process_failures
            or tally.hangs > (HANG_SHRINKS if probe.worker.hangs < HANG_BUDGET else 0)
        ):
            tally.stop = _StopShrinking()
            raise tally.stop
        raise _Failed(case, outcome)

    note = ""
    try:
        with _fixed_generation():
            check()
    except _Failed as exc:
        tally.last = (exc.case, exc.outcome)
    except (_StopShrinking, _StopGenerating):
        pass  # the budget stop, said below
    except HypothesisException as exc:
        # passed on no case: every input Hypothesis generated lay in a declared region (it gives up after a
        # few hundred rejections with none accepted); the deviations report says how many were excluded
        all_excluded = isinstance(exc, Unsatisfiable) and not tally.cases and any(counted.values())
        if tally.stop is not None:
            # our budget stop ended the run, and Hypothesis's bookkeeping objected to it: the stop ended an
            # input before the draws that an earlier input with the same start went on to make, which
            # Hypothesis reads as inconsistent generation. It is not: the stop stands, as if it had come out.
            pass
        elif all_excluded and tally.last is None:
            pass
        elif tally.last is None:
            raise CheckerBug(f"property {spec.name}: Hypothesis failed: {exc!r}") from exc
        else:
            note = f" (Hypothesis: {type(exc).__name__}: the failure did not always recur)"
    if isinstance(tally.stop, _StopShrinking):
        if tally.hangs:
            note = (
                f" (a hang ends the property: shrinking stopped after {tally.hangs} hung calls; this is the "
                "smallest hanging input found)"
            )
        else:
            note = " (shrinking stopped early: its budget was spent; this is the smallest failure found)"
    # a _StopGenerating: passed, the work budget ran out before the example budget
    seconds = time.perf_counter() - start
    if tally.unexpressible:
        note += (
            f" ({tally.unexpressible} generated inputs could not be expressed by the target and were not "
            f"judged; the {tally.cases} others were)"
        )
        if tally.last is None:
            tally.last = tally.first_unexpressible
    if tally.last is None:
        result = PropertyResult(
            spec.name,
            spec.summary,
            PASSED,
            cases=tally.cases,
            worst_error=tally.worst,
            worst_error_units=tally.worst_units,
            worst_error_kind=tally.worst_kind,
            nonfinite_elements=tally.worst_nonfinite,
            seconds=seconds,
            checks=checked_by(spec, config),
            replay=replay_of(config, spec),
            accuracy_class=_passed_class(spec, config),
        )
        return _with_deviations(result, spec, probe, seed, active, counted, seen, kept, start)
    case, outcome = tally.last
    worse = worst_kind_first(spec, probe, case, outcome, tally.worst_case, tally.worst_nonfinite)
    if worse is not None:
        note += (
            f" (the worst kind met, shown and shrunk first; the run also failed with finite errors, e.g. "
            f"{smaller_note(case)})"
        )
        case, outcome = worse
        tally.worst_case = None  # the worst case is now the one shown
    smaller = minimal_shape_pass(spec, probe, case, outcome)
    if smaller is not None:
        case, outcome = smaller
        note += f" (a last pass over smaller shapes of the same kind found this one, {smaller_note(case)})"
    found: list[str] = []
    if outcome.diagnose is not None:
        try:
            found = outcome.diagnose()
        except Exception as exc:  # diagnosis is a hint; never let it hide the verdict
            found = [f"(no diagnosis: gn_spec.variants raised {exc!r})"]
    script = reproducer.build(config, spec.name, case, outcome.repro or _CALL_ONLY_REPRO)
    checked = checked_by(spec, config)
    gradients = checked != ["forward"]
    described = case.describe(gradients=gradients) + outcome.inputs_note
    worst_case = None
    shown = outcome.ratio if outcome.ratio is not None else -math.inf
    if tally.worst_case is not None and tally.worst is not None and tally.worst > shown:
        worst, worst_detail = tally.worst_case
        worst_case = f"{worst.describe(gradients=gradients)} dtype={config.dtype}\n{worst_detail}".rstrip()
    result = PropertyResult(
        spec.name,
        spec.summary,
        FAILED,
        cases=tally.cases,
        worst_error=tally.worst,
        worst_error_units=tally.worst_units,
        worst_error_kind=tally.worst_kind,
        nonfinite_elements=tally.worst_nonfinite,
        counterexample=described + f" dtype={config.dtype}",
        reproducer=script,
        message=outcome.message + note,
        detail=outcome.detail,
        diagnosis=found,
        seconds=seconds,
        checks=checked,
        worst_case=worst_case,
        counterexample_fields=counterexample_fields(case, config.dtype),
        headline=outcome.headline,
        kind=outcome.failure_kind,
        replay=replay_of(config, spec),
        accuracy_class=accuracy_class(spec, probe, case, outcome, tally.worst_case, tally.worst_nonfinite),
    )
    return _with_deviations(result, spec, probe, seed, active, counted, seen, kept, start)


#: The accuracy classes a report gives an agreement property (SPEC.md 3.3).
WITHIN_LOG_DEPTH = "within the log-depth bound"
WITHIN_SEQUENTIAL = "within the sequential-summation bound"
SEQUENTIAL_ONLY = "within the sequential-summation bound only"
OUTSIDE_BOTH = "outside both"


def _is_agreement(spec: PropertySpec) -> bool:
    """The properties that judge values against the reference on every valid input (the classes' domain)."""
    return spec.module.endswith(".agreement") and spec.cases is default_cases


def _passed_class(spec: PropertySpec, config: CheckConfig) -> str:
    if not _is_agreement(spec):
        return ""
    return WITHIN_SEQUENTIAL if config.summation == "sequential" else WITHIN_LOG_DEPTH


def accuracy_class(
    spec: PropertySpec,
    probe: Probe,
    case: Case,
    outcome: Outcome,
    worst: tuple[Case, str] | None,
    worst_nonfinite: int,
) -> str:
    """Which summation class a failing agreement property's counterexample and worst case meet (empty for
    other properties and for failures that are not wrong values): each is judged again with the sequential
    class's bounds.  A non-finite output where the exact value is finite is outside both."""
    if not _is_agreement(spec) or outcome.headline or outcome.ratio is None:
        return ""
    if outcome.nonfinite or worst_nonfinite or probe.config.summation == "sequential":
        return OUTSIDE_BOTH  # under --summation sequential the failure is already beyond that class
    cases = [case] + ([worst[0]] if worst is not None and worst[0] != case else [])
    for c in cases:
        try:
            with summation_class("sequential"):
                again = judge_again(spec, probe, c)
        except ValueError:
            return ""  # a group beyond the sequential class's derivation: not assessed
        except Exception:  # noqa: BLE001 - e.g. an assume() outside Hypothesis: the case cannot be rejudged
            return ""
        if not again.ok:
            return OUTSIDE_BOTH
    return SEQUENTIAL_ONLY


#: Candidates the final minimal-shape pass tries at most (each one a call of the property).
MINIMAL_SHAPE_CANDIDATES = 40


def _ladder(size: int) -> list[int]:
    """1, 2, 3, 4, 8, 16, ... up to (and excluding) ``size``: the sizes a dimension is tried at."""
    steps = [s for s in (1, 2, 3) if s < size]
    p = 4
    while p < size:
        steps.append(p)
        p *= 2
    return steps + [size]


def smaller_shapes(case: Case, limit: int = MINIMAL_SHAPE_CANDIDATES) -> list[Case]:
    """Cases like ``case`` (same rank, recipe, eps, affine, seed) but with fewer elements, smallest first:
    N, the groups, the channels per group and each spatial size each from a ladder up to their own value."""
    if not case.valid or math.prod(case.shape) <= 1:
        return []
    n, c = case.shape[:2]
    g = case.num_groups
    per_group = c // g
    spatial = case.shape[2:]
    options: list[tuple[int, tuple[int, ...], int]] = []
    for n2 in _ladder(n):
        for g2 in _ladder(g):
            for k2 in _ladder(per_group):
                for rest in _spatial_ladders(spatial):
                    shape = (n2, g2 * k2, *rest)
                    size = math.prod(shape)
                    if size < math.prod(case.shape):
                        options.append((size, shape, g2))
    options.sort()
    out, seen = [], set()
    for _, shape, g2 in options:
        if (shape, g2) not in seen:
            seen.add((shape, g2))
            out.append(replace(case, shape=shape, num_groups=g2))
        if len(out) >= limit:
            break
    return out


def _spatial_ladders(spatial: tuple[int, ...]) -> list[tuple[int, ...]]:
    combos: list[tuple[int, ...]] = [()]
    for s in spatial:
        combos = [(*c, v) for c in combos for v in _ladder(s)]
    return combos


def _minimal_draw(strategy: st.SearchStrategy[Any]) -> Any:
    """The simplest value of ``strategy`` (what Hypothesis shrinks towards): the property's extra draws."""
    with _fixed_generation():
        return hypothesis.find(strategy, lambda _: True, settings=hypothesis.settings(database=None))


def judge_again(spec: PropertySpec, probe: Probe, case: Case) -> Outcome:
    """The property on one case, outside a Hypothesis run (the final passes over a failure): its extra draws
    take their simplest values, numpy's warnings stay silent as in the run, and a property's ``assume()``
    raises (the caller skips the case) without Hypothesis' warning about assume outside a test."""
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", HypothesisDeprecationWarning)
        return spec.function(probe, case, _minimal_draw)


def minimal_shape_pass(
    spec: PropertySpec, probe: Probe, case: Case, outcome: Outcome
) -> tuple[Case, Outcome] | None:
    """The smallest of :func:`smaller_shapes` on which the property still fails the same way (wrong values
    again, non-finite again where they were non-finite), or None.

    Hypothesis' shrinking can stop at a large shape (the same defect shrank to (1, 1, 100000) in one run and
    (1, 2) in another); this pass makes the reported counterexample small.  Only for wrong values, and only
    for properties fed :func:`default_cases` (every valid input but single-value ones, so each candidate is
    in the property's domain): a call that raised, crashed or hung may raise for another reason on another
    shape, and a crash or hang could cost a timeout per candidate.
    """
    if outcome.headline or outcome.process or outcome.unexpressible or spec.cases is not default_cases:
        return None
    for candidate in smaller_shapes(case):
        if is_single_value_input(candidate):
            continue
        try:
            found = judge_again(spec, probe, candidate)
        except Exception:  # noqa: BLE001 - a candidate the recipe or the property cannot take: skip it
            continue
        if found.process:
            return None  # the target crashed or hung on a smaller input: stop, the shrunk case stands
        same = not found.headline and bool(found.nonfinite) == bool(outcome.nonfinite)
        if not found.ok and not found.unexpressible and same:
            return candidate, found
    return None


def worst_kind_first(
    spec: PropertySpec,
    probe: Probe,
    case: Case,
    outcome: Outcome,
    worst: tuple[Case, str] | None,
    worst_nonfinite: int,
) -> tuple[Case, Outcome] | None:
    """When the shrunk failure has finite errors but the run also met non-finite outputs where the exact
    value is finite (the worse kind), that case judged again, to be shown (and shrunk) first; else None.

    Hypothesis shrinks the first failure it meets, which can be a marginal one.  Only for the properties of
    :func:`minimal_shape_pass`'s domain (wrong values on default cases), whose judgement needs no extra draws.
    """
    if worst is None or not worst_nonfinite or outcome.nonfinite or outcome.headline:
        return None
    if not _is_agreement(spec):
        return None
    try:
        again = judge_again(spec, probe, worst[0])
    except Exception:  # noqa: BLE001 - the case cannot be judged again outside Hypothesis: keep the order
        return None
    if again.ok or not again.nonfinite or again.headline:
        return None
    return worst[0], again


def smaller_note(case: Case) -> str:
    return f"shape={case.shape} num_groups={case.num_groups}"


def counterexample_fields(case: Case, dtype: str) -> dict[str, Any]:
    """The counterexample's structure for the JSON report (PropertyResult.counterexample_fields): the
    fields a deviations file's ``cases`` can name (:func:`gn_spec.checker.deviations.case_fields`)."""
    return case_fields(case, dtype)


def replay_of(config: CheckConfig, spec: PropertySpec) -> str:
    """The command that runs this property again, as this run did."""
    return reproducer.replay_command(config, spec.name)


def _with_deviations(
    result: PropertyResult,
    spec: PropertySpec,
    probe: Probe,
    seed: int,
    active: list[Deviation],
    counted: dict[int, int],
    seen: dict[int, int],
    kept: dict[int, list[Case]],
    start: float,
) -> PropertyResult:
    """``result`` with what became of each declared deviation that covers the property: counts, an expected
    failure, and the strict re-check of each region (run here, right after the property's main run, so that
    ``no_tampering``, which runs last, still watches its calls).  Its seconds are the property's whole time
    from ``start``: the shrinking, the last passes over a failure and the re-checks included."""
    if not active:
        result.seconds = time.perf_counter() - start
        return result
    failed_kind = result.kind if result.failed else ""
    for d in active:
        n = counted[d.number]
        if d.cases is None:  # the whole property is declared failing
            if failed_kind and d.excuses(failed_kind):
                status, note = REPRODUCES, f"failed as declared ({failed_kind})"
                result.status = EXPECTED_FAILURE
            elif failed_kind:
                declared = ", ".join(d.kinds or ())
                status, note = UNDECIDED, f"it failed otherwise ({failed_kind}, not {declared})"
            else:
                status, note = STALE, f"the property passed on {result.cases} inputs"
        elif n == 0 and not seen.get(d.number):
            status, note = UNMATCHED, "no generated input of this property lay in its region"
        elif d.kinds is not None:  # failures of a kind excused in a region
            if n:
                status, note = REPRODUCES, f"{n} failures of the declared kind excused"
            else:
                status, note = STALE, f"{seen[d.number]} inputs in its region judged, none failed so"
        else:
            status, note = _recheck(spec, probe, seed, d, kept[d.number])
        result.deviations.append(DeviationOutcome(d.number, d.reason, d.mode, n, status, note))
    result.seconds = time.perf_counter() - start
    return result


def _recheck(spec: PropertySpec, probe: Probe, seed: int, d: Deviation, cases: list[Case]) -> tuple[str, str]:
    """The strict re-check of a region: the property on (up to RECHECK_EXAMPLES of) the inputs of the region
    that its main run excluded; it reproduces if one of them fails."""
    judged = [0]

    @hypothesis.settings(
        max_examples=RECHECK_EXAMPLES,
        database=None,
        deadline=None,
        derandomize=False,
        phases=(Phase.generate,),
        suppress_health_check=list(HealthCheck),
        verbosity=Verbosity.quiet,
        report_multiple_bugs=False,
        print_blob=False,
    )
    @hypothesis.seed(property_seed(seed, f"{spec.name} deviation {d.number}"))
    @given(case=st.sampled_from(cases), data=st.data())
    def again(case: Case, data: st.DataObject) -> None:
        try:
            with np.errstate(all="ignore"):
                outcome = spec.function(probe, case, data.draw)
        except (HypothesisException, _Reproduced):
            raise
        except Exception as exc:
            raise CheckerBug(f"property {spec.name} raised {exc!r} on {case.describe()}") from exc
        if outcome.unexpressible:
            return
        judged[0] += 1
        if not outcome.ok:
            raise _Reproduced(case, outcome)

    try:
        with _fixed_generation():
            again()
    except _Reproduced as exc:
        first = exc.outcome.message.splitlines()[0] if exc.outcome.message else "failed"
        return REPRODUCES, f"re-checked: {exc.outcome.failure_kind}: {first} on {exc.case.describe()}"
    except HypothesisException as exc:
        return UNDECIDED, f"the re-check could not rebuild its inputs ({type(exc).__name__})"
    if not judged[0]:
        return UNDECIDED, "the re-check judged none of its inputs"
    return STALE, f"re-checked on {judged[0]} of the inputs it excluded: none failed"


_CALL_ONLY_REPRO = """
y = forward(x, num_groups, weight, bias, eps)
print(type(y))
"""


def selected_properties(names: list[str] | None = None) -> list[PropertySpec]:
    """The registered properties (all of them, in catalogue order, or those named)."""
    from gn_spec.properties import catalogue

    specs = catalogue()
    if names is None:
        return specs
    known = {p.name: p for p in specs}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise UsageError(f"unknown properties {unknown}; known: {', '.join(known)}")
    return [known[n] for n in names]


def run_check(target: str, *, progress: TextIO | None = None, **options: Any) -> Report:
    """Check ``target`` and return the :class:`Report` (``report.exit_code`` is the CLI's exit status).

    The keywords are the options of ``gn-spec check`` (the CONFIG and RUN ones of
    :data:`gn_spec.checker.options.OPTIONS`, with their defaults; ``inspect.signature(run_check)`` lists
    them), plus ``progress``, where the progress lines go.  Raises :class:`UsageError` for what the CLI exits
    2 on (bad options, a target that cannot be imported or lacks the function) and ``TypeError`` for a
    keyword that is no option.  ``seed=None`` picks a random seed, recorded in the report so that the run can
    be repeated.  ``properties`` restricts the run to the named properties.  ``jobs=N`` runs them in N
    processes (see the module's docstring; the caller's script needs no ``__main__`` guard for it).

    >>> report = run_check("torch", profile="quick", seed=0)  # doctest: +SKIP
    >>> report.verdict  # doctest: +SKIP
    'conforms'
    """
    values = validated(options, [CONFIG, RUN], "run_check")
    properties = values.pop("properties")
    jobs_given = values.pop("jobs")
    if values["seed"] is None:
        values["seed"] = random.SystemRandom().randrange(2**32)
    config = make_config(target, **values)
    jobs, jobs_why = processes_for(config, jobs_given)
    seed = config.seed
    assert seed is not None
    specs = selected_properties(properties)
    deviations = for_config(config)
    start = time.perf_counter()
    report = Report(config, deviations=deviations, started=_now())
    # a cold numba cache (the first run after an install) is compiled in the background while the worker
    # starts; the worker of TARGET reference compiles it itself, during its import
    compiling = None if config.target.kind == "reference" else compile_cache.start(progress)
    # the properties other processes can run: all but the one that runs last (no_tampering judges every call
    # of the run, so it runs here, after the others, on what every process's worker saw)
    shared = [s for s in specs if not s.runs_last] if jobs > 1 else []
    jobs = min(jobs, len(shared)) if len(shared) > 1 else 1  # more than 1: the properties are shared
    # the processes' workers share their compiled programs (a target that compiles per shape): a program
    # one has compiled, the others load
    programs = (
        tempfile.TemporaryDirectory(prefix="gn-spec-programs-")
        if jobs > 1 and compiles_per_shape(config)
        else contextlib.nullcontext(None)
    )
    with programs as cache, JobProcesses(config, jobs, cache) as pool, WorkerProcess(config, cache) as worker:
        if jobs > 1:  # their workers import the target while this process's does
            pool.start(len(shared))
        hello = worker.start()
        if compiling is not None:
            compiling.wait()
        report.environment = {k: hello.get(k) for k in ("python", "numpy", "torch", "adapter_notes")}
        report.environment["jobs"] = jobs
        # why --jobs auto shared the properties ("" where it did not)
        report.environment["jobs_auto"] = jobs_why if jobs > 1 else ""
        report.environment["shared_programs"] = cache is not None
        report.execution = execution_target(config, hello)
        probe = Probe(config, worker)
        results: dict[str, PropertyResult] = {}
        starts, calls, hangs = 0, 0, 0
        if jobs > 1:
            starts, calls, hangs = _run_in_processes(pool, shared, specs, results, worker, progress)
        for i, spec in enumerate(specs, 1):
            if spec.name in results:
                continue
            result = run_property(spec, probe, seed, progress, deviations)
            results[spec.name] = result
            if progress is not None:
                _progress_line(progress, i, len(specs), result)
        report.properties = [results[s.name] for s in specs]
        report.environment["worker_starts"] = worker.starts + starts
        report.environment["calls"] = probe.calls + calls
        report.environment["hung_calls"] = worker.hangs  # the job processes' hung calls included
    report.seconds = time.perf_counter() - start
    return report


def dispatch_order(specs: list[PropertySpec], profile: str) -> list[PropertySpec]:
    """The order in which job processes take properties: the dearest first, so that the run does not end
    with one process busy on a long property while the others idle.  Dearest is estimated, not measured:
    those that call a backward or second order first (their programs compile slowest), then by weight in
    the profile; the catalogue's order otherwise (the report keeps the catalogue's order whatever this is)."""
    return sorted(specs, key=lambda s: (s.checks == ("forward",), -s.weight_in(profile)))


def _run_in_processes(
    pool: JobProcesses,
    shared: list[PropertySpec],
    specs: list[PropertySpec],
    results: dict[str, PropertyResult],
    worker: WorkerProcess,
    progress: TextIO | None,
) -> tuple[int, int, int]:
    """Run the ``shared`` properties in the job processes of ``pool`` (:mod:`gn_spec.checker.jobs`), each
    with its own worker of the target, and put their results in ``results``.

    Then ``worker`` (this process's, idle meanwhile) takes over what theirs saw, for ``no_tampering``, which
    runs here afterwards: the tampering each property's calls revealed, in catalogue order (so that it judges
    every call of the run and words what it saw as ``--jobs 1`` would), and the hung and answered calls and
    the slowest answer (so that its call is waited for as the run's hang budget says: not at all when the
    target answered no call and hung :data:`HANG_BUDGET` times).  Returns the worker starts, calls and hung
    calls of the job processes.
    """
    place = {s.name: i for i, s in enumerate(specs, 1)}
    seen: dict[str, dict[str, str]] = {}
    starts = calls = hangs = 0
    for done in pool.run([s.name for s in dispatch_order(shared, pool.config.profile)]):
        result = done.result
        results[result.name] = result
        seen[result.name] = done.tampered
        starts, calls, hangs = starts + done.worker_starts, calls + done.calls, hangs + done.hung_calls
        worker.answered += done.answered
        worker.slowest = max(worker.slowest, done.slowest)
        if progress is not None:
            _progress_line(progress, place[result.name], len(specs), result)
    for spec in shared:
        for change, when in seen[spec.name].items():
            worker.tampered.setdefault(change, when)
    worker.hangs += hangs
    return starts, calls, hangs


run_check.__signature__ = signature_with_options(run_check, [CONFIG, RUN])  # type: ignore[attr-defined]


def _now() -> str:
    """The time now, UTC, ISO 8601 to the second: when a report's run began."""
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def execution_target(config: CheckConfig, hello: dict[str, Any]) -> dict[str, Any]:
    """What the target ran on, for the report: its framework and version, the device and its model where
    known, the worker's Python and the platform.  Read without importing any framework here (a built-in
    target's version from its distribution's metadata, torch's and numpy's from the worker's hello)."""
    import platform
    from importlib import metadata

    from gn_spec import __version__

    kind = config.target.kind
    if kind == "builtin" and config.target.location != "torch":
        framework = BY_NAME[config.target.location].framework
        try:
            version: str | None = metadata.version(framework)
        except metadata.PackageNotFoundError:
            version = None
    elif kind == "reference":
        framework, version = "gn-spec", __version__
    elif config.api == "torch":
        framework, version = "torch", hello.get("torch")
    else:
        framework, version = "numpy", hello.get("numpy")
    return {
        "framework": framework,
        "framework_version": version,
        "device": config.device,
        "device_model": _device_model(config.device),
        "python": hello.get("python"),
        "platform": platform.platform(),
    }


def _device_model(device: str) -> str | None:
    """The CPU's model name (from /proc/cpuinfo or the platform), or the first GPU's (nvidia-smi), where
    known; None otherwise."""
    import platform
    import shutil
    import subprocess

    if device == "cuda":
        smi = shutil.which("nvidia-smi")
        if smi is None:
            return None
        try:
            done = subprocess.run(
                [smi, "--query-gpu=name", "--format=csv,noheader"], capture_output=True, text=True, timeout=10
            )
        except (OSError, subprocess.SubprocessError):
            return None
        names = done.stdout.strip().splitlines()
        return names[0].strip() if done.returncode == 0 and names else None
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def _progress_line(out: TextIO, i: int, n: int, r: PropertyResult) -> None:
    figure = format_ratio(r.worst_error, r.worst_error_kind)
    worst = "" if r.worst_error is None else f", worst {figure} of bound"
    out.write(f"[{i:2d}/{n}] {r.name:<34} {r.status:<14} {r.cases:5d} cases{worst} ({r.seconds:.1f} s)\n")
    out.flush()
