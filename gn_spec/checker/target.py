"""What the user asked to check: parsing TARGET and the options that go with it, before anything is imported.

The parent process never imports the target; it only validates the spelling here.  Whether the module imports
and holds the function is decided by the worker (see :mod:`gn_spec.checker.worker_main`), which reports back.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from typing import Any

from gn_spec.checker import builtins
from gn_spec.checker.options import AUTO_JOBS, CONFIG, DEFAULT_TIMEOUT, options_in, validated
from gn_spec.checker.options import UsageError as UsageError  # its home was here; kept importable

#: The pair of functions a ``--api cs231n`` target must define.
CS231N_FUNCTIONS = ("spatial_groupnorm_forward", "spatial_groupnorm_backward")


@dataclass(frozen=True)
class TargetSpec:
    """Where the implementation under test lives.

    ``kind`` is ``"torch"`` (torch.nn.functional.group_norm), ``"builtin"`` (another built-in target of
    :mod:`gn_spec.checker.builtins`, named by ``location``), ``"reference"`` (gn_spec's own reference),
    ``"module"`` (an importable module) or ``"file"`` (a Python file).  ``location`` is the module name, the
    absolute file path or the built-in target's name; ``function`` the attribute path inside it (``None`` for
    cs231n, which uses :data:`CS231N_FUNCTIONS`).
    """

    text: str
    kind: str
    location: str = ""
    function: str | None = None


@dataclass(frozen=True)
class CheckConfig:
    """Everything that decides what a check run does: the :data:`~gn_spec.checker.options.CONFIG` options,
    validated by :func:`make_config`, one field each in the table's order (checked below on import; their
    defaults and accepted values live in the table)."""

    target: TargetSpec
    api: str  # resolved: never None ("framework" for a built-in target that returns numpy arrays)
    target_options: tuple[str, ...]  # a built-in target's options, every one spelled out KEY=VALUE
    dtype: str
    device: str
    memory_format: str
    profile: str
    shapes: str  # "auto" | "free" | "pooled" as given; pooled_shapes() resolves auto
    seed: int | None
    timeout: float  # resolved: --timeout, else the built-in target's call_timeout, else DEFAULT_TIMEOUT
    summation: str  # the summation class the verdict requires: "log-depth" or "sequential"
    deviations: str | None  # the deviations file's path (gn_spec.checker.deviations reads it)
    deviations_strict: bool


def _fields_match_the_table() -> None:
    declared = [f.name for f in fields(CheckConfig)]
    table = [o.name for o in options_in(CONFIG)]
    if declared != table:
        raise ImportError(f"CheckConfig's fields {declared} must be the CONFIG options {table}, in order")


_fields_match_the_table()


def _is_identifier_path(text: str) -> bool:
    return bool(text) and all(part.isidentifier() for part in text.split("."))


def parse_target(text: str, api: str) -> TargetSpec:
    """Parse TARGET: ``torch``, ``reference``, ``pkg.mod:fn``, ``path/file.py:fn`` (cs231n: a module or file).

    >>> parse_target("mypkg.ops:group_norm", "numpy")
    TargetSpec(text='mypkg.ops:group_norm', kind='module', location='mypkg.ops', function='group_norm')
    """
    if text in ("torch", "reference"):
        return TargetSpec(text=text, kind=text)
    if text in builtins.BY_NAME:
        return TargetSpec(text=text, kind="builtin", location=text)
    if api == "cs231n":
        location, function = text, None
        if location.endswith(".py") or os.sep in location or "/" in location:
            return TargetSpec(text=text, kind="file", location=_existing_file(location, text))
        if not _is_identifier_path(location):
            raise UsageError(
                f"TARGET {text!r}: with --api cs231n, TARGET is path/to/file.py or package.module holding "
                f"{' and '.join(CS231N_FUNCTIONS)}"
            )
        return TargetSpec(text=text, kind="module", location=location)
    location, sep, function = text.rpartition(":")
    if not sep or not location or not function:
        raise UsageError(
            f"TARGET {text!r} names no function: write package.module:function or path/to/file.py:function "
            "(or torch, reference)"
        )
    if not _is_identifier_path(function):
        raise UsageError(f"TARGET {text!r}: {function!r} is not a function name")
    if location.endswith(".py") or os.sep in location or "/" in location:
        return TargetSpec(text=text, kind="file", location=_existing_file(location, text), function=function)
    if not _is_identifier_path(location):
        raise UsageError(f"TARGET {text!r}: {location!r} is neither a module name nor a .py file")
    return TargetSpec(text=text, kind="module", location=location, function=function)


def _existing_file(path: str, text: str) -> str:
    if not os.path.isfile(path):
        raise UsageError(f"TARGET {text!r}: no such file {path!r}")
    return os.path.abspath(path)


def resolve_api(target_text: str, api: str | None) -> str:
    """The API a target is driven through: ``torch`` for TARGET torch, else ``--api`` (default numpy)."""
    if target_text == "torch":
        if api not in (None, "torch"):
            raise UsageError(
                f"TARGET torch is torch.nn.functional.group_norm and takes --api torch, not --api {api}"
            )
        return "torch"
    builtin = builtins.BY_NAME.get(target_text)
    if builtin is not None:
        if api not in (None, builtin.api):
            raise UsageError(f"TARGET {target_text} is a built-in target; it takes no --api {api}")
        return builtin.api
    if target_text == "reference":
        if api not in (None, "numpy"):
            raise UsageError(f"TARGET reference is checked through --api numpy, not --api {api}")
        return "numpy"
    return api or "numpy"


def make_config(target: str, **options: Any) -> CheckConfig:
    """Validate the options of one check run (keywords: the CONFIG options of
    :data:`~gn_spec.checker.options.OPTIONS`, defaults from there); raises :class:`UsageError` with the
    reason."""
    values = validated(options, [CONFIG], "make_config")
    resolved = resolve_api(target, values["api"])
    device, dtype = values["device"], values["dtype"]
    builtin = builtins.BY_NAME.get(target)
    if values["timeout"] is None:
        values["timeout"] = builtin.call_timeout if builtin and builtin.call_timeout else DEFAULT_TIMEOUT
    if builtin is not None:
        values["target_options"] = builtins.resolve_options(builtin, values["target_options"])
        builtins.check_runnable(builtin, dtype, device, values["memory_format"], values["target_options"])
    elif values["target_options"]:
        raise UsageError(
            f"--target-option is for built-in targets (`gn-spec targets` lists them), not TARGET {target!r}"
        )
    if resolved != "torch" and builtin is None and device != "cpu":
        raise UsageError(f"--device {device} needs --api torch (numpy arrays live on the CPU)")
    if resolved in ("numpy", "cs231n") and dtype == "bfloat16" and target != "reference":
        raise UsageError("--dtype bfloat16 needs --api torch: numpy has no bfloat16 dtype")
    return CheckConfig(**{**values, "target": parse_target(target, resolved), "api": resolved})


def compiles_per_shape(config: CheckConfig) -> str:
    """Why the target of ``config`` compiles a program for every new shape ("" when it does not)."""
    if config.target.kind != "builtin":
        return ""
    return builtins.BY_NAME[config.target.location].compiles_with(config.target_options)


def processes_for(config: CheckConfig, jobs: int | str) -> tuple[int, str]:
    """How many processes run the properties (``--jobs``; auto resolved), and why auto chose more than one
    ("" otherwise): a target that compiles per shape spends most of a run compiling, one program at a time
    on one core, so at the default and thorough profiles its properties are shared among the CPUs (up to
    AUTO_JOBS); the quick profile is too short to repay a second framework import."""
    if jobs != "auto":
        return int(jobs), ""
    why = compiles_per_shape(config)
    if not why or config.profile == "quick":
        return 1, ""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        cpus = os.cpu_count() or 1
    n = max(1, min(AUTO_JOBS, cpus))
    return n, (f"{why}; one process per CPU, up to {AUTO_JOBS}" if n > 1 else "")


def pooled_shapes(config: CheckConfig) -> bool:
    """Whether the run's cases take their shapes from one pool (``--shapes``; auto: where the target compiles
    per shape)."""
    if config.shapes == "auto":
        return bool(compiles_per_shape(config))
    return config.shapes == "pooled"
