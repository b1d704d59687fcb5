"""The outcome of a check run and its three renderings: the console table, ``--json`` and ``--junit-xml``."""

from __future__ import annotations

import json
import math
import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass, field
from typing import Any, TextIO

from gn_spec.checker.builtins import BY_NAME, BuiltinTarget
from gn_spec.checker.target import CheckConfig
from gn_spec.error_model import format_error

PASSED, FAILED, NOT_APPLICABLE = "passed", "failed", "not applicable"
#: What a run can judge of a target, in the order reports list it.
ALL_CHECKS = ("forward", "backward", "second order")


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
    false.  Empty otherwise.
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

    @property
    def failed(self) -> bool:
        return self.status == FAILED


@dataclass
class Report:
    """A whole run: the configuration, each property's result, and notes (tampering, worker restarts)."""

    config: CheckConfig
    properties: list[PropertyResult] = field(default_factory=list)
    seconds: float = 0.0
    environment: dict[str, Any] = field(default_factory=dict)

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
        if builtin is not None and builtin.orders == ("forward",):
            return f"{what}: {builtin.no_gradients}"
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
        """What a built-in target's adapter called and did, for the report's header (empty otherwise)."""
        builtin = self.builtin
        if builtin is None:
            return []
        lines = [f"calls: {builtin.calls}"]
        if self.config.target_options:
            lines.append("options: " + " ".join(self.config.target_options))
        if builtin.eps_format is not None:
            lines.append(
                f"eps: the target stores eps as a {builtin.eps_format} number: each case's eps is rounded to "
                f"{builtin.eps_format} and the reference uses that eps (the format's rounding, not a defect)"
            )
        if builtin.compile_grace:
            lines.append(
                f"timeout: the first call of each kind (operation, rank, inputs given) may take "
                f"{builtin.compile_grace:g} s more than --timeout: it compiles"
            )
        lines += list(self.environment.get("adapter_notes") or [])
        return lines

    @property
    def verdict_text(self) -> str:
        """The verdict with what it covers: ``conforms (forward only: this API has no gradients)``."""
        return f"{self.verdict} ({self.scope})" if self.scope else self.verdict

    @property
    def cases(self) -> int:
        return sum(p.cases for p in self.properties)

    @property
    def exit_code(self) -> int:
        return 0 if self.conforms else 1

    def to_json(self) -> dict[str, Any]:
        """The ``--json`` document (the keys the CLI contract names, plus a few extra ones)."""
        c = self.config
        return {
            "target": c.target.text,
            "api": c.api,
            "target_options": list(c.target_options),
            "dtype": c.dtype,
            "device": c.device,
            "memory_format": c.memory_format,
            "profile": c.profile,
            "seed": c.seed,
            "verdict": self.verdict,
            "checked": self.checked,
            "verdict_text": self.verdict_text,
            "summary": {
                "cases": self.cases,
                "properties": len(self.properties),
                "failed": len(self.failed),
                "seconds": round(self.seconds, 3),
            },
            "properties": [_property_json(p) for p in self.properties],
            "environment": self.environment,
        }

    def write_json(self, path: str) -> None:
        with open(path, "w", encoding="utf-8") as f:
            json.dump(self.to_json(), f, indent=2, allow_nan=False)
            f.write("\n")

    def to_junit(self) -> ET.ElementTree:
        """JUnit XML: one <testsuite> for the run, one <testcase> per property."""
        c = self.config
        suite_name = f"gn-spec check {c.target.text} ({c.api}, {c.dtype}, {c.device}, {c.memory_format})"
        suites = ET.Element(
            "testsuites",
            name="gn-spec",
            tests=str(len(self.properties)),
            failures=str(len(self.failed)),
            time=f"{self.seconds:.3f}",
        )
        suite = ET.SubElement(
            suites,
            "testsuite",
            name=suite_name,
            tests=str(len(self.properties)),
            failures=str(len(self.failed)),
            errors="0",
            skipped=str(sum(p.status == NOT_APPLICABLE for p in self.properties)),
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
                failure = ET.SubElement(case, "failure", message=p.message, type="NonConformance")
                failure.text = failure_text(p)
            elif p.status == NOT_APPLICABLE:
                ET.SubElement(case, "skipped", message=p.message)
            out = ET.SubElement(case, "system-out")
            worst = format_ratio(p.worst_error, p.worst_error_kind)
            out.text = f"{p.cases} cases judged; worst error {worst}"
        ET.indent(suites)
        return ET.ElementTree(suites)

    def write_junit(self, path: str) -> None:
        self.to_junit().write(path, encoding="utf-8", xml_declaration=True)


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
    """The console summary: one row per property, then each failure in full, then the verdict."""
    rows = [("property", "status", "cases", "worst error / bound", "worst (u*scale)", "seconds")]
    for p in report.properties:
        kind = p.worst_error_kind
        units = "-" if p.worst_error_units is None else format_ratio(p.worst_error_units, kind)
        rows.append(
            (p.name, p.status, str(p.cases), format_ratio(p.worst_error, kind), units, f"{p.seconds:.1f}")
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
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
                cell.ljust(w) if j == 0 else cell.rjust(w) if j > 1 else cell.ljust(w)
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
        out.write(f"\n=== {p.name} FAILED: {p.headline or p.summary}\n")
        out.write(failure_text(p).rstrip() + "\n")
    scope = f"{report.scope}; " if report.scope else ""
    out.write(
        f"\nverdict: {c.target.text} {report.verdict} ({scope}{report.cases} cases, {len(report.properties)} "
        f"properties, {len(report.failed)} failed, {report.seconds:.1f} s)\n"
    )
