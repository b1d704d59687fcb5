"""The built-in target ``tinygrad.nn.GroupNorm``, on tinygrad's interpreter device (``DEV=PYTHON``).

The module is built as a careful user would: ``num_groups``, ``num_channels`` and ``eps`` from the case,
``affine`` set when the case has a weight or a bias, and its ``weight`` and ``bias`` attributes replaced by
tensors of the dtype under test holding the case's values (the module's own defaults are float32).  It takes
(N, C, *spatial) as it is.  tinygrad applies the affine step only when both attributes are set, so a case with
a weight and no bias sets the bias to zeros, one with a bias and no weight sets the weight to ones (the
module's own initial values); x·1 and x + 0 are exact, and the one filled in is not differentiated.

Gradients are tinygrad's own: ``Tensor.gradient(*targets, gradient=cotangent)`` builds the vector-Jacobian
product as a new lazy graph, which ``Tensor.gradient`` differentiates again for the second order (the
first-order gradients contracted with their cotangents, as
:meth:`gn_spec.checker.adapters.TorchAdapter.double_backward` defines it).

Device: tinygrad picks its default device once, from DEV, when it first opens one.  Its CPU device compiles
every kernel, and at start-up its own helper programs, with clang (``ClangCompiler``), whatever renderer is
asked for (``CPU:LLVM`` and ``CPU:X86`` too), and clang is absent on the CI image; the other compiler-free
devices (NPY, DISK, NULL) do not compute.  So the adapter sets ``DEV=PYTHON`` in the worker before importing
tinygrad: the interpreter device runs each kernel's operations in Python, one element at a time, rounding each
result to its dtype.  Below Python 3.12 it has no native float16 (its renderer drops ``half``), and tinygrad
emulates float16 and bfloat16 there: float32 arithmetic inside a kernel, rounding (subnormals flushed to
zero) where a value is stored between kernels; what the checker sees at those dtypes is that emulation.

Speed (measured on 2 shared cores): a new shape costs ~1.5 s of scheduling and code generation; then about
65 us an element forward, 180 us backward and 870 us second order (x of 10^5 elements: 7 s, 18 s, 87 s), so
``--profile quick`` takes 2-5 minutes and the default profile's largest shapes (~2.5·10^5 elements) need
minutes a call: at the usual 10 s its forward already reported a hang, so the registry gives this target a
600 s per-call timeout of its own (``call_timeout``; ``--timeout`` overrides it).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from gn_spec.checker.adapters import Call, Stage, Unsupported, WireArray
from gn_spec.checker.dtypes import CONTAINER
from gn_spec.checker.frameworks import COTANGENT, GRADIENT, require_cpu_contiguous, to_wire

#: The tinygrad device the target runs on: the interpreter, which needs no C compiler.
DEVICE = "PYTHON"



def _import_tinygrad() -> Any:
    """tinygrad with DEV=PYTHON; raises Unsupported if it already runs on another default device."""
    os.environ["DEV"] = DEVICE
    import tinygrad

    default = tinygrad.Device.DEFAULT
    if default != DEVICE:
        raise Unsupported(f"tinygrad's default device is already {default}, not {DEVICE}")
    return tinygrad


class TinygradAdapter:
    """``tinygrad.nn.GroupNorm`` called on tinygrad Tensors of the dtype under test, differentiated by
    ``Tensor.gradient``; results back as numpy arrays (bfloat16 tagged)."""

    api = "framework"

    def __init__(self, target: Any, dtype: str, device: str, memory_format: str, options: dict[str, Any]):
        require_cpu_contiguous(target, device, memory_format)
        tinygrad = _import_tinygrad()
        self.Tensor, self.nn = tinygrad.Tensor, tinygrad.nn
        self.tdtype = getattr(tinygrad.dtypes, dtype)
        self.dtype, self.container = dtype, CONTAINER[dtype]
        self.stage = Stage()
        self.notes = [
            f"tinygrad device {tinygrad.Device.DEFAULT} (DEV={DEVICE}, set in the worker before tinygrad "
            "was imported): its interpreter; the CPU device needs clang",
            f"Tensors of dtype {self.tdtype}; GroupNorm(G, C, eps=eps, affine) with its weight and bias set "
            "to the case's (a missing one as ones or zeros when the other is given)",
            "gradients by Tensor.gradient (second order: Tensor.gradient of the contracted first order)",
        ]

    def native(self, name: str, a: np.ndarray) -> np.ndarray:
        """The wire array as a numpy array of the dtype's container (bfloat16 travels in float32): each
        operation makes its own Tensors from it, so the worker can read the inputs back unchanged."""
        return np.array(a, dtype=self.container)

    def _tensors(self, inputs: dict[str, Any]) -> dict[str, Any]:
        out = {}
        for name, a in inputs.items():
            t = self.Tensor(np.array(a), dtype=self.tdtype)
            if t.dtype != self.tdtype:  # pragma: no cover - tinygrad always honours an explicit dtype
                raise AssertionError(f"{name}: tinygrad made {t.dtype}, not {self.tdtype}")
            out[name] = t
        return out

    def _forward(self, call: Call, t: dict[str, Any]) -> Any:
        """y = GroupNorm(G, C, eps, affine)(x) with the case's weight and bias placed in the module."""
        x = t["x"]
        channels = x.shape[1]
        weight, bias = t.get("weight"), t.get("bias")
        affine = weight is not None or bias is not None
        self.stage.name = "forward"
        module = self.nn.GroupNorm(call.num_groups, channels, eps=call.eps, affine=affine)
        if affine:
            module.weight = self.Tensor.ones(channels, dtype=self.tdtype) if weight is None else weight
            module.bias = self.Tensor.zeros(channels, dtype=self.tdtype) if bias is None else bias
        return module(x)

    def _back(self, value: Any) -> Any:
        """A tinygrad Tensor as a numpy array (realized here); bfloat16 comes out of ``.numpy()`` as float32
        and goes back tagged bfloat16."""
        if not isinstance(value, self.Tensor):
            return value
        a = value.numpy()
        if str(value.dtype) == "dtypes.bfloat16":
            return WireArray(np.asarray(a, np.float32), "bfloat16")
        return to_wire(a)

    def forward(self, call: Call, inputs: dict[str, Any]) -> dict[str, Any]:
        y = self._forward(call, self._tensors(inputs))
        return {"y": self._back(y)}

    def _first_order(self, call: Call, t: dict[str, Any]) -> tuple[Any, list[str], list[Any]]:
        names: list[str] = [n for n in ("x", "weight", "bias") if n in t]
        y = self._forward(call, t)
        self.stage.name = "backward"
        grads = y.gradient(*[t[n] for n in names], gradient=t["grad_output"])
        return y, names, grads

    def backward(self, call: Call, inputs: dict[str, Any]) -> dict[str, Any]:
        t = self._tensors(inputs)
        y, names, grads = self._first_order(call, t)
        out = {"y": self._back(y)}
        out.update({GRADIENT[n]: self._back(g) for n, g in zip(names, grads, strict=True)})
        return out

    def double_backward(self, call: Call, inputs: dict[str, Any]) -> dict[str, Any]:
        """The gradient of sum over the first-order gradients g_k of (g_k · cotangent_k) with respect to
        (grad_output, x, weight): bias held fixed, as TorchAdapter.double_backward defines it."""
        t = self._tensors(inputs)
        _, names, first = self._first_order(call, t)
        self.stage.name = "double_backward"
        # the checker always gives grad_grad_input, so there is at least one term
        pairs = [(g, t[COTANGENT[n]]) for g, n in zip(first, names, strict=True) if COTANGENT[n] in t]
        terms = [(g * c).sum() for g, c in pairs]
        contracted = terms[0]
        for term in terms[1:]:
            contracted = contracted + term
        wrt = [t["grad_output"], t["x"]] + ([t["weight"]] if "weight" in t else [])
        second = contracted.gradient(*wrt)
        out = {"grad_grad_output": self._back(second[0]), "grad_x": self._back(second[1])}
        if "weight" in t:
            out["grad_weight"] = self._back(second[2])
        return out
