"""The catalogue's order has one source: gn_spec.properties.MODULES, then each module's definition order; and
the property marked ``runs_last`` (no_tampering) is refused anywhere but last."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

from gn_spec.checker.property_framework import PropertySpec, always, default_cases, in_declared_order
from gn_spec.properties import MODULES, PROPERTY_NAMES, catalogue


def _defined_in_file_order(module: str) -> list[str]:
    """The names given to @gn_property in the module's source, top to bottom (read from the text, not run)."""
    path = Path(importlib.import_module(module).__file__ or "")
    names = []
    for node in ast.parse(path.read_text()).body:
        for deco in getattr(node, "decorator_list", []):
            if isinstance(deco, ast.Call) and getattr(deco.func, "id", "") == "gn_property":
                names.append(deco.args[0].value)
    return names


def _spec(name: str, module: str, runs_last: bool = False) -> PropertySpec:
    def fn(probe, case, draw):  # pragma: no cover - never called
        raise AssertionError

    fn.__module__ = module
    return PropertySpec(name, fn, always, default_cases, runs_last=runs_last)


def test_the_catalogue_is_the_declared_modules_in_order_each_in_file_order() -> None:
    expected = [n for m in MODULES for n in _defined_in_file_order(f"gn_spec.properties.{m}")]
    assert list(PROPERTY_NAMES) == expected
    assert [s.name for s in catalogue()] == expected


def test_no_tampering_is_marked_to_run_last_and_does() -> None:
    specs = catalogue()
    assert [s.name for s in specs if s.runs_last] == ["no_tampering"]
    assert specs[-1].name == "no_tampering"


def test_the_order_follows_the_declared_modules_not_the_order_of_registration() -> None:
    registered = [_spec("c1", "pkg.c"), _spec("a1", "pkg.a"), _spec("c2", "pkg.c"), _spec("a2", "pkg.a")]
    ordered = in_declared_order(registered, ["pkg.a", "pkg.c"])
    assert [s.name for s in ordered] == ["a1", "a2", "c1", "c2"]


def test_a_property_defined_outside_the_declared_modules_is_refused() -> None:
    with pytest.raises(RuntimeError, match="'stray' is defined in pkg.elsewhere, which is not one of"):
        in_declared_order([_spec("a1", "pkg.a"), _spec("stray", "pkg.elsewhere")], ["pkg.a"])


def test_a_property_defined_after_no_tampering_is_refused() -> None:
    late = _spec("late_contract", "gn_spec.properties.contracts")  # as if defined below no_tampering
    modules = [f"gn_spec.properties.{m}" for m in MODULES]
    with pytest.raises(RuntimeError, match=r"'no_tampering' must run last .* \['late_contract'\] would run"):
        in_declared_order([*catalogue(), late], modules)


def test_a_property_in_a_module_listed_after_the_last_ones_module_is_refused() -> None:
    specs = [_spec("a1", "pkg.a"), _spec("final", "pkg.a", runs_last=True), _spec("b1", "pkg.b")]
    with pytest.raises(RuntimeError, match=r"'final' must run last .* \['b1'\]"):
        in_declared_order(specs, ["pkg.a", "pkg.b"])
    assert [s.name for s in in_declared_order(specs, ["pkg.b", "pkg.a"])] == ["b1", "a1", "final"]


def test_only_one_property_can_run_last() -> None:
    specs = [_spec("x", "pkg.a", runs_last=True), _spec("y", "pkg.a", runs_last=True)]
    with pytest.raises(RuntimeError, match="only one property can run last"):
        in_declared_order(specs, ["pkg.a"])
