"""The JAX-based built-in targets: ``flax.linen.GroupNorm``, ``flax.nnx.GroupNorm``, ``equinox.nn.GroupNorm``.

Each adapter builds the framework's own module as a careful user would (the case's ``num_groups`` and ``eps``
passed explicitly, ``dtype`` and ``param_dtype`` set to the dtype under test, the affine parameters present
exactly when the case has them) and places the case's weight and bias in the module's own parameter
structure inside a function ``f(x, weight, bias)``, so that ``jax.vjp`` of that function differentiates
through the framework's code, parameters included.

Layout: Flax takes channels last, (N, *spatial, C); Equinox takes one unbatched sample (C, *spatial), which
is ``jax.vmap``-ed over N.  Results go back as (N, C, *spatial) numpy arrays.

float64 needs JAX's 64-bit mode, which must be switched on before any array exists; the adapter does that in
its constructor, which runs only in the worker process (never in the checker's own).

Speed: each operation (forward; forward + vjp; the nested vjp) is one ``jax.jit`` program, compiled once per
(shape, affine form, num_groups) and reused when the checker repeats a shape (eps is traced, see
:attr:`JaxAdapter.static`).  Measured on 2 cores
(benchmarks/framework_targets.py): a new shape costs 0.15-0.25 s forward, 0.4-0.8 s backward, 0.9-1.7 s
second order; a repeat under 2 ms.  Running eagerly is slower (every primitive compiles per shape: 0.8-1.2 s
a new forward).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from gn_spec.checker.adapters import Call, Stage
from gn_spec.checker.frameworks import COTANGENT, channels_first, channels_last, to_wire

#: The input names shaped like x (they take the framework's layout).
_LIKE_X = ("x", "grad_output", "grad_grad_input")


def enable_x64_if(dtype: str) -> list[str]:
    """Switch JAX's 64-bit mode on for float64 (before any array exists); the note saying so, if any."""
    import jax

    if dtype != "float64":
        return []
    jax.config.update("jax_enable_x64", True)
    return ["jax_enable_x64 set (float64 needs JAX's 64-bit mode)"]


def jax_dtype(dtype: str) -> Any:
    import jax.numpy as jnp

    return {"float16": jnp.float16, "bfloat16": jnp.bfloat16, "float32": jnp.float32, "float64": jnp.float64}[
        dtype
    ]


class JaxAdapter:
    """What the three JAX targets share: inputs as jax Arrays in the framework's layout, ``jax.vjp`` for the
    first order, a nested ``jax.vjp`` for the second, each operation ``jax.jit``-compiled.

    A subclass supplies :meth:`apply`: ``apply(x, weight, bias, num_groups, eps) -> y`` building the module
    and calling it (``weight``/``bias`` None when the case has none); it is traced inside ``jax.jit`` with
    ``num_groups`` (and where :attr:`static` says so ``eps``) static, so one program is compiled per (shape,
    affine, num_groups) and reused for every later call that matches (the metamorphic properties call each
    shape more than once; ``--shapes pooled`` makes every property draw from one pool of shapes).
    """

    api = "framework"
    #: True when the framework takes channels last (Flax); False: (N, C, *spatial) as it is (Equinox).
    moves_channels = True
    #: The arguments each compiled program is specialized on.  eps is traced where the module takes an
    #: array for it (Flax: ``var + epsilon`` with a weakly typed scalar, the same float in the same format
    #: as the constant; tests/frameworks checks the outputs bit for bit), so that the six eps of the cases
    #: share one program (Keras and Equinox: the built layer's or module's eps is set to the traced scalar).
    static: tuple[str, ...] = ("num_groups",)

    def __init__(self, target: Any, dtype: str, device: str, memory_format: str, options: dict[str, Any]):
        self.notes = enable_x64_if(dtype)
        import jax
        import jax.numpy as jnp

        self.jax, self.jnp = jax, jnp
        self.target, self.dtype, self.options = target, dtype, options
        self.jdtype = jax_dtype(dtype)
        self.stage = Stage()
        if self.moves_channels:
            self.notes.append("channels moved last: (N, C, *spatial) -> (N, *spatial, C) and back")
        self.notes.append("each operation jax.jit-compiled (one program per shape, as in a training step)")
        if "eps" not in self.static:
            self.notes.append("eps a traced argument of the compiled programs (one program for every eps)")
        self._forward = jax.jit(self.apply, static_argnames=self.static)
        self._backward = jax.jit(self._backward_fn, static_argnames=self.static)
        self._double_backward = jax.jit(self._double_backward_fn, static_argnames=self.static)

    def apply(self, x: Any, weight: Any, bias: Any, num_groups: int, eps: float) -> Any:
        raise NotImplementedError

    def native(self, name: str, a: np.ndarray) -> Any:
        """The wire array as it is (N, C, *spatial), in its numpy container: each operation makes its own
        jax Arrays from it (:meth:`_jax`).  JAX arrays are immutable and ``jnp.asarray`` copies, so the
        framework cannot modify these; keeping them numpy lets the worker read the inputs back."""
        return np.asarray(a)

    def _jax(self, inputs: dict[str, Any]) -> dict[str, Any]:
        """The inputs as jax Arrays of the dtype under test, in the framework's layout."""
        out = {}
        for name, a in inputs.items():
            if self.moves_channels and name in _LIKE_X:
                a = channels_last(a)
            out[name] = self.jnp.asarray(a, dtype=self.jdtype)
            if out[name].dtype != self.jdtype:  # pragma: no cover - only if 64-bit mode were off
                raise AssertionError(f"{name}: JAX made {out[name].dtype}, not {self.dtype}")
        return out

    def _back(self, a: Any) -> Any:
        return to_wire(channels_first(np.asarray(a)) if self.moves_channels else a)

    def forward(self, call: Call, inputs: dict[str, Any]) -> dict[str, Any]:
        j = self._jax(inputs)
        self.stage.name = "forward"
        y = self._forward(
            j["x"], j.get("weight"), j.get("bias"), num_groups=call.num_groups, eps=float(call.eps)
        )
        return {"y": self._back(y)}

    def _backward_fn(self, x: Any, weight: Any, bias: Any, dy: Any, num_groups: int, eps: float) -> Any:
        y, vjp = self.jax.vjp(lambda x_, w_, b_: self.apply(x_, w_, b_, num_groups, eps), x, weight, bias)
        return y, vjp(dy.astype(y.dtype))

    def backward(self, call: Call, inputs: dict[str, Any]) -> dict[str, Any]:
        """y and the vjp with grad_output (one compiled program: an exception in it is reported as raised
        during the backward)."""
        j = self._jax(inputs)
        self.stage.name = "backward"
        y, (gx, gw, gb) = self._backward(
            j["x"], j.get("weight"), j.get("bias"), j["grad_output"],
            num_groups=call.num_groups, eps=float(call.eps),
        )
        out = {"y": self._back(y), "grad_input": self._back(gx)}
        if "weight" in j:
            out["grad_weight"] = to_wire(gw)
        if "bias" in j:
            out["grad_bias"] = to_wire(gb)
        return out

    def _double_backward_fn(
        self, x: Any, weight: Any, bias: Any, dy: Any, cot: tuple[Any, Any, Any], num_groups: int, eps: float
    ) -> Any:
        jax = self.jax

        def first_order(dy: Any, x: Any, weight: Any) -> tuple[Any, ...]:
            _, (gx, gw, gb), = self._backward_fn(x, weight, bias, dy, num_groups, eps)
            return tuple(g if c is not None else None for g, c in zip((gx, gw, gb), cot, strict=True))

        _, vjp2 = jax.vjp(first_order, dy, x, weight)
        return vjp2(cot)

    def double_backward(self, call: Call, inputs: dict[str, Any]) -> dict[str, Any]:
        """The vjp of (grad_output, x, weight) -> the first-order gradients that have a cotangent, contracted
        with those cotangents (TorchAdapter.double_backward's definition; bias is held fixed)."""
        j = self._jax(inputs)
        cot = tuple(
            j.get(COTANGENT[n]) if n in j else None for n in ("x", "weight", "bias")
        )
        self.stage.name = "double_backward"
        ggo, gx, gw = self._double_backward(
            j["x"], j.get("weight"), j.get("bias"), j["grad_output"], cot,
            num_groups=call.num_groups, eps=float(call.eps),
        )
        out = {"grad_grad_output": self._back(ggo), "grad_x": self._back(gx)}
        if "weight" in j:
            out["grad_weight"] = to_wire(gw)
        return out


def _flax_notes(dtype: str, options: dict[str, Any]) -> list[str]:
    return [
        f"dtype=param_dtype={dtype}",
        f"use_fast_variance={options['use_fast_variance']}",
        "epsilon=eps passed; use_scale/use_bias set from the case's weight/bias",
    ]


def _flax_arguments(
    adapter: JaxAdapter, weight: Any, bias: Any, num_groups: int, eps: float
) -> dict[str, Any]:
    """The keywords flax.linen and flax.nnx GroupNorm share, as the adapters set them from the case."""
    return {
        "num_groups": num_groups,
        "epsilon": eps,
        "use_scale": weight is not None,
        "use_bias": bias is not None,
        "dtype": adapter.jdtype,
        "param_dtype": adapter.jdtype,
        "use_fast_variance": adapter.options["use_fast_variance"],
    }


class FlaxLinenAdapter(JaxAdapter):
    """``flax.linen.GroupNorm`` applied with ``{'params': {'scale': weight, 'bias': bias}}``."""

    def __init__(self, target: Any, dtype: str, device: str, memory_format: str, options: dict[str, Any]):
        import flax.linen

        self.linen = flax.linen
        super().__init__(target, dtype, device, memory_format, options)
        self.notes += _flax_notes(dtype, options)

    def apply(self, x: Any, weight: Any, bias: Any, num_groups: int, eps: float) -> Any:
        module = self.linen.GroupNorm(**_flax_arguments(self, weight, bias, num_groups, eps))
        params = {}
        if weight is not None:
            params["scale"] = weight
        if bias is not None:
            params["bias"] = bias
        return module.apply({"params": params}, x)


class FlaxNnxAdapter(JaxAdapter):
    """``flax.nnx.GroupNorm`` whose ``scale`` and ``bias`` Params hold the case's weight and bias (the
    module's state split off, replaced with ``nnx.replace_by_pure_dict`` and merged back)."""

    def __init__(self, target: Any, dtype: str, device: str, memory_format: str, options: dict[str, Any]):
        from flax import nnx

        self.nnx = nnx
        super().__init__(target, dtype, device, memory_format, options)
        self.notes += _flax_notes(dtype, options)

    def apply(self, x: Any, weight: Any, bias: Any, num_groups: int, eps: float) -> Any:
        nnx = self.nnx
        module = nnx.GroupNorm(
            x.shape[-1], **_flax_arguments(self, weight, bias, num_groups, eps), rngs=nnx.Rngs(0)
        )
        graphdef, state = nnx.split(module)
        values = {}
        if weight is not None:
            values["scale"] = weight
        if bias is not None:
            values["bias"] = bias
        nnx.replace_by_pure_dict(state, values)
        return nnx.merge(graphdef, state)(x)


class EquinoxAdapter(JaxAdapter):
    """``equinox.nn.GroupNorm`` on one sample (C, *spatial), ``jax.vmap``-ed over N, with its ``weight`` and
    ``bias`` replaced by ``eqx.tree_at``.  Equinox has only ``channelwise_affine`` (both or neither): a
    case with a weight and no bias passes zeros as the bias, one with a bias and no weight passes ones as the
    weight (the module's own initial values); the one passed in is not differentiated."""

    moves_channels = False

    def __init__(self, target: Any, dtype: str, device: str, memory_format: str, options: dict[str, Any]):
        import equinox

        self.eqx = equinox
        super().__init__(target, dtype, device, memory_format, options)
        self.notes += [
            "unbatched (C, *spatial) vmapped over N",
            f"dtype={dtype}; eps passed (traced: set on the built module, whose eps is a static field)",
            "channelwise_affine=True when the case has a weight or a bias; a missing one passed as ones "
            "(weight) or zeros (bias)",
        ]

    def apply(self, x: Any, weight: Any, bias: Any, num_groups: int, eps: float) -> Any:
        eqx, jax, jnp = self.eqx, self.jax, self.jnp
        channels = x.shape[1]
        affine = weight is not None or bias is not None
        module = eqx.nn.GroupNorm(num_groups, channels, channelwise_affine=affine, dtype=self.jdtype)
        if affine:
            w = jnp.ones(channels, self.jdtype) if weight is None else weight
            b = jnp.zeros(channels, self.jdtype) if bias is None else bias
            module = eqx.tree_at(lambda t: (t.weight, t.bias), module, (w, b))
        # eps traced, as for Flax and Keras: GroupNorm.eps is a static field (a traced one passed to the
        # constructor warns, and tree_at would hash it), so it is set on the finished module, which Equinox
        # then adds to the variance (lax.rsqrt(variance + self.eps)) as it would the float; the module is
        # only called, never flattened again (tests/frameworks/test_jax_traced_eps.py: bit for bit)
        object.__setattr__(module, "eps", eps)
        return jax.vmap(module)(x)
