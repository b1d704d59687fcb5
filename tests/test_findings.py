"""gn_spec.findings: every failure in the committed conformance matrix points to a test that confirms its
defect with the framework alone, or says why it is unconfirmed; every test it names exists; and the
committed Markdown table is what the generator renders from the committed JSON."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest
from checker_helpers import gn_spec

from gn_spec import matrix
from gn_spec.findings import FINDINGS, Finding

ROOT = Path(__file__).resolve().parents[1]
MATRIX_JSON = ROOT / "docs" / "conformance-matrix.json"
MATRIX_MD = ROOT / "docs" / "conformance-matrix.md"


def _functions(path: Path) -> set[str]:
    return {n.name for n in ast.parse(path.read_text()).body if isinstance(n, ast.FunctionDef)}


@pytest.mark.parametrize("finding", [f for f in FINDINGS if f.test], ids=lambda f: f"{f.target}: {f.what}")
def test_every_confirming_test_exists(finding: Finding) -> None:
    path, _, function = finding.test.partition("::")
    assert (ROOT / path).is_file(), finding.test
    assert function in _functions(ROOT / path), finding.test
    assert function.startswith("test_")


def test_a_finding_has_a_test_or_a_reason_not_both() -> None:
    with pytest.raises(ValueError, match="give a confirming test or why there is none"):
        Finding("torch", "x")
    with pytest.raises(ValueError, match="give a confirming test or why there is none"):
        Finding("torch", "x", test="tests/t.py::test_x", unconfirmed="because")


def test_the_first_matching_finding_confirms_a_failure() -> None:
    row = matrix.Row("mlx.nn.GroupNorm", ("pytorch_compatible=false",), "float16")
    row.failed = [
        {"name": "backward_agreement", "kind": "non-finite where finite is exact", "worst": "inf"},
        {"name": "forward_agreement", "kind": "wrong values", "worst": "37"},
        {"name": "no_such_property", "kind": "wrong values", "worst": "2"},
    ]
    found = {f["property"]: f["label"] for f in matrix.confirmations(row)}
    assert found["backward_agreement"] == "test_float16_default_backward_nan_for_one_value_groups"
    assert found["forward_agreement"] == "test_float16_default_statistics_in_float16"
    assert found["no_such_property"] == "test_float16_default_statistics_in_float16"  # any property of it
    failed = [{"name": "nan_stays_in_group", "kind": "wrong values"}]
    other = matrix.Row("torch", (), "float32", failed=failed)
    assert matrix.confirmations(other) == [
        {"property": "nan_stays_in_group", "label": "no finding recorded", "test": "", "what": ""}
    ]


def test_every_failure_in_the_committed_matrix_is_confirmed_or_says_why_not() -> None:
    rows, _, _ = matrix.rows_from_json(json.loads(MATRIX_JSON.read_text()))
    assert rows
    missing = [
        (r.target, r.label, r.dtype, f["property"])
        for r in rows
        for f in r.findings
        if f["label"] == "no finding recorded"
    ]
    assert not missing, f"failures without a finding in gn_spec/findings.py: {missing}"


def test_the_committed_table_is_rendered_from_the_committed_json() -> None:
    rows, skipped, head = matrix.rows_from_json(json.loads(MATRIX_JSON.read_text()))
    assert MATRIX_MD.read_text() == matrix.markdown(rows, skipped, head)


@pytest.mark.parametrize(
    ("content", "message"),
    [("not json", "cannot read a matrix JSON document"), ('{"rows": 3}', "not a matrix JSON document")],
)
def test_from_json_refuses_what_is_no_matrix(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "m.json"
    path.write_text(content)
    result = gn_spec("matrix", "--from-json", str(path), cwd=tmp_path)
    assert result.returncode == 2 and message in result.stderr, result.stderr
