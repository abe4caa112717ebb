"""Memory and time of one call over a large parameter grid (issue 12: 30,000 points used > 6 GB).

    python benchmarks/bench_grid_memory.py [--points 30000] [--activation tanh] [--what analyze]

Evaluates ``analyze`` (or ``phase_diagram``) over a (sigma_b^2, sigma_w^2) grid of about
--points points with dropout keep = 0.9, in one call, and prints the wall and CPU time and the
peak of the process's resident memory (ru_maxrss) and of numpy's traced allocations
(tracemalloc), against meanfield.maps.MEMORY_CAP (the work arrays' budget per chunk).
"""
from __future__ import annotations

import argparse
import resource
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
import meanfield as mf  # noqa: E402
from meanfield import maps  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--points", type=int, default=30000)
    ap.add_argument("--activation", default="tanh")
    ap.add_argument("--what", choices=("analyze", "phase_diagram"), default="analyze")
    ap.add_argument("--point-bytes", type=int, help="override meanfield.maps.POINT_BYTES (chunk size)")
    args = ap.parse_args(argv)
    if args.point_bytes:
        maps.POINT_BYTES = args.point_bytes
    n_sb = max(1, int(round(np.sqrt(args.points / 2))))
    n_sw = max(1, args.points // n_sb)
    sw, sb = np.linspace(0.5, 4.0, n_sw), np.linspace(0.0, 0.5, n_sb)
    tracemalloc.start()
    w, c = time.perf_counter(), time.process_time()
    if args.what == "analyze":
        res = mf.analyze(args.activation, sw[None, :], sb[:, None], 0.9, on_missing="nan")
    else:
        res = mf.phase_diagram(args.activation, sw, sb, 0.9).result
    wall, cpu = time.perf_counter() - w, time.process_time() - c
    traced = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux
    print(f"{args.what}({args.activation}) over {n_sb} x {n_sw} = {n_sb * n_sw} points: "
          f"wall {wall:.1f} s, cpu {cpu:.1f} s; peak traced {traced / 2**20:.1f} MiB, "
          f"peak RSS {rss:.0f} MiB (MEMORY_CAP {maps.MEMORY_CAP / 2**20:.0f} MiB, chunks of "
          f"{maps.MEMORY_CAP // maps.POINT_BYTES} points); "
          f"{int(np.sum(res.has_fixed_point))} points with a fixed point")


if __name__ == "__main__":
    main()
