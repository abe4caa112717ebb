"""Batched ensembles: many networks of one architecture trained in one computation.

Members share ``n_in, width, depth, n_out, activation, init``, the noise layer (``noise``: one
layer per ensemble; group a sweep over keep probabilities into one ensemble per value) and the
training protocol (``TrainConfig``: optimiser, learning rate, one minibatch stream) but may differ
in ``sigma_w2``, ``sigma_b2`` and ``seed`` (e.g. all sigma_w^2 values of a sweep at one depth).
Weights are stacked, transposed, into contiguous ``(M, fan_in, fan_out)`` tensors (``weights_t``)
and every layer is one ``torch.baddbmm`` (contiguous operands: about 25 % faster than a transposed
view on CPU); with weight noise (DropConnect) a masked layer is one batched matrix-vector product
over ``(M, batch, fan_out, fan_in)`` masked weights (memory M x batch x fan_out x fan_in).

Equality with training alone: member i is initialised by ``models.init_params(cfg_i, seed_i)`` and
draws its noise from its own generator exactly as ``models.DeepMLP`` does (block by block for unit
noise, layer by layer for weight noise); the loss is the sum of the members' mean cross-entropies,
so each member's gradient is its own; SGD and RMSprop act element-wise, so ``torch.optim`` on the
stacked tensors updates each member as it would alone. Hence member i's trajectory equals
``models.train_network(cfg_i, tcfg, data, seed_i)`` up to floating-point rounding
(``tests/test_models_ensemble.py``). A member whose loss diverges (NaN/inf) cannot contaminate the
others: no operation mixes members.
"""
from __future__ import annotations

import time
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from meanfield.activations import get_activation
from meanfield.nn import draws, masked_linear, unit_noise
from meanfield.noise.base import UNITS

from .models import (
    MASK_BLOCK,
    MASK_SEED_OFFSET,
    Evaluator,
    MinibatchStream,
    NetConfig,
    TrainConfig,
    TrainResult,
    as_tensors,
    init_params,
    make_optimizer,
)

__all__ = ["EnsembleMLP", "train_ensemble"]

_SHARED = ("n_in", "width", "depth", "n_out", "activation", "noise", "init")


class EnsembleMLP(torch.nn.Module):
    """M networks with stacked parameters; ``forward(x)`` maps (B, n_in) to (M, B, n_out) logits."""

    def __init__(self, cfgs: Sequence[NetConfig], seeds: Sequence[int], dtype=torch.float32,
                 device="cpu"):
        super().__init__()
        if len(cfgs) == 0 or len(cfgs) != len(seeds):
            raise ValueError(f"cfgs and seeds must be non-empty and of equal length, got "
                             f"{len(cfgs)} and {len(seeds)}")
        c0 = cfgs[0]
        for c in cfgs[1:]:
            diff = [f for f in _SHARED if getattr(c, f) != getattr(c0, f)]
            if diff:
                raise ValueError(f"ensemble members must share {_SHARED}; they differ in {diff}")
        self.cfgs, self.cfg = list(cfgs), c0
        per_member = [[(w.to(device), b.to(device)) for w, b in init_params(c, s, dtype)]
                      for c, s in zip(cfgs, seeds)]
        self.weights_t = torch.nn.ParameterList(
            [torch.nn.Parameter(torch.stack([p[l][0].T for p in per_member]).contiguous())
             for l in range(c0.depth + 1)])
        self.biases = torch.nn.ParameterList(
            [torch.nn.Parameter(torch.stack([p[l][1] for p in per_member])) for l in range(c0.depth + 1)])
        self.phi = get_activation(c0.activation).torch
        self.noise = c0.noise
        self.mask_gens = [torch.Generator(device=device).manual_seed(int(s) + MASK_SEED_OFFSET)
                          for s in seeds]

    @property
    def n_members(self) -> int:
        return len(self.cfgs)

    def _uniforms(self, shape, h: torch.Tensor, dim: int) -> torch.Tensor:
        """Each member's uniforms of ``shape`` from its own generator (one call per member, as
        DeepMLP draws them), stacked along ``dim``."""
        return torch.stack([torch.rand(shape, generator=g, dtype=h.dtype, device=h.device)
                            for g in self.mask_gens], dim=dim)

    def _linear(self, l: int, h: torch.Tensor, masked: bool) -> torch.Tensor:
        if not masked:
            return torch.baddbmm(self.biases[l].unsqueeze(1), h, self.weights_t[l])
        w = self.weights_t[l].transpose(1, 2).unsqueeze(1)  # (M, 1, fan_out, fan_in)
        u = self._uniforms((h.shape[1],) + tuple(w.shape[2:]), h, 0)
        return masked_linear(self.noise, h, w, u, self.biases[l].unsqueeze(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c, nz = self.cfg, self.noise
        noisy = self.training and draws(nz)
        units, weights = noisy and nz.acts_on == UNITS, noisy and nz.acts_on != UNITS
        h = torch.matmul(x, self.weights_t[0]) + self.biases[0].unsqueeze(1)
        for l in range(c.depth):
            if l > 0:
                h = self._linear(l, h, weights)
            h = self.phi(h)
            if units:
                if l % MASK_BLOCK == 0:  # (n, M, B, width): one call per member and block
                    u = self._uniforms((min(MASK_BLOCK, c.depth - l),) + tuple(h.shape[1:]), h, 1)
                h = unit_noise(nz, h, u[l % MASK_BLOCK])
        return self._linear(c.depth, h, weights)


def train_ensemble(cfgs: Sequence[NetConfig], seeds: Sequence[int], tcfg: TrainConfig, dataset,
                   dtype=torch.float32, device="cpu") -> list[TrainResult]:
    """Train all members together; returns one ``TrainResult`` per member (wall time is shared
    equally), with its evaluations at ``tcfg.checkpoints``.

    On CUDA the loop never waits for the device inside a step: the minibatch indices are copied
    once, the per-step losses stay on the device until the end, and only checkpoints copy metrics
    to the host.
    """
    t0 = time.perf_counter()
    tensors = as_tensors(dataset, tcfg, dtype, device)
    xtr, ytr = tensors[:2]
    model = EnsembleMLP(cfgs, seeds, dtype, device)
    m = model.n_members
    opt = make_optimizer(model.parameters(), tcfg)
    stream = MinibatchStream(len(xtr), tcfg.batch_size, tcfg.data_seed)
    ckpt = Evaluator(tcfg, stream, tensors, t0)
    losses = torch.empty((tcfg.steps, m), dtype=torch.float64, device=xtr.device)
    model.train()
    for t, idx in enumerate(stream.batches(tcfg.steps, xtr.device)):
        logits = model(xtr[idx])                                   # (M, B, C)
        yb = ytr[idx]
        per = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), yb.repeat(m),
                              reduction="none").view(m, -1).mean(1)
        opt.zero_grad(set_to_none=True)
        per.sum().backward()
        opt.step()
        losses[t] = per.detach()
        ckpt.record(t + 1, model, logits, yb, losses[t])
    return ckpt.results(losses.cpu().numpy())
