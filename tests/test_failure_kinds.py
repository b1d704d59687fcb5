"""Every failed property says what kind of failure it is (issue 10, point 2).

Each kind of :data:`gn_spec.checker.failure_kinds.KINDS` is produced by an implementation that has exactly
that fault: a faulty one of the catalogue (tests/implementations) or a hostile target (tests/targets).  The
one a target cannot yet show here, "cannot express valid input" (a framework target's adapter raises
Unexpressible), is checked at the function that sets it.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from checker_helpers import gn_spec, implementation, target

from gn_spec.checker import failure_kinds, run_check
from gn_spec.checker.property_framework import failure_of
from gn_spec.checker.worker_process import CallResult


def hostile(name: str) -> str:
    return target("hostile.py", name)


#: kind -> (target, property, extra run_check options): an implementation whose fault is of that kind.
PRODUCED_BY = {
    # (not the Bessel variance: its m = 1 groups are 0/0, so its worst kind is non-finite, shown first)
    failure_kinds.WRONG_VALUES: (implementation("np_eps_outside_sqrt@float32"), "forward_agreement", {}),
    failure_kinds.NON_FINITE: (target("truthful.py", "inf_last"), "forward_agreement", {}),
    failure_kinds.REFUSED: (target("hostile.py", "raises"), "forward_agreement", {}),
    failure_kinds.ACCEPTED_INVALID: (hostile("accepts_bad_groups"), "rejects_invalid_groups", {}),
    failure_kinds.WRONG_STRUCTURE: (target("hostile.py", "wrong_shape"), "output_shape_and_dtype", {}),
    failure_kinds.MODIFIED_INPUT: (implementation("np_inplace_input@float32"), "input_not_modified", {}),
    failure_kinds.CRASHED: (target("hostile.py", "segfault"), "forward_agreement", {}),
    failure_kinds.HUNG: (target("hostile.py", "hang"), "forward_agreement", {"timeout": 0.5}),
    failure_kinds.TAMPERED: (target("tamper_at_call.py", "group_norm"), "no_tampering", {}),
    failure_kinds.NONDETERMINISTIC: (hostile("nondeterministic"), "repeated_calls_identical", {}),
}


def test_every_kind_has_an_implementation_that_shows_it() -> None:
    assert set(PRODUCED_BY) | {failure_kinds.UNEXPRESSIBLE} == set(failure_kinds.KINDS)


@pytest.mark.parametrize("kind", list(PRODUCED_BY))
def test_the_failure_kind_is_reported(kind: str) -> None:
    where, prop, options = PRODUCED_BY[kind]
    properties = [prop] if prop != "no_tampering" else ["forward_agreement", "no_tampering"]
    report = run_check(where, profile="quick", seed=4, properties=properties, **options)
    (result,) = [p for p in report.properties if p.name == prop]
    assert result.failed, result.message
    assert result.kind == kind, (result.kind, result.message)
    assert report.to_json()["properties"][properties.index(prop)]["kind"] == kind


def test_a_call_the_target_cannot_express_is_of_its_own_kind() -> None:
    outcome = failure_of(CallResult("unexpressible", message="no G that does not divide C here"), "the call")
    assert outcome.unexpressible and outcome.failure_kind == failure_kinds.UNEXPRESSIBLE
    hung = failure_of(CallResult("timeout", message="no answer within 0.5 s"), "the call")
    assert hung.failure_kind == failure_kinds.HUNG and hung.process


def test_the_kind_is_in_the_console_table_and_the_junit_message(tmp_path: Path) -> None:
    out = tmp_path / "r.xml"
    where, prop, _ = PRODUCED_BY[failure_kinds.REFUSED]
    done = gn_spec(
        "check", where, "--profile", "quick", "--seed", "4", "--property", prop, "--junit-xml", str(out),
        "--quiet",
    )  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr
    header, rule, row = done.stdout.split("\n\n")[1].splitlines()[:3]
    assert header.split()[-2:] == ["failure", "kind"] and row.endswith("refused valid input")
    assert f"=== {prop} FAILED (refused valid input): " in done.stdout
    failure = ET.parse(out).getroot().find("testsuite/testcase/failure")
    assert failure is not None
    assert failure.get("message", "").startswith("refused valid input: the forward call")


def test_a_passing_run_has_no_kind_column_and_empty_kinds(tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    done = gn_spec(
        "check", target("hostile.py", "good"), "--profile", "quick", "--seed", "4", "--property",
        "forward_agreement", "--json", str(out), "--quiet",
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "failure kind" not in done.stdout
    assert json.loads(out.read_text())["properties"][0]["kind"] == ""
