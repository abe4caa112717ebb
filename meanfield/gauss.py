"""Gaussian expectations to near machine precision, vectorised over parameter arrays.

Three convergence-tested rules, all nested (halving the step reuses every earlier node):

- ``"trapezoid"``: the trapezoid rule on z in [-Z, Z]. For an integrand analytic in the strip
  |Im z| < d its error is ~exp(-2 pi d / h), far better than Gauss-Hermite when poles sit close to
  the real axis (tanh at variance q has poles at z = +-i pi / (2 sqrt q); THEORY §9).
- ``"hermite"``: Gauss-Hermite (probabilists'), degree doubled until converged; best for entire
  integrands (erf, gelu).
- ``"piecewise"``: kink-aware tanh-sinh quadrature on the pieces between kinks (x positions where
  the integrand is not smooth). Double-exponential nodes cluster at the kinks, so both jumps in a
  derivative and integrable endpoint singularities (|x|^(s-2)) converge exponentially.

Each rule is refined until two successive levels agree to ``rtol`` relative to E|f|; failure to
converge raises :class:`ConvergenceError` rather than returning a poor number.
"""
from __future__ import annotations

import numpy as np

Z_MAX = 10.0  # N(0,1) mass beyond 10 sigma is 1.5e-23: below float64 resolution of any moment here
RTOL = 1e-13
_SQRT_2PI = np.sqrt(2.0 * np.pi)


class ConvergenceError(RuntimeError):
    """A quadrature rule did not reach the requested tolerance."""


def _pdf(z):
    return np.exp(-0.5 * z * z) / _SQRT_2PI


def _converged(old, new, scale, rtol, prev_delta=None):
    """Stop when two levels agree to rtol, or when the rule is visibly in its exponential regime.

    For the trapezoid and tanh-sinh rules halving h squares the error, so the difference between
    levels estimates the error of the coarser one: if the last difference d_k is tiny compared with
    the one before (d_k <= d_{k-1}^1.5) then the finer level's error is ~d_k^2, and d_k^2 <= rtol
    suffices. Returns (converged, delta).
    """
    delta = np.max(np.abs(new - old) / (scale + 1e-300))
    if delta <= rtol:
        return True, delta
    ok = prev_delta is not None and delta <= prev_delta**1.5 and delta * delta <= rtol * 1e-2
    return ok, delta


def _trapezoid(f, mean, sd, rtol, floor=0.0, strip=np.inf, max_level=10):
    """Trapezoid rule on z in [-Z, Z] with nested halving.

    ``strip`` (x units) is the half-width of the strip where f is analytic (tanh: pi/2). The error
    at step h is then ~A exp(-2 pi d / h), d = strip / sd, so the first step is chosen to make
    that ~1e-6 rtol. The sums over every 2nd and 4th node (steps 2h, 4h) come free and give
    differences d1 = |S_4h - S_2h|, d2 = |S_2h - S_h|; in the exponential regime the error of S_h
    is ~d2^3 / d1^2 (A eliminated). If that is not below rtol, the step is halved until two
    levels agree (see _converged).
    """
    d = strip / np.max(sd) if np.size(sd) else np.inf
    h = min(0.5, 2 * np.pi * d / np.log(1e6 / rtol))
    n = 4 * np.ceil(Z_MAX / (4 * h))
    k = np.arange(-n, n + 1)
    z = k * h
    vals = f(mean[..., None] + sd[..., None] * z) * _pdf(z)
    total, absum = vals.sum(-1), np.abs(vals).sum(-1)
    est = total * h
    scale = absum * h + floor
    s2 = 2 * h * vals[..., k % 2 == 0].sum(-1)
    s4 = 4 * h * vals[..., k % 4 == 0].sum(-1)
    d1 = np.abs(s2 - s4) / scale
    d2 = np.abs(est - s2) / scale
    if np.all((d2 <= rtol) | ((d2 < d1) & (d2 ** 3 <= rtol * d1 ** 2))):
        return est
    delta, zmax = np.max(d2), z[-1]
    for _ in range(max_level):
        h /= 2
        z_new = np.arange(-zmax + h, zmax, 2 * h)  # the midpoints a halving adds
        vals = f(mean[..., None] + sd[..., None] * z_new) * _pdf(z_new)
        total, absum = total + vals.sum(-1), absum + np.abs(vals).sum(-1)
        new = total * h
        done, delta = _converged(est, new, absum * h + floor, rtol, delta)
        if done:
            return new
        est = new
    raise ConvergenceError(f"trapezoid rule did not converge to rtol={rtol} with step {h}")


_HERMITE_CACHE: dict[int, tuple[np.ndarray, np.ndarray]] = {}


def _hermite_nodes(n):
    if n not in _HERMITE_CACHE:
        from scipy.special import roots_hermitenorm  # on first use: keeps the CLI start-up light
        z, w = roots_hermitenorm(n)
        _HERMITE_CACHE[n] = (z, w / _SQRT_2PI)
    return _HERMITE_CACHE[n]


def _hermite(f, mean, sd, rtol, floor=0.0, max_degree=2048):
    est = None
    n = 32
    while n <= max_degree:
        z, w = _hermite_nodes(n)
        vals = f(mean[..., None] + sd[..., None] * z) * w
        new = vals.sum(-1)
        if est is not None and _converged(est, new, np.abs(vals).sum(-1) + floor, rtol)[0]:
            return new
        est, n = new, 2 * n
    raise ConvergenceError(f"Gauss-Hermite did not converge to rtol={rtol} with {max_degree} nodes")


def _piecewise(f, mean, sd, kinks, rtol, floor=0.0, t_max=4.0, max_level=9):
    """Sum over the pieces [a, b] between kinks of tanh-sinh rules, halving the step until converged.

    Nodes are placed as offsets from the nearer end of each piece, so a kink value (phi = 0 for
    |phi|^(s-2), say) is never hit exactly and never lost to rounding.
    """
    lo, hi = mean - Z_MAX * sd, mean + Z_MAX * sd
    edges = [lo] + [np.clip(np.full_like(mean, k), lo, hi) for k in sorted(kinks)] + [hi]
    m, inv = mean[..., None], 1.0 / sd[..., None]

    def partial(t):
        s = 0.5 * np.pi * np.sinh(t)
        off = 0.5 * np.exp(-s) / np.cosh(s)  # (1 - tanh s)/2 without cancellation
        with np.errstate(over="ignore"):  # cosh(s)^2 = inf far out: the weight is 0 there
            wt = 0.5 * np.pi * np.cosh(t) / np.cosh(s) ** 2 * np.where(t == 0, 0.5, 1.0)
        tot = ab = 0.0
        for a, b in zip(edges[:-1], edges[1:]):
            half = 0.5 * (b - a)[..., None]
            for x in (a[..., None] + 2 * half * off, b[..., None] - 2 * half * off):
                v = f(x) * (_pdf((x - m) * inv) * inv * half * wt)
                tot, ab = tot + v.sum(-1), ab + np.abs(v).sum(-1)
        return tot, ab

    h = 1.0
    total, absum = partial(np.arange(0.0, t_max + h / 2, h))
    delta = None
    for _ in range(max_level):
        h /= 2  # a halving adds the odd multiples of the new step: S_new = S_old / 2 + h * sum_new
        t_new, a_new = partial(np.arange(h, t_max, 2 * h))
        new, absum = 0.5 * total + h * t_new, 0.5 * absum + h * a_new
        done, delta = _converged(total, new, absum + floor, rtol, delta)
        if done:
            return new
        total = new
    raise ConvergenceError(f"tanh-sinh did not converge to rtol={rtol} (step {h})")


def expect(f, var, mean=0.0, *, rule="trapezoid", kinks=(), rtol=RTOL, floor=0.0, singular=False,
           strip=np.inf):
    """E[f(mean + sqrt(var) z)], z ~ N(0, 1), elementwise over broadcast(mean, var).

    ``f`` maps an array x of shape S + (n,) to values of shape (k,) + S + (n,) or S + (n,); the
    result has shape (k,) + S or S. ``kinks`` (x positions) are honoured by the piecewise rule,
    which is used whenever kinks are given. var = 0 gives f(mean) exactly. Convergence is
    judged relative to E|f| + ``floor`` (an absolute scale for integrals that cancel).
    ``singular=True`` declares integrable power singularities |x - kink|^p, p > -1, at kinks:
    tanh-sinh nodes then reach to ~1e-300 of the kink, since the mass the rule cannot see
    within eps of it is ~eps^(1+p). ``strip``: half-width (in x) of the strip around the real
    axis where f is analytic, which sets the trapezoid rule's first step.
    """
    mean, var = np.broadcast_arrays(np.asarray(mean, float), np.asarray(var, float))
    sd = np.sqrt(var)
    zero = sd == 0
    if np.any(zero):  # a degenerate Gaussian is a point mass; keep the rules' sd > 0
        sd = np.where(zero, 1.0, sd)
    if kinks:
        out = _piecewise(f, mean, sd, tuple(kinks), rtol, floor, t_max=6.2 if singular else 4.0)
    elif rule == "trapezoid":
        out = _trapezoid(f, mean, sd, rtol, floor, strip)
    elif rule == "hermite":
        out = _hermite(f, mean, sd, rtol, floor)
    else:
        raise ValueError(f"rule must be 'trapezoid', 'hermite' or 'piecewise' (with kinks), got {rule!r}")
    if np.any(zero):
        point = f(mean[..., None])[..., 0]
        out = np.where(zero, point, out)
    return out


def expect_pair(f, g, q, c, **kw):
    """E[f(u1) g(u2)] for (u1, u2) centred Gaussian, Var = q, correlation c (stacked outputs).

    Conditioning on u1 = sqrt(q) z1 gives u2 = c u1 + sqrt(q (1 - c^2)) z2: an inner 1-D
    expectation of g (smooth in u1 even when g has kinks), then an outer one of f times it.
    """
    q, c = np.broadcast_arrays(np.asarray(q, float), np.asarray(c, float))
    inner_var = (q * (1.0 - c * c))[..., None]
    cc = c[..., None]

    # Absolute scales for the convergence tests: an inner integral far out in the u1 tail (or
    # one that cancels) need only be accurate relative to g's typical size sqrt(E g^2), and the
    # outer one relative to |E f g| <= sqrt(E f^2 E g^2).
    g_scale = np.sqrt(expect(lambda x: g(x) ** 2, q, **kw))
    f_scale = np.sqrt(expect(lambda x: f(x) ** 2, q, **kw))
    inner_floor = g_scale[..., None]

    def outer(x1):
        return f(x1) * expect(g, inner_var, cc * x1, floor=inner_floor, **kw)

    return expect(outer, q, floor=f_scale * g_scale, **kw)
