"""Time to verdict and judged cases of each checker profile, end to end (``gn-spec check`` as a user runs it).

    python benchmarks/checker_profiles.py                      # quick and default against torch
    python benchmarks/checker_profiles.py --profiles quick default thorough --target reference --dtype float64

Each run is a fresh ``python -m gn_spec.cli check TARGET --profile P --seed S`` process (interpreter start,
worker start and torch import included); the table gives its wall time, the cases judged (from its --json
report), cases per second, and the verdict with the failed properties.  The issue's budgets on a 2-core
machine: quick <= 10 s, default <= 60 s with >= 2000 judged cases, thorough minutes.
"""

from __future__ import annotations

import argparse
import os

from _check_process import timed_check

BUDGETS = {"quick": "<= 10 s", "default": "<= 60 s, >= 2000 cases", "thorough": "minutes"}


def run(target: str, profile: str, dtype: str, seed: int, *options: str) -> dict[str, object]:
    """One end-to-end check (``options``: more of gn-spec check's, e.g. ``--deviations FILE``); returns its
    row of the table, with the cases backward_agreement judged (0 where it did not run)."""
    seconds, report = timed_check(
        target, "--profile", profile, "--dtype", dtype, "--seed", str(seed), *options
    )
    failed = [p["name"] for p in report["properties"] if p["status"] == "failed"]
    cases = report["summary"]["cases"]
    backward = next((p["cases"] for p in report["properties"] if p["name"] == "backward_agreement"), 0)
    return {
        "profile": profile,
        "seconds": seconds,
        "cases": cases,
        "backward_cases": backward,
        "rate": cases / seconds,
        "verdict": report["verdict"],
        "failed": ", ".join(failed) or "-",
        "budget": BUDGETS[profile],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", default="torch")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--profiles", nargs="+", default=["quick", "default"], choices=list(BUDGETS))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(
        f"gn-spec check {args.target} --dtype {args.dtype} --seed {args.seed}  "
        f"(os.cpu_count()={os.cpu_count()}, torch threads as configured)"
    )
    header = f"{'profile':9} {'seconds':>8} {'cases':>7} {'cases/s':>8}  {'budget':24} {'verdict':17} failed"
    print(header)
    print("-" * len(header))
    for profile in args.profiles:
        r = run(args.target, profile, args.dtype, args.seed)
        print(
            f"{r['profile']:9} {r['seconds']:8.1f} {r['cases']:7d} {r['rate']:8.1f}  {r['budget']:24} "
            f"{r['verdict']:17} {r['failed']}"
        )


if __name__ == "__main__":
    main()
