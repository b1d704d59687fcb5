"""The ``gn-spec`` command.

``gn-spec check TARGET [options]`` judges an implementation of Group Normalization (exit status 0: conforms,
1: does not conform, 2: usage error).  ``gn-spec derive [args]`` runs ``python -m gn_spec.derivations``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections.abc import Sequence

from gn_spec.checker.dtypes import DTYPE_NAMES
from gn_spec.checker.target import APIS, DEVICES, MEMORY_FORMATS, PROFILES, UsageError

EXIT_USAGE = 2


def _seed(text: str) -> int:
    try:
        value = int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid seed {text!r}: expected a non-negative integer") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"invalid seed {text!r}: expected a non-negative integer")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"invalid timeout {text!r}: expected seconds, e.g. 10 or 0.5"
        ) from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(
            f"invalid timeout {text!r}: expected a positive finite number of seconds"
        )
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gn-spec",
        description="Group Normalization: a faithful reference and a conformance checker.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    check = sub.add_parser(
        "check",
        help="judge an implementation against the reference and the properties",
        description="Judge a Group Normalization implementation. Exit status: 0 it conforms, 1 it does not, "
        "2 usage error.",
    )
    check.add_argument(
        "target",
        metavar="TARGET",
        help="torch | reference | package.module:function | path/to/file.py:function "
        "(with --api cs231n: path/to/file.py or package.module)",
    )
    check.add_argument(
        "--api",
        choices=APIS,
        default=None,
        help="how to call TARGET (default: torch for TARGET torch, otherwise numpy)",
    )
    check.add_argument(
        "--dtype", choices=DTYPE_NAMES, default="float32", help="dtype of the inputs (default float32)"
    )
    check.add_argument("--device", choices=DEVICES, default="cpu", help="torch device (default cpu)")
    check.add_argument(
        "--memory-format",
        choices=MEMORY_FORMATS,
        default="contiguous",
        help="layout of x for torch targets (channels_last: 4-D and 5-D cases only)",
    )
    check.add_argument(
        "--profile",
        choices=PROFILES,
        default="default",
        help="quick (seconds), default (a minute at most), thorough (minutes, bigger inputs)",
    )
    check.add_argument("--seed", type=_seed, default=None, help="make the run reproducible")
    check.add_argument(
        "--timeout",
        type=_seconds,
        default=10.0,
        help="seconds one call of TARGET may take before it counts as a hang (default 10)",
    )
    check.add_argument("--json", metavar="PATH", default=None, help="write a JSON report to PATH")
    check.add_argument("--junit-xml", metavar="PATH", default=None, help="write a JUnit XML report to PATH")
    check.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    derive = sub.add_parser(
        "derive", help="run the SymPy derivations (python -m gn_spec.derivations)", add_help=False
    )
    derive.add_argument("args", nargs=argparse.REMAINDER)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``gn-spec`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)  # exits with status 2 on an unknown option
    if args.command == "derive":
        return subprocess.call([sys.executable, "-m", "gn_spec.derivations", *args.args])
    from gn_spec.checker import run_check  # the checker's imports (hypothesis) only when checking

    try:
        report = run_check(
            args.target,
            api=args.api,
            dtype=args.dtype,
            device=args.device,
            memory_format=args.memory_format,
            profile=args.profile,
            seed=args.seed,
            timeout=args.timeout,
            progress=None if args.quiet else sys.stderr,
        )
    except UsageError as exc:
        print(f"gn-spec check: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    from gn_spec.checker.report import write_table

    write_table(report, sys.stdout)
    try:
        if args.json:
            report.write_json(args.json)
        if args.junit_xml:
            report.write_junit(args.junit_xml)
    except OSError as exc:
        print(f"gn-spec check: error: cannot write the report: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return report.exit_code


if __name__ == "__main__":
    sys.exit(main())
