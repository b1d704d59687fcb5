"""The built-in target ``mlx.nn.GroupNorm`` (Apple MLX; on Linux its CPU backend, the ``mlx-cpu`` wheel).

The module is built per call as a careful user would: ``num_groups`` and ``dims`` from the case, ``eps``
passed explicitly, ``pytorch_compatible`` from ``--target-option``, ``affine`` True when the case has a
weight or a bias.  MLX has one ``affine`` switch for both parameters and computes ``weight * x + bias``: a
case with only a weight passes zeros as the bias and one with only a bias passes ones as the weight (the
module's own initial values; both products are exact, so the case is expressed faithfully), and the one
passed in is not differentiated.  The parameters are the module's own ``weight`` and ``bias`` attributes,
set inside ``f(x, weight, bias)``, so that ``mx.vjp`` differentiates through the module's code.

MLX takes channels last, (N, ..., C).  Its default grouping (``pytorch_compatible=False``) reshapes the
channels to (..., G) and so puts channel c in group c mod G, not in contiguous blocks: the checker's
diagnosis names that variant.

Gradients: ``mx.vjp`` of ``f`` for the first order, ``mx.vjp`` of that for the second, both eager (MLX is
lazy: ``mx.eval`` forces the results).  Every dtype, float64 included, runs on the CPU backend.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from gn_spec.checker.adapters import Call, Stage, Unsupported, WireArray
from gn_spec.checker.frameworks import COTANGENT, channels_first, channels_last, to_wire

#: The input names shaped like x (they take the framework's layout).
_LIKE_X = ("x", "grad_output", "grad_grad_input")


class MlxAdapter:
    """``mlx.nn.GroupNorm(G, C, eps, affine, pytorch_compatible)`` on mx arrays of the dtype under test."""

    api = "framework"

    def __init__(self, target: Any, dtype: str, device: str, memory_format: str, options: dict[str, Any]):
        if device != "cpu":
            raise Unsupported(f"{target.name} runs on the CPU here, not on {device}")
        import mlx.core as mx
        import mlx.nn as nn

        mx.set_default_device(mx.cpu)
        self.mx, self.nn = mx, nn
        self.target, self.dtype = target, dtype
        self.mdtype = getattr(mx, dtype)
        self.pytorch_compatible = bool(options["pytorch_compatible"])
        self.stage = Stage()
        self.notes = [
            # getattr: mlx.core's stubs lack __version__, and the type env (no mlx) must not need an ignore
            f"mlx {getattr(mx, '__version__', '?')} on {mx.default_device()}",
            "channels moved last: (N, C, *spatial) -> (N, *spatial, C) and back",
            f"eps=eps passed; pytorch_compatible={self.pytorch_compatible}",
            "affine=True when the case has a weight or a bias; a missing one passed as ones (weight) or "
            "zeros (bias)",
            "gradients by mx.vjp (nested for the second order), eager",
        ]

    def native(self, name: str, a: np.ndarray) -> Any:
        """The wire array as it is (N, C, *spatial); each operation makes its own mx arrays from it."""
        return np.asarray(a)

    def _mx(self, inputs: dict[str, Any]) -> dict[str, Any]:
        out = {}
        for name, a in inputs.items():
            if name in _LIKE_X:
                a = channels_last(a)
            # dtype given at construction: mx.array makes float32 of a float64 numpy array by default, and
            # a later astype would not bring the lost bits back
            out[name] = self.mx.array(np.ascontiguousarray(a), dtype=self.mdtype)
        return out

    def _back(self, a: Any, moved: bool = True) -> Any:
        mx = self.mx
        self.mx.eval(a)
        if a.dtype == mx.bfloat16:
            plain = np.array(a.astype(mx.float32))
            return WireArray(channels_first(plain) if moved else plain, "bfloat16")
        plain = np.array(a)
        return to_wire(channels_first(plain) if moved else plain)

    def _apply(self, x: Any, weight: Any, bias: Any, num_groups: int, eps: float, affine: bool) -> Any:
        module = self.nn.GroupNorm(
            num_groups, x.shape[-1], eps=eps, affine=affine, pytorch_compatible=self.pytorch_compatible
        )
        if affine:
            module.weight, module.bias = weight, bias
        return module(x)

    def _parameters(self, j: dict[str, Any], channels: int) -> tuple[Any, Any, bool]:
        mx = self.mx
        affine = "weight" in j or "bias" in j
        weight = j.get("weight", mx.ones((channels,), dtype=self.mdtype))
        bias = j.get("bias", mx.zeros((channels,), dtype=self.mdtype))
        return weight, bias, affine

    def forward(self, call: Call, inputs: dict[str, Any]) -> dict[str, Any]:
        j = self._mx(inputs)
        weight, bias, affine = self._parameters(j, j["x"].shape[-1])
        self.stage.name = "forward"
        y = self._apply(j["x"], weight, bias, call.num_groups, call.eps, affine)
        return {"y": self._back(y)}

    def _vjp(
        self, call: Call, affine: bool, x: Any, weight: Any, bias: Any, dy: Any
    ) -> tuple[Any, list[Any]]:
        def f(x_: Any, w_: Any, b_: Any) -> Any:
            return self._apply(x_, w_, b_, call.num_groups, call.eps, affine)

        (y,), grads = self.mx.vjp(f, [x, weight, bias], [dy])
        return y, grads

    def backward(self, call: Call, inputs: dict[str, Any]) -> dict[str, Any]:
        j = self._mx(inputs)
        weight, bias, affine = self._parameters(j, j["x"].shape[-1])
        self.stage.name = "backward"
        y, (gx, gw, gb) = self._vjp(call, affine, j["x"], weight, bias, j["grad_output"])
        out = {"y": self._back(y), "grad_input": self._back(gx)}
        if "weight" in j:
            out["grad_weight"] = self._back(gw, moved=False)
        if "bias" in j:
            out["grad_bias"] = self._back(gb, moved=False)
        return out

    def double_backward(self, call: Call, inputs: dict[str, Any]) -> dict[str, Any]:
        """The vjp of (grad_output, x, weight) -> the first-order gradients that have a cotangent, contracted
        with those cotangents (TorchAdapter.double_backward's definition; bias is held fixed)."""
        j = self._mx(inputs)
        weight, bias, affine = self._parameters(j, j["x"].shape[-1])
        names = [n for n in ("x", "weight", "bias") if n in j and COTANGENT[n] in j]
        index = {"x": 0, "weight": 1, "bias": 2}

        def first_order(dy: Any, x: Any, w: Any) -> list[Any]:
            _, grads = self._vjp(call, affine, x, w, bias, dy)
            return [grads[index[n]] for n in names]

        self.stage.name = "double_backward"
        _, (ggo, gx, gw) = self.mx.vjp(
            first_order, [j["grad_output"], j["x"], weight], [j[COTANGENT[n]] for n in names]
        )
        out = {"grad_grad_output": self._back(ggo), "grad_x": self._back(gx)}
        if "weight" in j:
            out["grad_weight"] = self._back(gw, moved=False)
        return out
