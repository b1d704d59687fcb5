"""Run time, judged cases and verdict of ``gn-spec check`` on the ONNX and OpenVINO built-in targets.

    python benchmarks/onnx_targets.py                         # default profile, every target/runtime/dtype
    python benchmarks/onnx_targets.py --profile quick --only onnx.GroupNormalization-21
    python benchmarks/onnx_targets.py --keep reports/         # keep each run's --json report there

Each row is one fresh ``python -m gn_spec.cli check NAME --target-option ... --dtype D --seed S`` process
(interpreter, worker and framework start included): its wall time, the cases judged (from its --json
report), and the verdict with the failed properties.  The combinations are those the registry allows
(``gn_spec.checker.builtins``: OpenVINO has no float64); a target whose framework is not installed is skipped.
"""

from __future__ import annotations

import argparse
import os
import sys

from _check_process import timed_check

from gn_spec.checker.builtins import BY_NAME, installed_version, missing

#: (target, its --target-option texts) in the order of the table.
RUNS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("onnx.GroupNormalization-18", ("runtime=onnxruntime",)),
    ("onnx.GroupNormalization-18", ("runtime=reference",)),
    ("onnx.GroupNormalization-18", ("runtime=openvino",)),
    ("onnx.GroupNormalization-21", ("runtime=onnxruntime", "stash_type=1")),
    ("onnx.GroupNormalization-21", ("runtime=reference", "stash_type=1")),
    ("onnx.GroupNormalization-21", ("runtime=openvino", "stash_type=1")),
    ("onnx.GroupNormalization-21", ("runtime=onnxruntime", "stash_type=11")),
    ("onnx.GroupNormalization-21", ("runtime=reference", "stash_type=11")),
    ("openvino.GroupNormalization-12", ()),
)


def dtypes_of(name: str, options: tuple[str, ...]) -> tuple[str, ...]:
    """The dtypes the registry lets this target and these options run."""
    target = BY_NAME[name]
    allowed = target.dtypes
    for text in options:
        key, _, value = text.partition("=")
        allowed = target.option_dtypes.get(key, {}).get(value, allowed)
    return tuple(d for d in target.dtypes if d in allowed)


def needs(name: str, options: tuple[str, ...]) -> list[str]:
    """The distributions these options need besides the target's own."""
    target = BY_NAME[name]
    out: list[str] = []
    for text in options:
        key, _, value = text.partition("=")
        out += target.option_requires.get(key, {}).get(value, ())
    return out


def run(name: str, options: tuple[str, ...], dtype: str, profile: str, seed: int, keep: str | None) -> dict:
    """One end-to-end check; returns its row."""
    slug = "_".join([name, *(o.partition("=")[2] for o in options), dtype])
    arguments = ["--profile", profile]
    for text in options:
        arguments += ["--target-option", text]
    arguments += ["--dtype", dtype, "--seed", str(seed)]
    kept = os.path.join(keep, f"{slug}.json") if keep else None
    seconds, report = timed_check(name, *arguments, keep_as=kept)
    failed = [p["name"] for p in report["properties"] if p["status"] == "failed"]
    return {
        "target": name,
        "runtime": " ".join(options) or "-",
        "dtype": dtype,
        "seconds": seconds,
        "cases": report["summary"]["cases"],
        "verdict": report["verdict"] + (f" ({', '.join(failed)})" if failed else ""),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="default", choices=("quick", "default", "thorough"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", help="run only this target")
    parser.add_argument("--dtype", help="run only this dtype")
    parser.add_argument("--keep", help="a folder to keep each run's JSON report in")
    args = parser.parse_args(argv)
    if args.keep:
        os.makedirs(args.keep, exist_ok=True)
        args.keep = os.path.abspath(args.keep)
    header = f"{'target':<31} {'options':<32} {'dtype':<8} {'seconds':>7} {'cases':>6}  verdict"
    print(f"gn-spec check, --profile {args.profile} --seed {args.seed}\n{header}\n{'-' * len(header)}")
    for name, options in RUNS:
        if args.only and name != args.only:
            continue
        absent = missing(BY_NAME[name]) + [d for d in needs(name, options) if installed_version(d) is None]
        if absent:
            print(f"{name:<31} {' '.join(options) or '-':<32} skipped: {', '.join(absent)} not installed")
            continue
        for dtype in dtypes_of(name, options):
            if args.dtype and dtype != args.dtype:
                continue
            row = run(name, options, dtype, args.profile, args.seed, args.keep)
            print(
                f"{row['target']:<31} {row['runtime']:<32} {row['dtype']:<8} {row['seconds']:>7.1f} "
                f"{row['cases']:>6}  {row['verdict']}",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
