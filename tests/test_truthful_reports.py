"""What the checker's reports say must be true and readable (issue 13): infinite errors are infinite, numpy
warnings stay inside, the verdict says what was checked, metamorphic failures name both outputs and the exact
value, and diagnoses never name a variant that the evidence does not single out."""

from __future__ import annotations

import io
import json
import math
import warnings

import numpy as np
import pytest
from checker_helpers import target

from gn_spec.checker import run_check
from gn_spec.checker.report import PropertyResult, Report, write_table
from gn_spec.checker.target import make_config
from gn_spec.error_model import forward_tolerance, judge
from gn_spec.reference import group_norm
from gn_spec.strategies import Case

# ---------------------------------------------------------------------------------------------- point 2


@pytest.mark.parametrize(
    ("bad", "kind"), [(np.inf, "+inf output"), (-np.inf, "-inf output"), (np.nan, "NaN output")]
)
def test_a_nonfinite_output_scores_infinity_and_says_what_it_was(bad: float, kind: str) -> None:
    x = np.array([[1.0, 2.0, 4.0, 8.0]])
    good = group_norm(x, 1, eps=1e-5)
    tol = forward_tolerance(x, 1, None, None, 1e-5, "float32")
    j = judge("output", np.array([[*good[0, :3], bad]]), good, tol)
    assert not j.passed
    assert j.max_ratio == math.inf and j.worst_error == math.inf  # not 1.797e308
    assert j.nonfinite == 1 and j.worst_kind == kind
    assert f"inf ({kind})" in j.message and "1.8e+308" not in j.message


def test_judging_nonfinite_outputs_leaks_no_numpy_warning() -> None:
    tol = forward_tolerance(np.ones((1, 3)), 1, None, None, 1e-5, "float16")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        j = judge("output", np.array([[np.inf, np.nan, 1.0]]), np.array([[np.inf, 0.0, 0.0]]), tol)
    assert not j.passed and j.nonfinite == 1


def _config():
    return make_config("reference", api="numpy", dtype="float32", profile="quick", seed=0)


def test_the_json_tells_an_infinite_error_from_nothing_judged() -> None:
    report = Report(
        _config(),
        [
            PropertyResult("a", "a", "failed", 3, math.inf, math.inf, worst_error_kind="+inf output",
                           nonfinite_elements=2),
            PropertyResult("b", "b", "passed", 3),
            PropertyResult("c", "c", "passed", 3, 0.25, 0.5),
        ],
    )
    doc = json.loads(json.dumps(report.to_json(), allow_nan=False))
    a, b, c = doc["properties"]
    assert a["worst_error"] is None and a["worst_error_text"] == "inf (+inf output)"
    assert a["nonfinite_elements"] == 2 and a["worst_error_kind"] == "+inf output"
    assert b["worst_error"] is None and b["worst_error_text"] is None
    assert c["worst_error"] == 0.25 and c["worst_error_text"] == "0.25"
    out = io.StringIO()
    write_table(report, out)
    assert "inf (+inf output)" in out.getvalue()


@pytest.mark.parametrize(("function", "kind"), [("inf_last", "+inf output"), ("nan_last", "NaN output")])
def test_a_target_returning_nonfinite_values_is_reported_as_such(function: str, kind: str) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        report = run_check(
            target("truthful.py", function),
            dtype="float16",
            profile="quick",
            seed=0,
            properties=["forward_agreement", "batch_independence"],
        )
    assert [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)] == []
    assert report.verdict == "does not conform"
    for p in report.properties:
        assert p.failed and p.worst_error == math.inf and p.worst_error_kind == kind, p
    doc = json.dumps(report.to_json(), allow_nan=False)
    assert "1.797" not in doc and f'"worst_error_text": "inf ({kind})"' in doc


# ---------------------------------------------------------------------------------------------- point 5


def test_a_forward_only_verdict_says_what_it_covers(tmp_path) -> None:
    good = target("hostile.py", "good")
    report = run_check(good, profile="quick", seed=0, properties=["forward_agreement", "backward_agreement"])
    assert report.verdict == "conforms"
    assert report.checked == ["forward"]
    assert report.verdict_text == "conforms (forward only: this API has no gradients)"
    doc = report.to_json()
    assert doc["verdict"] == "conforms" and doc["checked"] == ["forward"]
    assert doc["verdict_text"] == "conforms (forward only: this API has no gradients)"
    out = io.StringIO()
    write_table(report, out)
    assert f"verdict: {good} conforms (forward only: this API has no gradients;" in out.getvalue()
    report.write_junit(str(tmp_path / "r.xml"))
    xml = (tmp_path / "r.xml").read_text()
    assert '<property name="checked" value="forward"' in xml
    assert 'value="conforms (forward only: this API has no gradients)"' in xml


def test_a_verdict_that_covered_everything_has_no_qualifier() -> None:
    config = make_config("torch", api="torch", dtype="float32", profile="quick", seed=0)
    report = Report(
        config,
        [
            PropertyResult("f", "f", "passed", 1, checks=["forward"]),
            PropertyResult("b", "b", "passed", 1, checks=["backward"]),
            PropertyResult("s", "s", "passed", 1, checks=["second order"]),
        ],
    )
    assert report.checked == ["forward", "backward", "second order"] and report.verdict_text == "conforms"
    report.properties[2].status = "not applicable"
    assert report.verdict_text == (
        "conforms (forward and backward only: the selected properties check no second order)"
    )


def test_a_forward_only_case_description_leaves_grad_output_out() -> None:
    case = Case((2, 4), 2, grad_offset=3.0)
    assert "grad_output = 3" in case.describe()
    assert "grad_output" not in case.describe(gradients=False)


def test_a_counterexample_describes_the_blocks_made_constant() -> None:
    report = run_check(
        target("truthful.py", "constant_blocks_give_zero"),
        profile="quick",
        seed=0,
        properties=["constant_groups_give_bias"],
    )
    (p,) = report.properties
    assert p.failed
    assert "made constant (each equal to its first value)" in p.counterexample
    assert "grad_output" not in p.counterexample


# ---------------------------------------------------------------------------------------------- point 7


def test_the_catalogue_lists_from_a_source_checkout_that_is_not_installed(tmp_path) -> None:
    """python -S skips site-packages' .pth files, so the editable install's finder is not there: only the
    checkout on PYTHONPATH (and the dependencies' folder) is."""
    import os
    import subprocess
    import sys
    import sysconfig
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), sysconfig.get_paths()["purelib"]])}
    result = subprocess.run(
        [sys.executable, "-S", "-m", "gn_spec.properties"],
        capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[0] == "forward_agreement"


# ---------------------------------------------------------------------------------------------- point 4


def test_a_metamorphic_failure_names_the_other_output_and_gives_the_exact_value() -> None:
    report = run_check(
        target("truthful.py", "batch_statistics"), profile="quick", seed=0, properties=["batch_independence"]
    )
    (p,) = report.properties
    assert p.failed
    assert "in the whole batch x, the same sample gave" in p.detail and ", expected " not in p.detail
    assert "exact value (reference): " in p.detail


def test_compare_adds_the_exact_value_of_the_worst_element() -> None:
    from gn_spec.properties.metamorphic import compare

    x = np.array([[1.0, 2.0, 4.0, 8.0]])
    tol = forward_tolerance(x, 1, None, None, 1e-5, "float32")
    exact = group_norm(x, 1, eps=1e-5)
    wrong = exact.copy()
    wrong[0, 2] = 0.5
    j = compare("GN(x') against GN(x)", exact, wrong, tol, tol, against_label="the other call gave",
                exact=lambda: exact)
    assert not j.passed and j.worst_index == (0, 2)
    assert "the other call gave 0.5" in j.message
    assert j.message.endswith(f"exact value (reference): {exact[0, 2]:.9g}")


# ---------------------------------------------------------------------------------------------- point 3


def test_the_worst_kind_met_is_shown_and_shrunk_first() -> None:
    """nan_on_large_groups is slightly wrong on small groups and NaN on groups of 8 or more: Hypothesis
    shrinks the marginal failure it meets first, but the report shows the NaN, shrunk to the smallest such
    group."""
    bad = target("truthful.py", "nan_on_large_groups")
    report = run_check(bad, profile="quick", seed=0, properties=["forward_agreement"])
    (p,) = report.properties
    assert p.failed and p.worst_error == math.inf and p.worst_error_kind == "NaN output"
    assert p.counterexample_fields["group_size"] == 8  # the NaN kind, at its smallest group
    assert "the worst kind met, shown and shrunk first" in p.message
    assert "NaN" in p.detail
    assert p.worst_case is None  # the worst case is the one shown


def test_a_failure_shows_the_worst_case_met_not_only_the_shrunk_one() -> None:
    """A float32 running sum fails marginally on N(0, 1) data and by far more on constant groups: the
    report shows that worst case too, with its element."""
    report = run_check(target("sequential.py", "group_norm"), seed=0, properties=["forward_agreement"])
    (p,) = report.properties
    assert p.failed and p.worst_case is not None and "at index" in p.worst_case
    out = io.StringIO()
    write_table(report, out)
    text = out.getvalue()
    assert "worst case met (worst error / bound " in text and "; not shrunk): shape=" in text


def test_a_target_without_a_second_order_says_why_not_that_properties_were_deselected(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """paddle has no second derivative of group_norm: its verdict names that, not a property selection."""
    from gn_spec.checker import builtins

    monkeypatch.setattr(builtins, "check_runnable", lambda *a, **k: None)  # paddle need not be installed
    config = make_config("paddle.nn.functional.group_norm", dtype="float32", profile="quick", seed=0)
    report = Report(
        config,
        [
            PropertyResult("f", "f", "passed", 1, checks=["forward"]),
            PropertyResult("b", "b", "passed", 1, checks=["backward"]),
            PropertyResult("s", "s", "not applicable", 0, checks=["second order"]),
        ],
    )
    why = builtins.BY_NAME["paddle.nn.functional.group_norm"].no_gradients
    assert report.verdict_text == f"conforms (forward and backward only: {why})"


def test_the_closing_list_of_failures_keeps_parentheses_inside_a_sentence() -> None:
    # the list once cut every message at its first " (": "shifting each" was all it said of shift_invariance
    messages = {
        "shift_invariance": "shifting each (sample, group) by a constant changed the output"
        " (shift exponent 3)",
        "forward_agreement": "the forward output disagrees with the reference beyond the error model",
        "constant_groups_give_bias": "a constant (sample, group) block did not give the bias",
    }
    report = Report(
        _config(),
        [PropertyResult(n, n, "failed", 1, 2.0, 2.0, message=m, kind="wrong values")
         for n, m in messages.items()],
    )
    out = io.StringIO()
    write_table(report, out)
    text = out.getvalue()
    for name, message in messages.items():
        said = message.removesuffix(" (shift exponent 3)")
        assert f"  - {name} (wrong values): {said}\n" in text
