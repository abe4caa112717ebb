"""Benchmarks of the theory core (issue 2's targets).

    python benchmarks/bench_core.py [--repeat 3] [--n 200]

1. Huang et al.'s Fig. 7 theory grid: tanh, sigma_b^2 = 0.05, sigma_w^2 = 1.0..4.0 step 0.1,
   keep in {1, 0.99, 0.98, 0.95}: q*, c*, chi_1, chi_c, chi_q and all depth scales (target: well
   under a second; the authors' Riemann-sum code takes about 70 s per keep value).
2. A 200 x 200 (sigma_w^2, sigma_b^2) phase diagram of tanh with dropout (target: < 10 s).
3. `python -m meanfield.depthscale --rate 0.5` end to end, interpreter start-up included
   (target: < 1 s wall).

Wall and CPU (process) times are printed, best of --repeat; on a shared machine the CPU time is the
fairer number. Every run starts from a cold cache (new processes for 3; the core keeps no cache).
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
import meanfield as mf  # noqa: E402


def timed(fn, repeat):
    best = (np.inf, np.inf)
    for _ in range(repeat):
        w, c = time.perf_counter(), time.process_time()
        out = fn()
        best = min(best, (time.perf_counter() - w, time.process_time() - c))
    return out, best


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--n", type=int, default=200, help="phase-diagram grid size n x n")
    args = ap.parse_args(argv)

    sw = np.round(np.arange(1.0, 4.0001, 0.1), 10)
    keep = np.array([1.0, 0.99, 0.98, 0.95])
    res, (wall, cpu) = timed(lambda: mf.analyze("tanh", sw[:, None], 0.05, keep), args.repeat)
    print(f"Fig. 7 grid ({sw.size} x {keep.size} points, all of q*, c*, chi, xi): "
          f"wall {wall:.3f} s, cpu {cpu:.3f} s")
    i = int(np.flatnonzero(np.isclose(sw, 1.6))[0])
    print(f"  check: keep 0.99, sigma_w2 1.6 -> q* {res.q_star[i, 1]:.4f}, xi_c {res.xi_c[i, 1]:.2f} "
          "(THEORY §5: 0.4836, 12.85)")

    w = np.linspace(0.5, 4.0, args.n)
    b = np.linspace(0.0, 0.3, args.n)
    pd, (wall, cpu) = timed(lambda: mf.phase_diagram("tanh", w, b, 0.95), 1)
    print(f"phase diagram {args.n} x {args.n} (tanh, keep 0.95): wall {wall:.2f} s, cpu {cpu:.2f} s; "
          f"table vs direct quadrature at random points: |dc*| {pd.table_check[0]:.1e}, "
          f"rel d chi_c {pd.table_check[1]:.1e}")

    cmd = [sys.executable, "-m", "meanfield.depthscale", "--rate", "0.5"]
    best = np.inf
    for _ in range(args.repeat):
        t = time.perf_counter()
        subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True)
        best = min(best, time.perf_counter() - t)
    print(f"`python -m meanfield.depthscale --rate 0.5` (31 rows, process start included): wall {best:.3f} s")


if __name__ == "__main__":
    main()
