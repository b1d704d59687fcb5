"""What runs inside the worker process, the only process that imports and runs the implementation under test.

Started by :class:`gn_spec.checker.worker_process.WorkerProcess` (the parent's handle on this process) as
``python -m gn_spec.checker.worker_main READ_FD WRITE_FD``.  It receives an ``init`` message (target, api,
dtype, device, memory format), takes fingerprints of numpy, gn_spec (and torch for the torch API), imports the
target and answers ``hello``.  Then it answers each ``calls`` message with one ``result`` message per call, in
order, so that the parent can time each call on its own.  Every answer lists the fingerprints that changed
since start-up: a target that rebinds ``numpy.mean`` or ``gn_spec.group_norm`` is reported as tampering.
Exceptions of any kind (SystemExit and KeyboardInterrupt included) are caught and reported; crashes and hangs
are the parent's to notice.
"""

from __future__ import annotations

import faulthandler
import importlib
import importlib.util
import json
import os
import sys
import time
import traceback
import types
from multiprocessing.connection import Connection
from typing import Any

import numpy as np

import gn_spec
from gn_spec.checker import adapters, protocol
from gn_spec.checker.adapters import BadReturn, Call, Unexpressible, Unsupported, WireArray, type_name

#: The most elements of a returned sequence that are described (the rest is summarized).
MAX_ITEMS = 8


def _fingerprint(value: object) -> tuple[int, int]:
    """Identity of a binding: the object, and for a Python function its code (``__code__`` swaps count)."""
    return id(value), id(getattr(value, "__code__", None))


class TamperGuard:
    """Remembers the callables bound in a few namespaces and reports the ones rebound or deleted since."""

    def __init__(self) -> None:
        self.snapshots: dict[str, tuple[Any, dict[str, tuple[int, int]]]] = {}
        self.keep: list[object] = []  # keeps the original objects alive so that their ids stay unique

    def watch(self, label: str, namespace: Any, names: tuple[str, ...] | None = None) -> None:
        """Remember the public callables (and submodules) bound in ``namespace``, or only ``names``."""
        members = vars(namespace)
        fps: dict[str, tuple[int, int]] = {}
        for name, value in list(members.items()):
            if names is not None and name not in names:
                continue
            if name.startswith("_") or not (callable(value) or isinstance(value, types.ModuleType)):
                continue
            fps[name] = _fingerprint(value)
            self.keep.append(value)
        self.snapshots[label] = (namespace, fps)

    def changes(self) -> list[str]:
        found = []
        for label, (namespace, fps) in self.snapshots.items():
            members = vars(namespace)
            for name, fp in fps.items():
                if name not in members:
                    found.append(f"{label}.{name} was deleted")
                elif _fingerprint(members[name]) != fp:
                    found.append(f"{label}.{name} was replaced")
        return found


#: torch functions and Tensor methods the worker calls to build inputs, differentiate and read results back.
TORCH_USED = ("from_numpy", "zeros_like")
TENSOR_METHODS_USED = (
    "to",
    "contiguous",
    "requires_grad_",
    "detach",
    "float",
    "cpu",
    "numpy",
    "resolve_conj",
    "resolve_neg",
    "dim",
)


def watch_environment(guard: TamperGuard, api: str) -> None:
    """Fingerprint what the checker relies on in the worker: numpy, gn_spec, the wire format, autograd."""
    import multiprocessing.connection

    guard.watch("numpy", np)
    guard.watch("numpy.lib.format", np.lib.format)
    guard.watch("json", json)
    for cls in multiprocessing.connection.Connection.__mro__[:2]:  # send_bytes & co. live in the base class
        guard.watch(f"multiprocessing.connection.{cls.__name__}", cls)
    for name in gn_spec.__all__:  # bind the lazily imported reference functions, so they are watched too
        getattr(gn_spec, name)
    guard.watch("gn_spec", gn_spec)
    for name, module in sorted(sys.modules.items()):
        if name.startswith("gn_spec.") and module is not None:
            guard.watch(name, module)
    if api == "torch":
        import torch
        import torch.nn.functional

        # Only what the worker itself calls: torch rebinds some of its own names when optional parts load
        # (importing torch._dynamo wraps torch.manual_seed), which is no tampering.
        guard.watch("torch", torch, TORCH_USED)
        guard.watch("torch.autograd", torch.autograd, ("grad",))
        guard.watch("torch.nn.functional", torch.nn.functional, ("group_norm",))
        for cls in torch.Tensor.__mro__[:2]:  # torch.Tensor and its C base: methods live in both
            guard.watch(f"{cls.__module__}.{cls.__name__}", cls, TENSOR_METHODS_USED)


class TargetLoadError(Exception):
    """The target could not be imported or lacks the function; ``kind`` says which."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def _import_location(kind: str, location: str, text: str) -> types.ModuleType:
    if kind == "file":
        name = "gn_spec_target_" + "".join(c if c.isalnum() else "_" for c in os.path.basename(location)[:-3])
        spec = importlib.util.spec_from_file_location(name, location)
        if spec is None or spec.loader is None:
            raise TargetLoadError(
                "not_found", f"TARGET {text!r}: {location} cannot be loaded as a Python module"
            )
        module = importlib.util.module_from_spec(spec)
        sys.path.insert(0, os.path.dirname(location))  # as `python file.py` would, so siblings import
        sys.modules[name] = module
        spec.loader.exec_module(module)
        return module
    try:
        return importlib.import_module(location)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (location == exc.name or location.startswith(exc.name + ".")):
            raise TargetLoadError("not_found", f"TARGET {text!r}: no module named {exc.name!r}") from None
        raise


def _attribute(module: types.ModuleType, path: str, text: str) -> Any:
    obj: Any = module
    where = getattr(module, "__file__", None) if module.__name__.startswith("gn_spec_target_") else None
    for part in path.split("."):
        if not hasattr(obj, part):
            functions = sorted(
                n for n, v in vars(module).items()
                if callable(v) and not n.startswith("_") and getattr(v, "__module__", None) == module.__name__
            )
            hint = f" (its functions: {', '.join(functions[:12])})" if functions else ""
            raise TargetLoadError(
                "missing_function",
                f"TARGET {text!r}: {where or module.__name__} has no attribute {path!r}{hint}",
            )
        obj = getattr(obj, part)
    if not callable(obj):
        raise TargetLoadError(
            "missing_function", f"TARGET {text!r}: {path} is a {type_name(obj)}, not callable"
        )
    return obj


def load_adapter(init: dict[str, Any]) -> Any:
    """Import the target named in ``init`` and wrap it in the adapter of its API."""
    kind, text, api = init["kind"], init["text"], init["api"]
    dtype, device, memory_format = init["dtype"], init["device"], init["memory_format"]
    if kind == "reference":
        return adapters.ReferenceAdapter(dtype, memory_format)
    if kind == "torch":
        import torch.nn.functional

        return adapters.TorchAdapter(torch.nn.functional.group_norm, dtype, device, memory_format)
    if kind == "builtin":
        return _builtin_adapter(init)
    try:
        module = _import_location(kind, init["location"], text)
    except TargetLoadError:
        raise
    except BaseException as exc:  # SystemExit and KeyboardInterrupt at import time too
        detail = "".join(traceback.format_exception(exc)[-6:]).rstrip()
        raise TargetLoadError(
            "import_raised", f"TARGET {text!r} raised while being imported:\n{detail}"
        ) from None
    if api == "cs231n":
        fns = tuple(
            _attribute(module, name, text)
            for name in ("spatial_groupnorm_forward", "spatial_groupnorm_backward")
        )
        return adapters.Cs231nAdapter((fns[0], fns[1]), dtype, memory_format)
    fn = _attribute(module, init["function"], text)
    if api == "torch":
        return adapters.TorchAdapter(fn, dtype, device, memory_format)
    return adapters.NumpyAdapter(fn, dtype, memory_format)


def share_compiled_programs(directory: str) -> None:
    """Let JAX keep every program it compiles in ``directory`` and look there before compiling (its
    persistent compilation cache; other frameworks are not affected): the run's worker processes share the
    directory, so a program compiled by one is loaded, not compiled again, by the others.  A loaded program
    is the compiled executable itself, so the results are the same bits."""
    settings = {
        "jax_compilation_cache_dir": directory,
        "jax_persistent_cache_min_compile_time_secs": 0,  # the default keeps only programs over 1 s
        "jax_persistent_cache_min_entry_size_bytes": 0,
    }
    for name, value in settings.items():
        os.environ[name.upper()] = str(value)  # read when jax is imported
    if "jax" in sys.modules:  # pragma: no cover - the adapters import jax after this
        for name, value in settings.items():
            sys.modules["jax"].config.update(name, value)


def _builtin_adapter(init: dict[str, Any]) -> Any:
    """The adapter of a built-in target (:mod:`gn_spec.checker.builtins`), its framework imported here."""
    from gn_spec.checker import builtins

    target = builtins.BY_NAME[init["location"]]
    module_name, _, attribute = target.adapter.partition(":")
    try:
        module = importlib.import_module(f"gn_spec.checker.frameworks.{module_name}")
    except ImportError as exc:
        raise TargetLoadError(
            "not_installed",
            f"TARGET {target.name}: importing its framework failed ({exc}); {builtins.install_hint(target)}",
        ) from None
    factory = getattr(module, attribute)
    if init.get("compile_cache"):
        share_compiled_programs(init["compile_cache"])
    options = builtins.typed_options(target, init.get("target_options", ()))
    dtype, device, memory_format = init["dtype"], init["device"], init["memory_format"]
    if target.api == "torch":  # a function with F.group_norm's signature, driven by torch.autograd
        return adapters.TorchAdapter(factory(**options), dtype, device, memory_format)
    try:
        return factory(target, dtype, device, memory_format, options)
    except adapters.Unsupported as exc:
        raise TargetLoadError("unsupported", f"TARGET {target.name}: {exc}") from None


def describe(obj: Any, packer: protocol.ArrayPacker, depth: int = 0) -> dict[str, Any]:
    """A JSON description of a returned object; its numeric data goes to ``packer`` (bfloat16 as float32)."""
    try:
        if isinstance(obj, WireArray):
            return {
                "kind": "ndarray",
                "type": "numpy.ndarray",
                "dtype": obj.dtype,
                "shape": list(obj.array.shape),
                "array": packer.add(obj.array),
            }
        if isinstance(obj, np.ndarray):
            d: dict[str, Any] = {
                "kind": "ndarray",
                "type": type_name(obj),
                "dtype": str(obj.dtype),
                "shape": list(obj.shape),
            }
            if obj.dtype.kind in protocol.WIRE_KINDS:
                d["array"] = packer.add(np.asarray(obj))
            return d
        torch = sys.modules.get("torch")
        if torch is not None and isinstance(obj, torch.Tensor):
            d = {
                "kind": "tensor",
                "type": type_name(obj),
                "dtype": str(obj.dtype).removeprefix("torch."),
                "shape": list(obj.shape),
                "device": str(obj.device),
            }
            t = obj.detach()
            if t.dtype == torch.bfloat16:
                t = t.float()
            a = t.cpu().resolve_conj().resolve_neg().numpy()
            if a.dtype.kind in protocol.WIRE_KINDS:
                d["array"] = packer.add(a)
            return d
        if isinstance(obj, (tuple, list)) and depth == 0:
            return {
                "kind": "sequence",
                "type": type_name(obj),
                "length": len(obj),
                "items": [describe(v, packer, depth + 1) for v in obj[:MAX_ITEMS]],
            }
        text = repr(obj)
        return {"kind": "other", "type": type_name(obj), "repr": text[:200]}
    except Exception as exc:  # a hostile object whose repr or conversion raises
        return {"kind": "other", "type": type_name(obj), "repr": f"<not describable: {exc!r}>"[:200]}


_OWN_FILES = (os.path.dirname(os.path.abspath(__file__)) + os.sep,)


def _exception_info(exc: BaseException, stage: str) -> dict[str, Any]:
    """The exception for the report: type, message, and the traceback without the worker's own frames."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if not f.filename.startswith(_OWN_FILES)]
    text = "".join(traceback.format_list(frames[-6:])) + "".join(traceback.format_exception_only(exc))
    return {
        "type": type_name(exc),
        "message": str(exc)[:2000],
        "stage": stage,
        "is_exception": isinstance(exc, Exception),
        "traceback": text[-4000:],
    }


def run_call(
    adapter: Any, spec: dict[str, Any], arrays: list[np.ndarray]
) -> tuple[dict[str, Any], list[np.ndarray]]:
    """Run one call and build its ``result`` message."""
    packer = protocol.ArrayPacker()
    call = Call(
        op=spec["op"],
        num_groups=spec["num_groups"],
        eps=spec["eps"],
        arrays={name: arrays[i] for name, i in spec["arrays"].items()},
    )
    adapter.stage.name = "prepare"
    inputs: dict[str, Any] = {}
    header: dict[str, Any] = {"type": "result"}
    start = time.perf_counter()
    try:
        inputs = {name: adapter.native(name, a) for name, a in call.arrays.items()}
        if call.op not in ("forward", "backward", "double_backward"):
            raise Unsupported(f"unknown operation {call.op!r}")
        outputs = getattr(adapter, call.op)(call, inputs)
        header["status"] = "ok"
        header["outputs"] = {name: describe(value, packer) for name, value in outputs.items()}
    except Unsupported as exc:
        header.update(status="unsupported", message=str(exc))
    except Unexpressible as exc:
        header.update(status="unexpressible", message=str(exc), stage=adapter.stage.name)
    except BadReturn as exc:
        header.update(status="bad_return", message=str(exc), stage=adapter.stage.name)
    except BaseException as exc:  # noqa: B036 - the target's SystemExit/KeyboardInterrupt are findings, not ours
        header.update(status="raised", exception=_exception_info(exc, adapter.stage.name))
    header["seconds"] = time.perf_counter() - start
    if spec.get("return_inputs"):
        header["inputs_after"] = {name: describe(value, packer) for name, value in inputs.items()}
    return header, packer.arrays


def serve(conn_in: Connection, conn_out: Connection) -> None:
    """Answer ``init`` then ``calls`` messages until ``exit`` or end of input."""
    init, _ = protocol.recv_message(conn_in)
    guard = TamperGuard()
    watch_environment(guard, init["api"])
    if init["api"] == "torch" and init["device"] == "cuda":
        import torch

        if not torch.cuda.is_available():
            protocol.send_message(
                conn_out,
                {
                    "type": "hello",
                    "status": "usage_error",
                    "message": "--device cuda: torch.cuda.is_available() is False here",
                },
            )
            return
    try:
        adapter = load_adapter(init)
    except TargetLoadError as exc:
        protocol.send_message(
            conn_out, {"type": "hello", "status": "usage_error", "kind": exc.kind, "message": str(exc)}
        )
        return
    protocol.send_message(
        conn_out,
        {
            "type": "hello",
            "status": "ready",
            "tampered": guard.changes(),
            "python": sys.version.split()[0],
            "numpy": np.__version__,
            "torch": getattr(sys.modules.get("torch"), "__version__", None),
            "adapter_notes": list(getattr(adapter, "notes", ())),
        },
    )
    while True:
        try:
            message, arrays = protocol.recv_message(conn_in)
        except EOFError:
            return
        if message.get("type") == "exit":
            return
        for spec in message["calls"]:
            header, out_arrays = run_call(adapter, spec, arrays)
            header["tampered"] = guard.changes()
            protocol.send_message(conn_out, header, out_arrays)


def main(argv: list[str]) -> int:
    faulthandler.enable()  # a segfault in the target leaves a Python traceback in the worker's log
    try:  # no core dumps: a crashing target would otherwise cost seconds per crash (and litter the disk)
        import resource

        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    except (ImportError, ValueError, OSError):
        pass
    conn_in = Connection(int(argv[1]), writable=False)
    conn_out = Connection(int(argv[2]), readable=False)
    serve(conn_in, conn_out)
    return 0


if __name__ == "__main__":
    code = main(sys.argv)
    sys.stdout.flush()
    sys.stderr.flush()
    # skip interpreter shutdown: atexit hooks and threads the target left behind must not hang us
    os._exit(code)
