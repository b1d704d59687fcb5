"""The ONNX and OpenVINO built-in targets: GroupNormalization models built per case and run, forward only.

* ``onnx.GroupNormalization-18`` and ``-21`` (:class:`Onnx18Adapter`, :class:`Onnx21Adapter`): a one-node
  ONNX model (inputs x, scale, bias; attributes epsilon, num_groups and, for 21, stash_type) made with
  :mod:`onnx.helper` for the case's shape and dtype, run by the ``runtime`` target option: onnxruntime's
  CPUExecutionProvider, :class:`onnx.reference.ReferenceEvaluator`, or OpenVINO's ONNX frontend compiled for
  its CPU plugin.  ``onnx.checker`` is not run on the model: it rejects GroupNormalization-18 as deprecated,
  yet every runtime runs it.
* ``openvino.GroupNormalization-12`` (:class:`OpenvinoAdapter`): OpenVINO's own opset12 GroupNormalization
  node, compiled for the CPU plugin.

Both opsets require scale and bias: a case without them passes ones and zeros.  Opset 18 has one scale and
one bias per group: a case whose per-channel weight or bias varies within a group raises
:class:`~gn_spec.checker.adapters.Unexpressible`, one constant within each group passes its per-group values.
A model is built for each (shape, num_groups, eps, scale length) and its session kept (least recently used
first out) for the calls that repeat it (repeated calls, metamorphic pairs).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import numpy as np

from gn_spec.checker.adapters import Call, Stage, Unexpressible, Unsupported
from gn_spec.checker.dtypes import CONTAINER
from gn_spec.checker.frameworks import require_cpu_contiguous, to_wire

#: How many built models (sessions) an adapter keeps.
CACHE_SIZE = 64

#: The ONNX TensorProto element type of each dtype (by name, so that onnx is imported only when used).
_ONNX_TYPES = {"float16": "FLOAT16", "float32": "FLOAT", "float64": "DOUBLE"}

#: OpenVINO's element type of each dtype.
_OV_TYPES = {"float16": "f16", "float32": "f32", "float64": "f64"}

_ONES_ZEROS = "scale and bias are required inputs: a case without weight or bias passes ones or zeros"

Runner = Callable[[dict[str, np.ndarray]], Any]


class _Cache:
    """Runners by key, at most CACHE_SIZE, the least recently used dropped first; counts what it built."""

    def __init__(self) -> None:
        self.items: OrderedDict[tuple[Any, ...], Runner] = OrderedDict()
        self.built = 0
        self.hits = 0

    def get(self, key: tuple[Any, ...], build: Callable[[], Runner]) -> Runner:
        if key in self.items:
            self.items.move_to_end(key)
            self.hits += 1
            return self.items[key]
        runner = build()  # not cached when it raises: the next call builds (and raises) again
        self.built += 1
        self.items[key] = runner
        if len(self.items) > CACHE_SIZE:
            self.items.popitem(last=False)
        return runner


def _openvino_precision(core: Any, dtype: str) -> tuple[dict[Any, Any], str]:
    """The compile configuration that asks the CPU plugin to infer in ``dtype``, and a note saying what the
    plugin reports it actually uses (a CPU without native float16 arithmetic runs float16 models in f32)."""
    import openvino as ov
    import openvino.opset12 as ops
    import openvino.properties.hint as hints

    wanted = getattr(ov.Type, _OV_TYPES[dtype])
    config = {hints.inference_precision: wanted}
    probe = ops.parameter([1], wanted, name="x")
    compiled = core.compile_model(ov.Model([ops.relu(probe)], [probe], "probe"), "CPU", config)
    actual = compiled.get_property(hints.inference_precision)
    version = ov.__version__.split("-")[0]
    note = f"OpenVINO {version} CPU plugin: inference precision hint {wanted.get_type_name()} set"
    if str(actual) != str(wanted):
        note += f"; the plugin reports {actual.get_type_name()} as the precision it infers in"
    return config, note


class _Forward:
    """What the three adapters share: native inputs, the forward call with its stages, Unsupported
    gradients.  Subclasses provide ``_scale_bias`` and ``_build``."""

    api = "framework"
    #: what the target is called in messages
    label = ""

    def __init__(self, target: Any, dtype: str, device: str, memory_format: str) -> None:
        require_cpu_contiguous(target, device, memory_format)
        self.target, self.dtype = target, dtype
        self.container = CONTAINER[dtype]
        self.stage = Stage()
        self.cache = _Cache()
        self.notes: list[str] = []

    def native(self, name: str, a: np.ndarray) -> np.ndarray:
        return np.array(a, dtype=self.container)

    def _scale_bias(self, call: Call, inputs: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def _build(self, shape: tuple[int, ...], num_groups: int, eps: float, k: int) -> Runner:
        raise NotImplementedError

    def forward(self, call: Call, inputs: dict[str, Any]) -> dict[str, Any]:
        x = inputs["x"]
        scale, bias = self._scale_bias(call, inputs)
        self.stage.name = "forward"  # building the model is the framework's work: its errors are its own
        key = (tuple(x.shape), call.num_groups, call.eps, scale.shape[0])
        run = self.cache.get(key, lambda: self._build(*key))
        y = run({"x": x, "scale": scale, "bias": bias})
        return {"y": to_wire(y)}

    def backward(self, call: Call, inputs: dict[str, Any]) -> dict[str, Any]:
        raise Unsupported(f"{self.target.name} is forward only ({self.target.no_gradients})")

    def double_backward(self, call: Call, inputs: dict[str, Any]) -> dict[str, Any]:
        raise Unsupported(f"{self.target.name} is forward only ({self.target.no_gradients})")

    def _ones_zeros(self, inputs: dict[str, Any], length: int) -> tuple[np.ndarray, np.ndarray]:
        weight = inputs.get("weight")
        bias = inputs.get("bias")
        return (
            np.ones(length, self.container) if weight is None else weight,
            np.zeros(length, self.container) if bias is None else bias,
        )


class _OnnxAdapter(_Forward):
    """An ONNX GroupNormalization model of ``opset``, run by the ``runtime`` option."""

    opset = 0

    def __init__(
        self, target: Any, dtype: str, device: str, memory_format: str, options: dict[str, Any]
    ) -> None:
        super().__init__(target, dtype, device, memory_format)
        import onnx

        self.onnx = onnx
        self.runtime = options["runtime"]
        self.stash_type = options.get("stash_type")
        self.elem_type = getattr(onnx.TensorProto, _ONNX_TYPES[dtype])
        self.ir_version = onnx.helper.find_min_ir_version_for([onnx.helper.make_opsetid("", self.opset)])
        attrs = "epsilon = eps rounded to float32, num_groups = G"
        if self.stash_type is not None:
            attrs += f", stash_type = {self.stash_type}"
        self.notes.append(
            f"a one-node ONNX model (opset {self.opset}, IR version {self.ir_version}) per shape: {attrs}"
        )
        self.notes.append(_ONES_ZEROS)
        if self.runtime == "onnxruntime":
            import onnxruntime as ort

            self.ort = ort
            self.notes.append(f"run by onnxruntime {ort.__version__} InferenceSession, CPUExecutionProvider")
        elif self.runtime == "reference":
            from onnx.reference import ReferenceEvaluator

            self.evaluator = ReferenceEvaluator
            self.notes.append(f"run by onnx {onnx.__version__} onnx.reference.ReferenceEvaluator")
        elif self.runtime == "openvino":
            import openvino as ov

            self.ov_core = ov.Core()
            self.ov_config, note = _openvino_precision(self.ov_core, dtype)
            self.notes.append("run by OpenVINO: its ONNX frontend (Core.read_model), CPU plugin")
            self.notes.append(note)
        else:
            raise Unsupported(f"--target-option runtime={self.runtime}: no such runtime")
        self._note_checker()

    def _note_checker(self) -> None:
        """Say in the notes when onnx.checker refuses the model (it is run all the same)."""
        model = self.model((1, 1), 1, 1e-5, 1)
        try:
            self.onnx.checker.check_model(model, full_check=True)
        except self.onnx.checker.ValidationError as exc:
            first = str(exc).strip().splitlines()[0]
            self.notes.append(f"onnx.checker refuses the model ({first}); it is run anyway")

    def model(self, shape: tuple[int, ...], num_groups: int, eps: float, k: int) -> Any:
        """The ModelProto of one GroupNormalization node for x of ``shape`` and scale/bias of length k."""
        oh = self.onnx.helper
        attrs: dict[str, Any] = {"num_groups": num_groups, "epsilon": float(eps)}
        if self.stash_type is not None:
            attrs["stash_type"] = self.stash_type
        node = oh.make_node("GroupNormalization", ["x", "scale", "bias"], ["y"], **attrs)
        inputs = [
            oh.make_tensor_value_info("x", self.elem_type, list(shape)),
            oh.make_tensor_value_info("scale", self.elem_type, [k]),
            oh.make_tensor_value_info("bias", self.elem_type, [k]),
        ]
        outputs = [oh.make_tensor_value_info("y", self.elem_type, list(shape))]
        graph = oh.make_graph([node], "group_norm", inputs, outputs)
        return oh.make_model(
            graph, opset_imports=[oh.make_opsetid("", self.opset)], ir_version=self.ir_version
        )

    def _build(self, shape: tuple[int, ...], num_groups: int, eps: float, k: int) -> Runner:
        model = self.model(shape, num_groups, eps, k)
        if self.runtime == "onnxruntime":
            options = self.ort.SessionOptions()
            options.log_severity_level = 3  # errors only: a refused model raises, its warnings are noise
            session = self.ort.InferenceSession(
                model.SerializeToString(), options, providers=["CPUExecutionProvider"]
            )
            return lambda feeds: session.run(None, feeds)[0]
        if self.runtime == "reference":
            evaluator: Any = self.evaluator(model)
            return lambda feeds: evaluator.run(None, feeds)[0]
        compiled = self.ov_core.compile_model(
            self.ov_core.read_model(model.SerializeToString()), "CPU", self.ov_config
        )
        return _openvino_runner(compiled)


def _openvino_runner(compiled: Any) -> Runner:
    """Run ``compiled`` on feeds by name; its output copied (OpenVINO reuses the output buffer)."""
    names = [p.get_any_name() for p in compiled.inputs]

    def run(feeds: dict[str, np.ndarray]) -> np.ndarray:
        result = compiled([feeds[n] for n in names])
        return np.array(result[compiled.output(0)], copy=True)

    return run


class Onnx21Adapter(_OnnxAdapter):
    """GroupNormalization-21: scale and bias per channel, statistics in the stash_type."""

    opset = 21

    def _scale_bias(self, call: Call, inputs: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        return self._ones_zeros(inputs, inputs["x"].shape[1])


class Onnx18Adapter(_OnnxAdapter):
    """GroupNormalization-18 (deprecated): one scale and one bias per group, statistics in the input type."""

    opset = 18

    def __init__(
        self, target: Any, dtype: str, device: str, memory_format: str, options: dict[str, Any]
    ) -> None:
        super().__init__(target, dtype, device, memory_format, options)
        self.notes.append(
            "opset 18 takes one scale and bias per group: a weight or bias constant within each group passes "
            "its per-group values; one that varies within a group cannot be expressed"
        )

    def _scale_bias(self, call: Call, inputs: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        c, g = inputs["x"].shape[1], call.num_groups
        if c % g:  # invalid grouping (the call must be refused): no group has its channels, pass neutral ones
            return np.ones(g, self.container), np.zeros(g, self.container)
        weight = _per_group("weight", inputs.get("weight"), g)
        bias = _per_group("bias", inputs.get("bias"), g)
        return self._ones_zeros({"weight": weight, "bias": bias}, g)


def _per_group(name: str, a: np.ndarray | None, groups: int) -> np.ndarray | None:
    """The one value per group of a per-channel ``a`` that is constant within each group; raises
    Unexpressible naming the first group where it varies."""
    if a is None:
        return None
    per = a.shape[0] // groups
    if per == 0:
        return np.ones(groups, a.dtype) if name == "weight" else np.zeros(groups, a.dtype)
    blocks = a.reshape(groups, per)
    same = (blocks == blocks[:, :1]) | (np.isnan(blocks) & np.isnan(blocks[:, :1]))
    if not same.all():
        j = int(np.argwhere(~same.all(axis=1))[0, 0])
        values = ", ".join(f"{v:g}" for v in blocks[j][:4]) + (", ..." if per > 4 else "")
        raise Unexpressible(
            f"GroupNormalization-18 has one {name} per group; this {name} varies within group {j} "
            f"(channels {j * per}..{(j + 1) * per - 1}: {values})"
        )
    return np.ascontiguousarray(blocks[:, 0])


class OpenvinoAdapter(_Forward):
    """OpenVINO's opset12 GroupNormalization node (per-channel scale and bias, eps a double attribute),
    compiled for the CPU plugin with the inference precision hint set to the dtype under test."""

    def __init__(
        self, target: Any, dtype: str, device: str, memory_format: str, options: dict[str, Any]
    ) -> None:
        super().__init__(target, dtype, device, memory_format)
        import openvino as ov
        import openvino.opset12 as ops

        self.ov, self.ops = ov, ops
        self.core = ov.Core()
        self.ov_type = getattr(ov.Type, _OV_TYPES[dtype])
        self.config, note = _openvino_precision(self.core, dtype)
        self.notes.append("OpenVINO opset12.group_normalization, a model per shape, CPU plugin")
        self.notes.append(note)
        self.notes.append(_ONES_ZEROS)

    def _scale_bias(self, call: Call, inputs: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        return self._ones_zeros(inputs, inputs["x"].shape[1])

    def _build(self, shape: tuple[int, ...], num_groups: int, eps: float, k: int) -> Runner:
        ops = self.ops
        x = ops.parameter(list(shape), self.ov_type, name="x")
        scale = ops.parameter([k], self.ov_type, name="scale")
        bias = ops.parameter([k], self.ov_type, name="bias")
        y = ops.group_normalization(x, scale, bias, num_groups, eps)
        model = self.ov.Model([y], [x, scale, bias], "group_norm")
        return _openvino_runner(self.core.compile_model(model, "CPU", self.config))
