"""DropConnect (Wan et al. 2013): each weight, not each unit, kept with probability rho (docs/THEORY.md §11).

Layer l computes z^l = (W^l o M^l / rho) phi(z^{l-1}) + b^l with masks M_ij ~ Bernoulli(rho)
independent over (i, j), drawn afresh for every input (two inputs a, b see independent masks) and
shared between an input's forward and backward pass.

At infinite width (docs/THEORY.md §11):

- the forward maps equal unit dropout's: sum_j W_ij^2 M_ij x_j^2 / rho^2 -> (sigma_w^2/rho) E[phi^2]
  and the independent masks of two inputs average to 1, so q*, c*, chi_1, chi_c, chi_q are
  dropout's (its moments, with mu_2 = 1/rho, are inherited from :class:`Dropout` below);
- the transpose rule, with W o M / rho Gaussian given M (entry variance sigma_w^2 M_ij/(N rho^2)),
  gives W~^T delta = Zhat + a h with h = phi (no unit noise) and the transpose gain gamma = 1/rho;
  hence S_1 = E[phi'^2 phi^2] (PD), rho times dropout's a_l^2 S_1 = a_l^2 PD/rho^3 once a_l carries
  gamma, and S_2 = E[(phi phi')(u1) (phi phi')(u2)] (PK): the pair source equals dropout's;
- the weight gradient dE/dW_ij = delta_i M_ij x_j / rho is not rank one, but its metrics keep
  dropout's form: g_aa -> qt E[phi^2]/rho, g_ab -> qt_ab E[phi(u1) phi(u2)].

So DropConnect and dropout differ, at infinite width, only in the single-input no-GIA correction:
the exact g_aa of DropConnect lies between GIA and dropout's.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import kernels
from .base import WEIGHTS, NoiseLayer, register_noise
from .multiplicative import Dropout


@register_noise
@dataclass(frozen=True, eq=False, kw_only=True)
class DropConnect(Dropout):
    """DropConnect weight noise: W o M / rho, M_ij ~ Bernoulli(rho) per weight and per input.

    Parameters
    ----------
    keep : float or array_like
        Keep probability rho in (0, 1] of each weight (rho = 1: no noise). Keyword only.
    drop : float or array_like
        Drop probability 1 - rho in [0, 1), instead of ``keep``.

    Notes
    -----
    Acts on weights (``acts_on = "weights"``): ``torch_weight`` masks a weight matrix, there is no
    unit-noise forward. It inherits dropout's keep parameter and forward moments (mu_2 = 1/rho);
    the exact backprop has its own gamma = 1/rho, S_1 = PD, S_2 = PK (module docstring).

    References
    ----------
    Wan, Zeiler, Zhang, LeCun, Fergus, "Regularization of neural networks using DropConnect",
    ICML 2013; docs/THEORY.md §11.
    """

    name = "dropconnect"
    acts_on = WEIGHTS

    def transpose_gain(self):
        return np.asarray(self.mu2, float)

    def backprop_source_single(self, act, q):
        return kernels.moment(act, "PD", q) * np.ones(self.shape)

    def backprop_source_pair(self, act, q, c):
        return kernels.pair(act, ("PK",), q, c)[0] * np.ones(self.shape)

    torch_xi = NoiseLayer.torch_xi  # weight noise: no unit forward
    torch_g = NoiseLayer.torch_g

    def torch_weight(self, w, u):
        """W o M / rho with M = (u < rho); u may carry extra leading dimensions (one mask per
        example: u of shape (B,) + w.shape), the result has the broadcast shape."""
        keep = float(self.scalar().keep)
        return w * ((u < keep).to(w.dtype) / keep)
