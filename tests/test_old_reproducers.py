"""Reproducer scripts written by gn-spec 0.1.0 still run against today's package.

``tests/fixtures/reproducers_0_1_0/`` holds reproducers exactly as the released checker wrote them (the
checkout path they named replaced by ``@REPO@``): failures of catalogued faulty implementations through each
API (numpy, torch, cs231n), and the ``reference`` target's scripts, which import gn-spec's internals
(``gn_spec.strategies``, ``gn_spec.error_model``, ``gn_spec.checker.dtypes``).  A rename inside gn-spec that
drops one of those names breaks every such script a user saved; this test catches it.  ``EXIT_CODES.txt``
records the exit status each script had when it was written (1: the failure reproduces; 0: it reported
without asserting, as 0.1.0's scripts for some properties did): the status must be the same today.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
FIXTURES = HERE / "fixtures" / "reproducers_0_1_0"
REPO = HERE.parent


def _recorded() -> dict[str, int]:
    rows = (line.split() for line in (FIXTURES / "EXIT_CODES.txt").read_text().splitlines() if line.strip())
    return {name: int(code) for name, code in rows}


@pytest.mark.parametrize("name", sorted(_recorded()))
def test_a_0_1_0_reproducer_still_runs(name: str, tmp_path: Path) -> None:
    script = tmp_path / name
    script.write_text((FIXTURES / name).read_text().replace("@REPO@", str(REPO)))
    done = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    for broken in ("ImportError", "ModuleNotFoundError", "NameError", "AttributeError"):
        assert broken not in done.stderr, f"{name} no longer runs:\n{done.stderr[-2000:]}"
    assert done.returncode == _recorded()[name], (
        f"{name} exited {done.returncode}, written to exit {_recorded()[name]}:\n"
        f"{done.stdout[-1500:]}\n{done.stderr[-1500:]}"
    )


def test_the_fixtures_are_all_recorded() -> None:
    assert sorted(p.name for p in FIXTURES.glob("*.py")) == sorted(_recorded())
