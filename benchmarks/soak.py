"""False-alarm soak: the default profile, over and over with fresh seeds, on code that conforms.

    python benchmarks/soak.py [--runs 200] [--profile default] [--seed-base 1000] [--jobs 1] [--out FILE.md]
                              [--save RUNS.json | --load RUNS.json]

The targets are the correct implementations of tests/implementations/catalogue.py (each at its dtype), the
built-in ``torch`` target (torch.nn.functional.group_norm) at float32 and float64 on CPU, and the
torch.nn.GroupNorm wrapper at float64 as well (PyTorch's own kernel with its refusals of valid input worked
around, so that its float64 backward and second order get soaked too). Run i checks target i mod T with seed
seed_base + i. Every failing property of such a run is a false alarm (goal: 0 in >= 200 runs), except a known
defect of the target itself (``KNOWN_DEFECTS``: the PyTorch findings of SPEC.md 3.11, each matched by its
property, its message and its counterexample), counted apart as a true finding. The report lists every
failure with its seed and counterexample, to replay with ``gn-spec check ... --seed``. The headroom of a
target is 1 / (largest error / bound) over all its runs: how far the worst error seen stayed below the
derived bound. ``--save`` keeps the raw runs; ``--load`` re-renders them without running the checker.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _catalogue_runs import (  # noqa: E402 - the sibling module is found through the path set above
    ROOT,
    Run,
    as_row,
    catalogue,
    check,
    environment_line,
    fmt_ratio,
)

#: Failures that are known defects of the target, not false alarms (SPEC.md 3.11, each tested on its own):
#: (target name prefix, property, a text the failure message contains, a text the shrunk counterexample
#: contains).  Anything else a correct target fails is a false alarm.
KNOWN_DEFECTS: tuple[tuple[str, str, str, str], ...] = (
    # PyTorch refuses a batch of one sample with one value per group (torch.nn.functional.group_norm).
    ("torch@", "single_value_groups", "Expected more than 1 value per channel", ""),
    # PyTorch's autograd raises for gradients through a bias given without a weight (every property that
    # calls the backward meets it).
    *(("torch@", p, text, "affine=bias") for p in ("backward_agreement", "second_order_agreement",
                                                   "input_not_modified")
      for text in ("tensor does not have a device", "shape '[0]' is invalid")),
    # PyTorch's CPU GroupNorm backward sums grad_bias one element after another (per SIMD lane), so its error
    # grows faster than the log-depth bound on long channels, at float32 and float64 alike.
    *((f"{t}@{d}", "backward_agreement", "(grad_bias)", "") for t in ("torch", "torch_nn_module")
      for d in ("float32", "float64")),
)


def _known(name: str, prop: str, message: str, counterexample: str) -> bool:
    return any(
        name.startswith(t) and prop == p and text in message and example in counterexample
        for t, p, text, example in KNOWN_DEFECTS
    )


def false_alarms(name: str, run: Run) -> list[str]:
    """The failing properties of a run that are not known defects of its target."""
    return [p for p in run.failed if p not in known_defects(name, run)]


def known_defects(name: str, run: Run) -> list[str]:
    """The failing properties of a run that are known defects of its target."""
    return [p for p in run.failed if _known(name, p, run.messages.get(p, ""), run.counterexamples.get(p, ""))]


def soak_targets() -> list[tuple[str, str, str, str]]:
    """(name, target, api, dtype) of every target the soak runs."""
    targets = [(e.name, e.absolute_target, e.api, e.dtype) for e in catalogue.CORRECT]
    # PyTorch's native kernel at float64 with its two refusals worked around (the torch@float64 runs stop
    # generating backward and second-order cases at the first refusal): its numerics get a full soak.
    module = next(e for e in catalogue.CORRECT if e.name.startswith("torch_nn_module@"))
    targets.append(("torch_nn_module@float64", module.absolute_target, "torch", "float64"))
    targets += [(f"torch@{dtype}", "torch", "torch", dtype) for dtype in ("float32", "float64")]
    return targets


def _one(args: tuple[str, str, str, str, str, int]) -> tuple[str, int, Run]:
    name, target, api, dtype, profile, seed = args
    return name, seed, check(target, api, dtype, profile, seed, name)


def soak(args: argparse.Namespace) -> list[tuple[str, int, Run]]:
    """Run the checker ``args.runs`` times over the soak targets, printing a line per run."""
    targets = [t for t in soak_targets() if not args.only or any(s in t[0] for s in args.only)]
    jobs = [(*targets[i % len(targets)], args.profile, args.seed_base + i) for i in range(args.runs)]
    results: list[tuple[str, int, Run]] = []
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        for name, seed, run in pool.map(_one, jobs):
            results.append((name, seed, run))
            alarms = false_alarms(name, run)
            known = sorted(known_defects(name, run))
            alarm = (f"   FALSE ALARM: {', '.join(alarms)}" if alarms else "") + \
                (f"   known defect: {', '.join(known)}" if known else "")
            print(f"[{len(results):4d}/{args.runs}] {name:44s} seed {seed:6d} {run.seconds:6.1f} s "
                  f"worst {fmt_ratio(run.worst_ratio):>8s}{alarm}", flush=True)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200, help="number of checker runs (default 200)")
    parser.add_argument("--profile", default="default", choices=("quick", "default", "thorough"))
    parser.add_argument("--seed-base", type=int, default=1000, help="run i uses seed seed_base + i")
    parser.add_argument("--jobs", type=int, default=1, help="runs in parallel (separate processes)")
    parser.add_argument("--only", nargs="*", help="soak only the targets whose name contains one of these")
    parser.add_argument("--out", default=str(ROOT / "docs" / "soak.md"), help="markdown file ('-' for none)")
    parser.add_argument("--save", help="also write the raw runs to this JSON file")
    parser.add_argument("--load", help="render from runs saved with --save instead of running the checker")
    args = parser.parse_args(argv)
    if args.load:
        saved = json.loads(Path(args.load).read_text())
        results = [(r["target"], r["seed"], Run(**r["run"])) for r in saved["results"]]
        for key in ("runs", "profile", "seed_base", "jobs"):
            setattr(args, key, saved[key])
        seconds, environment = saved["seconds"], saved["environment"]
    else:
        start = time.perf_counter()
        results = soak(args)
        seconds, environment = time.perf_counter() - start, environment_line()
    if args.save:
        Path(args.save).write_text(json.dumps(
            {"results": [{"target": n, "seed": s, "run": dataclasses.asdict(r)} for n, s, r in results],
             "runs": args.runs,
             "profile": args.profile, "seed_base": args.seed_base, "jobs": args.jobs, "seconds": seconds,
             "environment": environment}, indent=1))
    text = render(results, args, seconds, environment)
    if args.out != "-":
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text)
        print(f"wrote {args.out}")
    return 0 if not any(false_alarms(n, r) for n, _, r in results) else 1


def _worst_is_known_defect(name: str, run: Run) -> bool:
    """Whether the run's worst judgement is the failure of a known defect (err/B > 1 on such a property)."""
    return run.worst_property in known_defects(name, run) and (run.worst_ratio or 0.0) > 1.0


def render(results: list[tuple[str, int, Run]], args: argparse.Namespace, seconds: float,
           environment: str) -> str:
    alarms = [(n, s, r) for n, s, r in results if false_alarms(n, r)]
    known = [(n, s, r) for n, s, r in results if known_defects(n, r)]
    lines = [
        "# False-alarm soak",
        "",
        f"Generated by `python benchmarks/soak.py --runs {args.runs} --profile {args.profile} "
        f"--seed-base {args.seed_base}`; do not edit by hand.",
        "",
        f"Environment: {environment}. Wall time {seconds:.0f} s with {args.jobs} job(s).",
        "",
        f"**{len(alarms)} run(s) with a false alarm in {len(results)} runs** (goal: 0 in >= 200); "
        f"{len(known)} run(s) failed only on a known defect of the target (listed below).",
        "",
        "Largest error / bound and headroom are over the judgements that are not known defects: a run whose "
        "worst judgement is a known defect's failure (err/B > 1 on a known-defect property) adds nothing to "
        "those columns; its failure is listed below. `-`: no such judgement (exceptions only).",
        "",
        as_row(["target", "runs", "false alarms", "known defects", "cases judged", "largest error / bound",
                "headroom", "worst property", "mean run (s)"]),
        as_row(["---"] * 9),
    ]
    for name in dict.fromkeys(n for n, _, _ in results):
        runs = [r for n, _, r in results if n == name]
        ratios = [r.worst_ratio for r in runs
                  if r.worst_ratio is not None and not _worst_is_known_defect(name, r)]
        worst = max(ratios) if ratios else None
        worst_prop = next((r.worst_property for r in runs if ratios and r.worst_ratio == worst), None)
        headroom = "-" if not worst else ("0" if math.isinf(worst) else f"{1 / worst:.3g}x")
        n_alarms = sum(bool(false_alarms(name, r)) for r in runs)
        n_known = sum(bool(known_defects(name, r)) for r in runs)
        lines.append(as_row([f"`{name}`", len(runs), n_alarms, n_known,
                             sum(r.cases for r in runs), fmt_ratio(worst), headroom, worst_prop or "-",
                             f"{sum(r.seconds for r in runs) / len(runs):.1f}"]))
    for title, listed in (("False alarms", alarms), ("Known defects of the targets", known)):
        if listed:
            lines += ["", f"## {title}", ""]
            for name, seed, r in listed:
                why = "; ".join(f"{k}: {v} (counterexample: {r.counterexamples.get(k) or '-'})"
                                for k, v in r.messages.items())
                lines.append(f"- `{name}` seed {seed}: {why}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
