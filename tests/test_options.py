"""One options model: the CLI, the pytest plugin, run_check and CheckConfig take the same options.

The comparisons read the parsers the CLI and the plugin really build (not the option table), so an option
added to one of them by hand, or with another default or other choices, fails here.
"""

from __future__ import annotations

import argparse
import inspect
import subprocess
import sys
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest

from gn_spec import pytest_plugin, strategies
from gn_spec.checker import run_check
from gn_spec.checker.runner import PROFILES as RUNNER_PROFILES
from gn_spec.checker.target import CheckConfig, UsageError, make_config
from gn_spec.cli import build_parser, main
from gn_spec.profiles import PROFILES

#: The CLI's options that have no --gn- twin in the plugin: the run's selection (pytest has -k), its
#: processes (pytest-xdist has -n) and the CLI's own output (pytest has --junitxml and -q).
CLI_ONLY = {"--property", "--jobs", "--json", "--junit-xml", "--quiet"}


def _check_parser() -> argparse.ArgumentParser:
    parser = build_parser()
    (sub,) = (a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices["check"]


class _RecordingGroup:
    def __init__(self, parser: argparse.ArgumentParser) -> None:
        self.parser = parser

    def addoption(self, *names: str, **attrs: Any) -> None:
        self.parser.add_argument(*names, **attrs)


class _RecordingParser:
    """What pytest_addoption is given, reduced to argparse (which pytest's parser forwards to)."""

    def __init__(self) -> None:
        self.argparser = argparse.ArgumentParser(prog="pytest", add_help=False, exit_on_error=False)
        self.groups: list[str] = []

    def getgroup(self, name: str, description: str = "") -> _RecordingGroup:
        self.groups.append(name)
        return _RecordingGroup(self.argparser)


def _plugin_parser() -> argparse.ArgumentParser:
    recorder = _RecordingParser()
    pytest_plugin.pytest_addoption(recorder)  # type: ignore[arg-type]
    assert recorder.groups == ["gn-spec"]
    return recorder.argparser


def _options(parser: argparse.ArgumentParser, prefix: str) -> dict[str, argparse.Action]:
    """The parser's options by name (``--gn-memory-format`` and ``--memory-format`` -> ``memory-format``);
    a positional argument counts as the option of its metavar (TARGET -> ``target``)."""
    found = {}
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        if action.option_strings:
            (flag,) = action.option_strings
            assert flag.startswith(prefix), flag
            found[flag[len(prefix) :]] = action
        else:
            found[str(action.metavar).lower()] = action
    return found


def test_the_cli_and_the_plugin_take_the_same_options_with_the_same_defaults_and_choices() -> None:
    cli = _options(_check_parser(), "--")
    plugin = _options(_plugin_parser(), "--gn-")
    assert set(plugin) == set(cli) - {flag[2:] for flag in CLI_ONLY}
    assert "target" in plugin and not cli["target"].option_strings  # TARGET is positional in the CLI only
    for name, theirs in plugin.items():
        ours = cli[name]
        assert theirs.default == ours.default, name
        assert theirs.choices == ours.choices, name
        assert theirs.type == ours.type, name  # the same parsing, hence the same values and messages
        assert theirs.help, name
        assert ours.help, name
    # and the values they give when nothing is said: the same (TARGET apart, which the CLI requires)
    given = vars(_check_parser().parse_args(["torch"]))
    defaults = vars(_plugin_parser().parse_args([]))
    for name, action in plugin.items():
        if name != "target":
            assert defaults[action.dest] == given[cli[name].dest], name


def test_every_cli_option_has_help_and_profile_help_promises_no_time() -> None:
    for name, action in _options(_check_parser(), "--").items():
        assert action.help and action.help != argparse.SUPPRESS, name
    profile = _options(_check_parser(), "--")["profile"].help or ""
    for profile_name in PROFILES:
        assert f"{profile_name}: up to" in profile
    assert not any(word in profile for word in ("second", "minute", "hour"))


def test_check_help_lists_the_exit_statuses(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["check", "--help"])
    assert exc.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    for status in ("0 TARGET conforms", "1 it does not conform", "2 usage error", "3 internal error"):
        assert status in out


def test_run_check_and_make_config_take_the_cli_options_as_keywords() -> None:
    cli = _check_parser()
    keywords = {a.dest for a in cli._actions if not isinstance(a, argparse._HelpAction)}
    run_check_keywords = set(inspect.signature(run_check).parameters)
    # --json, --junit-xml and --quiet are the CLI's output; progress is where run_check writes progress lines
    assert run_check_keywords - {"progress"} == keywords - {"json", "junit_xml", "quiet"}
    # CheckConfig holds exactly what the plugin configures, in the same order
    configured = [a.dest.removeprefix("gn_") for a in _plugin_parser()._actions]
    assert [f.name for f in fields(CheckConfig)] == configured
    defaults = vars(_plugin_parser().parse_args([]))
    config = make_config("torch", **{k[3:]: v for k, v in defaults.items() if k != "gn_target"})
    assert (config.profile, config.timeout, config.dtype) == ("default", 10.0, "float32")
    with pytest.raises(TypeError, match="no_such_option"):
        run_check("torch", no_such_option=1)
    with pytest.raises(UsageError, match="--seed -1: expected a non-negative integer"):
        run_check("torch", profile="quick", seed=-1)


def test_profiles_are_declared_once() -> None:
    assert strategies.PROFILES is PROFILES and RUNNER_PROFILES is PROFILES
    assert _options(_check_parser(), "--")["profile"].choices == tuple(PROFILES)


def test_a_profile_weighs_only_registered_properties_and_its_help_says_how_much() -> None:
    from gn_spec.properties import PROPERTY_NAMES

    profile_help = " ".join((_options(_check_parser(), "--")["profile"].help or "").split())
    for profile in PROFILES.values():
        for name, weight in profile.budget.weights:
            assert name in PROPERTY_NAMES and weight > 0, (profile.name, name)
            rarer = f", its large groups {weight:g} times rarer" if profile.limits.large_every else ""
            assert f"({weight:g} times that for {name}{rarer})" in profile_help
    # the quick profile is a smoke run: no property weighs more there than registered
    assert PROFILES["quick"].budget.weights == ()
    assert dict(PROFILES["default"].budget.weights) == {"backward_agreement": 8.0}


BAD_VALUES = [
    ("seed", "abc", "invalid seed 'abc': expected a non-negative integer"),
    ("seed", "-1", "invalid seed '-1': expected a non-negative integer"),
    ("timeout", "0", "invalid timeout '0': expected a positive finite number of seconds"),
    ("timeout", "soon", "invalid timeout 'soon': expected a positive finite number of seconds"),
    ("dtype", "float8", "invalid choice: 'float8'"),
    ("profile", "slow", "invalid choice: 'slow'"),
]


@pytest.mark.parametrize(("name", "value", "message"), BAD_VALUES)
def test_a_bad_value_gives_the_same_message_in_the_cli_and_the_plugin(
    name: str, value: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["check", "torch", f"--{name}", value])
    assert exc.value.code == 2
    cli_error = capsys.readouterr().err.strip().splitlines()[-1]
    assert cli_error.startswith(f"gn-spec check: error: argument --{name}: ")
    with pytest.raises(argparse.ArgumentError) as plugin_error:
        _plugin_parser().parse_args([f"--gn-{name}", value])
    # argparse words the error "argument --gn-NAME: MESSAGE"; the MESSAGE is the same
    assert cli_error.split(f"argument --{name}: ", 1)[1] == str(plugin_error.value).split(": ", 1)[1]
    assert message in cli_error


def test_pytest_itself_rejects_a_bad_plugin_value_with_that_message(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--gn-seed", "abc", "--co", "-q"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert result.returncode == 4, result.stdout + result.stderr  # pytest's usage error
    assert "argument --gn-seed: invalid seed 'abc': expected a non-negative integer" in result.stderr
