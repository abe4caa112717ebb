"""Deep fully-connected networks as in Schoenholz et al. (2017) and Huang et al. (2019).

Architecture (``NetConfig``): input -> ``depth`` hidden layers of ``width`` units -> linear readout.
Hidden layer l computes ``z^l = W^l h^{l-1} + b^l``, ``h^l = phi(z^l)`` followed by the config's
noise layer (``noise``, a :class:`meanfield.noise.NoiseLayer`; default ``NoNoise()``):

- unit noise (dropout, Sparseout, Gaussian noise) acts on every hidden activation,
  ``h^l = g(z^l, xi^l)``; e.g. ``Dropout(keep=rho)`` is inverted dropout ``m * phi(z) / rho``,
  ``m ~ Bernoulli(rho)`` (THEORY section 1; the input is not dropped);
- weight noise (DropConnect) masks every weight matrix that reads a hidden layer (W^2 .. W^depth
  and the readout; not the input layer, as unit noise does not drop the input), with one mask per
  example as the theory assumes (docs/THEORY.md §11). That costs batch x fan_out x fan_in
  uniforms per layer and step, and a batched matrix-vector product instead of one matrix product:
  fine for the test and figure sizes, heavy for wide networks (``meanfield.nn.NoisyLinear`` with
  ``per_example=False`` is the cheap shared-mask variant for other models).

Noise is applied through ``meanfield.nn`` in training mode only. Initialisation:
``W_ij ~ N(0, sigma_w^2 / fan_in)`` ("gaussian") or a random orthogonal matrix scaled by
``sigma_w`` ("orthogonal", rows orthonormal when out <= in, columns otherwise);
``b_i ~ N(0, sigma_b^2)``. The readout uses the same rule.

Reproducibility contract (what lets ``experiments.ensemble`` match a network trained alone):

- parameters come from ``torch.Generator().manual_seed(seed)``, drawn layer by layer (W then b);
- noise comes from a second generator seeded ``seed + MASK_SEED_OFFSET``, and only where the
  noise layer is not the identity (``keep = 1`` draws nothing). Unit noise: each training step
  draws, for each block of ``MASK_BLOCK`` consecutive hidden layers (the last block may be
  shorter), one ``(layers_in_block, batch, width)`` uniform tensor ``u`` and applies
  ``noise.torch_xi(u[l])`` (dropout: ``mask = u < keep``); blocks: a batched ensemble then makes one
  generator call per member per block, not per layer, while the tensor stays bounded for deep,
  wide networks. Weight noise: each masked layer draws one ``(batch, fan_out, fan_in)`` uniform
  tensor, input side first;
- minibatches come from ``MinibatchStream(n, batch, data_seed)``: one stream shared by all networks.

``train_network`` trains one network with ``torch.optim`` (SGD or RMSprop, PyTorch defaults apart
from the learning rate) on the cross-entropy loss and returns a ``TrainResult``. Checkpoints
(``TrainConfig.checkpoints``, and always the last step) evaluate the network in eval mode (no
noise, no gradient, no random draws), so a run evaluated at step T holds exactly the metrics of the
same network trained for T steps (``tests/test_trainability_checkpoints.py``).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from meanfield.activations import Activation, get_activation
from meanfield.nn import draws, masked_linear, unit_noise
from meanfield.noise import NoiseLayer, NoNoise, noise_from_spec
from meanfield.noise.base import UNITS

from .config import INITS, OPTIMIZERS

__all__ = ["NetConfig", "TrainConfig", "TrainResult", "Checkpoint", "MinibatchStream", "init_params",
           "DeepMLP", "train_network", "evaluate", "as_tensors", "make_optimizer", "MASK_SEED_OFFSET",
           "MASK_BLOCK", "INITS", "OPTIMIZERS"]

MASK_SEED_OFFSET = 1_000_003
MASK_BLOCK = 8


def _check_positive_int(name, v):
    if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {v!r}")


@dataclass(frozen=True)
class NetConfig:
    """Network: ``n_in`` inputs, ``depth`` hidden layers of ``width``, ``n_out`` outputs.

    ``activation`` is a registered name (or an ``Activation`` with a torch twin); ``noise`` a
    noise layer with scalar parameters (or its spec text, e.g. ``"dropout(keep=0.9)"``).
    """

    n_in: int
    width: int
    depth: int
    n_out: int = 10
    activation: str | Activation = "tanh"
    sigma_w2: float = 1.0
    sigma_b2: float = 0.05
    noise: NoiseLayer = NoNoise()
    init: str = "gaussian"

    def __post_init__(self):
        for name in ("n_in", "width", "depth", "n_out"):
            _check_positive_int(name, getattr(self, name))
        get_activation(self.activation).torch(torch.zeros(1))  # unknown or no torch twin: ValueError
        if not (math.isfinite(self.sigma_w2) and self.sigma_w2 > 0):
            raise ValueError(f"sigma_w2 must be a finite number > 0, got {self.sigma_w2!r}")
        if not (math.isfinite(self.sigma_b2) and self.sigma_b2 >= 0):
            raise ValueError(f"sigma_b2 must be a finite number >= 0, got {self.sigma_b2!r}")
        noise = noise_from_spec(self.noise) if isinstance(self.noise, str) else self.noise
        if not isinstance(noise, NoiseLayer):
            raise ValueError(f"noise must be a noise layer (e.g. meanfield.Dropout(keep=0.9)) or its "
                             f"spec text, got {self.noise!r}")
        object.__setattr__(self, "noise", noise.scalar())
        if self.init not in INITS:
            raise ValueError(f"init must be one of {INITS}, got {self.init!r}")

    @property
    def layer_sizes(self) -> list[tuple[int, int]]:
        """(fan_in, fan_out) of each weight matrix, input side first, readout last."""
        sizes = [self.n_in] + [self.width] * self.depth + [self.n_out]
        return list(zip(sizes[:-1], sizes[1:]))


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation protocol shared by all networks of a run."""

    optimizer: str = "sgd"
    lr: float = 0.003
    batch_size: int = 1000
    steps: int = 1000
    data_seed: int = 0
    eval_size: int = 1000      # fixed evaluation batch: first eval_size images of the stream's permutation
    test_size: int | None = None   # None: the whole test set
    checkpoints: tuple[int, ...] = ()  # steps (in 1..steps) evaluated besides the last one

    def __post_init__(self):
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr must be a finite number > 0, got {self.lr!r}")
        _check_positive_int("batch_size", self.batch_size)
        _check_positive_int("steps", self.steps)
        _check_positive_int("eval_size", self.eval_size)
        if self.test_size is not None:
            _check_positive_int("test_size", self.test_size)
        cps = tuple(self.checkpoints)
        for t in cps:
            _check_positive_int("checkpoints", t)
        if any(t > self.steps for t in cps):
            raise ValueError(f"checkpoints must lie in 1..steps = {self.steps}, got {cps}")
        object.__setattr__(self, "checkpoints", tuple(sorted(set(cps) | {self.steps})))


@dataclass(frozen=True)
class Checkpoint:
    """Metrics of one network after ``steps`` training steps (meanings as in ``TrainResult``;
    ``wall_time``: seconds from the start of training, shared equally by ensemble members)."""

    steps: int
    train_acc_last: float
    train_loss_last: float
    eval_acc: float
    eval_loss: float
    test_acc: float
    wall_time: float


@dataclass(frozen=True)
class TrainResult:
    """Final metrics of one trained network; ``losses`` is the per-step training loss and
    ``checkpoints`` the evaluations at ``TrainConfig.checkpoints`` (the last one is the final)."""

    train_acc_last: float   # last training minibatch, with its noise (the papers' metric)
    train_loss_last: float
    eval_acc: float         # fixed training-set evaluation batch, no noise
    eval_loss: float
    test_acc: float         # test set (or its first test_size images), no noise
    losses: np.ndarray = field(repr=False)
    wall_time: float = 0.0
    checkpoints: tuple[Checkpoint, ...] = ()


class MinibatchStream:
    """Shared minibatch index stream: epoch-wise permutations from ``numpy`` ``default_rng(seed)``."""

    def __init__(self, n: int, batch_size: int, seed: int):
        _check_positive_int("n", n)
        _check_positive_int("batch_size", batch_size)
        if batch_size > n:
            raise ValueError(f"batch_size must be <= the number of training examples {n}, got {batch_size}")
        self.n, self.batch_size = n, batch_size
        self._rng = np.random.default_rng(seed)
        self.first_perm = self._rng.permutation(n)
        self._perm, self._pos = self.first_perm, 0

    def next(self) -> np.ndarray:
        if self._pos + self.batch_size > self.n:
            self._perm, self._pos = self._rng.permutation(self.n), 0
        idx = self._perm[self._pos:self._pos + self.batch_size]
        self._pos += self.batch_size
        return idx

    def batches(self, steps: int, device="cpu") -> torch.Tensor:
        """The next ``steps`` minibatches as one (steps, batch) index tensor on ``device``: one
        host-to-device copy per run instead of one per step (a pageable copy waits for the
        device, so a per-step copy would stop the host from queueing work ahead on CUDA)."""
        return torch.as_tensor(np.stack([self.next() for _ in range(steps)]), device=device)


def _orthogonal(rows: int, cols: int, gen: torch.Generator, dtype) -> torch.Tensor:
    a = torch.randn(max(rows, cols), min(rows, cols), generator=gen, dtype=torch.float64)
    q, r = torch.linalg.qr(a)
    q = q * torch.sign(torch.diagonal(r))  # Haar measure (sign fix)
    return (q if rows >= cols else q.T).to(dtype)


def init_params(cfg: NetConfig, seed: int, dtype=torch.float32) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """[(W, b)] per layer, input side first; W has shape (fan_out, fan_in). See module docstring."""
    gen = torch.Generator().manual_seed(int(seed))
    out = []
    sw, sb = math.sqrt(cfg.sigma_w2), math.sqrt(cfg.sigma_b2)
    for fan_in, fan_out in cfg.layer_sizes:
        if cfg.init == "gaussian":
            w = torch.randn(fan_out, fan_in, generator=gen, dtype=torch.float64) * (sw / math.sqrt(fan_in))
        else:
            w = _orthogonal(fan_out, fan_in, gen, torch.float64) * sw
        b = torch.randn(fan_out, generator=gen, dtype=torch.float64) * sb
        out.append((w.to(dtype), b.to(dtype)))
    return out


class DeepMLP(torch.nn.Module):
    """One network (the reference implementation the batched ensemble is tested against)."""

    def __init__(self, cfg: NetConfig, seed: int, dtype=torch.float32, device="cpu"):
        super().__init__()
        self.cfg = cfg
        params = [(w.to(device), b.to(device)) for w, b in init_params(cfg, seed, dtype)]
        self.weights = torch.nn.ParameterList([torch.nn.Parameter(w) for w, _ in params])
        self.biases = torch.nn.ParameterList([torch.nn.Parameter(b) for _, b in params])
        self.phi = get_activation(cfg.activation).torch
        self.mask_gen = torch.Generator(device=device).manual_seed(int(seed) + MASK_SEED_OFFSET)

    def _linear(self, l: int, h: torch.Tensor, masked: bool) -> torch.Tensor:
        w, b = self.weights[l], self.biases[l]
        if not masked:
            return F.linear(h, w, b)
        u = torch.rand((h.shape[0],) + tuple(w.shape), generator=self.mask_gen, dtype=h.dtype,
                       device=h.device)
        return masked_linear(self.cfg.noise, h, w, u, b)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        cfg, nz = self.cfg, self.cfg.noise
        noisy = self.training and draws(nz)
        units, weights = noisy and nz.acts_on == UNITS, noisy and nz.acts_on != UNITS
        h = x
        for l in range(cfg.depth):
            h = self.phi(self._linear(l, h, weights and l > 0))
            if units:
                if l % MASK_BLOCK == 0:
                    n = min(MASK_BLOCK, cfg.depth - l)
                    u = torch.rand(n, x.shape[0], cfg.width, generator=self.mask_gen, dtype=x.dtype,
                                   device=x.device)
                h = unit_noise(nz, h, u[l % MASK_BLOCK])
        return self._linear(cfg.depth, h, weights)


def make_optimizer(params, tcfg: TrainConfig) -> torch.optim.Optimizer:
    if tcfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=tcfg.lr)
    return torch.optim.RMSprop(params, lr=tcfg.lr)


@torch.no_grad()
def evaluate(forward, x: torch.Tensor, y: torch.Tensor, chunk: int = 2000) -> tuple[np.ndarray, np.ndarray]:
    """(accuracy, mean cross-entropy) of ``forward`` (returning (..., N, C) logits) over x, y."""
    correct, loss = 0.0, 0.0
    for i in range(0, len(x), chunk):
        logits = forward(x[i:i + chunk])
        yy = y[i:i + chunk]
        correct = correct + (logits.argmax(-1) == yy).sum(-1).double()
        ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), yy.expand(logits.shape[:-1]).reshape(-1),
                             reduction="none").reshape(logits.shape[:-1])
        loss = loss + ce.sum(-1).double()
    return (np.asarray((correct / len(x)).cpu()), np.asarray((loss / len(x)).cpu()))


def as_tensors(dataset, tcfg: TrainConfig, dtype, device="cpu"):
    """(x_train, y_train, x_test, y_test) tensors on ``device``, the test set cut at ``test_size``."""
    xtr = torch.as_tensor(dataset.x_train).to(device, dtype)
    ytr = torch.as_tensor(dataset.y_train).to(device)
    n_test = len(dataset.x_test) if tcfg.test_size is None else min(tcfg.test_size, len(dataset.x_test))
    xte = torch.as_tensor(dataset.x_test[:n_test]).to(device, dtype)
    yte = torch.as_tensor(dataset.y_test[:n_test]).to(device)
    return xtr, ytr, xte, yte


class Evaluator:
    """Checkpoint evaluation shared by ``train_network`` and the batched ensemble.

    ``record(t, model, logits, yb, loss)`` after training step ``t`` (1-based) evaluates ``model``
    (in eval mode, then back to training mode) when ``t`` is a checkpoint of ``tcfg``: accuracy of
    the last minibatch's ``logits`` (..., B, C) against ``yb``, the training ``loss`` (shape (...)),
    and accuracy / loss on the fixed evaluation batch and the test set, per member.
    ``results(losses)`` turns the records into one ``TrainResult`` per member.
    """

    def __init__(self, tcfg: TrainConfig, stream: MinibatchStream, tensors, t0: float):
        self.at = set(tcfg.checkpoints)
        self.xtr, self.ytr, self.xte, self.yte = tensors
        self.ev = torch.as_tensor(stream.first_perm[:tcfg.eval_size], device=self.xtr.device)
        self.t0 = t0
        self.records = []

    def record(self, t: int, model, logits: torch.Tensor, yb: torch.Tensor, loss: torch.Tensor):
        if t not in self.at:
            return
        train_acc = (logits.detach().argmax(-1) == yb).double().mean(-1).cpu().numpy()
        model.eval()
        eval_acc, eval_loss = evaluate(model, self.xtr[self.ev], self.ytr[self.ev])
        test_acc, _ = evaluate(model, self.xte, self.yte)
        model.train()
        self.records.append((t, train_acc, loss.detach().double().cpu().numpy(), eval_acc,
                             eval_loss, test_acc, time.perf_counter() - self.t0))

    def results(self, losses: np.ndarray) -> list[TrainResult]:
        """One result per member; ``losses`` has shape (steps, members)."""
        out, m = [], losses.shape[1]
        for i in range(m):
            cps = tuple(Checkpoint(t, *(float(np.reshape(v, -1)[i]) for v in vals), wall / m)
                        for t, *vals, wall in self.records)
            f = cps[-1]
            out.append(TrainResult(f.train_acc_last, f.train_loss_last, f.eval_acc, f.eval_loss,
                                   f.test_acc, losses[:, i].copy(),
                                   (time.perf_counter() - self.t0) / m, cps))
        return out


def train_network(cfg: NetConfig, tcfg: TrainConfig, dataset, seed: int,
                  dtype=torch.float32, device="cpu") -> TrainResult:
    """Train one ``DeepMLP`` on ``dataset`` (an ``experiments.data.Dataset``)."""
    t0 = time.perf_counter()
    tensors = as_tensors(dataset, tcfg, dtype, device)
    xtr, ytr = tensors[:2]
    model = DeepMLP(cfg, seed, dtype, device)
    opt = make_optimizer(model.parameters(), tcfg)
    stream = MinibatchStream(len(xtr), tcfg.batch_size, tcfg.data_seed)
    ckpt = Evaluator(tcfg, stream, tensors, t0)
    losses = torch.empty(tcfg.steps, dtype=torch.float64, device=xtr.device)  # no sync per step
    model.train()
    for t, idx in enumerate(stream.batches(tcfg.steps, xtr.device)):
        logits = model(xtr[idx])
        loss = F.cross_entropy(logits, ytr[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses[t] = loss.detach()
        ckpt.record(t + 1, model, logits, ytr[idx], losses[t])
    return ckpt.results(losses.cpu().numpy()[:, None])[0]
