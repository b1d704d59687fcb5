"""The property catalogue of gn-spec: what a conforming Group Normalization must satisfy.

One function a property, each with its identity in the docstring; ``gn-spec check`` and the pytest plugin run
them all, in catalogue order: the modules in the order :data:`MODULES` lists them, and within a module in the
order it defines them.  ``python -m gn_spec.properties`` lists them in that order, with a summary each.

- ``agreement.py``: the target against the faithful reference, within the error model (forward, backward,
  second order, and the single-value input that PyTorch rejects);
- ``metamorphic.py``: two calls of the target related by an exact identity (a shift, a scaling, a batch split,
  a spatial permutation, constant groups, a NaN kept in its group);
- ``contracts.py``: shapes, dtypes, inputs left unmodified, invalid groups rejected, repeated calls identical,
  and ``no_tampering``, which is marked ``runs_last``: it covers every call made before it, so the catalogue
  refuses a property placed after it.

A property is ``prop(probe, case, draw) -> Outcome`` (see :mod:`gn_spec.checker.property_framework`):
``case`` is a :class:`gn_spec.strategies.Case` drawn by Hypothesis, ``draw`` draws further structure (a shift
exponent, a permutation seed), ``probe`` (:class:`gn_spec.checker.probe.Probe`) calls the target in the worker
process.  Every tolerance comes from ``gn_spec.error_model``; how each property turns it into its own is in
the property's docstring.

To run them as pytest tests of your implementation::

    pytest --pyargs gn_spec.properties --gn-target mypkg.ops:group_norm --gn-api torch
"""

import importlib

from gn_spec.checker.property_framework import REGISTRY, PropertySpec, in_declared_order

#: The catalogue's modules, in the order their properties run (the one place that order is written).
MODULES = ("agreement", "metamorphic", "contracts")

# The installed name, not __name__: pytest --pyargs can also run this file as a top-level ``properties``
# package, and its modules must still be imported (and their properties registered) once, as gn_spec's.
_PACKAGE = "gn_spec.properties"

for _module in MODULES:
    importlib.import_module(f"{_PACKAGE}.{_module}")  # defining the properties registers them


def catalogue() -> list[PropertySpec]:
    """The registered properties in catalogue order (see :func:`in_declared_order`)."""
    return in_declared_order(REGISTRY, [f"{_PACKAGE}.{m}" for m in MODULES])


#: Names of all properties, in the order they run.
PROPERTY_NAMES = tuple(spec.name for spec in catalogue())

__all__ = ["MODULES", "PROPERTY_NAMES", "catalogue"]
