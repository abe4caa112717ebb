"""The critical line chi_1 = 1 and (sigma_w^2, sigma_b^2) phase diagrams (docs/THEORY.md §3)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.polynomial.chebyshev import chebvander

from . import kernels
from .depth_scales import MeanFieldResult, analyze_params
from .fixed_points import solve_q_star
from .gauss import RTOL
from .kernels import Q_MIN, origin_limit
from .maps import SIGMA_B2, SIGMA_W2, chunk_slices, params, per_chunk
from .noise import make_noise
from .validation import choice, finite_array, integer, real

__all__ = ["critical_sigma_w2", "PairTable", "PairTableCost", "PhaseDiagram", "phase_diagram"]

SIGMA_W2_MAX = 1e6
# pair integrals per grid point that solving c* directly takes (safeguarded Newton at two
# accuracies and chi_c; measured 7.3 for tanh): a table costing more than half of that is not built
DIRECT_PAIRS = 7


def critical_sigma_w2(activation, sigma_b2, keep=None, *, noise="dropout", drop=None, tol=1e-13,
                      on_missing="raise", **noise_params):
    """sigma_w^2 on the critical line chi_1(sigma_w^2) = 1 for given sigma_b^2 and noise (vectorised).

    chi_1 increases with sigma_w^2; the root of ln chi_1 in ln sigma_w^2 is bracketed and found by
    the Illinois variant of regula falsi (superlinear, never leaves the bracket). Where the variance
    map diverges first (ReLU: sigma_w^2 >= 2 keep) the divergence point is the critical line, found
    by bisection. At sigma_b^2 = 0 with phi(0) = 0, where q* = 0 holds up to the line, chi_1 =
    sigma_w^2 E[g'^2] at q -> 0 and the line is exact: sigma_w^2 = 1 / E[g'^2](0), for dropout
    keep / phi'(0)^2 (tanh: keep; ReLU: 2 keep; GELU, SiLU: 4 keep). This is a double root of
    chi_1 - 1 for odd phi (chi_1 - 1 ~ (sigma_w^2 - keep)^2 above it), where bisection would only
    reach sqrt(machine epsilon).

    Parameters
    ----------
    activation : str or Activation
    sigma_b2 : array_like
        Bias variance >= 0; broadcasts with the noise parameters.
    keep, drop, noise, **noise_params
        The noise layer, as in :func:`meanfield.maps.params`.
    tol : float
        Absolute tolerance in ln sigma_w^2, in [1e-15, 0.1].
    on_missing : {"raise", "nan"}
        Where there is no critical line (chi_1 >= 1 as sigma_w^2 -> 0, e.g. Sparseout with
        s <= 1 where chi_1 = inf, or chi_1 < 1 up to sigma_w^2 = 1e6): raise, or return NaN there.

    Returns
    -------
    ndarray
        sigma_w^2 with chi_1 = 1, shaped like the broadcast parameters.

    Raises
    ------
    ValueError
        For invalid parameters, and (``on_missing="raise"``) where there is no critical line,
        naming the parameters.
    """
    choice("on_missing", on_missing, ("raise", "nan"))
    tol = real("tol", tol, 1e-15, 0.1)
    p = params(activation, 1.0, sigma_b2, keep, noise=noise, drop=drop, **noise_params)
    return per_chunk(lambda c: _critical(c, tol, on_missing), p)


def _log_chi(p, x, idx):
    """ln chi_1 at sigma_w^2 = e^x for the points idx of p (flat); +inf where no finite q*."""
    out = np.full(x.shape, np.inf)
    if x.size == 0:
        return out
    nz = p.noise.take(idx)
    pp = params(p.act, np.exp(x), p.sigma_b2[idx], noise=nz)
    q = solve_q_star(pp, on_missing="nan")
    ok = np.isfinite(q)
    if np.any(ok):
        chi = pp.sigma_w2[ok] * nz.take(ok).deriv_second_moment(p.act, origin_limit(q[ok]))
        with np.errstate(divide="ignore"):
            out[ok] = np.log(chi)
    return out


def _exact_at_origin(p):
    """sigma_w^2 = 1 / E[g'^2](q -> 0) where sigma_b^2 = 0, phi(0) = 0 and q* = 0 up to there."""
    out = np.full(p.sigma_b2.size, np.nan)
    cand = np.flatnonzero(p.sigma_b2 == 0) if p.act.zero_at_origin else np.zeros(0, int)
    if cand.size == 0:
        return out
    d0 = p.noise.take(cand).deriv_second_moment(p.act, np.full(cand.size, Q_MIN))
    cand, sw = cand[(d0 > 0) & np.isfinite(d0)], 1.0 / d0[(d0 > 0) & np.isfinite(d0)]
    if cand.size == 0:
        return out
    # q* = 0 just below the candidate (chi_q(0) <= 1 there) makes chi_1 = sigma_w^2 E[g'^2](0)
    # on the whole ordered side: the candidate is the crossing
    below = params(p.act, sw * (1 - 1e-6), 0.0, noise=p.noise.take(cand))
    stays = solve_q_star(below, on_missing="nan") == 0
    out[cand[stays]] = sw[stays]
    return out


def _critical(p, tol, on_missing):
    sb = p.sigma_b2
    result = _exact_at_origin(p)
    every = np.flatnonzero(np.isnan(result))
    n = sb.size
    lo, hi = np.full(n, np.log(1e-3)), np.zeros(n)
    f_lo, f_hi = np.full(n, -np.inf), np.full(n, np.inf)
    f_lo[every], f_hi[every] = _log_chi(p, lo[every], every), _log_chi(p, hi[every], every)
    none = np.zeros(n, bool)  # no critical line
    bad = every[f_lo[every] >= 0]
    while bad.size:  # widen both ends geometrically until they bracket the crossing
        gone = lo[bad] < np.log(1e-12)
        none[bad[gone]] = True
        bad = bad[~gone]
        hi[bad], f_hi[bad] = lo[bad], f_lo[bad]
        lo[bad] -= np.log(10)
        f_lo[bad] = _log_chi(p, lo[bad], bad)
        bad = bad[f_lo[bad] >= 0]
    low = every[~none[every] & (f_hi[every] < 0)]
    while low.size:
        gone = hi[low] > np.log(SIGMA_W2_MAX)
        none[low[gone]] = True
        low = low[~gone]
        lo[low], f_lo[low] = hi[low], f_hi[low]
        hi[low] += np.log(4)
        f_hi[low] = _log_chi(p, hi[low], low)
        low = low[f_hi[low] < 0]
    if np.any(none) and on_missing == "raise":
        i = np.flatnonzero(none)[0]
        point = p.noise.take(np.array([i])).take(0)
        desc = point.spec() if point.shape == () else p.noise.name
        raise ValueError(
            f"no critical line chi_1 = 1 for activation={p.act.name!r}, noise={desc}, "
            f"sigma_b2={sb[i]:g}: chi_1 "
            f"{'>= 1 as sigma_w2 -> 0' if f_lo[i] >= 0 else f'< 1 up to sigma_w2 = {SIGMA_W2_MAX:g}'}"
            f"{' (chi_1 = inf: Sparseout with s <= 1)' if np.isinf(f_lo[i]) and f_lo[i] > 0 else ''}"
            f"; {int(none.sum())} point(s) affected. Pass on_missing='nan' to mark them NaN.")
    side = np.zeros(n)
    active = every[~none[every]]
    for it in range(200):
        if active.size == 0:
            break
        a, b, fa, fb = lo[active], hi[active], f_lo[active], f_hi[active]
        # regula falsi where both ends are finite, bisection where the map diverges at hi, and
        # every other step after 20 (a flat, noisy ln chi_1 can stall the Illinois updates)
        with np.errstate(invalid="ignore"):  # fb = inf (map diverged) takes the bisection branch
            x = np.where(np.isfinite(fb), (a * fb - b * fa) / (fb - fa), 0.5 * (a + b))
        x = np.where((x > a) & (x < b) & (it < 20 or it % 2 == 0), x, 0.5 * (a + b))
        fx = _log_chi(p, x, active)
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
    found = every[~none[every]]
    result[found] = np.exp(x[found])
    return result


class PairTableCost(RuntimeError):
    """A :class:`PairTable` would need more pair integrals than allowed to converge."""


class PairTable:
    """Chebyshev interpolant of the pair moments K(q, c) and Kd(q, c) on [q_lo, q_hi] x [0, 1].

    Tabulated as K / K(q, 1) and Kd / Kd(q, 1) (order-one and smooth) on a tensor grid of
    Chebyshev points in (log q, c); the grid is refined until the last coefficients in each
    direction fall below ``tol``. Both functions are analytic in log q and c < 1 and the
    coefficients decay geometrically (measured: 32 x 64 points reach ~1e-13 for tanh on
    q in [1e-3, 5]; near c = 1 at large q, where tanh's K bends sharply, the grid grows to
    n_max). ``noise`` (a layer with scalar parameters) supplies the pair moments; default: the
    activation's own kernels (gbar = phi).

    Raises :class:`PairTableCost` if convergence would need more than ``max_pairs`` pair
    integrals in all, or a grid beyond ``n_max`` x ``n_max``. ``pairs`` is the number spent.
    """

    def __init__(self, act, q_lo, q_hi, tol=1e-11, n_q=32, n_c=48, n_max=128, noise=None,
                 max_pairs=np.inf):
        self.act = act
        self._pair = (lambda q, c, keys, rtol=RTOL: kernels.pair(act, keys, q, c, rtol)) \
            if noise is None else \
            (lambda q, c, keys, rtol=RTOL: noise.scalar().pair_moments(act, q, c, keys, rtol))
        self.lo, self.hi = np.log(q_lo), np.log(max(q_hi, q_lo * 1.0001))
        self.pairs = 0
        while True:
            self.pairs += n_q * (n_c + 1)
            if self.pairs > max_pairs:
                raise PairTableCost(f"pair table for {act.name}: a {n_q} x {n_c} grid would bring the "
                                    f"pair integrals to {self.pairs} > {max_pairs:g}")
            self.coef = self._fit(n_q, n_c)
            tails = [np.abs(c[-2:, :]).max() / np.abs(c).max() for c in self.coef]
            tails += [np.abs(c[-2:]).max() / np.abs(c).max() for c in self.norm]
            tails_c = [np.abs(c[:, -2:]).max() / np.abs(c).max() for c in self.coef]
            if max(tails) <= tol and max(tails_c) <= tol:
                break
            if n_q >= n_max and n_c >= n_max:
                raise PairTableCost(f"pair table for {act.name} did not converge on {n_max} x {n_max} "
                                    f"points (tails {tails}, {tails_c})")
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
        K, Kd = np.empty(Q.size), np.empty(Q.size)
        for sl in chunk_slices(Q.size):  # up to n_max^2 pair integrals: bounded memory
            K[sl], Kd[sl] = self._pair(Q.ravel()[sl], Cc.ravel()[sl], ("K", "Kd"))
        K, Kd = K.reshape(Q.shape), Kd.reshape(Q.shape)
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

    ``critical_sigma_w2`` is NaN for the sigma_b^2 without a critical line (``has_critical_line``
    False; e.g. Sparseout with s <= 1, where chi_1 = inf). ``table_pairs``: pair integrals spent
    on a :class:`PairTable` (0: every c* solved directly); ``table_check``: largest |c*| and
    relative chi_c deviation between the tabulated pair integrals and direct quadrature at a
    random sample of grid points (zeros when no table used).
    """

    sigma_w2: np.ndarray
    sigma_b2: np.ndarray
    result: MeanFieldResult
    critical_sigma_w2: np.ndarray
    table_check: tuple = (0.0, 0.0)
    table_pairs: int = 0

    @property
    def has_critical_line(self):
        """Boolean per sigma_b^2: False where chi_1 = 1 is never reached (NaN critical_sigma_w2)."""
        return np.isfinite(self.critical_sigma_w2)


def phase_diagram(activation, sigma_w2, sigma_b2, keep=None, *, noise="dropout", drop=None,
                  exact=False, n_check=12, seed=0, **noise_params) -> PhaseDiagram:
    """analyze() over the grid sigma_b2 x sigma_w2 (points without a finite q* are NaN) and the
    critical line sigma_w2(sigma_b2) where chi_1 = 1.

    q* and the slopes chi_1, chi_q come from direct quadrature. For activations without
    closed-form pair integrals, c* and chi_c use a :class:`PairTable` unless ``exact=True``, or
    unless the table would cost more pair integrals than half of what solving every c* directly
    takes (``DIRECT_PAIRS`` per point: small grids, and wide ones in q*, where the table grows to
    128 x 128 points: 24 s against 0.8 s for 12 x 6 points of tanh with sigma_w^2 up to 50). With
    a table, ``n_check`` random points are recomputed directly and the deviation is reported in
    ``table_check`` (an error is raised above 1e-9).

    Parameters
    ----------
    activation : str or Activation
    sigma_w2, sigma_b2 : array_like, 1-D
        Grid axes (columns: sigma_w^2, rows: sigma_b^2).
    keep, drop, noise, **noise_params
        One noise layer with scalar parameters (as in :func:`meanfield.maps.params`).
    exact : bool
        Direct quadrature for every c*, never the table.
    n_check, seed : int
        Number of table checks (>= 0) and the seed choosing their points.

    Returns
    -------
    PhaseDiagram
        Where no critical line exists for a sigma_b^2 its entry is NaN (``has_critical_line``).

    Raises
    ------
    ValueError
        For invalid parameters (naming them).
    """
    sw = finite_array(SIGMA_W2, sigma_w2).ravel()
    sb = finite_array(SIGMA_B2, sigma_b2).ravel()
    n_check = integer("n_check", n_check, 0)
    seed = integer("seed", seed, 0)
    if not isinstance(exact, (bool, np.bool_)):
        raise ValueError(f"exact must be True or False, got {exact!r}")
    nz = make_noise(noise, keep=keep, drop=drop, **noise_params)
    if nz.shape != ():
        raise ValueError("phase_diagram takes one noise layer with scalar parameters (one keep "
                         "value); call it once per value")
    p = params(activation, sw[None, :], sb[:, None], noise=nz)
    q = per_chunk(lambda c: solve_q_star(c, on_missing="nan"), p)
    table, check = None, (0.0, 0.0)
    finite = q[np.isfinite(q)]
    if not exact and finite.size and not {"K", "Kd"} <= set(p.act.closed):
        # tiny q* (cheap by quadrature, and a long way in log q) stays off the table
        qs = np.maximum(finite, Q_MIN)
        try:
            table = PairTable(p.act, max(qs.min(), 1e-3 * qs.max()), qs.max(), noise=nz,
                              max_pairs=finite.size * DIRECT_PAIRS / 2)
        except PairTableCost:  # direct solving is cheaper here (and as accurate)
            table = None
    res = analyze_params(p, on_missing="nan", pair=table, q=q)
    if table is not None and n_check:
        check = _check_table(p, res, n_check, seed)
    crit = critical_sigma_w2(p.act, sb, noise=nz, on_missing="nan")
    return PhaseDiagram(sw, sb, res, crit, check, 0 if table is None else table.pairs)


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
