"""The ``gn-spec`` command.

``gn-spec check TARGET [options]`` judges an implementation of Group Normalization (exit status 0: conforms,
1: does not conform, 2: usage error; 3 only if gn-spec itself fails, which is a bug in gn-spec).  ``gn-spec
targets`` lists the built-in targets.  ``gn-spec derive [args]`` runs ``python -m gn_spec.derivations``.
The options of ``check`` are declared once, in :mod:`gn_spec.checker.options`; :func:`build_parser` adds
them.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import traceback
from collections.abc import Sequence

from gn_spec.checker.options import CONFIG, OPTIONS, RUN, UsageError, options_in
from gn_spec.formats import NAMES as DTYPE_NAMES
from gn_spec.profiles import PROFILE_NAMES

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


EXIT_STATUSES = (
    "exit status: 0 TARGET conforms, 1 it does not conform, 2 usage error, "
    "3 internal error (a bug in gn-spec, not a verdict on TARGET)"
)


def build_parser() -> argparse.ArgumentParser:
    """The ``gn-spec`` parser; the ``check`` options come from :data:`gn_spec.checker.options.OPTIONS`."""
    parser = argparse.ArgumentParser(
        prog="gn-spec",
        description="Group Normalization: a faithful reference and a conformance checker.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    check = sub.add_parser(
        "check",
        help="judge an implementation against the reference and the properties",
        description="Judge a Group Normalization implementation against gn-spec's reference and properties.",
        epilog=EXIT_STATUSES,
    )
    for option in OPTIONS:
        if option.positional:
            check.add_argument(option.name, metavar=option.metavar, help=option.help_text)
        else:
            check.add_argument(option.flag, dest=option.name, **option.argparse_arguments())
    targets = sub.add_parser(
        "targets",
        help="list the built-in targets, their framework versions and options",
        description="List the built-in targets of `gn-spec check` (no framework is imported).",
    )
    targets.add_argument("--json", action="store_true", help="print the list as JSON")
    matrix = sub.add_parser(
        "matrix",
        help="judge every installed built-in target side by side and write the conformance matrix",
        description="Run gn-spec check on every installed built-in target, at every dtype it supports and "
        "with each value of its notable options, and write one table (Markdown and JSON).",
    )
    matrix.add_argument("--targets", nargs="+", metavar="NAME", help="only these built-in targets")
    matrix.add_argument("--dtypes", nargs="+", metavar="DTYPE", choices=DTYPE_NAMES, help="only these dtypes")
    matrix.add_argument("--profile", default="default", choices=PROFILE_NAMES, help="each row's profile")
    matrix.add_argument("--seed", type=int, default=0, help="each row's seed (default: 0)")
    matrix.add_argument("--timeout", type=float, help="per-call timeout of each row's check (default: each "
                        "target's, as gn-spec check sets it)")
    matrix.add_argument(
        "--quick-targets", nargs="+", metavar="NAME", default=(),
        help="run these targets' rows at the quick profile (targets too slow for the matrix's: the table "
        "says which)",
    )
    matrix.add_argument("--row-timeout", type=float, default=1800.0, help="seconds one row may take")
    matrix.add_argument("--jobs", type=int, default=1, help="rows run at a time (default: 1)")
    matrix.add_argument("--markdown", metavar="PATH", help="write the table as Markdown to PATH")
    matrix.add_argument("--json", metavar="PATH", help="write the rows as JSON to PATH")
    matrix.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    matrix.add_argument(
        "--from-json", metavar="PATH",
        help="run nothing: re-render the matrix of a --json file (its findings looked up anew)",
    )
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
    if args.command == "targets":
        return list_targets(args.json)
    if args.command == "matrix":
        return run_matrix_command(args, argv[1:])
    _keep_hypothesis_out_of_the_working_folder()
    from gn_spec.checker import CheckerBug, run_check  # the checker's imports only when checking

    try:
        for path in (args.json, args.junit_xml):
            if path is not None:
                _check_writable(path)
        options = {o.name: getattr(args, o.name) for o in options_in(CONFIG, RUN) if not o.positional}
        report = run_check(args.target, progress=None if args.quiet else sys.stderr, **options)
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

    report.command = shlex.join(["gn-spec", *argv])
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


def run_matrix_command(args: argparse.Namespace, argv: list[str]) -> int:
    """``gn-spec matrix``: exit 0 when every row got a verdict, 1 when some did not, 2 on a usage error."""
    import json

    from gn_spec import matrix

    try:
        for path in (args.markdown, args.json):
            if path is not None:
                _check_writable(path)
        if args.from_json is not None:
            rows, skipped, head = matrix.rows_from_json(_read_matrix_json(args.from_json))
        else:
            rows, skipped = matrix.plan(args.targets, args.dtypes, args.quick_targets)
    except UsageError as exc:
        print(f"gn-spec matrix: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.from_json is None:
        progress = None if args.quiet else sys.stderr
        if progress is not None:
            print(f"gn-spec matrix: {len(rows)} rows, {args.jobs} at a time", file=progress)
            for line in skipped:
                print(f"  left out: {line}", file=progress)
        matrix.run_matrix(
            rows, profile=args.profile, seed=args.seed, timeout=args.timeout, jobs=args.jobs,
            row_timeout=args.row_timeout, progress=progress,
        )
        head = matrix.header(argv, args.profile, args.seed)
    text = matrix.markdown(rows, skipped, head)
    if args.markdown:
        with open(args.markdown, "w", encoding="utf-8") as f:
            f.write(text)
    else:
        sys.stdout.write(text)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(matrix.to_json(rows, skipped, head), f, indent=2)
            f.write("\n")
    return 1 if any(r.error for r in rows) else 0


def _read_matrix_json(path: str) -> dict:
    """A matrix JSON document (``gn-spec matrix --json``), or a UsageError naming what is wrong with it."""
    import json

    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except (OSError, ValueError) as exc:
        raise UsageError(f"--from-json {path}: cannot read a matrix JSON document ({exc})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("rows"), list) or "command" not in doc:
        raise UsageError(f"--from-json {path}: not a matrix JSON document (no 'rows' list and 'command')")
    return doc


def list_targets(as_json: bool) -> int:
    """``gn-spec targets``: one entry per built-in target (from :mod:`gn_spec.checker.builtins`)."""
    import json

    from gn_spec.checker.builtins import listing

    rows = listing()
    if as_json:
        print(json.dumps(rows, indent=2))
        return 0
    width = max(len(r["name"]) for r in rows)
    for r in rows:
        print(f"{r['name']:<{width}}  {r['framework']}")
        print(f"{'':<{width}}  supports: {r['supports']}; dtypes: {r['dtypes']}")
        print(f"{'':<{width}}  layout: {r['layout']}")
        print(f"{'':<{width}}  options: {r['options']}")
        print(f"{'':<{width}}  calls: {r['calls']}")
        if r["timeout"] != "-":
            print(f"{'':<{width}}  timeout: {r['timeout']}")
    print("\ncheck one with: gn-spec check NAME [--target-option KEY=VALUE ...]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
