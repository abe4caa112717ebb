"""erf networks with dropout: the arcsin kernel of the covariance map.

Assumptions: phi(x) = erf(a x) with a = sqrt(pi)/2 by default (slope 1 at the origin, as in the
numeric core; pass ``a_scale=a`` for the general symbol ``a``), inverted dropout with keep
probability rho (g = phi(z) m / rho), independent masks per input, infinite width. The maps below
are written at a general variance q; evaluate them at q = q* (``q_star_numeric``).

Derived by sympy: E[phi'(u1) phi'(u2)] as a 2-D Gaussian integral of an exponential of a quadratic
form (one lemma integrated by sympy, applied for z2 then z1); then the covariance kernel
E[phi(u1) phi(u2)] = integral_0^{q c} E[phi'(u1) phi'(u2)] d(q_12) by sympy's integrate, giving
(2/pi) arcsin(2 a^2 q c / (1 + 2 a^2 q)). Literature step: Price's identity
d/dq_12 E[phi(u1) phi(u2)] = E[phi'(u1) phi'(u2)] (Price 1958; Williams 1997 for this kernel) with
E[phi(u1) phi(u2)] = E[phi]^2 = 0 at q_12 = 0 (phi odd); the integral is done for c > 0 and extends
to c < 0 by oddness. The tests check the kernel against scipy dblquad.
"""

from __future__ import annotations

import functools

import meanfield
import numpy as np
import sympy as sp
from scipy.optimize import brentq

from . import compare, compare_maps_with_core, numeric_twin
from .symbols import (E_gauss_exp_quadratic, E_mask, c, m, pair_inputs, q, rho, sigma_b2,
                      sigma_w2, z1, z2)

cached = functools.lru_cache(maxsize=None)
a = sp.Symbol("a", positive=True)
A_DEFAULT = sp.sqrt(sp.pi) / 2
x = sp.Symbol("x", real=True)
t = sp.Symbol("t", positive=True)


def phi(a_scale=A_DEFAULT):
    """The activation erf(a x)."""
    return sp.erf(a_scale * x)


@cached
def _derivative_kernel_general() -> sp.Expr:
    dphi = sp.diff(phi(a), x)
    u1, u2 = pair_inputs()
    inner = sp.simplify(E_gauss_exp_quadratic(dphi.subs(x, u1) * dphi.subs(x, u2), z2))
    return sp.powsimp(sp.simplify(E_gauss_exp_quadratic(inner, z1)), force=True)


@cached
def derivative_kernel(a_scale=A_DEFAULT) -> sp.Expr:
    """E[phi'(u1) phi'(u2)] = (4 a^2/pi) / sqrt((1 + 2 a^2 q)^2 - 4 a^4 q^2 c^2)."""
    return sp.simplify(_derivative_kernel_general().subs(a, a_scale))


@cached
def _kernel_general() -> sp.Expr:
    dk = _derivative_kernel_general()
    pref = sp.Mul(*[f for f in sp.Mul.make_args(dk) if not f.has(c)])
    (root,) = [f for f in sp.Mul.make_args(dk) if f.has(c)]
    X = sp.expand(root.base)  # dk = pref * X^(-1/2), X = P^2 - B^2 q_12^2 with q_12 = q c
    P = sp.sqrt(sp.factor(X.subs(c, 0)))
    B = sp.sqrt(-X.coeff(c, 2) / q**2)
    assert sp.expand(P**2 - B**2 * (q * c) ** 2 - X) == 0
    Ps, Bs, T = sp.Symbol("P", positive=True), sp.Symbol("B", positive=True), sp.Symbol("T", positive=True)
    integral = sp.integrate(1 / sp.sqrt(Ps**2 - Bs**2 * t**2), (t, 0, T), conds="none")
    return sp.simplify(pref * integral.subs({Ps: P, Bs: B, T: q * c}))


@cached
def kernel(a_scale=A_DEFAULT) -> sp.Expr:
    """Arcsin kernel E[phi(u1) phi(u2)] = (2/pi) arcsin(2 a^2 q c / (1 + 2 a^2 q))."""
    return sp.simplify(_kernel_general().subs(a, a_scale))


@cached
def second_moment(a_scale=A_DEFAULT) -> sp.Expr:
    """E[phi(sqrt(q) z)^2] = kernel at c = 1."""
    return sp.simplify(kernel(a_scale).subs(c, 1))


@cached
def q_map(a_scale=A_DEFAULT) -> sp.Expr:
    """Variance map q -> (sigma_w2/rho) E[phi^2] + sigma_b2 (mask averaged by sympy)."""
    return sp.simplify(sigma_w2 * E_mask((m / rho) ** 2) * second_moment(a_scale) + sigma_b2)


@cached
def covariance_map(a_scale=A_DEFAULT) -> sp.Expr:
    """Covariance map at variance q, correlation c: sigma_w2 E[gbar(u1) gbar(u2)] + sigma_b2, gbar = phi."""
    gbar = E_mask(m / rho)  # = 1: the mask averages out of gbar
    return sp.simplify(sigma_w2 * gbar**2 * kernel(a_scale) + sigma_b2)


@cached
def c_map(a_scale=A_DEFAULT) -> sp.Expr:
    """Correlation map c -> covariance_map / q (evaluate at q = q*)."""
    return sp.simplify(covariance_map(a_scale) / q)


@cached
def chi_1(a_scale=A_DEFAULT) -> sp.Expr:
    """chi_1 = (sigma_w2/rho) E[phi'^2] = sigma_w2 / (rho sqrt(1 + pi q)) for the default a (at q = q*)."""
    return sp.simplify(sigma_w2 * E_mask((m / rho) ** 2) * derivative_kernel(a_scale).subs(c, 1))


@cached
def chi_c(a_scale=A_DEFAULT) -> sp.Expr:
    """chi_c(c) = slope of the c-map (at q = q*, evaluate at c = c*)."""
    return sp.simplify(sp.diff(c_map(a_scale), c))


@cached
def chi_q(a_scale=A_DEFAULT) -> sp.Expr:
    """chi_q = slope of the variance map (at q = q*)."""
    return sp.simplify(sp.diff(q_map(a_scale), q))


_P = ("sigma_w2", "sigma_b2", "rho")
q_map_numeric = numeric_twin(q_map, _P + ("q",))
covariance_map_numeric = numeric_twin(covariance_map, _P + ("q", "c"))
c_map_numeric = numeric_twin(c_map, _P + ("q", "c"))
chi_1_numeric = numeric_twin(chi_1, _P + ("q",))
chi_c_numeric = numeric_twin(chi_c, _P + ("q", "c"))
chi_q_numeric = numeric_twin(chi_q, _P + ("q",))
kernel_numeric = numeric_twin(kernel, ("q", "c"))
derivative_kernel_numeric = numeric_twin(derivative_kernel, ("q", "c"))
second_moment_numeric = numeric_twin(second_moment, ("q",))


def q_star_numeric(sigma_w2_, sigma_b2_, rho_):
    """Fixed point of the (increasing, concave, bounded) variance map: a root in (0, sigma_w2/rho + sigma_b2]."""
    hi = sigma_w2_ / rho_ + sigma_b2_
    return brentq(lambda qq: q_map_numeric(sigma_w2_, sigma_b2_, rho_, qq) - qq, 1e-300, hi,
                  xtol=1e-300, rtol=1e-15)


def c_star_numeric(sigma_w2_, sigma_b2_, rho_):
    """Stable fixed point of the c-map in (0, 1] (the c-map is convex increasing there, c_map(0) > 0)."""
    qs = q_star_numeric(sigma_w2_, sigma_b2_, rho_)
    fn = lambda cc: c_map_numeric(sigma_w2_, sigma_b2_, rho_, qs, cc) - cc  # noqa: E731
    hi = 1.0
    if abs(fn(1.0)) <= 1e-14:  # no noise: c = 1 is a fixed point; stable iff chi_c(1) <= 1
        if chi_c_numeric(sigma_w2_, sigma_b2_, rho_, qs, 1.0) <= 1.0:
            return 1.0
        hi = 1.0 - 1e-9
    return brentq(fn, 0.0, hi, xtol=1e-15, rtol=1e-15)


def random_points(rng: np.random.Generator, n: int = 5):
    """rho in [0.5, 0.99], sigma_w2 in [0.5, 4], sigma_b2 in [0.01, 0.5]."""
    return list(zip(rng.uniform(0.5, 4.0, n), rng.uniform(0.01, 0.5, n), rng.uniform(0.5, 0.99, n)))


def _check_kernels(rng) -> dict[str, float]:
    """Kernel and second moment vs the core's maps at sigma_w2 = 1, sigma_b2 = 0, keep = 1 (which
    are E[phi(u1) phi(u2)] and E[phi^2]) at random (q, c)."""
    errs: dict[str, float] = {}
    qs, cs = rng.uniform(0.05, 3.0, 8), rng.uniform(-1.0, 1.0, 8)
    unit = dict(activation="erf", sigma_w2=1.0, sigma_b2=0.0, keep=1.0)
    compare(errs, "kernel", f"at q={qs}, c={cs}", kernel_numeric(qs, cs),
            meanfield.covariance_map(q=qs, c=cs, **unit), rtol=1e-10)
    compare(errs, "second_moment", f"at q={qs}", second_moment_numeric(qs), meanfield.q_map(q=qs, **unit),
            rtol=1e-10)
    return errs


def _check_maps(rng) -> dict[str, float]:
    """Variance, covariance and correlation maps vs meanfield's at random (q, c)."""
    return compare_maps_with_core({}, rng, "erf", random_points(rng, 3), rtol=1e-10,
                                  q_map=("q_map", q_map_numeric),
                                  covariance_map=("covariance_map", covariance_map_numeric),
                                  c_map=("c_map", c_map_numeric))


def _check_fixed_points(rng) -> dict[str, float]:
    """Slopes at (q*, c*) vs meanfield.analyze; q*, c* are roots of the derived q_map and c_map.

    E[phi'(u1) phi'(u2)] enters the core through chi_c = sigma_w2 E[phi' phi'](q*, c*) and
    chi_1 = (sigma_w2 / rho) E[phi' phi'](q*, 1) (THEORY §3, gbar = phi for dropout).
    """
    errs: dict[str, float] = {}
    for sw, sb, rho_ in random_points(rng):
        res = meanfield.analyze(activation="erf", sigma_w2=sw, sigma_b2=sb, keep=rho_, noise="dropout")
        qs, cs = q_star_numeric(sw, sb, rho_), c_star_numeric(sw, sb, rho_)
        where = f"at sigma_w2={sw}, sigma_b2={sb}, rho={rho_}"
        compare(errs, "q_map", f"(its root q*) {where}", qs, res.q_star, rtol=1e-8)
        compare(errs, "c_map", f"(its root c*) {where}", cs, res.c_star, rtol=1e-7)
        compare(errs, "chi_1", where, chi_1_numeric(sw, sb, rho_, qs), res.chi_1, rtol=1e-8)
        compare(errs, "chi_q", where, chi_q_numeric(sw, sb, rho_, qs), res.chi_q, rtol=1e-8)
        compare(errs, "chi_c", where, chi_c_numeric(sw, sb, rho_, qs, cs), res.chi_c, rtol=1e-7)
        compare(errs, "derivative_kernel", f"at (q*, c*) {where}", sw * derivative_kernel_numeric(qs, cs),
                res.chi_c, rtol=1e-7)
        compare(errs, "derivative_kernel", f"at (q*, 1) {where}", sw / rho_ * derivative_kernel_numeric(qs, 1.0),
                res.chi_1, rtol=1e-8)
    return errs


DERIVATIONS = [
    (kernel, _check_kernels), (second_moment, _check_kernels),
    (q_map, _check_maps), (covariance_map, _check_maps), (c_map, _check_maps),
    (q_map, _check_fixed_points), (c_map, _check_fixed_points), (derivative_kernel, _check_fixed_points),
    (chi_1, _check_fixed_points), (chi_c, _check_fixed_points), (chi_q, _check_fixed_points),
]
