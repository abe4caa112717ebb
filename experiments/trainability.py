"""Trainability sweep: train deep tanh (or any core activation) dropout networks over a grid of
(dataset, keep, depth, sigma_w^2, seed) and store one row per network in SQLite.

Usage::

    python -m experiments.trainability --preset cpu --dataset mnist --keep 1.0,0.98
    python -m experiments.trainability --preset smoke --db /tmp/smoke.sqlite
    python -m experiments.trainability --preset paper --dataset cifar10 --device cuda

Depths are visited coarse to fine (smallest, largest, then bisection) so that an interrupted sweep
already brackets the boundary. All networks of one (dataset, depth, keep) are trained together as a
batched ensemble (``experiments.ensemble``; at most ``--max-members`` per batch), sharing one
minibatch stream. Rows are keyed by the full configuration, so rerunning the same command skips
finished networks: a killed sweep resumes where it stopped, with nothing lost (except the ensemble
in progress) or duplicated.

Presets (any grid or protocol field can be overridden on the command line):

- ``smoke``: a few tiny networks, seconds (CI).
- ``cpu``: an informative grid for 2 CPU cores: width 64, batch 128, 300 SGD steps (lr 0.01; RMSprop
  at lr 1e-3 destabilised every network deeper than ~25 layers, hiding the mean-field boundary),
  depths 10, 20, 30, 45, 60, 80, 100, 130, sigma_w^2 = 1.0 ... 4.0 step 0.5, sigma_b^2 = 0.05,
  keep in {1, 0.98}, one seed (112 networks per dataset).
- ``paper``: Huang et al.'s protocol: width 400, depth 10 ... 250 step 10, sigma_w^2 = 1.0 ... 4.0
  step 0.1, keep in {1, 0.99, 0.98, 0.95}, SGD lr 0.003, batch 1000, 1000 steps (GPU advised).

Stored per network: the full configuration and seed, final training accuracy/loss on the last
minibatch (with its dropout masks: the papers' metric), accuracy/loss on a fixed evaluation batch of
training images (no dropout), test accuracy (no dropout), wall time (ensemble time / members) and
the device.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import math
import os
import sys
from dataclasses import asdict, dataclass, replace
from pathlib import Path


from .data import DATASETS
from .store import Store

__all__ = ["Sweep", "PRESETS", "COLUMNS", "KEY", "TABLE", "DEFAULT_DB", "run_sweep", "open_store",
           "main"]

TABLE = "trainability"
DEFAULT_DB = Path("results") / "trainability.sqlite"

KEY = ("dataset", "activation", "init", "width", "depth", "sigma_w2", "sigma_b2", "keep",
       "optimizer", "lr", "batch_size", "steps", "data_seed", "eval_size", "test_size", "seed")
COLUMNS = {
    "dataset": "TEXT", "activation": "TEXT", "init": "TEXT", "width": "INTEGER",
    "depth": "INTEGER", "sigma_w2": "REAL", "sigma_b2": "REAL", "keep": "REAL",
    "optimizer": "TEXT", "lr": "REAL", "batch_size": "INTEGER", "steps": "INTEGER",
    "data_seed": "INTEGER", "eval_size": "INTEGER", "test_size": "INTEGER", "seed": "INTEGER",
    "train_acc_last": "REAL", "train_loss_last": "REAL", "eval_acc": "REAL", "eval_loss": "REAL",
    "test_acc": "REAL", "wall_time": "REAL", "device": "TEXT", "preset": "TEXT",
    "finished_at": "TEXT",
}


def _grid(lo: float, hi: float, step: float) -> tuple[float, ...]:
    n = int(round((hi - lo) / step))
    return tuple(round(lo + i * step, 10) for i in range(n + 1))


@dataclass(frozen=True)
class Sweep:
    """A full sweep specification: the grid and the shared training protocol."""

    datasets: tuple[str, ...] = ("mnist",)
    keeps: tuple[float, ...] = (1.0,)
    depths: tuple[int, ...] = (10,)
    sigma_w2s: tuple[float, ...] = (1.0,)
    seeds: tuple[int, ...] = (0,)
    sigma_b2: float = 0.05
    activation: str = "tanh"
    init: str = "gaussian"
    width: int = 400
    optimizer: str = "sgd"
    lr: float = 0.003
    batch_size: int = 1000
    steps: int = 1000
    data_seed: int = 0
    eval_size: int = 1000
    test_size: int = 10000   # capped at the test-set size
    max_members: int = 64

    def __post_init__(self):
        for d in self.datasets:
            if d not in DATASETS:
                raise ValueError(f"datasets must be among {sorted(DATASETS)}, got {d!r}")
        for name in ("keeps", "depths", "sigma_w2s", "seeds", "datasets"):
            if len(getattr(self, name)) == 0:
                raise ValueError(f"{name} must not be empty")
        if any(not (0 < k <= 1) for k in self.keeps):
            raise ValueError(f"keeps (keep probabilities rho) must be in (0, 1], got {self.keeps}")
        if any(int(d) != d or d < 1 for d in self.depths):
            raise ValueError(f"depths must be integers >= 1, got {self.depths}")
        if any(not (math.isfinite(s) and s > 0) for s in self.sigma_w2s):
            raise ValueError(f"sigma_w2s must be finite and > 0, got {self.sigma_w2s}")
        if self.max_members < 1:
            raise ValueError(f"max_members must be >= 1, got {self.max_members}")

    def configs(self) -> list[dict]:
        """One key dict per network of the grid (depth-major order)."""
        out = []
        for dataset in self.datasets:
            for depth in sorted(self.depths):
                for keep in self.keeps:
                    for s in self.sigma_w2s:
                        for seed in self.seeds:
                            out.append(dict(
                                dataset=dataset, activation=self.activation, init=self.init,
                                width=self.width, depth=int(depth), sigma_w2=float(s),
                                sigma_b2=self.sigma_b2, keep=float(keep), optimizer=self.optimizer,
                                lr=self.lr, batch_size=self.batch_size, steps=self.steps,
                                data_seed=self.data_seed, eval_size=self.eval_size,
                                test_size=self.test_size, seed=int(seed)))
        return out


PRESETS = {
    "smoke": Sweep(datasets=("mnist",), keeps=(1.0, 0.9), depths=(2, 4), sigma_w2s=(1.0, 2.5),
                   seeds=(0,), width=16, optimizer="rmsprop", lr=1e-3, batch_size=32, steps=20,
                   eval_size=200, test_size=500),
    "cpu": Sweep(datasets=("mnist",), keeps=(1.0, 0.98),
                 depths=(10, 20, 30, 45, 60, 80, 100, 130),
                 sigma_w2s=_grid(1.0, 4.0, 0.5), seeds=(0,), width=64, optimizer="sgd",
                 lr=0.01, batch_size=128, steps=300, eval_size=1000, test_size=2000,
                 max_members=32),
    "paper": Sweep(datasets=("mnist", "cifar10"), keeps=(1.0, 0.99, 0.98, 0.95),
                   depths=tuple(range(10, 251, 10)), sigma_w2s=_grid(1.0, 4.0, 0.1), seeds=(0,),
                   width=400, optimizer="sgd", lr=0.003, batch_size=1000, steps=1000,
                   eval_size=1000, test_size=10000, max_members=16),
}


def open_store(db: str | os.PathLike) -> Store:
    return Store(db, TABLE, COLUMNS, KEY)


def _device(requested: str | None) -> str:
    import torch
    if requested in (None, "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {requested!r} requested but CUDA is not available")
    return requested


def run_sweep(sweep: Sweep, db: str | os.PathLike = DEFAULT_DB, *, data_dir=None,
              device: str | None = None, preset: str = "custom", max_ensembles: int | None = None,
              progress: bool = True) -> int:
    """Train every network of ``sweep`` not yet in ``db``; returns the number of rows added.

    ``max_ensembles`` stops after that many ensembles (used to simulate an interrupted sweep).
    """
    from tqdm import tqdm

    from meanfield.noise import Dropout

    from .data import load_dataset
    from .ensemble import train_ensemble
    from .models import NetConfig, TrainConfig

    device = _device(device)
    added, ensembles = 0, 0
    with open_store(db) as store:
        done = store.done_keys()
        todo = [c for c in sweep.configs() if tuple(store.key_of(c)) not in done]
        # work estimate: layers x networks (the cost of a step is ~ proportional to depth)
        total = sum(c["depth"] + 12 for c in todo)
        bar = tqdm(total=total, unit="layer-net", disable=not progress,
                   desc=f"trainability[{preset}] {len(todo)} networks to train")
        for dataset in sweep.datasets:
            group_todo = [c for c in todo if c["dataset"] == dataset]
            if not group_todo:
                continue
            data = load_dataset(dataset, data_dir)
            tcfg = TrainConfig(optimizer=sweep.optimizer, lr=sweep.lr, batch_size=sweep.batch_size,
                               steps=sweep.steps, data_seed=sweep.data_seed,
                               eval_size=sweep.eval_size,
                               test_size=min(sweep.test_size, len(data.x_test)))
            for depth in _coarse_to_fine({c["depth"] for c in group_todo}):
                at_depth = [c for c in group_todo if c["depth"] == depth]
                chunks = []
                for keep in sorted({c["keep"] for c in at_depth}, reverse=True):
                    same = [c for c in at_depth if c["keep"] == keep]  # one noise layer per ensemble
                    chunks += [same[i:i + sweep.max_members]
                               for i in range(0, len(same), sweep.max_members)]
                for chunk in chunks:
                    if max_ensembles is not None and ensembles >= max_ensembles:
                        bar.close()
                        return added
                    cfgs = [NetConfig(n_in=data.n_features, width=c["width"], depth=depth,
                                      n_out=data.n_classes, activation=c["activation"],
                                      sigma_w2=c["sigma_w2"], sigma_b2=c["sigma_b2"],
                                      noise=Dropout(keep=c["keep"]), init=c["init"]) for c in chunk]
                    results = train_ensemble(cfgs, [c["seed"] for c in chunk], tcfg, data,
                                             device=device)
                    now = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
                    for c, r in zip(chunk, results):
                        row = dict(c, train_acc_last=r.train_acc_last,
                                   train_loss_last=_finite_or_none(r.train_loss_last),
                                   eval_acc=r.eval_acc, eval_loss=_finite_or_none(r.eval_loss),
                                   test_acc=r.test_acc, wall_time=r.wall_time, device=device,
                                   preset=preset, finished_at=now)
                        added += store.insert(row)
                    ensembles += 1
                    bar.update(sum(c["depth"] + 12 for c in chunk))
                    bar.set_postfix(depth=depth, best_eval=f"{max(r.eval_acc for r in results):.2f}")
        bar.close()
    return added


def _coarse_to_fine(depths) -> list[int]:
    """Depth order min, max, then repeated bisection, so a partial sweep already brackets the
    boundary coarsely (e.g. 10, 130, 45, 20, 80, 30, 60, 100)."""
    d = sorted(set(depths))
    order, spans = [d[0]], [(0, len(d) - 1)]
    if len(d) > 1:
        order.append(d[-1])
    while spans:
        nxt = []
        for lo, hi in spans:
            if hi - lo > 1:
                mid = (lo + hi) // 2
                order.append(d[mid])
                nxt += [(lo, mid), (mid, hi)]
        spans = nxt
    return order


def _finite_or_none(v: float):
    return float(v) if math.isfinite(v) else None


def _floats(s: str) -> tuple[float, ...]:
    """'1.0,0.98' or 'lo:hi:step' -> tuple of floats."""
    if ":" in s:
        lo, hi, step = (float(v) for v in s.split(":"))
        return _grid(lo, hi, step)
    return tuple(float(v) for v in s.split(",") if v)


def _ints(s: str) -> tuple[int, ...]:
    if ":" in s:
        lo, hi, step = (int(v) for v in s.split(":"))
        return tuple(range(lo, hi + 1, step))
    return tuple(int(v) for v in s.split(",") if v)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m experiments.trainability", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", choices=sorted(PRESETS), default="cpu")
    p.add_argument("--db", type=Path, default=DEFAULT_DB, help=f"SQLite results file (default {DEFAULT_DB})")
    p.add_argument("--data-dir", default=None, help="directory containing mnist/ and cifar10/ "
                   "(default: $MEANFIELD_DATA_DIR, else ~/.cache/meanfield/data)")
    p.add_argument("--dataset", type=lambda s: tuple(s.split(",")), dest="datasets")
    p.add_argument("--keep", type=_floats, dest="keeps", help="keep probabilities rho, e.g. 1.0,0.98")
    p.add_argument("--depth", type=_ints, dest="depths", help="e.g. 10,20,40 or 10:250:10")
    p.add_argument("--sigma-w2", type=_floats, dest="sigma_w2s", help="e.g. 1.0:4.0:0.1")
    p.add_argument("--seeds", type=_ints)
    for name, typ in (("sigma_b2", float), ("activation", str), ("init", str), ("width", int),
                      ("optimizer", str), ("lr", float), ("batch_size", int), ("steps", int),
                      ("data_seed", int), ("eval_size", int), ("test_size", int),
                      ("max_members", int)):
        p.add_argument("--" + name.replace("_", "-"), type=typ, dest=name)
    p.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda, ...")
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads (default 1: on a shared machine a second thread's "
                        "spin-waiting cost 20x CPU time in our measurements)")
    p.add_argument("--max-ensembles", type=int, default=None, help="stop after this many ensembles")
    p.add_argument("--dry-run", action="store_true", help="print the grid size and exit")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    overrides = {k: v for k, v in vars(args).items()
                 if k in Sweep.__dataclass_fields__ and v is not None}
    try:
        sweep = replace(PRESETS[args.preset], **overrides)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    import torch
    torch.set_num_threads(args.threads)
    n = len(sweep.configs())
    if args.dry_run:
        print(f"{n} networks; protocol: " + ", ".join(f"{k}={v}" for k, v in asdict(sweep).items()))
        return 0
    added = run_sweep(sweep, args.db, data_dir=args.data_dir, device=args.device,
                      preset=args.preset, max_ensembles=args.max_ensembles)
    with open_store(args.db) as st:
        print(f"added {added} rows; {len(st)} rows in {args.db}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
