"""A hang ends a property: few hung calls are spent shrinking it, and after the run's hang budget the
checker waits a short, measured time instead of the full --timeout (issue 10, point 3).

Counted in calls, not seconds (the run's times are measured in benchmarks/hang_budget.py): the report's
environment counts the hung calls, and each failure says how long the call was waited for.
"""

from __future__ import annotations

import json
from pathlib import Path

from checker_helpers import gn_spec, target

from gn_spec.checker.runner import HANG_SHRINKS
from gn_spec.checker.worker_process import HANG_BUDGET


def _check(function: str, tmp_path: Path, *more: str) -> tuple[dict, str]:
    report = tmp_path / "r.json"
    result = gn_spec(
        "check",
        target("hangs.py", function),
        "--timeout",
        "2",
        "--seed",
        "0",
        "--json",
        str(report),
        *more,
        cwd=tmp_path,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    return json.loads(report.read_text()), result.stdout


def test_a_target_that_hangs_on_some_inputs_has_every_property_run_and_few_full_timeouts(
    tmp_path: Path,
) -> None:
    data, out = _check("hangs_on_2d_groups", tmp_path, "--dtype", "float64", "--profile", "quick")
    props = {p["name"]: p for p in data["properties"]}
    hung = [p for p in props.values() if "no answer within" in p["message"]]
    assert props["forward_agreement"]["status"] == "failed"
    assert "a hang ends the property" in props["forward_agreement"]["message"]
    # every property ran and has a verdict; the ones that met a hang say so
    assert all(p["status"] in ("passed", "failed", "not applicable") for p in props.values())
    assert hung and all(p["status"] == "failed" for p in hung)
    # the full --timeout was waited at most HANG_BUDGET times; each later hang was waited for briefly
    full = out.count("no answer within the 2 s timeout")
    assert 1 <= full <= HANG_BUDGET + HANG_SHRINKS
    assert data["environment"]["hung_calls"] <= HANG_BUDGET + len(props)
    later = [p for p in hung if p["name"] != "forward_agreement"]
    assert later and all("times the slowest call the target answered" in p["message"] for p in later)
    # inputs that do not hang are still judged: 4-D and 3-D cases pass forward agreement's contracts
    assert props["spatial_permutation_equivariance"]["cases"] > 0


def test_a_target_that_always_hangs_is_given_up_after_the_hang_budget(tmp_path: Path) -> None:
    data, _ = _check("hangs_always", tmp_path, "--profile", "quick")
    assert data["environment"]["hung_calls"] == HANG_BUDGET
    applicable = [p for p in data["properties"] if p["status"] != "not applicable"]
    failed = [p for p in applicable if p["status"] == "failed"]
    assert [p["name"] for p in applicable if p not in failed] == ["no_tampering"]  # it makes no call
    later = failed[1:]
    assert later and all("not called: the target hung on each of the 2 calls" in p["message"] for p in later)
