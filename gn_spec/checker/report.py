"""The outcome of a check run and its three renderings: the console table, ``--json`` and ``--junit-xml``.

The JSON document is described by a JSON Schema that ships with gn-spec (:data:`SCHEMA_PATH`; its version is
:data:`SCHEMA`), so that a dashboard can harvest reports of any run.
"""

from __future__ import annotations

import json
import math
import os
import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, TextIO

from gn_spec.checker.builtins import BY_NAME, BuiltinTarget
from gn_spec.checker.target import CheckConfig, compiles_per_shape, pooled_shapes
from gn_spec.error_model import format_error

if TYPE_CHECKING:
    from gn_spec.checker.deviations import Deviations

PASSED, FAILED, NOT_APPLICABLE = "passed", "failed", "not applicable"
#: A property that failed as a deviations file declares it would (pytest's xfail); not a failure of the run.
EXPECTED_FAILURE = "expected failure"
#: The version of the JSON report's layout (bumped when a field changes meaning or goes; new fields keep it
#: compatible) and the JSON Schema that describes it, shipped in the package.
SCHEMA = "gn-spec-report/1"
SCHEMA_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "report.schema.json")
#: What a run can judge of a target, in the order reports list it.
ALL_CHECKS = ("forward", "backward", "second order")


@dataclass
class DeviationOutcome:
    """What became of one declared deviation (:mod:`gn_spec.checker.deviations`) in one property's run.

    ``number``: the entry's place in the file (from 1); ``mode``: ``region``, ``region (failures of kind
    ...)`` or ``expected failure``; ``excluded``: the generated inputs it took out of judging (a region) or
    the failures it excused (a region with a kind); ``status``: reproduces, no longer deviates, matched no
    generated input, or undecided; ``note``: how that was decided.
    """

    number: int
    reason: str
    mode: str
    excluded: int
    status: str
    note: str = ""


@dataclass
class PropertyResult:
    """One property's verdict.

    ``worst_error`` is the largest judged error as a fraction of its bound (err_i / bound_i, where
    err_i = |observed_i - exact_i| / (u * scale_i)); a conforming target keeps it at most 1.  It is ``None``
    for properties that judge no numbers (contracts) and for failures that left nothing to judge (a crash).
    ``worst_error_units`` is the same error in the model's unit u * scale_i, before dividing by the bound.
    ``diagnosis`` names the known mistakes (``gn_spec.variants``) whose formula explains the failing values.
    An infinite ``worst_error`` is an output that was NaN or +-inf where the exact value is finite:
    ``worst_error_kind`` says which (``"NaN output"``, ``"+inf output"``, ``"-inf output"``; empty for a
    finite error) and ``nonfinite_elements`` counts such elements in that case.  JSON cannot hold infinity,
    so there ``worst_error`` is null for it as for "nothing judged"; ``worst_error_text`` (``"0.031"``,
    ``"inf (NaN output)"``, null only when nothing was judged) tells the two apart.  ``checks``: what of the
    target the property judged (``"forward"``, ``"backward"``, ``"second order"``; empty if not applicable).
    ``worst_case``: for a failure, the case that gave ``worst_error`` and its worst elements (index, observed,
    exact), when it is worse than the shrunk counterexample (which can be a marginal one); None otherwise.
    ``counterexample_fields``: the counterexample's structure under the names programs (and the deviations
    file) use: shape, num_groups, group_size (None for an invalid grouping), eps, affine, data, seed, dtype,
    plus the data recipe's log10_offset, log10_scale and grad_offset; None when nothing failed.
    ``headline``: for a failure, what happened when that is not the property's claim failing (a call that
    raised, crashed or hung); the console shows it instead of ``summary``, which would then say something
    false.  Empty otherwise.  ``kind``: for a failure (or an expected one), what kind of failure it is (one of
    :data:`gn_spec.checker.failure_kinds.KINDS`); empty otherwise.  ``deviations``: what became of each
    declared deviation that covers the property (:class:`DeviationOutcome`); ``replay``: the command that
    runs the property again as this run did.  ``accuracy_class``: for the agreement properties, the
    summation class (SPEC.md 3.3) the target meets: "within the log-depth bound" (passed), "within the
    sequential-summation bound only" or "outside both" (a failure's counterexample and worst case, judged
    again with the sequential class's bounds); empty for other properties and for failures that are not wrong
    values.
    """

    name: str
    summary: str
    status: str
    cases: int = 0
    worst_error: float | None = None
    worst_error_units: float | None = None
    counterexample: str | None = None
    reproducer: str | None = None
    message: str = ""
    detail: str = ""
    diagnosis: list[str] = field(default_factory=list)
    seconds: float = 0.0
    worst_error_kind: str = ""
    nonfinite_elements: int = 0
    checks: list[str] = field(default_factory=list)
    worst_case: str | None = None
    counterexample_fields: dict[str, Any] | None = None
    headline: str = ""
    kind: str = ""
    deviations: list[DeviationOutcome] = field(default_factory=list)
    replay: str = ""
    accuracy_class: str = ""

    @property
    def failed(self) -> bool:
        return self.status == FAILED

    @property
    def excluded(self) -> int:
        """Generated inputs that declared deviations took out of judging (or whose failures they excused)."""
        return sum(d.excluded for d in self.deviations)

    @property
    def expected_by(self) -> DeviationOutcome | None:
        """For an expected failure, the entry that declared it."""
        if self.status != EXPECTED_FAILURE:
            return None
        return next(
            d for d in self.deviations if d.mode.startswith(EXPECTED_FAILURE) and d.status == "reproduces"
        )


@dataclass
class Report:
    """A whole run: the configuration, each property's result, and notes (tampering, worker restarts)."""

    config: CheckConfig
    properties: list[PropertyResult] = field(default_factory=list)
    seconds: float = 0.0
    environment: dict[str, Any] = field(default_factory=dict)
    deviations: Deviations | None = None  # the declared deviations (--deviations), if any
    started: str = ""  # when the run began: ISO 8601, UTC
    command: str | None = None  # the command line that ran it, where it came from one (the CLI sets it)
    execution: dict[str, Any] = field(default_factory=dict)  # framework, device, python, platform

    @property
    def expected_failures(self) -> list[PropertyResult]:
        return [p for p in self.properties if p.status == EXPECTED_FAILURE]

    @property
    def excluded(self) -> int:
        """Generated inputs the declared deviations took out of judging (or whose failures they excused)."""
        return sum(p.excluded for p in self.properties)

    def deviation_entries(self) -> list[dict[str, Any]]:
        """Each declared entry, with what became of it over the properties that ran: ``status`` (stale if it
        no longer deviates for one of them), ``excluded``, ``message`` and ``results`` per property."""
        from gn_spec.checker.deviations import REPRODUCES, STALE, UNDECIDED, UNMATCHED

        if self.deviations is None:
            return []
        entries = []
        for d in self.deviations.entries:
            per = {p.name: o for p in self.properties for o in p.deviations if o.number == d.number}
            stale = [name for name, o in per.items() if o.status == STALE]
            holds = [name for name, o in per.items() if o.status == REPRODUCES]
            unmatched = [name for name, o in per.items() if o.status == UNMATCHED]
            if stale:
                status = STALE
                message = (
                    f"no longer deviates for {', '.join(stale)}: remove it from the entry's properties"
                    if holds
                    else "no longer deviates: remove this entry"
                )
            elif holds:
                status, message = REPRODUCES, "reproduces"
                if d.properties is not None and unmatched:
                    message += f"; matched no generated input of {', '.join(unmatched)}"
            elif not per or len(unmatched) == len(per):
                status = UNMATCHED
                message = "matched no generated input" + ("" if per else " (it covers no property that ran)")
            else:
                status, message = UNDECIDED, "; ".join(f"{n}: {o.note}" for n, o in per.items())
            entries.append(
                {
                    **d.to_json(),
                    "status": status,
                    "excluded": sum(o.excluded for o in per.values()),
                    "message": message,
                    "results": {name: asdict(o) for name, o in per.items()},
                }
            )
        return entries

    @property
    def deviation_errors(self) -> list[str]:
        """Stale entries of a strict deviations file: each fails the run (exit 1)."""
        if self.deviations is None or not self.deviations.strict:
            return []
        return [_entry_line(e) for e in self.deviation_entries() if e["status"] == "no longer deviates"]

    @property
    def warnings(self) -> list[str]:
        """What the user should know about the deviations file that does not fail the run."""
        if self.deviations is None:
            return []
        out = []
        for e in self.deviation_entries():
            if e["status"] == "no longer deviates" and not self.deviations.strict:
                out.append(_entry_line(e))
            elif "matched no generated input" in e["message"] and e["results"]:
                out.append(_entry_line(e))  # (an entry none of whose properties ran is the selection's doing)
        return out

    @property
    def failed(self) -> list[PropertyResult]:
        return [p for p in self.properties if p.failed]

    @property
    def conforms(self) -> bool:
        return not self.failed

    @property
    def verdict(self) -> str:
        return "conforms" if self.conforms else "does not conform"

    @property
    def checked(self) -> list[str]:
        """What of the target the run judged, in the order forward, backward, second order."""
        ran = {c for p in self.properties if p.status != NOT_APPLICABLE for c in p.checks}
        return [c for c in ALL_CHECKS if c in ran]

    @property
    def scope(self) -> str:
        """What the verdict covers, when that is less than forward, backward and second order: e.g.
        ``"forward only: this API has no gradients"``; empty when everything was checked."""
        checked = self.checked
        if checked == list(ALL_CHECKS):
            return ""
        if not checked:
            return "nothing checked"
        what = "forward only" if checked == ["forward"] else " and ".join(checked) + " only"
        missing = [c for c in ALL_CHECKS if c not in checked]
        api = self.config.api
        builtin = self.builtin
        if builtin is not None:
            orders, why = builtin.orders_with(self.config.target_options)
            if why and list(orders) == checked:  # what it lacks, it lacks by its own design or defect
                return f"{what}: {why}"
        if api == "numpy" and "backward" in missing:
            return f"{what}: this API has no gradients"
        if api == "cs231n" and missing == ["second order"]:
            return f"{what}: this API has no second-order derivative"
        return f"{what}: the selected properties check no {' and no '.join(missing)}"

    @property
    def builtin(self) -> BuiltinTarget | None:
        """The built-in target's record, when the target is one other than ``torch``."""
        t = self.config.target
        return BY_NAME[t.location] if t.kind == "builtin" else None

    def target_lines(self) -> list[str]:
        """What a built-in target's adapter called and did, and how the shapes were drawn where they came
        from a pool, for the report's header (empty otherwise)."""
        lines = self._shape_lines()
        if self.environment.get("jobs", 1) > 1:
            n, why = self.environment["jobs"], self.environment.get("jobs_auto")
            shared = (
                ", which load the programs another has compiled (JAX's compilation cache, in a temporary "
                "directory of the run)" if self.environment.get("shared_programs") else ""
            )
            auto = f" (--jobs auto: {why})" if why else ""
            lines.append(
                f"processes: the properties shared among {n} checker processes, each with its own worker"
                f"{shared}{auto}; --jobs 1 runs them in one"
            )
        builtin = self.builtin
        if builtin is None:
            return lines
        lines.append(f"calls: {builtin.calls}")
        if self.config.target_options:
            lines.append("options: " + " ".join(self.config.target_options))
        if builtin.eps_format is not None:
            lines.append(
                f"eps: the target stores eps as a {builtin.eps_format} number: each case's eps is rounded to "
                f"{builtin.eps_format} and the reference uses that eps (the format's rounding, not a defect)"
            )
        if builtin.call_timeout and self.config.timeout == builtin.call_timeout:
            lines.append(
                f"timeout: {builtin.call_timeout:g} s a call, this target's own (it is slow by design); "
                "--timeout sets another"
            )
        if builtin.compile_grace:
            lines.append(
                f"timeout: the first call of each kind (operation, rank, sizes of 0 or 1, inputs given) may "
                f"take {builtin.compile_grace:g} s more than --timeout: it compiles"
            )
        lines += list(self.environment.get("adapter_notes") or [])
        return lines

    def _shape_lines(self) -> list[str]:
        from gn_spec.strategies import shape_pool

        c = self.config
        if not pooled_shapes(c) or c.seed is None:
            return []
        why = compiles_per_shape(c)
        because = f" (--shapes auto: {why})" if c.shapes == "auto" and why else ""
        return [
            f"shapes: every property draws from one pool of {len(shape_pool(c.profile, c.seed))} shapes "
            f"(seed {c.seed}){because}; --shapes free draws each case's shape anew"
        ]

    @property
    def verdict_text(self) -> str:
        """The verdict with what it covers: ``conforms (forward only: this API has no gradients)``, and with
        a deviations file, what it set aside: ``conforms outside its declared deviations (1 expected
        failure, 40 generated inputs not judged)``."""
        text = self.verdict
        declared = []
        if self.expected_failures:
            n = len(self.expected_failures)
            declared.append(f"{n} expected failure{'s' if n > 1 else ''}")
        if self.excluded:
            declared.append(f"{self.excluded} generated inputs not judged")
        if declared:
            text += f" outside its declared deviations ({', '.join(declared)})"
        return f"{text} ({self.scope})" if self.scope else text

    @property
    def cases(self) -> int:
        return sum(p.cases for p in self.properties)

    @property
    def exit_code(self) -> int:
        return 0 if self.conforms and not self.deviation_errors else 1

    def to_json(self) -> dict[str, Any]:
        """The ``--json`` document (the keys the CLI contract names, plus a few extra ones), described by the
        JSON Schema at :data:`SCHEMA_PATH`."""
        from gn_spec import __version__
        from gn_spec.checker.reproducer import replay_command

        c = self.config
        entries = self.deviation_entries()
        return {
            "schema": SCHEMA,
            "gn_spec_version": __version__,
            "command": self.command if self.command is not None else replay_command(c),
            "timestamp": self.started or None,
            "execution": self.execution,
            "target": c.target.text,
            "api": c.api,
            "target_options": list(c.target_options),
            "dtype": c.dtype,
            "device": c.device,
            "memory_format": c.memory_format,
            "profile": c.profile,
            "shapes": "pooled" if pooled_shapes(c) else "free",
            "summation": c.summation,
            "seed": c.seed,
            "verdict": self.verdict,
            "checked": self.checked,
            "verdict_text": self.verdict_text,
            "summary": {
                "cases": self.cases,
                "properties": len(self.properties),
                "failed": len(self.failed),
                "expected_failures": len(self.expected_failures),
                "excluded": self.excluded,
                "seconds": round(self.seconds, 3),
            },
            "properties": [_property_json(p) for p in self.properties],
            "environment": self.environment,
            "deviations": None
            if self.deviations is None
            else {"file": self.deviations.path, "strict": self.deviations.strict, "entries": entries},
            "warnings": self.warnings,
            "errors": self.deviation_errors,
        }

    def write_json(self, path: str) -> None:
        with open(path, "w", encoding="utf-8") as f:
            json.dump(self.to_json(), f, indent=2, allow_nan=False)
            f.write("\n")

    def to_junit(self) -> ET.ElementTree:
        """JUnit XML: one <testsuite> for the run, one <testcase> per property."""
        c = self.config
        suite_name = f"gn-spec check {c.target.text} ({c.api}, {c.dtype}, {c.device}, {c.memory_format})"
        # the counts are set once every testcase is in (declared deviations add testcases of their own)
        suites = ET.Element("testsuites", name="gn-spec", tests="", failures="", time=f"{self.seconds:.3f}")
        suite = ET.SubElement(
            suites,
            "testsuite",
            name=suite_name,
            tests="",
            failures="",
            errors="0",
            skipped="",
            time=f"{self.seconds:.3f}",
        )
        props = ET.SubElement(suite, "properties")
        for key, value in (
            ("target", c.target.text),
            ("api", c.api),
            ("dtype", c.dtype),
            ("device", c.device),
            ("memory_format", c.memory_format),
            ("profile", c.profile),
            ("seed", str(c.seed)),
            ("verdict", self.verdict),
            ("checked", ", ".join(self.checked)),
            ("verdict_text", self.verdict_text),
        ):
            ET.SubElement(props, "property", name=key, value=value)
        for p in self.properties:
            case = ET.SubElement(
                suite, "testcase", classname="gn_spec.properties", name=p.name, time=f"{p.seconds:.3f}"
            )
            if p.status == FAILED:
                failure = ET.SubElement(case, "failure", message=_kind_message(p), type="NonConformance")
                failure.text = failure_text(p)
            elif p.status == NOT_APPLICABLE:
                ET.SubElement(case, "skipped", message=p.message)
            elif p.status == EXPECTED_FAILURE:  # pytest's convention: an xfail is a skip with its reason
                by = p.expected_by
                assert by is not None
                skipped = ET.SubElement(
                    case,
                    "skipped",
                    type="gn_spec.deviation",
                    message=f"expected failure (deviation {by.number}: {by.reason}): {_kind_message(p)}",
                )
                skipped.text = failure_text(p)
            out = ET.SubElement(case, "system-out")
            worst = format_ratio(p.worst_error, p.worst_error_kind)
            out.text = f"{p.cases} cases judged; worst error {worst}"
            if p.excluded:
                out.text += f"; {p.excluded} generated inputs set aside by declared deviations"
            # each declared region apart from the property's own verdict: skipped with its reason, or failed
            # when a strict deviations file's entry no longer deviates
            for d in p.deviations:
                if d.mode.startswith(EXPECTED_FAILURE) and d.status != "no longer deviates":
                    continue
                if not d.excluded and d.status != "no longer deviates":
                    continue
                apart = ET.SubElement(
                    suite, "testcase", classname="gn_spec.deviations", name=f"{p.name}[deviation {d.number}]"
                )
                if d.status == "no longer deviates":
                    text = f"deviation {d.number} ({d.reason}) no longer deviates: remove this entry"
                    text += f" ({d.note})"
                    tag = "failure" if self.deviations is not None and self.deviations.strict else "skipped"
                    ET.SubElement(apart, tag, message=text, type="StaleDeviation")
                else:
                    what = "failures excused" if "kind" in d.mode else "generated inputs not judged"
                    ET.SubElement(
                        apart,
                        "skipped",
                        type="gn_spec.deviation",
                        message=f"known deviation {d.number}: {d.reason} ({d.excluded} {what}; {d.status})",
                    )
        cases = suite.findall("testcase")
        counts = {
            "tests": str(len(cases)),
            "failures": str(sum(t.find("failure") is not None for t in cases)),
            "skipped": str(sum(t.find("skipped") is not None for t in cases)),
        }
        for key in ("tests", "failures"):
            suites.set(key, counts[key])
        for key, value in counts.items():
            suite.set(key, value)
        ET.indent(suites)
        return ET.ElementTree(suites)

    def write_junit(self, path: str) -> None:
        self.to_junit().write(path, encoding="utf-8", xml_declaration=True)


def _kind_message(p: PropertyResult) -> str:
    """A failure's message with its kind in front: ``refused valid input: the backward call: raised ...``."""
    return f"{p.kind}: {p.message}" if p.kind else p.message


def _entry_line(entry: dict[str, Any]) -> str:
    """One line on a deviations file's entry: ``deviation 2 ("reason"): no longer deviates: remove ...``."""
    return f"deviation {entry['number']} ({entry['reason']!r}): {entry['message']}"


def _finite(d: dict[str, Any]) -> dict[str, Any]:
    """JSON has no inf/NaN: an infinite error (e.g. a NaN where a number was due) is written as null."""
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in d.items()}


def _property_json(p: PropertyResult) -> dict[str, Any]:
    """One property's JSON object: its fields, plus ``worst_error_text`` (unambiguous where null is not)."""
    d = _finite(asdict(p))
    d["worst_error_text"] = None if p.worst_error is None else format_ratio(p.worst_error, p.worst_error_kind)
    return d


def format_ratio(r: float | None, kind: str = "") -> str:
    """A fraction of the bound for the table: ``0.031``, ``12.5``, ``inf (NaN output)``; ``-``: nothing
    judged."""
    if r is None:
        return "-"
    return format_error(r, kind)


def failure_text(p: PropertyResult) -> str:
    """The body of a failure: reason, counterexample, worst element and reproducer."""
    parts = [p.message]
    if p.accuracy_class:
        parts.append(f"accuracy class: {p.accuracy_class} (SPEC.md 3.3)")
    if p.counterexample:
        parts.append(f"counterexample: {p.counterexample}")
    if p.detail:
        parts.append(p.detail)
    if p.worst_case:
        parts.append(
            f"worst case met (worst error / bound {format_ratio(p.worst_error, p.worst_error_kind)}; "
            f"not shrunk): {p.worst_case}"
        )
    for d in p.diagnosis:
        parts.append(f"diagnosis: {d}")
    if p.reproducer:
        parts.append("reproducer:\n" + p.reproducer)
    return "\n".join(parts)


def write_table(report: Report, out: TextIO) -> None:
    """The console summary: one row per property, then each failure in full, the expected failures and the
    declared deviations, then the verdict.  The ``excluded`` column (inputs set aside by declared deviations)
    is there with a deviations file, the ``failure kind`` column when something failed."""
    with_deviations = report.deviations is not None
    with_kinds = any(p.kind for p in report.properties)
    head = ["property", "status", "cases", "worst error / bound", "worst (u*scale)", "seconds"]
    rows = [tuple(head + ["excluded"] * with_deviations + ["failure kind"] * with_kinds)]
    for p in report.properties:
        kind = p.worst_error_kind
        units = "-" if p.worst_error_units is None else format_ratio(p.worst_error_units, kind)
        row = [p.name, p.status, str(p.cases), format_ratio(p.worst_error, kind), units, f"{p.seconds:.1f}"]
        row += [str(p.excluded)] * with_deviations + [p.kind] * with_kinds
        rows.append(tuple(row))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    last = len(widths) - 1 if with_kinds else -1  # the kind column is text: left-justified
    c = report.config
    out.write(
        f"\ngn-spec check {c.target.text}  api={c.api} dtype={c.dtype} device={c.device} "
        f"memory_format={c.memory_format} profile={c.profile} seed={c.seed}\n"
    )
    for line in report.target_lines():
        out.write(f"  {line}\n")
    out.write("\n")
    for i, r in enumerate(rows):
        out.write(
            "  ".join(
                cell.ljust(w) if j in (0, 1, last) else cell.rjust(w)
                for j, (cell, w) in enumerate(zip(r, widths, strict=True))
            ).rstrip()
            + "\n"
        )
        if i == 0:
            out.write("  ".join("-" * w for w in widths) + "\n")
    out.write(
        "\nworst error / bound: the largest err_i / B_i judged (at most 1 conforms), err_i = |observed_i - "
        "exact_i| / (u * s_i)\nworst (u*scale): that err_i, in units of u * s_i (SPEC.md, section 3)\n"
    )
    for p in report.failed:
        out.write(f"\n=== {p.name} FAILED ({p.kind}): {p.headline or p.summary}\n")
        out.write(failure_text(p).rstrip() + "\n")
    for p in report.expected_failures:
        by = p.expected_by
        assert by is not None
        out.write(f"\n=== {p.name} EXPECTED FAILURE ({p.kind}), declared by deviation {by.number}: ")
        out.write(f"{by.reason}\n")
        out.write(f"{p.message}\n" + (f"counterexample: {p.counterexample}\n" if p.counterexample else ""))
    if report.deviations is not None:
        _write_deviations(report, out)
    _write_summary_of_failures(report, out)
    scope = f"{report.scope}; " if report.scope else ""
    declared, verdict = "", report.verdict
    if report.deviations is not None:
        declared = f", {len(report.expected_failures)} expected failures, {report.excluded} inputs excluded"
        if report.expected_failures or report.excluded:
            verdict += " outside its declared deviations"
    out.write(
        f"\nverdict: {c.target.text} {verdict} ({scope}{report.cases} cases, {len(report.properties)} "
        f"properties, {len(report.failed)} failed{declared}, {report.seconds:.1f} s)\n"
    )


#: Where the deviations of a built-in target are already written down (paths in gn-spec's repository).
KNOWN_DEVIATIONS = {"torch": "examples/torch-2.13-deviations.toml"}


def _without_trailing_details(message: str) -> str:
    """``message`` without the parenthesized details at its end ("... changed the output (shift exponent 3)"
    -> "... changed the output"); parentheses inside it ("each (sample, group) block") stay."""
    text = message.rstrip()
    while text.endswith(")"):
        depth = 0
        for i in range(len(text) - 1, -1, -1):
            depth += {")": 1, "(": -1}.get(text[i], 0)
            if depth == 0:
                break
        if depth != 0 or i == 0 or text[i - 1] != " ":
            break  # unbalanced, or not a separate parenthesis: keep it
        text = text[: i - 1].rstrip()
    return text


def _write_summary_of_failures(report: Report, out: TextIO) -> None:
    """The closing lines: one sentence per failure (what the target does, its kind), then how to accept the
    ones a project knows about, so that a first reader knows the verdict is on the target, not the tool."""
    if not report.failed:
        return
    c = report.config
    out.write(f"\n{c.target.text} failed {len(report.failed)} properties:\n")
    for p in report.failed:
        first_line = (p.message.splitlines() or [""])[0]
        out.write(f"  - {p.name} ({p.kind}): {_without_trailing_details(first_line)}\n")
    known = KNOWN_DEVIATIONS.get(c.target.text)
    where = f" ({known} in gn-spec's repository declares this target's known ones)" if known else ""
    out.write(
        "These are findings about the target. To accept a known one and keep everything else checked, "
        f"declare it in a TOML file given with --deviations FILE{where}; README.md, 'Known deviations'.\n"
    )


def _write_deviations(report: Report, out: TextIO) -> None:
    """The declared deviations: each entry, what it covers and what became of it, then warnings and errors."""
    assert report.deviations is not None
    strict = "strict" if report.deviations.strict else "not strict"
    out.write(f"\nknown deviations ({report.deviations.path}, {strict}):\n")
    entries = report.deviation_entries()
    if not entries:
        out.write("  (the file declares none)\n")
    for e, d in zip(entries, report.deviations.entries, strict=True):
        out.write(f"  [{e['number']}] {e['status']}: {e['reason']}\n")
        out.write(f"      {d.mode}; {d.describe()}; {e['excluded']} inputs excluded\n")
        for name, r in e["results"].items():
            out.write(f"      {name}: {r['status']} ({r['excluded']} excluded; {r['note']})\n")
    for line in report.warnings:
        out.write(f"warning: {line}\n")
    for line in report.deviation_errors:
        out.write(f"error: {line} (exit 1; --deviations-strict false makes this a warning)\n")
