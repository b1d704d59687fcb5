"""Standalone reproducer scripts for failures.

A reproducer is a short Python script: it rebuilds the counterexample's inputs from its :class:`Case` (through
``gn_spec.strategies.materialize``, so the script stays short however big the tensors), imports the target the
way the worker did, calls it through small helpers named after the operations, and compares with gn_spec's
reference under the error model.  Properties contribute only the lines after this prelude (``Outcome.repro``);
those lines may use:

``x, weight, bias, grad_output, num_groups, eps`` the inputs (numpy arrays in the dtype's container),
``inputs`` the float64 :class:`gn_spec.strategies.Inputs` (for the second-order cotangents), ``DTYPE``,
``forward(x, num_groups, weight, bias, eps)`` the target's raw output,
``backward(x, num_groups, weight, bias, eps, grad_output)`` a dict of float64 gradients
(grad_input, grad_weight, grad_bias), ``double_backward(..., grad_output, ggi, ggw, ggb)`` a dict
(grad_grad_output, grad_x, grad_weight), and ``as_float64(value)``.
"""

from __future__ import annotations

import shlex
import textwrap

from gn_spec.checker.dtypes import CONTAINER
from gn_spec.checker.options import CONFIG, options_in
from gn_spec.checker.target import CheckConfig
from gn_spec.strategies import Case

_NUMPY = '''
def native(a, layout=False):
    """numpy input of the dtype under test{cl_doc}."""
    if a is None:
        return None
    a = np.array(a, dtype=CONTAINER)
    {cl_numpy}return a


def forward(x, num_groups, weight, bias, eps):
    return target(native(x, True), num_groups, native(weight), native(bias), eps)


def as_float64(value):
    if not isinstance(value, np.ndarray):
        raise TypeError(f"the target returned {{type(value).__name__}}, not a numpy array")
    return value.astype(np.float64)
'''

_CHANNELS_LAST_NUMPY = """if layout and a.ndim >= 3:  # channels-last strides, as the checker passed them
        order = (0, *range(2, a.ndim), 1)
        a = np.ascontiguousarray(a.transpose(order)).transpose(np.argsort(order))
    """

_CS231N = """
def native(a):
    return np.array(a, dtype=CONTAINER)


def forward(x, num_groups, weight, bias, eps):
    out, cache = forward_fn(native(x), native(weight), native(bias), num_groups, {"eps": eps})
    return out


def backward(x, num_groups, weight, bias, eps, grad_output):
    out, cache = forward_fn(native(x), native(weight), native(bias), num_groups, {"eps": eps})
    dx, dgamma, dbeta = backward_fn(native(grad_output), cache)
    return {"grad_input": as_float64(dx), "grad_weight": as_float64(dgamma), "grad_bias": as_float64(dbeta)}


def as_float64(value):
    if not isinstance(value, np.ndarray):
        raise TypeError(f"the target returned {type(value).__name__}, not a numpy array")
    return value.astype(np.float64)
"""

_TORCH = '''
DEVICE = {device!r}


def native(a, layout=False):
    """A tensor of the dtype under test on DEVICE{cl_doc}."""
    if a is None:
        return None
    t = torch.from_numpy(np.array(a)).to(dtype=torch.{dtype}, device=DEVICE)
    {cl_torch}return t


def as_float64(value):
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"the target returned {{type(value).__name__}}, not a torch.Tensor")
    return value.detach().to("cpu", torch.float64).numpy()


def forward(x, num_groups, weight, bias, eps):
    return target(native(x, True), num_groups, native(weight), native(bias), eps)
'''

_TORCH_GRAD = """

def _leaves(x, weight, bias):
    leaves = {"x": native(x, True).requires_grad_(True)}
    for name, value in (("weight", weight), ("bias", bias)):
        if value is not None:
            leaves[name] = native(value).requires_grad_(True)
    return leaves


def _grad(outputs, inputs, cotangents, create_graph=False):
    grads = torch.autograd.grad(outputs, inputs, cotangents, allow_unused=True, create_graph=create_graph)
    return [torch.zeros_like(i) if g is None else g for g, i in zip(grads, inputs)]


def backward(x, num_groups, weight, bias, eps, grad_output):
    leaves = _leaves(x, weight, bias)
    y = target(leaves["x"], num_groups, leaves.get("weight"), leaves.get("bias"), eps)
    grads = _grad(y, list(leaves.values()), native(grad_output, True))
    names = {"x": "grad_input", "weight": "grad_weight", "bias": "grad_bias"}
    return {names[k]: as_float64(g) for k, g in zip(leaves, grads)}
"""

_TORCH_SECOND = """

def double_backward(x, num_groups, weight, bias, eps, grad_output, ggi, ggw, ggb):
    leaves = _leaves(x, weight, bias)
    dy = native(grad_output, True).requires_grad_(True)
    y = target(leaves["x"], num_groups, leaves.get("weight"), leaves.get("bias"), eps)
    first = _grad(y, list(leaves.values()), dy, create_graph=True)
    cot = {"x": ggi, "weight": ggw, "bias": ggb}
    pairs = [(g, native(cot[k], k == "x")) for g, k in zip(first, leaves) if cot[k] is not None]
    wrt = [dy, leaves["x"]] + ([leaves["weight"]] if "weight" in leaves else [])
    second = _grad([g for g, _ in pairs], wrt, [c for _, c in pairs])
    out = {"grad_grad_output": as_float64(second[0]), "grad_x": as_float64(second[1])}
    if "weight" in leaves:
        out["grad_weight"] = as_float64(second[2])
    return out
"""

_CHANNELS_LAST_TORCH = """if layout and t.dim() in (4, 5):
        t = t.contiguous(memory_format=torch.channels_last if t.dim() == 4 else torch.channels_last_3d)
    """

_REFERENCE = '''
from gn_spec.checker.dtypes import round_to


def native(a, layout=False):
    return None if a is None else np.array(a, dtype=CONTAINER)


def target(x, num_groups, weight, bias, eps):
    return forward(x, num_groups, weight, bias, eps)


def forward(x, num_groups, weight, bias, eps):
    """gn_spec's reference rounded to the dtype under test (the `reference` target)."""
    x, weight, bias = (None if a is None else round_to(np.asarray(a), DTYPE) for a in (x, weight, bias))
    return round_to(gn_spec.group_norm(x, num_groups, weight, bias, eps), DTYPE)


def backward(x, num_groups, weight, bias, eps, grad_output):
    gi, gw, gb = gn_spec.group_norm_backward(grad_output, x, num_groups, weight, eps)
    return {"grad_input": as_float64(round_to(gi, DTYPE)), "grad_weight": as_float64(round_to(gw, DTYPE)),
            "grad_bias": as_float64(round_to(gb, DTYPE))}


def double_backward(x, num_groups, weight, bias, eps, grad_output, ggi, ggw, ggb):
    ggo, gx, gw = gn_spec.group_norm_double_backward(ggi, ggw, ggb, grad_output, x, num_groups, weight, eps)
    return {"grad_grad_output": as_float64(round_to(ggo, DTYPE)), "grad_x": as_float64(round_to(gx, DTYPE)),
            "grad_weight": as_float64(round_to(gw, DTYPE))}


def as_float64(value):
    return np.asarray(value, dtype=np.float64)
'''

_BUILTIN = '''
import importlib

from gn_spec.checker.adapters import Call, WireArray
from gn_spec.checker.builtins import BY_NAME, typed_options

# the adapter gn-spec's worker used for this built-in target, built the same way
_target = BY_NAME[TARGET]
_module, _, _name = _target.adapter.partition(":")
_factory = getattr(importlib.import_module("gn_spec.checker.frameworks." + _module), _name)
_adapter = _factory(_target, DTYPE, "cpu", "contiguous", typed_options(_target, TARGET_OPTIONS))


def _run(op, x, num_groups, eps, **arrays):
    arrays = {{k: np.asarray(v).astype(CONTAINER) for k, v in dict(x=x, **arrays).items() if v is not None}}
    call = Call(op, num_groups, eps, arrays)
    return getattr(_adapter, op)(call, {{k: _adapter.native(k, a) for k, a in arrays.items()}})


def forward(x, num_groups, weight, bias, eps):
    return _run("forward", x, num_groups, eps, weight=weight, bias=bias)["y"]


def backward(x, num_groups, weight, bias, eps, grad_output):
    out = _run("backward", x, num_groups, eps, weight=weight, bias=bias, grad_output=grad_output)
    return {{k: as_float64(v) for k, v in out.items() if k != "y"}}


def double_backward(x, num_groups, weight, bias, eps, grad_output, ggi, ggw, ggb):
    out = _run("double_backward", x, num_groups, eps, weight=weight, bias=bias, grad_output=grad_output,
               grad_grad_input=ggi, grad_grad_weight=ggw, grad_grad_bias=ggb)
    return {{k: as_float64(v) for k, v in out.items()}}


def as_float64(value):
    if isinstance(value, WireArray):
        value = value.array
    if hasattr(value, "detach"):  # a torch tensor (Keras on its torch backend)
        value = value.detach().cpu().double().numpy()
    if not isinstance(value, np.ndarray):
        raise TypeError(f"the target returned {{type(value).__name__}}, not an array")
    return value.astype(np.float64)
'''


def target_import(config: CheckConfig) -> str:
    """Lines that bind ``target`` (``forward_fn``, ``backward_fn`` for cs231n) as the worker does."""
    t = config.target
    if t.kind == "torch":
        return "import torch\n\ntarget = torch.nn.functional.group_norm\n"
    if t.kind == "reference":
        return ""
    if t.kind == "builtin":
        lines = f"TARGET = {t.location!r}\nTARGET_OPTIONS = {config.target_options!r}\n"
        if config.api != "torch":
            return lines
        from gn_spec.checker.builtins import BY_NAME

        module, _, name = BY_NAME[t.location].adapter.partition(":")
        return lines + (
            "import torch\n\nfrom gn_spec.checker.builtins import BY_NAME, typed_options\n"
            f"from gn_spec.checker.frameworks.{module} import {name}\n\n"
            f"target = {name}(**typed_options(BY_NAME[TARGET], TARGET_OPTIONS))\n"
        )
    if t.kind == "file":
        load = (
            "import importlib.util\nimport sys\n\n"
            f"_path = {t.location!r}\n"
            "sys.path.insert(0, __import__('os').path.dirname(_path))\n"
            "_spec = importlib.util.spec_from_file_location('gn_target', _path)\n"
            "module = importlib.util.module_from_spec(_spec)\n"
            "sys.modules['gn_target'] = module\n"
            "_spec.loader.exec_module(module)\n"
        )
    else:
        load = f"import importlib\n\nmodule = importlib.import_module({t.location!r})\n"
    if config.api == "cs231n":
        return load + (
            "forward_fn = module.spatial_groupnorm_forward\nbackward_fn = module.spatial_groupnorm_backward\n"
        )
    attribute = "".join(f".{part}" for part in (t.function or "").split("."))
    if config.api == "torch":
        load = "import torch\n" + load  # the helpers make tensors, whatever the target imports
    return load + f"target = module{attribute}\n"


def helpers(config: CheckConfig, body: str) -> str:
    """The API's ``forward``/``backward``/``double_backward``/``as_float64`` helpers (for torch only those
    ``body`` uses)."""
    cl = config.memory_format == "channels_last"
    cl_doc = ", x in the channels-last layout" if cl else ""
    if config.target.kind == "reference":
        return _REFERENCE
    if config.api == "cs231n":
        return _CS231N
    if config.api == "framework":
        return _BUILTIN.format()
    if config.api == "torch":
        code = _TORCH.format(
            device=config.device,
            dtype=config.dtype,
            cl_doc=cl_doc,
            cl_torch=_CHANNELS_LAST_TORCH if cl else "",
        )
        if "backward(" in body or "_leaves(" in body:
            code += _TORCH_GRAD
        if "double_backward(" in body:
            code += _TORCH_SECOND
        return code
    return _NUMPY.format(cl_doc=cl_doc, cl_numpy=_CHANNELS_LAST_NUMPY if cl else "")


def replay_command(config: CheckConfig, property_name: str | None = None) -> str:
    """The ``gn-spec check`` command line that repeats the run of ``config``: every CONFIG option of the
    options table (so none that changes what is generated or how the target is called can be left out)
    that has a value (not None; an ``omit_at_default`` option only where it differs from its default), then
    ``--property NAME`` when given."""
    words = ["gn-spec", "check", config.target.text]
    for option in options_in(CONFIG):
        if option.positional or option.name == "api" and config.target.kind == "builtin":
            continue  # a built-in target's API is its own
        value = getattr(config, option.name)
        if value is None or option.omit_at_default and value == option.default:
            continue
        if option.repeatable:
            for item in value:
                words += [option.flag, str(item)]
        else:
            shown = str(value).lower() if isinstance(value, bool) else str(value)
            words += [option.flag, f"{value:g}" if isinstance(value, float) else shown]
    if property_name is not None:
        words += ["--property", property_name]
    return " ".join(shlex.quote(w) for w in words)


#: A line of a property's reproducer body: what comes before it runs before the target is imported (``API``
#: is then bound to the run's API), what follows it after the API's helpers.
BEFORE_IMPORT = "# --- the lines above run before the target is imported ---\n"


def build(config: CheckConfig, property_name: str, case: Case, body: str) -> str:
    """The whole reproducer script for ``property_name`` failing on ``case`` (``body``: its part, which may
    begin with lines to run before the target is imported, ended by :data:`BEFORE_IMPORT`)."""
    c = config
    command = replay_command(c, property_name)
    header = (
        f'"""Reproduces a gn-spec failure: property {property_name} of {c.target.text}.\n\n'
        f"Found by: {command}\n"
        f"Counterexample: {case.describe()}\n"
        '"""\n\n'
    )
    prelude = (
        "import numpy as np\n\nimport gn_spec\nfrom gn_spec.error_model import (backward_tolerances, "
        "double_backward_tolerances, forward_tolerance, judge)\n"
    )
    inputs = case.to_python(c.dtype).replace("import numpy as np\n", "")
    early, _, body = textwrap.dedent(body).strip().rpartition(BEFORE_IMPORT)
    if early:  # lines that must run before the target is imported (no_tampering's fingerprints)
        early = f"API = {c.api!r}\n" + early + "\n"
    return (
        header
        + prelude
        + inputs
        + f"DTYPE = {c.dtype!r}\nCONTAINER = np.{CONTAINER[c.dtype].name}\n\n"
        + early
        + target_import(c)
        + helpers(c, body)
        + "\n\n"
        + body.strip()
        + "\n"
    )
