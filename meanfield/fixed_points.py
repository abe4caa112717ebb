"""Fixed points q* and c* of the forward maps, vectorised (docs/THEORY.md §3).

q* is the stable fixed point of the variance map above sigma_b^2 (bracketed, safeguarded Newton);
c* the stable fixed point of the correlation map at q* (the largest root in [0, 1] of a convex,
increasing map). A missing finite q* raises :class:`NoFixedPointError` or is marked NaN.
"""
from __future__ import annotations

import numpy as np

from .gauss import RTOL
from .kernels import Q_MIN
from .maps import Params

__all__ = ["NoFixedPointError", "Q_CAP", "safeguarded_newton", "solve_q_star", "solve_c_star"]

Q_CAP = 1e12  # an unbounded variance map still above the diagonal here has no finite fixed point
_MAX_ITER = 200


class NoFixedPointError(ValueError):
    """The variance map has no finite stable fixed point for some parameters."""


def safeguarded_newton(fg, lo, hi, x, tol, what):
    """Vectorised Newton on f with f(lo) >= 0 > f(hi) (or f(hi) = 0 taken as the negative side).

    ``fg(x, idx)`` returns (f, f') at the points idx. Steps leaving the bracket become bisections,
    so convergence is guaranteed. A point stops when a Newton step is below ``tol`` (relative; the
    returned iterate then carries an error ~tol^2 by quadratic convergence), when its bracket has
    shrunk to rounding level, or when f = 0. ``lo`` and ``hi`` are updated in place.

    Raises
    ------
    RuntimeError
        If some point has not converged after 200 iterations (a bug: please report).
    """
    x = x.copy()
    active = np.arange(x.size)
    for _ in range(_MAX_ITER):
        if active.size == 0:
            return x
        xa = x[active]
        f, df = fg(xa, active)
        lo[active] = np.where(f > 0, xa, lo[active])
        hi[active] = np.where(f > 0, hi[active], xa)
        with np.errstate(divide="ignore", invalid="ignore"):
            new = xa - np.where(df != 0, f / df, np.inf)
        bisect = ~((new > lo[active]) & (new < hi[active]))
        new = np.where(bisect, 0.5 * (lo[active] + hi[active]), new)
        size = np.maximum(1.0, np.abs(new))
        done = ((~bisect & (np.abs(new - xa) <= tol * size))
                | (hi[active] - lo[active] <= 4e-16 * size) | (f == 0))
        x[active] = np.where(f == 0, xa, new)
        active = active[~done]
    raise RuntimeError(f"{what}: no convergence in {_MAX_ITER} iterations (please report)")


def solve_q_star(p: Params, on_missing="raise") -> np.ndarray:
    """q* = sigma_w^2 E[g(sqrt(q*) z, xi)^2] + sigma_b^2, the stable fixed point (shape p.shape).

    NaN where no finite q* exists if ``on_missing == "nan"``; else :class:`NoFixedPointError`.
    """
    pf = p.ravel()
    sw, sb, act, nz = pf.sigma_w2, pf.sigma_b2, pf.act, pf.noise

    def F(q, idx):
        return sw[idx] * nz.take(idx).second_moment(act, q) + sb[idx] - q

    def fg(q, idx):
        m2, dm2 = nz.take(idx).second_moment_and_slope(act, q)
        return sw[idx] * m2 + sb[idx] - q, sw[idx] * dm2 - 1

    n = sw.size
    lo = sb.copy()
    q_out = np.full(n, np.nan)
    # sigma_b^2 = 0 and phi(0) = 0: q = 0 is fixed; it is the attractor when the slope there is < 1
    at_zero = F(lo, np.arange(n)) == 0
    if np.any(at_zero):
        iz = np.flatnonzero(at_zero)
        slope0 = sw[iz] * nz.take(iz).second_moment_slope(act, np.zeros(iz.size))
        stays = slope0 < 1
        q_out[iz[stays]] = 0.0
        lo[iz[~stays]] = 1e-300
    todo = np.flatnonzero(np.isnan(q_out))
    hi = np.full(n, np.nan)
    if act.bounded:  # |phi| <= 1 bounds E[g^2], so the map ends below this
        hi[todo] = sw[todo] * np.broadcast_to(nz.take(todo).bounded_second_moment(), todo.shape) \
            + sb[todo] + 1.0
    else:
        h = np.maximum(2 * lo[todo], 1.0)
        search = np.arange(todo.size)
        while search.size:
            above = F(h[search], todo[search]) >= 0
            h[search[above]] *= 4
            search = search[above & (h[search] <= Q_CAP)]
        hi[todo] = h
    missing = todo[hi[todo] > Q_CAP]
    if missing.size and on_missing == "raise":
        _raise_missing(pf, missing)
    solve = np.setdiff1d(todo, missing)
    if solve.size:
        x0 = 0.5 * (lo[solve] + hi[solve])
        q_out[solve] = safeguarded_newton(lambda q, i: fg(q, solve[i]), lo[solve].copy(),
                                          hi[solve].copy(), x0, 1e-9, "q*")
    return q_out.reshape(p.shape)


def _raise_missing(pf: Params, missing):
    i = missing[0]
    point = pf.take(np.array([i]))
    noise = point.noise.take(0)
    desc = noise.spec() if noise.shape == () else noise.name
    raise NoFixedPointError(
        f"no finite fixed point q*: the variance map stays above the diagonal up to q = {Q_CAP:g} "
        f"for activation={pf.act.name!r}, noise={desc}, sigma_w2={pf.sigma_w2[i]:g}, "
        f"sigma_b2={pf.sigma_b2[i]:g}{pf.noise.missing_fixed_point_hint(pf.act)}; "
        f"{missing.size} parameter point(s) affected. Pass on_missing='nan' to analyze() to mark "
        "them instead.")


def solve_c_star(p: Params, q, chi1, pair=None):
    """Stable fixed point c* of the correlation map at q* and the slope chi_c there.

    The c-map is increasing and convex on [0, 1] (a power series in c with non-negative
    coefficients), so G(c) = cmap(c) - c has exactly one sign change on [0, 1) whenever
    G(1) < 0 (noise) or the slope at c = 1 exceeds 1 (chaotic phase without noise).

    Parameters
    ----------
    p : Params
    q, chi1 : ndarray, shape p.shape
        q* (NaN where missing) and chi_1 there.
    pair : callable, optional
        ``pair(q, c, keys, rtol)`` giving the pair moments of p's layer at uniform noise
        parameters (a tabulation, see :mod:`meanfield.phase`); default: the noise's own.

    Returns
    -------
    (c_star, chi_c) : ndarrays of shape p.shape
    """
    pf = p.ravel()
    sw, sb, nz = pf.sigma_w2, pf.sigma_b2, pf.noise
    if pair is None:
        def pair(qq, cc, keys, rtol, idx):
            return nz.take(idx).pair_moments(pf.act, qq, cc, keys, rtol=rtol)
    else:
        table = pair

        def pair(qq, cc, keys, rtol, idx):
            return table(qq, cc, keys, rtol)
    q = q.ravel()
    n = q.size
    c_out = np.full(n, np.nan)
    chic = np.full(n, np.nan)
    ok = np.flatnonzero(np.isfinite(q))
    noiseless = np.broadcast_to(nz.is_identity(), (n,))
    ordered = ok[noiseless[ok] & (chi1.ravel()[ok] <= 1)]
    c_out[ordered] = 1.0
    chic[ordered] = chi1.ravel()[ordered]  # at c = 1, E[phi'(u1) phi'(u2)] = E[phi'^2]
    solve = np.setdiff1d(ok, ordered)
    if solve.size == 0:
        return c_out.reshape(p.shape), chic.reshape(p.shape)
    # q* = 0 (sigma_b^2 = 0, ordered variance map): the c-map is taken in the q -> 0 limit
    qs = np.where(q[solve] == 0, Q_MIN, q[solve])

    def fg_at(rtol):
        def fg(c, i):
            idx = solve[i]
            K, Kd = pair(qs[i], c, ("K", "Kd"), rtol, idx)
            return (sw[idx] * K + sb[idx]) / qs[i] - c, sw[idx] * Kd - 1
        return fg

    every = np.arange(solve.size)
    g0, dg0 = fg_at(1e-6)(np.zeros(solve.size), every)
    zero_root = (g0 == 0) & (dg0 <= 0)  # c = 0 fixed and attracting from above
    # Start from one map step below c = 1, C(1) >= c* (C is increasing); Newton on cheap
    # quadrature (rtol 1e-6) to ~1e-6, then at full accuracy from there: one or two steps, with
    # [0, 1] still the bracket so a poor start cannot mislead it.
    K1 = pair(qs, np.ones(solve.size), ("K",), 1e-6, solve)[0]
    c1_map = (sw[solve] * K1 + sb[solve]) / qs
    x0 = np.where(noiseless[solve], 0.5, np.clip(c1_map, 0.0, 1.0))
    c1 = safeguarded_newton(fg_at(1e-6), np.zeros(solve.size), np.ones(solve.size), x0, 1e-6, "c*")
    c_sol = safeguarded_newton(fg_at(RTOL), np.zeros(solve.size), np.ones(solve.size), c1,
                               1e-8, "c*")
    chic[solve] = sw[solve] * pair(qs, c_sol, ("Kd",), RTOL, solve)[0]
    c_sol[zero_root] = 0.0
    c_out[solve] = c_sol
    return c_out.reshape(p.shape), chic.reshape(p.shape)
