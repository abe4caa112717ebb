"""Trainability sweep: train deep tanh (or any core activation) networks with a noise layer over
(data set, noise layer, depth, sigma_w^2, seed) and store one row per network and checkpoint.

Usage::

    python -m experiments.trainability --preset smoke --db /tmp/smoke.sqlite        # CI, seconds
    nice -n 10 python -m experiments.trainability --preset cpu                      # grid mode
    nice -n 10 python -m experiments.trainability --preset cpu --search boundary    # adaptive
    python -m experiments.trainability --preset paper --search boundary --dry-run   # GPU estimate
    python -m experiments.trainability --preset paper --search boundary --device cuda \\
        --dataset mnist --keep 0.98                                                 # one panel

**Schema.** Every field of a network is declared once in ``experiments.config`` (``Protocol``,
``Network``, ``Sweep``); the store's ``KEY`` / ``COLUMNS``, the command-line flags and their
validation are derived from it. A row is one network at one checkpoint: ``max_steps`` is its
budget, ``steps`` the step at which it was evaluated (``experiments.fit --per-step each`` reads one
boundary per budget).

**Checkpoints.** Each network is evaluated at ``--checkpoints`` (e.g. the 1-3-10 series
``checkpoint_series``: 100, 300, 1000, ... below ``--steps``) and at its last step: accuracy and
loss of the last training minibatch before the checkpoint (with its noise: the papers' metric), of
a fixed evaluation batch of training images and of the test set (no noise), and the wall time so
far. Evaluation draws no randomness, so the row at checkpoint T is exactly the final row of the
same network trained for T steps; a sweep gives boundaries at several budgets at no extra training.

**Depths** (``--search``):

- ``grid``: every depth of the grid, visited coarse to fine (smallest, largest, then bisection), so
  an interrupted sweep already brackets the boundary;
- ``boundary``: per (data set, noise, sigma_w^2) column, the adaptive search of
  ``experiments.search``: start at the grid depths nearest {2, 6, 12} xi_c (``meanfield.analyze``),
  bisect in log-depth until the bracket is within ``--depth-resolution`` (or adjacent on the grid),
  then train the bracket's grid neighbours and report every column whose pattern is not
  trainable-then-untrainable. Trainable during the search = ``experiments.fit``'s rule with the
  best cell seen so far; the reported boundaries always come from ``experiments.fit`` on the rows.

**Execution.** One task of ``experiments.runner`` = one batched ensemble (``experiments.ensemble``:
one data set, depth and noise layer, at most ``--max-members`` networks: the sigma_w^2 values and
seeds), run on Dask (default: an embedded cluster, one single-threaded worker per core, or per GPU
with ``--device cuda``; ``--serial`` in this process; ``--scheduler`` an existing cluster). One
``experiments.runner.session`` serves the whole sweep: the cluster starts with the first ensemble
to train (a finished sweep starts none) and every search round reuses it. Workers return rows; the driver alone writes
SQLite, one transaction per ensemble, and the progress bar counts networks. Rows are keyed by the
full configuration, so rerunning the same command skips finished networks: a killed sweep resumes
with nothing lost but the ensembles in flight and nothing duplicated. The boundary search replays
its earlier rounds from the store (a round's decisions depend only on earlier rounds), so it
resumes exactly like the grid.

**Estimate.** Before training, the command prints the planned networks (for ``boundary``: predicted
by running the search on the oracle L_max = ``ORACLE_A`` xi_c (T / steps)^``ORACLE_B``), the work
in FLOPs (``step_flops``) and the time at a throughput measured here on a short ensemble run (CPU
time on CPU: the time on free cores), and for a CPU-only machine also at a documented GPU figure
(``GPU_FLOPS``), per panel (data set and noise layer) and in total. Measured against it on the
shared 2-core development machine (load 5-11): the cpu grid used 2.1x and the cpu-large search
1.4x the estimated CPU time (small ensembles, Dask and evaluation overheads, cache contention), and
11x and 4x the estimated wall time.

Presets (every grid or protocol field can be overridden on the command line):

- ``smoke``: a few tiny networks, seconds (CI).
- ``cpu``: width 64, batch 128, 300 SGD steps (lr 0.01; RMSprop at lr 1e-3 destabilised every
  network deeper than ~25 layers), checkpoint 100, 15 depths 10 ... 130 (ratio ~1.2),
  sigma_w^2 = 1.0 ... 4.0 step 0.5, keep in {1, 0.98}, MNIST, one seed (210 networks in grid mode).
- ``cpu-large``: the paper's 31-value sigma_w^2 grid, MNIST and the CIFAR-10 subset, keep in
  {1, 0.98}, two seeds, 13 depths 6 ... 100 (ratio ~1.25), width 48, batch 64, 300 SGD steps at
  lr 0.01 with checkpoints 60 and 150, boundary search bracketing every budget; its printed
  estimate was about an hour on 2 cores (3224 networks in grid mode).
- ``paper``: Huang et al.'s protocol: width 400, depth 10 ... 250 step 10, sigma_w^2 = 1.0 ... 4.0
  step 0.1, keep in {1, 0.99, 0.98, 0.95}, MNIST and CIFAR-10, SGD lr 0.003, batch 1000,
  1000 steps, checkpoints 100 and 300 (GPU advised).
"""
from __future__ import annotations

import argparse
import datetime as _dt
import math
import os
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from .config import (
    COLUMNS,
    GRID,
    KEY,
    Network,
    Sweep,
    add_arguments,
    keep_of,
    sweep_from_args,
)
from .store import Store

__all__ = ["Sweep", "Network", "PRESETS", "COLUMNS", "KEY", "GRID", "TABLE", "RESULTS_DIR",
           "DATA_SHAPES", "ORACLE_A", "ORACLE_B", "GPU_FLOPS", "PRECISIONS", "SweepReport", "Estimate",
           "default_db", "open_store", "checkpoint_series", "run_sweep", "is_complete", "train_rows",
           "planned_networks", "step_flops", "estimate", "measure_flops", "parse_args", "main"]

TABLE = "trainability"
RESULTS_DIR = Path("results")
DATA_SHAPES = {"mnist": (784, 10), "cifar10": (3072, 10)}   # (inputs, classes)
# boundary of the oracle that predicts the boundary search's networks: L_max = ORACLE_A xi_c
# (T / steps)^ORACLE_B at budget T (the cpu preset's fitted a*xi_c had a = 3.97 at 300 steps;
# its boundaries at 100 steps lay about 0.6 times as deep)
ORACLE_A = 4.0
ORACLE_B = 0.5
# H100 / H200 SXM: 67 TFLOP/s dense FP32 (NVIDIA datasheet) x an assumed 45 % reached by batched
# width-400 matrix products plus the element-wise work; benchmarks/bench_gpu.py measures it
GPU_FLOPS = 30e12
PRECISIONS = ("float32", "float32+tf32", "float64")


def default_db(preset: str) -> Path:
    """``results/trainability_<preset>.sqlite``."""
    return RESULTS_DIR / f"trainability_{preset}.sqlite"


def open_store(db: str | os.PathLike) -> Store:
    """The trainability table of ``db`` (created if missing; columns from ``experiments.config``)."""
    return Store(db, TABLE, COLUMNS, KEY)


def checkpoint_series(steps: int, first: int = 100) -> tuple[int, ...]:
    """The 1-3-10 series ``first``, 3 ``first``, 10 ``first``, ... below ``steps``.

    Parameters
    ----------
    steps : int
        Training budget (the last step, always evaluated, is not included).
    first : int
        First checkpoint (>= 1), e.g. 100 gives 100, 300, 1000, 3000, ...

    Returns
    -------
    tuple of int
    """
    if first < 1:
        raise ValueError(f"first must be >= 1, got {first}")
    out, k = [], 0
    while True:
        t = first * 10 ** (k // 2) * (3 if k % 2 else 1)
        if t >= steps:
            return tuple(out)
        out.append(t)
        k += 1


def _noises(*keeps: float) -> tuple[str, ...]:
    return tuple(f"dropout(keep={float(k)!r})" for k in keeps)


def _steps(lo: float, hi: float, step: float) -> tuple[float, ...]:
    return tuple(round(lo + i * step, 10) for i in range(round((hi - lo) / step) + 1))


CPU_DEPTHS = (10, 13, 16, 20, 25, 30, 36, 43, 51, 60, 72, 86, 100, 115, 130)
PRESETS = {
    "smoke": Sweep(datasets=("mnist",), noises=_noises(1.0, 0.9), depths=(2, 4),
                   sigma_w2s=(1.0, 2.5), seeds=(0,), width=16, optimizer="rmsprop", lr=1e-3,
                   batch_size=32, steps=20, checkpoints=(10,), eval_size=200, test_size=500),
    "cpu": Sweep(datasets=("mnist",), noises=_noises(1.0, 0.98), depths=CPU_DEPTHS,
                 sigma_w2s=_steps(1.0, 4.0, 0.5), seeds=(0,), width=64, optimizer="sgd", lr=0.01,
                 batch_size=128, steps=300, checkpoints=(100,), eval_size=1000, test_size=2000,
                 max_members=32),
    "cpu-large": Sweep(datasets=("mnist", "cifar10"), noises=_noises(1.0, 0.98),
                       depths=(6, 8, 10, 13, 16, 20, 25, 32, 40, 50, 64, 80, 100),
                       sigma_w2s=_steps(1.0, 4.0, 0.1), seeds=(0, 1), width=48, optimizer="sgd",
                       lr=0.01, batch_size=64, steps=300, checkpoints=(60, 150), eval_size=1000,
                       test_size=2000, max_members=32, search="boundary", search_budgets="all"),
    "paper": Sweep(datasets=("mnist", "cifar10"), noises=_noises(1.0, 0.99, 0.98, 0.95),
                   depths=tuple(range(10, 251, 10)), sigma_w2s=_steps(1.0, 4.0, 0.1), seeds=(0,),
                   width=400, optimizer="sgd", lr=0.003, batch_size=1000, steps=1000,
                   checkpoints=checkpoint_series(1000), eval_size=1000, test_size=10000,
                   max_members=31),
}


# ---------------------------------------------------------------------------------------------
# the compute function of one task: one batched ensemble


@lru_cache(maxsize=2)
def _dataset(name: str, data_dir: str):
    from .data import load_dataset
    return load_dataset(name, data_dir)


def _finite_or_none(v: float):
    return float(v) if math.isfinite(v) else None


def train_rows(networks: tuple[Network, ...], checkpoints: tuple[int, ...], device: str,
               precision: str, data_dir: str, preset: str) -> list[dict]:
    """Train one batched ensemble and return its rows (the compute function of a runner task).

    Parameters
    ----------
    networks : tuple of Network
        Members: one data set, depth, noise layer and protocol (``Network`` fields).
    checkpoints : tuple of int
        Evaluation steps below the budget (the last step is always evaluated).
    device : str
        Torch device (``cpu``, ``cuda``, ``cuda:N``), valid where the task runs.
    precision : {'float32', 'float32+tf32', 'float64'}
        Training dtype; ``float32+tf32`` lets CUDA matrix products use TF32.
    data_dir : str
        Folder holding the data sets, valid where the task runs (loaded once per process).
    preset : str
        Stored with the rows.

    Returns
    -------
    list of dict
        One row per (network, checkpoint) with every column of ``COLUMNS``; never touches the store.

    References
    ----------
    Huang et al. 2019, section 5 (protocol); docs/THEORY.md section 8.
    """
    import torch

    from .ensemble import train_ensemble

    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    n0 = networks[0]
    data = _dataset(n0.dataset, data_dir)
    torch.backends.cuda.matmul.allow_tf32 = precision == "float32+tf32"
    dtype = torch.float64 if precision == "float64" else torch.float32
    tcfg = n0.train_config(checkpoints, test_size=min(n0.test_size, len(data.x_test)))
    cfgs = [n.net_config(data.n_features, data.n_classes) for n in networks]
    results = train_ensemble(cfgs, [n.seed for n in networks], tcfg, data, dtype=dtype, device=device)
    now = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    used = precision if precision != "float32+tf32" or str(device).startswith("cuda") else "float32"
    return [dict(n.key(c.steps), keep=keep_of(n.noise), train_acc_last=c.train_acc_last,
                 train_loss_last=_finite_or_none(c.train_loss_last), eval_acc=c.eval_acc,
                 eval_loss=_finite_or_none(c.eval_loss), test_acc=c.test_acc, wall_time=c.wall_time,
                 precision=used, device=str(device), preset=preset, finished_at=now)
            for n, r in zip(networks, results) for c in r.checkpoints]


# ---------------------------------------------------------------------------------------------
# planning


def _ensembles(networks: list[Network], max_members: int) -> list[tuple[Network, ...]]:
    """Networks grouped by (data set, depth, noise layer), in order of first appearance, cut into
    ensembles of at most ``max_members``."""
    groups = defaultdict(list)
    for n in networks:
        groups[(n.dataset, n.depth, n.noise)].append(n)
    return [tuple(g[i:i + max_members]) for g in groups.values()
            for i in range(0, len(g), max_members)]


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


def _grid_order(sweep: Sweep) -> list[Network]:
    rank = {d: i for i, d in enumerate(_coarse_to_fine(sweep.depths))}
    return sorted(sweep.networks(), key=lambda n: (sweep.datasets.index(n.dataset), rank[n.depth]))


def _xi_c(sweep: Sweep, noise: str):
    """Correlation depth scale per sigma_w^2 of the sweep (inf where it diverges)."""
    import numpy as np

    import meanfield
    from meanfield.noise import noise_from_spec
    r = meanfield.analyze(sweep.activation, np.asarray(sweep.sigma_w2s, float), sweep.sigma_b2,
                          noise=noise_from_spec(noise), on_missing="nan")
    return [float(x) if np.isfinite(x) else math.inf for x in np.atleast_1d(r.xi_c)]


def _columns(sweep: Sweep) -> dict:
    """The search's columns, each with its xi_c: ``{Column: xi_c}`` in sweep order."""
    from .search import Column, start_depths
    cols = {}
    for nz in sweep.noises:
        xis = _xi_c(sweep, nz)
        for ds in sweep.datasets:
            for s, xi in zip(sweep.sigma_w2s, xis):
                cols[Column((ds, nz), s, start_depths(xi, sweep.depths),
                            1.0 / DATA_SHAPES[ds][1])] = xi
    return cols


def _search_budgets(sweep: Sweep):
    return [float(sweep.steps)] if sweep.search_budgets == "final" else None


def _probe_networks(sweep: Sweep, probes) -> list[Network]:
    return [sweep.network(dataset=c.group[0], noise=c.group[1], depth=d, sigma_w2=c.sigma_w2,
                          seed=seed) for c, d in probes for seed in sweep.seeds]


def planned_networks(sweep: Sweep, oracle_a: float = ORACLE_A, oracle_b: float = ORACLE_B) -> list[Network]:
    """The networks a sweep trains: the grid, or for ``search='boundary'`` those the search picks
    when a column trains up to ``oracle_a`` xi_c (T / steps)^``oracle_b`` at budget T (a
    prediction)."""
    if sweep.search == "grid":
        return sweep.networks()
    from .search import search
    xi = _columns(sweep)

    def oracle(probes):
        return {(c, d): {float(T): 0.9 if d <= oracle_a * xi[c] * (T / sweep.steps) ** oracle_b
                         else 0.1 for T in sweep.budgets} for c, d in probes}
    res = search(list(xi), sweep.depths, oracle, resolution=sweep.depth_resolution,
                 budgets=_search_budgets(sweep))
    return _probe_networks(sweep, list(res.results))


# ---------------------------------------------------------------------------------------------
# cost model


def step_flops(n_in: int, width: int, depth: int, n_out: int, batch: int) -> float:
    """Floating-point operations of one training step of one network: the matrix products of the
    forward pass (2 per multiply-add) and the backward pass (twice the forward), element-wise work
    left out.

    Parameters
    ----------
    n_in, width, depth, n_out : int
        Inputs, hidden width, hidden layers, outputs.
    batch : int
        Minibatch size.

    Returns
    -------
    float
        ``6 batch (n_in width + (depth - 1) width^2 + width n_out)``.
    """
    return 6.0 * batch * (n_in * width + (depth - 1) * width ** 2 + width * n_out)


@dataclass(frozen=True)
class Estimate:
    """Planned work: ``networks``, ``network_steps``, ``flops`` (training and checkpoint
    evaluation) in total and per panel (data set, noise layer)."""

    networks: int
    network_steps: int
    flops: float
    panels: dict = field(default_factory=dict)   # (dataset, noise) -> flops

    def seconds(self, flops_per_s: float) -> float:
        return self.flops / flops_per_s


def estimate(sweep: Sweep, networks: list[Network]) -> Estimate:
    """The work of training ``networks`` under the sweep's protocol (``step_flops``; each
    checkpoint adds a forward pass over the evaluation batch and the test set)."""
    panels = defaultdict(float)
    for n in networks:
        n_in, n_out = DATA_SHAPES[n.dataset]
        train = step_flops(n_in, n.width, n.depth, n_out, n.batch_size) * n.steps
        evals = len(sweep.budgets) * step_flops(n_in, n.width, n.depth, n_out,
                                                n.eval_size + n.test_size) / 3
        panels[(n.dataset, n.noise)] += train + evals
    return Estimate(len(networks), sum(n.steps for n in networks), sum(panels.values()),
                    dict(panels))


def measure_flops(sweep: Sweep, device: str, precision: str = "float32", *, depth: int | None = None,
                  members: int = 4, min_seconds: float = 1.0, max_steps: int = 64) -> float:
    """Training throughput of one process on ``device`` in FLOP/s (counted by ``step_flops``).

    A batched ensemble of ``members`` networks with the sweep's width, batch, optimiser, noise
    layer (its last) and the first data set's shape, on synthetic data, is trained for 1 and for
    k + 1 steps; the difference is the time of k steps (set-up and evaluation cancel), with k
    doubled from 2 until it takes ``min_seconds`` (at most ``max_steps``). Time is this process's
    CPU time on CPU (what it needs from a free core, robust to other jobs on a shared machine; with
    one torch thread, as the Dask workers run) and wall time after synchronisation on CUDA.

    Parameters
    ----------
    sweep : Sweep
    device : str
        Torch device.
    precision : {'float32', 'float32+tf32', 'float64'}
    depth : int, optional
        Hidden layers (default: the median grid depth, at most 50).
    members : int
        Networks in the ensemble.
    min_seconds, max_steps :
        Timing length.

    Returns
    -------
    float
        FLOP/s; ``members * k / seconds`` network-steps per second is this divided by
        ``step_flops`` of one network.
    """
    import numpy as np
    import torch

    from .data import Dataset
    from .ensemble import train_ensemble
    from .models import NetConfig, TrainConfig

    n_in, n_out = DATA_SHAPES[sweep.datasets[0]]
    depth = depth or min(50, sorted(sweep.depths)[len(sweep.depths) // 2])
    rng = np.random.default_rng(0)
    n = max(sweep.batch_size, 64)
    x = rng.random((n, n_in), dtype=np.float32)
    y = rng.integers(0, n_out, n).astype(np.int64)
    data = Dataset("synthetic", x, y, x[:64], y[:64])
    cfgs = [NetConfig(n_in, sweep.width, depth, n_out, sweep.activation, s, sweep.sigma_b2,
                      sweep.noises[-1], sweep.init) for s in np.linspace(1.0, 3.0, members)]
    torch.backends.cuda.matmul.allow_tf32 = precision == "float32+tf32"
    dtype = torch.float64 if precision == "float64" else torch.float32

    clock = time.perf_counter if str(device).startswith("cuda") else time.process_time

    def run(steps):
        tcfg = TrainConfig(sweep.optimizer, sweep.lr, sweep.batch_size, steps, eval_size=32,
                           test_size=32)
        t0 = clock()
        train_ensemble(cfgs, list(range(members)), tcfg, data, dtype=dtype, device=device)
        if str(device).startswith("cuda"):
            torch.cuda.synchronize()
        return clock() - t0
    run(1)   # warm-up: allocator, kernels
    steps = 2
    while True:
        dt = run(steps + 1) - run(1)
        if dt >= min_seconds or 2 * steps > max_steps:
            break
        steps *= 2
    return members * steps * step_flops(n_in, sweep.width, depth, n_out, sweep.batch_size) / max(dt, 1e-9)


# ---------------------------------------------------------------------------------------------
# execution


@dataclass
class SweepReport:
    """What ``run_sweep`` did: ``added`` rows, networks ``trained`` now, networks of the sweep
    (``networks``, stored or trained), and for the boundary search its ``rounds`` and the columns
    with a non-monotone pattern (``non_monotone``: (data set, noise, sigma_w2, T, pattern))."""

    added: int = 0
    trained: int = 0
    networks: int = 0
    rounds: int = 0
    non_monotone: list = field(default_factory=list)
    stopped: bool = False


class _Stop(Exception):
    """max_ensembles reached (a simulated interruption)."""


@dataclass
class _Context:
    sweep: Sweep
    store: Store
    device: str
    precision: str
    data_dir: str
    preset: str
    engine: object   # an experiments.runner.Session
    progress: bool
    max_ensembles: int | None
    report: SweepReport

    def train(self, networks: list[Network], desc: str) -> None:
        """Train every network not stored, one runner task per ensemble (stored networks are left
        out before the ensembles are formed, so none is trained twice)."""
        from . import runner
        sw = self.sweep
        done = self.store.done_keys()
        missing = [n for n in networks
                   if not all(self.store.key_of(n.key(T)) in done for T in sw.budgets)]
        todo = [runner.Task(keys=[n.key(T) for n in chunk for T in sw.budgets], fn=train_rows,
                            args=(chunk, sw.checkpoints, self.device, self.precision,
                                  self.data_dir, self.preset), weight=len(chunk))
                for chunk in _ensembles(missing, sw.max_members)]
        if self.max_ensembles is not None:
            left = self.max_ensembles
            if len(todo) > left:
                todo, self.report.stopped = todo[:left], True
            self.max_ensembles -= len(todo)
        if todo:
            self.report.added += runner.run(todo, self.store, engine=self.engine,
                                            progress=self.progress, desc=desc)
            self.report.trained += sum(t.weight for t in todo)
        if self.report.stopped:
            raise _Stop


def _resolve_device(device: str | None) -> str:
    import torch
    if device in (None, "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    from meanfield.cli.args import cuda_problem
    problem = cuda_problem(device)
    if problem:
        raise ValueError(f"{problem} (valid: auto, cpu, or cuda[:N] on a machine with a GPU)")
    return device


def run_sweep(sweep: Sweep, db: str | os.PathLike | None = None, *, data_dir=None,
              device: str | None = "auto", precision: str = "float32", preset: str = "custom",
              engine=None, workers: int | None = None, progress: bool = True,
              max_ensembles: int | None = None) -> SweepReport:
    """Train every network of ``sweep`` (grid) or of its boundary search not yet in ``db``.

    Parameters
    ----------
    sweep : Sweep
    db : path, optional
        SQLite results file (default ``default_db(preset)``).
    data_dir : path, optional
        Folder holding ``mnist/`` / ``cifar10/`` (``experiments.data.resolve_data_dir``).
    device : str
        ``auto`` (CUDA when available), ``cpu``, ``cuda`` or ``cuda:N``.
    precision : {'float32', 'float32+tf32', 'float64'}
    preset : str
        Name stored with the rows.
    engine, workers :
        As in ``experiments.runner.run`` (None: ``$MEANFIELD_SCHEDULER``, else an embedded Dask
        cluster, one worker per core, or per GPU for ``device`` cuda; ``"serial"``: this process;
        an ``experiments.runner.Session`` to share a cluster with other work). One session serves
        every round of the sweep: an embedded cluster is started once, on the first ensemble to
        train, and closed when the sweep ends.
    progress : bool
        tqdm bars (counting networks).
    max_ensembles : int, optional
        Stop after training this many ensembles (a simulated interruption).

    Returns
    -------
    SweepReport

    Raises
    ------
    ValueError
        Unknown device or precision, CUDA requested without CUDA.
    FileNotFoundError
        A data set is missing (the message gives the download command).
    """
    from . import runner
    from .data import resolve_data_dir
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    device = _resolve_device(device)
    data = str(resolve_data_dir(data_dir).resolve())   # absolute: workers may have another cwd
    report = SweepReport()
    with open_store(db if db is not None else default_db(preset)) as store, \
            runner.session(engine, workers=workers, cuda=device.startswith("cuda")) as eng:
        ctx = _Context(sweep, store, device, precision, data, preset, eng, progress,
                       max_ensembles, report)
        try:
            if sweep.search == "grid":
                nets = _grid_order(sweep)
                report.networks = len(nets)
                ctx.train(nets, f"trainability[{preset}] grid")
            else:
                _boundary(ctx)
        except _Stop:
            pass
    return report


def is_complete(sweep: Sweep, db: str | os.PathLike) -> bool:
    """Whether ``db`` holds every row of ``sweep`` (for the boundary search: whether replaying it
    on the stored rows finds nothing left to train). Trains nothing."""
    return not run_sweep(sweep, db, device="cpu", engine="serial", progress=False,
                         max_ensembles=0).stopped


def _boundary(ctx: _Context) -> None:
    """The boundary search with training rounds on the runner; fills ``ctx.report``."""
    from .search import search
    sw, report = ctx.sweep, ctx.report

    def train(probes):
        nets = _probe_networks(sw, probes)
        ctx.train(nets, f"trainability[{ctx.preset}] boundary round {report.rounds + 1}")
        report.rounds += 1
        report.networks += len(nets)
        acc = defaultdict(list)
        for n in nets:
            for T in sw.budgets:
                row = ctx.store.rows(**n.key(T))
                acc[(n.dataset, n.noise, n.sigma_w2, n.depth, float(T))].append(row[0]["eval_acc"])
        return {(c, d): {float(T): sum(v) / len(v) for T in sw.budgets
                         for v in [acc[(c.group[0], c.group[1], c.sigma_w2, d, float(T))]]}
                for c, d in probes}
    res = search(list(_columns(sw)), sw.depths, train, resolution=sw.depth_resolution,
                 budgets=_search_budgets(sw))
    report.non_monotone = [(c.group[0], c.group[1], c.sigma_w2, T, pat)
                           for c, T, pat in res.non_monotone]


# ---------------------------------------------------------------------------------------------
# command line


def build_parser() -> argparse.ArgumentParser:
    from meanfield.cli.args import creatable_path, device, integer

    from .data import data_dir_arg
    from .runner import add_runner_arguments
    p = argparse.ArgumentParser(prog="python -m experiments.trainability", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", choices=sorted(PRESETS), default="cpu")
    p.add_argument("--db", type=lambda text: Path(creatable_path("file")(text)), default=None,
                   help="SQLite results file (default results/trainability_<preset>.sqlite)")
    p.add_argument("--data-dir", type=data_dir_arg, default=None, help="folder containing mnist/ and cifar10/ "
                   "(default: $MEANFIELD_DATA_DIR, else ./data)")
    add_arguments(p)
    p.add_argument("--device", type=device(auto=True), default="auto",
                   help="auto (CUDA when available), cpu, cuda or cuda:N")
    p.add_argument("--precision", choices=PRECISIONS, default="float32",
                   help="float32 (default), float32+tf32 (CUDA matrix products in TF32) or "
                        "float64 (checks)")
    p.add_argument("--threads", type=integer(1), default=1,
                   help="torch CPU threads of the --serial engine (default 1: on a shared machine "
                        "a second thread's spin-waiting cost 20x CPU time in our measurements)")
    p.add_argument("--max-ensembles", type=integer(1), default=None,
                   help="stop after training this many ensembles")
    p.add_argument("--dry-run", action="store_true", help="print the plan and estimate, then exit")
    add_runner_arguments(p)
    return p


def _print_estimate(sweep: Sweep, preset: str, device: str, precision: str, engine, workers) -> None:
    grid_n = len(sweep.networks())
    nets = planned_networks(sweep)
    est = estimate(sweep, nets)
    mode = (f"boundary search (predicted: columns train up to {ORACLE_A:g} xi_c "
            f"(T / {sweep.steps})^{ORACLE_B:g})"
            if sweep.search == "boundary" else "grid")
    print(f"trainability[{preset}]: {len(sweep.datasets)} data set(s) x {len(sweep.noises)} noise "
          f"layer(s) x {len(sweep.sigma_w2s)} sigma_w^2 x {len(sweep.depths)} depths x "
          f"{len(sweep.seeds)} seed(s); budgets {list(sweep.budgets)}")
    print(f"  {mode}: {est.networks} networks of the grid's {grid_n} "
          f"({est.networks / grid_n:.0%}), {est.network_steps:,} network-steps, {est.flops:.3g} FLOP")
    depths = sorted(n.depth for n in nets)
    rate = measure_flops(sweep, device, precision, depth=min(50, depths[len(depths) // 2]))
    if engine == "serial":
        procs = 1
    elif workers is not None:
        procs = workers
    elif device.startswith("cuda"):
        import torch
        procs = max(1, torch.cuda.device_count())
    else:   # the embedded cluster's default: one worker per core this process may use
        from .runner import cores
        procs = cores()
    per_panel = max(est.panels.values()) if est.panels else 0.0
    clock = "wall time" if device.startswith("cuda") else "CPU time, i.e. on free cores"
    print(f"  measured {rate / 1e9:.3g} GFLOP/s per worker ({device}, {precision}; {clock}) x "
          f"{procs} worker(s): about {_hms(est.flops / (rate * procs))} in total, "
          f"{_hms(per_panel / (rate * procs))} for the largest panel (one data set and noise layer)")
    if not device.startswith("cuda"):
        print(f"  on one H100/H200-class GPU (assumed {GPU_FLOPS / 1e12:g} TFLOP/s, see GPU_FLOPS): "
              f"about {_hms(est.flops / GPU_FLOPS)} in total, {_hms(per_panel / GPU_FLOPS)} per panel")


def _hms(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def parse_args(argv=None) -> argparse.Namespace:
    """The validated flags, with the ``sweep``, the runner's ``engine`` keywords and the resolved
    ``device`` added.

    Every check of the flags happens here, before torch is imported (only a named CUDA device
    imports it, to ask whether the device exists) or any data is loaded: bad input ends in an
    ``error:`` line naming the flag and its range, exit status 2 (``SystemExit``).
    """
    from .runner import runner_from_args
    parser = build_parser()
    args = parser.parse_args(argv)
    args.sweep = sweep_from_args(PRESETS[args.preset], args, parser)
    args.engine = runner_from_args(args)
    if args.device.startswith("cuda"):
        try:
            _resolve_device(args.device)
        except ValueError as e:
            parser.error(f"argument --device: {e}")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    sweep, eng = args.sweep, args.engine
    import torch
    device = _resolve_device(args.device)
    torch.set_num_threads(args.threads)
    from .data import resolve_data_dir
    for ds in sweep.datasets:
        try:
            _dataset(ds, str(resolve_data_dir(args.data_dir).resolve()))
        except (FileNotFoundError, ValueError) as e:
            print(f"error: data set {ds}: {e}", file=sys.stderr)
            return 2
    _print_estimate(sweep, args.preset, device, args.precision, eng["engine"], eng["workers"])
    if args.dry_run:
        return 0
    db = args.db or default_db(args.preset)
    t0 = time.perf_counter()
    rep = run_sweep(sweep, db, data_dir=args.data_dir, device=device, precision=args.precision,
                    preset=args.preset, max_ensembles=args.max_ensembles, **eng)
    with open_store(db) as st:
        print(f"trained {rep.trained} networks ({rep.added} rows) in {_hms(time.perf_counter() - t0)}; "
              f"the sweep has {rep.networks} networks"
              + (f" over {rep.rounds} search rounds" if sweep.search == "boundary" else "")
              + f"; {len(st)} rows in {db}" + (" (stopped: --max-ensembles)" if rep.stopped else ""))
    for ds, nz, s, T, pat in rep.non_monotone:
        print(f"non-monotone column: {ds} {nz} sigma_w2={s:g} T={T:g}: {pat}")
    return 0


if __name__ == "__main__":
    from meanfield.cli.args import run_main

    run_main(main)
