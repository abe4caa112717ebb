"""``python -m derivations [--check | --latex] [--seed N] [--module M ...]``.

Without flags: lists every derivation (name, first docstring line, LaTeX), then runs the checks and
prints one row per derivation. ``--check``: only the table. ``--latex``: only LaTeX, runs no check.
Exit status 1 if any derivation fails (one its check did not evaluate fails too), 2 on bad usage.
"""

from __future__ import annotations

import argparse
import sys
import time

from meanfield.cli.args import returns_exit_code, run_main

from . import MODULES

EPILOG = f"""\
--latex prints, for each derivation, a LaTeX comment line '% module.name: first docstring line'
followed by the derivation as display maths '\\[ ... \\]' (a fragment to paste into a document) and
runs no check; it cannot be combined with --check. Modules: {', '.join(MODULES)}."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m derivations", epilog=EPILOG,
        description="List the symbolic mean-field derivations and check each one against an\n"
                    "independent route (numeric core, quadrature, mask enumeration, Monte Carlo).",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true",
                        help="only run the checks and print the table; exit 1 on any failure")
    parser.add_argument("--latex", action="store_true",
                        help="only print the LaTeX of each derivation (see below); no checks")
    parser.add_argument("--seed", default="0", metavar="N",
                        help="integer >= 0: seed of the checks' random parameter points (default 0)")
    parser.add_argument("--module", action="append", metavar="M",
                        help=f"restrict to this module (repeatable), one of {', '.join(MODULES)}")
    return parser


def _usage_error(parser: argparse.ArgumentParser, message: str):
    parser.print_usage(sys.stderr)
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(2)


def _seed(text: str) -> int | None:
    """The seed, or None unless ``text`` is an integer >= 0."""
    try:
        value = int(text)
    except ValueError:
        return None
    return value if value >= 0 else None


def parse_args(argv=None) -> argparse.Namespace:
    """The validated flags (``seed`` an int); checked before sympy and the derivation modules are
    imported: bad usage ends in an ``error:`` line naming the flag, exit status 2 (``SystemExit``)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    seed = _seed(args.seed)
    if seed is None:
        shown = args.seed if args.seed.isprintable() else repr(args.seed)   # one line
        _usage_error(parser, f"--seed must be an integer >= 0, got {shown}")
    args.seed = seed
    for mod in args.module or ():
        if mod not in MODULES:
            _usage_error(parser, f"--module must be one of {', '.join(MODULES)}, got {mod!r}")
    if args.check and args.latex:
        _usage_error(parser, "--check and --latex cannot be combined (--latex runs no checks)")
    return args


@returns_exit_code  # usage errors (2) and --help (0) as exit codes, like the checks'
def main(argv=None) -> int:
    args = parse_args(argv)
    seed = args.seed
    from . import registry, run_checks

    t0 = time.perf_counter()
    derivations = registry(args.module)
    if args.latex:
        for d in derivations:
            print(f"% {d.name}: {d.doc}\n\\[ {d.latex} \\]")
        return 0
    if not args.check:
        for d in derivations:
            print(f"{d.name}: {d.doc}\n    $${d.latex}$$\n")
    results = run_checks(derivations, seed=seed)
    name_w = max(len(r.derivation) for r in results)
    check_w = max(len(r.check) for r in results)
    print(f"{'derivation':<{name_w}}  result  max rel err  {'check':<{check_w}}  check time")
    for r in results:
        shown = f"{r.max_rel_err:11.2e}" if r.passed else ""
        print(f"{r.derivation:<{name_w}}  {'pass' if r.passed else 'FAIL':<6}  {shown:<11}  "
              f"{r.check:<{check_w}}  {r.seconds:8.1f}s")
        if not r.passed:
            print(f"{'':<{name_w}}    {r.message}")
    failed = sum(not r.passed for r in results)
    checks = len({r.check for r in results})
    print(f"{len(results) - failed}/{len(results)} derivations passed ({checks} checks, seed "
          f"{seed}, {time.perf_counter() - t0:.1f} s)")
    return 1 if failed else 0


if __name__ == "__main__":
    run_main(main)
