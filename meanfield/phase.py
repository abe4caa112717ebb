"""The critical line chi_1 = 1 and (sigma_w^2, sigma_b^2) phase diagrams."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .maps import MeanFieldResult, _q_star, analyze_params, params
from .noise import deriv_second_moment

SIGMA_W2_MAX = 1e6


def critical_sigma_w2(activation, sigma_b2, keep=None, *, noise="dropout", s=2.0, backward="true",
                      drop=None, tol=1e-13):
    """sigma_w^2 on the critical line chi_1(sigma_w^2) = 1 for given sigma_b^2 and keep (vectorised).

    Found by bisection in log sigma_w^2 (chi_1 increases with sigma_w^2); where the variance map
    diverges first (ReLU: sigma_w^2 >= 2 keep), the divergence point is the critical line.
    """
    p = params(activation, 1.0, sigma_b2, keep, noise=noise, s=s, backward=backward, drop=drop)
    shape = p.shape
    sb, k = p.sigma_b2.ravel(), p.keep.ravel()

    def above(sw):  # chi_1 >= 1, or no finite q*
        pp = params(p.act, sw, sb, k, noise=p.noise)
        q = _q_star(pp, on_missing="nan")
        ok = np.isfinite(q)
        chi = np.full(sw.shape, np.inf)
        chi[ok] = sw[ok] * deriv_second_moment(p.act, p.noise, q[ok], k[ok])
        return chi >= 1

    lo, hi = np.full(sb.shape, 1e-3), np.ones(sb.shape)
    while True:  # widen both ends geometrically until they bracket the crossing
        bad_lo = above(lo)
        if not bad_lo.any():
            break
        lo[bad_lo] /= 10
        if np.any(lo < 1e-12):
            raise ValueError("chi_1 >= 1 even for sigma_w2 -> 0: no critical line for these parameters")
    while True:
        low = ~above(hi)
        if not low.any():
            break
        if np.any(hi[low] > SIGMA_W2_MAX):
            raise ValueError(f"chi_1 < 1 up to sigma_w2 = {SIGMA_W2_MAX:g}: no critical line found")
        lo[low], hi[low] = hi[low], hi[low] * 4
    while np.max(np.log(hi / lo)) > tol:
        mid = np.sqrt(lo * hi)
        up = above(mid)
        hi, lo = np.where(up, mid, hi), np.where(up, lo, mid)
    return np.sqrt(lo * hi).reshape(shape)


@dataclass(frozen=True)
class PhaseDiagram:
    """Mean-field results on a (sigma_b^2, sigma_w^2) grid (rows: sigma_b^2) and the critical line."""

    sigma_w2: np.ndarray
    sigma_b2: np.ndarray
    result: MeanFieldResult
    critical_sigma_w2: np.ndarray


def phase_diagram(activation, sigma_w2, sigma_b2, keep=None, *, noise="dropout", s=2.0,
                  backward="true", drop=None) -> PhaseDiagram:
    """analyze() over the grid sigma_b2 x sigma_w2 (points without a finite q* are NaN) and the
    critical line sigma_w2(sigma_b2) where chi_1 = 1."""
    sw = np.asarray(sigma_w2, float).ravel()
    sb = np.asarray(sigma_b2, float).ravel()
    p = params(activation, sw[None, :], sb[:, None], keep, noise=noise, s=s, backward=backward,
               drop=drop)
    res = analyze_params(p, on_missing="nan")
    crit = critical_sigma_w2(p.act, sb, p.keep.ravel()[0], noise=p.noise)
    return PhaseDiagram(sw, sb, res, crit)
