"""torch layers for the noise comparisons: k-winners-take-all and sparse weights.

Noise layers (dropout, Sparseout, Gaussian noise, DropConnect) come from the one torch adapter
``meanfield.nn``: ``NoiseModule("sparseout", keep=0.8, s=1.5)`` (unit noise after an activation,
identity in eval mode) and ``NoisyLinear(..., "dropconnect", keep=0.9)`` (weight noise).

Conventions (read these before comparing with other code):

- ``KWinners(n, k)``: k = number of *winners* kept (fraction f = k/n on; the theory's f). Per sample
  exactly k units win; ties at the k-th value are broken in favour of the
  **lower index**, so the count is exact and the choice deterministic. Winners pass on their own
  (un-boosted) value, losers output 0; the gradient is the winner mask. Boosting chooses winners by
  ``x * exp(beta (f - d_i))`` with duty cycles ``d`` (computed as ``exp(beta (min d - d_i))``, the
  same ranking without overflow for any finite beta). In training mode each batch of B samples
  updates ``d <- (d (T - B) + sum_batch 1(y > 0)) / T`` with ``T = max(B, min(period, samples seen
  including this batch))``: the exact running mean while at most ``period`` samples have been
  seen, then an exponential average with weight B/period per batch, and the batch mean when
  B > period, so every duty cycle stays in [0, 1] (the reference rule ``T = min(period, seen)``
  goes negative for B > period). ``update_boost_strength()`` (or ``update_boost_strength(model)``
  for every k-winners layer of a model) multiplies beta by ``boost_strength_factor``: call it once
  per epoch. beta, the duty cycles and the number of samples seen are buffers, so
  ``state_dict()`` / ``load_state_dict()`` restore a layer exactly. In eval mode
  ``k_inference = min(n, floor(1.5 k + 1/2))`` winners are kept (1.5 k rounded to the nearest
  integer, halves up: k = 3 gives 5; nupic.torch truncates, ``int(1.5 k)`` = 4; the two differ for
  every odd k); boosting still applies and duty cycles are frozen. An empty batch gives an empty
  output and leaves the state alone. Inputs of shape (B, *) are flattened: on a conv feature map
  that is a global top-k over channels x positions with one duty cycle per (c, h, w) unit.
- ``KWinners2d(channels, k)``: for conv feature maps (B, C, H, W), as nupic.torch's ``KWinners2d``
  (non-local): a global top-k over C x H x W per sample, one duty cycle per channel (the fraction
  of that channel's positions on, averaged over samples by the rule above), boosting per channel
  with f = k / (C H W). Otherwise as ``KWinners``.
- ``SparseWeights(module, *, density)``: density = fraction of weights kept per output unit
  (in-degree K = round(density * fan_in), fan_in = in_features or in_channels * kh * kw); the mask
  is drawn once and stored as a buffer. Masked weights are set to exactly 0 (even NaN or inf ones)
  at construction and by ``rezero_weights(model)`` after every optimiser step
  (``attach_rezero(optimizer, model)`` registers that as a step hook). Non-zero weights keep the
  wrapped layer's default init, so the layer acts as sigma_w,eff^2 = density * fan_in * Var(w)
  (``meanfield.kwinners.effective_sigma_w2``).
- Fractions and probabilities are keyword-only (``density=``, ``keep=``/``drop=``): a positional
  probability is the keep/drop trap (``torch.nn.Dropout(0.8)`` drops 80 %).
"""
from __future__ import annotations

import math

import torch
from torch import nn

from meanfield.validation import integer, real

__all__ = ["KWinners", "KWinners2d", "update_boost_strength", "SparseWeights", "rezero_weights",
           "attach_rezero"]


def _top_k(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Boolean (B, n) mask of exactly k winners per row; ties at the k-th value go to lower indices."""
    kth = torch.topk(scores, k, dim=1).values[:, -1:]
    above = scores > kth
    tied = scores == kth
    room = k - above.sum(dim=1, keepdim=True)
    return above | (tied & (tied.cumsum(dim=1) <= room))


class _KWinnersBase(nn.Module):
    """What KWinners and KWinners2d share: validation, buffers, boosting, duty-cycle update, forward.

    Subclasses define ``_flat(x)`` (validated (B, n) view), ``_unit_factor(x)`` (per-unit boost
    factor, shape (n,)) and ``_on(y)`` (per-duty-cycle count of active outputs over the batch, each
    in [0, B]).
    """

    def __init__(self, k: int, n_duty: int, k_inference_factor, boost_strength,
                 boost_strength_factor, duty_cycle_period):
        super().__init__()
        factor = real("k_inference_factor", k_inference_factor, 1)
        self.k = k
        # round half up; the min only keeps floor() finite for huge factors (capped at n at use)
        self.k_inference = math.floor(min(k * factor, 2.0 ** 53) + 0.5)
        self.boost_strength_factor = real("boost_strength_factor", boost_strength_factor, 0, 1)
        self.duty_cycle_period = integer("duty_cycle_period", duty_cycle_period, 1)
        self.register_buffer("boost_strength", torch.tensor(
            real("boost_strength", boost_strength, 0), dtype=torch.float64))
        self.register_buffer("duty_cycle", torch.zeros(n_duty))
        self.register_buffer("samples_seen", torch.zeros((), dtype=torch.long))

    def _duty_factor(self) -> torch.Tensor:
        """exp(beta (f - d)) over its largest value: the same ranking, and it never overflows."""
        d = self.duty_cycle.double()
        return torch.exp(self.boost_strength * (d.min() - d))

    def winner_mask(self, x: torch.Tensor, k: int) -> torch.Tensor:
        """Boolean mask of x's shape: exactly k winners per sample, chosen on the boosted input."""
        flat = self._flat(x)
        return _top_k(flat * self._unit_factor(x).to(flat.dtype), k).reshape(x.shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = self._flat(x).shape[1]
        if x.shape[0] == 0:
            return x.clone()
        with torch.no_grad():
            mask = self.winner_mask(x, self.k if self.training else min(n, self.k_inference))
        y = x * mask  # gradient = winner mask
        if self.training:
            self._update_duty_cycle(self._on(y.detach()), x.shape[0])
        return y

    @torch.no_grad()
    def _update_duty_cycle(self, on: torch.Tensor, batch: int) -> None:
        seen = int(self.samples_seen) + batch
        period = max(batch, min(self.duty_cycle_period, seen))
        # float64: (T - B), T and the counts are exact, so d <= 1 survives every rounding
        d = (self.duty_cycle.double() * (period - batch) + on) / period
        self.duty_cycle.copy_(d)
        self.samples_seen.fill_(seen)

    def update_boost_strength(self) -> None:
        """Decay the boost strength once (call at the end of each epoch)."""
        self.boost_strength.mul_(self.boost_strength_factor)


class KWinners(_KWinnersBase):
    """k-winners-take-all over n units with boosting and duty cycles (module docstring).

    Parameters
    ----------
    n : int
        Units per sample (>= 1); inputs (B, *) must have n = prod(*) entries per sample.
    k : int
        Winners per sample in training mode, in [1, n] (fraction on f = k/n).
    k_inference_factor : float, keyword-only
        Inference keeps ``min(n, floor(k_inference_factor * k + 1/2))`` winners; finite, >= 1.
    boost_strength : float, keyword-only
        Initial beta of the boost factor ``exp(beta (f - d_i))``; finite, >= 0 (0: no boosting).
    boost_strength_factor : float, keyword-only
        Multiplies beta at each ``update_boost_strength()``; in [0, 1].
    duty_cycle_period : int, keyword-only
        Samples over which duty cycles are averaged (T of the update rule); >= 1.

    Raises
    ------
    ValueError
        For an argument outside its range (the message names it), and in ``forward`` for an input
        without n entries per sample.

    References
    ----------
    Ahmad and Scheinkman 2019, "How can we be so dense?" (k-WTA, boosting, duty cycles);
    docs/THEORY.md §7.
    """

    def __init__(self, n: int, k: int, *, k_inference_factor: float = 1.5,
                 boost_strength: float = 1.0, boost_strength_factor: float = 0.9,
                 duty_cycle_period: int = 1000):
        n = integer("n (number of units)", n, 1)
        super().__init__(integer("k (number of winners)", k, 1, n), n, k_inference_factor,
                         boost_strength, boost_strength_factor, duty_cycle_period)
        self.n = n
        self.k_inference = min(n, self.k_inference)

    @property
    def f(self) -> float:
        """Target fraction on, k/n."""
        return self.k / self.n

    def extra_repr(self) -> str:
        return (f"n={self.n}, k={self.k}, k_inference={self.k_inference}, "
                f"boost_strength={float(self.boost_strength):g}")

    def _flat(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() < 2:
            raise ValueError(f"input must have shape (batch, ...) with n={self.n} entries per sample; "
                             f"got shape {tuple(x.shape)}")
        flat = x.flatten(1)
        if flat.shape[1] != self.n:
            raise ValueError(f"input has {flat.shape[1]} units per sample, the layer expects n={self.n}")
        return flat

    def _unit_factor(self, x: torch.Tensor) -> torch.Tensor:
        return self._duty_factor()

    def _on(self, y: torch.Tensor) -> torch.Tensor:
        return (self._flat(y) > 0).sum(dim=0, dtype=torch.float64)


class KWinners2d(_KWinnersBase):
    """k-winners-take-all on conv feature maps with one duty cycle per channel (module docstring).

    Parameters
    ----------
    channels : int
        Channels C of the (B, C, H, W) input; >= 1.
    k : int
        Winners per sample among its C x H x W values in training mode; >= 1 and at most C H W
        (checked in ``forward``). The target fraction on is f = k / (C H W).
    k_inference_factor, boost_strength, boost_strength_factor, duty_cycle_period
        As for ``KWinners``; duty cycles count samples (each sample adds the fraction of a
        channel's H W positions that are on).

    Raises
    ------
    ValueError
        For an argument outside its range, and in ``forward`` for an input that is not
        (B, channels, H, W) or has fewer than k values per sample.

    References
    ----------
    Ahmad and Scheinkman 2019; nupic.torch ``KWinners2d`` (local=False); docs/THEORY.md §7.
    """

    def __init__(self, channels: int, k: int, *, k_inference_factor: float = 1.5,
                 boost_strength: float = 1.0, boost_strength_factor: float = 0.9,
                 duty_cycle_period: int = 1000):
        channels = integer("channels", channels, 1)
        super().__init__(integer("k (number of winners)", k, 1), channels, k_inference_factor,
                         boost_strength, boost_strength_factor, duty_cycle_period)
        self.channels = channels

    def extra_repr(self) -> str:
        return (f"channels={self.channels}, k={self.k}, k_inference={self.k_inference} (at most "
                f"C H W), boost_strength={float(self.boost_strength):g}")

    def _flat(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != self.channels:
            raise ValueError(f"input must have shape (batch, channels={self.channels}, height, width); "
                             f"got {tuple(x.shape)}")
        n = self.channels * x.shape[2] * x.shape[3]
        if self.k > n:
            raise ValueError(f"k={self.k} winners exceed the {n} = channels x height x width values "
                             "per sample")
        return x.reshape(x.shape[0], n)

    def _unit_factor(self, x: torch.Tensor) -> torch.Tensor:
        return self._duty_factor().repeat_interleave(x.shape[2] * x.shape[3])

    def _on(self, y: torch.Tensor) -> torch.Tensor:
        return (y > 0).sum(dim=(0, 2, 3), dtype=torch.float64) / (y.shape[2] * y.shape[3])


def update_boost_strength(model: nn.Module) -> None:
    """Decay the boost strength of every KWinners / KWinners2d in ``model`` once (once per epoch)."""
    for m in model.modules():
        if isinstance(m, _KWinnersBase):
            m.update_boost_strength()


class SparseWeights(nn.Module):
    """Fixed in-degree weight mask around an nn.Linear or nn.Conv2d (module docstring).

    Parameters
    ----------
    module : nn.Linear or nn.Conv2d
        The wrapped layer; its masked weights are set to 0 in place.
    density : float, keyword-only
        Fraction of weights kept per output unit, in (0, 1]; in-degree ``max(1, round(density *
        fan_in))``.
    generator : torch.Generator, optional, keyword-only
        Source of the random mask.

    Raises
    ------
    ValueError
        For another module type or a density outside (0, 1].

    References
    ----------
    Ahmad and Scheinkman 2019; docs/THEORY.md §7.
    """

    def __init__(self, module: nn.Module, *, density: float, generator: torch.Generator | None = None):
        super().__init__()
        if not isinstance(module, (nn.Linear, nn.Conv2d)):
            raise ValueError(f"module must be nn.Linear or nn.Conv2d; got {type(module).__name__}")
        density = real("density (fraction of weights kept per unit)", density, 0, 1, lo_open=True)
        self.module = module
        w = module.weight
        n_out, fan_in = w.shape[0], w[0].numel()
        self.in_degree = max(1, int(round(density * fan_in)))
        scores = torch.rand(n_out, fan_in, generator=generator)
        keep = scores.argsort(dim=1)[:, :self.in_degree]
        mask = torch.zeros(n_out, fan_in, dtype=w.dtype).scatter_(1, keep, 1.0)
        self.register_buffer("mask", mask.reshape(w.shape))
        self.rezero()

    @torch.no_grad()
    def rezero(self) -> None:
        """Set the masked weights to exactly 0 (``where``, not a product: NaN * 0 is NaN)."""
        w = self.module.weight
        w.copy_(torch.where(self.mask != 0, w, torch.zeros_like(w)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(x)


def rezero_weights(model: nn.Module) -> None:
    """Re-apply every SparseWeights mask in ``model`` (after each optimiser step)."""
    for m in model.modules():
        if isinstance(m, SparseWeights):
            m.rezero()


def attach_rezero(optimizer: torch.optim.Optimizer, model: nn.Module):
    """Register ``rezero_weights(model)`` as a post-step hook of ``optimizer``; returns the handle."""
    return optimizer.register_step_post_hook(lambda *_: rezero_weights(model))
