"""The conformance matrix at the quick profile and float32, every installed built-in target and notable
option: each row must come out with a verdict (conforms or does not conform), never an error, a crash of the
row's process or a row left out.  Which verdict it is stays the matrix's business (docs/conformance-matrix.md,
regenerated at every dtype and the default profile by ``gn-spec matrix --markdown ... --json ...``).

Left out here, because tox must stay within about 20 minutes on 2 cores:
- the other dtypes: all 70 rows took 1070 s (17.8 min) on 2 cores, the 21 float32 rows a third of that.  Each
  adapter's dtype handling is tested on its own in tests/frameworks/ (float64 computed in float64, bfloat16
  and float16 round trips, the findings at their dtypes); GN_SPEC_MATRIX_DTYPES=all runs every dtype here.
- torch.compile (inductor compiles a C++ kernel for every kind of call: one of its rows took 639 s at the
  quick profile) and tinygrad (its compiler-free interpreter device took 110 to 320 s per row;
  tests/frameworks/test_tinygrad_targets.py checks it end to end at the quick profile once).
This test replaces the JAX and Keras targets' separate quick end-to-end checks.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from gn_spec.checker.builtins import BUILTINS, BY_NAME
from gn_spec.matrix import plan

LEFT_OUT = {"torch.compile", "tinygrad.nn.GroupNorm"}


def test_every_row_of_the_quick_matrix_has_a_verdict(tmp_path: Path) -> None:
    names = [t.name for t in BUILTINS if t.name not in LEFT_OUT]
    dtypes = None if os.environ.get("GN_SPEC_MATRIX_DTYPES") == "all" else ["float32"]
    rows, skipped = plan(names, dtypes)
    if skipped:  # a failure in the frameworks env (conftest), where every framework must be installed
        pytest.skip(f"not every framework is installed: {skipped}")
    md, js = tmp_path / "m.md", tmp_path / "m.json"
    done = subprocess.run(
        [sys.executable, "-m", "gn_spec.cli", "matrix", "--targets", *names, "--profile", "quick",
         "--jobs", "2", "--markdown", str(md), "--json", str(js), *(["--dtypes", *dtypes] if dtypes else [])],
        capture_output=True, text=True, cwd=tmp_path, timeout=2400, check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    got = json.loads(js.read_text())["rows"]
    assert len(got) == len(rows) and len(got) >= len(names)
    bad = [(r["target"], r["options"], r["dtype"], r["verdict"], r["error"]) for r in got
           if r["verdict"].split(" (")[0] not in ("conforms", "does not conform") or r["error"]]
    assert not bad, bad
    left_out = {s.split(":")[0] for s in skipped}
    assert {r["target"] for r in got} == {name for name in names if name not in left_out}
    for r in got:
        # judged end to end: every order the target supports with these options, on generated cases
        orders, _ = BY_NAME[r["target"]].orders_with(r["options"])
        assert r["checked"] == list(orders) and r["cases"] > 50, r
        # the adapter hands back what the properties read (a tensor from Keras' torch backend was once read as
        # "wrong shape or dtype" on every property: a checker defect, not the framework's)
        assert "wrong shape or dtype" not in [f["kind"] for f in r["failed"]], r
