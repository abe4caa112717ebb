"""How the pair-metric noise floor scales with width: sd(g_ab) / mean(g_aa) beyond the crossover.

    python -m experiments.floor_scaling [--activation tanh] [--sigma-w2 1.4] [--widths 250 1000 4000 16000]
        [--db results/gradient_study.sqlite] [--serial | --workers N | --scheduler tcp://HOST:PORT]

THEORY §4: past the crossover depth the measured pair metric is a finite-width floor ~ chi_1^k /
sqrt(N). For each width this simulates R networks (keep 0.8, L = 40, sigma_b^2 = 0.1; the
projected engine, O(R L N)), takes the median over a fixed deep layer window (k >= twice the
largest predicted crossover among N <= 4000) of sd(g_ab) / mean(g_aa), and prints the local
exponents d ln floor / d ln N between successive widths with 95 % bootstrap intervals over networks.

Each width is one task of ``experiments.runner`` and one row (study ``floor``) of the gradient
study's SQLite table, so the widths run in parallel and an interrupted run resumes.
"""
from __future__ import annotations

import argparse
import math

import numpy as np


def main(argv=None):
    from experiments.runner import add_runner_arguments, runner_from_args

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--activation", default="tanh")
    ap.add_argument("--sigma-w2", type=float, default=1.4)
    ap.add_argument("--keep", type=float, default=0.8)
    ap.add_argument("--depth", type=int, default=40)
    ap.add_argument("--realisations", type=int, default=200)
    ap.add_argument("--widths", type=int, nargs="+", default=[250, 1000, 4000, 16000])
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--db", default=None, help="SQLite results (default: the gradient study's)")
    ap.add_argument("--threads", type=int, default=2, help="torch threads of the --serial engine")
    add_runner_arguments(ap)
    a = ap.parse_args(argv)
    if not 0 < a.keep <= 1:
        ap.error(f"--keep (keep probability) must lie in (0, 1], got {a.keep}")
    if not (a.sigma_w2 > 0 and math.isfinite(a.sigma_w2)):
        ap.error(f"--sigma-w2 must be finite and > 0, got {a.sigma_w2}")
    if a.depth < 5 or a.realisations < 2 or a.threads < 1:
        ap.error("--depth must be >= 5, --realisations >= 2 and --threads >= 1, got "
                 f"{a.depth}, {a.realisations} and {a.threads}")
    if min(a.widths) < 2 or len(set(a.widths)) < 2:
        ap.error(f"--widths must be at least two distinct widths >= 2, got {a.widths}")
    if not any(n <= 4000 for n in a.widths):
        ap.error(f"--widths must include one <= 4000 (it sets the layer window), got {a.widths}")
    import meanfield as mf
    from experiments import gradient_study as gs

    engine = runner_from_args(a)
    if engine["engine"] == "serial":
        import torch
        torch.set_num_threads(a.threads)
    try:
        theory = mf.gradient_metrics(a.activation, a.sigma_w2, gs.SB, a.keep, a.depth)
    except ValueError as e:  # e.g. an unknown activation, or no fixed point
        ap.error(str(e))
    kx_max = max(float(theory.crossover_depth(n)) for n in a.widths if n <= 4000)
    k = np.arange(a.depth)[::-1]
    deep = k >= min(max(2 * kx_max, kx_max + 5), a.depth - 4)
    print(f"{a.activation} sigma_w2={a.sigma_w2} keep={a.keep}: window k = {k[deep].min()}..{k[deep].max()}")

    def floor(gab, gaa):
        return np.median(gab.std(0, ddof=1)[deep] / gaa.mean(0)[deep])

    specs = [gs.spec("floor", a.activation, a.sigma_w2, a.keep, n, a.depth, a.realisations, seed=a.seed)
             for n in a.widths]
    sims = gs.open_simulations(a.db or gs.DEFAULT_DB, "cpu", **engine)
    with sims.store:
        sims.compute(specs)
        results = [sims.get(s) for s in specs]
    rng = np.random.default_rng(0)
    logn, floors, boots = [], [], []
    for n, r in zip(a.widths, results, strict=True):
        idx = [rng.integers(0, a.realisations, a.realisations) for _ in range(300)]
        floors.append(floor(r["g_ab"], r["g_aa"]))
        boots.append(np.array([floor(r["g_ab"][i], r["g_aa"][i]) for i in idx]))
        logn.append(math.log(n))
        print(f"N = {n}: floor {floors[-1]:.4g} +- {boots[-1].std():.2g}")
    logn = np.array(logn)
    local = np.diff(np.log(floors)) / np.diff(logn)
    bl = np.array([np.diff(np.log([b[i] for b in boots])) / np.diff(logn) for i in range(300)])
    lo, hi = np.quantile(bl, [0.025, 0.975], axis=0)
    for j, v in enumerate(local):
        print(f"exponent {a.widths[j]} -> {a.widths[j + 1]}: {v:.3f} [{lo[j]:.3f}, {hi[j]:.3f}] (theory -0.5)")


if __name__ == "__main__":
    main()
