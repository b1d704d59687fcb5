"""The options of ``gn-spec check``, each declared once in :data:`OPTIONS`.

Everything else is derived from the table: the CLI's ``check`` parser adds ``--NAME`` for every option
(:func:`gn_spec.cli.build_parser`), the pytest plugin adds ``--gn-NAME`` for the :data:`CONFIG` ones,
:func:`~gn_spec.checker.runner.run_check` takes the :data:`CONFIG` and :data:`RUN` ones as keywords and
:func:`~gn_spec.checker.target.make_config` validates the :data:`CONFIG` ones into the fields of
:class:`~gn_spec.checker.target.CheckConfig` (whose fields must match them; checked on import).

A value comes either as text (the CLI, the plugin: :meth:`Option.parse`, argparse's ``type``, so a bad value
gives the same message in both) or as a Python value (``run_check(seed=0)``: :meth:`Option.validate`).

Light on purpose: the pytest plugin imports this in every pytest run of an environment with gn-spec.
"""

from __future__ import annotations

import argparse
import inspect
import math
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from gn_spec.checker.dtypes import DTYPE_NAMES
from gn_spec.profiles import PROFILE_NAMES, PROFILES

#: The summation classes (gn_spec.error_model.SUMMATIONS, spelled here: the plugin imports this module).
SUMMATIONS = ("log-depth", "sequential")
#: The per-call timeout where neither --timeout nor the built-in target sets one (seconds).
DEFAULT_TIMEOUT = 10.0
#: How the cases' shapes are drawn (``--shapes``; gn_spec.strategies.shape_pool).
SHAPES = ("auto", "free", "pooled")

#: A field of CheckConfig: in the CLI, the pytest plugin, ``run_check`` and ``make_config``.
CONFIG = "config"
#: How ``run_check`` runs, not what a property sees: in the CLI and ``run_check`` (e.g. ``--property``).
RUN = "run"
#: What the CLI prints or writes: in the CLI only (``--json``, ``--quiet``).
OUTPUT = "output"

APIS = ("numpy", "torch", "cs231n")
DEVICES = ("cpu", "cuda")
MEMORY_FORMATS = ("contiguous", "channels_last")


class UsageError(ValueError):
    """The command line or the target cannot be used as given (exit status 2)."""


@dataclass(frozen=True)
class Option:
    """One option: its name (a Python identifier, also the CheckConfig field and the ``run_check`` keyword),
    its help, default and accepted values.

    ``choices``: the accepted strings.  ``convert`` turns the text of the command line into a value and
    ``normalize`` accepts (and may normalize) a value or raises ``ValueError``/``TypeError``; ``expected``
    says in words what is accepted, for the error message.  ``flag_name`` spells the CLI flag where it is not
    the name (``--property`` for ``properties``); ``positional`` makes it the CLI's positional argument;
    ``repeatable`` collects repeated flags into a list; ``switch`` is a flag without a value;
    ``omit_at_default``: the replay command (:func:`gn_spec.checker.reproducer.replay_command`) leaves it out
    when it has its default value (an option added after reproducers were first written).
    """

    name: str
    help: str
    scope: str = CONFIG
    default: Any = None
    choices: tuple[str, ...] | None = None
    convert: Callable[[str], Any] | None = None
    normalize: Callable[[Any], Any] | None = None
    expected: str = ""
    metavar: str | None = None
    flag_name: str | None = None
    positional: bool = False
    repeatable: bool = False
    switch: bool = False
    omit_at_default: bool = False

    @property
    def flag(self) -> str:
        """The CLI flag, e.g. ``--memory-format``."""
        return "--" + (self.flag_name or self.name).replace("_", "-")

    @property
    def plugin_flag(self) -> str:
        """The pytest plugin's flag, e.g. ``--gn-memory-format``."""
        return "--gn-" + self.flag[2:]

    @property
    def plugin_dest(self) -> str:
        """Where pytest keeps the plugin option's value (``config.option.gn_memory_format``)."""
        return "gn_" + self.name

    @property
    def help_text(self) -> str:
        """The help, with the default when there is one to show."""
        if self.default is None or self.default == () or self.switch:
            return self.help
        shown = f"{self.default:g}" if isinstance(self.default, float) else str(self.default)
        return f"{self.help} (default: {shown})"

    def parse(self, text: str) -> Any:
        """The value of ``text`` given on a command line; raises ``argparse.ArgumentTypeError``."""
        if self.convert is None:
            return text
        try:
            value = self.convert(text)
            return value if self.normalize is None else self.normalize(value)
        except (ValueError, TypeError):
            noun = self.name.replace("_", " ")
            raise argparse.ArgumentTypeError(f"invalid {noun} {text!r}: expected {self.expected}") from None

    def validate(self, value: Any) -> Any:
        """A Python value given for this option, checked (and normalized); raises :class:`UsageError`."""
        if value is None and self.default is None:
            return None
        if self.choices is not None:
            if value not in self.choices:
                raise UsageError(f"{self.flag} {value!r} is not one of {', '.join(self.choices)}")
            return value
        if self.normalize is not None:
            try:
                return self.normalize(value)
            except (ValueError, TypeError):
                raise UsageError(f"{self.flag} {value!r}: expected {self.expected}") from None
        return value

    def argparse_arguments(self) -> dict[str, Any]:
        """Keyword arguments of ``add_argument`` shared by the CLI and the pytest plugin (``dest`` apart)."""
        if self.switch:
            return {"action": "store_true", "help": self.help_text}
        kwargs: dict[str, Any] = {
            "action": "append" if self.repeatable else "store",
            # argparse appends to a repeatable option's default: give it none (validate supplies it)
            "default": None if self.repeatable else self.default,
            "help": self.help_text,
        }
        if self.choices is not None:
            kwargs["choices"] = self.choices
        if self.convert is not None:
            kwargs["type"] = self.parse
        if self.metavar is not None:
            kwargs["metavar"] = self.metavar
        return kwargs


#: The most processes ``--jobs auto`` starts (each holds a framework and its compiled programs).
AUTO_JOBS = 4


def _jobs_text(text: str) -> int | str:
    return "auto" if text == "auto" else _integer(text)


def _jobs(value: Any) -> int | str:
    return "auto" if value == "auto" else _positive_int(value)


def _non_negative_int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(value)
    return value


def _positive_int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(value)
    return value


def _seconds(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(value)
    if not 0 < value < math.inf:
        raise ValueError(value)
    return float(value)


def _key_values(value: Any) -> tuple[str, ...]:
    """``--target-option`` values: KEY=VALUE texts, or a mapping (``run_check(target_options={...})``)."""
    if value is None:
        return ()
    if isinstance(value, Mapping):
        value = [f"{k}={str(v).lower() if isinstance(v, bool) else v}" for k, v in value.items()]
    if isinstance(value, str) or not all(isinstance(v, str) and "=" in v for v in value):
        raise ValueError(value)
    return tuple(value)


def _integer(text: str) -> int:
    return int(text, 0)


def _boolean_text(text: str) -> bool:
    words = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}
    if text.lower() not in words:
        raise ValueError(text)
    return words[text.lower()]


def _boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError(value)
    return value


def _path(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, str | os.PathLike):
        raise TypeError(value)
    return os.fspath(value)


def _profile_help() -> str:
    return "how hard to try: " + "; ".join(p.describe() for p in PROFILES.values())


#: Every option of ``gn-spec check``, in the order ``--help`` lists them.
OPTIONS: tuple[Option, ...] = (
    Option(
        "target",
        "a built-in target (torch, flax.linen.GroupNorm, ...: `gn-spec targets` lists them) | reference | "
        "package.module:function | path/to/file.py:function (with --api cs231n: path/to/file.py or "
        "package.module)",
        metavar="TARGET",
        positional=True,
    ),
    Option(
        "api",
        "how to call TARGET (default: torch for TARGET torch, otherwise numpy)",
        choices=APIS,
    ),
    Option(
        "target_options",
        "KEY=VALUE: an option of a built-in target, e.g. use_fast_variance=false (repeatable; "
        "`gn-spec targets` lists each target's)",
        default=(),
        normalize=_key_values,
        expected="KEY=VALUE texts",
        metavar="KEY=VALUE",
        flag_name="target_option",
        repeatable=True,
    ),
    Option("dtype", "dtype of the inputs", default="float32", choices=DTYPE_NAMES),
    Option("device", "torch device", default="cpu", choices=DEVICES),
    Option(
        "memory_format",
        "layout of x for torch targets (channels_last: 4-D and 5-D cases only)",
        default="contiguous",
        choices=MEMORY_FORMATS,
    ),
    Option("profile", _profile_help(), default="default", choices=PROFILE_NAMES),
    Option(
        "shapes",
        "free: every case draws its shape anew; pooled: all properties draw their shapes from one pool per "
        "seed (a few dozen shapes, each rank's with one group, one channel per group, several samples), for "
        "a target that compiles one program per shape; auto (default): pooled for the built-in targets that "
        "do (jax.jit), free otherwise",
        default="auto",
        choices=SHAPES,
        omit_at_default=True,
    ),
    Option(
        "seed",
        "seed of the run: the same seed repeats the run exactly "
        "(default: a random one, shown with the results)",
        convert=_integer,
        normalize=_non_negative_int,
        expected="a non-negative integer",
        metavar="N",
    ),
    Option(
        "timeout",
        f"seconds one call of TARGET may take before it counts as a hang (default: {DEFAULT_TIMEOUT:g}, or a "
        "slow built-in target's own: `gn-spec targets` shows it)",
        convert=float,
        normalize=_seconds,
        expected="a positive finite number of seconds, e.g. 10 or 0.5",
        metavar="SECONDS",
    ),
    Option(
        "summation",
        "the summation class the verdict requires (SPEC.md 3.3): log-depth, or sequential for a target that "
        "sums left to right; reports name the class a failing agreement property meets either way",
        default="log-depth",
        choices=SUMMATIONS,
    ),
    Option(
        "deviations",
        "TOML file of the target's known deviations ([[deviation]] entries: reason, properties, scope, kind, "
        "cases): inputs in a declared region are not judged, a declared failure does not fail the run",
        normalize=_path,
        expected="a path",
        metavar="FILE",
    ),
    Option(
        "deviations_strict",
        "a declared deviation that no longer reproduces fails the run (exit 1); false: a warning",
        default=True,
        convert=_boolean_text,
        normalize=_boolean,
        expected="true or false",
        metavar="true|false",
        omit_at_default=True,
    ),
    Option(
        "properties",
        "check only this property (repeatable); see `python -m gn_spec.properties`",
        scope=RUN,
        metavar="NAME",
        flag_name="property",
        repeatable=True,
    ),
    Option(
        "jobs",
        "run the properties in N processes, each with its own worker process of TARGET: the same verdicts, "
        "counterexamples and JSON report as with 1 (timings and call counters apart); the run's hang "
        "budget (hung calls waited the full --timeout) is counted per process; auto: for a built-in "
        f"target that compiles a program per shape (jax.jit), at a profile other than quick, one process "
        f"per CPU up to {AUTO_JOBS} (their compilations run side by side), else 1",
        scope=RUN,
        default="auto",
        convert=_jobs_text,
        normalize=_jobs,
        expected="a positive integer or auto",
        metavar="N|auto",
    ),
    Option("json", "write a JSON report to PATH", scope=OUTPUT, metavar="PATH"),
    Option("junit_xml", "write a JUnit XML report to PATH", scope=OUTPUT, metavar="PATH"),
    Option("quiet", "no progress lines on stderr", scope=OUTPUT, switch=True),
)

BY_NAME: Mapping[str, Option] = {o.name: o for o in OPTIONS}


def options_in(*scopes: str) -> tuple[Option, ...]:
    """The options of the given scopes, in table order."""
    return tuple(o for o in OPTIONS if o.scope in scopes)


def validated(given: Mapping[str, Any], scopes: Iterable[str], caller: str) -> dict[str, Any]:
    """Every non-positional option of ``scopes``: the value in ``given`` (validated) or the default.

    A name that is not such an option raises ``TypeError``, as a call with an unknown keyword does.
    """
    allowed = {o.name: o for o in options_in(*scopes) if not o.positional}
    unknown = sorted(set(given) - set(allowed))
    if unknown:
        raise TypeError(
            f"{caller}() got unexpected keyword arguments {unknown}; its options: {', '.join(allowed)}"
        )
    return {name: o.validate(given[name]) if name in given else o.default for name, o in allowed.items()}


def signature_with_options(function: Callable[..., Any], scopes: Iterable[str]) -> inspect.Signature:
    """``function``'s signature with its ``**options`` spelled out as the keywords of ``scopes``' options.

    For ``help()``, ``inspect.signature`` and editors: ``run_check(target, *, progress=None, **options)``
    shows as ``run_check(target, *, progress=None, api=None, dtype='float32', ...)``.
    """
    signature = inspect.signature(function)
    params = [p for p in signature.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
    params += [
        inspect.Parameter(o.name, inspect.Parameter.KEYWORD_ONLY, default=o.default)
        for o in options_in(*scopes)
        if not o.positional
    ]
    return signature.replace(parameters=params)
