"""The built-in target ``keras.layers.GroupNormalization`` on the Keras backend ``--target-option backend``.

The layer is built as a careful user would: ``groups`` and ``epsilon`` from the case, ``axis=-1`` with the
channels moved last (Keras' default layout), ``scale`` and ``center`` set from whether the case has a weight
and a bias, and ``dtype`` (the layer's dtype policy) set to the dtype under test, so that Keras neither casts
float64 down to float32 nor float16 up.  What the layer then computes in is its own business: if it computes
in a lower precision than the dtype, that is a finding.  The case's weight and bias are passed as the layer's
``gamma`` and ``beta`` through ``layer.stateless_call``, so that the backend's autodiff differentiates them.

Keras picks its backend once per process, from KERAS_BACKEND, when it is first imported: the adapter sets it
before importing Keras, in the worker process only.  Per backend:

- ``jax``: :class:`~gn_spec.checker.frameworks.jax_targets.JaxAdapter`'s machinery (jax.vjp, nested for the
  second order, one jax.jit program per shape);
- ``torch``: :class:`~gn_spec.checker.adapters.TorchAdapter` drives a function with ``F.group_norm``'s
  signature that moves the channels last (``torch.movedim``, exact) and calls the layer (torch.autograd);
- ``numpy``: forward only (Keras' numpy backend has no autodiff);
- ``tensorflow``: not wired (the registry's option_requires refuses it when TensorFlow is absent; when it is
  present the adapter says it is not supported yet).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np

from gn_spec.checker.adapters import Call, NumpyAdapter, TorchAdapter, Unsupported
from gn_spec.checker.frameworks import channels_first, channels_last, to_wire
from gn_spec.checker.frameworks.jax_targets import JaxAdapter, enable_x64_if


def _import_keras(backend: str) -> Any:
    """Keras on ``backend``; raises Unsupported if Keras was already imported on another one."""
    os.environ["KERAS_BACKEND"] = backend
    import keras

    if keras.backend.backend() != backend:
        raise Unsupported(
            f"Keras was already imported on the {keras.backend.backend()} backend, not {backend}"
        )
    return keras


#: The epsilon a layer of the jax backend is built with; each call replaces it with the case's eps.
_PLACEHOLDER_EPS = 1e-3


class _Layers:
    """One built layer per (groups, eps, channels, rank, scale, center), made before any tracing; eps None:
    one layer for every eps, whose ``epsilon`` the caller sets before each call (the jax backend)."""

    def __init__(self, keras: Any, dtype: str) -> None:
        self.keras, self.dtype = keras, dtype
        self.built: dict[tuple[Any, ...], Any] = {}

    def get(
        self, num_groups: int, eps: float | None, shape: tuple[int, ...], scale: bool, center: bool
    ) -> Any:
        key = (num_groups, eps, shape[-1], len(shape), scale, center)
        layer = self.built.get(key)
        if layer is None:
            epsilon = _PLACEHOLDER_EPS if eps is None else eps
            layer = self.keras.layers.GroupNormalization(
                groups=num_groups, axis=-1, epsilon=epsilon, center=center, scale=scale, dtype=self.dtype
            )
            layer.build((None,) * (len(shape) - 1) + (shape[-1],))
            self.built[key] = layer
        return layer

    @staticmethod
    def variables(layer: Any, weight: Any, bias: Any) -> list[Any]:
        """The values of ``layer.trainable_variables`` in their order: gamma is the weight, beta the bias."""
        given = {"gamma": weight, "beta": bias}
        return [given[v.name] for v in layer.trainable_variables]


def _notes(backend: str, dtype: str) -> list[str]:
    return [
        f"KERAS_BACKEND={backend}",
        f"dtype policy {dtype}; axis=-1, epsilon=eps; scale/center set from the case's weight/bias",
        "channels moved last: (N, C, *spatial) -> (N, *spatial, C) and back",
        "weight and bias passed as gamma and beta through layer.stateless_call",
    ]


class _KerasJax(JaxAdapter):
    """The jax backend: the layer's stateless_call traced inside jax.jit, differentiated by jax.vjp.

    eps is traced, as for Flax: the layer is built once for every eps, and each traced call sets its
    ``epsilon`` to the traced scalar, which Keras adds to the variance (``ops.rsqrt(variance +
    self.epsilon)``) as it would the float; the six eps of the cases share one program per shape
    (tests/frameworks/test_jax_traced_eps.py checks the results bit for bit against eps compiled in).
    """

    def __init__(self, keras: Any, notes: list[str], target: Any, dtype: str, options: dict[str, Any]):
        self.layers = _Layers(keras, dtype)
        super().__init__(target, dtype, "cpu", "contiguous", options)
        self.notes = notes + [n for n in self.notes if "channels moved" not in n]

    def _prepare(self, call: Call, inputs: dict[str, Any]) -> None:
        shape = channels_last(inputs["x"]).shape
        self.layers.get(call.num_groups, None, shape, "weight" in inputs, "bias" in inputs)

    def forward(self, call: Call, inputs: dict[str, Any]) -> dict[str, Any]:
        self._prepare(call, inputs)
        return super().forward(call, inputs)

    def backward(self, call: Call, inputs: dict[str, Any]) -> dict[str, Any]:
        self._prepare(call, inputs)
        return super().backward(call, inputs)

    def double_backward(self, call: Call, inputs: dict[str, Any]) -> dict[str, Any]:
        self._prepare(call, inputs)
        return super().double_backward(call, inputs)

    def apply(self, x: Any, weight: Any, bias: Any, num_groups: int, eps: float) -> Any:
        layer = self.layers.get(num_groups, None, x.shape, weight is not None, bias is not None)
        layer.epsilon = eps  # traced (or a float where a subclass makes eps static)
        try:
            y, _ = layer.stateless_call(self.layers.variables(layer, weight, bias), [], x)
        finally:  # no tracer is left on the layer after the trace
            layer.epsilon = _PLACEHOLDER_EPS
        return y


def _torch_function(keras: Any, dtype: str) -> Callable[..., Any]:
    import torch

    layers = _Layers(keras, dtype)

    def group_norm(x: Any, num_groups: int, weight: Any, bias: Any, eps: float) -> Any:
        xl = torch.movedim(x, 1, -1) if x.dim() >= 3 else x
        layer = layers.get(num_groups, eps, tuple(xl.shape), weight is not None, bias is not None)
        y, _ = layer.stateless_call(layers.variables(layer, weight, bias), [], xl)
        return torch.movedim(y, -1, 1) if y.dim() >= 3 else y

    return group_norm


class _KerasTorch(TorchAdapter):
    def __init__(self, keras: Any, notes: list[str], dtype: str, device: str, memory_format: str) -> None:
        super().__init__(_torch_function(keras, dtype), dtype, device, memory_format)
        self.notes = notes + ["differentiated by torch.autograd"]


class _KerasNumpy(NumpyAdapter):
    """The numpy backend: forward only."""

    def __init__(self, keras: Any, notes: list[str], dtype: str, memory_format: str) -> None:
        layers = _Layers(keras, dtype)

        def group_norm(x: Any, num_groups: int, weight: Any, bias: Any, eps: float) -> Any:
            conv = keras.ops.convert_to_tensor
            xl = conv(channels_last(x), dtype=dtype)
            w = None if weight is None else conv(weight, dtype=dtype)
            b = None if bias is None else conv(bias, dtype=dtype)
            layer = layers.get(num_groups, eps, tuple(xl.shape), w is not None, b is not None)
            y, _ = layer.stateless_call(layers.variables(layer, w, b), [], xl)
            return to_wire(channels_first(np.asarray(y)))

        super().__init__(group_norm, dtype, memory_format)
        self.notes = notes

    def backward(self, call: Call, inputs: dict[str, Any]) -> dict[str, Any]:
        raise Unsupported("Keras' numpy backend has no autodiff: no backward pass (use backend=jax or torch)")

    def double_backward(self, call: Call, inputs: dict[str, Any]) -> dict[str, Any]:
        raise Unsupported(
            "Keras' numpy backend has no autodiff: no second-order derivative (use backend=jax or torch)"
        )


def KerasAdapter(target: Any, dtype: str, device: str, memory_format: str, options: dict[str, Any]) -> Any:  # noqa: N802
    """The adapter of ``keras.layers.GroupNormalization`` on ``options['backend']`` (a factory with the
    adapter contract's constructor signature)."""
    backend = options["backend"]
    if backend == "tensorflow":
        raise Unsupported("backend=tensorflow is not supported yet by gn-spec (use jax, torch or numpy)")
    if backend == "jax":
        enable_x64_if(dtype)  # before Keras imports jax (the jax adapter's own notes say so)
    keras = _import_keras(backend)
    notes = _notes(backend, dtype)
    if backend == "jax":
        return _KerasJax(keras, notes, target, dtype, options)
    if backend == "torch":
        return _KerasTorch(keras, notes, dtype, device, memory_format)
    return _KerasNumpy(keras, notes, dtype, memory_format)
