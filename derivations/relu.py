"""ReLU networks with dropout: arc-cosine kernel, chi_1 = sigma_w2/(2 rho), critical line.

Assumptions: phi(x) = max(x, 0); inverted dropout with keep probability rho on the post-activation
(g = phi(z) m / rho), independent masks per input, infinite width, fan-in Gaussian weights.
A finite q* needs sigma_w2 < 2 rho (and sigma_b2 > 0 for a non-zero one).

Derived by sympy: the 1-D Gaussian integrals over the half line (q-map, chi_1, chi_q), the fixed
point q* (``solve``), the critical line (``solve`` chi_1 = 1), the orthant probability
P(u1 > 0, u2 > 0) (integrated in polar coordinates over the wedge between the two half-planes; the
wedge's angular bounds theta in (arccos(c) - pi/2, pi/2) are read off geometrically), and the kernel
E[phi(u1) phi(u2)] as the c-integral of that probability. Literature step: Price's identity
d/dc E[phi(u1) phi(u2)] = q E[phi'(u1) phi'(u2)] (Price 1958; Cho and Saul 2009 for the resulting
arc-cosine kernel) with the boundary value 0 at c = -1 (u2 = -u1); the tests check the kernel and
the identity against scipy dblquad.
"""

from __future__ import annotations

import functools

import meanfield
import numpy as np
import sympy as sp
from scipy import stats
from scipy.optimize import brentq

from . import compare, compare_maps_with_core, numeric_twin
from .symbols import E_gauss, E_mask, c, m, q, rho, sigma_b2, sigma_w2, solve_unique, z

cached = functools.lru_cache(maxsize=None)
t = sp.Symbol("t", real=True)
theta = sp.Symbol("theta", real=True)
radius = sp.Symbol("r", positive=True)


def _E_positive(expr_of_z):
    """E over z ~ N(0,1) of a function that vanishes for z < 0 (ReLU branches), mask averaged."""
    return E_gauss(E_mask(expr_of_z), z, 0, sp.oo)


@cached
def q_map() -> sp.Expr:
    """Variance map q -> (sigma_w2/rho) E[relu(sqrt(q) z)^2] + sigma_b2 = sigma_w2 q/(2 rho) + sigma_b2."""
    return sp.simplify(sigma_w2 * _E_positive((sp.sqrt(q) * z * m / rho) ** 2) + sigma_b2)


@cached
def q_star() -> sp.Expr:
    """Fixed point q* = sigma_b2 / (1 - sigma_w2/(2 rho)) (finite for sigma_w2 < 2 rho)."""
    return solve_unique(q_map(), q, q)


@cached
def chi_1() -> sp.Expr:
    """chi_1 = sigma_w2 E[g'^2] = sigma_w2 / (2 rho) (independent of q)."""
    return sp.simplify(sigma_w2 * _E_positive((m / rho) ** 2))


@cached
def chi_q() -> sp.Expr:
    """chi_q = slope of the variance map (the kink contributes phi(0) delta(0) = 0)."""
    return sp.simplify(sp.diff(q_map(), q))


@cached
def critical_line() -> sp.Expr:
    """Critical weight variance: the solution sigma_w2 = 2 rho of chi_1 = 1."""
    return solve_unique(chi_1(), 1, sigma_w2)


@cached
def orthant_probability() -> sp.Expr:
    """E[phi'(u1) phi'(u2)] = P(z1 > 0, c z1 + sqrt(1-c^2) z2 > 0) = (pi - arccos c) / (2 pi).

    Integrated in polar coordinates over the wedge theta in (arccos(c) - pi/2, pi/2).
    """
    density = radius * sp.exp(-radius**2 / 2) / (2 * sp.pi)
    return sp.simplify(sp.integrate(density, (radius, 0, sp.oo), (theta, sp.acos(c) - sp.pi / 2, sp.pi / 2)))


@cached
def kernel() -> sp.Expr:
    """Arc-cosine kernel E[relu(u1) relu(u2)] = q (sqrt(1-c^2) + (pi - arccos c) c) / (2 pi).

    q times the integral of the orthant probability from c = -1 (Price's identity; value 0 there).
    """
    return sp.simplify(q * sp.integrate(orthant_probability().subs(c, t), (t, -1, c)))


@cached
def covariance_map() -> sp.Expr:
    """Covariance map at variance q and correlation c: sigma_w2 E[relu(u1) relu(u2)] + sigma_b2."""
    return sigma_w2 * kernel() + sigma_b2


@cached
def c_map() -> sp.Expr:
    """Correlation map c -> (sigma_w2 q* K(c) + sigma_b2) / q* with K the unit-variance kernel."""
    return sp.simplify(covariance_map().subs(q, q_star()) / q_star())


@cached
def chi_c() -> sp.Expr:
    """Slope of the c-map as a function of c: sigma_w2 (pi - arccos c)/(2 pi) (evaluate at c*)."""
    return sp.simplify(sp.diff(c_map(), c))


@cached
def c_star_equation() -> sp.Eq:
    """The equation c = c_map(c) defining c* (transcendental; solved numerically by ``c_star_numeric``)."""
    return sp.Eq(c, c_map())


_P = ("sigma_w2", "sigma_b2", "rho")
q_map_numeric = numeric_twin(q_map, _P + ("q",))
covariance_map_numeric = numeric_twin(covariance_map, _P + ("q", "c"))
q_star_numeric = numeric_twin(q_star, _P)
chi_1_numeric = numeric_twin(chi_1, _P)
chi_q_numeric = numeric_twin(chi_q, _P)
critical_line_numeric = numeric_twin(critical_line, ("rho",))
c_map_numeric = numeric_twin(c_map, _P + ("c",))
chi_c_numeric = numeric_twin(chi_c, _P + ("c",))
kernel_numeric = numeric_twin(kernel, ("q", "c"))
orthant_probability_numeric = numeric_twin(orthant_probability, ("c",))
c_star_residual_numeric = numeric_twin(lambda: c_star_equation().rhs - c_star_equation().lhs, _P + ("c",))


def c_star_numeric(sigma_w2_, sigma_b2_, rho_):
    """Root of c_star_equation on [-1, 1] (c_map(-1) > -1 and c_map(1) <= 1 whenever q* is finite)."""
    fn = lambda cc: c_star_residual_numeric(sigma_w2_, sigma_b2_, rho_, cc)  # noqa: E731
    if fn(1.0) >= 0.0:
        return 1.0
    return brentq(fn, -1.0, 1.0, xtol=1e-15, rtol=1e-15)


def random_points(rng: np.random.Generator, n: int = 5):
    """rho in [0.5, 1], sigma_w2 in (0.1, 0.95) x 2 rho, sigma_b2 in [0.01, 0.5]."""
    rho_ = rng.uniform(0.5, 1.0, n)
    return list(zip(2 * rho_ * rng.uniform(0.1, 0.95, n), rng.uniform(0.01, 0.5, n), rho_))


def _check_kernels(rng) -> dict[str, float]:
    """Orthant probability vs scipy's bivariate normal CDF, kernel vs the core's covariance map
    at sigma_w2 = 1, sigma_b2 = 0 (which is E[relu(u1) relu(u2)]), at random (q, c)."""
    errs: dict[str, float] = {}
    qs, cs = rng.uniform(0.05, 3.0, 8), rng.uniform(-1.0, 1.0, 8)
    # P(z1 > 0, u2 > 0) = P(z1 < 0, u2 < 0) = CDF at the origin of N(0, [[1, c], [c, 1]])
    orthant = [stats.multivariate_normal([0.0, 0.0], [[1.0, cc], [cc, 1.0]]).cdf([0.0, 0.0]) for cc in cs]
    compare(errs, "orthant_probability", f"at c={cs}", orthant_probability_numeric(cs), orthant, rtol=1e-10)
    compare(errs, "kernel", f"at q={qs}, c={cs}", kernel_numeric(qs, cs),
            meanfield.covariance_map(q=qs, c=cs, activation="relu", sigma_w2=1.0, sigma_b2=0.0, keep=1.0),
            rtol=1e-10)  # the kernel vanishes like (1 + c)^(3/2) at c = -1: cancellation near there
    return errs


def _check_maps(rng) -> dict[str, float]:
    """Variance, covariance and correlation maps vs meanfield's at random (q, c)."""
    return compare_maps_with_core(
        {}, rng, "relu", random_points(rng, 3), rtol=1e-12, q_map=("q_map", q_map_numeric),
        covariance_map=("covariance_map", covariance_map_numeric),
        c_map=("c_map", lambda sw, sb, rho_, q_star_, cc: c_map_numeric(sw, sb, rho_, cc)))


def _check_fixed_points(rng) -> dict[str, float]:
    """q*, c* (root of c_star_equation), the slopes and the critical line vs meanfield."""
    errs: dict[str, float] = {}
    for sw, sb, rho_ in random_points(rng):
        res = meanfield.analyze(activation="relu", sigma_w2=sw, sigma_b2=sb, keep=rho_, noise="dropout")
        cs = c_star_numeric(sw, sb, rho_)
        where = f"at sigma_w2={sw}, sigma_b2={sb}, rho={rho_}"
        compare(errs, "q_star", where, q_star_numeric(sw, sb, rho_), res.q_star, rtol=1e-9)
        compare(errs, "chi_1", where, chi_1_numeric(sw, sb, rho_), res.chi_1, rtol=1e-9)
        compare(errs, "chi_q", where, chi_q_numeric(sw, sb, rho_), res.chi_q, rtol=1e-9)
        compare(errs, "c_star_equation", where, cs, res.c_star, rtol=1e-7)
        compare(errs, "chi_c", where, chi_c_numeric(sw, sb, rho_, cs), res.chi_c, rtol=1e-7)
        compare(errs, "critical_line", f"at sigma_b2={sb}, rho={rho_}", critical_line_numeric(rho_),
                meanfield.critical_sigma_w2("relu", sb, rho_, noise="dropout"), rtol=1e-10)
    return errs


DERIVATIONS = [
    (q_map, _check_maps), (covariance_map, _check_maps), (c_map, _check_maps),
    (orthant_probability, _check_kernels), (kernel, _check_kernels),
    (q_star, _check_fixed_points), (chi_1, _check_fixed_points), (chi_q, _check_fixed_points),
    (critical_line, _check_fixed_points), (chi_c, _check_fixed_points),
    (c_star_equation, _check_fixed_points),
]
