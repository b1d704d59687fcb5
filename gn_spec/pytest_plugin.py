"""pytest plugin: run gn-spec's properties as pytest tests of your own Group Normalization.

    pytest --pyargs gn_spec.properties --gn-target mypkg.ops:group_norm --gn-api torch

collects one test per property (``gn_spec/properties/test_gn_conformance.py``); each runs the property with
Hypothesis exactly as ``gn-spec check`` does (same worker isolation, error model and reproducers) and fails
with the counterexample, the worst element and a reproducer script.  Properties that do not apply to the API
are skipped with the reason.  The options mirror ``gn-spec check``: --gn-api, --gn-dtype, --gn-device,
--gn-memory-format, --gn-profile (default: default), --gn-seed, --gn-timeout.

Registered through the ``pytest11`` entry point, the plugin loads in every pytest run of an environment where
gn-spec is installed, so it only adds options here and imports nothing heavy: the checker is imported, and the
worker started, by the ``gn_checker`` fixture, which only the property tests request.  Without the entry
point, add ``-p gn_spec.pytest_plugin``.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import pytest

_OPTIONS = (
    (
        "--gn-target",
        None,
        "TARGET to check: torch | reference | package.module:function | path/file.py:function",
    ),
    ("--gn-api", None, "numpy | torch | cs231n (default: torch for TARGET torch, otherwise numpy)"),
    ("--gn-dtype", "float32", "float16 | bfloat16 | float32 | float64"),
    ("--gn-device", "cpu", "cpu | cuda"),
    ("--gn-memory-format", "contiguous", "contiguous | channels_last"),
    ("--gn-profile", "default", "quick | default | thorough"),
    ("--gn-seed", None, "seed of the run (default: random, shown in the header)"),
    ("--gn-timeout", "10", "seconds one call of TARGET may take"),
)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("gn-spec", "Group Normalization conformance (gn-spec)")
    for flag, default, help_text in _OPTIONS:
        group.addoption(flag, action="store", default=default, help=help_text)


def pytest_configure(config: pytest.Config) -> None:
    if config.getoption("--gn-target") is not None and config.getoption("--gn-seed") is None:
        config.option.gn_seed = str(random.SystemRandom().randrange(2**32))


def pytest_report_header(config: pytest.Config) -> list[str]:
    target = config.getoption("--gn-target")
    if target is None:
        return []
    opts = {name: config.getoption(name) for name, _, _ in _OPTIONS[1:]}
    return [f"gn-spec: target {target} " + " ".join(f"{k[5:]}={v}" for k, v in opts.items() if v is not None)]


class Checker:
    """What the property tests use: a started worker for the configured target."""

    def __init__(self, config: Any, worker: Any, probe: Any) -> None:
        self.config, self.worker, self.probe = config, worker, probe

    def run(self, name: str) -> Any:
        """Run one property; returns its :class:`gn_spec.checker.report.PropertyResult`."""
        from gn_spec.checker.runner import run_property, selected_properties

        (spec,) = selected_properties([name])
        assert self.config.seed is not None
        return run_property(spec, self.probe, self.config.seed)


@pytest.fixture(scope="session")
def gn_checker(request: pytest.FixtureRequest) -> Iterator[Checker]:
    """The configured target behind a worker process, for the whole session."""
    opt = request.config.getoption
    target = opt("--gn-target")
    if target is None:
        pytest.fail(
            "gn_spec.properties checks an implementation: give it with --gn-target TARGET "
            "(e.g. --gn-target mypkg.ops:group_norm --gn-api torch)",
            pytrace=False,
        )
    from gn_spec.checker.client import Worker
    from gn_spec.checker.probe import Probe
    from gn_spec.checker.target import UsageError, make_config

    try:
        config = make_config(
            target,
            api=opt("--gn-api"),
            dtype=opt("--gn-dtype"),
            device=opt("--gn-device"),
            memory_format=opt("--gn-memory-format"),
            profile=opt("--gn-profile"),
            seed=int(opt("--gn-seed"), 0),
            timeout=float(opt("--gn-timeout")),
        )
        worker = Worker(config)
        worker.start()
    except (UsageError, ValueError) as exc:
        pytest.fail(f"gn-spec: {exc}", pytrace=False)
    with worker:
        yield Checker(config, worker, Probe(config, worker))
