"""Worker-side adapters: how each API's implementation is called and differentiated.

This module runs only inside the worker process (see :mod:`gn_spec.checker.worker_main`), next to the target.
An adapter turns wire arrays into the target's native inputs (numpy arrays or torch tensors of the dtype,
device and memory format under test), calls the target, and returns its raw results by name; describing them
for the wire is :mod:`gn_spec.checker.worker_main`'s job.  An operation an API cannot express raises
:class:`Unsupported`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from gn_spec.checker.dtypes import CONTAINER, round_to


class Unsupported(Exception):
    """The API has no way to express the requested operation (a backward pass of a numpy function)."""


class Unexpressible(Exception):
    """The target cannot take this valid input (ONNX GroupNormalization-18 has one scale per group, not per
    channel); the message says what it cannot express.  Reported as a failure of its own kind."""


class BadReturn(Exception):
    """The target returned something of the wrong structure; the message says what and what was expected."""


@dataclass
class Stage:
    """Which part of a call is running, so that an exception can be attributed (forward, backward, ...)."""

    name: str = "prepare"


@dataclass
class Call:
    """One request from the parent: the operation, its scalar arguments and its wire arrays by name."""

    op: str
    num_groups: int
    eps: float
    arrays: dict[str, np.ndarray]


def type_name(obj: object) -> str:
    """``module.QualName`` of ``obj``'s type, for messages (``builtins.`` dropped)."""
    t = type(obj)
    mod = getattr(t, "__module__", "") or ""
    return t.__qualname__ if mod == "builtins" else f"{mod}.{t.__qualname__}"


def _channels_last_numpy(a: np.ndarray) -> np.ndarray:
    """The same values with channels-last strides (C varies fastest), as torch.channels_last."""
    if a.ndim < 3:
        return a
    order = (0, *range(2, a.ndim), 1)
    back = np.argsort(order)
    return np.ascontiguousarray(a.transpose(order)).transpose(back)


class NumpyAdapter:
    """``fn(x, num_groups, weight, bias, eps)`` on numpy arrays of the dtype under test (forward only)."""

    api = "numpy"

    def __init__(self, fn: Callable[..., Any], dtype: str, memory_format: str) -> None:
        self.fn, self.dtype, self.memory_format = fn, dtype, memory_format
        self.stage = Stage()

    def native(self, name: str, a: np.ndarray) -> Any:
        out = np.array(a, dtype=CONTAINER[self.dtype])
        if name == "x" and self.memory_format == "channels_last":
            out = _channels_last_numpy(out)
        return out

    def forward(self, call: Call, inputs: dict[str, Any]) -> dict[str, Any]:
        self.stage.name = "forward"
        y = self.fn(inputs["x"], call.num_groups, inputs.get("weight"), inputs.get("bias"), call.eps)
        return {"y": y}

    def backward(self, call: Call, inputs: dict[str, Any]) -> dict[str, Any]:
        raise Unsupported("a numpy function has no backward pass (use --api torch or --api cs231n)")

    def double_backward(self, call: Call, inputs: dict[str, Any]) -> dict[str, Any]:
        raise Unsupported("a numpy function has no second-order derivative (use --api torch)")


class Cs231nAdapter(NumpyAdapter):
    """The CS231n pair ``spatial_groupnorm_forward(x, gamma, beta, G, gn_param) -> (out, cache)`` and
    ``spatial_groupnorm_backward(dout, cache) -> (dx, dgamma, dbeta)``; gamma and beta have shape (C,)."""

    api = "cs231n"

    def __init__(
        self, fns: tuple[Callable[..., Any], Callable[..., Any]], dtype: str, memory_format: str
    ) -> None:
        super().__init__(fns[0], dtype, memory_format)
        self.backward_fn = fns[1]

    def _forward_pair(self, call: Call, inputs: dict[str, Any]) -> tuple[Any, Any]:
        self.stage.name = "forward"
        result = self.fn(inputs["x"], inputs["weight"], inputs["bias"], call.num_groups, {"eps": call.eps})
        if not isinstance(result, (tuple, list)) or len(result) != 2:
            raise BadReturn(
                f"spatial_groupnorm_forward returned {type_name(result)}, expected a pair (out, cache)"
            )
        return result[0], result[1]

    def forward(self, call: Call, inputs: dict[str, Any]) -> dict[str, Any]:
        return {"y": self._forward_pair(call, inputs)[0]}

    def backward(self, call: Call, inputs: dict[str, Any]) -> dict[str, Any]:
        y, cache = self._forward_pair(call, inputs)
        self.stage.name = "backward"
        grads = self.backward_fn(inputs["grad_output"], cache)
        if not isinstance(grads, (tuple, list)) or len(grads) != 3:
            raise BadReturn(
                f"spatial_groupnorm_backward returned {type_name(grads)}, expected (dx, dgamma, dbeta)"
            )
        return {"y": y, "grad_input": grads[0], "grad_weight": grads[1], "grad_bias": grads[2]}

    def double_backward(self, call: Call, inputs: dict[str, Any]) -> dict[str, Any]:
        raise Unsupported("the cs231n API has no second-order derivative (use --api torch)")


class WireArray:
    """An array tagged with the format its values belong to (bfloat16 travels in float32)."""

    def __init__(self, array: np.ndarray, dtype: str) -> None:
        self.array, self.dtype = array, dtype


class ReferenceAdapter(NumpyAdapter):
    """gn_spec's own reference as a target: float64 results rounded to the dtype under test (the self-check).

    It answers every operation: forward, backward and second order, each rounded once to the dtype.
    """

    api = "reference"

    def __init__(self, dtype: str, memory_format: str) -> None:
        import gn_spec
        from gn_spec.reference import warm_up

        # Compile the reference's kernels here, during the import phase (allowed IMPORT_GRACE), so that the
        # first run after an install does not spend its per-call timeout in numba's compiler.
        warm_up()
        self.gn = gn_spec
        super().__init__(gn_spec.group_norm, dtype, memory_format)

    def _out(self, a: np.ndarray) -> WireArray:
        return WireArray(round_to(np.asarray(a), self.dtype), self.dtype)

    def forward(self, call: Call, inputs: dict[str, Any]) -> dict[str, Any]:
        self.stage.name = "forward"
        y = self.gn.group_norm(
            inputs["x"], call.num_groups, inputs.get("weight"), inputs.get("bias"), call.eps
        )
        return {"y": self._out(y)}

    def backward(self, call: Call, inputs: dict[str, Any]) -> dict[str, Any]:
        out = self.forward(call, inputs)
        self.stage.name = "backward"
        gx, gw, gb = self.gn.group_norm_backward(
            inputs["grad_output"], inputs["x"], call.num_groups, inputs.get("weight"), call.eps
        )
        out.update(grad_input=self._out(gx))
        if "weight" in inputs:
            out.update(grad_weight=self._out(gw))
        if "bias" in inputs:
            out.update(grad_bias=self._out(gb))
        return out

    def double_backward(self, call: Call, inputs: dict[str, Any]) -> dict[str, Any]:
        self.stage.name = "double_backward"
        ggo, gx, gw = self.gn.group_norm_double_backward(
            inputs.get("grad_grad_input"),
            inputs.get("grad_grad_weight"),
            inputs.get("grad_grad_bias"),
            inputs["grad_output"],
            inputs["x"],
            call.num_groups,
            inputs.get("weight"),
            call.eps,
        )
        out = {"grad_grad_output": self._out(ggo), "grad_x": self._out(gx)}
        if "weight" in inputs:
            out["grad_weight"] = self._out(gw)
        return out


class TorchAdapter:
    """``fn(x, num_groups, weight, bias, eps)`` on torch tensors, differentiated with ``torch.autograd``.

    Inputs are tensors of the dtype on the device; x (and the incoming gradients shaped like x) take the
    memory format, which for 4-D is ``torch.channels_last`` and for 5-D ``torch.channels_last_3d`` (other
    ranks have no channels-last layout; the checker only generates 4-D and 5-D cases under ``--memory-format
    channels_last``).
    """

    api = "torch"

    def __init__(self, fn: Callable[..., Any], dtype: str, device: str, memory_format: str) -> None:
        import torch

        self.torch, self.fn, self.dtype, self.device, self.memory_format = (
            torch,
            fn,
            dtype,
            device,
            memory_format,
        )
        self.tdtype = getattr(torch, dtype)
        self.stage = Stage()

    def native(self, name: str, a: np.ndarray) -> Any:
        torch = self.torch
        t = torch.from_numpy(np.array(a)).to(dtype=self.tdtype, device=self.device)
        if self.memory_format == "channels_last" and name in ("x", "grad_output", "grad_grad_input"):
            if t.dim() == 4:
                t = t.contiguous(memory_format=torch.channels_last)
            elif t.dim() == 5:
                t = t.contiguous(memory_format=torch.channels_last_3d)
        return t

    def _forward(self, call: Call, inputs: dict[str, Any]) -> Any:
        self.stage.name = "forward"
        return self.fn(inputs["x"], call.num_groups, inputs.get("weight"), inputs.get("bias"), call.eps)

    def forward(self, call: Call, inputs: dict[str, Any]) -> dict[str, Any]:
        return {"y": self._forward(call, inputs)}

    def _check_output(self, y: Any, x: Any) -> None:
        if not isinstance(y, self.torch.Tensor):
            raise BadReturn(
                f"the forward returned {type_name(y)}, not a torch.Tensor, so it cannot be differentiated"
            )
        if tuple(y.shape) != tuple(x.shape):
            raise BadReturn(f"the forward returned shape {tuple(y.shape)} for input shape {tuple(x.shape)}")

    def _grad(self, outputs: Any, inputs: list[Any], cotangents: Any, create_graph: bool) -> list[Any]:
        """torch.autograd.grad with unused inputs read as zero gradients (what autograd's None means)."""
        grads = self.torch.autograd.grad(
            outputs, inputs, grad_outputs=cotangents, allow_unused=True, create_graph=create_graph
        )
        return [self.torch.zeros_like(i) if g is None else g for g, i in zip(grads, inputs, strict=True)]

    def _leaves(self, inputs: dict[str, Any]) -> list[str]:
        names: list[str] = [n for n in ("x", "weight", "bias") if n in inputs]
        for n in names:
            inputs[n].requires_grad_(True)
        return names

    def backward(self, call: Call, inputs: dict[str, Any]) -> dict[str, Any]:
        names = self._leaves(inputs)
        y = self._forward(call, inputs)
        self._check_output(y, inputs["x"])
        self.stage.name = "backward"
        grads = self._grad(y, [inputs[n] for n in names], inputs["grad_output"], create_graph=False)
        labels = {"x": "grad_input", "weight": "grad_weight", "bias": "grad_bias"}
        return {"y": y, **{labels[n]: g for n, g in zip(names, grads, strict=True)}}

    def double_backward(self, call: Call, inputs: dict[str, Any]) -> dict[str, Any]:
        names = self._leaves(inputs)
        dy = inputs["grad_output"].requires_grad_(True)
        y = self._forward(call, inputs)
        self._check_output(y, inputs["x"])
        self.stage.name = "backward"
        first = self._grad(y, [inputs[n] for n in names], dy, create_graph=True)
        self.stage.name = "double_backward"
        cot = {"x": "grad_grad_input", "weight": "grad_grad_weight", "bias": "grad_grad_bias"}
        pairs = [(g, inputs[cot[n]]) for g, n in zip(first, names, strict=True) if cot[n] in inputs]
        wrt = [dy, inputs["x"]] + ([inputs["weight"]] if "weight" in inputs else [])
        live = [(g, c) for g, c in pairs if g.requires_grad]
        if not live:
            raise BadReturn(
                "the first-order gradients do not depend on anything: the backward is not differentiable"
            )
        second = self._grad([g for g, _ in live], wrt, [c for _, c in live], create_graph=False)
        out = {"grad_grad_output": second[0], "grad_x": second[1]}
        if "weight" in inputs:
            out["grad_weight"] = second[2]
        return out
