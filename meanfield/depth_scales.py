"""Slopes at the fixed point and the depth scales; everything at once with :func:`analyze`.

chi_1 = sigma_w^2 E[g'^2] (gradient factor), chi_c = sigma_w^2 E[gbar'(u1) gbar'(u2)] at (q*, c*)
(slope of the c-map; chi_2 in Huang et al.), chi_q = sigma_w^2 dE[g^2]/dq (slope of the q-map);
xi_q = -1/ln chi_q, xi_c = -1/ln chi_c, xi_1 = 1/|ln chi_1| (docs/THEORY.md §3).
Layer parameters as in :func:`meanfield.maps.params`.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .fixed_points import MARGINAL_RTOL, solve_c_star, solve_q_star
from .kernels import origin_limit
from .maps import Params, chunk_slices, params, per_chunk
from .noise import NoiseLayer
from .validation import checked

__all__ = ["depth_scale", "gradient_depth_scale", "q_star", "c_star", "chi_1", "chi_c", "chi_q",
           "MeanFieldResult", "analyze", "analyze_params"]


def depth_scale(chi):
    """xi = -1 / ln |chi| for the slope chi in [-1, 1] of a map at its stable fixed point.

    Used for xi_q and xi_c. chi = 0 gives 0 and |chi| = 1 gives inf (the marginal map: no
    exponential approach); a |chi| within rounding of 1 (``MARGINAL_RTOL``, 16 ulp: e.g.
    phi'(0)^2 of erf) counts as 1. A negative slope (a decreasing variance map, e.g. Sparseout
    with s < 1 on a sigmoid) means an approach with alternating sign, at the rate |chi|.

    Parameters
    ----------
    chi : array_like
        Slope of a forward map at its stable fixed point, in [-1, 1].

    Returns
    -------
    ndarray
        The depth scale in layers, shaped like ``chi``.

    Raises
    ------
    ValueError
        If some chi is outside [-1, 1] (a map with |slope| > 1 has no stable fixed point there).

    References
    ----------
    Schoenholz et al. 2017 (the depth scales xi_q, xi_c); docs/THEORY.md §3.
    """
    return _xi(checked("chi (slope of a forward map at its fixed point)", chi, "lie in [-1, 1]",
                       lambda a: np.abs(a) <= 1))


def gradient_depth_scale(chi_1):
    """xi_1 = 1 / |ln chi_1|; the sign of ln chi_1 says vanishing (< 0) or exploding (> 0).

    Parameters
    ----------
    chi_1 : array_like
        Gradient factor per layer, >= 0; +inf allowed (Sparseout with s <= 1), giving 0.

    Returns
    -------
    ndarray
        xi_1 in layers (inf at chi_1 = 1 within ``MARGINAL_RTOL``, 0 at chi_1 = 0 or inf).

    Raises
    ------
    ValueError
        If some chi_1 is negative or NaN.

    References
    ----------
    Huang et al. 2019 §4; docs/THEORY.md §3.
    """
    return _xi_1(checked("chi_1 (gradient factor per layer)", chi_1, "be >= 0 (inf allowed)",
                         lambda a: a >= 0, finite=False))  # a >= 0 also rejects NaN


def _xi(chi):
    """-1/ln |chi|, inf at |chi| >= 1 - MARGINAL_RTOL (a marginal slope, or one rounded beyond
    1 at a stable fixed point), NaN kept."""
    chi = np.abs(np.asarray(chi, float))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(chi >= 1 - MARGINAL_RTOL, np.inf, -1.0 / np.log(chi))


def _xi_1(chi_1):
    """1/|ln chi_1|, inf within MARGINAL_RTOL of 1, 0 at 0 and inf, NaN kept."""
    chi_1 = np.asarray(chi_1, float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(np.abs(chi_1 - 1) <= MARGINAL_RTOL, np.inf, 1.0 / np.abs(np.log(chi_1)))


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

    q* = 0 where sigma_b^2 = 0, phi(0) = 0 and the origin attracts, including the marginal
    slope chi_q(0) = 1 with the map on or below the diagonal (tanh at sigma_w^2 = keep, ReLU at
    sigma_w^2 = 2 keep); see :func:`~meanfield.fixed_points.solve_q_star`.

    Raises :class:`~meanfield.fixed_points.NoFixedPointError` where no finite q* exists.
    """
    return per_chunk(solve_q_star, p)


@_public
def chi_1(p):
    """chi_1 = sigma_w^2 E[g'(sqrt(q*) z, xi)^2]; dropout: (sigma_w^2/rho) E[phi'^2].

    +inf for Sparseout with s <= 1 (E[g'^2] diverges through the zeros of phi).
    """
    return per_chunk(lambda c: c.sigma_w2 * c.noise.deriv_second_moment(c.act, _q_pos(c)), p)


@_public
def chi_q(p):
    """chi_q = sigma_w^2 E[g'^2 + g g''] at q*: the slope of the variance map at its fixed point."""
    return per_chunk(lambda c: c.sigma_w2 * c.noise.second_moment_slope(c.act, _q_pos(c)), p)


def _q_pos(p):
    """q* for the slopes (q* = 0 as its q -> 0 limit, docs/THEORY.md §3)."""
    return origin_limit(solve_q_star(p))


@_public
def c_star(p):
    """c*: stable fixed point of c -> (sigma_w^2 E[gbar(u1) gbar(u2)] + sigma_b^2) / q* at q*.

    At q* = 0 the c-map is the q -> 0 limit of :func:`~meanfield.maps.c_map` (see
    :func:`~meanfield.fixed_points.solve_c_star`).
    """
    return analyze_params(p).c_star


@_public
def chi_c(p):
    """chi_c = sigma_w^2 E[gbar'(u1) gbar'(u2)] at (q*, c*) (chi_2 of Huang et al.).

    The pair-gradient factor; where q* > 0 also the slope of the c-map at c*. At q* = 0 the
    c-map's slope differs (:attr:`MeanFieldResult.c_slope`).
    """
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
        xi_q = -1/ln chi_q, xi_c = -1/ln chi_c, xi_1 = 1/|ln chi_1|. chi_c is the pair-gradient
        factor sigma_w^2 E[gbar'(u1) gbar'(u2)] at (q*, c*) (chi_2 of Huang et al.).
    c_slope : ndarray
        Slope of the correlation map :func:`~meanfield.maps.c_map` at c*: equal to chi_c where
        q* > 0. At q* = 0 (sigma_b^2 = 0, ordered) the c-map is the q -> 0 limit, normalised by
        the mapped variance, and its slope differs from chi_c (dropout, smooth phi: keep versus
        sigma_w^2 phi'(0)^2; no noise: 1 versus chi_1). See
        :func:`~meanfield.fixed_points.solve_c_star`.
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
    c_slope: np.ndarray
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
                 "xi_q", "xi_c", "xi_1", "c_slope")
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


_FIELDS = ("q_star", "c_star", "chi_1", "chi_c", "chi_q", "xi_q", "xi_c", "xi_1", "c_slope",
           "has_fixed_point")


def analyze_params(p: Params, on_missing="raise", pair=None, q=None) -> MeanFieldResult:
    """:func:`analyze` on validated parameters; ``pair`` overrides the pair integrals (see
    :func:`~meanfield.fixed_points.solve_c_star`) and ``q`` passes q* when it is already known.

    Points are evaluated in chunks (:func:`~meanfield.maps.chunk_slices`) so that the quadrature
    work arrays stay under :data:`~meanfield.maps.MEMORY_CAP` however large the grid.
    """
    pf = p.ravel()
    qf = None if q is None else np.asarray(q, float).ravel()
    cols = {k: np.empty(pf.sigma_w2.size, bool if k == "has_fixed_point" else float) for k in _FIELDS}
    for sl in chunk_slices(pf.sigma_w2.size):
        part = _analyze_flat(pf.take(sl), on_missing, pair, None if qf is None else qf[sl])
        for k in _FIELDS:
            cols[k][sl] = part[k]
    return MeanFieldResult(p.act.name, p.noise, p.sigma_w2, p.sigma_b2,
                           **{k: v.reshape(p.shape) for k, v in cols.items()})


def _analyze_flat(p: Params, on_missing, pair, q):
    if q is None:
        q = solve_q_star(p, on_missing)
    ok = np.isfinite(q)
    chi1, chiq = np.full(q.shape, np.nan), np.full(q.shape, np.nan)
    if np.any(ok):  # slopes at q* = 0 are the q -> 0 limits, evaluated at Q_MIN
        nz, qp = p.noise.take(ok), origin_limit(q[ok])
        chi1[ok] = p.sigma_w2[ok] * nz.deriv_second_moment(p.act, qp)
        chiq[ok] = p.sigma_w2[ok] * nz.second_moment_slope(p.act, qp)
    cs, chic, slope = solve_c_star(p, q, chi1, pair)
    # at a stable fixed point chi_q, chi_c <= 1: a value rounded above 1 means inf (marginal)
    return dict(q_star=q, c_star=cs, chi_1=chi1, chi_c=chic, chi_q=chiq, xi_q=_xi(chiq),
                xi_c=_xi(chic), xi_1=_xi_1(chi1), c_slope=slope, has_fixed_point=ok)


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
    ConvergenceError
        If a quadrature cannot reach its tolerance (a bug: please report).

    Notes
    -----
    Conventions at the edges (docs/THEORY.md §12):

    - sigma_b^2 = 0 with phi(0) = 0: q* = 0 where the origin attracts, including a marginal
      slope chi_q(0) = 1 (within 16 ulp) with the map on or below the diagonal (tanh at
      sigma_w^2 = keep; ReLU and linear exactly on their critical line, where every q is
      fixed). Slopes there are the q -> 0 limits, so chi_q = 1 and xi_q = inf.
    - At q* = 0, c* is the fixed point of the q -> 0 limit of :func:`~meanfield.maps.c_map`
      (normalised by the mapped variance): dropout and a smooth phi give c* = 0 with c-map slope
      keep (``c_slope``), while chi_c = sigma_w^2 phi'(0)^2 is the pair-gradient factor; ReLU's
      c-map is q-independent (keep times the arc-cosine map). Where q* > 0, c_slope = chi_c.
    - A slope within 16 ulp of 1 gives an infinite depth scale.
    - Sparseout with s <= 1: chi_1 = +inf and xi_1 = 0 (E[g'^2] diverges at the zeros of phi).

    Large grids are evaluated in chunks under :data:`~meanfield.maps.MEMORY_CAP`.

    References
    ----------
    docs/THEORY.md §3; Schoenholz et al. 2017; Huang et al. 2019 §3.
    """
    if on_missing not in ("raise", "nan"):
        raise ValueError(f"on_missing must be 'raise' or 'nan', got {on_missing!r}")
    p = params(activation, sigma_w2, sigma_b2, keep, noise=noise, drop=drop, **noise_params)
    return analyze_params(p, on_missing)
