"""python -m experiments.figures [NAME ...] [--quick] [--out figures/] [--cache DIR] [--list]

Regenerates the named figures (default: all) as PNG and PDF. Expensive inputs are cached under
``--cache`` (default ``figures/cache``), so re-rendering is instant and a changed parameter
recomputes only what it affects. ``--quick`` uses small sizes (CI, a few minutes).
"""
from __future__ import annotations

import argparse
from pathlib import Path

from meanfield.cli.args import creatable_path, integer, one_of, returns_exit_code, run_main

from . import DEFAULT_CACHE, DEFAULT_OUT, FIGURES, render_all


def build_parser():
    p = argparse.ArgumentParser(prog="python -m experiments.figures", description=__doc__.split("\n\n")[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("names", nargs="*", metavar="NAME", type=one_of(FIGURES, "figure"),
                   help="figures to render (default: all); see --list")
    p.add_argument("--quick", action="store_true", help="small sizes (CI smoke run, minutes)")
    p.add_argument("--out", type=lambda text: Path(creatable_path("folder")(text)), default=DEFAULT_OUT,
                   help="output folder (default ./figures in the working directory)")
    p.add_argument("--cache", type=lambda text: Path(creatable_path("folder")(text)),
                   default=DEFAULT_CACHE,
                   help="cache folder (default ./figures/cache in the working directory)")
    p.add_argument("--threads", type=integer(1), default=2, help="torch CPU threads >= 1 (default 2)")
    p.add_argument("--list", action="store_true", help="list the figure names and exit")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def parse_args(argv=None):
    """The validated flags; every check happens here, before torch or matplotlib is imported (bad
    input: an ``error:`` line naming the flag, exit status 2 as ``SystemExit``)."""
    return build_parser().parse_args(argv)


@returns_exit_code
def main(argv=None) -> int:
    args = parse_args(argv)
    if args.list:
        for s in FIGURES.values():
            print(f"{s.name:28s} {s.title}")
        return 0
    import torch
    torch.set_num_threads(args.threads)
    done = render_all(args.names, quick=args.quick, out=args.out,
                      cache_dir=args.cache, progress=not args.no_progress)
    for r in done.values():
        print(f"{r.name}: {', '.join(str(p) for p in r.paths)} ({r.seconds:.1f} s)")
    return 0


if __name__ == "__main__":
    run_main(main)
