"""Helpers shared by the checker's tests: where the test targets live and how to run the CLI.

tests/targets holds the broken and hostile targets; the correct and faulty implementations of Group
Normalization are those of tests/implementations (one corpus, shared with the kill matrix), named by their
catalogue entry.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

TARGETS = Path(__file__).resolve().parent / "targets"


def target(file: str, function: str | None = None) -> str:
    """TARGET text for a file in tests/targets (``file.py:function``, or the bare file for cs231n)."""
    path = str(TARGETS / file)
    return path if function is None else f"{path}:{function}"


def implementation(name: str) -> str:
    """Absolute TARGET text of the catalogued implementation ``name`` (``stem@dtype``, as in
    tests/implementations/catalogue.py)."""
    from implementations import catalogue

    entries = {e.name: e for e in catalogue.ALL}
    if name not in entries:
        raise KeyError(f"{name!r} is not in tests/implementations/catalogue.py")
    return entries[name].absolute_target


def gn_spec(
    *args: str, cwd: str | os.PathLike[str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """Run ``gn-spec ARGS`` (as ``python -m gn_spec.cli``) and capture its output."""
    return subprocess.run(
        [sys.executable, "-m", "gn_spec.cli", *args], capture_output=True, text=True, cwd=cwd, timeout=timeout
    )
