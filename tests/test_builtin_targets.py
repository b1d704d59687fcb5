"""The built-in targets' registry and options, and the torch-based built-in targets end to end.

The framework adapters (JAX, Keras, ONNX, OpenVINO) are tested in tests/frameworks, where those frameworks
are installed; what is tested here needs torch only.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from checker_helpers import gn_spec, target

from gn_spec.checker import builtins
from gn_spec.checker.builtins import BUILTINS, BY_NAME
from gn_spec.checker.options import UsageError
from gn_spec.checker.reproducer import replay_command
from gn_spec.checker.runner import cases_for, selected_properties
from gn_spec.checker.target import CheckConfig, TargetSpec, make_config

#: The names issue 11 gives the built-in targets, spelled out here (not read from the registry under test).
NAMES = (
    "torch",
    "torch.nn.GroupNorm",
    "torch.compile",
    "flax.linen.GroupNorm",
    "flax.nnx.GroupNorm",
    "equinox.nn.GroupNorm",
    "keras.layers.GroupNormalization",
    "onnx.GroupNormalization-18",
    "onnx.GroupNormalization-21",
    "openvino.GroupNormalization-12",
    "tinygrad.nn.GroupNorm",
    "paddle.nn.functional.group_norm",
    "mlx.nn.GroupNorm",
)


def _config(name: str, options: tuple[str, ...], dtype: str = "float32", seed: int = 0) -> CheckConfig:
    """A CheckConfig for built-in target ``name``, built by hand: make_config would need the framework."""
    return CheckConfig(
        target=TargetSpec(name, "builtin", name),
        api="framework",
        target_options=options,
        dtype=dtype,
        device="cpu",
        memory_format="contiguous",
        profile="quick",
        shapes="auto",
        seed=seed,
        timeout=10.0,
        summation="log-depth",
        deviations=None,
        deviations_strict=True,
    )


def test_gn_spec_targets_lists_every_target_without_importing_a_framework() -> None:
    code = (
        "import sys\nfrom gn_spec.cli import main\nstatus = main(['targets'])\n"
        "loaded = [m for m in ('torch', 'jax', 'flax', 'equinox', 'keras', 'onnx', 'onnxruntime', 'openvino',"
        " 'mlx')"
        " if m in sys.modules]\nprint('LOADED', loaded)\nsys.exit(status)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "LOADED []" in result.stdout
    listed = [line.split()[0] for line in result.stdout.splitlines() if line and not line[0].isspace()]
    assert tuple(listed[: len(NAMES)]) == NAMES
    assert "torch 2." in result.stdout  # torch is installed in every test environment, with its version
    assert "--target-option use_fast_variance=true" in result.stdout
    assert "--target-option runtime=onnxruntime|reference|openvino" in result.stdout
    assert "--target-option pytorch_compatible=false" in result.stdout


def test_gn_spec_targets_json_names_what_each_supports() -> None:
    result = gn_spec("targets", "--json")
    assert result.returncode == 0, result.stderr
    rows = {r["name"]: r for r in json.loads(result.stdout)}
    assert set(rows) == set(NAMES)
    assert rows["onnx.GroupNormalization-21"]["supports"] == "forward"
    assert rows["flax.linen.GroupNorm"]["supports"] == "forward, backward, second order"
    assert "float64" not in rows["openvino.GroupNormalization-12"]["dtypes"]


def test_a_target_that_is_not_installed_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(builtins, "installed_version", lambda d: None if d == "flax" else "1.0")
    with pytest.raises(UsageError, match=r"needs flax, which is not installed: pip install 'gn-spec\[jax\]'"):
        make_config("flax.linen.GroupNorm")
    row = {r["name"]: r for r in builtins.listing()}["flax.linen.GroupNorm"]
    assert row["framework"] == "not installed: pip install 'gn-spec[jax]'"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["torch.nn.GroupNorm", "--target-option", "affine=false"],
            "torch.nn.GroupNorm has no such option; its options: none",
        ),
        (
            ["onnx.GroupNormalization-21", "--target-option", "runtime=tvm"],
            "runtime=tvm: expected one of onnxruntime, reference, openvino",
        ),
        (
            ["onnx.GroupNormalization-21", "--target-option", "stash_type=one"],
            "stash_type=one: expected an integer",
        ),
        (["flax.linen.GroupNorm", "--target-option", "use_fast_variance"], "expected KEY=VALUE"),
        (["flax.linen.GroupNorm", "--target-option", "use_fast_variance=maybe"], "expected true or false"),
        (["openvino.GroupNormalization-12", "--dtype", "float64"], "does not support --dtype float64"),
        (["torch.nn.GroupNorm", "--api", "numpy"], "takes no --api numpy"),
        ([target("hostile.py", "good"), "--target-option", "a=1"], "--target-option is for built-in targets"),
        (["flax.linen.GroupNorm", "--memory-format", "channels_last"], "is a torch layout"),
    ],
)
def test_target_option_usage_errors_exit_2(args: list[str], message: str, tmp_path: Path) -> None:
    result = gn_spec("check", *args, "--profile", "quick", cwd=tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_options_are_typed_spelled_out_and_replayed() -> None:
    target = BY_NAME["flax.linen.GroupNorm"]
    assert builtins.resolve_options(target, []) == ("use_fast_variance=true",)
    resolved = builtins.resolve_options(target, ["use_fast_variance=False"])
    assert resolved == ("use_fast_variance=false",)
    assert builtins.typed_options(target, resolved) == {"use_fast_variance": False}
    config = _config("flax.linen.GroupNorm", resolved, seed=3)
    command = replay_command(config)
    assert "--target-option use_fast_variance=false" in command
    assert "--api" not in command  # a built-in target's API is its own


def test_the_keras_backend_defaults_to_the_first_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    keras = BY_NAME["keras.layers.GroupNormalization"]
    monkeypatch.setattr(builtins, "installed_version", lambda d: "1.0" if d in ("torch", "keras") else None)
    assert builtins.resolve_options(keras, []) == ("backend=torch",)
    monkeypatch.setattr(builtins, "installed_version", lambda d: "1.0" if d == "keras" else None)
    with pytest.raises(UsageError, match="needs a Keras backend"):
        builtins.resolve_options(keras, [])


def test_cases_hold_the_eps_a_float32_attribute_can_store() -> None:
    """ONNX's epsilon is a 32-bit float: the cases (and so the reference) use float32(eps)."""
    import numpy as np
    from hypothesis import given, settings

    config = _config("onnx.GroupNormalization-21", ("runtime=onnxruntime", "stash_type=1"), dtype="float64")
    (spec,) = selected_properties(["forward_agreement"])
    seen = []

    @settings(max_examples=30, database=None)
    @given(cases_for(spec, config))
    def collect(case: object) -> None:
        seen.append(case.eps)  # type: ignore[attr-defined]

    collect()
    assert seen and all(float(np.float32(e)) == e for e in seen)
    assert any(e != 0 for e in seen)


def test_every_registry_entry_is_consistent() -> None:
    assert tuple(t.name for t in BUILTINS) == NAMES
    for t in BUILTINS:
        assert t.orders[0] == "forward"
        if t.orders != builtins.ORDERS:
            assert t.no_gradients, t.name


# ------------------------------------------------------------------------------------------ torch targets


def test_torch_nn_group_norm_is_checked_through_autograd(tmp_path: Path) -> None:
    """torch.nn.GroupNorm: forward, first and second order all judged; it shares F.group_norm's refusal of
    one value per group in a batch of one (its forward calls F.group_norm)."""
    report = tmp_path / "r.json"
    result = gn_spec(
        "check",
        "torch.nn.GroupNorm",
        "--profile",
        "quick",
        "--seed",
        "0",
        "--json",
        str(report),
        cwd=tmp_path,
    )
    data = json.loads(report.read_text())
    assert data["checked"] == ["forward", "backward", "second order"]
    status = {p["name"]: p["status"] for p in data["properties"]}
    for name in ("forward_agreement", "backward_agreement", "second_order_agreement"):
        assert status[name] == "passed", result.stdout
    assert status["single_value_groups"] == "failed"
    assert "Expected more than 1 value per channel" in result.stdout
    assert "calls: torch.nn.GroupNorm(G, C, eps, affine)" in result.stdout
    assert result.returncode == 1


def test_the_reproducer_of_a_builtin_torch_target_reproduces(tmp_path: Path) -> None:
    report = tmp_path / "r.json"
    gn_spec(
        "check",
        "torch.nn.GroupNorm",
        "--profile",
        "quick",
        "--seed",
        "0",
        "--property",
        "single_value_groups",
        "--json",
        str(report),
        cwd=tmp_path,
    )
    (prop,) = json.loads(report.read_text())["properties"]
    script = tmp_path / "repro.py"
    script.write_text(prop["reproducer"])
    run = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, cwd=tmp_path, timeout=120
    )
    assert run.returncode == 1, run.stdout + run.stderr
    assert "Expected more than 1 value per channel" in run.stdout + run.stderr
    assert "gn-spec check torch.nn.GroupNorm --dtype float32" in prop["reproducer"]


def test_an_option_can_narrow_what_a_target_supports() -> None:
    """Keras' numpy backend has no autodiff: with backend=numpy the gradient properties do not apply and the
    verdict says forward only; with backend=jax they do."""
    from gn_spec.properties.agreement import has_backward, has_second_order

    numpy_backend, jax_backend = _config(KERAS, ("backend=numpy",)), _config(KERAS, ("backend=jax",))
    reason = has_backward(numpy_backend)
    assert reason == f"{KERAS} has no backward: Keras' numpy backend has no automatic differentiation"
    assert has_second_order(numpy_backend) is not None
    assert has_backward(jax_backend) is None and has_second_order(jax_backend) is None
    assert BY_NAME[KERAS].orders_with(numpy_backend.target_options)[0] == ("forward",)


KERAS = "keras.layers.GroupNormalization"


def test_torch_compile_gets_a_compile_grace_once_per_call_kind() -> None:
    """torch.compile compiles a graph per kind of call (operation, rank, sizes of 0 or 1, inputs given): the
    first call of each kind may take compile_grace seconds more than --timeout; repeats get none."""
    import numpy as np

    from gn_spec.checker.worker_process import CallRequest, WorkerProcess

    config = _config("torch.compile", ())
    worker = WorkerProcess(config)
    grace = BY_NAME["torch.compile"].compile_grace
    assert grace > 0

    def request(op: str, shape: tuple[int, ...], **more: np.ndarray) -> CallRequest:
        return CallRequest(op, 1, 1e-5, {"x": np.zeros(shape), **more})

    assert worker._grace(request("forward", (2, 4, 3))) == grace
    assert worker._grace(request("forward", (3, 8, 5))) == 0  # same kind: sizes above 1 are dynamic
    assert worker._grace(request("forward", (1, 8, 5))) == grace  # a size of 1 is specialized
    assert worker._grace(request("forward", (2, 4, 3), weight=np.ones(4))) == grace
    assert worker._grace(request("backward", (2, 4, 3))) == grace
    assert WorkerProcess(_config("flax.linen.GroupNorm", ("use_fast_variance=true",)))._grace(
        request("forward", (2, 4, 3))
    ) == 0


def test_a_slow_target_gets_its_own_timeout_unless_one_is_given(monkeypatch: pytest.MonkeyPatch) -> None:
    """tinygrad's interpreter device needs minutes for a large second order: 10 s would report hangs."""
    slow = BY_NAME["tinygrad.nn.GroupNorm"]
    assert slow.call_timeout and slow.call_timeout > 300
    monkeypatch.setattr(builtins, "check_runnable", lambda *a, **k: None)  # tinygrad need not be installed
    assert make_config("tinygrad.nn.GroupNorm", seed=0).timeout == slow.call_timeout
    assert make_config("tinygrad.nn.GroupNorm", seed=0, timeout=5.0).timeout == 5.0
    assert make_config("reference", seed=0).timeout == 10.0
    assert "--timeout 600" in replay_command(make_config("tinygrad.nn.GroupNorm", seed=0))
