"""The torch adapter: noise layers and activations as torch modules (docs/THEORY.md §2, §13).

Every torch forward of a noise layer in the project goes through this module, so a new noise layer
(one file implementing :class:`meanfield.noise.NoiseLayer`) is simulated and trained without
further code:

- unit noise (``acts_on = "units"``): uniforms u of the post-activations' shape give the noise
  ``xi = noise.torch_xi(u)`` and ``x~ = noise.torch_g(p, xi)`` (:func:`unit_noise`);
- weight noise (``acts_on = "weights"``): ``noise.torch_weight(w, u)`` (:func:`weight_noise`);
- a layer that does nothing (``noise.is_identity()``, e.g. keep = 1) draws no uniforms at all
  (:func:`draws`): a network without noise consumes no random numbers for it.

Modules: :class:`NoiseModule` (unit noise after an activation), :class:`NoisyLinear` (a linear
layer with weight noise), :class:`ActivationModule` (an activation's torch twin). Noise is applied
in training mode only; eval mode is deterministic (unit noise: identity; weights: W itself, the
mean of the inverted masks). Probabilities are keyword-only (``keep=`` / ``drop=``): a positional
probability is the keep/drop trap (``torch.nn.Dropout(0.8)`` drops 80 %).

torch is imported here; ``import meanfield`` does not import this module.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .activations import get_activation
from .noise import NoiseLayer, make_noise, noise_class
from .noise.base import UNITS, WEIGHTS
from .validation import integer, keep_from

__all__ = ["resolve_noise", "draws", "unit_noise", "weight_noise", "masked_linear", "NoiseModule",
           "NoisyLinear", "ActivationModule"]


def resolve_noise(noise, acts_on=None, *, keep=None, drop=None, **params) -> NoiseLayer:
    """A scalar noise layer from an object or a name with keyword parameters.

    Parameters
    ----------
    noise : NoiseLayer or str
        A layer object (then no other argument) or a registered name.
    acts_on : {"units", "weights"}, optional
        Required kind of noise.
    keep, drop, **params
        The layer's parameters. A named layer with a keep probability needs exactly one of
        ``keep`` / ``drop`` (no silent default of keep = 1).

    Returns
    -------
    NoiseLayer
        With scalar parameters.

    Raises
    ------
    ValueError
        Unknown noise, missing or invalid parameters, array parameters, or the wrong kind.

    References
    ----------
    docs/THEORY.md §2, §13 (the noise-layer protocol and registry).
    """
    if not isinstance(noise, (NoiseLayer, str)):
        raise ValueError(f"noise must be a noise layer or a registered name, got {noise!r} (give "
                         "probabilities by keyword: keep= (keep probability rho) or drop= (1 - rho))")
    if isinstance(noise, str) and "keep" in {f.name for f in noise_class(noise).param_fields()}:
        keep_from(keep, drop)  # neither or both: ValueError naming keep and drop
    nz = make_noise(noise, keep=keep, drop=drop, **params).scalar()
    if acts_on is not None and nz.acts_on != acts_on:
        other = "NoisyLinear" if nz.acts_on == WEIGHTS else "NoiseModule"
        raise ValueError(f"noise {nz.spec()} acts on {nz.acts_on}, not on {acts_on}: use {other}")
    return nz


def draws(noise: NoiseLayer) -> bool:
    """Whether the layer consumes random numbers.

    Parameters
    ----------
    noise : NoiseLayer

    Returns
    -------
    bool
        False where the layer is the identity (``noise.is_identity()``, e.g. keep = 1): callers
        then draw no uniforms, so such runs reproduce runs without noise.
    """
    return not bool(np.all(noise.is_identity()))


def unit_noise(noise: NoiseLayer, p: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """x~ = g(z, xi) for a unit noise layer: the one place that turns uniforms into unit noise.

    Parameters
    ----------
    noise : NoiseLayer
        Unit noise with scalar parameters.
    p : Tensor
        Post-activations phi(z), any shape.
    u : Tensor
        Uniforms in [0, 1), p's shape.

    Returns
    -------
    Tensor
        ``noise.torch_g(p, noise.torch_xi(u))``, p's shape, differentiable in p.

    References
    ----------
    docs/THEORY.md §2 (g(z, xi)), §6 (Sparseout), §10 (Gaussian noise).
    """
    return noise.torch_g(p, noise.torch_xi(u))


def weight_noise(noise: NoiseLayer, w: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """The noisy weights ``noise.torch_weight(w, u)`` of a weight noise layer.

    Parameters
    ----------
    noise : NoiseLayer
        Weight noise with scalar parameters (e.g. DropConnect).
    w : Tensor
        Weights (..., out, in).
    u : Tensor
        Uniforms in [0, 1), w's shape or with extra leading dimensions (one mask per example).

    Returns
    -------
    Tensor
        The broadcast shape of w and u, differentiable in w.

    References
    ----------
    docs/THEORY.md §11 (DropConnect).
    """
    return noise.torch_weight(w, u)


def masked_linear(noise, x, w, u, bias=None):
    """y = W~ x + b with one noisy matrix W~ = weight_noise(w, u) per example.

    Parameters
    ----------
    noise : NoiseLayer
        Weight noise.
    x : Tensor, shape (..., B, in)
        Inputs; leading dimensions (ensemble members, realisations) as u's.
    w : Tensor, broadcastable to u's shape
        Weights: (out, in) shared by every example, (M, 1, out, in) per ensemble member, or
        (..., B, out, in) with its own copy per example.
    u : Tensor, shape (..., B, out, in)
        Uniforms: one mask per example.
    bias : Tensor, shape (out,) or (..., 1, out), optional

    Returns
    -------
    Tensor, shape (..., B, out)

    References
    ----------
    docs/THEORY.md §11 (per-example masks).
    """
    y = (weight_noise(noise, w, u) @ x.unsqueeze(-1)).squeeze(-1)
    return y if bias is None else y + bias


class NoiseModule(nn.Module):
    """A unit noise layer (dropout, Sparseout, Gaussian noise, ...) after an activation.

    Parameters
    ----------
    noise : NoiseLayer or str
        A unit noise layer, or its registered name with the parameters as keywords.
    keep, drop : float, keyword-only
        Keep probability rho in (0, 1] or drop probability 1 - rho in [0, 1) (exactly one, for a
        named layer with a keep probability).
    generator : torch.Generator, optional, keyword-only
        Source of the uniforms (default: torch's global generator).
    **params
        The layer's other parameters (``s=``, ``backward=`` for Sparseout, ``sigma_eps2=``, ...).

    Raises
    ------
    ValueError
        For an unknown or weight noise, missing keep/drop, or an invalid parameter.

    Examples
    --------
    >>> NoiseModule("sparseout", drop=0.2, s=1.5)        # doctest: +SKIP
    >>> NoiseModule(Dropout(keep=0.9))                   # doctest: +SKIP

    References
    ----------
    docs/THEORY.md §2 (noise layers), §6 (Sparseout), §10 (Gaussian noise).
    """

    def __init__(self, noise, *, keep=None, drop=None, generator=None, **params):
        super().__init__()
        self.noise = resolve_noise(noise, UNITS, keep=keep, drop=drop, **params)
        self.generator = generator

    @property
    def keep(self) -> float:
        """Keep probability rho (1 for layers that drop nothing)."""
        return float(getattr(self.noise, "keep", 1.0))

    @property
    def drop(self) -> float:
        """Drop probability 1 - rho (PyTorch's p)."""
        return 1.0 - self.keep

    def extra_repr(self) -> str:
        spec = self.noise.spec()
        return f"{spec}, drop={self.drop:g}" if hasattr(self.noise, "keep") else spec

    def forward(self, p: torch.Tensor) -> torch.Tensor:
        if not self.training or not draws(self.noise):
            return p
        u = torch.rand(p.shape, generator=self.generator, dtype=p.dtype, device=p.device)
        return unit_noise(self.noise, p, u)


class NoisyLinear(nn.Linear):
    """A linear layer with weight noise (DropConnect): y = (W o M / rho) x + b in training mode.

    Parameters
    ----------
    in_features, out_features : int
        Sizes (>= 1); the parameters are initialised as ``torch.nn.Linear``'s.
    noise : NoiseLayer or str
        A weight noise layer, or its registered name (``"dropconnect"``) with keywords.
    keep, drop : float, keyword-only
        As for :class:`NoiseModule`.
    bias : bool, keyword-only
    per_example : bool, keyword-only
        True (default): every example of a batch has its own mask, as the theory assumes
        (independent masks per input, docs/THEORY.md §11); costs B x out x in uniforms and a batched
        matrix product per call. False: one mask per call, shared by the batch (cheap, but the
        examples of a minibatch are then correlated).
    generator : torch.Generator, optional, keyword-only
    device, dtype : optional, keyword-only
    **params
        Other parameters of the noise layer.

    Notes
    -----
    Eval mode uses W itself (the mean of W o M / rho). Inputs of shape (..., in_features).

    Raises
    ------
    ValueError
        For a unit noise, missing keep/drop or an invalid size or parameter.

    References
    ----------
    Wan et al., ICML 2013 (DropConnect); docs/THEORY.md §11.
    """

    def __init__(self, in_features, out_features, noise="dropconnect", *, keep=None, drop=None,
                 bias=True, per_example=True, generator=None, device=None, dtype=None, **params):
        integer("in_features", in_features, 1)
        integer("out_features", out_features, 1)
        super().__init__(in_features, out_features, bias=bias, device=device, dtype=dtype)
        self.noise = resolve_noise(noise, WEIGHTS, keep=keep, drop=drop, **params)
        self.per_example = bool(per_example)
        self.generator = generator

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, noise={self.noise.spec()}, per_example={self.per_example}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or not draws(self.noise):
            return F.linear(x, self.weight, self.bias)
        w = self.weight
        if not self.per_example:
            u = torch.rand(w.shape, generator=self.generator, dtype=w.dtype, device=w.device)
            return F.linear(x, weight_noise(self.noise, w, u), self.bias)
        flat = x.reshape(-1, self.in_features)
        u = torch.rand((flat.shape[0],) + tuple(w.shape), generator=self.generator, dtype=w.dtype,
                       device=w.device)
        y = masked_linear(self.noise, flat, w, u, self.bias)
        return y.reshape(x.shape[:-1] + (self.out_features,))


class ActivationModule(nn.Module):
    """An activation's torch twin as a module (any registered or ``Activation.from_sympy`` one).

    Parameters
    ----------
    activation : str or Activation
    **params
        Passed to :func:`meanfield.get_activation` with a name.

    Raises
    ------
    ValueError
        For an unknown activation or one without a torch twin.
    """

    def __init__(self, activation, **params):
        super().__init__()
        self.activation = get_activation(activation, **params)
        self.activation.torch(torch.zeros(1, dtype=torch.float64))  # no torch twin: fail now

    def extra_repr(self) -> str:
        return self.activation.name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.activation.torch(x)
