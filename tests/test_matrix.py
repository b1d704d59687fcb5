"""gn-spec matrix: which rows it plans, what a row takes from a report, the table, and one real run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from checker_helpers import gn_spec

from gn_spec import matrix
from gn_spec.checker import builtins
from gn_spec.checker.builtins import BY_NAME
from gn_spec.checker.options import UsageError


def test_notable_options_are_every_value_of_a_choice_or_switch(monkeypatch: pytest.MonkeyPatch) -> None:
    assert matrix.variants(BY_NAME["flax.linen.GroupNorm"]) == [
        ("use_fast_variance=true",),
        ("use_fast_variance=false",),
    ]
    installed = {"keras", "jax", "torch"}  # tensorflow absent: its backend gets no rows
    monkeypatch.setattr(builtins, "installed_version", lambda d: "1" if d in installed else None)
    backends = matrix.variants(BY_NAME["keras.layers.GroupNormalization"])
    assert backends == [("backend=jax",), ("backend=torch",), ("backend=numpy",)]
    onnx21 = matrix.variants(BY_NAME["onnx.GroupNormalization-21"])
    assert [v[0] for v in onnx21] == ["runtime=reference"]  # onnxruntime and openvino are not "installed"
    assert matrix.variants(BY_NAME["torch.nn.GroupNorm"]) == [()]


def test_rows_cover_each_supported_dtype_and_name_what_is_left_out(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(builtins, "installed_version", lambda d: "1" if d in ("torch", "openvino") else None)
    rows, skipped = matrix.plan(
        ["torch.nn.GroupNorm", "openvino.GroupNormalization-12", "flax.nnx.GroupNorm"]
    )
    assert [(r.target, r.dtype) for r in rows] == [
        ("torch.nn.GroupNorm", d) for d in ("float16", "bfloat16", "float32", "float64")
    ] + [("openvino.GroupNormalization-12", d) for d in ("float16", "float32")]
    assert skipped == ["flax.nnx.GroupNorm: not installed (pip install 'gn-spec[jax]')"]
    with pytest.raises(UsageError, match="unknown targets \\['tf.GroupNorm'\\]"):
        matrix.plan(["tf.GroupNorm"])


def test_a_row_takes_verdict_kinds_class_diagnosis_and_the_shortest_counterexample() -> None:
    row = matrix.Row("t", (), "float32")
    matrix.fill(
        row,
        {
            "verdict_text": "does not conform",
            "checked": ["forward"],
            "summary": {"cases": 10},
            "properties": [
                {
                    "name": "forward_agreement",
                    "status": "failed",
                    "kind": "wrong values",
                    "worst_error_text": "3.5",
                    "accuracy_class": "within the sequential-summation bound only",
                    "diagnosis": ["eps ignored"],
                    "counterexample": "shape=(1, 1, 64) num_groups=1; x ~ N(0, 1)",
                    "counterexample_fields": {"shape": [1, 1, 64]},
                },
                {
                    "name": "shift_invariance",
                    "status": "failed",
                    "kind": "wrong values",
                    "worst_error_text": "9",
                    "accuracy_class": "",
                    "diagnosis": [],
                    "counterexample": "shape=(1, 2) num_groups=1; x",
                    "counterexample_fields": {"shape": [1, 2]},
                },
            ],
        },
    )
    assert row.accuracy_class == "within the sequential-summation bound only"
    assert row.diagnosis == "eps ignored"
    assert row.counterexample == "shift_invariance: shape=(1, 2) num_groups=1"
    line = matrix.markdown([row], [], matrix.header(["--profile", "quick"], "quick", 0)).splitlines()[-1]
    assert "forward_agreement (wrong values, 3.5); shift_invariance (wrong values, 9)" in line


def test_a_matrix_run_gives_every_row_a_verdict(tmp_path: Path) -> None:
    md, js = tmp_path / "m.md", tmp_path / "m.json"
    result = gn_spec(
        "matrix",
        "--targets",
        "torch.nn.GroupNorm",
        "--dtypes",
        "float32",
        "float64",
        "--profile",
        "quick",
        "--jobs",
        "2",
        "--markdown",
        str(md),
        "--json",
        str(js),
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    rows = json.loads(js.read_text())["rows"]
    assert [r["dtype"] for r in rows] == ["float32", "float64"]
    assert all(r["verdict"] and not r["error"] for r in rows)
    text = md.read_text()
    assert text.count("| torch.nn.GroupNorm |") == 2 and "single_value_groups (refused valid input)" in text
    # each failure names the test that confirms it with torch alone, in the JSON and in the table
    for r in rows:
        refusal = next(f for f in r["findings"] if f["property"] == "single_value_groups")
        assert refusal["test"].endswith("::test_torch_conforms_on_cpu_except_its_two_refusals")
    assert text.count("| test_torch_conforms_on_cpu_except_its_two_refusals |") == 2
    # --from-json renders the same table from the JSON alone
    again = tmp_path / "again.md"
    result = gn_spec("matrix", "--from-json", str(js), "--markdown", str(again), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert again.read_text() == text


def test_a_quick_targets_row_says_it_ran_at_the_quick_profile() -> None:
    slow = matrix.Row("tinygrad.nn.GroupNorm", (), "float16", verdict="conforms", profile="quick")
    usual = matrix.Row("torch", (), "float16", verdict="conforms", profile="default")
    text = matrix.markdown([usual, slow], [], matrix.header(["--profile", "default"], "default", 0))
    assert "(profile default, seed 0; the rows of tinygrad.nn.GroupNorm at the quick profile)" in text
    assert "| tinygrad.nn.GroupNorm |  | - | float16 (quick) | conforms |" in text
    assert "| torch |  | - | float16 | conforms |" in text


def test_quick_targets_must_be_among_the_matrixs(tmp_path: Path) -> None:
    result = gn_spec("matrix", "--targets", "torch", "--quick-targets", "tinygrad.nn.GroupNorm", cwd=tmp_path)
    assert result.returncode == 2
    assert "--quick-targets ['tinygrad.nn.GroupNorm']: not among the matrix's targets" in result.stderr
