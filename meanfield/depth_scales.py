"""Slopes at the fixed point and the depth scales; everything at once with :func:`analyze`.

chi_1 = sigma_w^2 E[g'^2] (gradient factor), chi_c = sigma_w^2 E[gbar'(u1) gbar'(u2)] at (q*, c*)
(slope of the c-map; chi_2 in Huang et al.), chi_q = sigma_w^2 dE[g^2]/dq (slope of the q-map);
xi_q = -1/ln chi_q, xi_c = -1/ln chi_c, xi_1 = 1/|ln chi_1| (docs/THEORY.md §3).
Layer parameters as in :func:`meanfield.maps.params`.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .fixed_points import solve_c_star, solve_q_star
from .maps import Params, params
from .noise import NoiseLayer

__all__ = ["depth_scale", "gradient_depth_scale", "q_star", "c_star", "chi_1", "chi_c", "chi_q",
           "MeanFieldResult", "analyze", "analyze_params"]


def depth_scale(chi):
    """xi = -1 / ln chi for a contracting slope (inf at chi = 1); used for xi_q and xi_c.

    References
    ----------
    Schoenholz et al. 2017 eqs. (7), (9); docs/THEORY.md §3.
    """
    chi = np.asarray(chi, float)
    with np.errstate(divide="ignore"):
        return np.where(chi == 1, np.inf, -1.0 / np.log(chi))


def gradient_depth_scale(chi_1):
    """xi_1 = 1 / |ln chi_1|; the sign of ln chi_1 says vanishing (< 0) or exploding (> 0)."""
    chi_1 = np.asarray(chi_1, float)
    with np.errstate(divide="ignore"):
        return np.where(chi_1 == 1, np.inf, 1.0 / np.abs(np.log(chi_1)))


def _public(fn):
    """Give fn(Params) the public layer signature (activation, sigma_w2, sigma_b2, keep, **noise)."""
    def wrapped(activation, sigma_w2, sigma_b2, keep=None, *, noise="dropout", drop=None,
                **noise_params):
        return fn(params(activation, sigma_w2, sigma_b2, keep, noise=noise, drop=drop, **noise_params))
    wrapped.__name__, wrapped.__qualname__, wrapped.__doc__ = fn.__name__, fn.__name__, fn.__doc__
    wrapped.__module__ = fn.__module__
    return wrapped


@_public
def q_star(p):
    """q* = sigma_w^2 E[g(sqrt(q*) z, xi)^2] + sigma_b^2, the stable fixed point of the variance map.

    Raises :class:`~meanfield.fixed_points.NoFixedPointError` where no finite q* exists.
    """
    return solve_q_star(p)


@_public
def chi_1(p):
    """chi_1 = sigma_w^2 E[g'(sqrt(q*) z, xi)^2]; dropout: (sigma_w^2/rho) E[phi'^2]."""
    return p.sigma_w2 * p.noise.deriv_second_moment(p.act, solve_q_star(p))


@_public
def chi_q(p):
    """chi_q = sigma_w^2 E[g'^2 + g g''] at q*: the slope of the variance map at its fixed point."""
    return p.sigma_w2 * p.noise.second_moment_slope(p.act, solve_q_star(p))


@_public
def c_star(p):
    """c*: stable fixed point of c -> (sigma_w^2 E[gbar(u1) gbar(u2)] + sigma_b^2) / q* at q*."""
    return analyze_params(p).c_star


@_public
def chi_c(p):
    """chi_c = sigma_w^2 E[gbar'(u1) gbar'(u2)] at (q*, c*) (chi_2 of Huang et al.)."""
    return analyze_params(p).chi_c


@dataclass(frozen=True)
class MeanFieldResult:
    """Fixed points, slopes and depth scales (arrays shaped like the broadcast inputs).

    Attributes
    ----------
    activation : str
    noise : NoiseLayer
        The layer, parameters broadcast to the result's shape.
    sigma_w2, sigma_b2 : ndarray
    q_star, c_star, chi_1, chi_c, chi_q, xi_q, xi_c, xi_1 : ndarray
        xi_q = -1/ln chi_q, xi_c = -1/ln chi_c, xi_1 = 1/|ln chi_1|.
    has_fixed_point : ndarray of bool
        False (and NaN results) where no finite q* exists (only with ``on_missing='nan'``).
    """

    activation: str
    noise: NoiseLayer
    sigma_w2: np.ndarray
    sigma_b2: np.ndarray
    q_star: np.ndarray
    c_star: np.ndarray
    chi_1: np.ndarray
    chi_c: np.ndarray
    chi_q: np.ndarray
    xi_q: np.ndarray
    xi_c: np.ndarray
    xi_1: np.ndarray
    has_fixed_point: np.ndarray

    @property
    def keep(self):
        """Keep probability rho (1 for layers that drop nothing)."""
        return np.broadcast_to(np.asarray(getattr(self.noise, "keep", 1.0), float), self.q_star.shape)

    @property
    def drop(self):
        """Drop probability 1 - rho (PyTorch's p, Keras' rate)."""
        return 1.0 - self.keep

    @property
    def chi_2(self):
        """Alias of chi_c (Huang et al.'s name for the pair-gradient factor under GIA)."""
        return self.chi_c

    def records(self):
        """One dict per parameter point (inputs, noise parameters and results)."""
        names = ("sigma_w2", "sigma_b2", "keep", "q_star", "c_star", "chi_1", "chi_c", "chi_q",
                 "xi_q", "xi_c", "xi_1")
        shape = self.q_star.shape
        cols = [np.broadcast_to(getattr(self, n), shape).ravel() for n in names]
        extra = {k: np.broadcast_to(np.asarray(v), shape).ravel()
                 for k, v in self.noise.param_values().items() if k != "keep"}
        fp = self.has_fixed_point.ravel()
        out = []
        for i in range(self.q_star.size):
            rec = {"activation": self.activation, "noise": self.noise.name}
            rec.update({k: (v[i].item()) for k, v in extra.items()})
            rec.update({n: float(col[i]) for n, col in zip(names, cols)})
            rec["drop"] = 1.0 - rec["keep"]
            rec["has_fixed_point"] = bool(fp[i])
            out.append(rec)
        return out


def analyze_params(p: Params, on_missing="raise", pair=None, q=None) -> MeanFieldResult:
    """:func:`analyze` on validated parameters; ``pair`` overrides the pair integrals (see
    :func:`~meanfield.fixed_points.solve_c_star`) and ``q`` passes q* when it is already known."""
    if q is None:
        q = solve_q_star(p, on_missing)
    ok = np.isfinite(q)
    qz = np.where(ok, q, 1.0)  # placeholders where no q* exists; masked below
    chi1 = np.where(ok, p.sigma_w2 * p.noise.deriv_second_moment(p.act, qz), np.nan)
    chiq = np.where(ok, p.sigma_w2 * p.noise.second_moment_slope(p.act, qz), np.nan)
    cs, chic = solve_c_star(p, q, chi1, pair)
    return MeanFieldResult(
        p.act.name, p.noise, p.sigma_w2, p.sigma_b2, q, cs, chi1, chic, chiq,
        depth_scale(chiq), depth_scale(chic), gradient_depth_scale(chi1), ok)


def analyze(activation="tanh", sigma_w2=1.0, sigma_b2=0.05, keep=None, *, noise="dropout",
            drop=None, on_missing="raise", **noise_params) -> MeanFieldResult:
    """Everything at once: q*, c*, chi_1, chi_c, chi_q and the depth scales xi_q, xi_c, xi_1.

    Parameters
    ----------
    activation : str or Activation
    sigma_w2, sigma_b2 : array_like
        Weight variance > 0 and bias variance >= 0 (broadcast with every other parameter).
    keep, drop : array_like, optional
        Keep probability rho (default 1: no noise) or drop probability 1 - rho.
    noise : str or NoiseLayer
        ``"none"``, ``"dropout"`` (default), ``"sparseout"``, ... or a layer object.
    on_missing : {"raise", "nan"}
        Without a finite q*: raise :class:`~meanfield.fixed_points.NoFixedPointError`, or mark
        the point NaN and False in ``has_fixed_point``.
    **noise_params
        Other parameters of the named noise (Sparseout: ``s``, ``backward``).

    Returns
    -------
    MeanFieldResult

    Raises
    ------
    ValueError
        For invalid parameters (naming them and their valid range).
    NoFixedPointError
        See ``on_missing``.

    References
    ----------
    docs/THEORY.md §3; Schoenholz et al. 2017; Huang et al. 2019 §3.
    """
    if on_missing not in ("raise", "nan"):
        raise ValueError(f"on_missing must be 'raise' or 'nan', got {on_missing!r}")
    p = params(activation, sigma_w2, sigma_b2, keep, noise=noise, drop=drop, **noise_params)
    return analyze_params(p, on_missing)
