"""Fixed points, slopes and depth scales from the command line.

    python -m meanfield.depthscale --rate 0.5
    python -m meanfield.depthscale --keep 0.99 --sigma-w2 1:4:0.5 --json out.json

``--rate`` is the drop probability (PyTorch's p, Keras' rate); ``--keep`` is the keep probability
rho of the papers. Give at most one; the output states both.
"""
from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from .activations import ACTIVATIONS
from .maps import analyze

COLUMNS = ("sigma_w2", "q_star", "c_star", "chi_1", "chi_c", "xi_q", "xi_c", "xi_1")


def parse_grid(text: str) -> np.ndarray:
    """'1.6' -> [1.6]; '1,2,3' -> list; 'start:stop:step' -> inclusive arithmetic range."""
    try:
        if ":" in text:
            parts = [float(t) for t in text.split(":")]
            if len(parts) != 3:
                raise ValueError
            start, stop, step = parts
            if step <= 0 or stop < start:
                raise ValueError
            n = int(np.floor((stop - start) / step + 1e-9)) + 1
            return np.round(start + step * np.arange(n), 12)
        return np.array([float(t) for t in text.split(",")])
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a number, a comma list or start:stop:step with step > 0, got {text!r}") from None


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m meanfield.depthscale",
        description="Mean-field fixed points (q*, c*), slopes (chi_1, chi_c) and depth scales "
                    "(xi_q, xi_c, xi_1) of deep networks with dropout-like noise, with the "
                    "trainable-depth bound multiple * xi_c (Schoenholz et al.: about 6 xi_c).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--rate", type=float, default=None,
                   help="drop probability in [0, 1) (PyTorch's p, Keras' rate); keep = 1 - rate")
    g.add_argument("--keep", type=float, default=None,
                   help="keep probability rho in (0, 1] (the papers' 'dropout rate'); default 1 = no dropout")
    ap.add_argument("--activation", default="tanh", choices=ACTIVATIONS,
                    help="element-wise nonlinearity (erf means erf(sqrt(pi) x / 2))")
    ap.add_argument("--sigma-w2", type=parse_grid, default="1:4:0.1",
                    help="weight variance sigma_w^2 > 0 (times 1/fan-in): a value, a list a,b,c "
                         "or a range start:stop:step")
    ap.add_argument("--sigma-b2", type=float, default=0.05, help="bias variance sigma_b^2 >= 0")
    ap.add_argument("--noise", choices=("dropout", "sparseout"), default="dropout",
                    help="noise layer after each hidden activation")
    ap.add_argument("--s", type=float, default=None,
                    help="Sparseout norm exponent s > 0 (s = 2 is dropout); implies --noise sparseout")
    ap.add_argument("--backward", choices=("true", "code"), default="true",
                    help="Sparseout backward: the true derivative, or the reference code's factor")
    ap.add_argument("--multiple", type=float, default=6.0,
                    help="depth-bound multiple > 0: the table shows multiple * xi_c (Schoenholz: 6)")
    ap.add_argument("--json", metavar="PATH", default=None,
                    help="also write a JSON list of records (inputs and results) to PATH ('-' = stdout only JSON)")
    return ap


def _fmt(v):
    if not np.isfinite(v):
        return "inf" if v > 0 else "-"
    return f"{v:.6g}" if abs(v) < 1e5 else f"{v:.3e}"


def main(argv=None) -> int:
    ap = build_parser()
    args = ap.parse_args(argv)
    if args.rate is not None and not 0 <= args.rate < 1:
        ap.error(f"--rate (drop probability) must lie in [0, 1), got {args.rate}")
    if args.keep is not None and not 0 < args.keep <= 1:
        ap.error(f"--keep (keep probability) must lie in (0, 1], got {args.keep}")
    if not (np.isfinite(args.multiple) and args.multiple > 0):
        ap.error(f"--multiple must be a positive number, got {args.multiple}")
    keep = 1.0 - args.rate if args.rate is not None else (1.0 if args.keep is None else args.keep)
    noise = "sparseout" if args.s is not None else args.noise
    s = 2.0 if args.s is None else args.s
    try:
        res = analyze(args.activation, args.sigma_w2, args.sigma_b2, keep, noise=noise, s=s,
                      backward=args.backward, on_missing="nan")
    except ValueError as err:
        ap.error(str(err))
    records = res.records()
    for rec in records:
        rec[f"{args.multiple:g}_xi_c"] = args.multiple * rec["xi_c"]
    if args.json is not None:
        text = json.dumps(records, indent=1, allow_nan=True)
        if args.json == "-":
            print(text)
            return 0
        with open(args.json, "w") as fh:
            fh.write(text + "\n")

    noise_desc = noise if noise == "dropout" else f"sparseout (s = {s:g}, backward = {args.backward})"
    print(f"# activation = {args.activation}, noise = {noise_desc}, keep (rho) = {keep:g}, "
          f"drop (rate) = {1 - keep:g}, sigma_b^2 = {args.sigma_b2:g}")
    head = list(COLUMNS) + [f"{args.multiple:g}*xi_c"]
    print("  ".join(f"{h:>10}" for h in head))
    for rec in records:
        if not rec["has_fixed_point"]:
            print(f"{_fmt(rec['sigma_w2']):>10}  no finite fixed point q* (the variance map diverges)")
            continue
        vals = [rec[c] for c in COLUMNS] + [args.multiple * rec["xi_c"]]
        print("  ".join(f"{_fmt(v):>10}" for v in vals))
    if keep < 1:
        print("# with dropout c* < 1 everywhere, so xi_c stays finite: no order-to-chaos transition")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BrokenPipeError:  # `... | head`: the reader left; not an error of ours
        import os
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(0)
