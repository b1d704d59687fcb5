"""Defines the CS231n forward but not the backward (a usage error for --api cs231n)."""

from cs231n_good import spatial_groupnorm_forward  # noqa: F401
