"""What the user asked to check: parsing TARGET and the options that go with it, before anything is imported.

The parent process never imports the target; it only validates the spelling here.  Whether the module imports
and holds the function is decided by the worker (see :mod:`gn_spec.checker.worker`), which reports back.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from gn_spec.checker.dtypes import DTYPE_NAMES
from gn_spec.profiles import PROFILE_NAMES as PROFILES

APIS = ("numpy", "torch", "cs231n")
DEVICES = ("cpu", "cuda")
MEMORY_FORMATS = ("contiguous", "channels_last")

#: The pair of functions a ``--api cs231n`` target must define.
CS231N_FUNCTIONS = ("spatial_groupnorm_forward", "spatial_groupnorm_backward")


class UsageError(ValueError):
    """The command line or the target cannot be used as given (exit status 2)."""


@dataclass(frozen=True)
class TargetSpec:
    """Where the implementation under test lives.

    ``kind`` is ``"torch"`` (torch.nn.functional.group_norm), ``"reference"`` (gn_spec's own reference),
    ``"module"`` (an importable module) or ``"file"`` (a Python file).  ``location`` is the module name or the
    absolute file path; ``function`` the attribute path inside it (``None`` for cs231n, which uses
    :data:`CS231N_FUNCTIONS`).
    """

    text: str
    kind: str
    location: str = ""
    function: str | None = None


@dataclass(frozen=True)
class CheckConfig:
    """Everything that decides what a check run does (the CLI options, validated)."""

    target: TargetSpec
    api: str
    dtype: str = "float32"
    device: str = "cpu"
    memory_format: str = "contiguous"
    profile: str = "default"
    seed: int | None = None
    timeout: float = 10.0


def _is_identifier_path(text: str) -> bool:
    return bool(text) and all(part.isidentifier() for part in text.split("."))


def parse_target(text: str, api: str) -> TargetSpec:
    """Parse TARGET: ``torch``, ``reference``, ``pkg.mod:fn``, ``path/file.py:fn`` (cs231n: a module or file).

    >>> parse_target("mypkg.ops:group_norm", "numpy")
    TargetSpec(text='mypkg.ops:group_norm', kind='module', location='mypkg.ops', function='group_norm')
    """
    if text in ("torch", "reference"):
        return TargetSpec(text=text, kind=text)
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
    if target_text == "reference":
        if api not in (None, "numpy"):
            raise UsageError(f"TARGET reference is checked through --api numpy, not --api {api}")
        return "numpy"
    return api or "numpy"


def make_config(
    target: str,
    api: str | None = None,
    dtype: str = "float32",
    device: str = "cpu",
    memory_format: str = "contiguous",
    profile: str = "default",
    seed: int | None = None,
    timeout: float = 10.0,
) -> CheckConfig:
    """Validate the options of one check run; raises :class:`UsageError` with the reason."""
    if api is not None and api not in APIS:
        raise UsageError(f"--api {api!r} is not one of {', '.join(APIS)}")
    resolved = resolve_api(target, api)
    for name, value, allowed in (
        ("--dtype", dtype, DTYPE_NAMES),
        ("--device", device, DEVICES),
        ("--memory-format", memory_format, MEMORY_FORMATS),
        ("--profile", profile, PROFILES),
    ):
        if value not in allowed:
            raise UsageError(f"{name} {value!r} is not one of {', '.join(allowed)}")
    if not timeout > 0:
        raise UsageError(f"--timeout {timeout!r} must be a positive number of seconds")
    if seed is not None and seed < 0:
        raise UsageError(f"--seed {seed} must be a non-negative integer")
    if resolved != "torch" and device != "cpu":
        raise UsageError(f"--device {device} needs --api torch (numpy arrays live on the CPU)")
    if resolved != "torch" and dtype == "bfloat16" and target != "reference":
        raise UsageError("--dtype bfloat16 needs --api torch: numpy has no bfloat16 dtype")
    return CheckConfig(
        target=parse_target(target, resolved),
        api=resolved,
        dtype=dtype,
        device=device,
        memory_format=memory_format,
        profile=profile,
        seed=seed,
        timeout=float(timeout),
    )
