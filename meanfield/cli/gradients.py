"""Command line: gradient metrics per layer, exact theory and GIA theory versus finite-width simulation.

    python -m meanfield.gradients --activation tanh --sigma-w2 1.4 --sigma-b2 0.1 --keep 0.8 \
        --depth 200 --width 1000 --realisations 100 --last 30
    python -m meanfield.gradients --activation linear --sigma-w2 0.5 --keep 0.6 --depth 50 \
        --realisations 0                       # theory only
    ... --out table.csv                        # or .json: every layer, all columns

Theory comes from :func:`meanfield.gradient_metrics` (docs/THEORY.md §4; exact and GIA
recursions), the simulation from :mod:`meanfield.simulation` (torch, float64; the ``[torch]``
extra). ``--keep`` is the keep probability rho; ``--drop`` (alias ``--rate``, = 1 - rho, PyTorch's
``p``) is accepted instead. Layer 1 is the input side, layer L the output layer, k = L - l the
distance from the output.
"""
from __future__ import annotations

import argparse
import csv
import importlib.util
import json
import sys

import numpy as np

from ..activations import registered_activations
from .args import (HelpFormatter, add_noise_arguments, cuda_problem, device, integer, json_safe, noise_from_args,
                   output_path, real)

__all__ = ["main", "build_parser", "parse_args", "compute_table"]


def _realisations(text):
    v = integer(0)(text)
    if v == 1:
        raise argparse.ArgumentTypeError("must be 0 (theory only) or an integer >= 2, got '1'")
    return v


def build_parser():
    p = argparse.ArgumentParser(prog="python -m meanfield.gradients", description=__doc__.split("\n\n")[0],
                                formatter_class=HelpFormatter)
    p.add_argument("--activation", default="tanh", choices=registered_activations())
    p.add_argument("--sigma-w2", type=real(0, lo_open=True, what="sigma_w2 (weight variance)"), default=1.4,
                   help="weight variance sigma_w^2 > 0 (fan-in scaled)")
    p.add_argument("--sigma-b2", type=real(0, what="sigma_b2 (bias variance)"), default=0.1,
                   help="bias variance sigma_b^2 >= 0")
    add_noise_arguments(p)
    p.add_argument("--loss", default="sum_squares", choices=("sum_squares", "readout"))
    p.add_argument("--n-out", type=integer(1), default=10, help="outputs of the readout loss (>= 1)")
    p.add_argument("--depth", type=integer(1), default=50, help="number of layers L >= 1")
    p.add_argument("--width", type=integer(2), default=1000, help="simulation width N >= 2")
    p.add_argument("--realisations", type=_realisations, default=100,
                   help="random networks R >= 2 (0: theory only)")
    p.add_argument("--engine", default=None, choices=("projected", "dense"),
                   help="projected (O(RLN), unit noise) or dense (explicit weights); default "
                        "projected, dense for weight noise such as DropConnect")
    p.add_argument("--gia", action="store_true", help="simulate with fresh backward weights (GIA)")
    p.add_argument("--q0", type=real(0, lo_open=True), help="layer-0 variance > 0 (default: q*)")
    p.add_argument("--c0", type=real(-1, 1), help="layer-0 correlation in [-1, 1] (default: c*)")
    p.add_argument("--seed", type=integer(0), default=0, help="random seed >= 0")
    p.add_argument("--device", type=device(), default="cpu", help="torch device: cpu, cuda or cuda:N")
    p.add_argument("--threads", type=integer(1), default=2, help="torch CPU threads >= 1")
    p.add_argument("--last", type=integer(0), default=0, help="print only the last K >= 0 layers (0: all)")
    p.add_argument("--out", type=output_path,
                   help="write the full table to a file: JSON if its name ends in .json, else CSV "
                        "(non-finite values: null in JSON, empty in CSV)")
    return p


def _theory(args, noise):
    """{'exact': (g_aa, g_ab), 'gia': (...)} from the core."""
    from ..backprop import gradient_metrics
    # the readout theory is per output with a factor N (see gradient_metrics): rescale to n_out outputs
    scale = args.n_out / args.width if args.loss == "readout" else 1.0
    out = {}
    for method in ("exact", "gia"):
        r = gradient_metrics(args.activation, args.sigma_w2, args.sigma_b2, depth=args.depth,
                             noise=noise, method=method, loss=args.loss)
        out[method] = (scale * np.asarray(r.g_aa, dtype=float), scale * np.asarray(r.g_ab, dtype=float))
    return out


def compute_table(args, noise):
    """Rows (one dict per layer) with theory and simulation columns, plus notes."""
    keep = float(noise.keep) if "keep" in noise.param_values() else None
    notes = [f"activation={args.activation} sigma_w2={args.sigma_w2:g} sigma_b2={args.sigma_b2:g} "
             f"noise={noise.spec()}" + ("" if keep is None else f" keep={keep:g} (drop={1 - keep:g})")
             + f" loss={args.loss} "
             f"depth={args.depth}"
             + (f" n_out={args.n_out} (readout theory scaled by n_out/N)" if args.loss == "readout" else "")]
    theory = _theory(args, noise)
    sim = None
    if args.realisations:
        import torch
        from ..simulation import simulate_gradients
        torch.set_num_threads(args.threads)
        sim = simulate_gradients(args.activation, args.sigma_w2, args.sigma_b2, width=args.width,
                                 depth=args.depth, realisations=args.realisations, noise=noise,
                                 gia=args.gia, loss=args.loss, n_out=args.n_out,
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


def _check_device(parser, args):
    """Fail at parse time for a missing torch or an unusable device (before any computation)."""
    if not args.realisations:
        return
    if importlib.util.find_spec("torch") is None:
        parser.error("the simulation needs torch: pip install 'meanfield[torch]' (or run theory "
                     "only with --realisations 0)")
    problem = cuda_problem(args.device)
    if problem:
        parser.error(f"argument --device: {problem}")


def parse_args(argv=None) -> argparse.Namespace:
    """The validated flags, with the noise layer as ``layer`` and the engine resolved.

    Every check happens here, before the core's computations (torch is imported only to ask
    whether a named CUDA device exists): bad input ends in an ``error:`` line naming the flag and
    its range, exit status 2 (``SystemExit``).
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    args.layer = noise_from_args(args, parser)
    if args.engine is None:
        args.engine = "dense" if args.layer.acts_on == "weights" else "projected"
    elif args.engine == "projected" and args.layer.acts_on == "weights":
        parser.error(f"argument --engine: {args.layer.name} noise acts on weights and needs "
                     "--engine dense")
    _check_device(parser, args)
    return args


def main(argv=None):
    args = parse_args(argv)
    noise = args.layer
    from ..fixed_points import NoFixedPointError
    from ..gauss import ConvergenceError
    try:
        rows, notes = compute_table(args, noise)
    except NoFixedPointError as exc:  # the API's advice (on_missing=...) is no use here
        print(f"error: {str(exc).split('; ')[0]}; the gradient metrics start at q*: choose "
              "--sigma-w2, --sigma-b2 or the noise flags where it exists", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except ConvergenceError as exc:  # a numerical failure of ours, not a usage error
        print(f"error: {exc} (please report this with the command line)", file=sys.stderr)
        return 1
    if args.out:
        if args.out.endswith(".json"):
            with open(args.out, "w") as f:
                json.dump(json_safe({"notes": notes, "rows": rows}), f, indent=1, allow_nan=False)
        else:
            with open(args.out, "w", newline="") as f:
                w = csv.DictWriter(f, fieldnames=list(rows[0]))
                w.writeheader()
                w.writerows(json_safe(rows))  # non-finite -> None -> an empty cell
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
