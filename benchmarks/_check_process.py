"""One ``gn-spec check`` as a user runs it, timed: shared by the benchmarks that time whole runs.

The run is a fresh ``python -m gn_spec.cli check TARGET ... --json PATH --quiet`` process in a temporary
working folder (interpreter start, worker start and imports included in the time).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from typing import Any


def timed_check(target: str, *options: str, keep_as: str | None = None) -> tuple[float, dict[str, Any]]:
    """Wall seconds and the ``--json`` report of ``gn-spec check TARGET OPTIONS``; ``keep_as``: where to
    keep the report (default: a temporary file).  A run that gives no verdict (exit status other than 0 or
    1) ends the benchmark with the command and its stderr."""
    with tempfile.TemporaryDirectory() as tmp:
        path = keep_as or os.path.join(tmp, "report.json")
        command = [sys.executable, "-m", "gn_spec.cli", "check", target, *options, "--json", path, "--quiet"]
        start = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, cwd=tmp)
        seconds = time.perf_counter() - start
        if done.returncode not in (0, 1):
            raise SystemExit(f"{' '.join(command)} exited with {done.returncode}:\n{done.stderr[-3000:]}")
        with open(path, encoding="utf-8") as f:
            return seconds, json.load(f)
