"""The property catalogue of gn-spec: what a conforming Group Normalization must satisfy.

One function a property, each with its identity in the docstring; ``gn-spec check`` and the pytest plugin run
them all, in this order:

agreement (``agreement.py``), judged against the faithful reference within the error model
    forward_agreement, backward_agreement (torch, cs231n), second_order_agreement (torch),
    single_value_groups (the input (1, C) with G = C, which PyTorch rejects)
metamorphic (``metamorphic.py``), two calls of the target related by an exact identity
    shift_invariance, scaling_identity, batch_independence, spatial_permutation_equivariance,
    constant_groups_give_bias, nan_stays_in_group
contracts (``contracts.py``)
    output_shape_and_dtype, input_not_modified, rejects_invalid_groups, gradient_shapes_and_dtypes,
    repeated_calls_identical, no_tampering (last: it covers every call made before it)

A property is ``prop(probe, case, draw) -> Outcome`` (see :mod:`gn_spec.checker.property_framework`):
``case`` is a :class:`gn_spec.strategies.Case` drawn by Hypothesis, ``draw`` draws further structure (a shift
exponent, a permutation seed), ``probe`` (:class:`gn_spec.checker.probe.Probe`) calls the target in the worker
process.  Every tolerance comes from
``gn_spec.error_model``; how each property turns it into its own is in the property's docstring.

To run them as pytest tests of your implementation::

    pytest --pyargs gn_spec.properties --gn-target mypkg.ops:group_norm --gn-api torch
"""

from gn_spec.checker.property_framework import REGISTRY, PropertySpec
from gn_spec.properties import agreement, contracts, metamorphic  # noqa: F401  (they register the properties)

#: Names of all properties, in the order they run.
PROPERTY_NAMES = (
    "forward_agreement",
    "backward_agreement",
    "second_order_agreement",
    "single_value_groups",
    "shift_invariance",
    "scaling_identity",
    "batch_independence",
    "spatial_permutation_equivariance",
    "constant_groups_give_bias",
    "nan_stays_in_group",
    "output_shape_and_dtype",
    "input_not_modified",
    "rejects_invalid_groups",
    "gradient_shapes_and_dtypes",
    "repeated_calls_identical",
    "no_tampering",
)


def catalogue() -> list[PropertySpec]:
    """The registered properties in :data:`PROPERTY_NAMES` order."""
    by_name = {p.name: p for p in REGISTRY}
    if set(by_name) != set(PROPERTY_NAMES):
        raise RuntimeError(f"registered {sorted(by_name)} but PROPERTY_NAMES lists {sorted(PROPERTY_NAMES)}")
    return [by_name[n] for n in PROPERTY_NAMES]


__all__ = ["PROPERTY_NAMES", "catalogue"]
