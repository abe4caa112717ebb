"""Fixed points, slopes and depth scales from the command line.

    python -m meanfield.depthscale --rate 0.5
    python -m meanfield.depthscale --keep 0.99 --sigma-w2 1:4:0.5 --json out.json

``--rate`` (alias ``--drop``) is the drop probability (PyTorch's p, Keras' rate); ``--keep`` is
the keep probability rho of the papers. Give at most one; the output states both.
"""
from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from ..activations import registered_activations
from .args import HelpFormatter, add_noise_arguments, grid, json_safe, noise_from_args, output_path, real

COLUMNS = ("sigma_w2", "q_star", "c_star", "chi_1", "chi_c", "xi_q", "xi_c", "xi_1")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m meanfield.depthscale",
        description="Mean-field fixed points (q*, c*), slopes (chi_1, chi_c) and depth scales "
                    "(xi_q, xi_c, xi_1) of deep networks with dropout-like noise, with the "
                    "trainable-depth bound multiple * xi_c (Schoenholz et al.: about 6 xi_c).",
        formatter_class=HelpFormatter)
    ap.add_argument("--activation", default="tanh", choices=registered_activations(),
                    help="element-wise nonlinearity (erf means erf(sqrt(pi) x / 2))")
    ap.add_argument("--sigma-w2", type=grid(lo=0, lo_open=True), default="1:4:0.1",
                    help="weight variance sigma_w^2 > 0 (times 1/fan-in): a value, a list a,b,c "
                         "or a range start:stop:step")
    ap.add_argument("--sigma-b2", type=real(0, what="sigma_b2 (bias variance)"), default=0.05,
                    help="bias variance sigma_b^2 >= 0")
    add_noise_arguments(ap)
    ap.add_argument("--multiple", type=real(0, lo_open=True, what="multiple"), default=6.0,
                    help="depth-bound multiple > 0: the table shows multiple * xi_c (Schoenholz: 6)")
    ap.add_argument("--json", metavar="PATH", nargs="?", const="-", type=output_path, default=None,
                    help="write a JSON list of records (inputs and results) to PATH; without PATH "
                         "or with '-', print only the JSON to stdout. Non-finite values (an "
                         "infinite depth scale, a point without a fixed point) are written as null")
    return ap


def _fmt(v):
    if not np.isfinite(v):
        return "inf" if v > 0 else "-"
    return f"{v:.6g}" if abs(v) < 1e5 else f"{v:.3e}"


def parse_args(argv=None, parser: argparse.ArgumentParser | None = None) -> argparse.Namespace:
    """The validated flags, with the noise layer they describe as ``layer``.

    Every check happens here, before the core is imported: bad input ends in an ``error:`` line
    naming the flag and its range, exit status 2 (``SystemExit``).
    """
    parser = parser or build_parser()
    args = parser.parse_args(argv)
    args.layer = noise_from_args(args, parser)
    return args


PART = 512  # grid points per analyze call: the progress bar's step


def _progress(total):
    """A tqdm bar on stderr (shown on a terminal only) if tqdm is installed, else None: the core
    installs with numpy and scipy alone."""
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, unit="point", desc="depth scales", disable=None, leave=False)


def main(argv=None) -> int:
    ap = build_parser()
    args = parse_args(argv, ap)
    noise = args.layer
    from ..depth_scales import analyze  # after parsing: --help and errors stay instant
    from ..gauss import ConvergenceError

    records = []
    parts = np.array_split(args.sigma_w2, -(-args.sigma_w2.size // PART))
    bar = _progress(args.sigma_w2.size) if len(parts) > 1 else None
    try:
        for part in parts:
            records += analyze(args.activation, part, args.sigma_b2, noise=noise, on_missing="nan").records()
            if bar is not None:
                bar.update(part.size)
    except ValueError as err:
        ap.error(str(err))
    except ConvergenceError as err:  # a numerical failure of ours, not a usage error
        print(f"error: {err} (please report this with the command line)", file=sys.stderr)
        return 1
    finally:
        if bar is not None:
            bar.close()
    for rec in records:
        rec[f"{args.multiple:g}_xi_c"] = args.multiple * rec["xi_c"]
    if args.json is not None:
        text = json.dumps(json_safe(records), indent=1, allow_nan=False)
        if args.json == "-":
            print(text)
            return 0
        with open(args.json, "w") as fh:
            fh.write(text + "\n")

    params = {k: v for k, v in noise.param_values().items() if k != "keep"}
    desc = noise.name + (" (" + ", ".join(f"{k} = {v:g}" if not isinstance(v, str) else f"{k} = {v}"
                                          for k, v in params.items()) + ")"
                         if params else "")
    if "keep" in noise.param_values():  # both probabilities, for the layers that have them
        keep = float(np.asarray(noise.keep))
        desc += f", keep (rho) = {keep:g}, drop (rate) = {1 - keep:g}"
    print(f"# activation = {args.activation}, noise = {desc}, sigma_b^2 = {args.sigma_b2:g}")
    head = list(COLUMNS) + [f"{args.multiple:g}*xi_c"]
    print("  ".join(f"{h:>10}" for h in head))
    for rec in records:
        if not rec["has_fixed_point"]:
            print(f"{_fmt(rec['sigma_w2']):>10}  no stable finite fixed point q* (diverging or repelling map)")
            continue
        vals = [rec[c] for c in COLUMNS] + [args.multiple * rec["xi_c"]]
        print("  ".join(f"{_fmt(v):>10}" for v in vals))
    if not np.all(noise.is_identity()):
        print(f"# with {noise.name} c* < 1 everywhere, so xi_c stays finite: no order-to-chaos "
              "transition")
    if any(rec["has_fixed_point"] and rec["q_star"] == 0 for rec in records):
        print("# q* = 0 rows: chi_c is the pair-gradient factor and xi_c its scale; the c-map's own "
              "slope there is c_slope in --json (docs/THEORY.md §12.1)")
    return 0
