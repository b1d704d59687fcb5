"""How evenly the default profile covers the data recipes and conditioning decades, and what that costs.

    python benchmarks/generation_coverage.py [--profile default] [--seeds 20] [--dtypes float16 ...]
                                             [--detect] [--out FILE.md]

Part 1 (always): the cases forward_agreement is fed (``PropertySpec.cases(config)``) are drawn by Hypothesis's
generate phase exactly as many times as the profile's examples budget, for each of ``--seeds`` property seeds,
and counted by cell: data recipe x log10 of |mean|/std (the ``log10_offset`` decade, for the recipes that have
one).  The table shows, per dtype and cell, the median and smallest count over the seeds and in how many seeds
the cell was never drawn.  (The runner's target phase then climbs towards large errors, so a real run's mix
differs; this measures what the generate phase offers it.)

Part 2 (``--detect``): a one-pass variance clamped at zero, computed in float32 from float16 input (what
flax's default ``use_fast_variance=True`` does, flax ``linen/normalization.py``), checked by forward_agreement
at float16 under each seed: how many seeds find it.  Issue 13 asks for 19 of 20.

Measured (docs/generation-coverage.md): 13 of 20.  An explicit sweep of one small case per recipe and decade
before the random cases (tried, not kept) raised it only to 15 of 20: at float16 the bound grows with
|mean|/std (the input's own rounding moves y by about kappa u), so this defect fails only where the float32
E[x^2] - E[x]^2 cancels to zero and is clamped, which depends on the values within a cell, not on the cell.
"""

from __future__ import annotations

import argparse
import collections
import os
import statistics
import sys
import tempfile
import textwrap

import hypothesis
from hypothesis import HealthCheck, Phase, given, settings

from gn_spec.checker import run_check
from gn_spec.checker.target import make_config
from gn_spec.formats import NAMES
from gn_spec.profiles import PROFILE_NAMES, PROFILES
from gn_spec.properties import catalogue
from gn_spec.strategies import Case

DECADE_RECIPES = ("offset", "near_eps", "exact")

FLAX_LIKE = textwrap.dedent(
    '''
    import numpy as np


    def group_norm(x, num_groups, weight=None, bias=None, eps=1e-5):
        """float32 statistics, var = max(0, E[x^2] - E[x]^2), output in the input dtype."""
        n, c = x.shape[:2]
        xf = x.astype(np.float32).reshape(n, num_groups, -1)
        mean = xf.mean(-1, keepdims=True)
        var = np.maximum(0.0, (xf * xf).mean(-1, keepdims=True) - mean * mean)
        y = ((xf - mean) / np.sqrt(var + np.float32(eps))).reshape(x.shape)
        shape = (1, c) + (1,) * (x.ndim - 2)
        if weight is not None:
            y = y * weight.astype(np.float32).reshape(shape)
        if bias is not None:
            y = y + bias.astype(np.float32).reshape(shape)
        return y.astype(x.dtype)
    '''
)


def cell_counts(profile: str, dtype: str, seed: int) -> collections.Counter[tuple[str, int | None]]:
    """Cells of the cases forward_agreement's strategy yields in one generate phase of ``profile``."""
    config = make_config("reference", dtype=dtype, profile=profile, seed=seed)
    (spec,) = [p for p in catalogue() if p.name == "forward_agreement"]
    counts: collections.Counter[tuple[str, int | None]] = collections.Counter()

    @hypothesis.seed(seed)
    @settings(
        max_examples=PROFILES[profile].budget.examples,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
        deadline=None,
    )
    @given(spec.cases(config))
    def draw(case: Case) -> None:
        counts[(case.data, case.log10_offset if case.data in DECADE_RECIPES else None)] += 1

    draw()
    return counts


def coverage_table(profile: str, dtypes: list[str], seeds: int) -> str:
    lines = [
        f"Cells drawn by forward_agreement's generate phase, profile {profile}, {seeds} seeds "
        f"({PROFILES[profile].budget.examples} examples each)",
        "",
        "| dtype | recipe | decade of abs(mean)/std | median cases | fewest | seeds without it |",
        "|---|---|---|---|---|---|",
    ]
    for dtype in dtypes:
        runs = [cell_counts(profile, dtype, s) for s in range(seeds)]
        cells = sorted({c for r in runs for c in r}, key=lambda c: (c[0], -1 if c[1] is None else c[1]))
        for recipe, decade in cells:
            per_seed = [r.get((recipe, decade), 0) for r in runs]
            lines.append(
                f"| {dtype} | {recipe} | {'-' if decade is None else f'1e{decade}'} | "
                f"{statistics.median(per_seed):g} | {min(per_seed)} | {sum(1 for n in per_seed if n == 0)} |"
            )
    return "\n".join(lines) + "\n"


def detection_table(profile: str, seeds: int) -> str:
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "flax_like.py")
        with open(path, "w") as f:
            f.write(FLAX_LIKE)
        found = []
        for seed in range(seeds):
            report = run_check(
                f"{path}:group_norm",
                dtype="float16",
                profile=profile,
                seed=seed,
                properties=["forward_agreement"],
            )
            (result,) = report.properties
            found.append(result.status == "failed")
            print(f"seed {seed}: forward_agreement {result.status} ({result.cases} cases)", file=sys.stderr)
    return (
        f"One-pass variance clamped at 0 (float32 statistics, float16 data), forward_agreement, profile "
        f"{profile}: found in {sum(found)} of {seeds} seeds (goal: 19 of 20)\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="default", choices=PROFILE_NAMES)
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--dtypes", nargs="*", default=list(NAMES), choices=NAMES)
    parser.add_argument("--detect", action="store_true", help="also measure detection of a flax-like defect")
    parser.add_argument("--out", default="-", help="markdown file ('-': stdout only)")
    args = parser.parse_args()
    text = coverage_table(args.profile, args.dtypes, args.seeds)
    if args.detect:
        text += "\n" + detection_table(args.profile, args.seeds)
    print(text)
    if args.out != "-":
        with open(args.out, "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
