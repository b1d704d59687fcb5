"""pytest plugin: run gn-spec's properties as pytest tests of your own Group Normalization.

    pytest --pyargs gn_spec.properties --gn-target mypkg.ops:group_norm --gn-api torch

collects one test per property (``gn_spec/properties/test_gn_conformance.py``); each runs the property with
Hypothesis exactly as ``gn-spec check`` does (same worker isolation, error model and reproducers) and fails
with the counterexample, the worst element and a reproducer script.  Properties that do not apply to the API
are skipped with the reason.  The options are those of ``gn-spec check`` that configure the target, spelled
``--gn-NAME`` and derived from the same table (:data:`gn_spec.checker.options.OPTIONS`), so they take the same
values, defaults and error messages: --gn-target, --gn-api, --gn-dtype, --gn-device, --gn-memory-format,
--gn-profile, --gn-seed, --gn-timeout, --gn-deviations FILE (a property declared failing as a whole is an
xfail; a region's inputs are not judged) and --gn-deviations-strict.  ``--property`` has no --gn- twin
(select tests with ``-k``), nor has ``--jobs`` (pytest-xdist's ``-n``), nor have the CLI's report options
(pytest has ``--junitxml``).

Registered through the ``pytest11`` entry point, the plugin loads in every pytest run of an environment where
gn-spec is installed, so it only adds options here and imports nothing heavy (the option table, which needs
numpy for the dtype names): the checker is imported, and the worker started, by the ``gn_checker`` fixture,
which only the property tests request.  Without the entry point, add ``-p gn_spec.pytest_plugin``.

Under pytest-xdist (``pytest -n 2 --pyargs gn_spec.properties --gn-target ...``) each xdist worker starts its
own worker of the target, and all use one seed: the one given with --gn-seed, or else one the controller
picks and hands to each of them (a property's cases depend on the seed alone, so each test is the same
whichever xdist worker runs it).  ``no_tampering`` there judges the calls made by its own xdist worker only.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import pytest

from gn_spec.checker.options import CONFIG, Option, options_in


def _plugin_options() -> tuple[Option, ...]:
    """The options of ``gn-spec check`` that configure the target (TARGET included, as ``--gn-target``)."""
    return options_in(CONFIG)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("gn-spec", "Group Normalization conformance (gn-spec)")
    for option in _plugin_options():
        if option.positional:
            group.addoption(
                option.plugin_flag, action="store", default=None, metavar=option.metavar, help=option.help
            )
        else:
            group.addoption(option.plugin_flag, dest=option.plugin_dest, **option.argparse_arguments())


#: Where an xdist worker finds the seed the controller chose (``config.workerinput``).
_XDIST_SEED = "gn_spec_seed"


def pytest_configure(config: pytest.Config) -> None:
    if config.getoption("--gn-target") is None or config.getoption("--gn-seed") is not None:
        return
    workerinput = getattr(config, "workerinput", None)  # set in a pytest-xdist worker
    if workerinput is not None and workerinput.get(_XDIST_SEED) is not None:
        config.option.gn_seed = workerinput[_XDIST_SEED]
    else:
        config.option.gn_seed = random.SystemRandom().randrange(2**32)


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """pytest-xdist's controller, for each worker it starts: hand it the run's seed (its own
    ``pytest_configure`` would otherwise pick another one per worker)."""
    node.workerinput[_XDIST_SEED] = node.config.getoption("--gn-seed")


def _given(config: pytest.Config) -> dict[str, Any]:
    """The plugin's options as ``make_config`` keywords (TARGET apart)."""
    return {o.name: config.getoption(o.plugin_dest) for o in _plugin_options() if not o.positional}


def pytest_report_header(config: pytest.Config) -> list[str]:
    target = config.getoption("--gn-target")
    if target is None:
        return []
    shown = ((o.flag[2:], config.getoption(o.plugin_dest)) for o in _plugin_options() if not o.positional)
    return [f"gn-spec: target {target} " + " ".join(f"{k}={v}" for k, v in shown if v is not None)]


class Checker:
    """What the property tests use: a started worker for the configured target."""

    def __init__(self, config: Any, worker: Any, probe: Any, deviations: Any = None) -> None:
        self.config, self.worker, self.probe, self.deviations = config, worker, probe, deviations

    def run(self, name: str) -> Any:
        """Run one property (with the declared deviations, if any); returns its
        :class:`gn_spec.checker.report.PropertyResult`."""
        from gn_spec.checker.runner import run_property, selected_properties

        (spec,) = selected_properties([name])
        assert self.config.seed is not None
        return run_property(spec, self.probe, self.config.seed, deviations=self.deviations)


@pytest.fixture(scope="session")
def gn_checker(request: pytest.FixtureRequest) -> Iterator[Checker]:
    """The configured target behind a worker process, for the whole session."""
    target = request.config.getoption("--gn-target")
    if target is None:
        pytest.fail(
            "gn_spec.properties checks an implementation: give it with --gn-target TARGET "
            "(e.g. --gn-target mypkg.ops:group_norm --gn-api torch)",
            pytrace=False,
        )
    from gn_spec.checker.deviations import for_config
    from gn_spec.checker.probe import Probe
    from gn_spec.checker.target import UsageError, make_config
    from gn_spec.checker.worker_process import WorkerProcess

    try:
        config = make_config(target, **_given(request.config))
        deviations = for_config(config)
        worker = WorkerProcess(config)
        worker.start()
    except UsageError as exc:
        pytest.fail(f"gn-spec: {exc}", pytrace=False)
    with worker:
        yield Checker(config, worker, Probe(config, worker), deviations)
