"""Adapters of the built-in targets (:mod:`gn_spec.checker.builtins`): they run only in the worker process.

Each adapter is a class ``Adapter(target, dtype, device, memory_format, options)`` (``options``: the typed
``--target-option`` values, every one spelled out) with the interface of
:class:`gn_spec.checker.adapters.NumpyAdapter`: ``stage``, ``native(name, array)``, and ``forward``,
``backward``, ``double_backward`` taking a :class:`~gn_spec.checker.adapters.Call` and the native inputs and
returning the results by name (``y``; ``grad_input``, ``grad_weight``, ``grad_bias``; ``grad_grad_output``,
``grad_x``, ``grad_weight``), each converted back with :func:`to_wire` in the layout (N, C, *spatial).
``notes`` lists, in a few words each, what the adapter did that a reader of the report should know (layout
moved, eps passed, dtype policy set).  An input the framework cannot express raises
:class:`~gn_spec.checker.adapters.Unexpressible`; an operation it lacks raises
:class:`~gn_spec.checker.adapters.Unsupported`.

The torch-based targets (``torch.nn.GroupNorm``, ``torch.compile``) are functions with
``F.group_norm``'s signature instead, driven by :class:`~gn_spec.checker.adapters.TorchAdapter`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from gn_spec.checker.adapters import Unsupported, WireArray

#: Which cotangent contracts which first-order gradient in a double backward (as
#: :meth:`gn_spec.checker.adapters.TorchAdapter.double_backward` pairs them).
COTANGENT = {"x": "grad_grad_input", "weight": "grad_grad_weight", "bias": "grad_grad_bias"}
#: The result name of each first-order gradient.
GRADIENT = {"x": "grad_input", "weight": "grad_weight", "bias": "grad_bias"}


def require_cpu_contiguous(target: Any, device: str, memory_format: str) -> None:
    """Raise Unsupported unless the run is on the CPU in the contiguous layout (what the CPU-only framework
    targets take)."""
    if device != "cpu":
        raise Unsupported(f"{target.name} runs on the CPU here, not on {device}")
    if memory_format != "contiguous":
        raise Unsupported(f"{target.name} takes {target.layout}, not {memory_format}")


#: numpy's name of each dtype whose arrays travel as they are (bfloat16 travels as float32, tagged).
_PLAIN = ("float16", "float32", "float64")


def to_wire(value: Any) -> Any:
    """A framework's array (jax Array, Keras tensor, onnxruntime output) as what the worker sends back: a
    numpy array of its own dtype, or a :class:`WireArray` tagged ``bfloat16`` for bfloat16 data.  Anything
    that is not an array is returned as it is (the property reports what it is)."""
    try:
        a = np.asarray(value)
    except Exception:  # noqa: BLE001 - not convertible: let the property describe it
        return value
    name = str(a.dtype)
    if name == "bfloat16":
        return WireArray(a.astype(np.float32), "bfloat16")
    if a.dtype.kind == "f" and name not in _PLAIN:
        return a.astype(np.float64)
    return a


def channels_last(a: np.ndarray) -> np.ndarray:
    """(N, C, *spatial) -> (N, *spatial, C); 2-D input is left as it is."""
    return a if a.ndim < 3 else np.moveaxis(a, 1, -1)


def channels_first(a: Any) -> Any:
    """(N, *spatial, C) -> (N, C, *spatial), on any array with ``ndim`` and numpy's moveaxis semantics."""
    return a if a.ndim < 3 else np.moveaxis(np.asarray(a), -1, 1)
