"""The framework findings run for real in tox's ``frameworks`` env, and skip cleanly everywhere else.

Each test file skips when its framework is not installed, which is right in the ``py`` env (it installs no
framework).  In the ``frameworks`` env, where tox sets GN_SPEC_REQUIRE_FRAMEWORKS=1, a missing framework
would turn every finding into a silent skip: there, a framework that does not import is an error, and so is
any test that skips.
"""

from __future__ import annotations

import importlib
import os

import pytest

#: The modules the findings need (the extras test, jax, keras, onnx and openvino of pyproject.toml).
REQUIRED = (
    "jax", "flax.linen", "flax.nnx", "equinox", "keras", "torch", "onnx", "onnxruntime", "onnx.reference",
    "openvino",
)
REQUIRED += ("mlx.core",)  # extra mlx (on Linux mlx[cpu]: the mlx-cpu wheel)

REQUIRE = os.environ.get("GN_SPEC_REQUIRE_FRAMEWORKS") == "1"

if REQUIRE:
    for _name in REQUIRED:
        try:
            importlib.import_module(_name)
        except ImportError as exc:  # pragma: no cover - a broken frameworks env
            raise pytest.UsageError(
                f"GN_SPEC_REQUIRE_FRAMEWORKS=1 but {_name} does not import ({exc}); "
                "install with pip install '.[test,jax,keras,onnx,openvino]' -c constraints.txt"
            ) from exc


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    outcome = yield
    report = outcome.get_result()
    if REQUIRE and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = f"skipped in the frameworks env, where every finding must run: {report.longrepr}"


def pytest_collectreport(report: pytest.CollectReport) -> None:
    if REQUIRE and report.skipped:
        report.outcome = "failed"
