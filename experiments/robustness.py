"""Noise robustness on MNIST: dense vs dense + dropout vs k-winners with sparse weights.

    python -m experiments.robustness [--preset smoke|cpu] [--db results/robustness.sqlite]
        [--data-dir DIR] [--out figures] [--threads 1] [--serial | --workers N | --scheduler ADDRESS]

Paths are relative to the working directory; the data folder is resolved by ``experiments.data``
(``--data-dir``, else ``$MEANFIELD_DATA_DIR``, else ``./data``).

Protocol (Ahmad and Scheinkman 2019, THEORY section 7): train each network on clean MNIST with a
fixed seed; then replace a fraction eta in {0, 0.05, ..., 0.5} of the pixels of every test image by
0.7469 (= MNIST mean + 2 std, in [0, 1] pixel units, before normalisation); the pixels are chosen
uniformly without replacement, floor(eta * 784) per image, with one fixed noise draw per level shared
by all networks. Noise score = correct test classifications summed over the 11 levels (at most
11 x n_test). Each (preset, arch, variant, seed) is one task of ``experiments.runner`` (Dask by
default; the data folder must exist at the same path on every worker) and one SQLite row
(``experiments.store``): reruns skip finished networks, so an interrupted run resumes.

Architectures (ReLU unless stated; inputs normalised with mean 0.1307, std 0.3081):
- ``mlp``: 784 -> H -> H -> 10.
- ``cnn``: conv 5x5 (C channels) -> max-pool 2 -> act -> linear (C*12*12 -> H) -> act -> 10.
Variants: ``dense``; ``dropout`` (nn.Dropout with drop probability ``drop`` = PyTorch's p, i.e.
keep = 1 - drop, after every hidden activation); ``sparse`` (hidden linear layers wrapped in
SparseWeights with density ``density`` (conv weights dense, as in the paper's sparse CNN), every
activation replaced by k-winners with f = ``f_on``: ``KWinners2d`` on the conv feature map (a global
top-k over C x 12 x 12 with one duty cycle per channel, as the paper's reference code) and
``KWinners`` on the hidden linear layer; boost strength 1.5 decayed by 0.9 per epoch; k raised by
1.5 at inference, rounded half up). Adam, cross-entropy, batch size and epochs from the preset.
"""
from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

DEFAULT_DB = Path("results") / "robustness.sqlite"
DEFAULT_OUT = Path("figures")
ETAS = tuple(round(0.05 * i, 2) for i in range(11))
NOISE_VALUE = 0.7469
MEAN, STD = 0.1307, 0.3081
ARCHS = ("mlp", "cnn")
VARIANTS = ("dense", "dropout", "sparse")


@dataclass(frozen=True)
class Preset:
    epochs: int
    seeds: tuple
    batch_size: int
    lr: float
    n_train: int  # first n_train training images (60000 = all)
    n_test: int  # first n_test test images
    hidden: int  # H
    channels: int  # C
    drop: float  # dropout drop probability
    density: float  # SparseWeights fraction of weights kept per unit
    f_on: float  # KWinners fraction of winners
    archs: tuple = ARCHS


PRESETS = {
    "smoke": Preset(epochs=1, seeds=(0,), batch_size=128, lr=1e-3, n_train=2000, n_test=500,
                    hidden=64, channels=8, drop=0.5, density=0.3, f_on=0.1),
    "cpu": Preset(epochs=3, seeds=(0, 1, 2), batch_size=128, lr=1e-3, n_train=60000, n_test=10000,
                  hidden=256, channels=16, drop=0.5, density=0.3, f_on=0.1),
}

COLUMNS = {"preset": "TEXT", "arch": "TEXT", "variant": "TEXT", "seed": "INTEGER",
           "config": "TEXT", "correct": "TEXT", "n_test": "INTEGER", "clean_acc": "REAL",
           "noise_score": "INTEGER", "train_seconds": "REAL"}
KEY = ("preset", "arch", "variant", "seed")


def add_noise(x: np.ndarray, eta: float, seed: int) -> np.ndarray:
    """Copy of x (N, 784) in [0, 1] with floor(eta * 784) random pixels per image set to 0.7469."""
    if not 0 <= eta <= 1:
        raise ValueError(f"eta (fraction of noisy pixels) must lie in [0, 1]; got {eta}")
    n, d = x.shape
    m = int(eta * d + 1e-9)
    out = x.copy()
    if m == 0:
        return out
    rng = np.random.default_rng(seed)
    idx = np.argsort(rng.random((n, d)), axis=1)[:, :m]
    np.put_along_axis(out, idx, NOISE_VALUE, axis=1)
    return out


def build_model(arch: str, variant: str, p: Preset):
    """The network for (arch, variant) under preset p (see the module docstring)."""
    from torch import nn

    from experiments.layers import KWinners, KWinners2d, SparseWeights

    if arch not in ARCHS:
        raise ValueError(f"arch must be one of {ARCHS}; got {arch!r}")
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}; got {variant!r}")
    boost = dict(boost_strength=1.5, boost_strength_factor=0.9)

    def act(n, channels=None):
        """Activation after n hidden values (a (channels, 12, 12) feature map when channels given)."""
        if variant == "sparse":
            k = max(1, round(p.f_on * n))
            return [KWinners(n, k, **boost) if channels is None else KWinners2d(channels, k, **boost)]
        if variant == "dropout":
            return [nn.ReLU(), nn.Dropout(p=p.drop)]
        return [nn.ReLU()]

    def linear(n_in, n_out):
        lin = nn.Linear(n_in, n_out)
        return SparseWeights(lin, density=p.density) if variant == "sparse" else lin

    h = p.hidden
    if arch == "mlp":
        layers = [nn.Flatten(), linear(784, h), *act(h), linear(h, h), *act(h), nn.Linear(h, 10)]
    else:
        feat = p.channels * 12 * 12
        layers = [nn.Unflatten(1, (1, 28, 28)), nn.Conv2d(1, p.channels, 5), nn.MaxPool2d(2),
                  *act(feat, p.channels), nn.Flatten(), linear(feat, h), *act(h), nn.Linear(h, 10)]
    return nn.Sequential(*layers)


def train_and_score(arch: str, variant: str, seed: int, p: Preset, ds, noisy_tests) -> dict:
    """Train one network on the clean training set; count correct answers at every noise level."""
    import torch
    from torch import nn

    from experiments.layers import attach_rezero, update_boost_strength

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = build_model(arch, variant, p)
    opt = torch.optim.Adam(model.parameters(), lr=p.lr)
    attach_rezero(opt, model)
    x = torch.from_numpy((ds.x_train[:p.n_train] - MEAN) / STD)
    y = torch.from_numpy(ds.y_train[:p.n_train])
    loss_fn = nn.CrossEntropyLoss()
    t0 = time.perf_counter()
    for _ in range(p.epochs):
        model.train()
        perm = torch.from_numpy(rng.permutation(len(x)))
        for i in range(0, len(x), p.batch_size):
            b = perm[i:i + p.batch_size]
            opt.zero_grad()
            loss_fn(model(x[b]), y[b]).backward()
            opt.step()
        update_boost_strength(model)
    seconds = time.perf_counter() - t0
    model.eval()
    y_test = torch.from_numpy(ds.y_test[:p.n_test])
    correct = []
    with torch.no_grad():
        for xt in noisy_tests:
            pred = torch.cat([model(xt[i:i + 1000]).argmax(1) for i in range(0, len(xt), 1000)])
            correct.append(int((pred == y_test).sum()))
    return {"correct": correct, "train_seconds": seconds}


@lru_cache(maxsize=1)
def _mnist(data_dir: str):
    from experiments.data import load_mnist

    return load_mnist(data_dir)


@lru_cache(maxsize=1)
def _noisy_tests(data_dir: str, n_test: int) -> tuple:
    """The normalised test images at every noise level (one fixed draw per level)."""
    import torch

    xt = _mnist(data_dir).x_test[:n_test]
    return tuple(torch.from_numpy((add_noise(xt, eta, 1000 + i) - MEAN) / STD) for i, eta in enumerate(ETAS))


def network_row(preset: str, arch: str, variant: str, seed: int, data_dir: str) -> dict:
    """One network, the compute function of its ``experiments.runner`` task.

    Parameters
    ----------
    preset, arch, variant : str
        Keys of ``PRESETS``, ``ARCHS``, ``VARIANTS``.
    seed : int
        Seed of the weights and of the minibatch order.
    data_dir : str
        Folder with ``mnist/``, valid where the task runs (MNIST is loaded once per process).

    Returns
    -------
    dict
        The ``robustness`` row: key, preset configuration (JSON), correct answers per eta (JSON),
        clean accuracy, noise score and training seconds. It never touches the store.

    References
    ----------
    Ahmad and Scheinkman 2019; docs/THEORY.md §7 (the protocol of the module docstring).
    """
    p = PRESETS[preset]
    r = train_and_score(arch, variant, seed, p, _mnist(data_dir), _noisy_tests(data_dir, p.n_test))
    return {"preset": preset, "arch": arch, "variant": variant, "seed": seed,
            "config": json.dumps(asdict(p), sort_keys=True), "correct": json.dumps(r["correct"]),
            "n_test": p.n_test, "clean_acc": r["correct"][0] / p.n_test,
            "noise_score": sum(r["correct"]), "train_seconds": r["train_seconds"]}


def run(preset: str = "cpu", db: str | Path | None = None, data_dir=None, threads: int = 1,
        progress: bool = True, *, engine=None, workers: int | None = None) -> list[dict]:
    """Train every missing (arch, variant, seed) of the preset, one runner task each; return the
    preset's rows in plan order. ``threads``: torch threads of the serial engine (Dask workers are
    single-threaded); ``engine``/``workers`` as in ``experiments.runner.run``."""
    from experiments import runner
    from experiments.data import resolve_data_dir
    from experiments.store import Store

    if preset not in PRESETS:
        raise ValueError(f"preset must be one of {sorted(PRESETS)}; got {preset!r}")
    p = PRESETS[preset]
    if engine == "serial":
        import torch
        torch.set_num_threads(threads)
    db = Path(db) if db is not None else DEFAULT_DB
    config = json.dumps(asdict(p), sort_keys=True)
    data = str(resolve_data_dir(data_dir).resolve())  # absolute: workers may have another cwd
    jobs = [(a, v, s) for s in p.seeds for a in p.archs for v in VARIANTS]  # seed-major: partial runs compare
    tasks = [runner.Task(keys=[(preset, *j)], fn=network_row, args=(preset, *j, data)) for j in jobs]
    with Store(db, "robustness", COLUMNS, KEY) as st:
        for row in st.rows(preset=preset):
            if row["config"] != config:
                raise ValueError(f"{db} holds preset {preset!r} rows made with another configuration; "
                                 "use a new --db or delete them")
        runner.run(tasks, st, engine=engine, workers=workers, progress=progress,
                   desc=f"robustness[{preset}]")
        return [st.rows(preset=preset, arch=a, variant=v, seed=s)[0] for a, v, s in jobs]


def summarize(rows: list[dict]) -> list[dict]:
    """Per (arch, variant): accuracy per eta and noise score, mean and std (ddof=1) over seeds."""
    out = []
    for arch in ARCHS:
        for variant in VARIANTS:
            sel = [r for r in rows if r["arch"] == arch and r["variant"] == variant]
            if not sel:
                continue
            acc = np.array([json.loads(r["correct"]) for r in sel], float) / sel[0]["n_test"]
            score = np.array([r["noise_score"] for r in sel], float)
            sd = (lambda a: a.std(axis=0, ddof=1)) if len(sel) > 1 else (lambda a: np.zeros_like(a.mean(0)))
            out.append({"arch": arch, "variant": variant, "seeds": len(sel),
                        "acc_mean": acc.mean(0), "acc_std": sd(acc),
                        "score_mean": score.mean(), "score_std": float(sd(score[:, None])[0]),
                        "n_test": sel[0]["n_test"]})
    return out


def format_table(summary: list[dict]) -> str:
    """Markdown table: accuracy (%) per eta and the noise score, mean +- std over seeds."""
    head = "| arch | variant | seeds | " + " | ".join(f"{e:.2f}" for e in ETAS) + " | noise score |"
    lines = [head, "|" + "---|" * (len(ETAS) + 4)]
    for s in summary:
        accs = " | ".join(f"{100 * m:.2f}" for m in s["acc_mean"])
        lines.append(f"| {s['arch']} | {s['variant']} | {s['seeds']} | {accs} | "
                     f"{s['score_mean']:.0f} +- {s['score_std']:.0f} (of {11 * s['n_test']}) |")
    return "\n".join(lines)


def plot(summary: list[dict], path_stem: str | Path) -> list[Path]:
    """Accuracy vs eta (mean +- std over seeds), one panel per architecture; writes PNG and PDF."""
    from .figures import style  # the project's colour-blind-safe style (imports matplotlib, Agg)

    style.apply()
    plt = style.plt
    archs = [a for a in ARCHS if any(s["arch"] == a for s in summary)]
    fig, axes = plt.subplots(1, len(archs), figsize=(3.6 * len(archs), 2.8), squeeze=False)
    for ax, arch in zip(axes[0], archs):
        for s in summary:
            if s["arch"] != arch:
                continue
            m, e = 100 * s["acc_mean"], 100 * s["acc_std"]
            ax.plot(ETAS, m, marker="o", ms=3, label=f"{s['variant']} (score {s['score_mean']:.0f})")
            ax.fill_between(ETAS, m - e, m + e, alpha=0.25)
        ax.set_title(f"MNIST {arch}")
        ax.set_xlabel(r"fraction of pixels replaced by 0.7469, $\eta$")
        ax.set_ylabel("test accuracy (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    stem = Path(path_stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [stem.with_suffix(".png"), stem.with_suffix(".pdf")]
    for path in paths:
        fig.savefig(path, dpi=150)
    plt.close(fig)
    return paths


def build_parser() -> argparse.ArgumentParser:
    from experiments.data import data_dir_arg
    from experiments.runner import add_runner_arguments
    from meanfield.cli.args import creatable_path, integer

    ap = argparse.ArgumentParser(prog="python -m experiments.robustness",
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", default="cpu", choices=sorted(PRESETS))
    ap.add_argument("--db", type=creatable_path("file"), default=str(DEFAULT_DB),
                    help=f"SQLite results (default {DEFAULT_DB})")
    ap.add_argument("--data-dir", type=data_dir_arg, default=None, help="folder containing mnist/ (default: "
                    "$MEANFIELD_DATA_DIR, else ./data)")
    ap.add_argument("--out", type=creatable_path("folder"), default=str(DEFAULT_OUT),
                    help=f"folder for the figure (default {DEFAULT_OUT})")
    ap.add_argument("--threads", type=integer(1), default=1,
                    help="torch threads >= 1 of the --serial engine")
    add_runner_arguments(ap)
    return ap


def parse_args(argv=None) -> argparse.Namespace:
    """The validated flags with the runner's ``engine`` keywords; every check happens here, before
    torch is imported or data loaded (bad input: an ``error:`` line naming the flag, exit 2)."""
    from experiments.runner import runner_from_args

    args = build_parser().parse_args(argv)
    args.engine = runner_from_args(args)
    return args


def main(argv=None) -> int:
    import sys

    from experiments.data import resolve_data_dir

    a = parse_args(argv)
    try:
        _mnist(str(resolve_data_dir(a.data_dir).resolve()))   # a missing data set: before any work
        rows = run(a.preset, a.db, a.data_dir, a.threads, **a.engine)
    except (FileNotFoundError, ValueError) as e:   # missing data, a store of another configuration
        print(f"error: {e}", file=sys.stderr)
        return 2
    summary = summarize(rows)
    print(format_table(summary))
    for path in plot(summary, Path(a.out) / f"robustness_{a.preset}"):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    from meanfield.cli.args import run_main

    run_main(main)
