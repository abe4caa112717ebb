"""Forward maps of a noisy layer: variance, covariance and correlation (docs/THEORY.md §3).

Every public function takes the layer as ``(activation, sigma_w2, sigma_b2, keep=None, *,
noise="dropout", drop=None, **noise_params)``: ``noise`` is a registered name with its parameters
as keywords (``keep``/``drop``, Sparseout's ``s`` and ``backward``, ...) or a noise-layer object
(:mod:`meanfield.noise`). Numeric parameters broadcast like numpy arrays.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .activations import Activation, get_activation
from .noise import NoiseLayer, make_noise
from .validation import checked, finite_array

__all__ = ["Params", "params", "q_map", "covariance_map", "c_map", "check_q", "check_qc"]

SIGMA_W2 = "sigma_w2 (weight variance)"
SIGMA_B2 = "sigma_b2 (bias variance)"


@dataclass(frozen=True)
class Params:
    """Validated parameters of a layer family, all broadcast to one shape.

    Attributes
    ----------
    act : Activation
    noise : NoiseLayer
        Vectorised parameters broadcast to ``shape``.
    sigma_w2, sigma_b2 : ndarray, shape ``shape``
    """

    act: Activation
    noise: NoiseLayer
    sigma_w2: np.ndarray
    sigma_b2: np.ndarray

    @property
    def shape(self):
        return self.sigma_w2.shape

    def ravel(self) -> "Params":
        """The same parameters as flat arrays (shape (n,))."""
        return Params(self.act, self.noise.reshape(-1), self.sigma_w2.ravel(), self.sigma_b2.ravel())

    def take(self, idx) -> "Params":
        """The parameter points ``idx``."""
        return Params(self.act, self.noise.take(idx), self.sigma_w2[idx], self.sigma_b2[idx])


def params(activation, sigma_w2, sigma_b2, keep=None, *, noise="dropout", drop=None,
           **noise_params) -> Params:
    """Validate and broadcast a layer's parameters.

    Parameters
    ----------
    activation : str or Activation
    sigma_w2 : array_like
        Weight variance sigma_w^2 > 0 (weights ~ N(0, sigma_w^2 / fan_in)).
    sigma_b2 : array_like
        Bias variance sigma_b^2 >= 0.
    keep, drop : array_like, optional
        Keep probability rho in (0, 1] or drop probability 1 - rho (not both; default keep = 1).
    noise : str or NoiseLayer
        Registered noise name or a layer object (then no keep/drop/noise_params).
    **noise_params
        Other parameters of the named noise (e.g. ``s``, ``backward``).

    Returns
    -------
    Params

    Raises
    ------
    ValueError
        Naming the offending parameter and its valid range.
    """
    act = get_activation(activation)
    nz = make_noise(noise, keep=keep, drop=drop, **noise_params)
    sw = checked(SIGMA_W2, sigma_w2, "be > 0", lambda a: a > 0)
    sb = checked(SIGMA_B2, sigma_b2, "be >= 0", lambda a: a >= 0)
    shape = np.broadcast_shapes(sw.shape, sb.shape, nz.shape)
    return Params(act, nz.broadcast_to(shape), np.broadcast_to(sw, shape).astype(float),
                  np.broadcast_to(sb, shape).astype(float))


def check_q(q) -> np.ndarray:
    """q as a float array of variances >= 0 (ValueError otherwise)."""
    q = finite_array("q (pre-activation variance)", q)
    if np.any(q < 0):
        raise ValueError(f"q (pre-activation variance) must be >= 0, got {q!r}")
    return q


def check_qc(q, c):
    """(q, c) as float arrays: variances >= 0 and correlations in [-1, 1]."""
    c = finite_array("c (correlation)", c)
    if np.any(np.abs(c) > 1):
        raise ValueError(f"c (correlation) must lie in [-1, 1], got {c!r}")
    return check_q(q), c


def q_map(q, activation, sigma_w2, sigma_b2, keep=None, **kw):
    """Variance map q^{l+1} = sigma_w^2 E_{z,xi}[g(sqrt(q^l) z, xi)^2] + sigma_b^2.

    Parameters
    ----------
    q : array_like
        Pre-activation variance q^l >= 0; broadcasts with the layer parameters.
    activation, sigma_w2, sigma_b2, keep, **kw
        The layer (see :func:`params`).

    Returns
    -------
    ndarray
        q^{l+1}.

    References
    ----------
    docs/THEORY.md §3; Schoenholz et al. 2017 eq. (3); Huang et al. 2019 eq. (5).
    """
    p = params(activation, sigma_w2, sigma_b2, keep, **kw)
    return p.sigma_w2 * p.noise.second_moment(p.act, check_q(q)) + p.sigma_b2


def covariance_map(q, c, activation, sigma_w2, sigma_b2, keep=None, **kw):
    """Covariance map q_ab^{l+1} = sigma_w^2 E[gbar(u1) gbar(u2)] + sigma_b^2.

    Two inputs of equal variance q and correlation c see independent noise (docs/THEORY.md §3).

    Parameters
    ----------
    q, c : array_like
        Variance >= 0 and correlation in [-1, 1] of the two inputs' pre-activations.
    activation, sigma_w2, sigma_b2, keep, **kw
        The layer (see :func:`params`).

    Returns
    -------
    ndarray
        q_ab^{l+1}.
    """
    p = params(activation, sigma_w2, sigma_b2, keep, **kw)
    q, c = check_qc(q, c)
    return p.sigma_w2 * p.noise.pair_moments(p.act, q, c, ("K",))[0] + p.sigma_b2


def c_map(q, c, activation, sigma_w2, sigma_b2, keep=None, **kw):
    """Correlation map c^{l+1} = q_ab^{l+1} / q^{l+1} for two inputs of equal variance q.

    Parameters and references as :func:`covariance_map`.
    """
    return covariance_map(q, c, activation, sigma_w2, sigma_b2, keep, **kw) / q_map(
        q, activation, sigma_w2, sigma_b2, keep, **kw)
