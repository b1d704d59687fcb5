"""The conformance checker behind ``gn-spec check``.

The target runs only in a worker process (what runs there is :mod:`~gn_spec.checker.worker_main`; the
parent's handle on it is :class:`~gn_spec.checker.worker_process.WorkerProcess`); the reference, the error
model and the verdicts run here.  Properties live in ``gn_spec.properties``; :func:`run_check` drives them
with Hypothesis (:mod:`~gn_spec.checker.runner`) and returns a :class:`~gn_spec.checker.report.Report`.

>>> from gn_spec.checker import run_check
>>> report = run_check("torch", profile="quick", seed=1)   # doctest: +SKIP
>>> report.exit_code, report.verdict                        # doctest: +SKIP
(1, 'does not conform')

The names below are imported on first use, so that the worker process (which imports
``gn_spec.checker.worker_main``) does not pay for Hypothesis and the runner.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gn_spec.checker.report import PropertyResult, Report
    from gn_spec.checker.runner import CheckerBug, run_check
    from gn_spec.checker.target import CheckConfig, UsageError

_WHERE = {
    "PropertyResult": "report",
    "Report": "report",
    "CheckerBug": "runner",
    "run_check": "runner",
    "CheckConfig": "target",
    "UsageError": "target",
}

__all__ = ["CheckConfig", "CheckerBug", "PropertyResult", "Report", "UsageError", "run_check"]


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(f"gn_spec.checker.{_WHERE[name]}"), name)
    raise AttributeError(f"module 'gn_spec.checker' has no attribute {name!r}")
