"""``python -m derivations [--check] [--latex] [--seed N] [--module M]``.

Lists every derivation (with its LaTeX unless ``--check``), runs every check and prints a pass/fail
table. ``--check`` exits with status 1 if any check fails (a missing numeric-core function fails).
"""

from __future__ import annotations

import argparse
import sys
import time

from . import MODULES, registry, run_checks


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m derivations", description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only run the checks; exit 1 on any failure")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random parameter points (default 0)")
    parser.add_argument("--module", choices=MODULES, action="append", help="restrict to these modules")
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    derivations = [d for d in registry() if not args.module or d.module in args.module]
    if not args.check:
        for d in derivations:
            print(f"{d.name}: {d.doc}\n    $${d.latex}$$\n")
    results = run_checks(derivations, seed=args.seed)
    width = max(len(n) for n in results)
    print(f"{'check':<{width}}  result  max rel err   time   covers")
    for name, (ok, info, secs) in results.items():
        covers = ", ".join(d.name.split(".", 1)[1] for d in derivations if d.check_name == name)
        shown = f"{info:10.2e}" if ok else ""
        print(f"{name:<{width}}  {'pass' if ok else 'FAIL':<6}  {shown:<10}  {secs:5.1f}s  {covers}")
        if not ok:
            print(f"{'':<{width}}    {info}")
    failed = [n for n, (ok, _, _) in results.items() if not ok]
    print(f"{len(results) - len(failed)}/{len(results)} checks passed, "
          f"{len(derivations)} derivations, {time.perf_counter() - t0:.1f} s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
