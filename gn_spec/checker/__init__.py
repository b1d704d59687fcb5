"""The conformance checker behind ``gn-spec check``.

The target runs only in a worker process (:mod:`~gn_spec.checker.worker`, driven by
:mod:`~gn_spec.checker.client`); the reference, the error model and the verdicts run here.  Properties live in
``gn_spec.properties``; :func:`run_check` drives them with Hypothesis (:mod:`~gn_spec.checker.runner`) and
returns a :class:`~gn_spec.checker.report.Report`.

>>> from gn_spec.checker import run_check
>>> report = run_check("torch", profile="quick", seed=1)   # doctest: +SKIP
>>> report.exit_code, report.verdict                        # doctest: +SKIP
(0, 'conforms')
"""

from gn_spec.checker.report import PropertyResult, Report
from gn_spec.checker.runner import CheckerBug, run_check
from gn_spec.checker.target import CheckConfig, UsageError

__all__ = ["CheckConfig", "CheckerBug", "PropertyResult", "Report", "UsageError", "run_check"]
