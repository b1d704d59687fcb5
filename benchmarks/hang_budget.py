"""Time to verdict for targets that hang (issue 10, point 3), end to end as a user runs ``gn-spec check``.

    python benchmarks/hang_budget.py                 # default profile, --timeout 10, seeds 0 1 2
    python benchmarks/hang_budget.py --seeds 0 --timeout 5

Two targets from tests/targets/hangs.py: one that never returns on 2-D input with more than one group
(``--dtype float64``), one that never returns at all.  Goals on a 2-core machine: the first rejected within
60 s with every other property run and reported; the second within about two timeouts plus start-up.  The
table gives wall time (median over the seeds), hung calls, properties failed / run, and the verdict.
"""

from __future__ import annotations

import argparse
import os
import statistics

from _check_process import timed_check

HERE = os.path.dirname(os.path.abspath(__file__))
HANGS = os.path.join(os.path.dirname(HERE), "tests", "targets", "hangs.py")
TARGETS = (("hangs_on_2d_groups", ("--dtype", "float64")), ("hangs_always", ()))


def run(function: str, more: tuple[str, ...], seed: int, timeout: float, profile: str) -> dict[str, object]:
    seconds, report = timed_check(
        f"{HANGS}:{function}", *more, "--profile", profile, "--timeout", f"{timeout:g}", "--seed", str(seed)
    )
    ran = [p for p in report["properties"] if p["status"] != "not applicable"]
    return {
        "seconds": seconds,
        "hung": report["environment"]["hung_calls"],
        "failed": f"{sum(p['status'] == 'failed' for p in ran)} / {len(ran)}",
        "verdict": report["verdict"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--timeout", type=float, default=10.0)
    parser.add_argument("--profile", default="default")
    args = parser.parse_args()
    print(f"profile {args.profile}, --timeout {args.timeout:g}, seeds {args.seeds}\n")
    print(
        f"{'target':<20} {'median s':>9} {'min s':>7} {'max s':>7} {'hung calls':>11} "
        f"{'failed/run':>11}  verdict"
    )
    for function, more in TARGETS:
        rows = [run(function, more, s, args.timeout, args.profile) for s in args.seeds]
        times = [float(r["seconds"]) for r in rows]  # type: ignore[arg-type]
        hung = "/".join(str(r["hung"]) for r in rows)
        print(
            f"{function:<20} {statistics.median(times):9.1f} {min(times):7.1f} {max(times):7.1f} {hung:>11} "
            f"{rows[0]['failed']:>11}  {rows[0]['verdict']}"
        )


if __name__ == "__main__":
    main()
