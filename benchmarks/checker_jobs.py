"""``--jobs 1`` against ``--jobs 2`` (and more), side by side: wall time of ``gn-spec check`` end to end.

    python benchmarks/checker_jobs.py                                    # default profile, torch, seeds 0 1 2
    python benchmarks/checker_jobs.py --target reference --dtype float64 --jobs 1 2 --seeds 0 1 2 3 4

Each run is a fresh ``python -m gn_spec.cli check TARGET --profile P --seed S --jobs N`` process; the table
gives, per N, the median wall time over the seeds, the slowest and fastest, and the speed-up on N=1's median.
The last column says whether the run's --json report, timings and counters apart (the fields
tests/test_jobs.py drops), was that of the first N for every seed.  The machine's load is printed with it:
on a shared 2-core machine other processes take CPU from the jobs, and the figures say so.
"""

from __future__ import annotations

import argparse
import os
import statistics
from typing import Any

from _check_process import timed_check

#: The fields that measure the run, not judge the target (as tests/test_jobs.py's RUN_MEASUREMENTS).
MEASUREMENTS = ("timestamp", "command")


def _judged(report: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in report.items() if k not in MEASUREMENTS}
    out["summary"] = {k: v for k, v in report["summary"].items() if k != "seconds"}
    counters = ("worker_starts", "calls", "jobs", "jobs_auto", "shared_programs")
    out["environment"] = {k: v for k, v in report["environment"].items() if k not in counters}
    out["properties"] = [{k: v for k, v in p.items() if k != "seconds"} for p in report["properties"]]
    return out


def run(target: str, profile: str, dtype: str, seed: int, jobs: int) -> tuple[float, dict[str, Any]]:
    """One end-to-end check: its wall time and its --json report."""
    return timed_check(
        target, "--profile", profile, "--dtype", dtype, "--seed", str(seed), "--jobs", str(jobs)
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", default="torch")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--profile", default="default")
    parser.add_argument("--jobs", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"gn-spec check {args.target} --profile {args.profile} --dtype {args.dtype}, seeds {args.seeds}  "
        f"(os.cpu_count()={os.cpu_count()}, 1-minute load average at start {load:.1f})"
    )
    times: dict[int, list[float]] = {n: [] for n in args.jobs}
    same: dict[int, bool] = {n: True for n in args.jobs}
    cases: dict[int, int] = {}
    for seed in args.seeds:
        first: dict[str, Any] | None = None
        for n in args.jobs:  # interleaved, so that a change in the machine's load hits every N alike
            seconds, report = run(args.target, args.profile, args.dtype, seed, n)
            times[n].append(seconds)
            cases[n] = cases.get(n, 0) + report["summary"]["cases"]
            judged = _judged(report)
            first = judged if first is None else first
            same[n] = same[n] and judged == first
    base = statistics.median(times[args.jobs[0]])
    header = f"{'jobs':>4} {'median s':>9} {'min s':>7} {'max s':>7} {'speed-up':>9} {'cases':>7}  same"
    header += " report"
    print(header)
    print("-" * len(header))
    for n in args.jobs:
        median = statistics.median(times[n])
        print(
            f"{n:4d} {median:9.1f} {min(times[n]):7.1f} {max(times[n]):7.1f} {base / median:9.2f} "
            f"{cases[n]:7d}  {'yes' if same[n] else 'NO'}"
        )
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"1-minute load average at the end: {load:.1f}")


if __name__ == "__main__":
    main()
