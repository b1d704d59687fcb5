"""The tinygrad.nn.GroupNorm built-in target's adapter (gn_spec/checker/frameworks/tinygrad_target.py).

The adapter runs in its own interpreter (adapter_probe.py), as in the worker: it sets DEV=PYTHON before
tinygrad is imported, which fixes tinygrad's default device for the whole process.  The probe reports every
output's shape, dtype and largest difference from gn_spec's float64 reference on x of shape (2, 6, 3, 2),
G = 3, for the four affine forms and the three orders; the bounds are sanity bounds (a wrong layout, a dropped
weight or the gradient of the wrong quantity is off by O(1)), not the checker's error model, which judges the
target in `gn-spec check`.  Then the registry's side (no tinygrad import in the parent) and one
`gn-spec check tinygrad.nn.GroupNorm --profile quick`, end to end.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from typing import Any

import pytest
from test_framework_targets import _check, probe

if importlib.util.find_spec("tinygrad") is None:
    pytest.skip("tinygrad is not installed", allow_module_level=True)

TARGET = "tinygrad.nn.GroupNorm"


def test_runs_on_the_python_device() -> None:
    """The notes say which tinygrad device ran the calls: the interpreter (its CPU device needs clang)."""
    notes = probe(TARGET, "float32", ())["notes"]
    assert any(n.startswith("tinygrad device PYTHON ") for n in notes), notes


@pytest.mark.parametrize(("dtype", "bound"), [("float32", 1e-5), ("float64", 1e-12)])
def test_agrees_with_reference(dtype: str, bound: float) -> None:
    """The four affine forms, forward, backward and second order, every output of the dtype under test:
    within 1e-5 at float32 (its gradients here are ~1e-6 off), 1e-12 at float64 (a float32 computation
    would be ~1e-7 off)."""
    _check(probe(TARGET, dtype, ()), dtype, bound, differentiates=True)


@pytest.mark.parametrize(("dtype", "bound"), [("float16", 0.02), ("bfloat16", 0.2)])
def test_half_formats_round_trip(dtype: str, bound: float) -> None:
    """float16 comes back as float16, bfloat16 (which tinygrad's .numpy() hands out as float32) tagged
    bfloat16; values near the reference (11 and 8 significand bits on O(1) data)."""
    _check(probe(TARGET, dtype, ()), dtype, bound, differentiates=True)


def test_parent_does_not_import_tinygrad() -> None:
    """Listing and validating the target reads the registry only: tinygrad is imported, and DEV set, in
    the worker alone."""
    code = (
        "import os, sys\n"
        "from gn_spec.checker import builtins\n"
        "builtins.listing()\n"
        "t = builtins.BY_NAME['tinygrad.nn.GroupNorm']\n"
        "builtins.check_runnable(t, 'float16', 'cpu', 'contiguous')\n"
        "print('tinygrad' in sys.modules, os.environ.get('DEV'))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "DEV"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "None"]


def test_check_quick_end_to_end(tmp_path: Any) -> None:
    """`gn-spec check tinygrad.nn.GroupNorm --profile quick --seed 0 --json out.json` at float32: a verdict
    (exit 0 or 1), every property passed or failed, the three agreement properties judged (about 130 s on
    2 cores: the interpreter device is slow)."""
    out = tmp_path / "out.json"
    done = subprocess.run(
        [sys.executable, "-m", "gn_spec.cli", "check", TARGET, "--profile", "quick", "--seed", "0",
         "--quiet", "--json", out],
        capture_output=True, text=True, cwd=tmp_path, timeout=900, check=False,
    )
    assert done.returncode in (0, 1), done.stdout[-2000:] + done.stderr[-2000:]
    report = json.loads(out.read_text())
    statuses = {p["name"]: p["status"] for p in report["properties"]}
    assert all(s in ("passed", "failed") for s in statuses.values()), statuses
    for name in ("forward_agreement", "backward_agreement", "second_order_agreement"):
        prop = next(p for p in report["properties"] if p["name"] == name)
        assert prop["cases"] > 0, prop
    assert report["summary"]["cases"] > 100
