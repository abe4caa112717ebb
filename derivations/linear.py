"""Linear dropout networks, phi(x) = x (THEORY §3-§4; Huang et al. 2019 closed forms).

Assumptions: fan-in Gaussian weights, biases N(0, sigma_b2), inverted dropout with keep probability
rho on every hidden post-activation (g = phi(z) m / rho, m ~ Bernoulli(rho)), independent masks for
two inputs, infinite width. Gradient metrics: loss E = sum_i y_i^2 on the noiseless output
y = phi(z^L); k counts layers from the output (layer L - k). Fixed points exist for
sigma_w2 < rho (q*) and sigma_w2 < 1 (q*_ab).

Everything below is computed by sympy from g: Gaussian and Bernoulli expectations are integrated,
fixed points solved, and the exact (no-GIA) backward recursion of THEORY §4,
``qt_{k+1} = chi_1 qt_k + a_{L-k}^2 D``, ``a_{L-k} = a_L chi_q^k``, solved by ``rsolve`` (for a) and
variation of constants with ``summation`` (for qt). ``g_aa_huang``/``g_ab_huang`` are Huang's
published closed forms, typed in only to be compared with the derived ones.
"""

from __future__ import annotations

import functools

import meanfield
import numpy as np
import sympy as sp

from . import compare, compare_maps_with_core, numeric_twin
from .symbols import (E_gauss, E_mask, E_pair, c, i, j, k, m, pair_inputs, q, q_ab, rho, sigma_b2,
                      sigma_w2, solve_unique, z)

cached = functools.lru_cache(maxsize=None)
x = sp.Symbol("x", real=True)

#: The model: activation and the noisy element-wise map g(x, m) (THEORY §2).
PHI = x
G = PHI * m / rho


def _at(expr, arg):
    return expr.subs(x, arg)


def _E1(expr, qq):
    """E_{z, m}[expr(sqrt(qq) z, m)]."""
    return E_gauss(E_mask(_at(expr, sp.sqrt(qq) * z)))


def _E2(e1, e2, qq, cc):
    """E[e1(u1) e2(u2)] over the pair (u1, u2) at variance qq, correlation cc (masks averaged first)."""
    u1, u2 = pair_inputs(qq, cc)
    return E_pair(_at(E_mask(e1), u1) * _at(E_mask(e2), u2))


@cached
def q_map() -> sp.Expr:
    """Variance map q -> sigma_w2 E[g(sqrt(q) z, m)^2] + sigma_b2."""
    return sp.simplify(sigma_w2 * _E1(G**2, q) + sigma_b2)


@cached
def covariance_map() -> sp.Expr:
    """Covariance map q_ab -> sigma_w2 E[gbar(u1) gbar(u2)] + sigma_b2 (independent masks)."""
    return sp.simplify((sigma_w2 * _E2(G, G, q, c) + sigma_b2).subs(c, q_ab / q))


@cached
def q_star() -> sp.Expr:
    """Fixed point q* of the variance map (finite for sigma_w2 < rho)."""
    return solve_unique(q_map(), q, q)


@cached
def q_ab_star() -> sp.Expr:
    """Fixed point q*_ab of the covariance map (finite for sigma_w2 < 1; independent of rho)."""
    return solve_unique(covariance_map(), q_ab, q_ab)


@cached
def c_map() -> sp.Expr:
    """Correlation map c -> q_ab'/q* at q_aa = q_bb = q*."""
    return sp.simplify(covariance_map().subs(q_ab, c * q).subs(q, q_star()) / q_star())


@cached
def c_star() -> sp.Expr:
    """Fixed point c* = q*_ab / q* (< 1 for rho < 1)."""
    return solve_unique(c_map(), c, c)


@cached
def chi_1() -> sp.Expr:
    """chi_1 = sigma_w2 E[g'^2] at q* (single-input gradient factor)."""
    return sp.simplify(sigma_w2 * _E1(sp.diff(G, x) ** 2, q_star()))


@cached
def chi_2() -> sp.Expr:
    """chi_2 = sigma_w2 E[gbar'(u1) gbar'(u2)] at (q*, c*) (pair gradient factor under GIA)."""
    dg = sp.diff(G, x)
    return sp.simplify(sigma_w2 * _E2(dg, dg, q_star(), c_star()))


@cached
def chi_c() -> sp.Expr:
    """chi_c = slope of the c-map at c*."""
    return sp.simplify(sp.diff(c_map(), c).subs(c, c_star()))


@cached
def chi_q() -> sp.Expr:
    """chi_q = sigma_w2 E[g'^2 + g g''] at q* (slope of the variance map)."""
    return sp.simplify(sigma_w2 * _E1(sp.diff(G, x) ** 2 + G * sp.diff(G, x, 2), q_star()))


@cached
def xi_q() -> sp.Expr:
    """Variance depth scale xi_q = -1/ln chi_q."""
    return -1 / sp.log(chi_q())


@cached
def xi_c() -> sp.Expr:
    """Correlation depth scale xi_c = -1/ln chi_c."""
    return -1 / sp.log(chi_c())


@cached
def xi_1() -> sp.Expr:
    """Gradient depth scale xi_1 = 1/|ln chi_1|."""
    return 1 / sp.Abs(sp.log(chi_1()))


def _solve_first_order(A, source, x0):
    """x_{k+1} = A x_k + source(i=k), x_0 given: x_k = A^k x0 + sum_{i<k} A^{k-1-i} source(i)."""
    return A**k * x0 + sp.summation(A ** (k - 1 - i) * source, (i, 0, k - 1))


@cached
def a_coefficient() -> sp.Expr:
    """Transpose-rule coefficient a_{L-k} = a_L chi_q^k, a_L = sigma_w2 E[2 (phi'^2 + phi phi'')]."""
    a_L = sigma_w2 * E_gauss(_at(2 * (sp.diff(PHI, x) ** 2 + PHI * sp.diff(PHI, x, 2)),
                                 sp.sqrt(q_star()) * z))
    a = sp.Function("a")
    sol = sp.rsolve(a(k + 1) - chi_q() * a(k), a(k), {a(0): a_L})
    return sp.simplify(sol)


@cached
def qt_exact() -> sp.Expr:
    """Exact backward variance qt^{L-k} (no GIA): qt_{k+1} = chi_1 qt_k + a_{L-k}^2 E[g'^2 g^2]."""
    dphi = sp.diff(PHI, x)
    qt0 = E_gauss(_at(4 * PHI**2 * dphi**2, sp.sqrt(q_star()) * z))
    D = _E1(sp.diff(G, x) ** 2 * G**2, q_star())
    return _solve_first_order(chi_1(), a_coefficient().subs(k, i) ** 2 * D, qt0)


@cached
def qt_ab_exact() -> sp.Expr:
    """Exact backward covariance qt_ab^{L-k}: qt_{k+1} = chi_2 qt_k + a_{L-k}^2 E[(g'g)bar(u1)(g'g)bar(u2)]."""
    dphi = sp.diff(PHI, x)
    qs, cs = q_star(), c_star()
    qt0 = _E2(2 * PHI * dphi, 2 * PHI * dphi, qs, cs)
    D = _E2(sp.diff(G, x) * G, sp.diff(G, x) * G, qs, cs)
    return _solve_first_order(chi_2(), a_coefficient().subs(k, i) ** 2 * D, qt0)


@cached
def g_aa_exact() -> sp.Expr:
    """Exact single-input weight-gradient metric g_aa^{L-k} = qt^{L-k} E[g^2] (THEORY §4, no GIA)."""
    return qt_exact() * _E1(G**2, q_star())


@cached
def g_ab_exact() -> sp.Expr:
    """Exact pair weight-gradient metric g_ab^{L-k} = qt_ab^{L-k} E[gbar(u1) gbar(u2)] (no GIA)."""
    return qt_ab_exact() * _E2(G, G, q_star(), c_star())


@cached
def g_aa_gia() -> sp.Expr:
    """GIA single-input metric: qt_{k+1} = chi_1 qt_k solved by rsolve, times E[g^2]."""
    t = sp.Function("t")
    qt0 = qt_exact().subs(k, 0)
    qt = sp.rsolve(t(k + 1) - chi_1() * t(k), t(k), {t(0): sp.simplify(qt0)})
    return sp.simplify(qt * _E1(G**2, q_star()))


@cached
def g_ab_gia() -> sp.Expr:
    """GIA pair metric: qt_ab_{k+1} = chi_2 qt_ab_k solved by rsolve, times E[gbar gbar]."""
    t = sp.Function("t")
    qt0 = sp.simplify(qt_ab_exact().subs(k, 0))
    qt = sp.rsolve(t(k + 1) - chi_2() * t(k), t(k), {t(0): qt0})
    return sp.simplify(qt * _E2(G, G, q_star(), c_star()))


def g_aa_huang() -> sp.Expr:
    """Huang et al.'s closed form (typed in, for comparison): (4 q*^2/rho) chi_1^k [1 + sum_{j=1..k} chi_1^j / rho]."""
    qs = sigma_b2 / (1 - sigma_w2 / rho)
    ch = sigma_w2 / rho
    return 4 * qs**2 / rho * ch**k * (1 + sp.summation(ch**j, (j, 1, k)) / rho)


def g_ab_huang() -> sp.Expr:
    """Huang et al.'s closed form (typed in, for comparison): 4 q*_ab^2 sigma_w2^k sum_{j=0..k} (sigma_w2/rho^2)^j."""
    qab = sigma_b2 / (1 - sigma_w2)
    return 4 * qab**2 * sigma_w2**k * sp.summation((sigma_w2 / rho**2) ** j, (j, 0, k))


_P = ("sigma_w2", "sigma_b2", "rho")
q_map_numeric = numeric_twin(q_map, _P + ("q",))
covariance_map_numeric = numeric_twin(covariance_map, _P + ("q_ab",))
c_map_numeric = numeric_twin(c_map, _P + ("c",))
q_star_numeric = numeric_twin(q_star, _P)
q_ab_star_numeric = numeric_twin(q_ab_star, _P)
c_star_numeric = numeric_twin(c_star, _P)
chi_1_numeric = numeric_twin(chi_1, _P)
chi_2_numeric = numeric_twin(chi_2, _P)
chi_c_numeric = numeric_twin(chi_c, _P)
chi_q_numeric = numeric_twin(chi_q, _P)
xi_q_numeric = numeric_twin(xi_q, _P)
xi_c_numeric = numeric_twin(xi_c, _P)
xi_1_numeric = numeric_twin(xi_1, _P)
a_coefficient_numeric = numeric_twin(a_coefficient, _P + ("k",))
g_aa_exact_numeric = numeric_twin(g_aa_exact, _P + ("k",))
g_ab_exact_numeric = numeric_twin(g_ab_exact, _P + ("k",))
g_aa_gia_numeric = numeric_twin(g_aa_gia, _P + ("k",))
g_ab_gia_numeric = numeric_twin(g_ab_gia, _P + ("k",))


def random_points(rng: np.random.Generator, n: int = 4):
    """Parameter points with finite fixed points: rho in [0.5, 1], sigma_w2 < 0.95 rho, sigma_b2 in [0.01, 0.5]."""
    rho_ = rng.uniform(0.5, 1.0, n)
    sw = rho_ * rng.uniform(0.1, 0.95, n)
    sb = rng.uniform(0.01, 0.5, n)
    return list(zip(sw, sb, rho_))


def _check_maps(rng) -> dict[str, float]:
    """Derived variance, covariance and correlation maps vs meanfield's at random (q, c)."""
    return compare_maps_with_core(
        {}, rng, "linear", random_points(rng), rtol=1e-12, q_map=("q_map", q_map_numeric),
        covariance_map=("covariance_map", lambda sw, sb, rho_, qq, cc: covariance_map_numeric(sw, sb, rho_, cc * qq)),
        c_map=("c_map", lambda sw, sb, rho_, q_star_, cc: c_map_numeric(sw, sb, rho_, cc)))


def _check_fixed_points(rng) -> dict[str, float]:
    """Fixed points, slopes and depth scales vs meanfield.analyze (q*_ab = c* q* there)."""
    errs: dict[str, float] = {}
    for sw, sb, rho_ in random_points(rng):
        res = meanfield.analyze(activation="linear", sigma_w2=sw, sigma_b2=sb, keep=rho_, noise="dropout")
        where = f"at sigma_w2={sw}, sigma_b2={sb}, rho={rho_}"
        compare(errs, "q_ab_star", where, q_ab_star_numeric(sw, sb, rho_), res.c_star * res.q_star, rtol=1e-8)
        for name, twin in [("q_star", q_star_numeric), ("c_star", c_star_numeric),
                           ("chi_1", chi_1_numeric), ("chi_2", chi_2_numeric),
                           ("chi_c", chi_c_numeric), ("chi_q", chi_q_numeric), ("xi_q", xi_q_numeric),
                           ("xi_c", xi_c_numeric), ("xi_1", xi_1_numeric)]:
            compare(errs, name, where, twin(sw, sb, rho_), getattr(res, name), rtol=1e-8)
    return errs


def _check_gradients(rng) -> dict[str, float]:
    """Correction coefficient and gradient metrics vs meanfield.gradient_metrics (exact and GIA)."""
    depth = 12
    kk = np.arange(depth, dtype=float)
    errs: dict[str, float] = {}
    for sw, sb, rho_ in random_points(rng, 3):
        where = f"at sigma_w2={sw}, sigma_b2={sb}, rho={rho_}, k=0..{depth - 1}"
        for method, aa, ab in [("exact", g_aa_exact_numeric, g_ab_exact_numeric),
                               ("gia", g_aa_gia_numeric, g_ab_gia_numeric)]:
            res = meanfield.gradient_metrics("linear", sw, sb, rho_, depth, noise="dropout",
                                             method=method, loss="sum_squares")
            # the core's last axis runs from layer 1 to L; reversed, index k is layer L - k
            compare(errs, f"g_aa_{method}", where, aa(sw, sb, rho_, kk), res.g_aa[::-1], rtol=1e-8)
            compare(errs, f"g_ab_{method}", where, ab(sw, sb, rho_, kk), res.g_ab[::-1], rtol=1e-8)
            if method == "exact":
                compare(errs, "a_coefficient", where, a_coefficient_numeric(sw, sb, rho_, kk), res.a[::-1],
                        rtol=1e-8)
    return errs


def _check_huang(rng) -> dict[str, float]:
    """Derived exact metrics vs Huang's closed forms, numerically at random points and k = 0..20."""
    kk = np.arange(21, dtype=float)
    errs: dict[str, float] = {}
    refs = [("g_aa_exact", g_aa_exact_numeric, g_aa_huang), ("g_ab_exact", g_ab_exact_numeric, g_ab_huang)]
    for sw, sb, rho_ in random_points(rng):
        for name, derived, ref in refs:
            ref_np = sp.lambdify([sigma_w2, sigma_b2, rho, k], ref(), "numpy")
            compare(errs, name, f"vs {ref.__name__} at {(sw, sb, rho_)}", derived(sw, sb, rho_, kk),
                    ref_np(sw, sb, rho_, kk), rtol=1e-12)
    return errs


DERIVATIONS = [
    (q_map, _check_maps), (covariance_map, _check_maps), (c_map, _check_maps),
    (q_star, _check_fixed_points), (q_ab_star, _check_fixed_points), (c_star, _check_fixed_points),
    (chi_1, _check_fixed_points), (chi_2, _check_fixed_points), (chi_c, _check_fixed_points),
    (chi_q, _check_fixed_points), (xi_q, _check_fixed_points), (xi_c, _check_fixed_points),
    (xi_1, _check_fixed_points),
    (a_coefficient, _check_gradients), (g_aa_exact, _check_gradients), (g_ab_exact, _check_gradients),
    (g_aa_gia, _check_gradients), (g_ab_gia, _check_gradients),
    (g_aa_exact, _check_huang), (g_ab_exact, _check_huang),
]
