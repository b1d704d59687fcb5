"""What `gn-spec check NAME` costs on the JAX and Keras built-in targets, and where the time goes.

Two tables:

1. one `gn-spec check NAME --seed 0 --quiet --json ...` per target (a subprocess, as a user runs it): wall
   seconds, judged cases, verdict, seconds per case; the JAX-based targets with their default `--shapes
   auto` (one pool of shapes per seed) and `--jobs auto` (one process per CPU at the default profile), in the
   rows marked shapes=free with every shape drawn anew, in those marked jobs=1 in one process;
2. the adapter alone, in a fresh interpreter per target: its import (constructing the adapter imports the
   framework), its first call, then the median call on a shape not met before (jax.jit compiles one program
   per shape) and the median repeat of a shape already met, for each operation, over 20 small shapes like the
   checker's (N <= 3, G <= 8, C/G <= 6, up to two spatial extents <= 8).

    python benchmarks/framework_targets.py [--profile default] [--targets flax.linen.GroupNorm,...]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

TARGETS = {
    "flax.linen.GroupNorm": (),
    "flax.linen.GroupNorm jobs=1": ("--jobs", "1"),
    "flax.linen.GroupNorm shapes=free": ("--shapes", "free"),
    "flax.linen.GroupNorm use_fast_variance=false": ("--target-option", "use_fast_variance=false"),
    "flax.nnx.GroupNorm": (),
    "equinox.nn.GroupNorm": (),
    "keras.layers.GroupNormalization backend=jax": ("--target-option", "backend=jax"),
    "keras.layers.GroupNormalization backend=jax jobs=1": ("--target-option", "backend=jax", "--jobs", "1"),
    "keras.layers.GroupNormalization backend=jax shapes=free": ("--target-option", "backend=jax", "--shapes",
                                                                "free"),
    "keras.layers.GroupNormalization backend=torch": ("--target-option", "backend=torch"),
}

PROBE = """
import json, sys, time
import numpy as np
t0 = time.perf_counter()
from gn_spec.checker.adapters import Call
from gn_spec.checker.builtins import BY_NAME, typed_options, resolve_options
import importlib
name, given = sys.argv[1], sys.argv[2:]
target = BY_NAME[name]
options = typed_options(target, resolve_options(target, given))
module, _, cls = target.adapter.partition(":")
factory = getattr(importlib.import_module("gn_spec.checker.frameworks." + module), cls)
adapter = factory(target, "float32", "cpu", "contiguous", options)
out = {"import": time.perf_counter() - t0}
rng = np.random.default_rng(0)
shapes = []
for _ in range(20):
    g, cpg, n = (int(v) for v in (rng.integers(1, 9), rng.integers(1, 7), rng.integers(1, 4)))
    shapes.append((g, (n, g * cpg) + tuple(int(v) for v in rng.integers(1, 9, size=int(rng.integers(0, 3))))))
def arrays(op, shape):
    c = shape[1]
    a = {"x": rng.standard_normal(shape), "weight": rng.standard_normal(c), "bias": rng.standard_normal(c)}
    if op != "forward":
        a["grad_output"] = rng.standard_normal(shape)
    if op == "double_backward":
        a["grad_grad_input"], a["grad_grad_weight"] = rng.standard_normal(shape), rng.standard_normal(c)
    return {k: v.astype(np.float32) for k, v in a.items()}
def timed(op, g, shape):
    a = arrays(op, shape)
    t = time.perf_counter()
    getattr(adapter, op)(Call(op, g, 1e-5, a), {k: adapter.native(k, v) for k, v in a.items()})
    return time.perf_counter() - t
first = True
for op in ("forward", "backward", "double_backward"):
    new = [timed(op, g, s) for g, s in shapes]
    if first:
        out["first"], first = new[0], False
    out[op + " new"] = float(np.median(new[1:]))
    out[op + " repeat"] = float(np.median([timed(op, g, s) for g, s in shapes[:10]]))
print(json.dumps(out))
"""


def run_check(name: str, extra: tuple[str, ...], profile: str, keep: str | None) -> dict[str, object]:
    target = name.split()[0]
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(keep or tmp, name.replace(" ", "_").replace("=", "-") + ".json")
        command = ["gn-spec", "check", target, *extra, "--profile", profile, "--seed", "0", "--quiet"]
        start = time.perf_counter()
        subprocess.run([*command, "--json", path], capture_output=True, text=True, cwd=tmp, check=False)
        seconds = time.perf_counter() - start
        try:
            with open(path) as f:
                report = json.load(f)
        except (OSError, ValueError):
            return {"seconds": seconds, "cases": 0, "verdict": "no report"}
    cases = int(report["summary"]["cases"])
    return {"seconds": seconds, "cases": cases, "verdict": report["verdict"]}


def run_probe(name: str, extra: tuple[str, ...]) -> dict[str, float] | None:
    target = name.split()[0]
    given = [extra[i + 1] for i in range(0, len(extra), 2) if extra[i] == "--target-option"]
    done = subprocess.run(
        [sys.executable, "-c", PROBE, target, *given], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        return None
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="default")
    parser.add_argument("--targets", default=",".join(TARGETS), help="comma-separated keys of TARGETS")
    parser.add_argument("--no-check", action="store_true", help="only the adapter table")
    parser.add_argument("--keep", metavar="DIR", help="keep each run's JSON report in DIR")
    args = parser.parse_args()
    names = [n for n in args.targets.split(",") if n]
    if not args.no_check:
        print(f"| target (--profile {args.profile}, float32) | seconds | cases | s/case | verdict |")
        print("|---|---:|---:|---:|---|")
        for name in names:
            r = run_check(name, TARGETS[name], args.profile, args.keep)
            per = r["seconds"] / r["cases"] if r["cases"] else float("nan")  # type: ignore[operator]
            print(f"| {name} | {r['seconds']:.1f} | {r['cases']} | {per:.3f} | {r['verdict']} |", flush=True)
        print()
    keys = ["import", "first"] + [f"{op} {k}" for op in ("forward", "backward", "double_backward")
                                  for k in ("new", "repeat")]
    print("| target (adapter alone, seconds) | " + " | ".join(keys) + " |")
    print("|---|" + "---:|" * len(keys))
    for name in names:
        if "shapes=" in name:
            continue  # how the checker draws shapes does not change what the adapter costs per call
        p = run_probe(name, TARGETS[name])
        cells = ["failed"] * len(keys) if p is None else [f"{p[k]:.4f}" for k in keys]
        print(f"| {name} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
