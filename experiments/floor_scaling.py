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


def build_parser() -> argparse.ArgumentParser:
    from experiments.runner import add_runner_arguments
    from meanfield.activations import registered_activations
    from meanfield.cli.args import creatable_path, integer, real

    ap = argparse.ArgumentParser(prog="python -m experiments.floor_scaling", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--activation", default="tanh", choices=registered_activations())
    ap.add_argument("--sigma-w2", type=real(0, lo_open=True, what="sigma_w2 (weight variance)"),
                    default=1.4, help="weight variance sigma_w^2 > 0")
    ap.add_argument("--keep", type=real(0, 1, lo_open=True, what="keep probability rho"),
                    default=0.8, help="dropout keep probability rho in (0, 1]")
    ap.add_argument("--depth", type=integer(5), default=40, help="layers L >= 5")
    ap.add_argument("--realisations", type=integer(2), default=200, help="networks per width >= 2")
    ap.add_argument("--widths", type=integer(2), nargs="+", default=[250, 1000, 4000, 16000],
                    help="at least two distinct widths >= 2, one of them <= 4000")
    ap.add_argument("--seed", type=integer(0), default=11, help="random seed >= 0")
    ap.add_argument("--db", type=creatable_path("file"), default=None,
                    help="SQLite results (default: the gradient study's)")
    ap.add_argument("--threads", type=integer(1), default=2,
                    help="torch threads >= 1 of the --serial engine")
    add_runner_arguments(ap)
    return ap


def parse_args(argv=None) -> argparse.Namespace:
    """The validated flags with the runner's ``engine`` keywords, the ``theory`` (exact gradient
    metrics) and the deep layer ``window`` (a mask over layers); every check happens here, before
    torch is imported or a simulation starts (bad input: an ``error:`` line naming the flag,
    exit 2)."""
    import meanfield as mf
    from experiments import gradient_study as gs
    from experiments.runner import runner_from_args

    ap = build_parser()
    a = ap.parse_args(argv)
    if len(a.widths) < 2 or len(set(a.widths)) < len(a.widths):
        ap.error(f"argument --widths: must be at least two distinct widths, got {a.widths}")
    if not any(n <= 4000 for n in a.widths):
        ap.error(f"argument --widths: must include one <= 4000 (it sets the layer window), got "
                 f"{a.widths}")
    a.engine = runner_from_args(a)
    try:
        a.theory = mf.gradient_metrics(a.activation, a.sigma_w2, gs.SB, a.keep, a.depth)
    except ValueError as e:  # e.g. no fixed point
        ap.error(str(e))
    a.window = gs.floor_window(a.theory, [n for n in a.widths if n <= 4000], a.depth)
    if not a.window.any():
        ap.error(f"no deep layer window: the crossover depth is undefined for --activation "
                 f"{a.activation} --sigma-w2 {a.sigma_w2:g} --keep {a.keep:g}")
    return a


def main(argv=None):
    from experiments import gradient_study as gs

    a = parse_args(argv)
    engine, deep = a.engine, a.window
    if engine["engine"] == "serial":
        import torch
        torch.set_num_threads(a.threads)
    k = np.arange(a.depth)[::-1]
    print(f"{a.activation} sigma_w2={a.sigma_w2} keep={a.keep}: window k = {k[deep].min()}..{k[deep].max()}")

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
        floors.append(gs.noise_floor(r["g_ab"], r["g_aa"], deep))
        boots.append(np.array([gs.noise_floor(r["g_ab"][i], r["g_aa"][i], deep) for i in idx]))
        logn.append(math.log(n))
        print(f"N = {n}: floor {floors[-1]:.4g} +- {boots[-1].std():.2g}")
    logn = np.array(logn)
    local = np.diff(np.log(floors)) / np.diff(logn)
    bl = np.array([np.diff(np.log([b[i] for b in boots])) / np.diff(logn) for i in range(300)])
    lo, hi = np.quantile(bl, [0.025, 0.975], axis=0)
    for j, v in enumerate(local):
        print(f"exponent {a.widths[j]} -> {a.widths[j + 1]}: {v:.3f} [{lo[j]:.3f}, {hi[j]:.3f}] (theory -0.5)")


if __name__ == "__main__":
    from meanfield.cli.args import run_main

    run_main(main)
