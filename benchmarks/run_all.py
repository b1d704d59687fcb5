"""Every gn-spec benchmark in one command, written to one markdown file with each goal beside its measurement.

    python benchmarks/run_all.py [--out docs/benchmarks.md] [--quick] [--fresh-kill-matrix] [--seed 0]

Runs, one after another (in this process and the checker processes it starts):

1. Time to verdict and judged cases per second of each checker profile: ``gn-spec check torch --dtype
   float32``, ``gn-spec check reference --dtype float64`` and ``gn-spec check torch --deviations
   examples/torch-2.13-deviations.toml``, quick and default profiles, end to end (``checker_profiles.run``).
   Goals: quick <= 10 s; default <= 60 s with >= 2000 judged cases.
2. The reference's speed and memory beside PyTorch and the naive numpy formula (``reference_speed.measure``;
   goals as stated there).
3. The reference's accuracy in ulps against the exact rational oracle (``accuracy.measure``; goal: faithful,
   every result within one float64 step of the correctly rounded value).
4. Time until rejection of every faulty implementation of the catalogue (goal: median <= 5 s), from the raw
   runs saved by ``kill_matrix.py --save`` (``docs/kill-matrix-runs.json``; the report says when that file was
   generated), or with ``--fresh-kill-matrix`` by running the kill matrix again (about 15 minutes on 2 cores).

``--quick`` is a smoke run of the same report (about 15 s): the quick profile only, 5 timing repeats, the
accuracy subset ``accuracy.QUICK`` at one seed. The full run takes about 2 to 3 minutes on 2 cores, mostly
the two default-profile checks (plus about 15 minutes with ``--fresh-kill-matrix``). Exit status 1 when the
reference is not faithful somewhere or the kill matrix has an unexpected verdict (a faulty implementation
accepted, a correct one rejected); a missed time goal is reported, not failed (these are benchmarks, not
timed tests).
"""

from __future__ import annotations

import argparse
import datetime
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import accuracy  # noqa: E402 - the sibling modules are found through the path set above
import checker_profiles  # noqa: E402
import kill_matrix  # noqa: E402
import reference_speed  # noqa: E402
from _catalogue_runs import ROOT, Run, as_row, catalogue, environment_line, fmt_seconds, median  # noqa: E402

SAVED_RUNS = ROOT / "docs" / "kill-matrix-runs.json"
#: (target, dtype, more options) whose profiles are timed; the third is issue 10's adopter run (PyTorch's
#: known deviations declared, its gradients judged on every other input).
PROFILE_TARGETS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("torch", "float32", ()),
    ("reference", "float64", ()),
    ("torch", "float32", ("--deviations", str(ROOT / "examples" / "torch-2.13-deviations.toml"))),
)
#: Goals of the checker's profiles (issue: quick in seconds, default within a minute with >= 2000 cases).
PROFILE_LIMITS = {"quick": (10.0, 0), "default": (60.0, 2000)}
REJECTION_GOAL = 5.0  # seconds, the median time until rejection


def _met(ok: bool) -> str:
    return "yes" if ok else "**no**"


def _progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------------ checker profiles


def profiles_section(profiles: list[str], seed: int) -> tuple[list[str], list[list[str]]]:
    """Time every (target, profile) end to end; return the section's lines and its goal rows."""
    lines = ["## Time to verdict and judged cases per second", "",
             f"`gn-spec check TARGET --dtype D --profile P --seed {seed}` as a user runs it: a fresh "
             "process, interpreter, worker start and torch import included. Goals: quick <= 10 s; default "
             "<= 60 s with >= 2000 judged cases. The verdict is the checker's on the target: a `does not "
             "conform` on `torch` reports PyTorch's known defects (README, SPEC.md 3.11), not a benchmark "
             "failure; with `--deviations examples/torch-2.13-deviations.toml` they are declared, and "
             "backward_agreement goes on judging PyTorch's gradients on every other input.", "",
             as_row(["target", "dtype", "options", "profile", "seconds", "judged cases",
                     "backward_agreement cases", "cases/s", "goal", "met", "verdict", "failed properties"]),
             as_row(["---"] * 12)]
    goals = []
    for target, dtype, options in PROFILE_TARGETS:
        shown = " ".join(Path(o).name if o.endswith(".toml") else o for o in options)
        for profile in profiles:
            _progress(f"  gn-spec check {target} --dtype {dtype} --profile {profile} --seed {seed} {shown}")
            r = checker_profiles.run(target, profile, dtype, seed, *options)
            seconds, cases = float(str(r["seconds"])), int(str(r["cases"]))
            limit, min_cases = PROFILE_LIMITS[profile]
            ok = seconds <= limit and cases >= min_cases
            lines.append(as_row([f"`{target}`", dtype, f"`{shown}`" if shown else "-", profile,
                                 f"{seconds:.1f}", cases, r["backward_cases"], f"{cases / seconds:.0f}",
                                 r["budget"], _met(ok), r["verdict"], r["failed"]]))
            what = f"checker `{profile}` profile, `{target}` {dtype}" + (f" `{shown}`" if shown else "")
            goals.append([what, f"{seconds:.1f} s, {cases} cases", str(r["budget"]), _met(ok)])
    return lines, goals


# ------------------------------------------------------------------------------------------ reference speed


def speed_section(repeats: int, threads: int, tiny_repeats: int) -> tuple[list[str], list[list[str]]]:
    """The reference's speed table; return the section's lines and its goal rows."""
    m = reference_speed.measure(repeats, threads, tiny_repeats)
    shape = "x".join(map(str, reference_speed.SHAPE))
    lines = ["## Reference speed and memory", "",
             f"`reference_speed.py`: forward + backward on a {shape} float64 tensor ({m['mib']:.1f} MiB), "
             f"G = {reference_speed.GROUPS}, medians of {repeats} runs; the tiny input's times are medians "
             f"of {tiny_repeats} calls. Threads: {threads} (numba, torch); numpy's elementwise code is "
             "single-threaded.", "",
             *reference_speed.table(m)]
    names = {"vs_torch": "reference / torch speed ratio", "vs_naive": "reference / naive numpy speed ratio",
             "memory": "reference peak extra memory / input", "tiny_forward": "reference forward on 2x4x3x3"}
    goals = []
    for key, name in names.items():
        value = f"{m[key] * 1e6:.0f} us" if key == "tiny_forward" else f"{m[key]:.2f}x"
        goals.append([name, value, reference_speed.GOALS[key], _met(m[key] <= reference_speed.LIMITS[key])])
    return lines, goals


# ------------------------------------------------------------------------------------------ accuracy


def accuracy_section(quick: bool) -> tuple[list[str], list[list[str]], bool]:
    """The accuracy table; return the section's lines, its goal row and whether the reference was faithful."""
    selected = accuracy.cases(quick)
    result = accuracy.measure(selected, seeds=1 if quick else 3, progress=True)
    lines = ["## Reference accuracy against the exact oracle", "",
             "`accuracy.py`: the reference (`gn_spec`) against `gn_spec.derivations.oracle` (correctly "
             "rounded float64 values from exact rational arithmetic), element by element. *Correctly "
             "rounded*: equal to the oracle's value (0 ulp). *One step off*: the neighbouring float64 (at "
             "most 1 ulp; a faithful result may be this). *Not faithful*: farther, which a faithful result "
             "never is. Goal: faithful everywhere (SPEC.md).", "",
             accuracy.render(result)]
    total = sum(t.elements for t in result.tallies)
    rounded = sum(t.rounded for t in result.tallies)
    worst = max(t.worst_ulp for t in result.tallies)
    goal = ["reference accuracy (ulp vs exact oracle)",
            f"max {worst:.3g} ulp; {rounded} / {total} correctly rounded",
            "faithful (within one float64 step)", _met(result.faithful)]
    return lines, [goal], result.faithful


# ------------------------------------------------------------------------------ time until rejection


def _generated_when(path: Path) -> str:
    """When ``path`` was generated: its last commit date if it is committed unchanged, else its mtime."""
    try:
        dirty = subprocess.run(["git", "status", "--porcelain", "--", str(path)], cwd=ROOT,
                               capture_output=True, text=True, check=True).stdout.strip()
        date = subprocess.run(["git", "log", "-1", "--format=%cI %h", "--", str(path)], cwd=ROOT,
                              capture_output=True, text=True, check=True).stdout.strip()
        if date and not dirty:
            return f"committed {date}"
    except (OSError, subprocess.CalledProcessError):
        pass
    mtime = datetime.datetime.fromtimestamp(path.stat().st_mtime, tz=datetime.timezone.utc)
    return f"file modified {mtime.isoformat(timespec='seconds')}"


def rejection_section(fresh: bool, runs_file: Path, seed: int) -> tuple[list[str], list[list[str]], bool]:
    """Time until rejection of the faulty implementations; return lines, goal row, whether verdicts were as
    expected (faulty rejected, correct accepted)."""
    entries = list(catalogue.ALL)
    results: list[tuple[Any, Run]]
    run_seed: int | None
    if fresh:
        start = time.perf_counter()
        results = kill_matrix.run_all(entries, "default", seed)
        seconds, profile, run_seed = time.perf_counter() - start, "default", seed
        source = (f"Measured now: the kill matrix run afresh (`--fresh-kill-matrix`), profile `{profile}`, "
                  f"seed `{run_seed}`, {seconds:.0f} s in all.")
    else:
        results, seconds, profile, run_seed = kill_matrix.load(runs_file, entries)
        shown = runs_file.relative_to(ROOT) if runs_file.is_relative_to(ROOT) else runs_file
        source = (f"From the saved runs `{shown}` ({_generated_when(runs_file)}; written by "
                  f"`python benchmarks/kill_matrix.py --save`, profile `{profile}`, seed `{run_seed}`, "
                  f"{seconds:.0f} s in all). `--fresh-kill-matrix` measures them again (about 15 minutes).")
    missing = [e.name for e in entries if e.name not in {r.name for _, r in results}]
    faulty = [(e, r) for e, r in results if not e.correct]
    correct = [(e, r) for e, r in results if e.correct]
    rejected = [r for _, r in faulty if not r.conforms]
    times = [r.seconds_to_rejection for r in rejected if r.seconds_to_rejection is not None]
    med = median(times)
    ok = med <= REJECTION_GOAL
    expected = all(r.conforms == e.correct for e, r in results)
    lines = ["## Time until rejection of the faulty implementations", "",
             source, "",
             "Time until rejection: from the start of the checker run until the first failing property "
             "finished (its shrinking included). The full matrix (which properties caught each) is in "
             "[kill-matrix.md](kill-matrix.md).", "",
             f"**Rejected {len(rejected)} / {len(faulty)} faulty implementations; median time until "
             f"rejection {med:.1f} s (goal <= {REJECTION_GOAL:g} s: {'met' if ok else 'NOT met'}), max "
             f"{max(times) if times else float('nan'):.1f} s.** Correct implementations accepted: "
             f"{sum(r.conforms for _, r in correct)} / {len(correct)}."]
    if missing:
        lines += ["", f"Catalogue entries without a saved run (added after the file was generated): "
                  f"{', '.join(f'`{n}`' for n in missing)}."]
    lines += ["", as_row(["implementation", "api", "dtype", "first failing property", "to rejection (s)",
                          "whole run (s)", "judged cases", "cases/s"]),
              as_row(["---"] * 8)]
    for e, r in faulty:
        lines.append(_rejection_row(e, r))
    goal = ["time until rejection (faulty implementations)",
            f"median {med:.1f} s, max {max(times) if times else float('nan'):.1f} s, "
            f"{len(rejected)} / {len(faulty)} rejected", f"median <= {REJECTION_GOAL:g} s", _met(ok)]
    return lines, [goal], expected


def _rejection_row(entry: Any, run: Run) -> str:
    first = run.failed[0] if run.failed else "**not rejected**"
    rate = f"{run.cases / run.seconds:.0f}" if run.seconds else "-"
    return as_row([f"`{Path(entry.path).stem}`", entry.api, entry.dtype, first,
                   fmt_seconds(run.seconds_to_rejection), f"{run.seconds:.1f}", run.cases, rate])


# ------------------------------------------------------------------------------------------ the report


def command_line(args: argparse.Namespace) -> str:
    """The command that regenerates the report (the output path left out)."""
    parts = ["python benchmarks/run_all.py"]
    if args.quick:
        parts.append("--quick")
    if args.fresh_kill_matrix:
        parts.append("--fresh-kill-matrix")
    if args.seed:
        parts.append(f"--seed {args.seed}")
    if Path(args.kill_matrix_runs).resolve() != SAVED_RUNS:
        parts.append(f"--kill-matrix-runs {args.kill_matrix_runs}")
    return " ".join(parts)


def main(argv: list[str] | None = None) -> int:
    """Run every benchmark, write the markdown report; exit 1 on an accuracy or verdict failure."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "docs" / "benchmarks.md"), help="markdown file to write")
    parser.add_argument("--quick", action="store_true",
                        help="quick profile only, 5 timing repeats, the small accuracy subset")
    parser.add_argument("--fresh-kill-matrix", action="store_true",
                        help="run the kill matrix again instead of loading the saved runs (about 15 minutes)")
    parser.add_argument("--kill-matrix-runs", default=str(SAVED_RUNS),
                        help="saved kill-matrix runs to load (default docs/kill-matrix-runs.json)")
    parser.add_argument("--seed", type=int, default=0, help="checker seed of the timed runs (default 0)")
    args = parser.parse_args(argv)
    if not args.fresh_kill_matrix and not Path(args.kill_matrix_runs).is_file():
        parser.error(f"--kill-matrix-runs {args.kill_matrix_runs}: no such file (write one with "
                     "`python benchmarks/kill_matrix.py --save FILE`, or pass --fresh-kill-matrix)")
    threads = min(2, os.cpu_count() or 1)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    start = time.perf_counter()
    goals: list[list[str]] = []

    _progress("[1/4] checker profiles")
    profile_lines, g = profiles_section(["quick"] if args.quick else ["quick", "default"], args.seed)
    goals += g
    _progress("[2/4] reference speed")
    speed_lines, g = speed_section(5 if args.quick else 15, threads, 200 if args.quick else 2000)
    goals += g
    _progress("[3/4] reference accuracy")
    accuracy_lines, g, faithful = accuracy_section(args.quick)
    goals += g
    _progress("[4/4] time until rejection" + (" (running the kill matrix)" if args.fresh_kill_matrix else ""))
    runs_file = Path(args.kill_matrix_runs).resolve()
    rejection_lines, g, expected = rejection_section(args.fresh_kill_matrix, runs_file, args.seed)
    goals += g

    lines = ["# Benchmarks", "",
             f"Generated by `{command_line(args)}`; do not edit by hand.", "",
             f"Environment: {environment_line()}. Generated "
             f"{datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds')}, "
             f"wall time {time.perf_counter() - start:.0f} s; load average {load:.1f} at the start (a loaded "
             "machine makes timings slower and noisier)."
             + (" `--quick`: quick profile only, fewer repeats, the small accuracy subset." if args.quick
                else ""), "",
             "## Goals", "",
             as_row(["benchmark", "measured", "goal", "met"]), as_row(["---"] * 4),
             *[as_row(row) for row in goals], "",
             *profile_lines, "", *speed_lines, "", *accuracy_lines, "", *rejection_lines]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    _progress(f"wrote {out}")
    if not faithful:
        _progress("FAILED: the reference is not faithful on some result (see the accuracy section)")
    if not expected:
        _progress("FAILED: the kill matrix has an unexpected verdict (see kill_matrix.py's report)")
    return 0 if faithful and expected else 1


if __name__ == "__main__":
    raise SystemExit(main())
