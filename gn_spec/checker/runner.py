"""The check run: each property driven by Hypothesis against the worker, then a :class:`Report`.

Per property, Hypothesis draws cases (structure only; numpy fills the values), steers towards large errors
with ``hypothesis.target`` on the worst error ratio, and on the first failure stops generating and shrinks to
a minimal counterexample; the other properties still run.  Shrinking is rationed, counted in calls (not
seconds, so that ``--seed`` reproduces the whole run): a crash or hang costs a worker restart each time, so
such failures shrink only a few steps.  Nothing is written to the user's folder (no example database).
"""

from __future__ import annotations

import math
import random
import time
import zlib
from dataclasses import dataclass, replace
from typing import Any, TextIO

import hypothesis
import numpy as np
from hypothesis import HealthCheck, Phase, Verbosity, given
from hypothesis import strategies as st
from hypothesis.errors import HypothesisException

from gn_spec.checker import reproducer
from gn_spec.checker.builtins import BY_NAME
from gn_spec.checker.options import CONFIG, RUN, signature_with_options, validated
from gn_spec.checker.probe import Probe
from gn_spec.checker.property_framework import Outcome, PropertySpec
from gn_spec.checker.report import FAILED, NOT_APPLICABLE, PASSED, PropertyResult, Report, format_ratio
from gn_spec.checker.target import CheckConfig, UsageError, make_config
from gn_spec.checker.worker_process import WorkerProcess
from gn_spec.formats import round_to
from gn_spec.profiles import PROFILES
from gn_spec.strategies import Case


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
    last: tuple[Case, Outcome] | None = None
    work: float = 0.0
    shrink_work: float = 0.0
    unexpressible: int = 0  # generated inputs the target cannot take (not judged), and the first of them
    first_unexpressible: tuple[Case, Outcome] | None = None


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


def property_seed(seed: int, name: str) -> int:
    """Each property's Hypothesis seed: the run's seed mixed with the property's name."""
    return (seed + zlib.crc32(name.encode())) % 2**32


def run_property(
    spec: PropertySpec, probe: Probe, seed: int, progress: TextIO | None = None
) -> PropertyResult:
    """Drive one property with Hypothesis and summarize it."""
    config = probe.config
    start = time.perf_counter()
    reason = spec.applies(config)
    if reason is not None:
        return PropertyResult(spec.name, spec.summary, NOT_APPLICABLE, message=reason)
    budget = PROFILES[config.profile].budget
    tally = _Tally()

    @hypothesis.settings(
        max_examples=max(1, round(budget.examples * spec.weight)),
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
        elements = math.prod(case.shape) * max(spec.weight, 0.5)
        if tally.last is None:
            tally.work += elements
            if tally.work > budget.work * max(spec.weight, 0.5) and tally.cases:
                raise _StopGenerating()
        else:
            tally.shrink_work += elements
            if tally.shrink_work > budget.shrink_work:
                raise _StopShrinking()
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
        tally.last = (case, outcome)
        if tally.failures > budget.shrink_failures or tally.process_failures > budget.process_failures:
            raise _StopShrinking()
        raise _Failed(case, outcome)

    note = ""
    try:
        check()
    except _Failed as exc:
        tally.last = (exc.case, exc.outcome)
    except _StopShrinking:
        note = " (shrinking stopped early: its budget was spent; this is the smallest failure found)"
    except _StopGenerating:
        pass  # passed: the work budget ran out before the example budget
    except HypothesisException as exc:
        if tally.last is None:
            raise CheckerBug(f"property {spec.name}: Hypothesis failed: {exc!r}") from exc
        note = f" (Hypothesis: {type(exc).__name__}: the failure did not always recur)"
    seconds = time.perf_counter() - start
    if tally.unexpressible:
        note += (
            f" ({tally.unexpressible} generated inputs could not be expressed by the target and were not "
            f"judged; the {tally.cases} others were)"
        )
        if tally.last is None:
            tally.last = tally.first_unexpressible
    if tally.last is None:
        return PropertyResult(
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
        )
    case, outcome = tally.last
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
    return PropertyResult(
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
    )


def counterexample_fields(case: Case, dtype: str) -> dict[str, Any]:
    """The counterexample's structure for the JSON report (PropertyResult.counterexample_fields)."""
    return {
        "shape": list(case.shape),
        "num_groups": case.num_groups,
        "group_size": case.group_size if case.valid else None,
        "eps": case.eps,
        "affine": case.affine,
        "data": case.data,
        "seed": case.seed,
        "dtype": dtype,
        "log10_offset": case.log10_offset,
        "log10_scale": case.log10_scale,
        "grad_offset": case.grad_offset,
    }


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
    be repeated.  ``properties`` restricts the run to the named properties.

    >>> report = run_check("torch", profile="quick", seed=0)  # doctest: +SKIP
    >>> report.verdict  # doctest: +SKIP
    'conforms'
    """
    values = validated(options, [CONFIG, RUN], "run_check")
    properties = values.pop("properties")
    if values["seed"] is None:
        values["seed"] = random.SystemRandom().randrange(2**32)
    config = make_config(target, **values)
    seed = config.seed
    assert seed is not None
    specs = selected_properties(properties)
    start = time.perf_counter()
    report = Report(config)
    with WorkerProcess(config) as worker:
        hello = worker.start()
        report.environment = {k: hello.get(k) for k in ("python", "numpy", "torch", "adapter_notes")}
        probe = Probe(config, worker)
        for i, spec in enumerate(specs, 1):
            result = run_property(spec, probe, seed, progress)
            report.properties.append(result)
            if progress is not None:
                _progress_line(progress, i, len(specs), result)
        report.environment["worker_starts"] = worker.starts
        report.environment["calls"] = probe.calls
    report.seconds = time.perf_counter() - start
    return report


run_check.__signature__ = signature_with_options(run_check, [CONFIG, RUN])  # type: ignore[attr-defined]


def _progress_line(out: TextIO, i: int, n: int, r: PropertyResult) -> None:
    figure = format_ratio(r.worst_error, r.worst_error_kind)
    worst = "" if r.worst_error is None else f", worst {figure} of bound"
    out.write(f"[{i:2d}/{n}] {r.name:<34} {r.status:<14} {r.cases:5d} cases{worst} ({r.seconds:.1f} s)\n")
    out.flush()
