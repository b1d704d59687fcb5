"""Defines the CS231n forward but not the backward: a usage error for --api cs231n, refused unrun."""


def spatial_groupnorm_forward(x, gamma, beta, G, gn_param):
    raise AssertionError("never called: a cs231n target without spatial_groupnorm_backward is refused first")
