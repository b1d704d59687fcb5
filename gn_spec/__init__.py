"""gn-spec: the reference for Group Normalization, and the checker that judges implementations against it.

The reference (``gn_spec.reference``) computes forward, backward and second order in float64, within one ulp
of the exact result; SPEC.md is the normative text it implements.

The reference's functions are imported on first use (PEP 562): ``import gn_spec`` alone, which every pytest
run does through the plugin's entry point, does not pay for numba and the kernels.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gn_spec.reference import group_norm, group_norm_backward, group_norm_double_backward

__all__ = ["group_norm", "group_norm_backward", "group_norm_double_backward"]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name in __all__:
        from gn_spec import reference

        value = getattr(reference, name)
        globals()[name] = value  # later look-ups skip this function
        return value
    raise AttributeError(f"module 'gn_spec' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])


# From a bare source checkout, gn_spec.properties and gn_spec.derivations are the top folders (_source_tree).
from gn_spec import _source_tree  # noqa: E402

_source_tree.install()
