"""gn-spec: the reference for Group Normalization, and the checker that judges implementations against it.

The reference (``gn_spec.reference``) computes forward, backward and second order in float64, within one ulp
of the exact result; SPEC.md is the normative text it implements.
"""

from gn_spec.reference import group_norm, group_norm_backward, group_norm_double_backward

__all__ = ["group_norm", "group_norm_backward", "group_norm_double_backward"]
__version__ = "0.1.0"
