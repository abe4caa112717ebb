"""Forward maps, fixed points, slopes and depth scales (THEORY §3), vectorised over parameters.

Every public function takes ``(activation, sigma_w2, sigma_b2, keep=1.0, *, noise="dropout",
s=2.0, backward="true", drop=None)``; numeric parameters broadcast like numpy arrays. ``keep`` is
the keep probability rho; ``drop`` = 1 - rho may be given instead (not both).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .activations import get_activation
from .gauss import RTOL
from .noise import (Q_MIN, Noise, act_moment, deriv_second_moment, make_noise, pair_moments,
                    second_moment, second_moment_and_slope, second_moment_slope)

Q_CAP = 1e12  # an unbounded variance map still above the diagonal here has no finite fixed point
_MAX_ITER = 200


class NoFixedPointError(ValueError):
    """The variance map has no finite stable fixed point for some parameters."""


@dataclass(frozen=True)
class Params:
    """Validated, broadcast parameters of a (activation, noise, sigma_w^2, sigma_b^2, keep) family."""

    act: object
    noise: Noise
    sigma_w2: np.ndarray
    sigma_b2: np.ndarray
    keep: np.ndarray

    @property
    def shape(self):
        return self.sigma_w2.shape

    def take(self, idx):
        return Params(self.act, self.noise, self.sigma_w2[idx], self.sigma_b2[idx], self.keep[idx])


def _finite_array(name, value):
    try:
        arr = np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number or an array of numbers, got {value!r}") from None
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return arr


def checked(name, value, valid, ok):
    """A finite float array whose every element passes ``ok``; else ValueError "name must <valid>"."""
    arr = _finite_array(name, value)
    if not np.all(ok(arr)):
        raise ValueError(f"{name} must {valid}, got {value!r}")
    return arr


def params(activation, sigma_w2, sigma_b2, keep=None, *, noise="dropout", s=2.0, backward="true",
           drop=None) -> Params:
    """Validate and broadcast the parameters; errors name the parameter and its valid range."""
    act = get_activation(activation)
    nz = make_noise(noise, s, backward)
    sw = checked("sigma_w2 (weight variance)", sigma_w2, "be > 0", lambda a: a > 0)
    sb = checked("sigma_b2 (bias variance)", sigma_b2, "be >= 0", lambda a: a >= 0)
    if keep is not None and drop is not None:
        raise ValueError("give keep (keep probability rho) or drop (= 1 - rho), not both")
    if drop is not None:
        k = 1.0 - checked("drop (drop probability 1 - rho)", drop, "lie in [0, 1)",
                          lambda a: (a >= 0) & (a < 1))
    else:
        k = checked("keep (keep probability rho)", 1.0 if keep is None else keep, "lie in (0, 1]",
                    lambda a: (a > 0) & (a <= 1))
    if nz.kind == "none" and np.any(k != 1):
        raise ValueError("noise='none' needs keep = 1; use noise='dropout' or 'sparseout' for keep < 1")
    sw, sb, k = np.broadcast_arrays(sw, sb, k)
    return Params(act, nz, sw.astype(float), sb.astype(float), k.astype(float))


def _with_params(fn):
    """Decorator: public signature (activation, sigma_w2, sigma_b2, keep, **noise) -> fn(Params)."""
    def wrapped(activation, sigma_w2, sigma_b2, keep=None, *, noise="dropout", s=2.0,
                backward="true", drop=None):
        return fn(params(activation, sigma_w2, sigma_b2, keep, noise=noise, s=s,
                         backward=backward, drop=drop))
    wrapped.__name__, wrapped.__qualname__, wrapped.__doc__ = fn.__name__, fn.__name__, fn.__doc__
    wrapped.__module__ = fn.__module__
    return wrapped


# ---------------------------------------------------------------------------------------------
# maps
def q_map(q, activation, sigma_w2, sigma_b2, keep=None, **kw):
    """Variance map q^{l+1} = sigma_w^2 E_{z,xi}[g(sqrt(q^l) z, xi)^2] + sigma_b^2."""
    p = params(activation, sigma_w2, sigma_b2, keep, **kw)
    q = _finite_array("q", q)
    if np.any(q < 0):
        raise ValueError(f"q (pre-activation variance) must be >= 0, got {q!r}")
    return p.sigma_w2 * second_moment(p.act, p.noise, q, p.keep) + p.sigma_b2


def covariance_map(q, c, activation, sigma_w2, sigma_b2, keep=None, **kw):
    """q_ab^{l+1} = sigma_w^2 E[gbar(u1) gbar(u2)] + sigma_b^2 at q_aa = q_bb = q, correlation c."""
    p = params(activation, sigma_w2, sigma_b2, keep, **kw)
    q, c = _check_qc(q, c)
    return p.sigma_w2 * pair_moments(p.act, q, c, ("K",))[0] + p.sigma_b2


def c_map(c, q, activation, sigma_w2, sigma_b2, keep=None, **kw):
    """Correlation map c^{l+1} = q_ab^{l+1} / q^{l+1} for two inputs of equal variance q."""
    return covariance_map(q, c, activation, sigma_w2, sigma_b2, keep, **kw) / q_map(
        q, activation, sigma_w2, sigma_b2, keep, **kw)


def _check_qc(q, c):
    q, c = _finite_array("q", q), _finite_array("c", c)
    if np.any(q < 0):
        raise ValueError(f"q (pre-activation variance) must be >= 0, got {q!r}")
    if np.any(np.abs(c) > 1):
        raise ValueError(f"c (correlation) must lie in [-1, 1], got {c!r}")
    return q, c


# ---------------------------------------------------------------------------------------------
# fixed points
def _safeguarded_newton(fg, lo, hi, x, tol, what):
    """Vectorised Newton on f with f(lo) >= 0 > f(hi) (or f(hi) = 0 taken as the negative side).

    ``fg(x, idx)`` returns (f, f') at the points idx. Steps leaving the bracket become bisections,
    so convergence is guaranteed. A point stops when a Newton step is below ``tol`` (relative; the
    returned iterate then carries an error ~tol^2 by quadratic convergence), when its bracket has
    shrunk to rounding level, or when f = 0.
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


def _q_star(p: Params, on_missing="raise"):
    """Stable fixed point of the variance map; NaN (or an error) where none is finite."""
    sw, sb, k = (a.ravel() for a in (p.sigma_w2, p.sigma_b2, p.keep))
    act, nz = p.act, p.noise

    def F(q, idx):
        return sw[idx] * second_moment(act, nz, q, k[idx]) + sb[idx] - q

    def fg(q, idx):
        m2, dm2 = second_moment_and_slope(act, nz, q, k[idx])
        return sw[idx] * m2 + sb[idx] - q, sw[idx] * dm2 - 1

    n = sw.size
    lo = sb.copy()
    q_out = np.full(n, np.nan)
    # sigma_b^2 = 0 and phi(0) = 0: q = 0 is fixed; it is the attractor when the slope there is < 1
    at_zero = F(lo, np.arange(n)) == 0
    if np.any(at_zero):
        iz = np.flatnonzero(at_zero)
        slope0 = sw[iz] * second_moment_slope(act, nz, np.zeros(iz.size), k[iz])
        stays = slope0 < 1
        q_out[iz[stays]] = 0.0
        lo[iz[~stays]] = 1e-300
    todo = np.flatnonzero(np.isnan(q_out))
    hi = np.full(n, np.nan)
    if act.bounded:  # |phi| <= 1, so E[g^2] < 1/keep and the map ends below sigma_w^2/keep + sigma_b^2
        hi[todo] = sw[todo] / k[todo] + sb[todo] + 1.0
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
        _raise_missing(p, missing)
    solve = np.setdiff1d(todo, missing)
    if solve.size:
        x0 = 0.5 * (lo[solve] + hi[solve])
        q_out[solve] = _safeguarded_newton(lambda q, i: fg(q, solve[i]), lo[solve].copy(),
                                           hi[solve].copy(), x0, 1e-9, "q*")
    return q_out.reshape(p.shape)


def _raise_missing(p: Params, missing):
    flat = [a.ravel() for a in (p.sigma_w2, p.sigma_b2, p.keep)]
    i = missing[0]
    hint = ""
    if p.act.name in ("relu", "linear") and p.noise.kind != "sparseout":
        slope = "2 keep" if p.act.name == "relu" else "keep"
        hint = f" ({p.act.name}: a finite q* needs sigma_w2 < {slope})"
    raise NoFixedPointError(
        f"no finite fixed point q*: the variance map stays above the diagonal up to q = {Q_CAP:g} "
        f"for activation={p.act.name!r}, noise={p.noise.kind!r}, sigma_w2={flat[0][i]:g}, "
        f"sigma_b2={flat[1][i]:g}, keep={flat[2][i]:g}{hint}; {missing.size} parameter point(s) "
        "affected. Pass on_missing='nan' to analyze() to mark them instead.")


def _c_star(p: Params, q, chi1, pair=None):
    """Stable fixed point of the correlation map at q* (the largest root in [0, 1]) and chi_c there.

    The c-map is increasing and convex on [0, 1] (a power series in c with non-negative
    coefficients), so G(c) = cmap(c) - c has exactly one sign change on [0, 1) whenever
    G(1) < 0 (noise) or the slope at c = 1 exceeds 1 (chaotic phase without noise).
    ``pair(q, c, keys, rtol)`` supplies the pair integrals (default: quadrature).
    """
    if pair is None:
        def pair(qq, cc, keys, rtol):
            return pair_moments(p.act, qq, cc, keys, rtol=rtol)
    sw, sb = p.sigma_w2.ravel(), p.sigma_b2.ravel()
    q = q.ravel()
    n = q.size
    c_out = np.full(n, np.nan)
    chic = np.full(n, np.nan)
    ok = np.flatnonzero(np.isfinite(q))
    noiseless = (p.keep.ravel() == 1) | (p.noise.kind == "none")
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
            K, Kd = pair(qs[i], c, ("K", "Kd"), rtol)
            return (sw[idx] * K + sb[idx]) / qs[i] - c, sw[idx] * Kd - 1
        return fg

    every = np.arange(solve.size)
    g0, dg0 = fg_at(1e-6)(np.zeros(solve.size), every)
    zero_root = (g0 == 0) & (dg0 <= 0)  # c = 0 fixed and attracting from above
    # Start from one map step below c = 1, C(1) >= c* (C is increasing); Newton on cheap
    # quadrature (rtol 1e-6) to ~1e-6, then at full accuracy from there: one or two steps, with
    # [0, 1] still the bracket so a poor start cannot mislead it.
    c1_map = (sw[solve] * act_moment(p.act, "A2", qs) + sb[solve]) / qs
    x0 = np.where(noiseless[solve], 0.5, np.clip(c1_map, 0.0, 1.0))
    c1 = _safeguarded_newton(fg_at(1e-6), np.zeros(solve.size), np.ones(solve.size), x0, 1e-6, "c*")
    c_sol = _safeguarded_newton(fg_at(RTOL), np.zeros(solve.size), np.ones(solve.size), c1,
                                1e-8, "c*")
    chic[solve] = sw[solve] * pair(qs, c_sol, ("Kd",), RTOL)[0]
    c_sol[zero_root] = 0.0
    c_out[solve] = c_sol
    return c_out.reshape(p.shape), chic.reshape(p.shape)


# ---------------------------------------------------------------------------------------------
# depth scales
def depth_scale(chi):
    """xi = -1 / ln chi for a contracting slope (inf at chi = 1); used for xi_q and xi_c."""
    chi = np.asarray(chi, float)
    with np.errstate(divide="ignore"):
        return np.where(chi == 1, np.inf, -1.0 / np.log(chi))


def gradient_depth_scale(chi_1):
    """xi_1 = 1 / |ln chi_1|; the sign of ln chi_1 says vanishing (< 0) or exploding (> 0)."""
    chi_1 = np.asarray(chi_1, float)
    with np.errstate(divide="ignore"):
        return np.where(chi_1 == 1, np.inf, 1.0 / np.abs(np.log(chi_1)))


@_with_params
def q_star(p):
    """q* = sigma_w^2 E[g(sqrt(q*) z)^2] + sigma_b^2, the stable fixed point of the variance map."""
    return _q_star(p)


@_with_params
def chi_1(p):
    """chi_1 = sigma_w^2 E[g'(sqrt(q*) z, xi)^2]; dropout: (sigma_w^2/rho) E[phi'^2]."""
    return p.sigma_w2 * deriv_second_moment(p.act, p.noise, _q_star(p), p.keep)


@_with_params
def chi_q(p):
    """chi_q = sigma_w^2 E[g'^2 + g g''] at q*: the slope of the variance map at its fixed point."""
    return p.sigma_w2 * second_moment_slope(p.act, p.noise, _q_star(p), p.keep)


@_with_params
def c_star(p):
    """c*: stable fixed point of c -> (sigma_w^2 E[phi(u1) phi(u2)] + sigma_b^2) / q* at q*."""
    return analyze_params(p).c_star


@_with_params
def chi_c(p):
    """chi_c = chi_2 = sigma_w^2 E[phi'(u1) phi'(u2)] at (q*, c*)."""
    return analyze_params(p).chi_c


@dataclass(frozen=True)
class MeanFieldResult:
    """Fixed points, slopes and depth scales (arrays shaped like the broadcast inputs).

    xi_q = -1/ln chi_q, xi_c = -1/ln chi_c, xi_1 = 1/|ln chi_1|. Entries without a finite q*
    (only with on_missing='nan') are NaN and flagged False in ``has_fixed_point``.
    """

    activation: str
    noise: str
    s: float
    backward: str
    sigma_w2: np.ndarray
    sigma_b2: np.ndarray
    keep: np.ndarray
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
    def drop(self):
        """Drop probability 1 - rho (PyTorch's p, Keras' rate)."""
        return 1.0 - self.keep

    @property
    def chi_2(self):
        """Alias: chi_2 = chi_c, the pair-gradient factor under GIA."""
        return self.chi_c

    def records(self):
        """One dict per parameter point (inputs and results), for JSON or tables."""
        names = ("sigma_w2", "sigma_b2", "keep", "q_star", "c_star", "chi_1", "chi_c", "chi_q",
                 "xi_q", "xi_c", "xi_1")
        cols = [np.broadcast_to(getattr(self, n), self.q_star.shape).ravel() for n in names]
        fp = self.has_fixed_point.ravel()
        out = []
        for i in range(self.q_star.size):
            rec = {"activation": self.activation, "noise": self.noise}
            if self.noise == "sparseout":
                rec.update(s=self.s, backward=self.backward)
            rec.update({n: float(col[i]) for n, col in zip(names, cols)})
            rec["drop"] = 1.0 - rec["keep"]
            rec["has_fixed_point"] = bool(fp[i])
            out.append(rec)
        return out


def analyze_params(p: Params, on_missing="raise", pair=None, q=None) -> MeanFieldResult:
    """analyze() on validated parameters; ``pair`` overrides the pair integrals (see _c_star) and
    ``q`` passes q* when it is already known."""
    if q is None:
        q = _q_star(p, on_missing)
    ok = np.isfinite(q)
    qz = np.where(ok, q, 1.0)  # placeholders where no q* exists; masked below
    chi1 = np.where(ok, p.sigma_w2 * deriv_second_moment(p.act, p.noise, qz, p.keep), np.nan)
    chiq = np.where(ok, p.sigma_w2 * second_moment_slope(p.act, p.noise, qz, p.keep), np.nan)
    cs, chic = _c_star(p, q, chi1, pair)
    return MeanFieldResult(
        p.act.name, p.noise.kind, p.noise.s, p.noise.backward, p.sigma_w2, p.sigma_b2, p.keep,
        q, cs, chi1, chic, chiq, depth_scale(chiq), depth_scale(chic), gradient_depth_scale(chi1), ok)


def analyze(activation="tanh", sigma_w2=1.0, sigma_b2=0.05, keep=None, *, noise="dropout", s=2.0,
            backward="true", drop=None, on_missing="raise") -> MeanFieldResult:
    """Everything at once: q*, c*, chi_1, chi_c, chi_q and the depth scales xi_q, xi_c, xi_1.

    ``keep`` is the keep probability rho (default 1: no noise); ``drop`` = 1 - rho instead.
    ``on_missing='raise'`` raises :class:`NoFixedPointError` if any point has no finite q*;
    ``'nan'`` marks such points NaN and False in ``has_fixed_point``.
    """
    if on_missing not in ("raise", "nan"):
        raise ValueError(f"on_missing must be 'raise' or 'nan', got {on_missing!r}")
    p = params(activation, sigma_w2, sigma_b2, keep, noise=noise, s=s, backward=backward, drop=drop)
    return analyze_params(p, on_missing)
