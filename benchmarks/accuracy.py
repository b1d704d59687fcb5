"""The reference's accuracy in ulps against the exact rational oracle, on a fixed set of inputs.

    python benchmarks/accuracy.py [--quick] [--seeds 3] [--no-cases]

For every case of ``CASES`` at three seeds (``--quick``: the small subset ``QUICK``, one seed) the
reference (``gn_spec``) and the exact oracle (``gn_spec.derivations.oracle``, correctly rounded float64
values computed in rational arithmetic) evaluate the forward, the backward and the second order on the same
inputs; every result is compared element by element. Prints a markdown table, one row per quantity:
elements compared, how many were correctly rounded, how many were one float64 step away, how many were
farther, the largest error in ulps and the case that gave it; then the list of cases.

What is measured. For a computed value c and the oracle's correctly rounded value e of the exact real v:

- the ulp error ``oracle.ulp_error(c, e) = |c - e| / ulp(e)`` (ulp(e) = the float64 gap at |e| on the side
  away from zero, 2^-1074 at zero);
- the float64 steps between c and e: how many float64 numbers lie from e to c, counting c (0 when c = e;
  +0 and -0 are the same number).

c is correctly rounded when it equals e (0 steps, 0 ulp). c is faithful when it is one of the two float64
numbers around v; e is one of them, so a faithful c is e or a neighbour of e: at most 1 step, and at most
1 ulp (exactly 1 ulp for the neighbour inside e's binade, 1/2 ulp for the one below a power of two). An ulp
error of 1 is therefore a faithful result, not a failure. The reference claims faithful rounding (SPEC.md),
so the script fails (exit status 1) when any result is more than 1 step from e, or not finite where e is:
such a result cannot be faithful. (At most 1 step is necessary for faithfulness; it is not sufficient where
v is itself a float64, which only the oracle's internals know.)

Inputs come from ``gn_spec.strategies.Case`` and ``materialize`` (the checker's data recipes), are cast to the
case's dtype and passed as such to both sides (the reference takes float16/32/64 at their exact values). The
set covers group sizes from 1 to 10^4, LayerNorm (G = 1) and InstanceNorm (G = C) groupings, 0 to 3 spatial
dimensions, every affine choice, eps from 1e-10 to 1, a mean far from zero (|mean| / std up to 10^6 for
float32 and 10^12 for float64), variances close to eps, constant groups, magnitudes spread over six decades
and exact-statistics data, for float64, float32 and float16 inputs.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypedDict

import numpy as np

from gn_spec.strategies import Case, materialize

if TYPE_CHECKING:
    from typing import Unpack  # Python 3.11

#: The quantities compared, in the order of the table: forward, backward (VJP of the forward), second order
#: (VJP of the backward with respect to (grad_output, x, weight)).
QUANTITIES = ("output", "grad_input", "grad_weight", "grad_bias",
              "grad_grad_output", "grad_x (second order)", "grad_weight (second order)")


@dataclass(frozen=True)
class AccuracyCase:
    """One input of the benchmark: a label for the tables, the case's structure and the input dtype."""

    label: str
    case: Case
    dtype: str = "float64"


class _CaseFields(TypedDict, total=False):
    """The fields of :class:`gn_spec.strategies.Case` after shape and num_groups: the keywords of _c."""

    eps: float
    affine: str
    data: str
    seed: int
    log10_offset: int
    log10_scale: int
    grad_offset: float


def _c(what: str, shape: tuple[int, ...], groups: int, dtype: str = "float64",
       **kw: Unpack[_CaseFields]) -> AccuracyCase:
    """An AccuracyCase labelled ``what`` followed by its group size m."""
    case = Case(shape=shape, num_groups=groups, **kw)
    return AccuracyCase(f"{what} m={case.group_size}", case, dtype)


#: The fixed input set (seed 0 unless stated; ``Case.describe`` in the report gives the full recipe).
CASES: tuple[AccuracyCase, ...] = (
    # float64: groupings and shapes on plain N(0, 1) data
    _c("f64 plain", (4, 6), 6),
    _c("f64 plain weight only", (3, 6, 1), 3, affine="weight"),
    _c("f64 plain LayerNorm", (2, 6, 7), 1),
    _c("f64 plain InstanceNorm no affine", (2, 6, 5, 3), 6, affine="none"),
    _c("f64 plain grad mean -10", (2, 8, 5, 5), 4, grad_offset=-10.0),
    _c("f64 plain 3-D spatial bias only", (2, 6, 3, 4, 5), 3, affine="bias"),
    _c("f64 plain eps=1", (2, 9, 7), 3, eps=1.0),
    _c("f64 plain odd sizes", (2, 3, 37, 41), 3, seed=4),
    _c("f64 plain", (1, 2, 100, 100), 2),
    _c("f64 plain parallel kernels", (2, 8, 64, 64), 4),  # 2^16 elements: the reference's parallel build
    # float64: a mean far from zero (conditioning |mean| / std = 10^log10_offset)
    _c("f64 offset 1e6", (2, 8, 6, 6), 2, data="offset", log10_offset=6),
    _c("f64 offset 1e12", (2, 8, 6, 6), 4, data="offset", log10_offset=12, seed=1),
    _c("f64 offset 1e12 scale 1e-30", (2, 4, 9), 2, data="offset", log10_offset=12, log10_scale=-30),
    _c("f64 offset 1e12 scale 1e28", (2, 4, 9), 2, data="offset", log10_offset=12, log10_scale=28),
    _c("f64 offset 1e12", (1, 4, 50, 100), 2, data="offset", log10_offset=12, seed=2),
    _c("f64 offset 1e6 LayerNorm", (1, 3, 57, 59), 1, data="offset", log10_offset=6, seed=3),
    # float64: exact statistics, variance near eps, constant groups, magnitudes over six decades
    _c("f64 exact", (2, 8, 4, 4), 2, data="exact"),
    _c("f64 exact offset 1e12", (2, 8, 4, 4), 2, data="exact", log10_offset=12),
    _c("f64 near eps=1e-5", (2, 8, 5, 5), 4, data="near_eps"),
    _c("f64 near eps=1e-10 offset 1e6", (2, 8, 5, 5), 4, eps=1e-10, data="near_eps", log10_offset=6),
    _c("f64 near eps=0.1 offset 1e12", (2, 4, 30), 2, eps=0.1, data="near_eps", log10_offset=12),
    _c("f64 constant 1e-3", (2, 6, 4), 3, data="constant", log10_scale=-3),
    _c("f64 constant 1e3 eps=1e-10", (2, 6, 4), 3, eps=1e-10, data="constant", log10_scale=3),
    _c("f64 wide", (2, 6, 5, 5), 1, data="wide"),
    _c("f64 wide 1e-27", (2, 6, 10), 2, data="wide", log10_scale=-27),
    _c("f64 wide 1e37", (2, 6, 10), 2, data="wide", log10_scale=37),
    # float32 inputs
    _c("f32 plain", (2, 8, 6, 6), 4, "float32"),
    _c("f32 offset 1e6", (2, 8, 6, 6), 2, "float32", data="offset", log10_offset=6),
    _c("f32 offset 1e6 scale 1e6", (2, 4, 9), 2, "float32", data="offset", log10_offset=6, log10_scale=6),
    _c("f32 offset 1e6", (1, 2, 100, 100), 2, "float32", data="offset", log10_offset=6),
    _c("f32 offset 1e3 parallel kernels", (4, 4, 64, 64), 2, "float32", data="offset", log10_offset=3),
    _c("f32 exact offset 1e6", (2, 8, 4, 4), 2, "float32", data="exact", log10_offset=6),
    _c("f32 near eps=1e-5 offset 1e3", (2, 8, 5, 5), 4, "float32", data="near_eps", log10_offset=3),
    _c("f32 constant 1e3", (2, 6, 4), 3, "float32", data="constant", log10_scale=3),
    _c("f32 wide", (2, 6, 5, 5), 1, "float32", data="wide"),
    # float16 inputs (MAGNITUDES["float16"]: log10_scale + log10_offset <= 3)
    _c("f16 plain", (2, 8, 4, 4), 4, "float16"),
    _c("f16 offset 1e3", (2, 8, 4, 4), 2, "float16", data="offset", log10_offset=3),
    _c("f16 offset 1e6 scale 1e-3", (2, 8, 4, 4), 2, "float16", data="offset", log10_offset=6,
       log10_scale=-3),
    _c("f16 exact offset 1e3", (2, 8, 4, 4), 2, "float16", data="exact", log10_offset=3),
    _c("f16 near eps=1e-3 offset 1e2", (2, 8, 5, 5), 4, "float16", eps=1e-3, data="near_eps",
       log10_offset=2),
    _c("f16 constant 1e-3", (2, 6, 4), 3, "float16", data="constant", log10_scale=-3),
    _c("f16 wide", (2, 6, 5, 5), 1, "float16", data="wide"),
)

#: The ``--quick`` subset: small groups, one case per kind of data and dtype.
QUICK = ("f64 plain m=1", "f64 plain grad mean -10 m=50", "f64 offset 1e12 m=72",
         "f64 exact offset 1e12 m=64", "f64 near eps=1e-10 offset 1e6 m=50", "f64 constant 1e3 eps=1e-10 m=8",
         "f64 wide 1e-27 m=30", "f32 offset 1e6 m=144", "f16 offset 1e6 scale 1e-3 m=64")


def cases(quick: bool = False) -> list[AccuracyCase]:
    """The full case set, or the ``QUICK`` subset."""
    missing = set(QUICK) - {c.label for c in CASES}
    if missing:
        raise RuntimeError(f"QUICK names cases that CASES lacks: {sorted(missing)}")
    labels = [c.label for c in CASES]
    if len(set(labels)) != len(labels):
        raise RuntimeError("two cases of CASES have the same label")
    return [c for c in CASES if not quick or c.label in QUICK]


def float_steps(computed: np.ndarray, exact: np.ndarray) -> np.ndarray:
    """Per element, the number of float64 steps from ``exact`` to ``computed`` (0 when equal; +0 = -0).

    Finite float64 numbers map monotonically to integers: the bit pattern read as an int64 for x >= 0, and
    minus the bit pattern of |x| for x < 0 (so -0 and +0 both map to 0). The steps are the absolute difference
    of these integers, taken in uint64 on the magnitudes so that it cannot overflow. Meaningless where either
    value is NaN (callers look at the ulp error there).
    """
    c = np.ascontiguousarray(computed, dtype=np.float64).view(np.uint64) & np.uint64(0x7FFF_FFFF_FFFF_FFFF)
    e = np.ascontiguousarray(exact, dtype=np.float64).view(np.uint64) & np.uint64(0x7FFF_FFFF_FFFF_FFFF)
    same_side = (np.signbit(computed) == np.signbit(exact)) | (c == 0) | (e == 0)
    with np.errstate(over="ignore"):  # uint64 arithmetic: the non-chosen branches may wrap, harmlessly
        return np.where(same_side, np.where(c >= e, c - e, e - c), c + e)


def evaluate(case: Case, dtype: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """(computed, exact) per quantity of ``QUANTITIES`` for one case, both float64 arrays.

    The arrays are cast to ``dtype`` (exactly: ``materialize`` built them representable in it) and both the
    reference and the oracle receive the same arrays.
    """
    import gn_spec
    from gn_spec.derivations import oracle

    np_dtype = np.dtype(dtype)
    inputs = materialize(case, dtype)

    def cast(a: np.ndarray | None) -> np.ndarray | None:
        return None if a is None else a.astype(np_dtype)

    x, w, b, dy = cast(inputs.x), cast(inputs.weight), cast(inputs.bias), cast(inputs.grad_output)
    h, hw, hb = cast(inputs.grad_grad_input), cast(inputs.grad_grad_weight), cast(inputs.grad_grad_bias)
    g, eps = case.num_groups, case.eps
    computed = (gn_spec.group_norm(x, g, w, b, eps), *gn_spec.group_norm_backward(dy, x, g, w, eps),
                *gn_spec.group_norm_double_backward(h, hw, hb, dy, x, g, w, eps))
    exact = (oracle.group_norm(x, g, w, b, eps), *oracle.group_norm_backward(dy, x, g, w, eps),
             *oracle.group_norm_double_backward(h, hw, hb, dy, x, g, w, eps))
    return {q: (np.asarray(c, dtype=np.float64), np.asarray(e, dtype=np.float64))
            for q, c, e in zip(QUANTITIES, computed, exact, strict=True)}


@dataclass
class Tally:
    """The comparison of one quantity over all cases.

    ``rounded``: elements equal to the correctly rounded value; ``one_step``: elements one float64 step away
    (faithful-compatible, not correctly rounded); ``beyond``: elements farther or not finite where the exact
    value is (not faithful); ``worst_ulp`` the largest ulp error, found in case ``worst_case`` at index
    ``worst_index``.
    """

    quantity: str
    elements: int = 0
    rounded: int = 0
    one_step: int = 0
    beyond: int = 0
    worst_ulp: float = 0.0
    worst_case: str = "-"
    worst_index: tuple[int, ...] = ()
    failures: list[str] = field(default_factory=list)

    def add(self, label: str, computed: np.ndarray, exact: np.ndarray) -> int:
        """Count one case's elements of this quantity; return how many were not correctly rounded."""
        from gn_spec.derivations import oracle

        ulps = oracle.ulp_error(computed, exact)
        steps = float_steps(computed, exact)
        finite_ok = np.isfinite(computed) | ~np.isfinite(exact)
        exact_hit = ulps == 0
        near = ~exact_hit & (steps <= 1) & finite_ok & (ulps <= 1)
        far = ~exact_hit & ~near
        self.elements += computed.size
        self.rounded += int(exact_hit.sum())
        self.one_step += int(near.sum())
        self.beyond += int(far.sum())
        if computed.size and ulps.max() > self.worst_ulp:
            idx = np.unravel_index(int(np.argmax(ulps)), ulps.shape)
            self.worst_ulp = float(ulps[idx])
            self.worst_case, self.worst_index = label, tuple(int(i) for i in idx)
        for idx in np.argwhere(far)[:3]:
            i = tuple(int(k) for k in idx)
            self.failures.append(f"{self.quantity} in '{label}' at {i}: reference {float(computed[i])!r}, "
                                 f"correctly rounded {float(exact[i])!r} ({ulps[i]:.3g} ulp, "
                                 f"{int(steps[i])} steps)")
        return int((~exact_hit).sum())


@dataclass
class Result:
    """Everything the accuracy benchmark measured: per-quantity tallies, per-case sizes, wall time."""

    tallies: list[Tally]
    case_rows: list[tuple[AccuracyCase, int, int]]  # (case, elements of x, results not correctly rounded)
    seeds: int
    seconds: float

    @property
    def faithful(self) -> bool:
        return not any(t.beyond for t in self.tallies)


def measure(selected: list[AccuracyCase], seeds: int = 1, progress: bool = False) -> Result:
    """Compare the reference with the oracle on every selected case, each at ``seeds`` consecutive seeds
    from its own (``case.seed``, ``case.seed + 1``, ...); return the tallies."""
    tallies = {q: Tally(q) for q in QUANTITIES}
    rows = []
    start = time.perf_counter()
    for acase in selected:
        t0 = time.perf_counter()
        off = 0
        for k in range(seeds):
            case = dataclasses.replace(acase.case, seed=acase.case.seed + k)
            label = f"{acase.label} seed {case.seed}"
            off += sum(tallies[q].add(label, computed, exact)
                       for q, (computed, exact) in evaluate(case, acase.dtype).items())
        rows.append((acase, seeds * math.prod(acase.case.shape), off))
        if progress:
            print(f"  {acase.label:40s} {time.perf_counter() - t0:6.2f} s, {off} result(s) not correctly "
                  "rounded", file=sys.stderr, flush=True)
    return Result(list(tallies.values()), rows, seeds, time.perf_counter() - start)


def render(result: Result, show_cases: bool = True) -> str:
    """The markdown report: the per-quantity table, the failures if any, and the list of cases."""
    lines = [
        "| quantity | elements | correctly rounded | one step off | not faithful | max error (ulp) "
        "| worst case |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for t in result.tallies:
        share = t.rounded / t.elements if t.elements else math.nan
        worst = f"{t.worst_case} at {t.worst_index}" if t.worst_ulp > 0 else "-"
        lines.append(f"| {t.quantity} | {t.elements} | {t.rounded} ({100 * share:.3f} %) | {t.one_step} "
                     f"| {t.beyond} | {t.worst_ulp:.3g} | {worst} |")
    total = sum(t.elements for t in result.tallies)
    rounded = sum(t.rounded for t in result.tallies)
    verdict = ("**Faithful on every element** (goal: every result within one float64 step of the correctly "
               "rounded value)" if result.faithful else "**NOT FAITHFUL**: the results below are more than "
               "one float64 step from the correctly rounded value")
    lines += ["", f"{verdict}; {rounded} of {total} results correctly rounded "
              f"({100 * rounded / total:.3f} %). {len(result.case_rows)} cases at {result.seeds} seed(s) "
              f"each, {result.seconds:.1f} s."]
    failures = [f for t in result.tallies for f in t.failures]
    if failures:  # up to 3 per case and quantity, 30 in all
        lines += [""] + [f"- {f}" for f in failures[:30]]
        if len(failures) > 30:
            lines.append(f"- ... and {len(failures) - 30} more listed failures")
    if show_cases:
        seeds = "its seed" if result.seeds == 1 else f"seeds seed .. seed + {result.seeds - 1}"
        lines += ["", f"Cases (`gn_spec.strategies.Case`, built by `materialize` for the dtype), each run at "
                  f"{seeds}:", "",
                  "| case | dtype | elements of x (all seeds) | results not correctly rounded "
                  "| Case.describe() |",
                  "| --- | --- | --- | --- | --- |"]
        for acase, size, off in result.case_rows:
            lines.append(f"| {acase.label} | {acase.dtype} | {size} | {off} | {acase.case.describe()} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print its tables; exit status 1 if any result is not faithful."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help=f"only the {len(QUICK)} small cases of QUICK, one seed each")
    parser.add_argument("--seeds", type=int, default=3,
                        help="seeds per case (default 3: seed, seed + 1, seed + 2; --quick: 1)")
    parser.add_argument("--no-cases", action="store_true", help="omit the list of cases")
    args = parser.parse_args(argv)
    if args.seeds < 1:
        parser.error(f"--seeds {args.seeds} must be at least 1")
    result = measure(cases(args.quick), 1 if args.quick else args.seeds, progress=True)
    print(render(result, show_cases=not args.no_cases))
    return 0 if result.faithful else 1


if __name__ == "__main__":
    raise SystemExit(main())
