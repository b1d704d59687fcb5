"""The built-in targets: framework GroupNorm layers that ``gn-spec check NAME`` wraps itself.

:data:`BUILTINS` is one record per target (its name, what it calls, what it supports, its options, and the
adapter class that drives it in the worker).  This module is pure data and never imports a framework: the
parent process validates a run against it, and ``gn-spec targets`` lists it with the versions that
:mod:`importlib.metadata` reports.  The adapters live in :mod:`gn_spec.checker.frameworks` and run only in the
worker process.
"""

from __future__ import annotations

import importlib.metadata
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from gn_spec.checker.options import UsageError
from gn_spec.formats import NAMES as FORMAT_NAMES

#: What a target can be judged on: its forward pass, its first and its second derivatives.
ORDERS = ("forward", "backward", "second order")

_TRUE = ("true", "1", "yes", "on")
_FALSE = ("false", "0", "no", "off")


@dataclass(frozen=True)
class TargetOption:
    """A ``--target-option KEY=VALUE`` of one target: a constructor argument (or a choice of the adapter's,
    such as the Keras backend), typed.  ``default`` None means "resolved when the run starts" (``auto``)."""

    name: str
    type: type
    default: Any
    help: str
    choices: tuple[str, ...] | None = None

    def parse(self, text: str) -> Any:
        """The typed value of ``text``; raises :class:`UsageError` naming the value and what is accepted."""
        if self.choices is not None:
            if text not in self.choices:
                raise UsageError(
                    f"--target-option {self.name}={text}: expected one of {', '.join(self.choices)}"
                )
            return text
        if self.type is bool:
            if text.lower() in _TRUE:
                return True
            if text.lower() in _FALSE:
                return False
            raise UsageError(f"--target-option {self.name}={text}: expected true or false")
        try:
            return self.type(text)
        except ValueError:
            expected = "an integer" if self.type is int else "a number"
            raise UsageError(f"--target-option {self.name}={text}: expected {expected}") from None

    def shown(self) -> str:
        """``name=default`` (or ``name=a|b``) for listings."""
        if self.choices is not None:
            return f"{self.name}={'|'.join(self.choices)}"
        default = "auto" if self.default is None else str(self.default).lower()
        return f"{self.name}={default}"


@dataclass(frozen=True)
class BuiltinTarget:
    """One built-in target.

    ``calls``: what the adapter calls, in words (shown in ``gn-spec targets`` and the report's header);
    ``extra``: the gn-spec extra that installs it; ``requires``: the distributions it needs (the first is the
    framework whose version is shown); ``adapter``: ``module:Class`` of its adapter (relative to
    :mod:`gn_spec.checker.frameworks`); ``orders``: what of :data:`ORDERS` it supports; ``no_gradients``: why
    it lacks the orders of :data:`ORDERS` it lacks; ``layout``: the layout the framework takes; ``api``:
    ``"torch"`` when it returns torch tensors and is differentiated by torch.autograd, else ``"framework"``
    (the adapter returns numpy arrays); ``eps_format``: the format the framework stores eps in where that is
    not the dtype under test (ONNX's epsilon attribute is a 32-bit float), so that the cases' eps is rounded
    to what the target can hold; ``needs_compiler``: it compiles C++ on the CPU; ``option_requires``: the
    distributions an option's value needs besides ``requires`` (``{"backend": {"torch": ("torch",)}}``);
    ``option_dtypes``: where an option's value supports fewer dtypes than ``dtypes``
    (``{"runtime": {"openvino": ("float32",)}}``); ``option_orders``: where an option's value supports
    fewer orders, those orders and why (``{"backend": {"numpy": (("forward",), "no autodiff")}}``);
    ``compile_grace``: seconds added to the per-call timeout
    of the first call of each kind (operation, rank and which sizes are 0 or 1, which of
    weight/bias/cotangents are given), for a
    target that compiles a graph per kind (torch.compile): compiling is not hanging; ``compiles_per_shape``:
    why every new shape costs the target a compilation (then ``--shapes auto`` pools the run's shapes,
    :func:`gn_spec.strategies.shape_pool`), empty when it does not; ``option_compiles``: the same, where it
    depends on an option's value (``{"backend": {"jax": "..."}}``); ``call_timeout``: the per-call timeout
    of a target that is slow by design (an interpreter device), used where ``--timeout`` is not given.
    """

    name: str
    calls: str
    extra: str
    requires: tuple[str, ...]
    adapter: str
    orders: tuple[str, ...]
    dtypes: tuple[str, ...]
    layout: str
    api: str = "framework"
    options: tuple[TargetOption, ...] = ()
    devices: tuple[str, ...] = ("cpu",)
    no_gradients: str = ""
    dtypes_note: str = ""
    eps_format: str | None = None
    needs_compiler: bool = False
    compile_grace: float = 0.0
    option_requires: Mapping[str, Mapping[str, tuple[str, ...]]] = field(default_factory=dict)
    option_dtypes: Mapping[str, Mapping[str, tuple[str, ...]]] = field(default_factory=dict)
    option_orders: Mapping[str, Mapping[str, tuple[tuple[str, ...], str]]] = field(default_factory=dict)
    compiles_per_shape: str = ""
    call_timeout: float | None = None
    option_compiles: Mapping[str, Mapping[str, str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        assert set(self.orders) <= set(ORDERS) and "forward" in self.orders, self.orders
        assert set(self.dtypes) <= set(FORMAT_NAMES), self.dtypes
        assert (self.orders == ORDERS) == (not self.no_gradients), (self.name, self.no_gradients)

    @property
    def framework(self) -> str:
        return self.requires[0]

    def orders_with(self, resolved: Sequence[str]) -> tuple[tuple[str, ...], str]:
        """What the target supports with its options ``resolved`` (KEY=VALUE texts), and why no more."""
        for text in resolved:
            key, _, value = text.partition("=")
            narrowed = self.option_orders.get(key, {}).get(value)
            if narrowed is not None:
                return narrowed
        return self.orders, self.no_gradients

    def compiles_with(self, resolved: Sequence[str]) -> str:
        """Why every new shape costs the target with its options ``resolved`` a compilation ("" if not)."""
        for text in resolved:
            key, _, value = text.partition("=")
            why = self.option_compiles.get(key, {}).get(value)
            if why is not None:
                return why
        return self.compiles_per_shape

    def option(self, name: str) -> TargetOption:
        for o in self.options:
            if o.name == name:
                return o
        valid = ", ".join(o.shown() for o in self.options) or "none"
        raise UsageError(f"--target-option {name}: {self.name} has no such option; its options: {valid}")


_ALL = ("float16", "bfloat16", "float32", "float64")
_KERAS_BACKENDS = ("jax", "torch", "tensorflow", "numpy")
_ONNX_RUNTIMES = ("onnxruntime", "reference", "openvino")
_FAST_VARIANCE = "one-pass E[x^2] - E[x]^2 variance (flax's default)"
_ONNX_GRADIENTS = "an ONNX model is run, not differentiated, by its runtimes"
_JIT = "each operation is a jax.jit program, compiled for every new shape"

def _torch_target(
    name: str, calls: str, adapter: str, needs_compiler: bool = False, compile_grace: float = 0.0
) -> BuiltinTarget:
    """A torch-based target: every dtype and order, CPU or CUDA, torch's layouts, driven by TorchAdapter."""
    return BuiltinTarget(
        name,
        calls,
        extra="torch",
        requires=("torch",),
        adapter=adapter,
        orders=ORDERS,
        dtypes=_ALL,
        layout="(N, C, *spatial); --memory-format channels_last for 4-D and 5-D",
        api="torch",
        devices=("cpu", "cuda"),
        needs_compiler=needs_compiler,
        compile_grace=compile_grace,
    )


def _onnx_target(
    name: str, calls: str, adapter: str, more_options: tuple[TargetOption, ...] = ()
) -> BuiltinTarget:
    """An ONNX operator's target: forward only, eps held as a float32 attribute, run by a chosen runtime."""
    runtime = TargetOption(
        "runtime",
        str,
        "onnxruntime",
        "what runs the model: onnxruntime (CPUExecutionProvider), reference (onnx.reference), "
        "openvino (its ONNX frontend on the CPU plugin)",
        choices=_ONNX_RUNTIMES,
    )
    return BuiltinTarget(
        name,
        calls,
        extra="onnx",
        requires=("onnx",),
        adapter=adapter,
        orders=("forward",),
        dtypes=("float16", "float32", "float64"),
        layout="(N, C, *spatial)",
        options=(runtime, *more_options),
        no_gradients=_ONNX_GRADIENTS,
        eps_format="float32",
        option_requires={"runtime": {"onnxruntime": ("onnxruntime",), "openvino": ("openvino",)}},
        # the OpenVINO CPU plugin infers in f32, bf16 or f16; it documents running f64 models in f32
        option_dtypes={"runtime": {"openvino": ("float16", "float32")}},
    )


#: Every built-in target, in the order ``gn-spec targets`` lists them.
BUILTINS: tuple[BuiltinTarget, ...] = (
    _torch_target(
        "torch",
        "torch.nn.functional.group_norm(x, G, weight, bias, eps)",
        adapter="",  # the worker's own TorchAdapter (TARGET torch predates the built-in targets)
    ),
    _torch_target(
        "torch.nn.GroupNorm",
        "torch.nn.GroupNorm(G, C, eps, affine) with weight and bias as its parameters "
        "(torch.func.functional_call)",
        adapter="torch_targets:nn_group_norm",
    ),
    _torch_target(
        "torch.compile",
        "torch.compile(torch.nn.functional.group_norm, dynamic=True), inductor backend",
        adapter="torch_targets:compiled_group_norm",
        needs_compiler=True,
        compile_grace=300.0,
    ),
    BuiltinTarget(
        "flax.linen.GroupNorm",
        "flax.linen.GroupNorm(num_groups=G, epsilon=eps, use_scale, use_bias, dtype, param_dtype), "
        "gradients by jax.vjp",
        extra="jax",
        requires=("flax", "jax"),
        adapter="jax_targets:FlaxLinenAdapter",
        orders=ORDERS,
        dtypes=_ALL,
        layout="channels last (N, *spatial, C)",
        options=(
            TargetOption("use_fast_variance", bool, True, _FAST_VARIANCE),
        ),
        compiles_per_shape=_JIT,
    ),
    BuiltinTarget(
        "flax.nnx.GroupNorm",
        "flax.nnx.GroupNorm(C, num_groups=G, epsilon=eps, use_scale, use_bias, dtype, param_dtype), "
        "gradients by jax.vjp",
        extra="jax",
        requires=("flax", "jax"),
        adapter="jax_targets:FlaxNnxAdapter",
        orders=ORDERS,
        dtypes=_ALL,
        layout="channels last (N, *spatial, C)",
        options=(
            TargetOption("use_fast_variance", bool, True, _FAST_VARIANCE),
        ),
        compiles_per_shape=_JIT,
    ),
    BuiltinTarget(
        "equinox.nn.GroupNorm",
        "equinox.nn.GroupNorm(G, C, eps, channelwise_affine), vmapped over N, gradients by jax.vjp",
        extra="jax",
        requires=("equinox", "jax"),
        adapter="jax_targets:EquinoxAdapter",
        orders=ORDERS,
        dtypes=_ALL,
        layout="unbatched (C, *spatial), vmapped over N",
        compiles_per_shape=_JIT,
    ),
    BuiltinTarget(
        "keras.layers.GroupNormalization",
        "keras.layers.GroupNormalization(groups=G, axis=-1, epsilon=eps, center, scale, dtype), gradients by "
        "the backend's autodiff",
        extra="keras",
        requires=("keras",),
        adapter="keras_target:KerasAdapter",
        orders=ORDERS,
        dtypes=_ALL,
        layout="channels last (N, *spatial, C)",
        options=(
            TargetOption(
                "backend",
                str,
                None,
                "the Keras backend (default: the first installed of jax, torch, tensorflow)",
                choices=_KERAS_BACKENDS,
            ),
        ),
        option_requires={
            "backend": {"jax": ("jax",), "torch": ("torch",), "tensorflow": ("tensorflow",), "numpy": ()}
        },
        option_orders={
            "backend": {"numpy": (("forward",), "Keras' numpy backend has no automatic differentiation")}
        },
        option_compiles={"backend": {"jax": _JIT}},
    ),
    _onnx_target(
        "onnx.GroupNormalization-18",
        "an ONNX model of GroupNormalization opset 18 (per-group scale and bias)",
        adapter="onnx_targets:Onnx18Adapter",
    ),
    _onnx_target(
        "onnx.GroupNormalization-21",
        "an ONNX model of GroupNormalization opset 21 (per-channel scale and bias)",
        adapter="onnx_targets:Onnx21Adapter",
        more_options=(
            TargetOption("stash_type", int, 1, "the precision of the statistics: 1 float32, 11 float64"),
        ),
    ),
    BuiltinTarget(
        "openvino.GroupNormalization-12",
        "OpenVINO's opset12 GroupNormalization on its CPU plugin",
        extra="openvino",
        requires=("openvino",),
        adapter="onnx_targets:OpenvinoAdapter",
        orders=("forward",),
        dtypes=("float16", "float32"),  # its CPU plugin has no f64 inference precision
        layout="(N, C, *spatial)",
        no_gradients="OpenVINO runs models; it does not differentiate them",
        eps_format=None,
    ),
    BuiltinTarget(
        "tinygrad.nn.GroupNorm",
        "tinygrad.nn.GroupNorm(G, C, eps, affine) with its weight and bias set to the case's, on tinygrad's "
        "PYTHON (interpreter) device, gradients by Tensor.gradient",
        extra="tinygrad",
        requires=("tinygrad",),
        adapter="tinygrad_target:TinygradAdapter",
        orders=ORDERS,
        dtypes=_ALL,
        layout="(N, C, *spatial)",
        # the interpreter device takes ~0.9 ms an element for the second order: ~220 s on the default
        # profile's largest groups (2.5e5 elements), measured on 2 cores (tinygrad_target.py)
        call_timeout=600.0,
    ),
    BuiltinTarget(
        "paddle.nn.functional.group_norm",
        "paddle.nn.functional.group_norm(x, num_groups=G, epsilon=eps, weight, bias, data_format), eager "
        "mode, gradients by paddle.grad",
        extra="paddle",
        requires=("paddlepaddle",),
        adapter="paddle_target:PaddleAdapter",
        orders=("forward", "backward"),
        no_gradients="paddle registers no grad op for group_norm_grad: paddle.grad(create_graph=True) raises",
        dtypes=("float32", "float64"),
        dtypes_note="paddle's CPU group_norm kernel is registered for float32 and float64 only",
        layout="(N, C, *spatial) with data_format=NCHW; (N, *spatial, C) with NHWC",
        options=(
            TargetOption(
                "data_format",
                str,
                "NCHW",
                "paddle's data_format: NCHW (channels second) or NHWC (the adapter moves the channels last)",
                choices=("NCHW", "NHWC"),
            ),
        ),
    ),
    BuiltinTarget(
        "mlx.nn.GroupNorm",
        "mlx.nn.GroupNorm(G, C, eps, affine, pytorch_compatible) with weight and bias as its parameters, "
        "gradients by mx.vjp (CPU backend)",
        extra="mlx",
        requires=("mlx",),
        adapter="mlx_target:MlxAdapter",
        orders=ORDERS,
        dtypes=_ALL,
        layout="channels last (N, *spatial, C)",
        options=(
            TargetOption(
                "pytorch_compatible",
                bool,
                False,
                "group channels in contiguous blocks as torch does (false, the default: channel c in "
                "group c mod G)",
            ),
        ),
    ),
)

BY_NAME: Mapping[str, BuiltinTarget] = {t.name: t for t in BUILTINS}


def installed_version(distribution: str) -> str | None:
    """The installed version of ``distribution``, without importing it (None when not installed)."""
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def missing(target: BuiltinTarget) -> list[str]:
    """The distributions ``target`` needs that are not installed."""
    return [d for d in target.requires if installed_version(d) is None]


def install_hint(target: BuiltinTarget) -> str:
    return f"pip install 'gn-spec[{target.extra}]'"


def resolve_options(target: BuiltinTarget, given: Sequence[str]) -> tuple[str, ...]:
    """``given`` (``KEY=VALUE`` texts) checked against ``target``'s options, with every option spelled out
    (defaults included, ``auto`` defaults resolved), in the target's order: what the run uses and what its
    replay command repeats.  Raises :class:`UsageError` for an unknown key or a bad value."""
    values: dict[str, Any] = {}
    for text in given:
        key, sep, value = text.partition("=")
        if not sep or not key:
            raise UsageError(f"--target-option {text!r}: expected KEY=VALUE")
        values[key] = target.option(key).parse(value)
    spelled = []
    for o in target.options:
        value = values.get(o.name, o.default)
        if value is None:
            value = _auto(target, o)
        spelled.append(f"{o.name}={str(value).lower() if isinstance(value, bool) else value}")
    return tuple(spelled)


def typed_options(target: BuiltinTarget, resolved: Sequence[str]) -> dict[str, Any]:
    """The adapter's keyword arguments from :func:`resolve_options`' texts."""
    out = {}
    for text in resolved:
        key, _, value = text.partition("=")
        out[key] = target.option(key).parse(value)
    return out


def _auto(target: BuiltinTarget, option: TargetOption) -> str:
    if target.name == "keras.layers.GroupNormalization" and option.name == "backend":
        for backend, distribution in (("jax", "jax"), ("torch", "torch"), ("tensorflow", "tensorflow")):
            if installed_version(distribution) is not None:
                return backend
        raise UsageError(
            "keras.layers.GroupNormalization needs a Keras backend: install jax, torch or tensorflow, or "
            "pass --target-option backend=numpy"
        )
    raise AssertionError(f"{target.name}: option {option.name} has no default")


def check_runnable(
    target: BuiltinTarget, dtype: str, device: str, memory_format: str, resolved: Sequence[str] = ()
) -> None:
    """Raise :class:`UsageError` when ``target`` cannot run as asked (``resolved``: its options, from
    :func:`resolve_options`): not installed, a dtype or device it does not support, a memory format it has
    no layout for, no C++ compiler for torch.compile on the CPU."""
    if dtype not in target.dtypes:
        why = f" ({target.dtypes_note})" if target.dtypes_note else ""
        raise UsageError(
            f"TARGET {target.name} does not support --dtype {dtype}; its dtypes: {', '.join(target.dtypes)}"
            + why
        )
    for text in resolved:
        key, _, value = text.partition("=")
        wanted = target.option_requires.get(key, {}).get(value, ())
        needed = [d for d in wanted if installed_version(d) is None]
        if needed:
            raise UsageError(
                f"TARGET {target.name} with --target-option {text} needs {', '.join(needed)}, which is not "
                f"installed: pip install {' '.join(needed)}"
            )
        dtypes = target.option_dtypes.get(key, {}).get(value)
        if dtypes is not None and dtype not in dtypes:
            raise UsageError(
                f"TARGET {target.name} with --target-option {text} does not support --dtype {dtype}; "
                f"its dtypes: {', '.join(dtypes)}"
            )
    if device not in target.devices:
        raise UsageError(
            f"TARGET {target.name} runs on {', '.join(target.devices)} here, not --device {device}"
        )
    if memory_format != "contiguous" and target.api != "torch":
        raise UsageError(
            f"--memory-format {memory_format} is a torch layout; TARGET {target.name} takes {target.layout}"
        )
    absent = missing(target)
    if absent:
        verb = "is" if len(absent) == 1 else "are"
        raise UsageError(
            f"TARGET {target.name} needs {', '.join(absent)}, which {verb} not installed: "
            f"{install_hint(target)}"
        )
    if target.needs_compiler and device == "cpu" and compiler() is None:
        raise UsageError(
            f"TARGET {target.name} on the CPU compiles C++ and needs a C++ compiler: none of "
            "$CXX, c++, g++, clang++ is on PATH (apt install g++)"
        )


def compiler() -> str | None:
    """The C++ compiler torch's inductor would use on the CPU, or None."""
    import os

    for name in (os.environ.get("CXX"), "c++", "g++", "clang++"):
        if name and shutil.which(name):
            return name
    return None


def _lacking(target: BuiltinTarget) -> str:
    """`` (no second order: why)`` for a target that has some derivatives but not all (a forward-only
    target's reason is its own line of the report)."""
    if target.orders in (ORDERS, ("forward",)):
        return ""
    lacking = ", ".join(o for o in ORDERS if o not in target.orders)
    return f" (no {lacking}: {target.no_gradients})"


def listing() -> list[dict[str, str]]:
    """One row per built-in target for ``gn-spec targets`` (versions from importlib.metadata only)."""
    rows = []
    for t in BUILTINS:
        absent = missing(t)
        version = installed_version(t.framework)
        installed = f"{t.framework} {version}" if not absent else f"not installed: {install_hint(t)}"
        rows.append(
            {
                "name": t.name,
                "framework": installed,
                "supports": ", ".join(t.orders) + _lacking(t) + "".join(
                    f" ({key}={value}: {', '.join(orders)} only)"
                    for key, by_value in t.option_orders.items()
                    for value, (orders, _) in by_value.items()
                ),
                "dtypes": ", ".join(t.dtypes) + (f" ({t.dtypes_note})" if t.dtypes_note else ""),
                "layout": t.layout,
                "options": " ".join("--target-option " + o.shown() for o in t.options) or "-",
                "timeout": f"{t.call_timeout:g} s a call (slow by design)" if t.call_timeout else "-",
                "calls": t.calls,
            }
        )
    return rows
