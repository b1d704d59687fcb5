"""Known deviations, declared by the adopter: ``gn-spec check TARGET --deviations FILE``.

FILE is TOML, one ``[[deviation]]`` table per known deviation::

    [[deviation]]
    reason = "F.group_norm(x, G, None, bias) cannot be differentiated"   # required: why it deviates
    properties = ["backward_agreement", "input_not_modified"]          # optional: default every property
    dtype = ["float32", "float64"]            # optional scope: dtype, device, memory_format, api
    kind = "refused valid input"              # optional: only failures of this kind (or a list of kinds)
    cases = { affine = "bias", batch = 1 }    # optional: which generated inputs it covers

``cases`` is a conjunction over the structural fields of a generated input (:data:`CASE_FIELDS`, the
fields the JSON report gives a counterexample, :func:`case_fields`); each value is the one allowed value
or a list of allowed values.  What an entry does, under its scope and for its properties:

- with ``cases`` and no ``kind``: a generated input in the region is not judged (the property is not
  called on it) and counted; the property goes on judging every other input;
- with ``cases`` and ``kind``: the property is called on the region's inputs as on any other, and a failure
  of that kind there is excused (counted), a failure of another kind is not;
- without ``cases``: the whole property is an expected failure (pytest's xfail), of ``kind`` if given.

Strict by default (pytest's xfail_strict): an entry that no longer reproduces makes the run exit 1
(``--deviations-strict false``: a warning).  For a region without ``kind``, the property is run again, after
its main run and with a small budget (:data:`RECHECK_EXAMPLES`), on region inputs its own strategy
generated (the first :data:`RECHECK_EXAMPLES` the main run excluded); it reproduces if one of them fails.
A region with ``kind`` reproduces if the main run excused a failure; an expected failure, if the property
failed (with that kind).  A mistake in the file (an unknown key, property, field, value or kind) is a
:class:`~gn_spec.checker.options.UsageError` that names it and lists the valid ones (exit 2).
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gn_spec.checker.dtypes import DTYPE_NAMES
from gn_spec.checker.failure_kinds import KINDS
from gn_spec.checker.options import APIS, DEVICES, MEMORY_FORMATS, UsageError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

if TYPE_CHECKING:
    from gn_spec.checker.target import CheckConfig
    from gn_spec.strategies import Case

#: Inputs of one (deviation, property) kept for the strict re-check, and the examples it runs.
RECHECK_EXAMPLES = 10

#: What a (deviation, property) pair came to: it still deviates; it no longer does (strict: exit 1); the
#: main run generated no input in its region; or it could not be told (the property failed otherwise first,
#: or the re-check could not rebuild the region's inputs).
REPRODUCES = "reproduces"
STALE = "no longer deviates"
UNMATCHED = "matched no generated input"
UNDECIDED = "undecided"

ENTRY_KEYS = ("reason", "properties", "dtype", "device", "memory_format", "api", "kind", "cases")
#: The scope keys: the run's configuration an entry is restricted to, and the values each may take.
SCOPE_VALUES: Mapping[str, tuple[str, ...]] = {
    "dtype": tuple(DTYPE_NAMES),
    "device": DEVICES,
    "memory_format": MEMORY_FORMATS,
    "api": (*APIS, "framework"),
}


def case_fields(case: Case, dtype: str) -> dict[str, Any]:
    """A generated input's structure under the names the JSON report and the deviations file use."""
    return {
        "shape": list(case.shape),
        "num_groups": case.num_groups,
        "group_size": case.group_size if case.valid else None,
        "eps": case.eps,
        "affine": case.affine,
        "data": case.data,
        "seed": case.seed,
        "dtype": dtype,
        "log10_offset": case.log10_offset,
        "log10_scale": case.log10_scale,
        "grad_offset": case.grad_offset,
        "batch": case.shape[0],
        "channels": case.shape[1],
        "spatial_dims": len(case.shape) - 2,
    }


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return (_is_int(v) or isinstance(v, float)) and math.isfinite(v)


def _is_shape(v: Any) -> bool:
    return isinstance(v, list) and len(v) >= 2 and all(_is_int(s) and s >= 0 for s in v)


def _field_checks() -> dict[str, tuple[Callable[[Any], bool], str]]:
    from gn_spec.strategies import AFFINES, RECIPES

    def one_of(values: Sequence[str]) -> tuple[Callable[[Any], bool], str]:
        return (lambda v: v in values), "one of " + ", ".join(values)

    integer = (_is_int, "an integer")
    return {
        "shape": (_is_shape, "a shape: a list of at least two non-negative integers"),
        "num_groups": integer,
        "group_size": integer,
        "eps": (_is_number, "a number"),
        "affine": one_of(AFFINES),
        "data": one_of(RECIPES),
        "seed": integer,
        "dtype": one_of(DTYPE_NAMES),
        "log10_offset": integer,
        "log10_scale": integer,
        "grad_offset": (_is_number, "a number"),
        "batch": integer,
        "channels": integer,
        "spatial_dims": integer,
    }


#: The fields ``cases`` may constrain (those of :func:`case_fields`), in the order messages list them.
CASE_FIELDS = tuple(_field_checks())


@dataclass(frozen=True)
class Deviation:
    """One ``[[deviation]]`` entry, checked: ``number`` is its place in the file (from 1); ``properties``
    None means every property; ``scope`` maps dtype/device/memory_format/api to the allowed values;
    ``cases`` (None: the whole property) maps case fields to the allowed values; ``kinds`` (None: any)."""

    number: int
    reason: str
    properties: tuple[str, ...] | None
    scope: Mapping[str, tuple[str, ...]]
    cases: Mapping[str, tuple[Any, ...]] | None
    kinds: tuple[str, ...] | None

    @property
    def mode(self) -> str:
        """What it does, in words: ``region``, ``region (kind ...)`` or ``expected failure``."""
        if self.cases is None:
            return "expected failure" + (f" ({', '.join(self.kinds)})" if self.kinds else "")
        return "region" + (f" (failures of kind {', '.join(self.kinds)})" if self.kinds else "")

    def describe(self) -> str:
        """The entry's scope and region in one line: ``dtype=float32; cases: affine=bias``."""
        parts = [f"{k}={'|'.join(v)}" for k, v in self.scope.items()]
        if self.kinds:
            parts.append(f"kind={'|'.join(self.kinds)}")
        if self.cases is not None:
            shown = (f"{k}={'|'.join(str(x) for x in v)}" for k, v in self.cases.items())
            parts.append("cases: " + (" ".join(shown) or "every input"))
        return "; ".join(parts) or "every input"

    def applies(self, property_name: str, config: CheckConfig) -> bool:
        """The entry covers ``property_name`` under ``config`` (its properties and its scope)."""
        if self.properties is not None and property_name not in self.properties:
            return False
        return all(getattr(config, key) in allowed for key, allowed in self.scope.items())

    def covers(self, fields: Mapping[str, Any]) -> bool:
        """The generated input whose :func:`case_fields` are ``fields`` lies in the entry's region."""
        assert self.cases is not None
        return all(fields[key] in allowed for key, allowed in self.cases.items())

    def excuses(self, kind: str) -> bool:
        """A failure of ``kind`` is what the entry declares."""
        return self.kinds is None or kind in self.kinds

    def to_json(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "reason": self.reason,
            "properties": None if self.properties is None else list(self.properties),
            "scope": {k: list(v) for k, v in self.scope.items()},
            "kind": None if self.kinds is None else list(self.kinds),
            "cases": None if self.cases is None else {k: list(v) for k, v in self.cases.items()},
        }


@dataclass(frozen=True)
class Deviations:
    """The checked deviations file: ``path`` as given, its entries, and whether strict."""

    path: str
    entries: tuple[Deviation, ...]
    strict: bool = True

    def for_property(self, property_name: str, config: CheckConfig) -> list[Deviation]:
        return [d for d in self.entries if d.applies(property_name, config)]


def _listed(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _chosen(value: Any, allowed: Sequence[str], where: str, before: str, after: str) -> tuple[str, ...]:
    """``value`` (one value or a list) as a tuple of values from ``allowed``; else a UsageError
    ``WHERE: BEFORE SHOWN AFTER: VALID``, SHOWN the first value not allowed (or "an empty list")."""
    values = _listed(value)
    bad = [v for v in values if v not in allowed]
    if bad or not values:
        shown = repr(bad[0]) if bad else "an empty list"
        raise UsageError(f"{where}: {before} {shown}{after}: {', '.join(allowed)}")
    return tuple(values)


def _entry(number: int, raw: Any, where: str, property_names: Sequence[str]) -> Deviation:
    if not isinstance(raw, dict):
        raise UsageError(f"{where}: each [[deviation]] must be a table, not {raw!r}")
    unknown = [k for k in raw if k not in ENTRY_KEYS]
    if unknown:
        raise UsageError(f"{where}: unknown key {unknown[0]!r}; valid keys: {', '.join(ENTRY_KEYS)}")
    reason = raw.get("reason")
    if not isinstance(reason, str) or not reason.strip():
        raise UsageError(f"{where}: needs a reason = \"...\" saying why the target deviates")
    where = f"{where} ({reason[:60]!r})"
    properties = None
    if "properties" in raw:
        names = property_names
        properties = _chosen(raw["properties"], names, where, "unknown property", "; valid properties")
    scope = {}
    for key, allowed in SCOPE_VALUES.items():
        if key in raw:
            scope[key] = _chosen(raw[key], allowed, where, key, " is not valid; valid values")
    kinds = None
    if "kind" in raw:
        kinds = _chosen(raw["kind"], tuple(KINDS), where, "unknown kind", "; valid kinds")
    cases = None
    if "cases" in raw:
        given = raw["cases"]
        if not isinstance(given, dict):
            example = 'cases = { affine = "bias" }'
            raise UsageError(f"{where}: cases must be a table of fields, e.g. {example}")
        checks = _field_checks()
        cases = {}
        for key, value in given.items():
            if key not in checks:
                raise UsageError(f"{where}: unknown case field {key!r}; valid fields: {', '.join(checks)}")
            ok, expected = checks[key]
            # a shape is itself a list: a list of shapes lists the allowed ones
            values = [value] if key == "shape" and _is_shape(value) else _listed(value)
            bad = [v for v in values if not ok(v)]
            if bad or not values:
                shown = repr(bad[0]) if bad else "an empty list"
                raise UsageError(f"{where}: cases.{key} = {shown} is not valid; expected {expected}")
            cases[key] = tuple(values)
    return Deviation(number, reason.strip(), properties, scope, cases, kinds)


def load(path: str | os.PathLike[str], property_names: Sequence[str], strict: bool = True) -> Deviations:
    """Read and check the deviations file at ``path``; raises :class:`UsageError` naming what is wrong."""
    shown = os.fspath(path)
    try:
        with open(path, "rb") as f:
            doc = tomllib.load(f)
    except FileNotFoundError:
        raise UsageError(f"--deviations {shown!r}: no such file") from None
    except OSError as exc:
        raise UsageError(f"--deviations {shown!r}: cannot be read ({exc.strerror})") from None
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"--deviations {shown!r} is not valid TOML: {exc}") from None
    unknown = [k for k in doc if k != "deviation"]
    if unknown:
        raise UsageError(f"{shown}: unknown table {unknown[0]!r}; the file holds [[deviation]] entries only")
    raw = doc.get("deviation", [])
    if not isinstance(raw, list):
        raise UsageError(f"{shown}: write each entry as [[deviation]] (an array of tables)")
    entries = tuple(
        _entry(i, entry, f"{shown}: [[deviation]] {i}", property_names) for i, entry in enumerate(raw, 1)
    )
    return Deviations(shown, entries, strict)


def for_config(config: CheckConfig) -> Deviations | None:
    """The deviations file a configuration names, loaded and checked (None without one)."""
    if config.deviations is None:
        return None
    from gn_spec.properties import PROPERTY_NAMES

    return load(config.deviations, PROPERTY_NAMES, config.deviations_strict)
