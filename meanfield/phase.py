"""The critical line chi_1 = 1 and (sigma_w^2, sigma_b^2) phase diagrams (docs/THEORY.md §3)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.polynomial.chebyshev import chebvander

from . import kernels
from .depth_scales import MeanFieldResult, analyze_params
from .fixed_points import solve_q_star
from .gauss import RTOL
from .kernels import Q_MIN
from .maps import params
from .noise import make_noise

__all__ = ["critical_sigma_w2", "PairTable", "PhaseDiagram", "phase_diagram"]

SIGMA_W2_MAX = 1e6


def critical_sigma_w2(activation, sigma_b2, keep=None, *, noise="dropout", drop=None, tol=1e-13,
                      **noise_params):
    """sigma_w^2 on the critical line chi_1(sigma_w^2) = 1 for given sigma_b^2 and noise (vectorised).

    chi_1 increases with sigma_w^2; the root of ln chi_1 in ln sigma_w^2 is bracketed and found by
    the Illinois variant of regula falsi (superlinear, never leaves the bracket). Where the variance
    map diverges first (ReLU: sigma_w^2 >= 2 keep) the divergence point is the critical line, found
    by bisection.

    Parameters
    ----------
    activation : str or Activation
    sigma_b2 : array_like
        Bias variance >= 0; broadcasts with the noise parameters.
    keep, drop, noise, **noise_params
        The noise layer, as in :func:`meanfield.maps.params`.
    tol : float
        Absolute tolerance in ln sigma_w^2.

    Returns
    -------
    ndarray
        sigma_w^2 with chi_1 = 1, shaped like the broadcast parameters.

    Raises
    ------
    ValueError
        If chi_1 stays above 1 as sigma_w^2 -> 0 or below 1 up to sigma_w^2 = 1e6.
    """
    p = params(activation, 1.0, sigma_b2, keep, noise=noise, drop=drop, **noise_params)
    shape = p.shape
    pf = p.ravel()
    sb = pf.sigma_b2

    def log_chi(x, idx):  # ln chi_1 at sigma_w^2 = e^x; +inf where no finite q*
        nz = pf.noise.take(idx)
        pp = params(p.act, np.exp(x), sb[idx], noise=nz)
        q = solve_q_star(pp, on_missing="nan")
        ok = np.isfinite(q)
        out = np.full(x.shape, np.inf)
        out[ok] = np.log(pp.sigma_w2[ok] * nz.take(ok).deriv_second_moment(p.act, q[ok]))
        return out

    every = np.arange(sb.size)
    lo, hi = np.full(sb.size, np.log(1e-3)), np.zeros(sb.size)
    f_lo, f_hi = log_chi(lo, every), log_chi(hi, every)
    while np.any(f_lo >= 0):  # widen both ends geometrically until they bracket the crossing
        bad = np.flatnonzero(f_lo >= 0)
        if np.any(lo[bad] < np.log(1e-12)):
            raise ValueError("chi_1 >= 1 even for sigma_w2 -> 0: no critical line for these parameters")
        hi[bad], f_hi[bad] = lo[bad], f_lo[bad]
        lo[bad] -= np.log(10)
        f_lo[bad] = log_chi(lo[bad], bad)
    while np.any(f_hi < 0):
        low = np.flatnonzero(f_hi < 0)
        if np.any(hi[low] > np.log(SIGMA_W2_MAX)):
            raise ValueError(f"chi_1 < 1 up to sigma_w2 = {SIGMA_W2_MAX:g}: no critical line found")
        lo[low], f_lo[low] = hi[low], f_hi[low]
        hi[low] += np.log(4)
        f_hi[low] = log_chi(hi[low], low)
    side = np.zeros(sb.size)
    active = every
    for _ in range(200):
        if active.size == 0:
            break
        a, b, fa, fb = lo[active], hi[active], f_lo[active], f_hi[active]
        # regula falsi where both ends are finite, bisection where the map diverges at hi
        with np.errstate(invalid="ignore"):  # fb = inf (map diverged) takes the bisection branch
            x = np.where(np.isfinite(fb), (a * fb - b * fa) / (fb - fa), 0.5 * (a + b))
        x = np.where((x > a) & (x < b), x, 0.5 * (a + b))
        fx = log_chi(x, active)
        right = fx >= 0
        hi[active] = np.where(right, x, b)
        f_hi[active] = np.where(right, fx, fb)
        lo[active] = np.where(right, a, x)
        f_lo[active] = np.where(right, fa, fx)
        # Illinois: halve the stale end's value when the same side moves twice
        s_new = np.where(right, 1.0, -1.0)
        stale_lo = right & (side[active] == 1)
        stale_hi = ~right & (side[active] == -1)
        f_lo[active[stale_lo]] *= 0.5
        f_hi[active[stale_hi]] *= 0.5
        side[active] = s_new
        done = (np.abs(fx) <= 1e-15) | (hi[active] - lo[active] <= tol)
        active = active[~done]
    else:
        raise RuntimeError("critical line: no convergence (please report)")
    x = np.where(np.abs(f_lo) < np.abs(np.where(np.isfinite(f_hi), f_hi, np.inf)), lo, hi)
    return np.exp(x).reshape(shape)


class PairTable:
    """Chebyshev interpolant of the pair moments K(q, c) and Kd(q, c) on [q_lo, q_hi] x [0, 1].

    Tabulated as K / K(q, 1) and Kd / Kd(q, 1) (order-one and smooth) on a tensor grid of
    Chebyshev points in (log q, c); the grid is refined until the last coefficients in each
    direction fall below ``tol``. Both functions are analytic in log q and c < 1 and the
    coefficients decay geometrically (measured: 32 x 64 points reach ~1e-13 for tanh on
    q in [1e-3, 5]). ``noise`` (a layer with scalar parameters) supplies the pair moments;
    default: the activation's own kernels (gbar = phi).
    """

    def __init__(self, act, q_lo, q_hi, tol=1e-11, n_q=32, n_c=48, n_max=128, noise=None):
        self.act = act
        self._pair = (lambda q, c, keys, rtol=RTOL: kernels.pair(act, keys, q, c, rtol)) \
            if noise is None else \
            (lambda q, c, keys, rtol=RTOL: noise.scalar().pair_moments(act, q, c, keys, rtol))
        self.lo, self.hi = np.log(q_lo), np.log(max(q_hi, q_lo * 1.0001))
        while True:
            self.coef = self._fit(n_q, n_c)
            tails = [np.abs(c[-2:, :]).max() / np.abs(c).max() for c in self.coef]
            tails += [np.abs(c[-2:]).max() / np.abs(c).max() for c in self.norm]
            tails_c = [np.abs(c[:, -2:]).max() / np.abs(c).max() for c in self.coef]
            if max(tails) <= tol and max(tails_c) <= tol:
                break
            if n_q >= n_max and n_c >= n_max:
                raise RuntimeError(f"pair table for {act.name} did not converge (tails {tails}, {tails_c})")
            if max(tails) > tol:
                n_q = min(3 * n_q // 2, n_max)
            if max(tails_c) > tol:
                n_c = min(3 * n_c // 2, n_max)
        self.shape = (n_q, n_c)

    @staticmethod
    def _nodes(n):
        return np.cos(np.pi * (np.arange(n) + 0.5) / n)

    def _fit(self, n_q, n_c):
        u, x = self._nodes(n_q), self._nodes(n_c)
        q = np.exp(self.lo + (u + 1) / 2 * (self.hi - self.lo))
        Q, Cc = np.meshgrid(q, (x + 1) / 2, indexing="ij")
        K, Kd = self._pair(Q, Cc, ("K", "Kd"))
        a2, d2 = self._pair(q, np.ones_like(q), ("K", "Kd"))
        Tu, Tx = chebvander(u, n_q - 1), chebvander(x, n_c - 1)
        wu = np.full(n_q, 2.0 / n_q)
        wu[0] /= 2
        wx = np.full(n_c, 2.0 / n_c)
        wx[0] /= 2
        # discrete orthogonality of Chebyshev polynomials at first-kind nodes; the normalisers
        # log E[phi^2], log E[phi'^2] are 1-D series in log q on the same nodes
        self.norm = [wu * (Tu.T @ np.log(v)) for v in (a2, d2)]
        return [(wu[:, None] * Tu.T) @ v @ (Tx * wx[None, :]) for v in (K / a2[:, None], Kd / d2[:, None])]

    def __call__(self, q, c, keys, rtol=None):
        """K and/or Kd at (q, c); points outside the tabulated q range go to quadrature."""
        q, c = np.broadcast_arrays(np.asarray(q, float), np.asarray(c, float))
        u = 2 * (np.log(q) - self.lo) / (self.hi - self.lo) - 1
        inside = np.abs(u) <= 1 + 1e-12
        Tu = chebvander(np.clip(u, -1, 1), self.coef[0].shape[0] - 1)
        Tx = chebvander(2 * c - 1, self.coef[0].shape[1] - 1)
        out = []
        for k in keys:
            i = {"K": 0, "Kd": 1}[k]
            out.append(np.sum((Tu @ self.coef[i]) * Tx, -1) * np.exp(Tu @ self.norm[i]))
        if not np.all(inside):
            exact = self._pair(q[~inside], c[~inside], keys, RTOL if rtol is None else rtol)
            for o, e in zip(out, exact):
                o[~inside] = e
        return out


@dataclass(frozen=True)
class PhaseDiagram:
    """Mean-field results on a (sigma_b^2, sigma_w^2) grid (rows: sigma_b^2) and the critical line.

    ``table_check``: largest |c*| and relative chi_c deviation between the tabulated pair
    integrals and direct quadrature at a random sample of grid points (zeros when no table used).
    """

    sigma_w2: np.ndarray
    sigma_b2: np.ndarray
    result: MeanFieldResult
    critical_sigma_w2: np.ndarray
    table_check: tuple = (0.0, 0.0)


def phase_diagram(activation, sigma_w2, sigma_b2, keep=None, *, noise="dropout", drop=None,
                  exact=False, n_check=12, seed=0, **noise_params) -> PhaseDiagram:
    """analyze() over the grid sigma_b2 x sigma_w2 (points without a finite q* are NaN) and the
    critical line sigma_w2(sigma_b2) where chi_1 = 1.

    q* and the slopes chi_1, chi_q come from direct quadrature. For activations without
    closed-form pair integrals, c* and chi_c use a :class:`PairTable` unless ``exact=True``;
    ``n_check`` random points are then recomputed directly and the deviation is reported in
    ``table_check`` (an error is raised above 1e-9).

    Parameters
    ----------
    activation : str or Activation
    sigma_w2, sigma_b2 : array_like, 1-D
        Grid axes (columns: sigma_w^2, rows: sigma_b^2).
    keep, drop, noise, **noise_params
        One noise layer with scalar parameters (as in :func:`meanfield.maps.params`).
    exact : bool
        Direct quadrature for every c* instead of the table.

    Returns
    -------
    PhaseDiagram
    """
    sw = np.asarray(sigma_w2, float).ravel()
    sb = np.asarray(sigma_b2, float).ravel()
    nz = make_noise(noise, keep=keep, drop=drop, **noise_params)
    if nz.shape != ():
        raise ValueError("phase_diagram takes one noise layer with scalar parameters (one keep "
                         "value); call it once per value")
    p = params(activation, sw[None, :], sb[:, None], noise=nz)
    q = solve_q_star(p, on_missing="nan")
    table, check = None, (0.0, 0.0)
    finite = q[np.isfinite(q)]
    if not exact and finite.size and not {"K", "Kd"} <= set(p.act.closed):
        # tiny q* (cheap by quadrature, and a long way in log q) stays off the table
        qs = np.maximum(finite, Q_MIN)
        table = PairTable(p.act, max(qs.min(), 1e-3 * qs.max()), qs.max(), noise=nz)
    res = analyze_params(p, on_missing="nan", pair=table, q=q)
    if table is not None and n_check:
        check = _check_table(p, res, n_check, seed)
    crit = critical_sigma_w2(p.act, sb, noise=nz)
    return PhaseDiagram(sw, sb, res, crit, check)


def _check_table(p, res, n_check, seed):
    ok = np.flatnonzero(np.isfinite(res.q_star.ravel()) & (res.c_star.ravel() < 1))
    if ok.size == 0:
        return (0.0, 0.0)
    idx = np.random.default_rng(seed).choice(ok, size=min(n_check, ok.size), replace=False)
    direct = analyze_params(p.take(np.unravel_index(idx, p.shape)), q=res.q_star.ravel()[idx])
    dc = float(np.max(np.abs(direct.c_star - res.c_star.ravel()[idx])))
    dchi = float(np.max(np.abs(direct.chi_c / res.chi_c.ravel()[idx] - 1)))
    if max(dc, dchi) > 1e-9:
        raise RuntimeError(f"pair table deviates from quadrature by {max(dc, dchi):.2e}; use exact=True")
    return (dc, dchi)
