"""The property catalogue as pytest tests (collected with ``pytest --pyargs gn_spec.properties``).

Needs the gn-spec pytest plugin (installed as a ``pytest11`` entry point, or ``-p gn_spec.pytest_plugin``) and
``--gn-target``; see :mod:`gn_spec.pytest_plugin`.
"""

from __future__ import annotations

import warnings

import pytest

from gn_spec.checker.deviations import STALE
from gn_spec.checker.report import EXPECTED_FAILURE, NOT_APPLICABLE, failure_text
from gn_spec.properties import PROPERTY_NAMES
from gn_spec.pytest_plugin import Checker


@pytest.mark.parametrize("name", PROPERTY_NAMES)
def test_property(name: str, gn_checker: Checker) -> None:
    """One property of the catalogue holds for the target given with --gn-target."""
    result = gn_checker.run(name)
    if result.status == NOT_APPLICABLE:
        pytest.skip(result.message)
    if result.failed:
        pytest.fail(f"{result.summary} [{result.kind}]\n{failure_text(result)}", pytrace=False)
    stale = [d for d in result.deviations if d.status == STALE]
    for d in stale:
        text = f"deviation {d.number} ({d.reason!r}) no longer deviates for {name}: remove it ({d.note})"
        if gn_checker.deviations.strict:
            pytest.fail(text, pytrace=False)
        warnings.warn(text, UserWarning, stacklevel=1)
    if result.status == EXPECTED_FAILURE:
        by = result.expected_by
        assert by is not None
        pytest.xfail(f"deviation {by.number}: {by.reason} ({result.kind}: {result.message.splitlines()[0]})")
