"""Sparseout (Khan and Stavness 2019): noise moments, ReLU variance map, chi_1, GLM penalty (THEORY §6).

Assumptions: a~ = a + sgn(a) |a|^(s/2) xi with xi = m/rho - 1, m ~ Bernoulli(rho) (rho = 1 - p is
the keep probability; r = p/(1-p) = (1-rho)/rho); s = 2 is inverted dropout. The ReLU results use
phi = max(0, .) and infinite width; the fixed point and its stability are for sigma_b2 = 0.
Backward: ``"true"`` is the derivative 1 + (s/2)|a|^((s-2)/2) xi, ``"code"`` the reference code's
1 + |a|^((s-2)/2) xi (coefficient c_s = s/2 or 1).

Derived by sympy: the conditional moments (exact two-point mask average, for a > 0; a < 0 follows
by symmetry), kappa_s = E[z^s 1(z > 0)] by integration, the ReLU variance map by integration over
the positive half line, q* by ``solve`` (for w = q^(1-s/2)), the slope of the map at q* and its
sign, chi_1 by integration (convergent for s > 1 only: the Piecewise says so and returns oo), and
the GLM penalty by a second-order ``series`` expansion of the log-partition A around x.beta with
the masks averaged exactly (for n features; the closed form's sum over j is checked for n = 1..4).
"""

from __future__ import annotations

import functools
import itertools

import meanfield
import numpy as np
import sympy as sp
from scipy import integrate
from scipy.optimize import brentq

from . import CheckFailed, compare, compare_maps_with_core, numeric_twin, record
from .symbols import E_gauss, E_mask, eta, m, q, r, rho, s, sigma_b2, sigma_w2, z

cached = functools.lru_cache(maxsize=None)
a = sp.Symbol("a", positive=True)  # a pre-noise activation value (a > 0; symmetric for a < 0)
xi = m / rho - 1
eps = sp.Symbol("epsilon", positive=True)
A = sp.Function("A")  # GLM log-partition function
BACKWARD_COEFF = {"true": s / 2, "code": sp.S.One}


def noisy(value=a):
    """Sparseout's noisy activation a + sgn(a) |a|^(s/2) xi."""
    return value + sp.sign(value) * sp.Abs(value) ** (s / 2) * xi


@cached
def conditional_mean() -> sp.Expr:
    """E[a~ | a] = a (the noise is unbiased)."""
    return sp.simplify(E_mask(noisy()))


@cached
def conditional_variance() -> sp.Expr:
    """Var[a~ | a] = r |a|^s with r = (1 - rho)/rho."""
    return sp.factor(sp.simplify(E_mask(noisy() ** 2) - conditional_mean() ** 2))


@cached
def kappa(exponent=s) -> sp.Expr:
    """kappa_s = E[z^s 1(z > 0)] = 2^(s/2 - 1) Gamma((s+1)/2) / sqrt(pi) (finite for s > -1)."""
    return sp.simplify(E_gauss(z**exponent, z, 0, sp.oo))


@cached
def relu_q_map() -> sp.Expr:
    ("ReLU variance map q -> sigma_w2 E[phi^2 + r |phi|^s] + sigma_b2 "
     "= sigma_w2 (q/2 + r kappa_s q^(s/2)) + sigma_b2.")  # one docstring line: the derivation listing shows it
    second = E_mask(noisy() ** 2)  # E[a~^2 | a] for a > 0; a~ = 0 where phi = 0
    per_z = second.subs(a, sp.sqrt(q) * z)
    return sp.simplify(sigma_w2 * E_gauss(sp.expand(sp.powsimp(sp.expand(per_z), force=True)), z, 0, sp.oo)
                       + sigma_b2)


_w = sp.Symbol("w", positive=True)  # w = q^(1 - s/2), so q^(s/2) = q / w


def _map_coefficients():
    """The ReLU map at sigma_b2 = 0 is L q + P q^(s/2): return (L, P) read off the derived map."""
    expr = sp.expand(relu_q_map().subs(sigma_b2, 0))
    L, P = expr.coeff(q), expr.coeff(q ** (s / 2))
    assert sp.simplify(L * q + P * q ** (s / 2) - expr) == 0
    return sp.factor(L), sp.factor(P)


@cached
def fixed_point_w() -> sp.Expr:
    """w* = q*^(1 - s/2) = sigma_w2 r kappa_s / (1 - sigma_w2/2): q = L q + P q^(s/2) is linear in w."""
    L, P = _map_coefficients()
    (sol,) = sp.solve(sp.Eq(q, L * q + P * q / _w), _w)  # q^(s/2) = q / w
    return sp.factor(sol)


@cached
def fixed_point() -> sp.Expr:
    """Non-zero fixed point at sigma_b2 = 0: q* = [sigma_w2 r kappa_s / (1 - sigma_w2/2)]^(2/(2-s))."""
    return sp.Pow(fixed_point_w(), 2 / (2 - s), evaluate=False)


@cached
def fixed_point_slope() -> sp.Expr:
    """Slope of the variance map at q* (sigma_b2 = 0): sigma_w2/2 + (s/2)(1 - sigma_w2/2)."""
    slope = sp.diff(relu_q_map().subs(sigma_b2, 0), q)
    slope = sp.expand(slope).subs(q ** (s / 2), q / _w)  # at the fixed point q^(s/2) = q / w*
    return sp.factor(sp.simplify(slope.subs(_w, fixed_point_w())))


@cached
def stability_condition() -> sp.Expr:
    """q* is stable iff this is negative: slope - 1 = (s - 2)(2 - sigma_w2)/4 (stable for s < 2 when sigma_w2 < 2)."""
    return sp.factor(fixed_point_slope() - 1)


@cached
def relu_chi_1(backward: str = "true") -> sp.Expr:
    """chi_1 = sigma_w2 [1/2 + c_s^2 r kappa_(s-2) q^((s-2)/2)] (c_s = s/2 true, 1 code); oo for s <= 1."""
    if backward not in BACKWARD_COEFF:
        raise ValueError(f"backward must be one of {tuple(BACKWARD_COEFF)}, got {backward!r}")
    dg = 1 + BACKWARD_COEFF[backward] * a ** ((s - 2) / 2) * xi  # phi' = 1 where phi > 0
    per_z = sp.expand(sp.powsimp(sp.expand(E_mask(dg**2)), force=True)).subs(a, sp.sqrt(q) * z)
    integral = E_gauss(sp.expand(sp.powsimp(sp.expand_power_base(per_z, force=True), force=True)), z, 0, sp.oo)
    return sp.Piecewise((sp.simplify(sigma_w2 * integral), s > 1), (sp.oo, True))


def _betas_xs(n):
    return sp.symbols(f"beta1:{n + 1}", real=True), sp.symbols(f"x1:{n + 1}", positive=True)


def _penalty_by_series(noisy_feature, n):
    """E_masks[A(sum_j beta_j x~_j)] - A(x.beta) to second order in the noise, masks averaged exactly."""
    betas, xs = _betas_xs(n)
    masks = sp.symbols(f"m1:{n + 1}")
    delta = sum(b * (noisy_feature(x_).subs(m, mk) - x_) for b, x_, mk in zip(betas, xs, masks))
    expansion = sp.series(A(eta + eps * delta), eps, 0, 3).removeO().doit()
    expected = sp.expand(expansion)
    for mk in masks:
        expected = E_mask(expected, mk)
    return sp.simplify((expected - A(eta)).subs(eps, 1))


@cached
def glm_penalty(n: int = 3) -> sp.Expr:
    """Second-order Sparseout penalty of one example with n positive features x_j (eta = x.beta):
    (r/2) A''(eta) sum_j beta_j^2 |x_j|^s; exact when A''' = 0 (squared loss). Sum it over examples."""
    return _penalty_by_series(noisy, n)


@cached
def dropout_regulariser(n: int = 3) -> sp.Expr:
    ("Wager et al. (2013) dropout regulariser derived the same way from x~ = x m / rho: "
     "(r/2) A'' sum beta_j^2 x_j^2.")  # one docstring line: the derivation listing shows it
    return _penalty_by_series(lambda x_: x_ * m / rho, n)


def glm_penalty_closed_form(n: int = 3) -> sp.Expr:
    """THEORY §6's stated form (typed in, for comparison with the series derivation)."""
    betas, xs = _betas_xs(n)
    return r / 2 * sp.Subs(sp.Derivative(A(eta), eta, 2), eta, eta).doit() * sum(
        b**2 * sp.Abs(x_) ** s for b, x_ in zip(betas, xs))


_P = ("sigma_w2", "sigma_b2", "rho", "s")
relu_q_map_numeric = numeric_twin(relu_q_map, _P + ("q",))
fixed_point_w_numeric = numeric_twin(fixed_point_w, ("sigma_w2", "rho", "s"))
fixed_point_numeric = numeric_twin(fixed_point, ("sigma_w2", "rho", "s"))
fixed_point_slope_numeric = numeric_twin(fixed_point_slope, ("sigma_w2", "s"))
stability_condition_numeric = numeric_twin(stability_condition, ("sigma_w2", "s"))
kappa_numeric = numeric_twin(kappa, ("s",))
conditional_mean_numeric = numeric_twin(conditional_mean, ("rho", "s", "a"))
conditional_variance_numeric = numeric_twin(conditional_variance, ("rho", "s", "a"))


def relu_chi_1_code() -> sp.Expr:
    """chi_1 with the reference code's backward factor 1 + |a|^((s-2)/2) xi (c_s = 1)."""
    return relu_chi_1("code")


relu_chi_1_true_numeric = numeric_twin(relu_chi_1, ("sigma_w2", "rho", "s", "q"))
relu_chi_1_code_numeric = numeric_twin(relu_chi_1_code, ("sigma_w2", "rho", "s", "q"))

GLM_FEATURES = 3
_GLM_ARGS = ("rho", "s") + tuple(f"beta{j}" for j in range(1, GLM_FEATURES + 1)) + tuple(
    f"x{j}" for j in range(1, GLM_FEATURES + 1))


def _squared_loss(penalty: sp.Expr) -> sp.Expr:
    """A penalty at squared loss A(eta) = eta^2/2 (A'' = 1), where second order is exact."""
    return sp.simplify(penalty.subs(A(eta), eta**2 / 2).doit())


glm_penalty_squared_numeric = numeric_twin(lambda: _squared_loss(glm_penalty(GLM_FEATURES)), _GLM_ARGS)
dropout_regulariser_squared_numeric = numeric_twin(
    lambda: _squared_loss(dropout_regulariser(GLM_FEATURES)), _GLM_ARGS)


def relu_q_star_numeric(sigma_w2_, sigma_b2_, rho_, s_):
    """Stable fixed point of the derived ReLU map for s < 2, sigma_w2 < 2 (root above the origin)."""
    fn = lambda qq: relu_q_map_numeric(sigma_w2_, sigma_b2_, rho_, s_, qq) - qq  # noqa: E731
    hi = 1.0
    while fn(hi) > 0:
        hi *= 2.0
        if hi > 1e12:
            raise ValueError("no finite fixed point: need sigma_w2 < 2 and s < 2")
    return brentq(fn, 1e-300, hi, xtol=1e-300, rtol=1e-15)


def exact_mask_average(loss, x, beta, rho_, s_=None):
    """E over all 2^n masks of loss(x~ . beta) - loss(x . beta), by enumeration (no expansion).

    Parameters
    ----------
    loss : callable
        Log-partition function A of the GLM, vectorised over numpy arrays.
    x, beta : ndarray, shape (n,)
        Positive features and coefficients.
    rho_ : float
        Keep probability rho in (0, 1].
    s_ : float or None
        Sparseout exponent; None for inverted dropout x~ = x m / rho.

    Returns
    -------
    float
        The exact expected change of the loss caused by the noise.
    """
    masks = np.array(list(itertools.product([0.0, 1.0], repeat=len(x))))
    prob = np.prod(np.where(masks == 1, rho_, 1 - rho_), axis=1)
    xi_ = masks / rho_ - 1.0
    tilde = x * masks / rho_ if s_ is None else x + x ** (s_ / 2) * xi_
    return float(prob @ (loss(tilde @ beta) - loss(x @ beta)))


def _check_moments(rng) -> dict[str, float]:
    """Monte Carlo: mean and variance of a~ given a (both signs), 200k masks each; 5 standard errors.

    The derived moments are for a > 0; for a < 0, E[a~ | a] = -E[a~ | |a|] by symmetry."""
    errs: dict[str, float] = {}
    for _ in range(3):
        rho_, s_ = rng.uniform(0.5, 0.95), rng.uniform(1.0, 3.0)
        for a_ in (rng.uniform(0.2, 2.0), -rng.uniform(0.2, 2.0)):
            mk = rng.random(200_000) < rho_
            tilde = a_ + np.sign(a_) * abs(a_) ** (s_ / 2) * (mk / rho_ - 1.0)
            where = f"at rho={rho_}, s={s_}, a={a_}"
            mean = np.sign(a_) * conditional_mean_numeric(rho_, s_, abs(a_))
            var = conditional_variance_numeric(rho_, s_, abs(a_))
            se_mean = np.sqrt(var / tilde.size)
            if abs(tilde.mean() - mean) > 5 * se_mean:
                raise CheckFailed(f"conditional_mean {where}: MC {tilde.mean()} vs {mean} (5 SE = {5 * se_mean})")
            record(errs, "conditional_mean", abs(tilde.mean() / mean - 1))
            # SE of the sample variance: sqrt((mu4 - var^2)/N)
            mu4 = np.mean((tilde - a_) ** 4)
            se_var = np.sqrt((mu4 - var**2) / tilde.size)
            if abs(tilde.var() - var) > 5 * se_var:
                raise CheckFailed(f"conditional_variance {where}: MC {tilde.var()} vs {var} (5 SE = {5 * se_var})")
            record(errs, "conditional_variance", abs(tilde.var() / var - 1))
    return errs


def _check_kappa(rng) -> dict[str, float]:
    """kappa_s vs scipy quad of z^s pdf(z) over (0, inf) at tight tolerance."""
    errs: dict[str, float] = {}
    for s_ in rng.uniform(0.2, 4.0, 5):
        ref, _ = integrate.quad(lambda zz: zz**s_ * np.exp(-zz * zz / 2) / np.sqrt(2 * np.pi), 0, np.inf,
                                epsabs=0, epsrel=1e-13, limit=200)
        compare(errs, "kappa", f"at s={s_}", kappa_numeric(s_), ref, rtol=1e-11)
    return errs


def _check_core(rng) -> dict[str, float]:
    """ReLU variance map at random q, its root q* and chi_1 (true and code backward) vs meanfield
    for s in (1, 2), one point just above 1 (|z|^(s-2) nearly non-integrable); the last point has
    s <= 1, where chi_1 is infinite."""
    errs: dict[str, float] = {}
    for s_lo, s_hi in [(1.0, 1.2)] + [(1.0, 2.0)] * 3 + [(0.5, 1.0)]:
        sw, sb = rng.uniform(0.3, 1.8), rng.uniform(0.02, 0.5)
        rho_, s_ = rng.uniform(0.6, 0.95), rng.uniform(s_lo, s_hi)
        compare_maps_with_core(errs, rng, "relu", [(sw, sb, rho_)], noise="sparseout", s=s_, rtol=1e-8,
                               q_map=("relu_q_map", lambda w2, b2, keep, qq: relu_q_map_numeric(w2, b2, keep, s_, qq)))
        qs = relu_q_star_numeric(sw, sb, rho_, s_)
        for name, backward, twin in [("relu_chi_1", "true", relu_chi_1_true_numeric),
                                     ("relu_chi_1_code", "code", relu_chi_1_code_numeric)]:
            res = meanfield.analyze(activation="relu", sigma_w2=sw, sigma_b2=sb, keep=rho_, noise="sparseout",
                                    s=s_, backward=backward)
            where = f"at sigma_w2={sw}, sigma_b2={sb}, rho={rho_}, s={s_}"
            compare(errs, "relu_q_map", f"(its root q*) {where}", qs, res.q_star, rtol=1e-7)
            compare(errs, name, where, twin(sw, rho_, s_, qs), res.chi_1, rtol=1e-6)
    return errs


def _fixed_point_points(rng, n: int = 4):
    """(sigma_w2, rho, s) uniform in [0.3, 1.5] x [0.6, 0.95] x [0.5, 1.8] (q* from 2e-21 to 5e2)."""
    return [(rng.uniform(0.3, 1.5), rng.uniform(0.6, 0.95), rng.uniform(0.5, 1.8)) for _ in range(n)]


def _check_fixed_point(rng) -> dict[str, float]:
    """Closed-form q*, w* = q*^(1 - s/2), the map's slope there and its sign (sigma_b2 = 0) vs
    meanfield.analyze (q* and chi_q, the slope of the variance map at q*) at sigma_b2 = 0."""
    errs: dict[str, float] = {}
    for sw, rho_, s_ in _fixed_point_points(rng):
        res = meanfield.analyze(activation="relu", sigma_w2=sw, sigma_b2=0.0, keep=rho_,
                                noise="sparseout", s=s_)
        q_star, chi_q = float(res.q_star), float(res.chi_q)
        where = f"at sigma_w2={sw}, sigma_b2=0, rho={rho_}, s={s_}"
        compare(errs, "fixed_point", where, fixed_point_numeric(sw, rho_, s_), q_star, rtol=1e-9)
        compare(errs, "fixed_point_w", where, fixed_point_w_numeric(sw, rho_, s_), q_star ** (1 - s_ / 2), rtol=1e-9)
        compare(errs, "fixed_point_slope", where, fixed_point_slope_numeric(sw, s_), chi_q, rtol=1e-8)
        compare(errs, "stability_condition", where, stability_condition_numeric(sw, s_), chi_q - 1, rtol=1e-7)
    return errs


def _check_glm(rng) -> dict[str, float]:
    """Squared loss (second order is exact): penalties vs the exact average over all 2^n masks."""
    errs: dict[str, float] = {}
    for _ in range(3):
        rho_, s_ = rng.uniform(0.5, 0.95), rng.uniform(1.0, 3.0)
        beta = rng.normal(size=GLM_FEATURES)
        x = rng.uniform(0.2, 2.0, GLM_FEATURES)
        where = f"at rho={rho_}, s={s_}, beta={beta}, x={x}"
        for name, twin, s_noise in [("glm_penalty", glm_penalty_squared_numeric, s_),
                                    ("dropout_regulariser", dropout_regulariser_squared_numeric, None)]:
            compare(errs, name, where, twin(rho_, s_, *beta, *x),
                    exact_mask_average(lambda e: e**2 / 2, x, beta, rho_, s_noise), rtol=1e-11)
    return errs


DERIVATIONS = [
    (conditional_mean, _check_moments), (conditional_variance, _check_moments), (kappa, _check_kappa),
    (relu_q_map, _check_core), (relu_chi_1, _check_core), (relu_chi_1_code, _check_core),
    (fixed_point_w, _check_fixed_point), (fixed_point, _check_fixed_point),
    (fixed_point_slope, _check_fixed_point), (stability_condition, _check_fixed_point),
    (glm_penalty, _check_glm), (dropout_regulariser, _check_glm),
]
