"""``gn-spec matrix``: every installed built-in target judged side by side, one row per target, dtype and
notable option, written as a Markdown table and a JSON document.

Each row is one ``gn-spec check`` run in its own process (``python -m gn_spec.cli check NAME ... --json``), so
that one framework's import, crash or hang cannot touch another's row; ``--jobs N`` runs N rows at a time.
The notable options of a target are every value of each of its options that has a fixed set of values (a
Keras backend, an ONNX runtime) or is a switch (Flax's ``use_fast_variance``), where what that value needs is
installed; other options keep their default.
"""

from __future__ import annotations

import concurrent.futures
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any, TextIO

from gn_spec.checker import builtins
from gn_spec.checker.builtins import BUILTINS, BY_NAME, BuiltinTarget
from gn_spec.checker.options import UsageError
from gn_spec.checker.runner import OUTSIDE_BOTH, SEQUENTIAL_ONLY, WITHIN_LOG_DEPTH, WITHIN_SEQUENTIAL
from gn_spec.findings import confirmations as confirmations  # the matrix's lookup of findings


@dataclass
class Row:
    """One run of the matrix and what its report said."""

    target: str
    options: tuple[str, ...]
    dtype: str
    version: str = ""
    verdict: str = ""
    checked: list[str] = field(default_factory=list)
    failed: list[dict[str, Any]] = field(default_factory=list)  # name, kind, worst error text
    worst: dict[str, str] = field(default_factory=dict)  # property -> worst err / bound text
    diagnosis: str = ""
    accuracy_class: str = ""  # the worst summation class its agreement properties meet (SPEC.md 3.3)
    counterexample: str = ""
    cases: int = 0
    seconds: float = 0.0
    error: str = ""  # the run gave no report (usage error, internal error, timeout)
    profile: str = ""  # the profile the row ran at (the matrix's, or quick for a --quick-targets row)
    #: per failed property, the finding that confirms it (gn_spec.findings.confirmations)
    findings: list[dict[str, str]] = field(default_factory=list)

    @property
    def label(self) -> str:
        return " ".join(self.options)


def variants(target: BuiltinTarget) -> list[tuple[str, ...]]:
    """The option settings a target's rows use: every combination of its notable options' values."""
    choices: list[list[str]] = []
    for o in target.options:
        if o.choices is not None:
            values = [
                v
                for v in o.choices
                if all(
                    builtins.installed_version(d) for d in target.option_requires.get(o.name, {}).get(v, ())
                )
            ]
        elif o.type is bool:
            values = ["true", "false"]
        else:
            values = [str(o.default)]
        choices.append([f"{o.name}={v}" for v in values])
    return [tuple(c) for c in itertools.product(*choices)] if choices else [()]


def dtypes_of(target: BuiltinTarget, options: Sequence[str]) -> list[str]:
    allowed = list(target.dtypes)
    for text in options:
        key, _, value = text.partition("=")
        only = target.option_dtypes.get(key, {}).get(value)
        if only is not None:
            allowed = [d for d in allowed if d in only]
    return allowed


def plan(
    targets: Sequence[str] | None = None, dtypes: Sequence[str] | None = None, quick: Sequence[str] = ()
) -> tuple[list[Row], list[str]]:
    """The rows to run (installed targets only) and a line per target left out, saying why; the rows of the
    ``quick`` targets (``--quick-targets``) run at the quick profile, the others at the matrix's."""
    names = list(targets) if targets else [t.name for t in BUILTINS]
    unknown = [n for n in names if n not in BY_NAME]
    if unknown:
        raise UsageError(f"unknown targets {unknown}; the built-in targets: {', '.join(BY_NAME)}")
    stray = sorted(set(quick) - set(names))
    if stray:
        raise UsageError(f"--quick-targets {stray}: not among the matrix's targets")
    rows, skipped = [], []
    for name in names:
        t = BY_NAME[name]
        absent = builtins.missing(t)
        if absent:
            skipped.append(f"{name}: not installed ({builtins.install_hint(t)})")
            continue
        if t.needs_compiler and builtins.compiler() is None:
            skipped.append(f"{name}: no C++ compiler on PATH")
            continue
        for options in variants(t):
            for dtype in dtypes_of(t, options):
                if dtypes is None or dtype in dtypes:
                    version = builtins.installed_version(t.framework) or ""
                    rows.append(Row(name, options, dtype, version, profile="quick" if name in quick else ""))
    return rows, skipped


def run_row(row: Row, profile: str, seed: int, timeout: float | None, row_timeout: float) -> Row:
    row.profile = row.profile or profile
    """Run one row's ``gn-spec check`` and fill in what its JSON report says (``timeout`` None: each
    target's own default)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "report.json")
        args = [sys.executable, "-m", "gn_spec.cli", "check", row.target, "--dtype", row.dtype]
        for text in row.options:
            args += ["--target-option", text]
        args += [
            "--profile",
            row.profile,
            "--seed",
            str(seed),
            *(("--timeout", f"{timeout:g}") if timeout is not None else ()),
            "--json",
            path,
            "--quiet",
            # one process a row: the matrix's own --jobs shares the CPUs among rows
            "--jobs",
            "1",
        ]
        start = time.perf_counter()
        try:
            done = subprocess.run(args, capture_output=True, text=True, cwd=tmp, timeout=row_timeout)
        except subprocess.TimeoutExpired:
            row.error = f"no verdict within {row_timeout:g} s"
            row.seconds = time.perf_counter() - start
            return row
        row.seconds = time.perf_counter() - start
        if done.returncode not in (0, 1) or not os.path.exists(path):
            lines = (done.stderr.strip() or done.stdout.strip() or "no output").splitlines()
            row.error = f"exit {done.returncode}: {lines[-1][:300]}"
            return row
        with open(path, encoding="utf-8") as f:
            report = json.load(f)
    fill(row, report)
    row.findings = confirmations(row)
    return row


def rows_from_json(doc: dict[str, Any]) -> tuple[list[Row], list[str], dict[str, Any]]:
    """The rows, left-out lines and header of a matrix JSON document (``--json``), each row's findings
    looked up again in :data:`gn_spec.findings.FINDINGS` (``--from-json`` re-renders a matrix with them)."""
    known = {f.name for f in fields(Row)}
    rows = []
    for entry in doc["rows"]:
        row = Row(**{k: v for k, v in entry.items() if k in known})
        row.options = tuple(row.options)
        row.findings = confirmations(row)
        rows.append(row)
    head = {k: v for k, v in doc.items() if k not in ("rows", "not_runnable")}
    return rows, list(doc.get("not_runnable", [])), head


def fill(row: Row, report: dict[str, Any]) -> None:
    """Copy what the matrix shows from a ``--json`` report into ``row``."""
    row.verdict = report.get("verdict_text") or report.get("verdict", "")
    row.checked = list(report.get("checked", []))
    row.cases = int(report.get("summary", {}).get("cases", 0))
    shortest: tuple[int, str] | None = None
    classes = [p.get("accuracy_class", "") for p in report.get("properties", [])]
    row.accuracy_class = next((c for c in _CLASS_ORDER if c in classes), "")
    for p in report.get("properties", []):
        if p.get("worst_error_text") is not None:
            row.worst[p["name"]] = p["worst_error_text"]
        if p.get("status") != "failed":
            continue
        row.failed.append({"name": p["name"], "kind": p.get("kind", ""), "worst": p.get("worst_error_text")})
        if p.get("diagnosis") and not row.diagnosis:
            row.diagnosis = p["diagnosis"][0]
        fields = p.get("counterexample_fields") or {}
        size = 1
        for s in fields.get("shape", [0]):
            size *= s
        text = (p.get("counterexample") or "").split(";")[0]
        if text and (shortest is None or size < shortest[0]):
            shortest = (size, f"{p['name']}: {text}")
    row.counterexample = shortest[1] if shortest else ""


#: The accuracy classes, worst first.
_CLASS_ORDER = (OUTSIDE_BOTH, SEQUENTIAL_ONLY, WITHIN_SEQUENTIAL, WITHIN_LOG_DEPTH)


def run_matrix(
    rows: list[Row],
    *,
    profile: str,
    seed: int,
    timeout: float | None,
    jobs: int,
    row_timeout: float,
    progress: TextIO | None = None,
) -> list[Row]:
    """Run every row (``jobs`` at a time); rows keep their planned order."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        futures = [pool.submit(run_row, r, profile, seed, timeout, row_timeout) for r in rows]
        for i, future in enumerate(concurrent.futures.as_completed(futures), 1):
            r = future.result()
            if progress is not None:
                what = r.error or r.verdict
                progress.write(
                    f"[{i:2d}/{len(rows)}] {r.target} {r.label} {r.dtype}: {what} ({r.seconds:.0f} s)\n"
                )
                progress.flush()
    return rows


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def markdown(rows: list[Row], skipped: list[str], header: dict[str, Any]) -> str:
    """The matrix as a Markdown document."""
    lines = [
        "# Conformance matrix",
        "",
        f"Generated by `{header['command']}` with gn-spec {header['gn_spec_version']} on "
        f"{header['platform']}, Python {header['python']}, {header['date']} (profile {header['profile']}, "
        f"seed {header['seed']}{_quick_note(rows, header['profile'])}). Each row is one `gn-spec check` "
        "run; a failed property is listed with its failure kind and its worst error as a fraction of the "
        "bound (SPEC.md §3); the counterexample is the smallest of the failures. \"confirmed by\" names the "
        "test that reproduces each failure's defect with the framework alone (`gn_spec/findings.py` maps "
        "failures to them; SPEC.md §3.11 and §3.12 describe each), or says why it is unconfirmed. "
        "Regenerate with the command above; `gn-spec matrix --from-json PATH --markdown PATH` re-renders "
        "a matrix after the findings change.",
        "",
        "| target | version | options | dtype | verdict | failed properties (kind, worst err/bound) "
        "| forward err/bound | accuracy class | diagnosis | shortest counterexample | confirmed by |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if r.error:
            failed, verdict = "", f"no verdict: {r.error}"
        else:
            verdict = r.verdict
            failed = "; ".join(
                f"{f['name']} ({f['kind'] or 'failed'}{', ' + f['worst'] if f['worst'] else ''})"
                for f in r.failed
            )
        cells = [
            r.target,
            r.version,
            r.label or "-",
            r.dtype + (f" ({r.profile})" if r.profile and r.profile != header["profile"] else ""),
            verdict,
            failed or "-",
            r.worst.get("forward_agreement", "-"),
            r.accuracy_class or "-",
            r.diagnosis or "-",
            r.counterexample or "-",
            "; ".join(dict.fromkeys(f["label"] for f in r.findings)) or "-",
        ]
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    if skipped:
        lines += ["", "Not in this table (not runnable where it was generated):", ""]
        lines += [f"- {s}" for s in skipped]
    return "\n".join(lines) + "\n"


def _quick_note(rows: list[Row], profile: str) -> str:
    """Which targets' rows ran at another profile than the matrix's (``--quick-targets``), for the header."""
    other = sorted({r.target for r in rows if r.profile and r.profile != profile})
    return f"; the rows of {', '.join(other)} at the quick profile" if other else ""


def header(argv: Sequence[str], profile: str, seed: int) -> dict[str, Any]:
    import platform
    from importlib.metadata import version

    return {
        "command": "gn-spec matrix " + " ".join(argv),
        "gn_spec_version": version("gn-spec"),
        "platform": f"{platform.system()} {platform.machine()}",
        "python": platform.python_version(),
        "date": time.strftime("%Y-%m-%d"),
        "profile": profile,
        "seed": seed,
    }


def to_json(rows: list[Row], skipped: list[str], head: dict[str, Any]) -> dict[str, Any]:
    return {**head, "rows": [asdict(r) for r in rows], "not_runnable": skipped}
