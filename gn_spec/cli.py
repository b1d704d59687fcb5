"""The ``gn-spec`` command.

``gn-spec check TARGET [options]`` judges an implementation of Group Normalization (exit status 0: conforms,
1: does not conform, 2: usage error; 3 only if gn-spec itself fails, which is a bug in gn-spec).  ``gn-spec
derive [args]`` runs ``python -m gn_spec.derivations``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import traceback
from collections.abc import Sequence

from gn_spec.checker.dtypes import DTYPE_NAMES
from gn_spec.checker.target import APIS, DEVICES, MEMORY_FORMATS, PROFILES, UsageError

EXIT_USAGE = 2
#: gn-spec itself failed (a bug to report): neither a verdict nor a usage error.
EXIT_INTERNAL = 3


def _keep_hypothesis_out_of_the_working_folder() -> None:
    """Point Hypothesis's storage (its cache of source constants; the example database is off anyway) at a
    gn-spec cache folder instead of ``./.hypothesis``: a check must write nothing into the user's folder.

    Must run before Hypothesis is imported; a ``HYPOTHESIS_STORAGE_DIRECTORY`` the user set is kept.
    """
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    os.environ.setdefault("HYPOTHESIS_STORAGE_DIRECTORY", os.path.join(cache, "gn-spec", "hypothesis"))


def _check_writable(path: str) -> None:
    """Fail early (before a long run) when a report cannot be written to ``path``."""
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise UsageError(f"cannot write a report to {path!r}: no such folder {folder!r}")
    if os.path.isdir(path) or not os.access(folder, os.W_OK):
        raise UsageError(f"cannot write a report to {path!r}")


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
    check.add_argument(
        "--property",
        metavar="NAME",
        action="append",
        default=None,
        dest="properties",
        help="check only this property (repeatable); see `python -m gn_spec.properties`",
    )
    check.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    derive = sub.add_parser(
        "derive", help="run the SymPy derivations (python -m gn_spec.derivations)", add_help=False
    )
    derive.add_argument("args", nargs=argparse.REMAINDER)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``gn-spec`` console script; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["derive"]:  # everything after `derive` belongs to python -m gn_spec.derivations
        return subprocess.call([sys.executable, "-m", "gn_spec.derivations", *argv[1:]])
    parser = build_parser()
    args = parser.parse_args(argv)  # exits with status 2 on an unknown option
    _keep_hypothesis_out_of_the_working_folder()
    from gn_spec.checker import CheckerBug, run_check  # the checker's imports only when checking

    try:
        for path in (args.json, args.junit_xml):
            if path is not None:
                _check_writable(path)
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
            properties=args.properties,
        )
    except UsageError as exc:
        print(f"gn-spec check: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except CheckerBug as exc:
        traceback.print_exception(exc)
        print(
            f"gn-spec check: internal error (a bug in gn-spec, not a verdict on the target): {exc}",
            file=sys.stderr,
        )
        return EXIT_INTERNAL
    except KeyboardInterrupt:
        print("gn-spec check: interrupted", file=sys.stderr)
        return 130
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
