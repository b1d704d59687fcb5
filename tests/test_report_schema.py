"""The JSON report as a dashboard harvests it (issue 10, point 5): a versioned envelope, described by a JSON
Schema that ships in the package, and every report validates against it."""

from __future__ import annotations

import datetime
import fnmatch
import json
import platform
import shlex
import sys
from pathlib import Path

import jsonschema
import numpy as np
import pytest
from checker_helpers import gn_spec, target

import gn_spec as package
from gn_spec.checker import failure_kinds
from gn_spec.checker.deviations import REPRODUCES, STALE, UNDECIDED, UNMATCHED
from gn_spec.checker.report import EXPECTED_FAILURE, FAILED, NOT_APPLICABLE, PASSED, SCHEMA, SCHEMA_PATH

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
SCHEMA_DOC = json.loads(Path(SCHEMA_PATH).read_text())
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA_DOC)
DEVIATING = target("deviating.py", "no_bias_alone")

#: The keys of the --json report before the envelope (issue 10 adds; it must drop none of these).
OLD_KEYS = {"target", "api", "target_options", "dtype", "device", "memory_format", "profile", "seed",
            "verdict", "checked", "verdict_text", "summary", "properties", "environment"}  # fmt: skip
OLD_PROPERTY_KEYS = {"name", "summary", "status", "cases", "worst_error", "worst_error_units",
                     "counterexample", "reproducer", "message", "detail", "diagnosis", "seconds",
                     "worst_error_kind", "nonfinite_elements", "checks", "worst_case",
                     "counterexample_fields", "headline", "worst_error_text"}  # fmt: skip


def errors(doc: object) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in VALIDATOR.iter_errors(doc)]


def test_the_schema_is_a_valid_json_schema_and_names_its_version() -> None:
    jsonschema.Draft202012Validator.check_schema(SCHEMA_DOC)
    assert SCHEMA_DOC["properties"]["schema"] == {"const": SCHEMA}


def test_the_schema_states_the_kinds_statuses_and_keys_the_checker_uses() -> None:
    defs = SCHEMA_DOC["$defs"]
    assert defs["kind"]["enum"] == list(failure_kinds.KINDS)
    assert set(defs["deviation_status"]["enum"]) == {REPRODUCES, STALE, UNMATCHED, UNDECIDED}
    statuses = defs["property"]["properties"]["status"]["enum"]
    assert set(statuses) == {PASSED, FAILED, NOT_APPLICABLE, EXPECTED_FAILURE}
    assert OLD_KEYS <= set(SCHEMA_DOC["required"])
    assert OLD_PROPERTY_KEYS <= set(defs["property"]["required"])


@pytest.fixture(scope="module")
def reports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    """Three JSON reports from the CLI: a failing run, a run with declared deviations, a passing one."""
    tmp = tmp_path_factory.mktemp("reports")
    deviations = tmp / "d.toml"
    deviations.write_text(
        '[[deviation]]\nreason = "bias alone"\nproperties = ["forward_agreement"]\n'
        'cases = { affine = "bias" }\n'
        '[[deviation]]\nreason = "shapes"\nproperties = ["output_shape_and_dtype"]\n'
        '[[deviation]]\nreason = "never"\ncases = { batch = 1000 }\n'
    )
    runs = {
        "failing": (DEVIATING, "--property", "forward_agreement", "--property", "no_tampering"),
        "deviations": (DEVIATING, "--property", "forward_agreement", "--property", "output_shape_and_dtype",
                       "--deviations", str(deviations)),
        "passing": (target("hostile.py", "good"), "--property", "forward_agreement", "--property",
                    "backward_agreement"),
    }  # fmt: skip
    out = {}
    # seed 2, as tests/test_deviations.py: its quick forward_agreement draws bias-only cases (which the
    # deviating target refuses); not every seed does
    for name, args in runs.items():
        path = tmp / f"{name}.json"
        argv = ["check", *args, "--profile", "quick", "--seed", "2", "--json", str(path), "--quiet"]
        done = gn_spec(*argv)
        assert done.returncode in (0, 1), done.stdout + done.stderr
        doc = json.loads(path.read_text())
        doc["__argv"] = argv
        out[name] = doc
    return out


@pytest.mark.parametrize("name", ["failing", "deviations", "passing"])
def test_reports_validate_against_the_schema(reports: dict[str, dict], name: str) -> None:
    doc = {k: v for k, v in reports[name].items() if k != "__argv"}
    assert errors(doc) == []
    assert OLD_KEYS <= set(doc)
    for p in doc["properties"]:
        assert OLD_PROPERTY_KEYS <= set(p)


def test_the_schema_rejects_a_report_missing_a_field(reports: dict[str, dict]) -> None:
    doc = {k: v for k, v in reports["failing"].items() if k not in ("__argv", "seed")}
    assert any("'seed' is a required property" in e for e in errors(doc))
    broken = json.loads(json.dumps(reports["failing"]))
    broken["properties"][0]["kind"] = "wrong answer"
    assert errors(broken)


def test_the_envelope(reports: dict[str, dict]) -> None:
    doc = reports["failing"]
    assert doc["schema"] == SCHEMA and doc["gn_spec_version"] == package.__version__
    assert shlex.split(doc["command"]) == ["gn-spec", *doc["__argv"]]  # the exact command line
    started = datetime.datetime.fromisoformat(doc["timestamp"])
    assert started.utcoffset() == datetime.timedelta(0)
    assert abs((datetime.datetime.now(datetime.timezone.utc) - started).total_seconds()) < 3600
    assert (doc["seed"], doc["profile"]) == (2, "quick")
    ex = doc["execution"]
    assert (ex["framework"], ex["framework_version"]) == ("numpy", np.__version__)
    assert ex["device"] == "cpu" and ex["python"] == platform.python_version()
    assert ex["platform"] == platform.platform()
    forward = doc["properties"][0]
    assert forward["kind"] == "refused valid input" and forward["deviations"] == []
    replay = shlex.split(forward["replay"])
    assert replay[:3] == ["gn-spec", "check", DEVIATING]
    assert replay[-2:] == ["--property", "forward_agreement"]
    assert replay[replay.index("--seed") + 1] == "2" and "--deviations" not in replay


def test_the_envelope_of_a_run_with_deviations(reports: dict[str, dict]) -> None:
    doc = reports["deviations"]
    forward, shapes = doc["properties"]
    d, never = forward["deviations"]  # entry 3 names no properties: it covers every one
    assert d["number"] == 1 and d["status"] == REPRODUCES and d["excluded"] > 0
    assert never["number"] == 3 and never["status"] == UNMATCHED and never["excluded"] == 0
    assert shapes["status"] == EXPECTED_FAILURE and shapes["deviations"][0]["status"] == REPRODUCES
    replay = shlex.split(forward["replay"])
    assert replay[replay.index("--deviations") + 1] == doc["deviations"]["file"]
    assert [e["status"] for e in doc["deviations"]["entries"]] == [REPRODUCES, REPRODUCES, UNMATCHED]
    assert doc["warnings"] == ["deviation 3 ('never'): matched no generated input"] and doc["errors"] == []


def test_the_schema_ships_in_the_wheel_and_jsonschema_is_for_tests_only() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    setuptools = project["tool"]["setuptools"]
    package_dir = Path(setuptools["package-dir"]["gn_spec"]) / "checker"
    assert (ROOT / package_dir / Path(SCHEMA_PATH).name).is_file()
    assert "gn_spec.checker" in setuptools["packages"]
    globs = setuptools["package-data"].get("*", []) + setuptools["package-data"].get("gn_spec.checker", [])
    assert any(fnmatch.fnmatch(Path(SCHEMA_PATH).name, g) for g in globs), globs
    assert any(d.startswith("jsonschema") for d in project["project"]["optional-dependencies"]["test"])
    assert not any(d.startswith("jsonschema") for d in project["project"]["dependencies"])
