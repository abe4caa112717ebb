"""Command line: gradient metrics per layer, exact theory and GIA theory versus finite-width simulation.

    python -m meanfield.gradients --activation tanh --sigma-w2 1.4 --sigma-b2 0.1 --keep 0.8 \
        --depth 200 --width 1000 --realisations 100 --last 30
    python -m meanfield.gradients --activation linear --sigma-w2 0.5 --keep 0.6 --depth 50 \
        --realisations 0                       # theory only
    ... --out table.csv                        # or .json: every layer, all columns

Theory comes from ``meanfield.gradient_metrics`` (THEORY §4; exact and GIA recursions), the
simulation from :mod:`meanfield.simulation` (torch, float64). ``--keep`` is the keep probability
rho; ``--drop`` (= 1 - rho, PyTorch's ``p``) is accepted instead. Layer 1 is the input side, layer L
the output layer, k = L - l the distance from the output.
"""
from __future__ import annotations

import argparse
import csv
import json
import sys

import numpy as np

__all__ = ["main", "build_parser", "compute_table"]

ACTIVATIONS = ("linear", "relu", "tanh", "hard_tanh", "erf", "sigmoid", "gelu", "silu")


def build_parser():
    p = argparse.ArgumentParser(prog="python -m meanfield.gradients", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--activation", default="tanh", choices=ACTIVATIONS)
    p.add_argument("--sigma-w2", type=float, default=1.4, help="weight variance sigma_w^2 (fan-in scaled)")
    p.add_argument("--sigma-b2", type=float, default=0.1, help="bias variance sigma_b^2")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--keep", type=float, help="keep probability rho in (0, 1] (default 1: no dropout)")
    g.add_argument("--drop", type=float, help="drop probability 1 - rho in [0, 1)")
    p.add_argument("--noise", default="dropout", choices=("none", "dropout", "sparseout"))
    p.add_argument("--s", type=float, default=2.0, help="Sparseout norm exponent (s = 2: dropout)")
    p.add_argument("--backward", default="true", choices=("true", "code"),
                   help="Sparseout backward factor: true derivative or the reference code's")
    p.add_argument("--loss", default="sum_squares", choices=("sum_squares", "readout"))
    p.add_argument("--n-out", type=int, default=10, help="outputs of the readout loss (simulation)")
    p.add_argument("--depth", type=int, default=50, help="number of layers L")
    p.add_argument("--width", type=int, default=1000, help="simulation width N")
    p.add_argument("--realisations", type=int, default=100, help="random networks R (0: theory only)")
    p.add_argument("--engine", default="projected", choices=("projected", "dense"))
    p.add_argument("--gia", action="store_true", help="simulate with fresh backward weights (GIA)")
    p.add_argument("--q0", type=float, help="layer-0 variance (default: q* from the core)")
    p.add_argument("--c0", type=float, help="layer-0 correlation (default: c* from the core)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--last", type=int, default=0, help="print only the last K layers (0: all)")
    p.add_argument("--out", help="write the full table to a .csv or .json file")
    return p


def _theory(args, keep, noise):
    """{'exact': (g_aa, g_ab), 'gia': (...)} from the core, or a reason string if unavailable."""
    try:
        from meanfield.gradients import gradient_metrics
    except ImportError as exc:
        return f"theory unavailable ({exc})"
    # the readout theory is per output with a factor N (see gradient_metrics): rescale to n_out outputs
    scale = args.n_out / args.width if args.loss == "readout" else 1.0
    out = {}
    for method in ("exact", "gia"):
        r = gradient_metrics(args.activation, args.sigma_w2, args.sigma_b2, keep, args.depth, noise=noise,
                             s=args.s, backward=args.backward, method=method, loss=args.loss)
        out[method] = (scale * np.asarray(r.g_aa, dtype=float), scale * np.asarray(r.g_ab, dtype=float))
    return out


def compute_table(args):
    """Rows (one dict per layer) with theory and simulation columns, plus notes."""
    if args.keep is not None:
        keep = args.keep
    elif args.drop is not None:
        if not 0.0 <= args.drop < 1.0:
            raise ValueError(f"drop must be in [0, 1), got {args.drop!r}")
        keep = 1.0 - args.drop
    else:
        keep = 1.0
    if not 0.0 < keep <= 1.0:
        raise ValueError(f"keep must be in (0, 1], got {keep!r}")
    if args.depth < 1:
        raise ValueError(f"depth must be >= 1, got {args.depth}")
    if args.realisations < 0 or args.realisations == 1:
        raise ValueError(f"realisations must be 0 (theory only) or >= 2, got {args.realisations}")
    noise = args.noise if keep < 1.0 or args.noise == "sparseout" else "none"
    notes = [f"activation={args.activation} sigma_w2={args.sigma_w2:g} sigma_b2={args.sigma_b2:g} "
             f"keep={keep:g} (drop={1 - keep:g}) noise={noise} loss={args.loss} depth={args.depth}"
             + (f" n_out={args.n_out} (readout theory scaled by n_out/N)" if args.loss == "readout" else "")]
    theory = _theory(args, keep, noise)
    if isinstance(theory, str):
        notes.append(theory)
        theory = {}
    sim = None
    if args.realisations:
        import torch
        from meanfield.simulation import simulate_gradients
        torch.set_num_threads(max(1, args.threads))
        sim = simulate_gradients(args.activation, args.sigma_w2, args.sigma_b2, keep, width=args.width,
                                 depth=args.depth, realisations=args.realisations, noise=noise, s=args.s,
                                 backward=args.backward, gia=args.gia, loss=args.loss, n_out=args.n_out,
                                 q0=args.q0, c0=args.c0, engine=args.engine, seed=args.seed,
                                 device=args.device, progress=sys.stderr.isatty())
        notes.append(f"simulation: N={sim.width} R={sim.realisations} engine={sim.engine} "
                     f"backward weights={'fresh (GIA)' if sim.gia else 'same as forward'} "
                     f"q0={sim.q0:.6g} c0={sim.c0:.6g} seed={sim.seed}; +- is the standard error")
    rows = []
    for i in range(args.depth):
        row = {"layer": i + 1, "k": args.depth - 1 - i}
        for j, m in enumerate(("g_aa", "g_ab")):
            for method, vals in theory.items():
                row[f"{method}_{m}"] = float(vals[j][i])
        if sim is not None:
            for m in ("g_aa", "g_ab", "g_abs"):
                row[f"sim_{m}"] = float(sim.mean(m)[i])
                row[f"sim_{m}_sem"] = float(sim.sem(m)[i])
                row[f"sim_{m}_var"] = float(sim.var(m)[i])
        rows.append(row)
    return rows, notes


def _fmt(row, m):
    parts = []
    for method in ("exact", "gia"):
        if f"{method}_{m}" in row:
            parts.append(f"{row[f'{method}_{m}']:11.4e}")
    if f"sim_{m}" in row:
        parts.append(f"{row[f'sim_{m}']:11.4e} +- {row[f'sim_{m}_sem']:9.2e}")
        if f"exact_{m}" in row and row[f"exact_{m}"] != 0:
            parts.append(f"{row[f'sim_{m}'] / row[f'exact_{m}']:7.4f}")
    return "  ".join(parts)


def _header(row, m):
    h = [f"{method} {m}".rjust(11) for method in ("exact", "gia") if f"{method}_{m}" in row]
    if f"sim_{m}" in row:
        h.append(f"sim {m}".rjust(24))
        if f"exact_{m}" in row:
            h.append("sim/ex".rjust(7))
    return "  ".join(h)


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        rows, notes = compute_table(args)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.out:
        if args.out.endswith(".json"):
            with open(args.out, "w") as f:
                json.dump({"notes": notes, "rows": rows}, f, indent=1)
        else:
            with open(args.out, "w", newline="") as f:
                w = csv.DictWriter(f, fieldnames=list(rows[0]))
                w.writeheader()
                w.writerows(rows)
    for n in notes:
        print("# " + n)
    shown = rows[-args.last:] if args.last else rows
    for m in ("g_aa", "g_ab"):
        if _header(rows[0], m):
            print(f"{'layer':>5} {'k':>4}  " + _header(rows[0], m))
            for r in shown:
                print(f"{r['layer']:5d} {r['k']:4d}  " + _fmt(r, m))
    if "sim_g_abs" in rows[0]:
        print(f"{'layer':>5} {'k':>4}  {'sim g~_ab':>24}")
        for r in shown:
            print(f"{r['layer']:5d} {r['k']:4d}  {r['sim_g_abs']:11.4e} +- {r['sim_g_abs_sem']:9.2e}")
    if args.out:
        print(f"# wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
