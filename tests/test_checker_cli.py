"""gn-spec check from the outside: exit statuses, console output, --json and --junit-xml."""

from __future__ import annotations

import json
import math
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from checker_helpers import gn_spec, target
from jsonschema import Draft202012Validator

from gn_spec.checker.report import SCHEMA_PATH
from gn_spec.cli import main
from gn_spec.properties import PROPERTY_NAMES

# ---------------------------------------------------------------------------------------------- usage errors


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["check", "torch", "--no-such-option"], "unrecognized arguments: --no-such-option"),
        (["check", "torch", "--dtype", "float8"], "invalid choice: 'float8'"),
        (["check", "torch", "--timeout", "-1"], "invalid timeout '-1'"),
        (["check", "torch", "--seed", "x"], "invalid seed 'x'"),
        (["check", "no_such_module_for_gn_spec:group_norm"], "no module named 'no_such_module_for_gn_spec'"),
        (["check", "nonexistent/file.py:group_norm"], "no such file 'nonexistent/file.py'"),
        (["check", "somemodule"], "names no function"),
        (["check", target("hostile.py", "no_such_function")], "'no_such_function' (its functions: "),
        (["check", target("hostile.py", "NOT_A_FUNCTION")], "NOT_A_FUNCTION is a int, not callable"),
        (["check", target("import_raises.py", "group_norm")], "needs a GPU library that is not installed"),
        (["check", target("import_exits.py", "group_norm")], "exited with status 7"),
        (["check", target("cs231n_forward_only.py"), "--api", "cs231n"], "spatial_groupnorm_backward"),
        (["check", "torch", "--api", "numpy"], "takes --api torch"),
        (["check", target("hostile.py", "good"), "--dtype", "bfloat16"], "numpy has no bfloat16"),
        (["check", target("hostile.py", "good"), "--device", "cuda"], "needs --api torch"),
        (["check", "reference", "--property", "no_such_property"], "unknown properties"),
        (["check", "reference", "--json", "/no/such/folder/report.json"], "no such folder"),
    ],
)
def test_usage_errors_exit_2_with_the_reason(
    args: list[str],
    message: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    monkeypatch.setenv("HYPOTHESIS_STORAGE_DIRECTORY", str(tmp_path))  # main() would set it process-wide
    try:
        status = main(args)
    except SystemExit as exc:  # argparse's own usage errors
        status = exc.code
    out, err = capsys.readouterr()
    assert status == 2, out + err
    assert message in err
    assert "Traceback" not in err


def test_usage_error_from_the_console_command() -> None:
    result = gn_spec("check", "reference", "--profile", "slow")
    assert result.returncode == 2
    assert "invalid choice: 'slow'" in result.stderr


def test_cuda_absent_is_a_usage_error() -> None:
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA; the usage error is for machines without it")
    result = gn_spec("check", "torch", "--device", "cuda", "--profile", "quick")
    assert result.returncode == 2
    assert "torch.cuda.is_available() is False" in result.stderr


# ---------------------------------------------------------------------------------------------- verdicts


def test_reference_conforms_with_reports(tmp_path: Path) -> None:
    """The self-check: exit 0, a table of every property, and both reports written and well formed."""
    json_path, xml_path = tmp_path / "report.json", tmp_path / "report.xml"
    result = gn_spec(
        "check",
        "reference",
        "--profile",
        "quick",
        "--seed",
        "3",
        "--dtype",
        "float32",
        "--json",
        str(json_path),
        "--junit-xml",
        str(xml_path),
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    for name in PROPERTY_NAMES:
        assert name in result.stdout
        assert name in result.stderr  # one progress line per property
    assert "verdict: reference conforms" in result.stdout
    report = json.loads(json_path.read_text())
    check_json_schema(report)
    assert report["verdict"] == "conforms"
    assert report["summary"]["failed"] == 0
    suites = ET.parse(xml_path).getroot()
    check_junit(suites, report)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.json", "report.xml"]  # nothing else written


def test_failing_target_reports(tmp_path: Path) -> None:
    """A wrong implementation: exit 1, the failure in full (counterexample, worst element, reproducer) on the
    console, in the JSON and in the JUnit XML."""
    json_path, xml_path = tmp_path / "r.json", tmp_path / "r.xml"
    result = gn_spec(
        "check",
        target("hostile.py", "bessel"),
        "--profile",
        "quick",
        "--seed",
        "1",
        "--property",
        "forward_agreement",
        "--property",
        "output_shape_and_dtype",
        "--json",
        str(json_path),
        "--junit-xml",
        str(xml_path),
    )
    assert result.returncode == 1, result.stdout + result.stderr
    out = result.stdout
    assert "=== forward_agreement FAILED" in out
    assert "counterexample: shape=" in out
    assert "observed" in out and "expected" in out
    assert "reproducer:" in out and "materialize(case, 'float32')" in out
    assert "verdict:" in out and "does not conform" in out
    report = json.loads(json_path.read_text())
    check_json_schema(report)
    assert report["verdict"] == "does not conform"
    assert report["summary"] == {**report["summary"], "properties": 2, "failed": 1}
    forward = next(p for p in report["properties"] if p["name"] == "forward_agreement")
    assert forward["status"] == "failed" and forward["worst_error"] is None or forward["worst_error"] > 1
    assert forward["counterexample"].startswith("shape=")
    compile(forward["reproducer"], "reproducer.py", "exec")
    shape = next(p for p in report["properties"] if p["name"] == "output_shape_and_dtype")
    assert shape["status"] == "passed" and shape["counterexample"] is None
    check_junit(ET.parse(xml_path).getroot(), report)


FAULTY = Path(__file__).resolve().parent / "implementations" / "faulty"


@pytest.mark.parametrize(
    ("text", "api", "prop"),
    [
        (target("hostile.py", "bessel"), "numpy", "forward_agreement"),
        # a torch function from a file: the script must import torch itself (it once did not)
        (f"{FAULTY / 'torch_custom_fn_missing_mean_term.py'}:group_norm", "torch", "backward_agreement"),
    ],
)
def test_reproducer_runs_standalone_and_shows_the_failure(
    text: str, api: str, prop: str, tmp_path: Path
) -> None:
    if api == "torch":
        pytest.importorskip("torch")
    result = gn_spec(
        "check", text, "--api", api, "--profile", "quick", "--seed", "2", "--property", prop,
        "--json", str(tmp_path / "r.json"),
    )
    assert result.returncode == 1, result.stderr
    script = json.loads((tmp_path / "r.json").read_text())["properties"][0]["reproducer"]
    (tmp_path / "repro.py").write_text(script)
    import subprocess
    import sys

    run = subprocess.run(
        [sys.executable, "repro.py"], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 1, run.stderr  # the script's final assert fails, as the target does
    assert "mismatched elements" in run.stdout
    assert "AssertionError: the target does not conform" in run.stderr


def test_torch_quick_fails_only_on_its_refusals_of_valid_input(tmp_path: Path) -> None:
    """PyTorch's F.group_norm passes every property but those that meet its refusals of valid input (SPEC.md
    3.11): autograd raises for a bias given without a weight, and the forward rejects x of shape (1, C) with
    G = C (whose output is the bias) with "Expected more than 1 value per channel when training"."""
    pytest.importorskip("torch")
    result = gn_spec(
        "check", "torch", "--profile", "quick", "--seed", "0", "--json", str(tmp_path / "r.json")
    )
    assert result.returncode == 1, result.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    failed = {p["name"]: p for p in report["properties"] if p["status"] == "failed"}
    # every property that calls the backward may meet the bias-only refusal (input_not_modified does when its
    # cases draw affine=bias); nothing else fails
    bias_only = {"backward_agreement", "second_order_agreement", "input_not_modified"}
    assert {"backward_agreement", "second_order_agreement", "single_value_groups"} <= set(failed)
    assert set(failed) <= bias_only | {"single_value_groups"}
    assert {p["kind"] for p in failed.values()} == {"refused valid input"}
    single = failed["single_value_groups"]
    assert "Expected more than 1 value per channel when training" in single["message"]
    assert single["counterexample"].startswith("shape=(1, 1) num_groups=1")
    # the closing lines: one sentence per failure with its kind, and where its known deviations are declared
    for name in failed:
        assert f"  - {name} (refused valid input): " in result.stdout
    assert "examples/torch-2.13-deviations.toml in gn-spec's repository" in result.stdout
    for name in bias_only & set(failed):
        assert "affine=bias" in failed[name]["counterexample"]
        assert "raised RuntimeError" in failed[name]["message"]


def test_seed_makes_a_run_reproducible(tmp_path: Path) -> None:
    args = [
        "check",
        target("hostile.py", "bessel"),
        "--profile",
        "quick",
        "--seed",
        "7",
        "--property",
        "forward_agreement",
        "--property",
        "shift_invariance",
    ]
    reports = []
    for i in range(2):
        assert gn_spec(*args, "--json", str(tmp_path / f"{i}.json")).returncode == 1
        report = json.loads((tmp_path / f"{i}.json").read_text())
        for p in report["properties"]:
            p.pop("seconds")
        report["summary"].pop("seconds")
        # when it ran and its command line (the --json path differs): the only fields that may differ
        report.pop("timestamp"), report.pop("command")
        reports.append(report)
    assert reports[0] == reports[1]


def test_derive_subcommand_runs_the_derivations_module() -> None:
    result = gn_spec("derive", "--help")
    assert result.returncode == 0
    assert "gn_spec.derivations" in result.stdout


# ---------------------------------------------------------------------------------------------- schema


def check_json_schema(report: dict) -> None:
    """The --json document has the keys and types the CLI contract names, and validates against the JSON
    Schema gn-spec ships (tests/test_report_schema.py tests the schema itself)."""
    assert {"target", "api", "dtype", "device", "verdict", "summary", "properties"} <= set(report)
    assert report["verdict"] in ("conforms", "does not conform")
    assert list(Draft202012Validator(json.loads(Path(SCHEMA_PATH).read_text())).iter_errors(report)) == []
    summary = report["summary"]
    assert {"cases", "properties", "failed", "seconds"} <= set(summary)  # fields are added, never dropped
    assert isinstance(summary["cases"], int) and summary["cases"] > 0
    assert summary["properties"] == len(report["properties"])
    assert summary["failed"] == sum(p["status"] == "failed" for p in report["properties"])
    assert isinstance(summary["seconds"], float) and summary["seconds"] > 0
    assert (report["verdict"] == "conforms") == (summary["failed"] == 0)
    for p in report["properties"]:
        assert {"name", "status", "cases", "worst_error", "counterexample", "reproducer"} <= set(p)
        assert p["status"] in ("passed", "failed", "not applicable")
        assert isinstance(p["cases"], int)
        assert p["worst_error"] is None or (
            isinstance(p["worst_error"], float) and math.isfinite(p["worst_error"])
        )
        if p["status"] == "failed":
            assert isinstance(p["counterexample"], str) and isinstance(p["reproducer"], str)
        else:
            assert p["counterexample"] is None and p["reproducer"] is None


def check_junit(suites: ET.Element, report: dict) -> None:
    """JUnit XML: <testsuites><testsuite> with one <testcase> per property and a <failure> per failed one."""
    assert suites.tag == "testsuites"
    (suite,) = suites.findall("testsuite")
    cases = suite.findall("testcase")
    assert int(suite.get("tests")) == len(cases) == len(report["properties"])
    assert int(suite.get("failures")) == report["summary"]["failed"]
    assert float(suite.get("time")) >= 0
    for case, p in zip(cases, report["properties"], strict=True):
        assert case.get("name") == p["name"] and case.get("classname") == "gn_spec.properties"
        failures = case.findall("failure")
        assert len(failures) == (p["status"] == "failed")
        if failures:
            assert failures[0].get("message") and p["counterexample"] in failures[0].text
        assert len(case.findall("skipped")) == (p["status"] == "not applicable")
