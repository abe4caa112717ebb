"""Peak memory per parameter point of the costliest paths, behind meanfield.maps.POINT_BYTES.

    python benchmarks/bench_point_bytes.py [--points 16 256 4096]

For each case (pair integrals by quadrature at large q: GELU/SiLU, hard tanh, tanh with dropout,
Sparseout's pair source terms) the whole call runs as one chunk (MEMORY_CAP patched to 2**62)
over N parameter points with distinct q*, and numpy's peak traced allocation (tracemalloc) is
printed with peak / N. POINT_BYTES must bound peak / N at the chunk size MEMORY_CAP //
POINT_BYTES, so that one chunk stays under MEMORY_CAP; the last column says whether it does.
"""
from __future__ import annotations

import argparse
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
import meanfield as mf  # noqa: E402
from meanfield import kernels, maps  # noqa: E402


def _grid(n, lo, hi):
    return np.geomspace(lo, hi, n)


# (label, fn(n)): sigma_b^2 spread over decades, so that every point has its own large q*
CASES = [
    ("analyze silu keep 0.9, q* 1e2..1e8",
     lambda n: mf.analyze("silu", 1.5, _grid(n, 1e2, 1e8), 0.9)),
    ("analyze hard_tanh keep 0.9, q* 1e2..1e8",
     lambda n: mf.analyze("hard_tanh", 1.8, _grid(n, 1e2, 1e8), 0.9)),
    ("analyze tanh keep 0.9, q* 1e2..1e8",
     lambda n: mf.analyze("tanh", 1.5, _grid(n, 1e2, 1e8), 0.9)),
    ("gradient_metrics gelu keep 0.9, q* 1e2..1e6",
     lambda n: mf.gradient_metrics("gelu", 1.5, _grid(n, 1e2, 1e6), 0.9, depth=3)),
    ("gradient_metrics silu keep 0.9, q* 1e2..1e6",
     lambda n: mf.gradient_metrics("silu", 1.5, _grid(n, 1e2, 1e6), 0.9, depth=3)),
    ("gradient_metrics hard_tanh keep 0.9, q* 1e2..1e8",
     lambda n: mf.gradient_metrics("hard_tanh", 1.8, _grid(n, 1e2, 1e8), 0.9, depth=3)),
    ("gradient_metrics tanh sparseout s 1.01, q* 0.05..1e6",
     lambda n: mf.gradient_metrics("tanh", 1.5, _grid(n, 0.05, 1e6), 0.9, depth=3,
                                   noise="sparseout", s=1.01)),
    ("gradient_metrics tanh sparseout s 0.7, q* 0.05..1e6",
     lambda n: mf.gradient_metrics("tanh", 1.5, _grid(n, 0.05, 1e6), 0.9, depth=3,
                                   noise="sparseout", s=0.7)),
]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--points", type=int, nargs="+", default=[16, 256, 4096])
    ap.add_argument("--case", type=int, nargs="*", help="indices into the case list (default all)")
    args = ap.parse_args(argv)
    maps.MEMORY_CAP = 2**62  # one chunk, whatever the number of points (inf // x is nan in Python)
    chunk = int(256 * 2**20 // maps.POINT_BYTES)
    print(f"POINT_BYTES {maps.POINT_BYTES / 1024:.0f} KiB: chunks of {chunk} points under a "
          f"MEMORY_CAP of 256 MiB")
    for i, (label, fn) in enumerate(CASES):
        if args.case and i not in args.case:
            continue
        for n in args.points:
            kernels.clear_cache()
            tracemalloc.start()
            t = time.process_time()
            fn(n)
            cpu = time.process_time() - t
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            ok = "ok" if n > chunk or peak / n <= maps.POINT_BYTES else "OVER"
            print(f"{label:55s} N={n:5d}: peak {peak / 2**20:8.1f} MiB, {peak / n / 1024:8.1f} KiB "
                  f"per point, cpu {cpu:6.1f} s  {ok}", flush=True)


if __name__ == "__main__":
    main()
