"""torch layers for the noise comparisons: k-winners-take-all, sparse weights, Sparseout.

Conventions (read these before comparing with other code):

- ``KWinners(n, k)``: k = number of *winners* kept (fraction f = k/n on; the theory's f). Per sample
  exactly k units win; ties at the k-th value are broken in favour of the
  **lower index**, so the count is exact and the choice deterministic. Winners pass on their own
  (un-boosted) value, losers output 0; the gradient is the winner mask. Boosting chooses winners by
  ``x * exp(beta (f - d_i))`` with duty cycles ``d``, updated in training mode after each batch as
  ``d <- (d (T - B) + sum_batch 1(y > 0)) / T``, ``T = min(duty_cycle_period, samples seen)``
  (B = batch size). ``update_boost_strength()`` multiplies beta by ``boost_strength_factor``: call
  it once per epoch. In eval mode ``k_inference = min(n, round(1.5 k))`` winners are kept (boosting
  still applies, duty cycles are frozen). Inputs of shape (B, *) are flattened: for a conv feature
  map that is a global top-k over channels x positions with one duty cycle per (c, h, w) unit
  (nupic's ``KWinners2d`` keeps one duty cycle per channel instead).
- ``SparseWeights(module, density)``: density = fraction of weights kept per output unit
  (in-degree K = round(density * fan_in), fan_in = in_features or in_channels * kh * kw); the mask
  is drawn once and stored as a buffer. Masked weights are zeroed at construction and by
  ``rezero_weights(model)`` after every optimiser step (``attach_rezero(optimizer, model)``
  registers that as a step hook). Non-zero weights keep the wrapped layer's default init, so the
  layer acts as sigma_w,eff^2 = density * fan_in * Var(w) (``meanfield.kwinners.effective_sigma_w2``).
- ``Sparseout(keep=... | drop=..., s=2.0, backward="true" | "code")`` (THEORY section 6):
  ``a~ = a + sgn(a) |a|^{s/2} xi``, ``xi = m/keep - 1``, ``m ~ Bernoulli(keep)``; identity in eval
  mode. keep = probability of keeping (rho); drop = 1 - keep (PyTorch's ``p``). Exactly one must be
  given. s = 2 is inverted dropout. ``backward="true"`` uses the derivative
  ``1 + (s/2) |a|^{(s-2)/2} xi``; ``"code"`` the reference implementation's ``1 + |a|^{(s-2)/2} xi``.
  Where a = 0 and s < 2 the noise factor (infinite there) is taken as 0; for s = 2 it is 1.
"""
from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["KWinners", "SparseWeights", "Sparseout", "rezero_weights", "attach_rezero"]


def _keep_from(keep, drop):
    if (keep is None) == (drop is None):
        raise ValueError("give exactly one of keep= (keep probability) or drop= (drop probability)")
    if keep is None:
        if not 0 <= drop < 1:
            raise ValueError(f"drop (drop probability) must lie in [0, 1); got {drop}")
        keep = 1.0 - drop
    if not 0 < keep <= 1:
        raise ValueError(f"keep (keep probability) must lie in (0, 1]; got {keep}")
    return float(keep)


class KWinners(nn.Module):
    """k-winners-take-all over n units with boosting and duty cycles (module docstring)."""

    def __init__(self, n: int, k: int, *, k_inference_factor: float = 1.5,
                 boost_strength: float = 1.0, boost_strength_factor: float = 0.9,
                 duty_cycle_period: int = 1000):
        super().__init__()
        if int(n) != n or n < 1:
            raise ValueError(f"n (number of units) must be a positive integer; got {n}")
        if int(k) != k or not 1 <= k <= n:
            raise ValueError(f"k (number of winners) must be an integer in [1, n={n}]; got {k}")
        if k_inference_factor < 1:
            raise ValueError(f"k_inference_factor must be >= 1; got {k_inference_factor}")
        if boost_strength < 0:
            raise ValueError(f"boost_strength must be >= 0; got {boost_strength}")
        if not 0 <= boost_strength_factor <= 1:
            raise ValueError(f"boost_strength_factor must lie in [0, 1]; got {boost_strength_factor}")
        if int(duty_cycle_period) != duty_cycle_period or duty_cycle_period < 1:
            raise ValueError(f"duty_cycle_period must be a positive integer; got {duty_cycle_period}")
        self.n, self.k = int(n), int(k)
        self.k_inference = min(self.n, int(round(self.k * k_inference_factor)))
        self.boost_strength = float(boost_strength)
        self.boost_strength_factor = float(boost_strength_factor)
        self.duty_cycle_period = int(duty_cycle_period)
        self.register_buffer("duty_cycle", torch.zeros(self.n))
        self.register_buffer("samples_seen", torch.zeros((), dtype=torch.long))

    @property
    def f(self) -> float:
        """Target fraction on, k/n."""
        return self.k / self.n

    def extra_repr(self) -> str:
        return (f"n={self.n}, k={self.k}, k_inference={self.k_inference}, "
                f"boost_strength={self.boost_strength:g}")

    def winner_mask(self, x: torch.Tensor, k: int) -> torch.Tensor:
        """Boolean (B, n) mask of exactly k winners per row, chosen on the boosted input."""
        b = x * torch.exp(self.boost_strength * (self.f - self.duty_cycle)).to(x.dtype)
        kth = torch.topk(b, k, dim=1).values[:, -1:]
        above = b > kth
        # ties at the k-th value: the lowest indices fill the remaining places (exactly k winners)
        tied = b == kth
        room = k - above.sum(dim=1, keepdim=True)
        return above | (tied & (tied.cumsum(dim=1) <= room))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        flat = x.reshape(shape[0], -1)
        if flat.shape[1] != self.n:
            raise ValueError(f"input has {flat.shape[1]} units per sample, the layer expects n={self.n}")
        with torch.no_grad():
            mask = self.winner_mask(flat, self.k if self.training else self.k_inference)
        y = flat * mask  # gradient = winner mask
        if self.training:
            self._update_duty_cycle(y.detach())
        return y.reshape(shape)

    @torch.no_grad()
    def _update_duty_cycle(self, y: torch.Tensor) -> None:
        b = y.shape[0]
        self.samples_seen += b
        period = min(self.duty_cycle_period, int(self.samples_seen))
        self.duty_cycle.mul_(period - b).add_((y > 0).sum(dim=0, dtype=self.duty_cycle.dtype))
        self.duty_cycle.div_(period)

    def update_boost_strength(self) -> None:
        """Decay the boost strength once (call at the end of each epoch)."""
        self.boost_strength *= self.boost_strength_factor


class SparseWeights(nn.Module):
    """Fixed in-degree weight mask around an nn.Linear or nn.Conv2d (module docstring)."""

    def __init__(self, module: nn.Module, density: float, *, generator: torch.Generator | None = None):
        super().__init__()
        if not isinstance(module, (nn.Linear, nn.Conv2d)):
            raise ValueError(f"module must be nn.Linear or nn.Conv2d; got {type(module).__name__}")
        if not 0 < density <= 1:
            raise ValueError(f"density (fraction of weights kept per unit) must lie in (0, 1]; got {density}")
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
        self.module.weight.mul_(self.mask)

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


class _SparseoutFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, a, xi, s, true_grad):
        ctx.save_for_backward(a, xi)
        ctx.s, ctx.true_grad = s, true_grad
        return a + torch.sign(a) * a.abs().pow(s / 2) * xi

    @staticmethod
    def backward(ctx, grad):
        a, xi = ctx.saved_tensors
        s = ctx.s
        if s == 2:
            power = torch.ones_like(a)
        else:
            power = torch.where(a != 0, a.abs().pow((s - 2) / 2), torch.zeros_like(a))
        scale = s / 2 if ctx.true_grad else 1.0
        return grad * (1 + scale * power * xi), None, None, None


class Sparseout(nn.Module):
    """Sparseout noise (module docstring); keep= or drop=, norm exponent s, backward "true"/"code"."""

    def __init__(self, keep: float | None = None, *, drop: float | None = None, s: float = 2.0,
                 backward: str = "true"):
        super().__init__()
        self.keep = _keep_from(keep, drop)
        if not (math.isfinite(s) and s > 0):
            raise ValueError(f"s (Sparseout norm exponent) must be finite and > 0; got {s}")
        if backward not in ("true", "code"):
            raise ValueError(f"backward must be 'true' (derivative) or 'code' (reference code); got {backward!r}")
        self.s, self.backward = float(s), backward

    @property
    def drop(self) -> float:
        return 1.0 - self.keep

    def extra_repr(self) -> str:
        return f"keep={self.keep:g} (drop={self.drop:g}), s={self.s:g}, backward={self.backward}"

    def forward(self, a: torch.Tensor) -> torch.Tensor:
        if not self.training or self.keep == 1.0:
            return a
        xi = torch.bernoulli(torch.full_like(a, self.keep)) / self.keep - 1
        return _SparseoutFn.apply(a, xi, self.s, self.backward == "true")
