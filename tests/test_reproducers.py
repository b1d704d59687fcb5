"""Every property's reproducer is a small test: run standalone in a fresh interpreter it exits 1 and prints
the failure when the failure reproduces, 0 when it does not; its "Found by:" line replays the run; the JSON
report gives the counterexample's fields; a call that raises is reported as that, not as the property's
claim."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from implementations.catalogue import ROOT

from gn_spec.checker import run_check

FAULTY = ROOT / "tests" / "implementations" / "faulty"
TARGETS = ROOT / "tests" / "targets"

#: property -> (target, api, dtype) that fails it: a faulty catalogue entry where one does cheaply, else a
#: purpose-written target in tests/targets/repro_targets.py (no_tampering: tests/targets/tamper_numpy.py,
#: whose reproducer takes the worker's fingerprints before importing it).
FAILING = {
    "forward_agreement": (f"{FAULTY}/np_eps_ignored.py:group_norm", "numpy", "float32"),
    "backward_agreement": (f"{FAULTY}/cs231n_missing_mean_term.py", "cs231n", "float32"),
    "second_order_agreement": (f"{FAULTY}/torch_custom_fn_first_order_backward.py:group_norm", "torch",
                               "float32"),
    "single_value_groups": (f"{FAULTY}/np_bessel_variance.py:group_norm", "numpy", "float32"),
    "shift_invariance": (f"{FAULTY}/np_one_pass_variance.py:group_norm", "numpy", "float32"),
    "scaling_identity": (f"{FAULTY}/np_eps_outside_sqrt.py:group_norm", "numpy", "float32"),
    "batch_independence": (f"{FAULTY}/np_batch_pooled.py:group_norm", "numpy", "float32"),
    "spatial_permutation_equivariance": (f"{TARGETS}/repro_targets.py:flips_space", "numpy", "float32"),
    "constant_groups_give_bias": (f"{FAULTY}/np_eps_ignored.py:group_norm", "numpy", "float32"),
    "nan_stays_in_group": (f"{FAULTY}/np_nan_replaced.py:group_norm", "numpy", "float32"),
    "output_shape_and_dtype": (f"{TARGETS}/repro_targets.py:returns_float64", "numpy", "float32"),
    "input_not_modified": (f"{FAULTY}/np_inplace_input.py:group_norm", "numpy", "float32"),
    "rejects_invalid_groups": (f"{TARGETS}/repro_targets.py:one_group_when_invalid", "numpy", "float32"),
    "gradient_shapes_and_dtypes": (f"{FAULTY}/cs231n_dgamma_keepdims.py", "cs231n", "float32"),
    "repeated_calls_identical": (f"{TARGETS}/repro_targets.py:drifts", "numpy", "float32"),
    "no_tampering": (f"{TARGETS}/tamper_numpy.py:group_norm", "numpy", "float32"),
}

_results: dict[str, object] = {}


def failing_result(name: str):
    """The (report, property result) of the quick run of ``name`` alone on its failing target (cached)."""
    if name not in _results:
        target, api, dtype = FAILING[name]
        report = run_check(target, api=api, dtype=dtype, profile="quick", seed=0, properties=[name])
        _results[name] = (report, report.properties[0])
    return _results[name]


def run_script(script: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "repro.py"
    path.write_text(script)
    return subprocess.run([sys.executable, str(path)], cwd=tmp_path, capture_output=True, text=True,
                          timeout=120)


def test_every_property_with_a_reproducer_has_a_failing_target() -> None:
    from gn_spec.properties import catalogue

    assert set(FAILING) == {p.name for p in catalogue()}


@pytest.mark.parametrize("name", sorted(FAILING))
def test_reproducer_exits_1_and_prints_the_failure(name: str, tmp_path: Path) -> None:
    _, result = failing_result(name)
    assert result.status == "failed", result
    done = run_script(result.reproducer, tmp_path)
    output = done.stdout + done.stderr
    assert done.returncode == 1, output
    detail = result.detail.splitlines()[0] if result.detail else ""
    reason = result.message.split(" (shrinking")[0].split(" (a last pass")[0]  # without the runner's notes
    shown = [s for s in (reason, detail) if s]
    assert any(s in output for s in shown) or "AssertionError" in output and any(
        s.split(":")[0] in output for s in shown
    ), (shown, output)


@pytest.mark.parametrize(
    "name, function",
    [("forward_agreement", "group_norm"), ("repeated_calls_identical", "drifts"),
     ("rejects_invalid_groups", "one_group_when_invalid"), ("no_tampering", "group_norm")],
)
def test_reproducer_against_a_conforming_target_exits_0(name: str, function: str, tmp_path: Path) -> None:
    _, result = failing_result(name)
    script = result.reproducer
    failing_file = FAILING[name][0].rpartition(":")[0]
    script = script.replace(failing_file, str(TARGETS / "repro_targets.py"))
    assert f"target = module.{function}\n" in script
    script = script.replace(f"target = module.{function}\n", "target = module.conforming\n")
    done = run_script(script, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr


def test_found_by_replays_the_run(tmp_path: Path) -> None:
    _, result = failing_result("batch_independence")
    line = next(s for s in result.reproducer.splitlines() if s.startswith("Found by: "))
    command = line.removeprefix("Found by: ").split()
    assert command[:2] == ["gn-spec", "check"]
    for flag in ("--api", "--dtype", "--device", "--memory-format", "--profile", "--seed", "--timeout"):
        assert flag in command, line
    assert command[command.index("--profile") + 1] == "quick"
    assert command[command.index("--property") + 1] == "batch_independence"
    out = tmp_path / "r.json"
    gn_spec_cli = Path(sys.executable).parent / "gn-spec"
    done = subprocess.run([str(gn_spec_cli), *command[1:], "--quiet", "--json", str(out)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stdout + done.stderr
    replayed = json.loads(out.read_text())["properties"][0]
    assert replayed["counterexample"] == result.counterexample
    assert replayed["message"] == result.message


def test_json_counterexample_fields() -> None:
    report, result = failing_result("rejects_invalid_groups")
    (prop,) = report.to_json()["properties"]
    fields = prop["counterexample_fields"]
    assert set(fields) >= {"shape", "num_groups", "group_size", "eps", "affine", "data", "seed", "dtype"}
    assert fields["dtype"] == "float32"
    assert fields["shape"][1] % fields["num_groups"] != 0 and fields["group_size"] is None
    assert f"num_groups={fields['num_groups']}" in prop["counterexample"]
    assert isinstance(prop["counterexample"], str)  # the free text stays
    _, forward = failing_result("forward_agreement")
    f = forward.counterexample_fields
    assert f["group_size"] == f["shape"][1] // f["num_groups"] * int(__import__("math").prod(f["shape"][2:]))


def test_a_backward_that_raises_is_not_reported_as_modifying_its_input(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    from gn_spec.checker.report import write_table

    target = f"{TARGETS}/torch_backward_raises.py:group_norm"
    report = run_check(target, api="torch", profile="quick", seed=0, properties=["input_not_modified"])
    (result,) = report.properties
    assert result.status == "failed"
    assert "backward call: raised RuntimeError" in result.message
    assert "modified" not in result.message
    import io

    table = io.StringIO()
    write_table(report, table)
    text = table.getvalue()
    header = "=== input_not_modified FAILED (refused valid input): the call raised an exception instead of "
    header += "returning"
    assert header in text
    assert "leaves its input arrays as they were" not in text
    done = run_script(result.reproducer, tmp_path)  # the reproducer reaches the backward, and fails there
    assert done.returncode == 1 and "this backward is not implemented" in done.stderr, done.stderr
