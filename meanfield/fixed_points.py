"""Fixed points q* and c* of the forward maps, vectorised (docs/THEORY.md §3).

q* is the stable fixed point of the variance map above sigma_b^2 (bracketed, safeguarded Newton);
c* the stable fixed point of the correlation map at q* (the largest root in [0, 1] of a convex,
increasing map). A missing finite q* raises :class:`NoFixedPointError` or is marked NaN.
"""
from __future__ import annotations

import numpy as np

from .gauss import RTOL
from .kernels import Q_MIN, origin_limit
from .maps import Params

__all__ = ["NoFixedPointError", "Q_CAP", "Q_MAX", "safeguarded_newton", "solve_q_star", "solve_c_star"]

# An unbounded activation's variance map still above the diagonal at Q_CAP has no finite fixed
# point (ReLU with sigma_b^2 = 1e20 has q* = 2e20; the maps cost the same at any q). Sparseout's
# |phi|^s leaves the float range earlier for s > 6: the search ends at NoiseLayer.q_limit then.
Q_CAP = 1e100
# A bounded activation's bracket is valid at any size; the maps end at Q_MAX (Stein's x^2 / q at
# the window's edge overflows near 1e306)
Q_MAX = 1e300
_SEARCH_FAST = 1e12  # the search for an upper bracket grows 4x up to here, then 1e8x per step
# chi_q(0) within this of 1 is marginal: sigma_w2 * E[xi^2] * phi'(0)^2 rounds to 1 +- a few ulp
MARGINAL_RTOL = 16 * np.finfo(float).eps
PROBE_RTOL = 1e-10  # |F(q)| / q above this is a clear sign of the map minus the diagonal
_PROBES = 10.0 ** np.arange(-8, 13, 2)
ZERO_ATOL = 1e-14  # |c-map(0)| below this: c = 0 is a fixed point to rounding (odd phi, sigma_b^2 = 0)
_MAX_ITER = 200


class NoFixedPointError(ValueError):
    """The variance map has no finite stable fixed point for some parameters."""


def safeguarded_newton(fg, lo, hi, x, tol, what, scale=0.0):
    """Vectorised Newton on f with f(lo) >= 0 > f(hi) (or f(hi) = 0 taken as the negative side).

    ``fg(x, idx)`` returns (f, f') at the points idx. Steps leaving the bracket become bisections
    (geometric where 0 < lo < hi / 4), and after 20 iterations every other step is one, so an f
    whose rounding misleads Newton (f and f' of different accuracy) still ends. A point stops when
    a Newton step is below ``tol`` times
    max(``scale``, |x|) (relative for scale = 0; the returned iterate then carries an error
    ~tol^2 by quadratic convergence), when its bracket has shrunk to rounding level, or when
    f = 0. ``lo`` and ``hi`` are updated in place.

    Raises
    ------
    RuntimeError
        If some point has not converged after 200 iterations (a bug: please report).
    """
    x = x.copy()
    active = np.arange(x.size)
    for it in range(_MAX_ITER):
        if active.size == 0:
            return x
        xa = x[active]
        f, df = fg(xa, active)
        lo[active] = np.where(f > 0, xa, lo[active])
        hi[active] = np.where(f > 0, hi[active], xa)
        with np.errstate(divide="ignore", invalid="ignore"):
            new = xa - np.where(df != 0, f / df, np.inf)
        bisect = ~((new > lo[active]) & (new < hi[active])) | (it >= 20 and it % 2 == 1)
        a, b = lo[active], hi[active]
        # a bracket spanning decades (q* ~ 1e-40 from Q_MIN and hi ~ 1) is halved in log scale
        mid = np.where((a > 0) & (b > 4 * a), np.sqrt(a) * np.sqrt(np.maximum(b, a)),
                       0.5 * (a + b))  # sqrt(a) sqrt(b): a b underflows at 1e-300 * 1e-151
        new = np.where(bisect, mid, new)
        size = np.maximum(scale, np.abs(new))  # scale 0: q* = 1e-12 as accurate as q* = 1
        done = ((~bisect & (np.abs(new - xa) <= tol * size))
                | (hi[active] - lo[active] <= 4e-16 * size) | (f == 0))
        x[active] = np.where(f == 0, xa, new)
        active = active[~done]
    raise RuntimeError(f"{what}: no convergence in {_MAX_ITER} iterations (please report)")


def solve_q_star(p: Params, on_missing="raise") -> np.ndarray:
    """q* = sigma_w^2 E[g(sqrt(q*) z, xi)^2] + sigma_b^2, the stable fixed point (shape p.shape).

    NaN where no finite q* exists if ``on_missing == "nan"``; else :class:`NoFixedPointError`.

    Conventions at the origin (sigma_b^2 = 0 and E[g^2] = 0 at q = 0, i.e. phi(0) = 0): q* = 0
    when the origin attracts, i.e. when the slope chi_q(0) = sigma_w^2 dE[g^2]/dq at q = 0 is
    below 1, and also when it is 1 (within rounding, ``MARGINAL_RTOL``) with the map on or below
    the diagonal just above 0: tanh at sigma_w^2 = keep gives q* = 0 (the map is q - 2 q^2 + ...),
    and a map that is exactly linear there (ReLU or linear at sigma_w^2 E[xi^2] = 2 or 1, k-WTA),
    where every q is fixed, gives q* = 0 too: the limit of the ordered side, with chi_q = 1. A
    marginal map above the diagonal (GELU, SiLU at sigma_w^2 = 4 keep) leaves the origin and has
    its q* > 0, if any. Otherwise q* is bracketed and polished by Newton to a relative accuracy
    set by the scale of q* itself (q* = 0.05 for sigma_w^2 = 1e-17, sigma_b^2 = 0.05).
    """
    pf = p.ravel()
    sw, sb, act, nz = pf.sigma_w2, pf.sigma_b2, pf.act, pf.noise
    n = sw.size
    q_out = np.full(n, np.nan)
    if n == 0:
        return q_out.reshape(p.shape)

    def F(q, idx):
        if q.size == 0:
            return q
        return sw[idx] * nz.take(idx).second_moment(act, q) + sb[idx] - q

    def fg(q, idx):
        m2, dm2 = nz.take(idx).second_moment_and_slope(act, q)
        return sw[idx] * m2 + sb[idx] - q, sw[idx] * dm2 - 1

    lo = sb.copy()
    # q = 0 is a fixed point at sigma_b^2 = 0 if phi(0) = 0 (every noise layer has g = 0 there)
    origin = np.flatnonzero(sb == 0) if act.zero_at_origin else np.zeros(0, int)
    if origin.size:  # the slope there: the q -> 0 limit (inf for Sparseout with s < 2)
        start = _leave_origin(F, origin, sw[origin] * nz.take(origin).second_moment_slope(
            act, np.zeros(origin.size)) - 1)
        q_out[origin[start == 0]] = 0.0
        lo[origin] = start
    todo = np.flatnonzero(np.isnan(q_out))
    hi = np.full(n, np.nan)
    cap = np.full(n, Q_MAX)
    if act.bounded:  # |phi| <= 1 bounds E[g^2] by B, so F(q) < 0 beyond sigma_w^2 B + sigma_b^2
        with np.errstate(over="ignore"):  # a bound beyond the float range is capped below
            bound = 2 * (sw[todo] * np.broadcast_to(nz.take(todo).bounded_second_moment(), todo.shape)
                         + sb[todo])
        hi[todo] = np.minimum(bound, Q_MAX)
        capped = todo[bound > Q_MAX]
        hi[capped[F(hi[capped], capped) >= 0]] = np.inf
    else:
        # Sparseout's |phi|^s leaves the float range below Q_CAP for s > 6
        cap[todo] = np.minimum(Q_CAP, np.broadcast_to(nz.take(todo).q_limit(act), todo.shape))
        # from 2 lo (without overflow), not from 1: a map that dips below the diagonal and rises
        # again (ReLU with Sparseout s > 2: a stable q* ~ 0.06 and an unstable one) is not stepped over
        h = np.maximum(lo[todo] + np.minimum(lo[todo], cap[todo]), 1e-12)
        search = np.flatnonzero(h <= cap[todo])
        while search.size:
            # F within rounding of 0 (|F| <= MARGINAL_RTOL q) is no upper bracket: at the
            # marginal ReLU sigma_w^2 = 2 keep, F = sigma_b^2 rounds to 0 beyond q ~ 1e16 sigma_b^2
            above = F(h[search], todo[search]) >= -MARGINAL_RTOL * h[search]
            grow = search[above]
            # Newton's bracket may span decades: its bisections are geometric
            h[grow] *= np.where(h[grow] < _SEARCH_FAST, 4.0, 1e8)
            search = grow[h[grow] <= cap[todo[grow]]]
        hi[todo] = h
    missing = todo[hi[todo] > cap[todo]]
    if missing.size and on_missing == "raise":
        _raise_missing(pf, missing, "no finite fixed point q*: the variance map stays above the "
                       f"diagonal up to q = {cap[missing[0]]:g}")
    solve = np.setdiff1d(todo, missing)
    if solve.size:
        x0 = 0.5 * (lo[solve] + hi[solve])
        q_out[solve] = safeguarded_newton(lambda q, i: fg(q, solve[i]), lo[solve].copy(),
                                          hi[solve].copy(), x0, 1e-9, "q*")
        # a decreasing map (Sparseout with s < 1 and a large drop, phi(0) != 0) may cross the
        # diagonal with slope chi_q < -1: that fixed point repels and q^l oscillates
        unstable = solve[fg(q_out[solve], solve)[1] < -2]
        if unstable.size and on_missing == "raise":
            _raise_missing(pf, unstable, "no stable fixed point q*: the variance map crosses the "
                           "diagonal with slope chi_q < -1 (q oscillates from layer to layer)")
        q_out[unstable] = np.nan
    return q_out.reshape(p.shape)


def _leave_origin(F, idx, slope_minus_one):
    """Where the fixed point q = 0 (sigma_b^2 = 0) attracts: 0 there, else a q > 0 with F(q) > 0.

    ``slope_minus_one`` is chi_q(0) - 1. Below -MARGINAL_RTOL the origin attracts, above
    +MARGINAL_RTOL it repels: F > 0 on (0, q*), and the bracket starts at the first of Q_MIN,
    1e-10 Q_MIN, ... (down to 1e-300) where F > 0 shows (Sparseout: q* ~ sigma_w^(4/(2-s)) can
    be far below Q_MIN). In between, the sign of F(q) at the first of the probes 1e-8, 1e-6,
    ..., 1e12 where |F| exceeds PROBE_RTOL q decides; none (an exactly linear map) means q* = 0.
    """
    start = np.zeros(idx.size)
    repel = np.flatnonzero(slope_minus_one > MARGINAL_RTOL)
    for lo in Q_MIN * 1e-10 ** np.arange(29):
        if repel.size == 0:
            break
        clear = F(np.full(repel.size, lo), idx[repel]) > 0
        start[repel[clear]] = lo
        repel = repel[~clear]
    open_ = np.flatnonzero((slope_minus_one >= -MARGINAL_RTOL) & (start == 0))
    for qp in _PROBES:
        if open_.size == 0:
            break
        f = F(np.full(open_.size, qp), idx[open_])
        decided = np.abs(f) > PROBE_RTOL * qp
        start[open_[decided & (f > 0)]] = qp
        open_ = open_[~decided]
    return start


def _raise_missing(pf: Params, missing, why):
    i = missing[0]
    point = pf.take(np.array([i]))
    noise = point.noise.take(0)
    desc = noise.spec() if noise.shape == () else noise.name
    raise NoFixedPointError(
        f"{why} for activation={pf.act.name!r}, noise={desc}, sigma_w2={pf.sigma_w2[i]:g}, "
        f"sigma_b2={pf.sigma_b2[i]:g}{pf.noise.missing_fixed_point_hint(pf.act)}; "
        f"{missing.size} parameter point(s) affected. Pass on_missing='nan' to analyze() to mark "
        "them instead.")


def solve_c_star(p: Params, q, chi1, pair=None):
    """Stable fixed point c* of the correlation map at q*, the slope chi_c there and the c-map's slope.

    The c-map is increasing and convex on [0, 1] (a power series in c with non-negative
    coefficients), so G(c) = cmap(c) - c has exactly one sign change on [0, 1) whenever
    G(1) < 0 (noise) or the slope at c = 1 exceeds 1 (chaotic phase without noise). Where c = 0
    is a fixed point to working precision (sigma_b^2 = 0 and E[gbar] = 0, e.g. odd phi) and
    attracts, c* = 0 exactly.

    At q* = 0 (sigma_b^2 = 0, ordered variance map) the c-map is the limit q -> 0 of the
    toolkit's :func:`~meanfield.maps.c_map`, c -> E[gbar(u1) gbar(u2)] / E[g^2] (normalised by
    the mapped variance, which is no longer q*): for a smooth phi with phi(0) = 0 != phi'(0) it
    is linear, c -> gbar'(0)^2 c / (dE[g^2]/dq at 0) (dropout: c -> keep c, so c* = 0; without
    noise the identity, c* = 1); for ReLU it is q-independent, keep times the arc-cosine map.
    There chi_c (the GIA pair-gradient factor sigma_w^2 E[gbar'(u1) gbar'(u2)],
    still evaluated at (q -> 0, c*)) and the slope of that c-map differ; both are returned.
    Where q* > 0 they are equal.

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
    (c_star, chi_c, c_slope) : ndarrays of shape p.shape
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
    c_out, chic, slope = np.full(n, np.nan), np.full(n, np.nan), np.full(n, np.nan)
    ok = np.flatnonzero(np.isfinite(q))
    noiseless = np.broadcast_to(nz.is_identity(), (n,))
    # without noise c = 1 is fixed; it attracts in the ordered phase and at q* = 0 (where the
    # c-map is the identity to first order in q)
    ordered = ok[noiseless[ok] & ((chi1.ravel()[ok] <= 1) | (q[ok] == 0))]
    c_out[ordered] = 1.0
    chic[ordered] = chi1.ravel()[ordered]  # at c = 1, E[phi'(u1) phi'(u2)] = E[phi'^2]
    slope[ordered] = np.where(q[ordered] == 0, 1.0, chic[ordered])
    solve = np.setdiff1d(ok, ordered)
    if solve.size == 0:
        return c_out.reshape(p.shape), chic.reshape(p.shape), slope.reshape(p.shape)
    # c-map = a K(qs, c) + b: a = sigma_w^2 / q*, b = sigma_b^2 / q* where q* > 0; at q* = 0 the
    # q -> 0 limit, evaluated at qs = Q_MIN: a = 1 / E[g^2](Q_MIN), b = 0
    at_zero = q[solve] == 0
    qs = origin_limit(q[solve])
    a = sw[solve] / np.where(at_zero, 1.0, q[solve])
    if np.any(at_zero):
        iz = np.flatnonzero(at_zero)
        a[iz] = 1.0 / nz.take(solve[iz]).second_moment(pf.act, qs[iz])
    b = np.where(at_zero, 0.0, sb[solve] / qs)

    def fg_at(rtol):
        def fg(c, i):
            K, Kd = pair(qs[i], c, ("K", "Kd"), rtol, solve[i])
            return a[i] * K + b[i] - c, a[i] * qs[i] * Kd - 1
        return fg

    # c = 0 fixed (to rounding: E[gbar]^2 of an odd phi) and attracting from above
    c_sol = np.zeros(solve.size)
    todo = np.arange(solve.size)
    cand = np.flatnonzero(sb[solve] == 0)
    if cand.size:
        g0, dg0 = fg_at(RTOL)(np.zeros(cand.size), cand)
        todo = np.setdiff1d(todo, cand[(np.abs(g0) <= ZERO_ATOL) & (dg0 <= 0)])
    if todo.size:
        # Start from one map step below c = 1, C(1) >= c* (C is increasing); Newton on cheap
        # quadrature (rtol 1e-6) to ~1e-6, then at full accuracy from there: one or two steps,
        # with [0, 1] still the bracket so a poor start cannot mislead it.
        K1 = pair(qs[todo], np.ones(todo.size), ("K",), 1e-6, solve[todo])[0]
        x0 = np.where(noiseless[solve[todo]], 0.5, np.clip(a[todo] * K1 + b[todo], 0.0, 1.0))
        lo, hi = np.zeros(todo.size), np.ones(todo.size)
        fast, full = fg_at(1e-6), fg_at(RTOL)
        c1 = safeguarded_newton(lambda c, i: fast(c, todo[i]), lo, hi, x0, 1e-6, "c*", scale=1.0)
        c_sol[todo] = safeguarded_newton(lambda c, i: full(c, todo[i]), np.zeros(todo.size),
                                         np.ones(todo.size), c1, 1e-10, "c*", scale=1.0)
    kd = pair(qs, c_sol, ("Kd",), RTOL, solve)[0]
    chic[solve] = sw[solve] * kd
    slope[solve] = a * qs * kd
    c_out[solve] = c_sol
    return c_out.reshape(p.shape), chic.reshape(p.shape), slope.reshape(p.shape)
