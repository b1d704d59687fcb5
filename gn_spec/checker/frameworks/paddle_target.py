"""The built-in target ``paddle.nn.functional.group_norm`` (PaddlePaddle, eager mode, CPU).

The function is called as a careful user would: ``num_groups`` and ``epsilon`` from the case, ``weight`` and
``bias`` exactly as the case has them (None otherwise: paddle accepts either alone), all by keyword (paddle's
group_norm also takes torch's positional order, and tells the two apart by whether the third argument is a
float), and ``data_format`` from ``--target-option data_format``: with ``NHWC`` the adapter moves the
channels last before the call and back after it.  Paddle's wrapper reads only whether C is the second letter
of data_format, so ``NCHW``/``NHWC`` stand for every rank (its ``NCL``, ``NCDHW``, ... mean the same).

Gradients are ``paddle.grad`` on tensors made with ``stop_gradient=False``: the first order with
``create_graph=False``; the second order (:meth:`PaddleAdapter.double_backward`) differentiates the
first-order gradients built with ``create_graph=True``, paired with their cotangents as
:meth:`gn_spec.checker.adapters.TorchAdapter.double_backward` pairs them.  Paddle 3.3.1 registers no grad op
for ``group_norm_grad``, so that call raises paddle's own error, and the registry lists the target without
second order (see SPEC.md section 3.12).

The inputs stay numpy arrays until an operation makes its own tensors from them (``paddle.to_tensor``
copies), as in :mod:`~gn_spec.checker.frameworks.jax_targets`, so that the worker can read them back.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from gn_spec.checker.adapters import BadReturn, Call, Stage
from gn_spec.checker.dtypes import CONTAINER
from gn_spec.checker.frameworks import (
    COTANGENT,
    GRADIENT,
    channels_first,
    channels_last,
    require_cpu_contiguous,
    to_wire,
)

#: The input names shaped like x (they take the data format's layout).
_LIKE_X = ("x", "grad_output", "grad_grad_input")


class PaddleAdapter:
    """``paddle.nn.functional.group_norm`` on paddle tensors of the dtype under test, differentiated by
    ``paddle.grad``; options: ``data_format`` (``NCHW`` or ``NHWC``)."""

    api = "framework"

    def __init__(self, target: Any, dtype: str, device: str, memory_format: str, options: dict[str, Any]):
        require_cpu_contiguous(target, device, memory_format)
        import paddle
        import paddle.nn.functional as F  # noqa: N812 - paddle's own spelling

        paddle.set_device("cpu")
        self.paddle, self.F = paddle, F
        self.target, self.dtype = target, dtype
        self.pdtype = getattr(paddle, dtype)
        self.data_format = options["data_format"]
        self.moves_channels = self.data_format == "NHWC"
        self.stage = Stage()
        self.notes = [
            f"paddle {paddle.__version__} eager mode, CPU; tensors of {dtype}",
            f"data_format={self.data_format}; epsilon=eps passed; weight/bias passed as the case has them "
            "(None otherwise), all by keyword",
        ]
        if self.moves_channels:
            self.notes.append("channels moved last: (N, C, *spatial) -> (N, *spatial, C) and back")
        self.notes.append("gradients by paddle.grad (the second order through create_graph=True)")

    def native(self, name: str, a: np.ndarray) -> np.ndarray:
        """The wire array in its numpy container; each operation makes its own paddle tensors."""
        return np.array(a, dtype=CONTAINER[self.dtype])

    def _tensors(self, inputs: dict[str, Any], differentiated: tuple[str, ...] = ()) -> dict[str, Any]:
        """The inputs as paddle tensors of the dtype, in the data format's layout; those in
        ``differentiated`` with ``stop_gradient=False``."""
        out = {}
        for name, a in inputs.items():
            if self.moves_channels and name in _LIKE_X:
                a = channels_last(a)
            t = self.paddle.to_tensor(np.ascontiguousarray(a), dtype=self.pdtype, place="cpu")
            t.stop_gradient = name not in differentiated
            out[name] = t
        return out

    def _back(self, t: Any) -> Any:
        a = t.numpy()
        return to_wire(channels_first(a) if self.moves_channels else a)

    def _call(self, call: Call, t: dict[str, Any]) -> Any:
        self.stage.name = "forward"
        y = self.F.group_norm(
            t["x"],
            num_groups=call.num_groups,
            epsilon=call.eps,
            weight=t.get("weight"),
            bias=t.get("bias"),
            data_format=self.data_format,
        )
        if not isinstance(y, self.paddle.Tensor) or tuple(y.shape) != tuple(t["x"].shape):
            raise BadReturn(
                f"group_norm returned {type(y).__name__} of shape {tuple(getattr(y, 'shape', ()))} for input "
                f"shape {tuple(t['x'].shape)}"
            )
        return y

    def _grad(
        self, outputs: list[Any], wrt: list[Any], cotangents: list[Any], create_graph: bool
    ) -> list[Any]:
        """paddle.grad with unused inputs read as zero gradients (what its None means)."""
        grads = self.paddle.grad(
            outputs, wrt, grad_outputs=cotangents, create_graph=create_graph, allow_unused=True
        )
        return [self.paddle.zeros_like(w) if g is None else g for g, w in zip(grads, wrt, strict=True)]

    def forward(self, call: Call, inputs: dict[str, Any]) -> dict[str, Any]:
        t = self._tensors(inputs)
        return {"y": self._back(self._call(call, t))}

    def backward(self, call: Call, inputs: dict[str, Any]) -> dict[str, Any]:
        names = [n for n in ("x", "weight", "bias") if n in inputs]
        t = self._tensors(inputs, differentiated=tuple(names))
        y = self._call(call, t)
        self.stage.name = "backward"
        grads = self._grad([y], [t[n] for n in names], [t["grad_output"]], create_graph=False)
        out = {"y": self._back(y)}
        for n, g in zip(names, grads, strict=True):
            out[GRADIENT[n]] = self._back(g) if n == "x" else to_wire(g.numpy())
        return out

    def double_backward(self, call: Call, inputs: dict[str, Any]) -> dict[str, Any]:
        """The vjp of (grad_output, x, weight) -> the first-order gradients that have a cotangent, contracted
        with those cotangents (TorchAdapter.double_backward's definition; bias is held fixed)."""
        names = [n for n in ("x", "weight", "bias") if n in inputs]
        t = self._tensors(inputs, differentiated=(*names, "grad_output"))
        y = self._call(call, t)
        self.stage.name = "backward"
        first = self._grad([y], [t[n] for n in names], [t["grad_output"]], create_graph=True)
        self.stage.name = "double_backward"
        pairs = [(g, t[COTANGENT[n]]) for g, n in zip(first, names, strict=True) if COTANGENT[n] in t]
        wrt = [t["grad_output"], t["x"]] + ([t["weight"]] if "weight" in t else [])
        live = [(g, c) for g, c in pairs if not g.stop_gradient]
        if not live:
            raise BadReturn(
                "the first-order gradients do not depend on anything: the backward is not differentiable"
            )
        second = self._grad([g for g, _ in live], wrt, [c for _, c in live], create_graph=False)
        out = {"grad_grad_output": self._back(second[0]), "grad_x": self._back(second[1])}
        if "weight" in t:
            out["grad_weight"] = to_wire(second[2].numpy())
        return out
