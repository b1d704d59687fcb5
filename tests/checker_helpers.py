"""Helpers shared by the checker's tests: where the test targets live and how to run the CLI."""

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


def gn_spec(
    *args: str, cwd: str | os.PathLike[str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """Run ``gn-spec ARGS`` (as ``python -m gn_spec.cli``) and capture its output."""
    return subprocess.run(
        [sys.executable, "-m", "gn_spec.cli", *args], capture_output=True, text=True, cwd=cwd, timeout=timeout
    )
