"""Known deviations declared by the adopter (issue 10, point 1): ``--deviations FILE``.

The target is tests/targets/deviating.py:no_bias_alone, a correct numpy GN that raises on a bias without a
weight (affine = "bias"), and hostile.py:good, a correct one.  Runs use --profile quick, fixed seeds and one
or two properties.
"""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from dataclasses import replace
from pathlib import Path

import pytest
from checker_helpers import gn_spec, target

from gn_spec.checker import run_check
from gn_spec.checker.deviations import CASE_FIELDS, case_fields, load
from gn_spec.checker.options import UsageError
from gn_spec.checker.probe import Probe
from gn_spec.checker.runner import counterexample_fields, run_property, selected_properties
from gn_spec.checker.target import make_config
from gn_spec.checker.worker_process import WorkerProcess
from gn_spec.profiles import PROFILES
from gn_spec.properties import PROPERTY_NAMES
from gn_spec.strategies import Case

DEVIATING = target("deviating.py", "no_bias_alone")
GOOD = target("hostile.py", "good")
REASON = "refuses a bias without a weight"
QUICK_EXAMPLES = PROFILES["quick"].budget.examples


def toml(tmp_path: Path, text: str, name: str = "deviations.toml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def region(props: list[str], cases: str = 'affine = "bias"', extra: str = "") -> str:
    head = f'[[deviation]]\nreason = "{REASON}"\nproperties = {json.dumps(props)}\n'
    return head + f"cases = {{ {cases} }}\n{extra}"


# ------------------------------------------------------------------------------------------- usage errors


@pytest.mark.parametrize(
    ("entry", "named", "listed"),
    [
        ('properties = ["forward_agreemnt"]', "'forward_agreemnt'", "valid properties: forward_agreement,"),
        ('cases = { afine = "bias" }', "'afine'", "valid fields: shape, num_groups,"),
        ('cases = { affine = "biases" }', "'biases'", "one of none, weight, bias, weight_bias"),
        ('cases = { batch = "one" }', "'one'", "expected an integer"),
        ('dtype = "float23"', "'float23'", "valid values: float16, bfloat16, float32, float64"),
        ('kind = "wrong answer"', "'wrong answer'", "valid kinds: wrong values, non-finite where finite"),
        ("severity = 3", "'severity'", "valid keys: reason, properties,"),
    ],
)
def test_a_mistake_in_the_file_names_it_and_lists_the_valid_ones(
    tmp_path: Path, entry: str, named: str, listed: str
) -> None:
    path = toml(tmp_path, f'[[deviation]]\nreason = "r"\n{entry}\n')
    with pytest.raises(UsageError) as error:
        load(path, PROPERTY_NAMES)
    assert named in str(error.value) and listed in str(error.value), error.value
    assert "[[deviation]] 1" in str(error.value)


def test_the_file_must_exist_be_toml_and_give_reasons(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no such file"):
        load(tmp_path / "missing.toml", PROPERTY_NAMES)
    with pytest.raises(UsageError, match="is not valid TOML"):
        load(toml(tmp_path, "[[deviation]\n"), PROPERTY_NAMES)
    with pytest.raises(UsageError, match="needs a reason"):
        load(toml(tmp_path, '[[deviation]]\nproperties = ["forward_agreement"]\n'), PROPERTY_NAMES)


def test_the_cli_exits_2_on_a_bad_entry_before_starting_the_target(tmp_path: Path) -> None:
    path = toml(tmp_path, '[[deviation]]\nreason = "r"\nproperties = ["no_such_property"]\n')
    done = gn_spec("check", DEVIATING, "--profile", "quick", "--deviations", path, "--quiet")
    assert done.returncode == 2, done.stdout + done.stderr
    assert "unknown property 'no_such_property'; valid properties: forward_agreement" in done.stderr


def test_the_case_fields_are_those_of_the_reports_counterexample() -> None:
    case = Case(shape=(3, 4, 5, 2), num_groups=2, eps=1e-3, affine="bias", data="offset")
    fields = counterexample_fields(case, "float32")
    assert set(fields) == set(CASE_FIELDS)
    assert fields == case_fields(case, "float32")
    shown = (fields["batch"], fields["channels"], fields["spatial_dims"], fields["group_size"])
    assert shown == (3, 4, 2, 20)


# --------------------------------------------------------------------------------- regions and counting


def test_a_region_is_not_judged_and_the_rest_is(tmp_path: Path) -> None:
    without = run_check(DEVIATING, profile="quick", seed=2, properties=["forward_agreement"])
    (p,) = without.properties
    assert p.failed and p.kind == "refused valid input" and "affine=bias" in (p.counterexample or "")
    path = toml(tmp_path, region(["forward_agreement"]))
    report = run_check(DEVIATING, profile="quick", seed=2, properties=["forward_agreement"], deviations=path)
    (p,) = report.properties
    assert p.status == "passed" and report.exit_code == 0, p.message
    # the target raises on every affine=bias input: passing means none was passed to it, the others were;
    # the excluded inputs are not among the property's cases, which are as many as without the file
    assert p.cases == QUICK_EXAMPLES and p.excluded > 0
    (d,) = p.deviations
    assert (d.number, d.mode, d.status) == (1, "region", "reproduces")
    assert "re-checked: refused valid input" in d.note
    assert report.verdict_text.startswith("conforms outside its declared deviations")


def test_each_excluded_input_is_counted(tmp_path: Path) -> None:
    # a region that holds every generated input: Hypothesis keeps generating for the property's cases, none
    # of which comes, until it gives up (a few hundred inputs); each one is counted, none judged, and the
    # property has nothing against it
    every = 'affine = ["none", "weight", "bias", "weight_bias"]'
    path = toml(tmp_path, region(["forward_agreement"], every))
    report = run_check(DEVIATING, profile="quick", seed=2, properties=["forward_agreement"], deviations=path)
    (p,) = report.properties
    assert p.status == "passed" and p.cases == 0 and p.excluded > 10 * QUICK_EXAMPLES, (p.status, p.excluded)
    assert report.to_json()["deviations"]["entries"][0]["excluded"] == p.excluded


def _recorded_cases(deviations: str | None, seed: int = 5) -> tuple[list[Case], list[object]]:
    """The cases forward_agreement and shift_invariance were called on, and their results."""
    config = make_config(GOOD, profile="quick", seed=seed, deviations=deviations)
    from gn_spec.checker.deviations import for_config

    devs = for_config(config)
    seen: list[Case] = []
    results = []
    with WorkerProcess(config) as worker:
        worker.start()
        probe = Probe(config, worker)
        for spec in selected_properties(["forward_agreement", "shift_invariance"]):

            def recording(probe, case, draw, _f=spec.function):  # type: ignore[no-untyped-def]
                seen.append(case)
                return _f(probe, case, draw)

            r = run_property(replace(spec, function=recording), probe, seed, deviations=devs)
            results.append((r.status, r.cases, r.worst_error, r.counterexample))
    return seen, results


def test_a_file_that_matches_nothing_leaves_the_generated_cases_unchanged(tmp_path: Path) -> None:
    path = toml(tmp_path, region(["forward_agreement", "shift_invariance"], "batch = 1000"))
    plain_cases, plain = _recorded_cases(None)
    with_file_cases, with_file = _recorded_cases(path)
    assert plain_cases and with_file_cases == plain_cases
    assert with_file == plain


# ----------------------------------------------------------------------------- kinds and expected failures


def test_an_entry_without_cases_is_an_expected_failure(tmp_path: Path) -> None:
    path = toml(tmp_path, f'[[deviation]]\nreason = "{REASON}"\nproperties = ["forward_agreement"]\n')
    report = run_check(DEVIATING, profile="quick", seed=2, properties=["forward_agreement"], deviations=path)
    (p,) = report.properties
    assert p.status == "expected failure" and p.kind == "refused valid input"
    assert report.failed == [] and report.exit_code == 0
    assert p.expected_by is not None and p.expected_by.reason == REASON


def test_a_kind_narrows_an_entry(tmp_path: Path) -> None:
    # the declared kind is not the one that happens: the failure stands
    other = toml(
        tmp_path, '[[deviation]]\nreason = "r"\nproperties = ["forward_agreement"]\nkind = "wrong values"\n'
    )
    report = run_check(DEVIATING, profile="quick", seed=2, properties=["forward_agreement"], deviations=other)
    (p,) = report.properties
    assert p.failed and report.exit_code == 1
    assert p.deviations[0].status == "undecided" and "refused valid input" in p.deviations[0].note
    # a region with the right kind: its inputs are called, their failures excused and counted
    path = toml(tmp_path, region(["forward_agreement"], extra='kind = "refused valid input"\n'), "k.toml")
    report = run_check(DEVIATING, profile="quick", seed=2, properties=["forward_agreement"], deviations=path)
    (p,) = report.properties
    assert p.status == "passed" and report.exit_code == 0
    (d,) = p.deviations
    assert d.status == "reproduces" and d.excluded > 0 and "kind" in d.mode
    assert p.cases == QUICK_EXAMPLES  # an excused failure is not one of the property's cases either


# ------------------------------------------------------------------------------- strict, stale, unmatched


def test_a_deviation_that_no_longer_reproduces_fails_the_run_unless_not_strict(tmp_path: Path) -> None:
    path = toml(tmp_path, region(["forward_agreement"]))
    args = ("check", GOOD, "--profile", "quick", "--seed", "2", "--property", "forward_agreement")
    strict = gn_spec(*args, "--deviations", path, "--quiet")
    assert strict.returncode == 1, strict.stdout + strict.stderr
    stale = "error: deviation 1 ('refuses a bias without a weight'): no longer deviates: remove this entry"
    assert stale in strict.stdout
    assert "verdict: " in strict.stdout and " conforms" in strict.stdout  # the target itself conforms
    lenient = gn_spec(*args, "--deviations", path, "--deviations-strict=false", "--quiet")
    assert lenient.returncode == 0, lenient.stdout + lenient.stderr
    assert "warning: deviation 1 ('refuses a bias without a weight'): no longer deviates" in lenient.stdout


def test_an_expected_failure_that_passes_is_stale(tmp_path: Path) -> None:
    path = toml(tmp_path, '[[deviation]]\nreason = "r"\nproperties = ["forward_agreement"]\n')
    report = run_check(GOOD, profile="quick", seed=2, properties=["forward_agreement"], deviations=path)
    assert report.exit_code == 1 and report.deviation_errors
    assert report.properties[0].deviations[0].status == "no longer deviates"
    only = ["forward_agreement"]
    options = {"profile": "quick", "seed": 2, "properties": only, "deviations": path}
    lenient = run_check(GOOD, **options, deviations_strict=False)
    assert lenient.exit_code == 0 and "no longer deviates" in lenient.warnings[0]


def test_an_entry_that_matched_no_input_is_a_warning(tmp_path: Path) -> None:
    # the second entry is for a property this run does not select: no warning for it
    path = toml(tmp_path, region(["forward_agreement"], "batch = 1000") + "\n" + region(["shift_invariance"]))
    report = run_check(DEVIATING, profile="quick", seed=2, properties=["forward_agreement"], deviations=path)
    assert report.warnings == [f"deviation 1 ({REASON!r}): matched no generated input"]
    assert report.properties[0].failed and report.exit_code == 1  # nothing was excused


# -------------------------------------------------------------------------------- the CLI and renderings


def test_exit_0_when_every_failure_is_declared_and_the_reports_show_them_apart(tmp_path: Path) -> None:
    path = toml(
        tmp_path,
        region(["forward_agreement"])
        + f'\n[[deviation]]\nreason = "{REASON} (shapes)"\nproperties = ["output_shape_and_dtype"]\n',
    )
    out_json, out_xml = tmp_path / "r.json", tmp_path / "r.xml"
    done = gn_spec(
        "check", DEVIATING, "--profile", "quick", "--seed", "2", "--property", "forward_agreement",
        "--property", "output_shape_and_dtype", "--deviations", path, "--json", str(out_json),
        "--junit-xml", str(out_xml), "--quiet",
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "known deviations (" in done.stdout and "[1] reproduces: " + REASON in done.stdout
    assert "output_shape_and_dtype EXPECTED FAILURE (refused valid input), declared by deviation 2" in (
        done.stdout
    )
    assert "outside its declared deviations" in done.stdout
    doc = json.loads(out_json.read_text())
    forward, shapes = doc["properties"]
    assert forward["status"] == "passed" and forward["deviations"][0]["excluded"] > 0
    assert shapes["status"] == "expected failure" and shapes["kind"] == "refused valid input"
    assert doc["summary"]["expected_failures"] == 1 and doc["summary"]["failed"] == 0
    assert [e["status"] for e in doc["deviations"]["entries"]] == ["reproduces", "reproduces"]
    cases = {c.get("name"): c for c in ET.parse(out_xml).getroot().iter("testcase")}
    assert set(cases) == {"forward_agreement", "forward_agreement[deviation 1]", "output_shape_and_dtype"}
    assert cases["forward_agreement"].find("skipped") is None
    region_skip = cases["forward_agreement[deviation 1]"].find("skipped")
    assert region_skip is not None and REASON in region_skip.get("message", "")
    xfail = cases["output_shape_and_dtype"].find("skipped")
    assert xfail is not None and xfail.get("message", "").startswith("expected failure (deviation 2: ")
    suite = ET.parse(out_xml).getroot().find("testsuite")
    assert suite is not None
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped")) == ("3", "0", "2")


def test_the_pytest_plugin_takes_the_deviations_file(tmp_path: Path) -> None:
    path = toml(
        tmp_path,
        region(["forward_agreement"])
        + '\n[[deviation]]\nreason = "shapes"\nproperties = ["output_shape_and_dtype"]\n'
        + '\n[[deviation]]\nreason = "stale"\nproperties = ["rejects_invalid_groups"]\n',
    )
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--pyargs", "gn_spec.properties",
         "--gn-target", DEVIATING, "--gn-profile", "quick", "--gn-seed", "2", "--gn-deviations", path, "-q",
         "-rxf", "-k", "forward_agreement or output_shape_and_dtype or rejects_invalid_groups"],
        capture_output=True, text=True, cwd=tmp_path, timeout=300,
    )  # fmt: skip
    out = done.stdout
    assert done.returncode == 1, out + done.stderr
    assert "1 failed, 1 passed" in out and "1 xfailed" in out, out
    assert "XFAIL" in out and "deviation 2: shapes" in out
    assert "deviation 3 ('stale') no longer deviates for rejects_invalid_groups" in out


# ------------------------------------------------------------------------------ the PyTorch 2.13 example

TORCH_DEVIATIONS = Path(__file__).resolve().parents[1] / "examples" / "torch-2.13-deviations.toml"


def test_the_torch_example_declares_what_torch_gets_wrong_and_nothing_more(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    entries = load(TORCH_DEVIATIONS, PROPERTY_NAMES).entries
    assert [e.properties for e in entries] == [
        ("backward_agreement", "second_order_agreement", "input_not_modified"),
        ("single_value_groups",),
    ]
    out = tmp_path / "r.json"
    done = gn_spec(
        "check", "torch", "--profile", "quick", "--seed", "1", "--deviations", str(TORCH_DEVIATIONS),
        "--json", str(out), "--quiet",
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    doc = json.loads(out.read_text())
    by_name = {p["name"]: p for p in doc["properties"]}
    assert by_name["single_value_groups"]["status"] == "expected failure"
    backward = by_name["backward_agreement"]
    # its numerics are still judged, on as many inputs as a run without the bias-only region would judge
    assert backward["status"] == "passed" and backward["cases"] == QUICK_EXAMPLES
    assert backward["deviations"][0]["excluded"] > 0
    assert [e["status"] for e in doc["deviations"]["entries"]] == ["reproduces", "reproduces"]


def test_at_the_default_profile_torchs_backward_is_judged_on_thousands_of_inputs(tmp_path: Path) -> None:
    """Issue 10's adopter run, its backward part: ``gn-spec check torch --deviations
    examples/torch-2.13-deviations.toml`` judges PyTorch's gradients on every input outside the declared
    region, as many as backward_agreement's weight in the default profile buys (8 x 260 = 2080)."""
    pytest.importorskip("torch")
    budget = PROFILES["default"].budget
    wanted = round(budget.examples * budget.weight_of("backward_agreement", 1.0))
    assert wanted >= 2000
    out = tmp_path / "r.json"
    done = gn_spec(
        "check", "torch", "--seed", "0", "--deviations", str(TORCH_DEVIATIONS), "--property",
        "backward_agreement", "--json", str(out), "--quiet",
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    (backward,) = json.loads(out.read_text())["properties"]
    assert backward["status"] == "passed" and backward["cases"] == wanted
    assert backward["deviations"][0]["excluded"] > 0  # the bias-only inputs, generated and excused
