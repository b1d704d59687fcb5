"""Shared by the kill-matrix and soak benchmarks: the implementation catalogue, and a checker run as a record.

The catalogue lives in tests/implementations/catalogue.py (test data, not part of the package). It is imported
as ``implementations.catalogue``, exactly as the tests import it, with the checkout's tests/ folder put on the
import path here (found from this file, so the benchmarks run from any working directory of a checkout).
"""

from __future__ import annotations

import math
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT / "tests") not in sys.path:
    sys.path.insert(0, str(ROOT / "tests"))

# re-exported for the benchmarks (the `as` form says so)
from implementations import catalogue as catalogue  # noqa: E402 - found through the path set above
from implementations.catalogue import Entry as Entry  # noqa: E402


@dataclass
class Run:
    """One checker run of one target, reduced to what the benchmarks tabulate.

    ``seconds_to_rejection`` is the time from the start of the run until the first failing property finished
    (shrinking included), adding up the properties' times in the order the checker ran them; None when the
    target conformed. ``worst_ratio`` is the largest judged error as a fraction of its bound over all
    properties (the headroom is 1 / worst_ratio).
    """

    name: str
    verdict: str
    seconds: float
    cases: int
    failed: list[str] = field(default_factory=list)
    seconds_to_rejection: float | None = None
    worst_ratio: float | None = None
    worst_property: str | None = None
    messages: dict[str, str] = field(default_factory=dict)
    diagnoses: dict[str, list[str]] = field(default_factory=dict)
    #: the shrunk counterexample of each failing property (``Case.describe()`` text)
    counterexamples: dict[str, str] = field(default_factory=dict)

    @property
    def conforms(self) -> bool:
        return self.verdict == "conforms"


def check(target: str, api: str, dtype: str, profile: str, seed: int | None, name: str | None = None) -> Run:
    """Run ``gn_spec.checker.run_check`` once and summarize its report."""
    from gn_spec.checker import run_check

    start = time.perf_counter()
    report = run_check(target, api=api, dtype=dtype, profile=profile, seed=seed)
    wall = time.perf_counter() - start
    elapsed, to_rejection = 0.0, None
    worst, worst_name = None, None
    failed, messages, diagnoses, counterexamples = [], {}, {}, {}
    for p in report.properties:
        elapsed += p.seconds
        if p.failed:
            failed.append(p.name)
            messages[p.name] = p.message
            counterexamples[p.name] = p.counterexample or ""
            if p.diagnosis:
                diagnoses[p.name] = list(p.diagnosis)
            if to_rejection is None:
                to_rejection = elapsed
        r = p.worst_error
        if r is not None and not math.isnan(r) and (worst is None or r > worst):
            worst, worst_name = r, p.name
    return Run(name or target, report.verdict, wall, report.cases, failed, to_rejection, worst, worst_name,
               messages, diagnoses, counterexamples)


def median(values: list[float]) -> float:
    return statistics.median(values) if values else math.nan


def fmt_seconds(s: float | None) -> str:
    return "-" if s is None else f"{s:.1f}"


def fmt_ratio(r: float | None) -> str:
    if r is None:
        return "-"
    return "inf" if math.isinf(r) else f"{r:.3g}"


def environment_line() -> str:
    """Versions and machine, for the header of a results file."""
    import os
    import platform

    import numpy

    try:
        import torch

        torch_version = str(torch.__version__)
        threads = torch.get_num_threads()
    except ImportError:  # pragma: no cover - torch is an extra
        torch_version, threads = "absent", 0
    return (f"Python {platform.python_version()}, numpy {numpy.__version__}, torch {torch_version} "
            f"({threads} threads), {os.cpu_count()} CPUs, {platform.machine()} {platform.system()}")


def as_row(cells: list[Any]) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"
