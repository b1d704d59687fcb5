"""The torch-based built-in targets: ``torch.nn.GroupNorm`` and ``torch.compile``.

Each factory returns a function with ``F.group_norm``'s signature ``fn(x, num_groups, weight, bias, eps)``,
which :class:`~gn_spec.checker.adapters.TorchAdapter` drives and differentiates like TARGET torch.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def nn_group_norm() -> Callable[..., Any]:
    """``torch.nn.GroupNorm(G, C, eps, affine)`` called with the case's weight and bias as its parameters.

    The module is built per call (it is cheap) with ``affine`` True when the case has a weight or a bias; its
    parameters are then replaced, through ``torch.func.functional_call``, by the tensors the checker passes,
    so that gradients reach them.  The module has no weight-only or bias-only form: a missing one is passed
    as ones (weight) or zeros (bias), which is what the module's own initialisation holds.
    """
    import torch
    from torch.func import functional_call

    def group_norm(x: Any, num_groups: int, weight: Any, bias: Any, eps: float) -> Any:
        channels = x.shape[1] if x.dim() > 1 else 0
        affine = weight is not None or bias is not None
        module = torch.nn.GroupNorm(
            num_groups, channels, eps=eps, affine=affine, device=x.device, dtype=x.dtype
        )
        if not affine:
            return module(x)
        params = {
            "weight": weight if weight is not None else torch.ones(channels, dtype=x.dtype, device=x.device),
            "bias": bias if bias is not None else torch.zeros(channels, dtype=x.dtype, device=x.device),
        }
        return functional_call(module, params, (x,))

    return group_norm


def compiled_group_norm() -> Callable[..., Any]:
    """``torch.compile(F.group_norm, dynamic=True)`` (inductor).

    ``dynamic=True`` compiles one graph for symbolic shapes instead of one per shape, and the recompile limit
    is raised so that torch never falls back to eager execution silently (which would check F.group_norm,
    not the compiled code): the checker meets many shapes, ranks and affine combinations.
    """
    import torch
    import torch._dynamo
    import torch.nn.functional as F

    torch._dynamo.config.cache_size_limit = 1024
    if hasattr(torch._dynamo.config, "recompile_limit"):
        torch._dynamo.config.recompile_limit = 1024
    torch._dynamo.config.suppress_errors = False
    return torch.compile(F.group_norm, dynamic=True)
