"""``--shapes pooled``: every property of a run draws its shapes from one pool per seed, so that a target that
compiles one program per shape (jax.jit) meets a few dozen shapes instead of about a thousand.  What else a
case holds is drawn as always; ``--shapes free`` (the default for everything but such targets) is unchanged.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from checker_helpers import gn_spec
from hypothesis import given, settings

from gn_spec.checker.reproducer import replay_command
from gn_spec.checker.runner import cases_for, selected_properties
from gn_spec.checker.target import CheckConfig, TargetSpec, make_config, pooled_shapes
from gn_spec.profiles import PROFILES
from gn_spec.strategies import AFFINES, Case, ShapePool, shape_pool


def _entries(pool: ShapePool) -> set[tuple[tuple[int, ...], int, str]]:
    return {entry for part in (pool.small, pool.large) for v in part.values() for entry in v}


def test_the_pool_is_the_seeds_and_holds_each_ranks_structural_features() -> None:
    pool = shape_pool("default", 7)
    assert _entries(pool) == _entries(shape_pool("default", 7))
    assert _entries(pool) != _entries(shape_pool("default", 8))
    limits = PROFILES["default"].limits
    for k in range(4):
        small = pool.small[k]
        assert len(small) == limits.pool_small and all(len(s) == 2 + k for s, _, _ in small)
        assert any(g == 1 for _, g, _ in small), small  # LayerNorm-like
        assert any(s[1] == g > 1 for s, g, _ in small), small  # InstanceNorm-like
        assert any(s[0] > 1 for s, _, _ in small), small  # several samples
        assert {a for _, _, a in small} == set(AFFINES), small  # every affine form
        sizes = [math.prod(s) for s, _, _ in small]
        assert sizes == sorted(sizes)  # smallest first
        assert all(s[1] % g == 0 and s[1] // g <= limits.max_channels_per_group for s, g, _ in small)
        ((shape, g, _),) = pool.large[k]
        m = shape[1] // g * math.prod(shape[2:])
        assert limits.large_min <= m <= limits.large_max, shape
    assert not any(shape_pool("quick", 0).large.values())  # the quick profile has no large groups


def _config(target: TargetSpec, shapes: str, options: tuple[str, ...] = ()) -> CheckConfig:
    return CheckConfig(
        target=target, api="framework" if target.kind == "builtin" else "numpy", target_options=options,
        dtype="float32", device="cpu", memory_format="contiguous", profile="default", shapes=shapes, seed=3,
        timeout=10.0, summation="log-depth", deviations=None, deviations_strict=True,
    )


def test_auto_pools_the_targets_that_compile_per_shape_and_nothing_else() -> None:
    flax = TargetSpec("flax.linen.GroupNorm", "builtin", "flax.linen.GroupNorm")
    keras = TargetSpec("keras.layers.GroupNormalization", "builtin", "keras.layers.GroupNormalization")
    onnx = TargetSpec("onnx.GroupNormalization-21", "builtin", "onnx.GroupNormalization-21")
    assert pooled_shapes(_config(flax, "auto", ("use_fast_variance=true",)))
    assert not pooled_shapes(_config(flax, "free", ("use_fast_variance=true",)))
    assert pooled_shapes(_config(keras, "auto", ("backend=jax",)))
    assert not pooled_shapes(_config(keras, "auto", ("backend=torch",)))
    assert not pooled_shapes(_config(onnx, "auto", ("runtime=onnxruntime", "stash_type=1")))
    numpy_target = make_config("reference", seed=0)
    assert numpy_target.shapes == "auto" and not pooled_shapes(numpy_target)
    assert pooled_shapes(make_config("reference", seed=0, shapes="pooled"))


def test_replay_commands_carry_an_explicit_choice_only() -> None:
    assert "--shapes" not in replay_command(make_config("reference", seed=0))
    assert "--shapes pooled" in replay_command(make_config("reference", seed=0, shapes="pooled"))
    assert "--shapes free" in replay_command(make_config("reference", seed=0, shapes="free"))


@pytest.mark.parametrize("name", ["forward_agreement", "backward_agreement", "batch_independence"])
def test_pooled_cases_take_their_shapes_from_the_pool(name: str) -> None:
    config = make_config("reference", seed=11, shapes="pooled")
    pool = _entries(shape_pool("default", 11))
    (spec,) = selected_properties([name])
    seen: list[tuple[tuple[int, ...], int, str]] = []

    @settings(max_examples=150, database=None)
    @given(cases_for(spec, config))
    def collect(case: Case) -> None:
        seen.append((case.shape, case.num_groups, case.affine))

    collect()
    assert seen and set(seen) <= pool
    assert len(set(seen)) >= len(pool) // 2  # the draws spread over the pool, not over a few shapes


def test_free_cases_are_not_limited_to_a_pool() -> None:
    config = make_config("reference", seed=11)
    (spec,) = selected_properties(["forward_agreement"])
    seen: set[tuple[tuple[int, ...], int, str]] = set()

    @settings(max_examples=150, database=None)
    @given(cases_for(spec, config))
    def collect(case: Case) -> None:
        seen.add((case.shape, case.num_groups, case.affine))

    collect()
    assert len(seen) > len(_entries(shape_pool("default", 11)))


def test_a_pooled_run_says_so_and_its_report_records_it(tmp_path: Path) -> None:
    report = tmp_path / "r.json"
    done = gn_spec("check", "reference", "--profile", "quick", "--seed", "5", "--shapes", "pooled",
                   "--property", "forward_agreement", "--json", str(report), cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    n = len(_entries(shape_pool("quick", 5)))
    assert f"shapes: every property draws from one pool of {n} shapes (seed 5)" in done.stdout
    data = json.loads(report.read_text())
    assert data["shapes"] == "pooled" and "--shapes pooled" in data["command"]
    free = gn_spec("check", "reference", "--profile", "quick", "--seed", "5", "--property",
                   "forward_agreement", "--json", str(report), cwd=tmp_path)
    assert free.returncode == 0 and "shapes:" not in free.stdout
    assert json.loads(report.read_text())["shapes"] == "free"
