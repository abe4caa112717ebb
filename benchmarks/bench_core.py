"""Benchmarks of the theory core (issue 2's and issue 12's targets).

    python benchmarks/bench_core.py [--repeat 3] [--n 200] [--check 4]

1. Huang et al.'s Fig. 7 theory grid: tanh, sigma_b^2 = 0.05, sigma_w^2 = 1.0..4.0 step 0.1,
   keep in {1, 0.99, 0.98, 0.95}: q*, c*, chi_1, chi_c, chi_q and all depth scales (target: well
   under a second; the authors' Riemann-sum code takes about 70 s per keep value), against a plain
   201-node Gauss-Hermite + brentq script on the same grid in the same run (issue 12's target: at
   least 5x faster at unchanged accuracy). Both are checked against the independent scipy-quad
   route of tests/_quadref.py at --check points of THEORY §5 (relative error on q*, c*, chi_1,
   chi_c).
2. A 200 x 200 (sigma_w^2, sigma_b^2) phase diagram of tanh with dropout (target: < 10 s), with
   its pair table and with every c* solved directly.
3. `python -m meanfield.depthscale --rate 0.5` end to end, interpreter start-up included
   (target: < 1 s wall).

Wall and CPU (process) times are printed, best of --repeat; on a shared machine the CPU time is the
fairer number. Every run starts cold: the Mehler-series cache of meanfield.kernels is cleared
before each repeat (new processes for 3).
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from scipy.optimize import brentq
from scipy.special import roots_hermitenorm

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
import meanfield as mf  # noqa: E402
from meanfield import kernels  # noqa: E402

SW = np.round(np.arange(1.0, 4.0001, 0.1), 10)
KEEP = np.array([1.0, 0.99, 0.98, 0.95])
SB = 0.05


def timed(fn, repeat, setup=lambda: None):
    best = (np.inf, np.inf)
    for _ in range(repeat):
        setup()
        w, c = time.perf_counter(), time.process_time()
        out = fn()
        best = min(best, (time.perf_counter() - w, time.process_time() - c))
    return out, best


def gauss_hermite_script(sw_grid, keep_grid, sb, n=201):
    """What one would write by hand: 201-node Gauss-Hermite (2-D for the pair integrals) and brentq
    for q* and c*; returns q*, c*, chi_1, chi_c, chi_q on the grid (shape sw x keep)."""
    z, w = roots_hermitenorm(n)
    w = w / np.sqrt(2 * np.pi)
    Z1, Z2 = np.meshgrid(z, z, indexing="ij")
    W2 = np.outer(w, w)

    def sech2(x):
        return 1 / np.cosh(x) ** 2

    def E1(f, q):
        return w @ f(np.sqrt(q) * z)

    def E2(f, q, c):
        u1 = np.sqrt(q) * Z1
        u2 = np.sqrt(q) * (c * Z1 + np.sqrt(max(1 - c * c, 0.0)) * Z2)
        return np.sum(W2 * f(u1) * f(u2))

    def point(sw, keep):
        q = brentq(lambda q: sw / keep * E1(lambda x: np.tanh(x) ** 2, q) + sb - q,
                   sb, sw / keep + sb + 1, xtol=1e-14, rtol=1e-15)
        chi1 = sw / keep * E1(lambda x: sech2(x) ** 2, q)
        chiq = sw / keep * E1(lambda x: sech2(x) ** 2 - 2 * np.tanh(x) ** 2 * sech2(x), q)
        top = 1.0 - 1e-9 if keep == 1 else 1.0
        G = lambda c: (sw * E2(np.tanh, q, c) + sb) / q - c  # noqa: E731
        if keep == 1 and (chi1 <= 1 or G(top) >= 0):
            return q, 1.0, chi1, chi1, chiq
        c = brentq(G, 0.0, top, xtol=1e-14, rtol=1e-15)
        return q, c, chi1, sw * E2(sech2, q, c), chiq
    return np.array([[point(s, k) for k in keep_grid] for s in sw_grid])


def accuracy(res, gh, idx):
    """Largest relative deviation of (q*, c*, chi_1, chi_c) from scipy quad + brentq
    (tests/_quadref.py) at the grid points idx, for meanfield and the Gauss-Hermite script."""
    import _quadref as ref
    worst = np.zeros(2)
    for i, j in idx:
        sw, keep = SW[i], KEEP[j]
        q = ref.q_star("tanh", sw, SB, keep)
        chi1 = ref.chi_1("tanh", sw, q, keep)
        if keep == 1 and chi1 <= 1:
            c, chic = 1.0, chi1
        else:
            c = ref.c_star("tanh", sw, SB, keep, q)
            chic = ref.chi_c("tanh", sw, q, c)
        exact = np.array([q, c, chi1, chic])
        ours = np.array([res.q_star[i, j], res.c_star[i, j], res.chi_1[i, j], res.chi_c[i, j]])
        worst = np.maximum(worst, [np.max(np.abs(ours / exact - 1)), np.max(np.abs(gh[i, j, :4] / exact - 1))])
    return worst


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--n", type=int, default=200, help="phase-diagram grid size n x n")
    ap.add_argument("--check", type=int, default=4, help="grid points checked against scipy quad (<= 6)")
    args = ap.parse_args(argv)

    mf.analyze("tanh", SW[:2, None], SB, KEEP)  # imports and first-use set-up out of the timings
    gh, (gh_wall, gh_cpu) = timed(lambda: gauss_hermite_script(SW, KEEP, SB), args.repeat)
    res, (wall, cpu) = timed(lambda: mf.analyze("tanh", SW[:, None], SB, KEEP), args.repeat,
                             kernels.clear_cache)
    print(f"Fig. 7 grid ({SW.size} x {KEEP.size} points, all of q*, c*, chi, xi): "
          f"wall {wall:.3f} s, cpu {cpu:.3f} s")
    print(f"  201-node Gauss-Hermite + brentq script, same run: wall {gh_wall:.3f} s, cpu {gh_cpu:.3f} s; "
          f"ratio (cpu) {gh_cpu / cpu:.1f}x")
    # THEORY §5's points (q* up to 2.4, where Gauss-Hermite is least accurate), then others
    table = [(2.2, 1.0), (1.6, 0.99), (3.1, 0.98), (4.0, 0.95), (4.0, 1.0), (3.0, 0.99)]
    idx = [(int(np.flatnonzero(np.isclose(SW, s))[0]), int(np.flatnonzero(KEEP == k)[0]))
           for s, k in table[:args.check]]
    ours, theirs = accuracy(res, gh, idx)
    print(f"  largest relative error of q*, c*, chi_1, chi_c vs scipy quad ({len(idx)} points): "
          f"meanfield {ours:.1e}, Gauss-Hermite script {theirs:.1e}")
    i = int(np.flatnonzero(np.isclose(SW, 1.6))[0])
    print(f"  check: keep 0.99, sigma_w2 1.6 -> q* {res.q_star[i, 1]:.4f}, xi_c {res.xi_c[i, 1]:.2f} "
          "(THEORY §5: 0.4836, 12.85)")

    w = np.linspace(0.5, 4.0, args.n)
    b = np.linspace(0.0, 0.3, args.n)
    kernels.clear_cache()
    pd, (wall, cpu) = timed(lambda: mf.phase_diagram("tanh", w, b, 0.95), 1)
    print(f"phase diagram {args.n} x {args.n} (tanh, keep 0.95): wall {wall:.2f} s, cpu {cpu:.2f} s; "
          f"pair table of {pd.table_pairs} integrals vs direct quadrature at random points: "
          f"|dc*| {pd.table_check[0]:.1e}, rel d chi_c {pd.table_check[1]:.1e}")
    kernels.clear_cache()
    _, (wall, cpu) = timed(lambda: mf.phase_diagram("tanh", w, b, 0.95, exact=True), 1)
    print(f"  the same with every c* solved directly (exact=True): wall {wall:.2f} s, cpu {cpu:.2f} s")

    cmd = [sys.executable, "-m", "meanfield.depthscale", "--rate", "0.5"]
    best = np.inf
    for _ in range(args.repeat):
        t = time.perf_counter()
        subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True)
        best = min(best, time.perf_counter() - t)
    print(f"`python -m meanfield.depthscale --rate 0.5` (31 rows, process start included): wall {best:.3f} s")


if __name__ == "__main__":
    main()
