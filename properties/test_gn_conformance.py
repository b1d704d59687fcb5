"""The property catalogue as pytest tests (collected with ``pytest --pyargs gn_spec.properties``).

Needs the gn-spec pytest plugin (installed as a ``pytest11`` entry point, or ``-p gn_spec.pytest_plugin``) and
``--gn-target``; see :mod:`gn_spec.pytest_plugin`.
"""

from __future__ import annotations

import pytest

from gn_spec.checker.report import NOT_APPLICABLE, failure_text
from gn_spec.properties import PROPERTY_NAMES
from gn_spec.pytest_plugin import Checker


@pytest.mark.parametrize("name", PROPERTY_NAMES)
def test_property(name: str, gn_checker: Checker) -> None:
    """One property of the catalogue holds for the target given with --gn-target."""
    result = gn_checker.run(name)
    if result.status == NOT_APPLICABLE:
        pytest.skip(result.message)
    if result.failed:
        pytest.fail(f"{result.summary}\n{failure_text(result)}", pytrace=False)
