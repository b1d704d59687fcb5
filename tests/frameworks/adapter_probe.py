"""Drive one built-in target's adapter on small fixed cases and print what it returned, as JSON.

    python adapter_probe.py TARGET DTYPE [KEY=VALUE ...]

Run in its own interpreter by test_framework_targets.py: float64 switches JAX's 64-bit mode on for the whole
process, and Keras fixes its backend when first imported.  For each affine form (weight and bias, weight
only, bias only, neither) it runs forward, backward and double backward on x of shape (2, 6, 3, 2) with
G = 3 and reports, per output, its shape, its dtype and its largest difference from gn_spec's float64
reference (the reference is not the code under test here: the adapters are).
"""

from __future__ import annotations

import importlib
import json
import sys
from typing import Any

import numpy as np

import gn_spec
from gn_spec.checker.adapters import Call, Unsupported
from gn_spec.checker.builtins import BY_NAME, resolve_options, typed_options
from gn_spec.checker.dtypes import CONTAINER, round_to

FORMS = {"weight+bias": ("weight", "bias"), "weight": ("weight",), "bias": ("bias",), "none": ()}


def plain(value: object) -> tuple[np.ndarray, str]:
    """An adapter's output as float64 and the dtype it carried."""
    if hasattr(value, "array"):  # WireArray
        return np.asarray(value.array, np.float64), str(value.dtype)  # type: ignore[attr-defined]
    if hasattr(value, "detach"):  # torch.Tensor
        t: Any = value
        return t.detach().double().cpu().numpy(), str(t.dtype).removeprefix("torch.")
    a = np.asarray(value)
    return a.astype(np.float64), str(a.dtype)


def main(argv: list[str]) -> None:
    name, dtype, given = argv[1], argv[2], argv[3:]
    target = BY_NAME[name]
    module, _, attribute = target.adapter.partition(":")
    factory = getattr(importlib.import_module(f"gn_spec.checker.frameworks.{module}"), attribute)
    options = typed_options(target, resolve_options(target, given))
    adapter = factory(target, dtype, "cpu", "contiguous", options)
    rng = np.random.default_rng(0)
    shape, groups, eps = (2, 6, 3, 2), 3, 1e-5
    data = {k: round_to(rng.standard_normal(s), dtype) for k, s in (
        ("x", shape), ("weight", (6,)), ("bias", (6,)), ("grad_output", shape), ("grad_grad_input", shape),
        ("grad_grad_weight", (6,)), ("grad_grad_bias", (6,)))}
    out: dict[str, object] = {"notes": list(adapter.notes)}
    for form, present in FORMS.items():
        w = data["weight"] if "weight" in present else None
        b = data["bias"] if "bias" in present else None
        gx, gw, gb = gn_spec.group_norm_backward(data["grad_output"], data["x"], groups, w, eps)
        ggw = data["grad_grad_weight"] if w is not None else None
        ggb = data["grad_grad_bias"] if b is not None else None
        ggo, gx2, gw2 = gn_spec.group_norm_double_backward(
            data["grad_grad_input"], ggw, ggb, data["grad_output"], data["x"], groups, w, eps
        )
        expected = {
            "forward": {"y": gn_spec.group_norm(data["x"], groups, w, b, eps)},
            "backward": {"y": gn_spec.group_norm(data["x"], groups, w, b, eps), "grad_input": gx,
                         "grad_weight": gw, "grad_bias": gb},
            "double_backward": {"grad_grad_output": ggo, "grad_x": gx2, "grad_weight": gw2},
        }
        names = {
            "forward": ("x",),
            "backward": ("x", "grad_output"),
            "double_backward": ("x", "grad_output", "grad_grad_input", "grad_grad_weight", "grad_grad_bias"),
        }
        for op, wanted in expected.items():
            arrays = {n: data[n] for n in names[op]}
            arrays.update({n: data[n] for n in present})
            if w is None:
                arrays.pop("grad_grad_weight", None)
            if b is None:
                arrays.pop("grad_grad_bias", None)
            inputs = {n: adapter.native(n, np.array(a, CONTAINER[dtype])) for n, a in arrays.items()}
            try:
                got = getattr(adapter, op)(Call(op, groups, eps, arrays), inputs)
            except Unsupported as exc:
                out[f"{form} {op}"] = {"unsupported": str(exc)}
                continue
            report = {}
            for key, value in got.items():
                a, carried = plain(value)
                ref = wanted[key]
                err = float(np.max(np.abs(a - ref))) if a.shape == ref.shape else None
                report[key] = {"shape": list(a.shape), "dtype": carried, "error": err}
            out[f"{form} {op}"] = report
    print(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv)
