"""Broken and hostile targets: each is reported as non-conformance with the right reason (never a pass,
never a traceback from the checker), and the checker keeps going after crashes and hangs."""

from __future__ import annotations

import pytest
from checker_helpers import implementation, target

from gn_spec.checker import UsageError, run_check
from gn_spec.checker.report import FAILED, PASSED

QUICK = {"profile": "quick", "seed": 0}


def failures(report) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """property name -> message + detail, for the failed properties."""
    return {p.name: f"{p.message}\n{p.detail}" for p in report.failed}


@pytest.mark.parametrize(
    ("function", "prop", "reason"),
    [
        ("segfault", "forward_agreement", "killed by SIGSEGV"),
        ("abort", "forward_agreement", "killed by SIGABRT"),
        ("os_exit", "forward_agreement", "exited with status 3"),
        ("sys_exit", "forward_agreement", "raised SystemExit: 4"),
        ("keyboard_interrupt", "forward_agreement", "raised KeyboardInterrupt"),
        ("raises", "forward_agreement", "raised RuntimeError: not implemented for this input"),
        ("returns_none", "forward_agreement", "y is None, not a numpy.ndarray"),
        ("returns_list", "output_shape_and_dtype", "y is a list of length"),
        ("wrong_shape", "output_shape_and_dtype", "y has shape"),
        ("wrong_dtype", "output_shape_and_dtype", "y has dtype float64, expected float32"),
        ("modifies_input", "input_not_modified", "modified its input x"),
        ("accepts_bad_groups", "rejects_invalid_groups", "instead of raising"),
        (
            "nondeterministic",
            "repeated_calls_identical",
            "two calls on the same input gave different outputs",
        ),
        ("bessel", "forward_agreement", "disagrees with the reference beyond the error model"),
    ],
)
def test_broken_numpy_target_fails_with_the_reason(function: str, prop: str, reason: str) -> None:
    report = run_check(target("hostile.py", function), properties=[prop], **QUICK)
    assert report.exit_code == 1
    assert reason in failures(report)[prop]
    (result,) = report.properties
    assert result.counterexample and result.reproducer


def test_a_crash_is_quoted_from_the_worker_log() -> None:
    report = run_check(target("hostile.py", "segfault"), properties=["forward_agreement"], **QUICK)
    detail = report.properties[0].detail
    assert "Segmentation fault" in detail and "hostile.py" in detail  # faulthandler's traceback of the target


def test_a_hang_times_out_and_the_remaining_properties_still_run() -> None:
    report = run_check(
        target("hostile.py", "hang"),
        properties=["forward_agreement", "rejects_invalid_groups"],
        timeout=0.5,
        **QUICK,
    )
    assert report.exit_code == 1
    msgs = failures(report)
    assert "no answer within the 0.5 s timeout (the call hung)" in msgs["forward_agreement"]
    # the later property still runs and is reported; the target answered none of the run's two hung calls,
    # so it is not called again (the hang budget: tests/test_hang_budget.py)
    assert "not called: the target hung on each of the 2 calls" in msgs["rejects_invalid_groups"]
    assert report.environment["worker_starts"] >= 2


def test_after_a_crash_the_worker_restarts_and_later_properties_pass() -> None:
    pytest.importorskip("torch")
    report = run_check(
        target("torch_targets.py", "segfault_in_backward"),
        api="torch",
        properties=["forward_agreement", "backward_agreement", "output_shape_and_dtype"],
        **QUICK,
    )
    status = {p.name: p.status for p in report.properties}
    assert status == {
        "forward_agreement": PASSED,
        "backward_agreement": FAILED,
        "output_shape_and_dtype": PASSED,
    }
    assert "killed by SIGSEGV" in failures(report)["backward_agreement"]
    assert report.environment["worker_starts"] > 1


def test_bessel_variance_is_diagnosed() -> None:
    report = run_check(target("hostile.py", "bessel"), properties=["forward_agreement"], **QUICK)
    (result,) = report.properties
    assert any(d.startswith("the output matches GN with Bessel") for d in result.diagnosis)
    assert report.to_json()["properties"][0]["diagnosis"] == result.diagnosis


@pytest.mark.parametrize(
    ("file", "change"),
    [
        ("tamper_numpy.py", "numpy.mean was replaced while TARGET was imported"),
        ("tamper_gn_spec.py", "gn_spec.group_norm was replaced while TARGET was imported"),
        ("tamper_at_call.py", "numpy.allclose was replaced while TARGET was being called"),
    ],
)
def test_tampering_is_reported(file: str, change: str) -> None:
    report = run_check(target(file, "group_norm"), properties=["forward_agreement", "no_tampering"], **QUICK)
    assert report.exit_code == 1
    assert [p.name for p in report.failed] == ["no_tampering"]  # the verdicts, made here, are unaffected
    assert change in failures(report)["no_tampering"]


def test_torch_rebinding_its_own_names_is_not_tampering() -> None:
    pytest.importorskip("torch")
    report = run_check(
        target("torch_heavy_imports.py", "group_norm"),
        api="torch",
        properties=["forward_agreement", "no_tampering"],
        **QUICK,
    )
    assert report.exit_code == 0, failures(report)


@pytest.mark.parametrize(
    ("function", "prop", "reason"),
    [
        ("returns_ndarray", "forward_agreement", "y is a numpy.ndarray of dtype float32"),
        ("returns_ndarray", "backward_agreement", "not a torch.Tensor, so it cannot be differentiated"),
        ("complex_output", "forward_agreement", "complex64, which is not a real number type"),
    ],
)
def test_broken_torch_target_fails_with_the_reason(function: str, prop: str, reason: str) -> None:
    pytest.importorskip("torch")
    report = run_check(target("torch_targets.py", function), api="torch", properties=[prop], **QUICK)
    assert report.exit_code == 1
    assert reason in failures(report)[prop]


def test_cs231n_gradients_must_have_gammas_shape() -> None:
    report = run_check(
        implementation("cs231n_dgamma_keepdims@float32"),
        api="cs231n",
        properties=["backward_agreement", "gradient_shapes_and_dtypes"],
        **QUICK,
    )
    msgs = failures(report)
    assert "grad_weight has shape (1, " in msgs["gradient_shapes_and_dtypes"]
    assert "grad_weight has shape (1, " in msgs["backward_agreement"]


@pytest.mark.parametrize(
    ("text", "api", "message"),
    [
        (target("import_raises.py", "group_norm"), None, "raised while being imported"),
        (target("import_exits.py", "group_norm"), None, "exited with status 7"),
        (target("cs231n_forward_only.py"), "cs231n", "has no attribute 'spatial_groupnorm_backward'"),
        ("gn_spec_no_such_module:f", None, "no module named 'gn_spec_no_such_module'"),
    ],
)
def test_targets_that_cannot_be_imported_are_usage_errors(text: str, api: str | None, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        run_check(text, api=api, **QUICK)


def test_module_target_is_imported_from_the_working_folder(monkeypatch: pytest.MonkeyPatch) -> None:
    """``package.module:function`` resolves against the current folder, as ``python -m`` would."""
    monkeypatch.chdir(target("hostile.py").rsplit("/", 2)[0])  # tests/
    report = run_check("targets.hostile:good", properties=["forward_agreement"], **QUICK)
    assert report.exit_code == 0
