"""The pytest plugin: the property catalogue as pytest tests of a target, and inert without --gn-target."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from checker_helpers import target


def pytest_run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=300,
    )


def test_properties_run_as_pytest_tests(tmp_path: Path) -> None:
    result = pytest_run(
        "--pyargs",
        "gn_spec.properties",
        "--gn-target",
        target("hostile.py", "good"),
        "--gn-profile",
        "quick",
        "--gn-seed",
        "3",
        "-q",
        "-rs",
        f"--junitxml={tmp_path / 'junit.xml'}",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "13 passed, 3 skipped" in result.stdout
    assert "a plain numpy function has no backward pass" in result.stdout  # the skip reason
    assert (tmp_path / "junit.xml").exists()


def test_a_failing_property_fails_its_test_with_the_counterexample(tmp_path: Path) -> None:
    result = pytest_run(
        "--pyargs",
        "gn_spec.properties",
        "--gn-target",
        target("hostile.py", "bessel"),
        "--gn-profile",
        "quick",
        "--gn-seed",
        "3",
        "-q",
        "-k",
        "forward_agreement or no_tampering",
        cwd=tmp_path,
    )
    assert result.returncode == 1
    assert "1 failed, 1 passed" in result.stdout
    assert "counterexample: shape=" in result.stdout and "reproducer:" in result.stdout


def test_without_gn_target_the_property_tests_error_out_clearly(tmp_path: Path) -> None:
    result = pytest_run("--pyargs", "gn_spec.properties", "-q", "-k", "forward_agreement", cwd=tmp_path)
    assert result.returncode != 0
    assert "give it with --gn-target TARGET" in result.stdout


def test_the_plugin_is_inert_in_other_test_runs(tmp_path: Path) -> None:
    """With the plugin loaded but no --gn-target, an unrelated test suite runs as before and the checker is
    not even imported."""
    (tmp_path / "test_other.py").write_text(
        "import sys\n\ndef test_plain():\n    assert 'gn_spec.checker.runner' not in sys.modules\n"
    )
    result = pytest_run("-q", "test_other.py", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout
    assert "gn-spec" in pytest_run("--help", cwd=tmp_path).stdout  # the options are registered


def test_loading_the_plugin_does_not_import_numba_or_the_reference() -> None:
    """The pytest11 entry point loads the plugin in every pytest run of an environment with gn-spec, so
    ``import gn_spec`` and the plugin must stay light: the reference (numba and its kernels) loads on first
    use of gn_spec.group_norm and friends."""
    import subprocess
    import sys

    code = (
        "import sys, gn_spec, gn_spec.pytest_plugin\n"
        "assert 'numba' not in sys.modules and 'gn_spec.reference' not in sys.modules, sorted(sys.modules)\n"
        "gn_spec.group_norm_backward\n"
        "assert 'gn_spec.reference' in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


_RECORD_SEED = '''
import os
import pytest


@pytest.hookimpl(trylast=True)
def pytest_configure(config):
    name = os.environ.get("PYTEST_XDIST_WORKER", "controller")
    with open(os.path.join(os.environ["SEEDS_DIR"], name), "w") as f:
        f.write(str(config.option.gn_seed))
'''


def test_under_xdist_every_worker_uses_the_controllers_seed(tmp_path: Path) -> None:
    """pytest -n 2 without --gn-seed: the controller picks the seed and each xdist worker (each with its own
    gn-spec worker) uses it; a plugin of the test records the seed each process configured."""
    import os

    (tmp_path / "record_seed.py").write_text(_RECORD_SEED)
    seeds = tmp_path / "seeds"
    seeds.mkdir()
    # this test may itself run in an xdist worker (tox runs tests/ with -n): the inner controller must not
    # inherit that worker's PYTEST_XDIST_WORKER, or the recorder names it after the outer worker
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_XDIST")}
    env.update(SEEDS_DIR=str(seeds), PYTHONPATH=str(tmp_path))
    result = subprocess.run(
        [
            sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "record_seed", "-n", "2",
            "--pyargs", "gn_spec.properties", "--gn-target", target("hostile.py", "bessel"),
            "--gn-profile", "quick", "-q", "-k", "forward_agreement or scaling_identity or batch_indep",
        ],
        capture_output=True, text=True, cwd=tmp_path, timeout=300, env=env,
    )  # fmt: skip
    # the Bessel-corrected variance fails forward agreement
    assert result.returncode == 1, result.stdout + result.stderr
    assert "1 failed, 2 passed" in result.stdout
    recorded = {p.name: p.read_text() for p in seeds.iterdir()}
    assert sorted(recorded) == ["controller", "gw0", "gw1"]
    assert len(set(recorded.values())) == 1 and recorded["controller"].isdigit()
    assert f"--seed {recorded['controller']}" in result.stdout  # the failure's reproducer names it


def test_under_xdist_the_properties_run_as_without_it(tmp_path: Path) -> None:
    result = pytest_run(
        "-n", "2", "--pyargs", "gn_spec.properties", "--gn-target", target("hostile.py", "good"),
        "--gn-profile", "quick", "--gn-seed", "3", "-q", cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "13 passed, 3 skipped" in result.stdout  # as test_properties_run_as_pytest_tests
