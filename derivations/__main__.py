"""``python -m gn_spec.derivations``: re-derive and verify everything, print a report, exit 1 on any failure.

    python -m gn_spec.derivations                     # all proofs (every m, m = 1..6, LayerNorm/InstanceNorm)
    python -m gn_spec.derivations --max-m 4           # fixed-m proofs up to 4 only (faster)
    python -m gn_spec.derivations --write-spec [PATH] # prove, then rewrite SPEC.md's generated block
    python -m gn_spec.derivations --check-spec PATH   # only: is PATH's generated block up to date?
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from gn_spec.derivations import proofs, spec


def _scopes(scopes: list[str]) -> str:
    """'every m; m = 1..6; tensor (2, 4, 3)' from the scopes of one check, runs of m collapsed."""
    ms = sorted(int(s.split("=")[1]) for s in scopes if s.startswith("m = "))
    others = [s for s in scopes if not s.startswith("m = ")]
    parts = [s for s in others if s == "every m"]
    if ms:
        contiguous = ms == list(range(ms[0], ms[-1] + 1))
        listed = f"{ms[0]}..{ms[-1]}" if contiguous and len(ms) > 1 else ", ".join(map(str, ms))
        parts.append(f"m = {listed}")
    parts += [s for s in others if s != "every m"]
    return "; ".join(parts)


def report(results: list[proofs.Result]) -> str:
    """One line per check: PROVED or FAILED, the check, the scopes; failures name their scope."""
    names: dict[str, list[proofs.Result]] = {}
    for r in results:
        names.setdefault(r.name, []).append(r)
    lines = []
    for name, rs in names.items():
        failed = [r.scope for r in rs if not r.proved]
        status = "PROVED" if not failed else "FAILED"
        detail = _scopes([r.scope for r in rs if r.proved])
        if failed:
            detail = f"failed for {_scopes(failed)}" + (f"; proved for {detail}" if detail else "")
        lines.append(f"{status}  {name:<52} {detail}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gn_spec.derivations", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--max-m", type=int, default=spec.MAX_M, help="largest fixed m (default %(default)s)")
    parser.add_argument("--write-spec", nargs="?", const="SPEC.md", metavar="PATH",
                        help="after the proofs pass, rewrite the generated block of PATH (default SPEC.md)")
    parser.add_argument("--check-spec", metavar="PATH",
                        help="only check that PATH's generated block is up to date (exit 1 if not)")
    args = parser.parse_args(argv)

    if args.check_spec is not None:
        path = Path(args.check_spec)
        if spec.block_is_current(path):
            print(f"{path}: generated gradients block is up to date")
            return 0
        print(f"{path}: generated gradients block is OUT OF DATE; "
              "run python -m gn_spec.derivations --write-spec")
        return 1

    if args.max_m < 1:
        parser.error(f"--max-m={args.max_m} must be at least 1")
    if args.write_spec is not None and args.max_m < spec.MAX_M:
        parser.error(f"--write-spec states proofs for m = 1..{spec.MAX_M}; not with --max-m={args.max_m}")
    start = time.perf_counter()
    results = proofs.run_checks(proofs.all_checks(max_m=args.max_m, consistency_m=min(3, args.max_m)))
    print(report(results))
    failed = sum(not r.proved for r in results)
    print(f"{len(results) - failed}/{len(results)} checks proved in {time.perf_counter() - start:.1f} s")
    if failed:
        return 1
    if args.write_spec is not None:
        path = Path(args.write_spec)
        changed = spec.write_spec(path)
        print(f"{path}: generated gradients block {'rewritten' if changed else 'already up to date'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
