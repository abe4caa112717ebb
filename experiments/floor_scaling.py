"""How the pair-metric noise floor scales with width: sd(g_ab) / mean(g_aa) beyond the crossover.

    python -m experiments.floor_scaling [--activation tanh] [--sigma-w2 1.4] [--widths 250 1000 4000 16000]

THEORY §4: past the crossover depth the measured pair metric is a finite-width floor ~ chi_1^k /
sqrt(N). For each width this simulates R networks (keep 0.8, L = 40, sigma_b^2 = 0.1; the
projected engine, O(R L N)), takes the median over a fixed deep layer window (k >= twice the
largest predicted crossover among N <= 4000) of sd(g_ab) / mean(g_aa), and prints the local
exponents d ln floor / d ln N between successive widths with 95 % bootstrap intervals over networks.
"""
from __future__ import annotations

import argparse
import math

import numpy as np


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--activation", default="tanh")
    ap.add_argument("--sigma-w2", type=float, default=1.4)
    ap.add_argument("--keep", type=float, default=0.8)
    ap.add_argument("--depth", type=int, default=40)
    ap.add_argument("--realisations", type=int, default=200)
    ap.add_argument("--widths", type=int, nargs="+", default=[250, 1000, 4000, 16000])
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args(argv)
    import torch

    import meanfield as mf
    from meanfield.simulation import simulate_gradients

    torch.set_num_threads(a.threads)
    theory = mf.gradient_metrics(a.activation, a.sigma_w2, 0.1, a.keep, a.depth)
    kx_max = max(float(theory.crossover_depth(n)) for n in a.widths if n <= 4000)
    k = np.arange(a.depth)[::-1]
    deep = k >= min(max(2 * kx_max, kx_max + 5), a.depth - 4)
    print(f"{a.activation} sigma_w2={a.sigma_w2} keep={a.keep}: window k = {k[deep].min()}..{k[deep].max()}")

    def floor(gab, gaa):
        return np.median(gab.std(0, ddof=1)[deep] / gaa.mean(0)[deep])

    rng = np.random.default_rng(0)
    logn, floors, boots = [], [], []
    for n in a.widths:
        r = simulate_gradients(a.activation, a.sigma_w2, 0.1, keep=a.keep, width=n, depth=a.depth,
                               realisations=a.realisations, seed=a.seed)
        idx = [rng.integers(0, a.realisations, a.realisations) for _ in range(300)]
        floors.append(floor(r.g_ab, r.g_aa))
        boots.append(np.array([floor(r.g_ab[i], r.g_aa[i]) for i in idx]))
        logn.append(math.log(n))
        print(f"N = {n}: floor {floors[-1]:.4g} +- {boots[-1].std():.2g}", flush=True)
    logn = np.array(logn)
    local = np.diff(np.log(floors)) / np.diff(logn)
    bl = np.array([np.diff(np.log([b[i] for b in boots])) / np.diff(logn) for i in range(300)])
    lo, hi = np.quantile(bl, [0.025, 0.975], axis=0)
    for j, v in enumerate(local):
        print(f"exponent {a.widths[j]} -> {a.widths[j + 1]}: {v:.3f} [{lo[j]:.3f}, {hi[j]:.3f}] (theory -0.5)")


if __name__ == "__main__":
    main()
