"""Benchmarks of the trainable-depth fit (``experiments.fit``).

    python benchmarks/bench_fit.py [--n-boot 1000] [--repeat 1] [--skip-cli] [--cli-bootstrap N]

1. ``fit_law`` with ``--n-boot`` bootstrap resamples, per law, on one realistic boundary: tanh,
   sigma_b^2 = 0.05, keep 0.98, sigma_w^2 = 1:4:0.25 (13 points), L_max from the two-scale law
   with 15 % log-normal scatter, the two largest points right-censored at the grid top (250).
2. ``python -m experiments.fit --table`` end to end (interpreter start-up included) on a
   synthetic Fig. 7-like heatmap: keep 1, 0.99, 0.98, 0.95; sigma_w^2 1:4:0.25; depths 10:250:20;
   each network evaluated at 4 checkpoints (100, 300, 1000, 3000 steps). Once with the default
   ``--per-step last`` (4 boundaries) and once with ``--per-step each`` (16 boundaries, budget
   laws), both with the CLI's default number of resamples (or ``--cli-bootstrap``).

Wall and CPU (process, children included for 2) times are printed, best of --repeat; on a shared
machine the CPU time is the fairer number.

Measured (2 shared cores, CPU seconds): the batched Levenberg-Marquardt this fit had before took
0.9 s for part 1 (all six laws), 3.1 s and 12.0 s for part 2 at 1000 resamples; scipy.optimize
(SLSQP per problem, ~1.2-1.8 ms per resample) takes 11.8 s, 52 s and 183 s at 1000 resamples, and
23 s and 79 s at the CLI's default 400. The constants, intervals and likelihoods agree to the
printed digits.
"""
from __future__ import annotations

import argparse
import csv
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
import meanfield as mf  # noqa: E402
from bench_core import timed  # noqa: E402  (this script's folder is on sys.path)
from experiments import fit  # noqa: E402

SW = np.round(np.arange(1.0, 4.0 + 1e-9, 0.25), 12)
KEEPS = (1.0, 0.99, 0.98, 0.95)
DEPTHS = tuple(range(10, 251, 20))
BUDGETS = (100, 300, 1000, 3000)


def _true_depth(xc, x1, T):
    """Two-scale law whose constants grow with the budget (a(T) = 1 + 0.8 ln T)."""
    a = 1.0 + 0.8 * np.log(T)
    return fit.LAWS["two-scale"].predict([a, 2 * a], xc, x1)


def boundary(rng):
    r = mf.analyze("tanh", SW, 0.05, keep=0.98)
    xc, x1 = np.asarray(r.xi_c), np.asarray(r.xi_1)
    L = _true_depth(xc, x1, 1000.0) * np.exp(rng.normal(0, 0.15, len(SW)))
    c = (L > 250).astype(int)
    c[np.argsort(L)[-2:]] = 1
    L = np.where(c == 1, np.minimum(L, 250.0), L)
    return fit.boundary_from_arrays(SW, L, keep=0.98, censor=c)


def write_table(path, rng):
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["dataset", "activation", "sigma_b2", "keep", "sigma_w2", "depth", "seed",
                    "steps", "accuracy"])
        for keep in KEEPS:
            r = mf.analyze("tanh", SW, 0.05, keep=keep)
            for s, xc, x1 in zip(SW, np.asarray(r.xi_c), np.asarray(r.xi_1)):
                for T in BUDGETS:
                    L = float(_true_depth(xc, x1, T)) * float(np.exp(rng.normal(0, 0.15)))
                    for d in DEPTHS:
                        acc = 0.95 if d <= L else 0.1
                        w.writerow(["mnist", "tanh", 0.05, keep, s, d, 0, T,
                                    round(acc + rng.normal(0, 0.01), 4)])


def run_cli(args):
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    w = time.perf_counter()
    p = subprocess.run([sys.executable, "-m", "experiments.fit", *args], cwd=ROOT,
                       capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    wall = time.perf_counter() - w
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if p.returncode != 0:
        raise SystemExit(f"CLI failed ({p.returncode}):\n{p.stderr}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return p.stdout, (wall, cpu)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n-boot", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--skip-cli", action="store_true")
    ap.add_argument("--cli-bootstrap", type=int, default=None,
                    help="--bootstrap of the CLI runs (default: the CLI's default)")
    args = ap.parse_args(argv)
    rng = np.random.default_rng(0)
    b = boundary(rng)
    print(f"1. fit_law, {args.n_boot} resamples, {len(b.L_max)} points ({int(b.censor.sum())} censored)")
    total = 0.0
    for name in fit.LAWS:
        res, (wall, cpu) = timed(lambda: fit.fit_law(name, b, n_boot=args.n_boot), args.repeat)
        total += cpu
        ci = ", ".join(f"[{lo:.3g}, {hi:.3g}]" for lo, hi in zip(res.ci_low, res.ci_high))
        print(f"   {name:18s} wall {wall:6.2f} s  cpu {cpu:6.2f} s   theta {np.round(res.theta, 4)} "
              f"CI {ci}  nll {res.nll:.6f}")
    print(f"   all laws: cpu {total:.2f} s")
    if args.skip_cli:
        return
    with tempfile.TemporaryDirectory() as tmp:
        table = Path(tmp) / "heatmap.csv"
        write_table(table, rng)
        boot = [] if args.cli_bootstrap is None else ["--bootstrap", str(args.cli_bootstrap)]
        for extra in ([], ["--per-step", "each"]):
            out, (wall, cpu) = run_cli(["--table", str(table), *extra, *boot])
            drawn = out.strip().splitlines()[-1]
            print(f"2. CLI --table {' '.join(extra + boot) or '(per-step last)'}: wall {wall:.1f} s, "
                  f"cpu {cpu:.1f} s; {drawn}")


if __name__ == "__main__":
    main()
