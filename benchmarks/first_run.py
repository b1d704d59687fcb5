"""The first run after an install against a warm one (issue 10, point 8), end to end as a user runs it.

    python benchmarks/first_run.py [--pairs 3] [--target torch] [--profile quick]

Each pair runs ``gn-spec check TARGET --profile PROFILE --seed 0`` twice with a fresh, empty numba cache
(NUMBA_CACHE_DIR in a temporary folder): the first run compiles the reference's kernels, as the first run
after ``pip install`` does, and the second finds them cached.  The table gives the median wall time of each
and the median of the differences.  Goal on a 2-core machine: the cold run at most 15 s longer than the warm
one.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from unittest import mock

from _check_process import timed_check

GOAL_S = 15.0


def pair(target: str, profile: str) -> tuple[float, float]:
    """Wall seconds of a cold and then a warm run, sharing one new numba cache."""
    with tempfile.TemporaryDirectory() as cache, mock.patch.dict(os.environ, {"NUMBA_CACHE_DIR": cache}):
        cold, _ = timed_check(target, "--profile", profile, "--seed", "0")
        warm, _ = timed_check(target, "--profile", profile, "--seed", "0")
    return cold, warm


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--target", default="torch")
    parser.add_argument("--profile", default="quick")
    args = parser.parse_args()
    runs = [pair(args.target, args.profile) for _ in range(args.pairs)]
    cold = statistics.median(c for c, _ in runs)
    warm = statistics.median(w for _, w in runs)
    extra = statistics.median(c - w for c, w in runs)
    print(f"`gn-spec check {args.target} --profile {args.profile} --seed 0`, {args.pairs} pairs, medians\n")
    print("| run | wall time |\n|---|---|")
    print(f"| cold (empty numba cache) | {cold:.1f} s |")
    print(f"| warm (kernels cached) | {warm:.1f} s |")
    print(f"| cold - warm | {extra:.1f} s (goal: <= {GOAL_S:g} s) |")


if __name__ == "__main__":
    main()
