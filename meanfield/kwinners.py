"""Mean field of k-winners-take-all (k-WTA) layers and sparse weights (docs/THEORY.md §7).

The API mirrors the core's: ``q_map(q, f, ...)``, ``covariance_map(q, c, f, ...)``,
``c_map(q, c, f, ...)``, ``q_star``, ``c_star``, ``chi_1``, ``chi_c``, ``chi_q``,
``critical_sigma_w2`` (chi_1 = 1, as in :func:`meanfield.critical_sigma_w2`) and ``analyze``,
with the winner fraction f = k/n in the place of the activation.

Layer and conventions
---------------------
A k-WTA layer of width n keeps the k = f n largest *pre-activations* and zeros the rest; the kept
units pass on their own value (not value minus threshold), so the element-wise map is
``g(z) = z 1(z > t)``. At large n and without boosting (as at initialisation) the k-th largest of n
i.i.d. ``N(0, q)`` values concentrates at ``t = tau sqrt(q)``, ``tau = Phi^{-1}(1 - f)``: the
threshold *adapts* to the variance of the input it is applied to. f = 1/2 is exactly ReLU.

- Network: ``z^{l+1} = W^{l+1} g(z^l) + b^{l+1}``, ``W_ij ~ N(0, sigma_w^2 / N_in)`` (fan-in),
  ``b_i ~ N(0, sigma_b^2)``. The bias is part of the pre-activation, so the threshold adapts to
  ``q = Var(z)`` including the bias.
- Because the threshold scales with sqrt(q), ``g(sqrt(q) z) = sqrt(q) h(z)``, ``h(z) = z 1(z > tau)``:
  the layer is positively homogeneous and the maps are linear in q.
- Variance map ``q' = sigma_w^2 G(f) q + sigma_b^2``, ``G(f) = E[h(z)^2] = f + tau pdf(tau)``.
- Covariance map for inputs a, b with their own thresholds ``tau sqrt(q_a)``, ``tau sqrt(q_b)``:
  ``q_ab' = sigma_w^2 sqrt(q_a q_b) M(c, tau) + sigma_b^2``, ``M(c, tau) = E[h(z1) h(z2)]`` with
  ``corr(z1, z2) = c``. The c-map is normalised by the *mapped* variances,
  ``c' = q_ab' / sqrt(q_a' q_b')``; at the fixed point q* (sigma_b^2 > 0) this is
  ``c' = 1 - sigma_w^2 (G - M(c, tau))``, and for sigma_b^2 = 0 it is ``c' = M(c, tau) / G``
  for every q (scale invariance), so c* and chi_c exist even where q* does not.
- ``M`` has a closed form through the bivariate normal orthant probability (Owen's T):
  ``M = c L + 2 c tau pdf(tau) Q(tau a) + s exp(-tau^2/(1+c)) / (2 pi)``,
  ``L = P(z1 > tau, z2 > tau) = Q(tau) - 2 T(tau, a)``, ``a = sqrt((1-c)/(1+c))``,
  ``s = sqrt(1-c^2)``, ``Q = 1 - Phi``.
- c-map slope (Price's theorem, h has a jump of size tau at tau):
  ``dM/dc = E[h'(z1) h'(z2)] = L + 2 tau pdf(tau) Q(tau a) + tau^2 exp(-tau^2/(1+c)) / (2 pi s)``.
  The last term diverges at c -> 1 for f != 1/2: c = 1 is always unstable and c* < 1.
- Backward: the Jacobian of top-k is the winner mask (the threshold jump carries no gradient), so
  ``chi_1 = sigma_w^2 f``. Forward criticality ``sigma_w^2 = 1/G(f)`` and backward criticality
  ``sigma_w^2 = 1/f`` coincide only at f = 1/2 (for f < 1/2, f/G(f) < 1: gradients vanish at the
  forward-critical point).
- Sparse weights with a fixed in-degree K = density * fan_in and weight variance v act as a dense
  layer with ``sigma_w,eff^2 = density * fan_in * v``.

numpy/scipy only; every function broadcasts its array arguments.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import brentq

__all__ = [
    "KWinnersResult", "tau", "G", "M", "dM_dc", "q_map", "covariance_map", "c_map", "q_star",
    "c_star", "chi_1", "chi_c", "chi_q", "xi_1", "xi_c", "xi_q", "critical_sigma_w2",
    "forward_critical_sigma_w2", "effective_sigma_w2", "analyze",
]

from .depth_scales import depth_scale, gradient_depth_scale
from .fixed_points import MARGINAL_RTOL, NoFixedPointError
from .maps import settle_correlation
from .special import ndtr, ndtri, owens_t
from .validation import checked, correlation

_SQRT_2PI = np.sqrt(2.0 * np.pi)


# ----------------------------------------------------------------------------- input checks

def _f(f):
    return checked("f (fraction of winners k/n)", f, "lie in the open interval (0, 1)",
                   lambda a: (a > 0) & (a < 1))


def _sw2(sigma_w2):
    return checked("sigma_w2 (weight variance)", sigma_w2, "be > 0", lambda a: a > 0)


def _sb2(sigma_b2):
    return checked("sigma_b2 (bias variance)", sigma_b2, "be >= 0", lambda a: a >= 0)


def _q(q, name="q"):
    return checked(name, q, "be > 0", lambda a: a > 0)


def _c(c):
    return correlation(c)  # within rounding (C_ROUND) of +-1 is taken as +-1


def _gain(sw2, f):
    """sigma_w^2 G(f), with 1 +- MARGINAL_RTOL (rounding of sigma_w2 = 1/G(f)) taken as 1."""
    gain = sw2 * G(f)
    return np.where(np.abs(gain - 1) <= MARGINAL_RTOL, 1.0, gain)


def _pdf(x):
    return np.exp(-0.5 * x * x) / _SQRT_2PI


# ----------------------------------------------------------------------------- basic functions

def tau(f):
    """Threshold in units of sqrt(q): tau = Phi^{-1}(1 - f) (f = 1/2 gives 0, i.e. ReLU)."""
    return 0.0 - ndtri(_f(f))  # 0.0 - x: f = 1/2 gives +0.0


def G(f):
    """Variance gain G(f) = E[z^2 1(z > tau)] = f + tau pdf(tau)."""
    f = _f(f)
    t = -ndtri(f)
    return f + t * _pdf(t)


def _orthant_parts(c, t):
    """(L, Q(t a), exp(-t^2/(1+c)), s) for -1 < c < 1 (callers mask the end points)."""
    s = np.sqrt((1.0 - c) * (1.0 + c))
    a = np.sqrt((1.0 - c) / (1.0 + c))
    L = ndtr(-t) - 2.0 * owens_t(t, a)
    return L, ndtr(-t * a), np.exp(-t * t / (1.0 + c)), s


def M(c, tau):
    """M(c, tau) = E[z1 z2 1(z1 > tau) 1(z2 > tau)], (z1, z2) standard normal with correlation c.

    Closed form through Owen's T (module docstring); M(1, tau) = G, M(-1, tau) = -E[z^2 1(tau < z < -tau)].
    """
    c = _c(c)
    t = np.asarray(tau, dtype=np.float64)
    c, t = np.broadcast_arrays(c, t)
    inner = (c > -1) & (c < 1)
    ci = np.where(inner, c, 0.0)
    L, Qa, e, s = _orthant_parts(ci, t)
    mid = ci * L + 2.0 * ci * t * _pdf(t) * Qa + s * e / (2.0 * np.pi)
    at_one = ndtr(-t) + t * _pdf(t)
    # c = -1: z2 = -z1, both above t only for t < z1 < -t (needs t < 0).
    at_minus_one = -np.maximum(0.0, ndtr(-t) - ndtr(t) + 2.0 * t * _pdf(t))
    out = np.where(inner, mid, np.where(c == 1, at_one, at_minus_one))
    return out[()] if out.ndim == 0 else out


def dM_dc(c, tau):
    """dM/dc = E[h'(z1) h'(z2)], h(z) = z 1(z > tau) (Price's theorem, jump of size tau included).

    Infinite at c = 1 unless tau = 0 (then 1/2: ReLU); defined for -1 < c <= 1.
    """
    c = _c(c)
    if np.any(c == -1):
        raise ValueError("c must lie in (-1, 1] for dM_dc (the slope is singular at c = -1)")
    t = np.asarray(tau, dtype=np.float64)
    c, t = np.broadcast_arrays(c, t)
    inner = c < 1
    ci = np.where(inner, c, 0.0)
    L, Qa, e, s = _orthant_parts(ci, t)
    mid = L + 2.0 * t * _pdf(t) * Qa + t * t * e / (2.0 * np.pi * s)
    at_one = np.where(t == 0, 0.5, np.inf)
    out = np.where(inner, mid, at_one)
    return out[()] if out.ndim == 0 else out


# ----------------------------------------------------------------------------- maps

def q_map(q, f, sigma_w2, sigma_b2=0.0):
    """Variance map q' = sigma_w^2 G(f) q + sigma_b^2."""
    return _sw2(sigma_w2) * G(f) * _q(q) + _sb2(sigma_b2)


def covariance_map(q, c, f, sigma_w2, sigma_b2=0.0, q_b=None):
    """Covariance map q_ab' = sigma_w^2 sqrt(q q_b) M(c, tau(f)) + sigma_b^2 (per-input thresholds).

    ``q_b`` is the second input's variance (default: equal to ``q``).
    """
    q_b = q if q_b is None else q_b
    return (_sw2(sigma_w2) * np.sqrt(_q(q) * _q(q_b, "q_b")) * M(c, tau(f)) + _sb2(sigma_b2))


def c_map(q, c, f, sigma_w2, sigma_b2=0.0):
    """Correlation map c' = q_ab' / q' for two inputs of equal variance q.

    q=None means q = q* (for sigma_b2 = 0 the map does not depend on q at all):
    c' = 1 - sigma_w^2 (G - M(c, tau)) if sigma_b2 > 0, else M(c, tau) / G.
    """
    sw2, sb2 = _sw2(sigma_w2), _sb2(sigma_b2)
    g, m = G(f), M(c, tau(f))
    if q is None:
        gain = _gain(sw2, f)
        rest = np.where(sb2 > 0, 1.0 - gain, 0.0)  # sigma_b^2 / q* at the fixed point
        if np.any((sb2 > 0) & (gain >= 1)):
            raise NoFixedPointError(
                "c_map(q=None) needs q*: no finite q* for sigma_b2 > 0 and sigma_w2 >= 1/G(f)")
        out = np.where(sb2 > 0, sw2 * m + rest, m / g)
    else:
        q = _q(q)
        out = (sw2 * q * m + sb2) / (sw2 * q * g + sb2)
    out = settle_correlation(out, "k-winners c-map")  # |M| <= G: rounding only
    return out[()] if np.ndim(out) == 0 else out


# ----------------------------------------------------------------------------- fixed points

def q_star(f, sigma_w2, sigma_b2):
    """q* = sigma_b^2 / (1 - sigma_w^2 G(f)); needs sigma_w^2 G(f) < 1, or q* = 0 for sigma_b2 = 0.

    At sigma_b2 = 0 and sigma_w^2 = 1/G(f) (within rounding) the map is the identity, every q
    is fixed, and q* = 0 is returned: the limit from the ordered side, as
    :func:`meanfield.q_star` does for ReLU (docs/THEORY.md §3).

    Raises NoFixedPointError where sigma_w^2 G(f) > 1, or = 1 with sigma_b2 > 0 (the map grows
    without bound).
    """
    sw2, sb2 = _sw2(sigma_w2), _sb2(sigma_b2)
    gain = _gain(sw2, f)
    missing = (gain > 1) | ((gain == 1) & (sb2 > 0))
    if np.any(missing):
        raise NoFixedPointError(
            "no finite q* for k-winners: needs sigma_w2 < 1/G(f) (forward-critical value; "
            f"equality only with sigma_b2 = 0); got sigma_w2 * G(f) = {gain}")
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(sb2 == 0, 0.0, sb2 / (1.0 - gain))
    return out[()] if np.ndim(out) == 0 else out


def _c_star_scalar(t, sw2, sb2, g):
    if sb2 > 0:
        def F(c):
            return 1.0 - sw2 * (g - M(c, t))
    else:
        def F(c):
            return M(c, t) / g
    # F is increasing with F(1) = 1. For tau != 0, 1 - F(1 - u) ~ sqrt(u), so F(c) < c just below
    # c = 1; c* is the largest crossing below 1, found on a log grid in u = 1 - c.
    us = np.logspace(-15, np.log10(2.0), 400)
    d = F(1.0 - us) - (1.0 - us)
    below = np.nonzero(d < 0)[0]
    if below.size == 0:  # F(c) >= c everywhere: c = 1 attracts (ReLU, f = 1/2)
        return 1.0
    i = below[-1]
    if i == us.size - 1:  # F(-1) < -1 cannot happen for 0 < f < 1
        raise RuntimeError("c-map below the diagonal at c = -1")
    u = brentq(lambda u: F(1.0 - u) - (1.0 - u), us[i], us[i + 1], xtol=1e-18, rtol=1e-15)
    return 1.0 - u


def c_star(f, sigma_w2, sigma_b2):
    """Stable fixed point c* of the c-map reached from c -> 1^- (c* = 1 only for f = 1/2).

    For sigma_b2 > 0 it needs a finite q* (NoFixedPointError otherwise); for sigma_b2 = 0 the
    c-map is q-independent and c* always exists.
    """
    f, sw2, sb2 = _f(f), _sw2(sigma_w2), _sb2(sigma_b2)
    f, sw2, sb2 = np.broadcast_arrays(f, sw2, sb2)
    g = G(f)
    if np.any((sb2 > 0) & (_gain(sw2, f) >= 1)):
        raise NoFixedPointError(
            "c* needs q*: no finite q* for sigma_b2 > 0 and sigma_w2 >= 1/G(f)")
    t = tau(f)
    out = np.array([_c_star_scalar(*args) for args in zip(t.ravel(), sw2.ravel(), sb2.ravel(),
                                                           g.ravel())]).reshape(f.shape)
    return out[()] if out.ndim == 0 else out


# ----------------------------------------------------------------------------- slopes, depth scales

def chi_1(f, sigma_w2):
    """Single-input gradient factor per layer chi_1 = sigma_w^2 f (the backward pass is the winner mask)."""
    return _sw2(sigma_w2) * _f(f)


def chi_q(f, sigma_w2):
    """Slope of the variance map chi_q = sigma_w^2 G(f)."""
    return _sw2(sigma_w2) * G(f)


def _chi_c_from(cs, f, sw2, sb2):
    slope = dM_dc(cs, tau(f))
    # a slope rounded above 1 at the stable c* is 1 (ReLU at c* = 1 and sigma_w^2 = 2)
    return np.minimum(np.where(sb2 > 0, sw2 * slope, slope / G(f)), np.where(cs == 1, 1.0, np.inf))


def chi_c(f, sigma_w2, sigma_b2):
    """Slope of the c-map at c*: sigma_w^2 dM/dc(c*) (sigma_b2 > 0) or dM/dc(c*) / G (sigma_b2 = 0)."""
    f, sw2, sb2 = _f(f), _sw2(sigma_w2), _sb2(sigma_b2)
    out = _chi_c_from(c_star(f, sw2, sb2), f, sw2, sb2)
    return out[()] if np.ndim(out) == 0 else out


def _scalar(a):
    a = np.asarray(a, dtype=np.float64)
    return a[()] if a.ndim == 0 else a


def xi_1(f, sigma_w2):
    """Gradient depth scale xi_1 = 1/|ln chi_1| (the sign of ln chi_1 says vanishing or exploding)."""
    return _scalar(gradient_depth_scale(chi_1(f, sigma_w2)))


def xi_q(f, sigma_w2):
    """Variance depth scale xi_q = -1/ln chi_q (inf at the forward-critical sigma_w^2 = 1/G(f)).

    Raises NoFixedPointError where sigma_w^2 G(f) > 1 (no stable fixed point: the variance
    grows without bound).
    """
    gain = _gain(_sw2(sigma_w2), f)
    if np.any(gain > 1):
        raise NoFixedPointError("xi_q needs a stable fixed point: sigma_w2 * G(f) <= 1 "
                                f"(sigma_w2 <= 1/G(f)); got sigma_w2 * G(f) = {gain}")
    return _scalar(depth_scale(gain))


def xi_c(f, sigma_w2, sigma_b2):
    """Correlation depth scale xi_c = -1/ln chi_c at c*."""
    return _scalar(depth_scale(chi_c(f, sigma_w2, sigma_b2)))


def critical_sigma_w2(f):
    """sigma_w^2 on the critical line chi_1 = 1: 1/f (as :func:`meanfield.critical_sigma_w2`)."""
    return 1.0 / _f(f)


def forward_critical_sigma_w2(f):
    """sigma_w^2 where the variance map has slope 1 (chi_q = 1): 1/G(f)."""
    return 1.0 / G(f)


def effective_sigma_w2(density, fan_in, weight_var):
    """Sparse weights as a dense layer: sigma_w,eff^2 = density * fan_in * Var(w).

    density = fraction of non-zero weights per output unit (in-degree K = density * fan_in);
    weight_var = variance of the non-zero weights. A dense init with Var(w) = sigma_w^2/fan_in
    that is then masked gives density * sigma_w^2.
    """
    d = np.asarray(density, dtype=np.float64)
    if not np.all((d > 0) & (d <= 1)):
        raise ValueError(f"density (fraction of non-zero weights) must lie in (0, 1]; got {density}")
    n = np.asarray(fan_in, dtype=np.float64)
    if not np.all(n >= 1):
        raise ValueError(f"fan_in must be >= 1; got {fan_in}")
    v = np.asarray(weight_var, dtype=np.float64)
    if not np.all(np.isfinite(v) & (v > 0)):
        raise ValueError(f"weight_var must be finite and > 0; got {weight_var}")
    out = d * n * v
    return out[()] if out.ndim == 0 else out


# ----------------------------------------------------------------------------- summary

@dataclass(frozen=True)
class KWinnersResult:
    """Mean-field summary of a deep k-WTA network (arrays broadcast from the inputs)."""

    f: np.ndarray
    sigma_w2: np.ndarray
    sigma_b2: np.ndarray
    tau: np.ndarray
    G: np.ndarray
    q_star: np.ndarray
    c_star: np.ndarray
    chi_1: np.ndarray
    chi_c: np.ndarray
    chi_q: np.ndarray
    xi_1: np.ndarray
    xi_c: np.ndarray
    xi_q: np.ndarray
    sigma_w2_forward_critical: np.ndarray
    sigma_w2_critical: np.ndarray


def analyze(f, sigma_w2, sigma_b2=0.05):
    """All k-WTA mean-field quantities at once; NoFixedPointError where q* is not finite.

    Parameters
    ----------
    f : array_like
        Fraction of winners k/n in (0, 1).
    sigma_w2, sigma_b2 : array_like
        Weight variance > 0 and bias variance >= 0 (broadcast with f).

    Returns
    -------
    KWinnersResult
    """
    f, sw2, sb2 = np.broadcast_arrays(_f(f), _sw2(sigma_w2), _sb2(sigma_b2))
    qs = q_star(f, sw2, sb2)
    cs = c_star(f, sw2, sb2)
    cc = _chi_c_from(cs, f, sw2, sb2)
    return KWinnersResult(
        f=f, sigma_w2=sw2, sigma_b2=sb2, tau=tau(f), G=G(f), q_star=np.asarray(qs),
        c_star=np.asarray(cs), chi_1=chi_1(f, sw2), chi_c=np.asarray(cc), chi_q=chi_q(f, sw2),
        xi_1=xi_1(f, sw2), xi_c=_scalar(depth_scale(cc)), xi_q=xi_q(f, sw2),
        sigma_w2_forward_critical=forward_critical_sigma_w2(f),
        sigma_w2_critical=critical_sigma_w2(f),
    )
