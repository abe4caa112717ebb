"""The trainability configuration, written once (issue 10): every field of a trained network is
declared here with its SQLite type, its command-line parser (the valid range) and its help, and
everything else is derived from these declarations:

- ``Protocol``: what every network of a sweep shares (activation, init, width, sigma_b^2,
  optimiser, learning rate, batch size, training budget ``steps``, data seed, evaluation sizes);
- ``Network(Protocol)``: one network = the protocol plus its grid point (data set, noise layer,
  depth, sigma_w^2, seed); it builds its ``NetConfig`` / ``TrainConfig`` (``net_config``,
  ``train_config``) and its store key at a checkpoint (``key``);
- ``Sweep(Protocol)``: the protocol plus the grids (``datasets``, ``noises``, ``depths``,
  ``sigma_w2s``, ``seeds``), the checkpoints and how depths are chosen (``search``);
- ``KEY`` and ``COLUMNS`` of the results store, ``PROTOCOL`` (the columns that make a protocol for
  ``experiments.fit``), and the command-line flags of the sweep (``add_arguments``,
  ``sweep_from_args``).

Store semantics: one row per (network, checkpoint). ``max_steps`` is the network's training budget
(``Protocol.steps``) and ``steps`` the checkpoint at which the row's metrics were measured (the
budget T of that evaluation). ``noise`` is the noise layer's spec text (``dropout(keep=0.98)``,
``meanfield.noise_from_spec`` reads it back) and ``keep`` its keep probability rho (1 for a layer
without one), stored for the fit and for humans; ``keep`` is derived, not part of the key.

Validation: the same parser checks a value given in Python (``ValueError`` naming the field and
its valid range) and on the command line (``error: argument --width: ...``, exit status 2, before
any heavy import). This module imports neither torch nor the data.
"""
from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from dataclasses import dataclass, field, fields

from meanfield.cli.args import integer, parse_grid, real

__all__ = ["Protocol", "Network", "Sweep", "KEY", "COLUMNS", "RESULT_COLUMNS", "PROTOCOL",
           "GRID", "INITS", "OPTIMIZERS", "DATASETS", "SEARCHES", "SEARCH_BUDGETS", "keep_of",
           "noise_spec", "add_arguments", "sweep_from_args"]

INITS = ("gaussian", "orthogonal")
OPTIMIZERS = ("sgd", "rmsprop")
DATASETS = ("mnist", "cifar10")   # the loaders of experiments.data
SEARCHES = ("grid", "boundary")
SEARCH_BUDGETS = ("final", "all")


def _choice(options, what: str) -> Callable[[str], str]:
    """argparse type: one of ``options``."""
    def parse(text):
        if text not in options:
            raise argparse.ArgumentTypeError(f"{what} must be one of {', '.join(options)}, got {text!r}")
        return text
    return parse


def _activation(text: str) -> str:
    from meanfield.activations import ACTIVATIONS
    return _choice(tuple(ACTIVATIONS), "activation")(text)


def noise_spec(noise) -> str:
    """Canonical spec text of a noise layer given as a layer or as spec text (scalar parameters).

    Raises
    ------
    ValueError
        Not a noise layer or spec (the message gives the form), or array parameters.
    """
    from meanfield.noise import NoiseLayer, noise_from_spec
    layer = noise if isinstance(noise, NoiseLayer) else noise_from_spec(noise)
    return layer.scalar().spec()


def keep_of(spec: str) -> float:
    """Keep probability rho of a noise spec (1 for a layer without one)."""
    from meanfield.noise import noise_from_spec
    return float(getattr(noise_from_spec(spec), "keep", 1.0))


def _noise_arg(text: str) -> str:
    try:
        return noise_spec(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _f(default, sql: str | None, parse, help: str, *, column: str | None = None):
    """A schema field: SQLite type (None: not stored), parser of one value (CLI text -> value,
    ``ArgumentTypeError`` naming the valid range), help, store column (default: the field name)."""
    return field(default=default, metadata={"sql": sql, "parse": parse, "help": help,
                                            "column": column})


def _grid_f(default, flag: str, values: str, parse, help: str, *, empty_ok=False):
    """A grid field of ``Sweep``: a tuple of values, each checked by ``parse``; on the command line
    ``flag`` takes a grid of ``values`` ('int' or 'real': parse_grid's 'a,b' or 'start:stop:step';
    'text': a comma list, or ';' between specs that hold commas)."""
    return field(default=default, metadata={"grid": values, "flag": flag, "parse": parse,
                                            "help": help, "empty_ok": empty_ok})


def _validate(obj) -> None:
    """Check and normalise every field through its parser (ValueError naming the field)."""
    for f in fields(obj):
        parse, value = f.metadata.get("parse"), getattr(obj, f.name)
        if parse is None:
            continue
        values = value if "grid" in f.metadata else (value,)
        if "grid" in f.metadata:
            if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
                raise ValueError(f"{f.name} must be a sequence of values, got {value!r}")
            values = tuple(values)
            if not values and not f.metadata["empty_ok"]:
                raise ValueError(f"{f.name} must not be empty")
        out = []
        for v in values:
            try:
                out.append(parse(v if isinstance(v, str) else _text(v)))
            except argparse.ArgumentTypeError as e:
                msg = str(e)
                raise ValueError(msg if msg.startswith(f.name) else f"{f.name} {msg}") from None
        object.__setattr__(obj, f.name, tuple(out) if "grid" in f.metadata else out[0])


def _text(v) -> str:
    """Value -> the text a parser reads back exactly (noise layers as their spec)."""
    if hasattr(v, "spec") and callable(v.spec):
        return v.spec()
    if isinstance(v, bool):
        return repr(v)   # no parser accepts 'True': a bool is never a number here
    if isinstance(v, float):
        return repr(v) if math.isfinite(v) else str(v)
    return str(v)


@dataclass(frozen=True)
class Protocol:
    """Everything the networks of one sweep share (one ``experiments.fit`` protocol per data set
    and noise layer)."""

    activation: str = _f("tanh", "TEXT", _activation, "activation (a meanfield name)")
    init: str = _f("gaussian", "TEXT", _choice(INITS, "init"), "weight initialisation")
    width: int = _f(400, "INTEGER", integer(1), "hidden units per layer")
    sigma_b2: float = _f(0.05, "REAL", real(0, what="sigma_b2 (bias variance)"), "bias variance sigma_b^2")
    optimizer: str = _f("sgd", "TEXT", _choice(OPTIMIZERS, "optimizer"), "optimiser (PyTorch defaults)")
    lr: float = _f(0.003, "REAL", real(0, lo_open=True, what="lr (learning rate)"), "learning rate")
    batch_size: int = _f(1000, "INTEGER", integer(1), "minibatch size")
    steps: int = _f(1000, "INTEGER", integer(1), "training steps (the budget; column max_steps)",
                    column="max_steps")
    data_seed: int = _f(0, "INTEGER", integer(0), "seed of the minibatch stream")
    eval_size: int = _f(1000, "INTEGER", integer(1), "fixed evaluation batch (training images)")
    test_size: int = _f(10000, "INTEGER", integer(1), "test images evaluated (capped at the test set)")

    def __post_init__(self):
        _validate(self)

    def protocol(self) -> dict:
        """The protocol fields as a dict (field names, not column names)."""
        return {f.name: getattr(self, f.name) for f in fields(Protocol)}


@dataclass(frozen=True)
class Network(Protocol):
    """One network of a sweep: the protocol and its grid point."""

    dataset: str = _f("mnist", "TEXT", _choice(DATASETS, "dataset"), "data set")
    noise: str = _f("none()", "TEXT", _noise_arg, "noise layer spec, e.g. dropout(keep=0.98)")
    depth: int = _f(10, "INTEGER", integer(1), "hidden layers")
    sigma_w2: float = _f(1.0, "REAL", real(0, lo_open=True, what="sigma_w2 (weight variance)"),
                         "weight variance sigma_w^2")
    seed: int = _f(0, "INTEGER", integer(0), "seed of the weights and noise")

    def key(self, steps: int) -> dict:
        """The store key of this network's row at checkpoint ``steps``."""
        out = {f.metadata["column"] or f.name: getattr(self, f.name) for f in fields(self)}
        out["steps"] = int(steps)
        return out

    def net_config(self, n_in: int, n_out: int):
        """The ``experiments.models.NetConfig`` (imports torch)."""
        from .models import NetConfig
        return NetConfig(n_in=n_in, width=self.width, depth=self.depth, n_out=n_out,
                         activation=self.activation, sigma_w2=self.sigma_w2,
                         sigma_b2=self.sigma_b2, noise=self.noise, init=self.init)

    def train_config(self, checkpoints=(), test_size: int | None = None):
        """The ``experiments.models.TrainConfig`` (imports torch); ``test_size`` overrides the
        protocol's (capped at the test set by the caller)."""
        from .models import TrainConfig
        return TrainConfig(optimizer=self.optimizer, lr=self.lr, batch_size=self.batch_size,
                           steps=self.steps, data_seed=self.data_seed, eval_size=self.eval_size,
                           test_size=test_size or self.test_size, checkpoints=tuple(checkpoints))


GRID = tuple(f.name for f in fields(Network) if f.name not in {g.name for g in fields(Protocol)})
_NETWORK_COLUMNS = {f.metadata["column"] or f.name: f.metadata["sql"] for f in fields(Network)}
KEY = tuple(_NETWORK_COLUMNS) + ("steps",)
RESULT_COLUMNS = {
    "keep": "REAL",             # keep probability of the noise layer (derived from noise)
    "train_acc_last": "REAL",   # last training minibatch before the checkpoint, with its noise
    "train_loss_last": "REAL",
    "eval_acc": "REAL",         # fixed evaluation batch of training images, no noise
    "eval_loss": "REAL",
    "test_acc": "REAL",         # test set (its first test_size images), no noise
    "wall_time": "REAL",        # seconds from the start of training (ensemble time / members)
    "precision": "TEXT",        # float32, float32+tf32 or float64
    "device": "TEXT",
    "preset": "TEXT",
    "finished_at": "TEXT",
}
COLUMNS = {**_NETWORK_COLUMNS, "steps": "INTEGER", **RESULT_COLUMNS}
# what makes a protocol in experiments.fit: everything but the grid point, seed and checkpoint
PROTOCOL = ("dataset", "noise", "keep") + tuple(
    f.metadata["column"] or f.name for f in fields(Protocol))


@dataclass(frozen=True)
class Sweep(Protocol):
    """A sweep: the protocol, the grids, the checkpoints and the depth search.

    ``search='grid'`` trains every network of the grid; ``'boundary'`` only the depths the adaptive
    search of ``experiments.search`` picks from the ``depths`` grid (bracketing the budgets named
    by ``search_budgets``: the final one, or every checkpoint). ``checkpoints`` are evaluation
    steps below ``steps`` (the final step is always evaluated); ``max_members`` caps the networks
    of one batched ensemble (one ensemble = one data set, depth and noise layer).
    """

    datasets: tuple[str, ...] = _grid_f(("mnist",), "--dataset", "text",
                                        _choice(DATASETS, "dataset"), "data sets, e.g. mnist,cifar10")
    noises: tuple[str, ...] = _grid_f(("none()",), "--noise", "text", _noise_arg,
                                      "noise layer name or specs, e.g. dropout (with --keep) or "
                                      "'sparseout(keep=0.9, s=1.5);gaussian(sigma_eps2=0.1)'")
    depths: tuple[int, ...] = _grid_f((10,), "--depth", "int", integer(1), "depth grid, e.g. 10:250:10")
    sigma_w2s: tuple[float, ...] = _grid_f((1.0,), "--sigma-w2", "real",
                                           real(0, lo_open=True, what="sigma_w2 (weight variance)"),
                                           "sigma_w^2 grid, e.g. 1:4:0.1")
    seeds: tuple[int, ...] = _grid_f((0,), "--seeds", "int", integer(0), "network seeds, e.g. 0,1")
    checkpoints: tuple[int, ...] = _grid_f((), "--checkpoints", "int", integer(1),
                                           "evaluation steps below --steps, e.g. 100,300",
                                           empty_ok=True)
    search: str = _f("grid", None, _choice(SEARCHES, "search"), "grid: every depth; boundary: "
                     "adaptive search of the trainable-depth boundary on the depth grid")
    depth_resolution: float = _f(0.1, None, real(0, lo_open=True, what="depth_resolution"),
                                 "boundary search: stop when the bracket's depths are within "
                                 "(1 + resolution) of each other (or adjacent on the grid)")
    search_budgets: str = _f("final", None, _choice(SEARCH_BUDGETS, "search_budgets"),
                             "boundary search: bracket the final budget only, or every checkpoint")
    max_members: int = _f(64, None, integer(1), "networks per batched ensemble at most")

    def __post_init__(self):
        _validate(self)
        bad = [t for t in self.checkpoints if t >= self.steps]
        if bad:
            raise ValueError(f"checkpoints must be below steps = {self.steps} (the final step is "
                             f"always evaluated), got {bad}")
        for name in ("datasets", "noises", "depths", "sigma_w2s", "seeds", "checkpoints"):
            object.__setattr__(self, name, tuple(sorted(set(getattr(self, name)), key=_order(name))))

    @property
    def budgets(self) -> tuple[int, ...]:
        """Every evaluated step: the checkpoints and ``steps``."""
        return tuple(self.checkpoints) + (self.steps,)

    def network(self, **grid) -> Network:
        """The network at a grid point (``dataset``, ``noise``, ``depth``, ``sigma_w2``, ``seed``)."""
        return Network(**self.protocol(), **grid)

    def networks(self) -> list[Network]:
        """Every network of the grid (data set, depth, noise, sigma_w^2, seed order)."""
        return [self.network(dataset=ds, noise=nz, depth=d, sigma_w2=s, seed=seed)
                for ds in self.datasets for d in self.depths for nz in self.noises
                for s in self.sigma_w2s for seed in self.seeds]

    def configs(self) -> list[dict]:
        """The key of each grid network's final row, with its ``keep``."""
        return [dict(n.key(self.steps), keep=keep_of(n.noise)) for n in self.networks()]


def _order(name):
    if name == "noises":
        return lambda spec: -keep_of(spec)   # keep 1 first, as the papers' panels
    return lambda v: v


# ---------------------------------------------------------------------------------------------
# command line


def _grid_type(parse, integer_values: bool):
    """argparse type: 'a,b,c' or 'start:stop:step' (meanfield.cli.args.parse_grid), each value
    checked by ``parse``."""
    def convert(text):
        try:
            vals = parse_grid(text, integer=integer_values)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None
        return tuple(parse(_text(v.item())) for v in vals)
    return convert


def _list_type(parse):
    """argparse type: a comma list (';' between items that hold commas), each item by ``parse``."""
    def convert(text):
        return tuple(parse(t.strip()) for t in text.split(";" if "(" in text else ",") if t.strip())
    return convert


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of every ``Sweep`` field (``--width``, ``--sigma-w2`` ..., default: the preset's),
    plus ``--keep`` (dropout keep probabilities: ``--keep 1,0.99,0.98`` makes the noise grid
    ``dropout(keep=...)``; with ``--noise NAME`` that layer's keep).

    Parameters
    ----------
    parser : argparse.ArgumentParser
    """
    g = parser.add_argument_group("sweep", "override the preset's grid and protocol")
    for f in fields(Sweep):
        meta = f.metadata
        if "grid" in meta:
            flag = meta["flag"]
            typ = (_list_type(meta["parse"]) if meta["grid"] == "text"
                   else _grid_type(meta["parse"], meta["grid"] == "int"))
        else:
            flag, typ = "--" + f.name.replace("_", "-"), meta["parse"]
        g.add_argument(flag, dest=f.name, type=typ, default=None, help=meta["help"])
    g.add_argument("--keep", type=_grid_type(real(0, 1, lo_open=True, what="keep probability rho"),
                                             False),
                   help="keep probabilities rho in (0, 1] of the noise layer (default dropout), "
                        "e.g. 1,0.99,0.98,0.95")


def sweep_from_args(base: Sweep, args: argparse.Namespace, parser: argparse.ArgumentParser) -> Sweep:
    """``base`` with the parsed flags of ``add_arguments`` applied; ``parser.error`` (exit 2)
    naming the flag when the combination is invalid."""
    from dataclasses import replace
    over = {f.name: getattr(args, f.name) for f in fields(Sweep)
            if getattr(args, f.name, None) is not None}
    if args.keep is not None:
        name = "dropout"
        if "noises" in over:
            names = {s.split("(")[0] for s in over["noises"]}
            if len(names) != 1:
                parser.error("--keep: give one noise layer name with --noise (e.g. --noise "
                             "dropout --keep 1,0.98), or full specs without --keep")
            name = names.pop()
        try:
            over["noises"] = tuple(noise_spec(f"{name}(keep={k!r})") for k in args.keep)
        except ValueError as e:
            parser.error(f"--keep: {e}")
    try:
        return replace(base, **over)
    except ValueError as e:
        parser.error(str(e))
