"""Multiplicative unit noise g = phi(z) xi, E xi = 1: no noise and (inverted) dropout.

Every moment is an activation kernel (:mod:`meanfield.kernels`) times a moment of xi,
mu_2 = E[xi^2] and mu_4 = E[xi^4] (docs/THEORY.md §2-§4):

- E[g^2] = mu_2 A2, d/dq E[g^2] = mu_2 dA2, E[g'^2] = mu_2 D2, gbar = phi;
- S_1 = E[g'^2 g^2] = mu_4 PD, S_2 = E[(g'g)bar (g'g)bar] = mu_2^2 PK.

So closed forms of the activation carry over, and a new multiplicative noise only states
mu_2, mu_4 and how to draw xi.
"""
from __future__ import annotations

from dataclasses import InitVar, dataclass

import numpy as np

from .. import kernels
from .base import NoiseLayer, keep_field, register_noise


class MultiplicativeNoise(NoiseLayer):
    """Base of g = phi(z) xi with E xi = 1; subclasses give ``mu2`` = E[xi^2], ``mu4`` = E[xi^4]."""

    @property
    def mu2(self):
        raise NotImplementedError

    @property
    def mu4(self):
        raise NotImplementedError

    def second_moment(self, act, q):
        return self.mu2 * kernels.moment(act, "A2", q)

    def second_moment_slope(self, act, q):
        return self.mu2 * kernels.moment(act, "dA2", q)

    def second_moment_and_slope(self, act, q):
        a2, da2 = kernels.moments(act, ("A2", "dA2"), q)
        return self.mu2 * a2, self.mu2 * da2

    def deriv_second_moment(self, act, q):
        return self.mu2 * kernels.moment(act, "D2", q)

    def bounded_second_moment(self):
        return np.asarray(self.mu2, float)

    def backprop_source_single(self, act, q):
        return self.mu4 * kernels.moment(act, "PD", q)

    def backprop_source_pair(self, act, q, c):
        return self.mu2 ** 2 * kernels.pair(act, ("PK",), q, c)[0]

    def missing_fixed_point_hint(self, act):
        if act.name == "relu":
            return " (relu: a finite q* needs sigma_w2 E[xi^2] < 2, i.e. sigma_w2 < 2 keep for dropout)"
        if act.name == "linear":
            return " (linear: a finite q* needs sigma_w2 E[xi^2] < 1, i.e. sigma_w2 < keep for dropout)"
        return ""

    def is_identity(self):
        return np.asarray(self.mu2) == 1.0

    def torch_g(self, p, xi):
        return p * xi


@register_noise
@dataclass(frozen=True, eq=False, kw_only=True)
class NoNoise(MultiplicativeNoise):
    """No noise: g = phi(z)."""

    name = "none"
    mu2 = 1.0
    mu4 = 1.0

    def torch_xi(self, u):
        return None

    def torch_g(self, p, xi):
        return p


@register_noise
@dataclass(frozen=True, eq=False, kw_only=True)
class Dropout(MultiplicativeNoise):
    """Inverted dropout g = phi(z) m / rho, m ~ Bernoulli(rho) (docs/THEORY.md §1-§2).

    Parameters
    ----------
    keep : float or array_like
        Keep probability rho in (0, 1] (rho = 1: no dropout). Keyword only.
    drop : float or array_like
        Drop probability 1 - rho in [0, 1) (PyTorch's ``p``), instead of ``keep``.

    Notes
    -----
    xi = m / rho: mu_2 = 1/rho, mu_4 = 1/rho^3.
    """

    name = "dropout"
    keep: float | np.ndarray = keep_field()
    drop: InitVar[float | np.ndarray | None] = None

    def __post_init__(self, drop):
        self._keep(drop)

    @property
    def mu2(self):
        return 1.0 / np.asarray(self.keep)

    @property
    def mu4(self):
        return np.asarray(self.keep) ** -3.0

    def torch_xi(self, u):
        keep = float(self.scalar().keep)
        return (u < keep).to(u.dtype) / keep
