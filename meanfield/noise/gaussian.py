"""Gaussian multiplicative noise g = phi(z) xi, xi ~ N(1, sigma_eps^2) (docs/THEORY.md §10).

The noise of Pretorius et al. 2018's noisy rectifiers and, with sigma_eps^2 = (1 - rho)/rho,
Srivastava et al. 2014's Gaussian dropout. A multiplicative noise (E xi = 1), so every moment is an
activation kernel times mu_2 = E[xi^2] = 1 + sigma_eps^2 or mu_4 = E[xi^4] = 1 + 6 sigma_eps^2 +
3 sigma_eps^4. Matching dropout's mu_2 leaves the forward maps, chi_1, chi_c, chi_q and the pair
source of the exact backprop equal to dropout's; only the single-input source S_1 = mu_4 PD differs
(Gaussian mu_4 = (3 - 2 rho^2)/rho^2 against dropout's 1/rho^3: larger for (sqrt(3) - 1)/2 < rho < 1,
smaller below).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..validation import keep_from
from .base import param_field, register_noise
from .multiplicative import MultiplicativeNoise


@register_noise
@dataclass(frozen=True, eq=False, kw_only=True)
class GaussianNoise(MultiplicativeNoise):
    """Multiplicative Gaussian noise on post-activations, xi ~ N(1, sigma_eps^2).

    Parameters
    ----------
    sigma_eps2 : float or array_like
        Noise variance sigma_eps^2 >= 0 (0: no noise). Keyword only.

    Notes
    -----
    mu_2 = 1 + sigma_eps^2, mu_4 = 1 + 6 sigma_eps^2 + 3 sigma_eps^4. ReLU's critical line is
    sigma_w^2 = 2 / (1 + sigma_eps^2) (Pretorius et al. 2018).

    References
    ----------
    Pretorius, van Biljon, Kroon, Kamper, NeurIPS 2018; Srivastava et al., JMLR 2014 §10
    (Gaussian dropout); docs/THEORY.md §10.
    """

    name = "gaussian"
    sigma_eps2: float | np.ndarray = param_field(
        "Gaussian noise variance sigma_eps^2 >= 0 (xi ~ N(1, sigma_eps^2); 0: no noise)", 0.0)

    def __post_init__(self):
        self._vector("sigma_eps2", "be a finite number >= 0", lambda a: a >= 0)

    @classmethod
    def matching_dropout(cls, keep=None, *, drop=None) -> "GaussianNoise":
        """Gaussian dropout: the Gaussian noise with dropout's second moment, sigma_eps^2 = (1 - rho)/rho.

        Parameters
        ----------
        keep, drop : float or array_like
            Keep probability rho in (0, 1] or drop probability 1 - rho in [0, 1) (exactly one).

        Raises
        ------
        ValueError
            For neither or both of keep and drop, or a value outside its range.
        """
        keep = keep_from(keep, drop)
        return cls(sigma_eps2=(1 - keep) / keep)

    @property
    def mu2(self):
        return 1.0 + np.asarray(self.sigma_eps2)

    @property
    def mu4(self):
        s2 = np.asarray(self.sigma_eps2)
        return 1.0 + 6.0 * s2 + 3.0 * s2 * s2

    def torch_xi(self, u):
        """xi = 1 + sigma_eps ndtri(u); u = 0 (probability 2^-53 per draw) is moved to the smallest
        positive float so that xi stays finite."""
        import torch
        s = float(np.sqrt(self.scalar().sigma_eps2))
        tiny = torch.finfo(u.dtype).tiny
        return 1.0 + s * torch.special.ndtri(u.clamp_min(tiny))
