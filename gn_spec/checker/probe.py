"""The target as a property reaches it: :class:`Probe` sends calls through the worker process
(:class:`~gn_spec.checker.worker_process.WorkerProcess`), reads the results back as float64, and on a failing
case asks ``gn_spec.variants`` which known mistakes explain the observed values.

Nothing of the target runs here.  The property framework (the registry, the decorator, the Outcome a
property returns) is :mod:`gn_spec.checker.property_framework`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import assume

from gn_spec.checker.dtypes import CONTAINER
from gn_spec.checker.target import CheckConfig
from gn_spec.checker.worker_process import CallRequest, CallResult, WorkerProcess
from gn_spec.strategies import Case, Inputs, materialize


class Probe:
    """The target as the properties see it: calls go through the worker; nothing of the target runs here."""

    def __init__(self, config: CheckConfig, worker: WorkerProcess) -> None:
        self.config = config
        self.worker = worker
        self.calls = 0

    @property
    def dtype(self) -> str:
        return self.config.dtype

    @property
    def api(self) -> str:
        return self.config.api

    def inputs(self, case: Case) -> Inputs:
        """The case's arrays for the dtype under test.

        A case whose values overflow the dtype (materialize can round a large offset to infinity in float16)
        is not a valid finite input; it is rejected here (``assume``) rather than judged.
        """
        inputs = materialize(case, self.config.dtype)
        assume(bool(np.all(np.isfinite(inputs.x))))
        return inputs

    def run(self, requests: list[CallRequest]) -> list[CallResult]:
        self.calls += len(requests)
        return self.worker.run(requests)

    def request(
        self,
        op: str,
        x: np.ndarray,
        num_groups: int,
        eps: float,
        *,
        weight: np.ndarray | None = None,
        bias: np.ndarray | None = None,
        return_inputs: bool = False,
        **more: np.ndarray | None,
    ) -> CallRequest:
        """A call of ``op`` on float64 arrays (exact in the dtype), converted to the dtype's container."""
        container = CONTAINER[self.config.dtype]
        arrays = {"x": x, "weight": weight, "bias": bias, **more}
        wire = {k: np.asarray(v).astype(container) for k, v in arrays.items() if v is not None}
        return CallRequest(op, num_groups, eps, wire, return_inputs)

    def forward(
        self,
        x: np.ndarray,
        num_groups: int,
        eps: float,
        weight: np.ndarray | None = None,
        bias: np.ndarray | None = None,
        return_inputs: bool = False,
    ) -> CallResult:
        return self.run(
            [
                self.request(
                    "forward", x, num_groups, eps, weight=weight, bias=bias, return_inputs=return_inputs
                )
            ]
        )[0]

    def diagnose_forward(self, observed: np.ndarray, inputs: Inputs, case: Case) -> list[str]:
        """Known mistakes (``gn_spec.variants``) that explain a failing forward output, best match first."""
        from gn_spec import variants

        found = variants.diagnose(
            observed,
            inputs.x,
            case.num_groups,
            inputs.weight,
            inputs.bias,
            case.eps,
            dtype=self.config.dtype,
        )
        return [d.message for d in found]

    def diagnose_backward(self, observed: list[np.ndarray | None], inputs: Inputs, case: Case) -> list[str]:
        """Known backward mistakes that explain failing (grad_input, grad_weight, grad_bias), best first."""
        from gn_spec import variants

        found = variants.diagnose_backward(
            observed,
            inputs.grad_output,
            inputs.x,
            case.num_groups,
            inputs.weight,
            case.eps,
            dtype=self.config.dtype,
        )
        return [d.message for d in found]

    # -- reading results ----------------------------------------------------------------------------------
    def array(self, result: CallResult, name: str, shape: tuple[int, ...]) -> np.ndarray | str:
        """The returned value ``name`` as float64, or a sentence saying why it is not a usable array."""
        d = result.outputs.get(name)
        if d is None:
            return f"returned no {name}"
        # a built-in target's adapter may hand back numpy arrays or, on a torch backend, tensors
        kinds = {"torch": ("tensor",), "framework": ("ndarray", "tensor")}.get(self.config.api, ("ndarray",))
        what = " or ".join({"tensor": "a torch.Tensor", "ndarray": "a numpy.ndarray"}[k] for k in kinds)
        if d.get("kind") not in kinds:
            return f"{name} is {_described(d)}, not {what}"
        if "array" not in d:
            return f"{name} is an array of dtype {d.get('dtype')}, which is not a real number type"
        a = result.arrays[d["array"]]
        if tuple(a.shape) != tuple(shape):
            return f"{name} has shape {tuple(a.shape)}, expected {tuple(shape)}"
        return np.asarray(a, dtype=np.float64)


def _described(d: dict[str, Any]) -> str:
    kind = d.get("kind")
    if kind == "sequence":
        return f"a {d.get('type')} of length {d.get('length')}"
    if kind == "other":
        return "None" if d.get("type") == "NoneType" else f"a {d.get('type')} ({d.get('repr', '')[:60]})"
    return f"a {d.get('type')} of dtype {d.get('dtype')} and shape {tuple(d.get('shape', ()))}"
