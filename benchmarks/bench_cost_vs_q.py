"""Cost of one parameter point against q* (issue 12, section 1): time and peak memory of
``meanfield.analyze`` (q*, c*, chi_1, chi_c, chi_q, all depth scales), cold, for q* from 1e-6 to
1e30, per activation.

    python benchmarks/bench_cost_vs_q.py [--repeat 3] [--keep 0.9] [--activations tanh,erf,...]

Each point is built to have the requested q*: with dropout keep rho, sigma_w^2 = q / (2 A2(q)) and
sigma_b^2 = q - sigma_w^2 A2(q) / rho make q the fixed point (A2 = E[phi^2] at variance q; the
slope of the map is then below 1). Time is the best of --repeat runs, each with the Mehler-series
cache cleared (CPU and wall); peak memory is tracemalloc's peak over one more run (numpy reports
its arrays to tracemalloc). The last column is the time relative to q* = 1.
"""
from __future__ import annotations

import argparse
import sys
import tracemalloc
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
import meanfield as mf  # noqa: E402
from bench_core import timed  # noqa: E402  (this script's folder is on sys.path)
from meanfield import kernels  # noqa: E402

QS = [1e-6, 1e-3, 1.0, 1e3, 1e6, 1e10, 1e20, 1e30]
ACTIVATIONS = ["tanh", "erf", "gelu", "silu", "hard_tanh", "relu"]


def parameters(name, q, keep):
    """(sigma_w2, sigma_b2) whose dropout fixed point is q."""
    a2 = float(kernels.moment(mf.get_activation(name), "A2", q))
    sw = q / (2 * a2)
    return sw, q - sw * a2 / keep


def measure(name, q, keep, repeat):
    sw, sb = parameters(name, q, keep)
    r, (best_wall, best_cpu) = timed(lambda: mf.analyze(name, sw, sb, keep), repeat, kernels.clear_cache)
    kernels.clear_cache()
    tracemalloc.start()
    mf.analyze(name, sw, sb, keep)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return float(r.q_star), float(r.c_star), best_cpu, best_wall, peak


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--keep", type=float, default=0.9)
    ap.add_argument("--activations", default=",".join(ACTIVATIONS))
    args = ap.parse_args(argv)
    mf.analyze("tanh", 1.5, 0.05, args.keep)  # imports and first-use set-up out of the timings
    print("| activation | q* | c* | CPU ms | wall ms | peak MB | CPU / CPU(q*=1) |")
    print("|---|---|---|---|---|---|---|")
    for name in args.activations.split(","):
        rows = [(q, *measure(name, q, args.keep, args.repeat)) for q in QS]
        base = next(r[3] for r in rows if r[0] == 1.0)
        for q, qs, cs, cpu, wall, peak in rows:
            assert np.isclose(qs, q, rtol=1e-8), (name, q, qs)
            print(f"| {name} | {q:.0e} | {cs:.6g} | {cpu * 1e3:.1f} | {wall * 1e3:.1f} | "
                  f"{peak / 2**20:.1f} | {cpu / base:.1f} |", flush=True)


if __name__ == "__main__":
    main()
