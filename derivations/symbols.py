"""Shared, documented sympy symbols and the two expectation operators every derivation uses.

Symbols (all positive reals unless stated):

- ``sigma_w2``  weight variance sigma_w^2 (fan-in convention, ``W_ij ~ N(0, sigma_w^2 / N)``)
- ``sigma_b2``  bias variance sigma_b^2
- ``rho``       keep probability of dropout / Sparseout (rho = 1: no noise); drop = 1 - rho.
                The keep probability is always ``rho`` here (numeric arguments ``rho_``), never k or r.
- ``s``         Sparseout norm exponent (the paper's q; renamed to avoid a clash with the variance q)
- ``q``         pre-activation variance, ``q_ab`` covariance of two inputs
- ``c``         correlation of two inputs (real, |c| <= 1)
- ``k``         number of layers counted from the output: layer ``L - k`` (k = 0 is the output
                layer), as in THEORY §4 and Huang et al.'s ``g^{L-k}``. This is the only meaning of
                ``k`` in ``derivations``: it is neither the keep probability (``rho``) nor the
                k-winners count of winners (written ``f n``).
- ``f``         k-winners activity fraction (winners / width), ``tau`` its threshold Phi^{-1}(1 - f) (real)
- ``z, z1, z2`` standard normal integration variables; ``m`` a Bernoulli(rho) mask
- ``r``         Sparseout's noise ratio p/(1 - p) = (1 - rho)/rho = Var[m/rho] (THEORY §6): an
                expression in ``rho``, not a keep probability

Expectations are done by sympy itself: ``E_gauss`` integrates against the standard normal density,
``E_mask`` averages over the two-point mask distribution exactly.
"""

from __future__ import annotations

import functools

import sympy as sp

sigma_w2, sigma_b2, rho, s, q, q_ab = sp.symbols("sigma_w2 sigma_b2 rho s q q_ab", positive=True)
c = sp.Symbol("c", real=True)
# k is declared positive (not integer) on purpose: sympy's summation then returns the clean
# geometric closed form; the formulas are meant for k = 0, 1, 2, ... and hold there by continuity.
k = sp.Symbol("k", positive=True)
f = sp.Symbol("f", positive=True)
tau, z, z1, z2 = sp.symbols("tau z z1 z2", real=True)
m = sp.Symbol("m")
i = sp.Symbol("i", integer=True, nonnegative=True)
j = sp.Symbol("j", integer=True, nonnegative=True)
eta = sp.Symbol("eta", real=True)  # GLM linear predictor x . beta

#: Sparseout / dropout noise ratio r = p / (1 - p) = (1 - rho) / rho = Var[m / rho].
r = (1 - rho) / rho


def gauss_pdf(x: sp.Expr) -> sp.Expr:
    """Standard normal density exp(-x^2/2)/sqrt(2 pi)."""
    return sp.exp(-x**2 / 2) / sp.sqrt(2 * sp.pi)


@functools.lru_cache(maxsize=None)
def gauss_moment(n: int) -> sp.Expr:
    """E[z^n] for z ~ N(0, 1), integrated by sympy."""
    return sp.integrate(z**n * gauss_pdf(z), (z, -sp.oo, sp.oo))


def E_gauss(expr: sp.Expr, var: sp.Symbol = z, lower=-sp.oo, upper=sp.oo) -> sp.Expr:
    """E over ``var ~ N(0, 1)`` of ``expr`` restricted to [lower, upper], integrated by sympy.

    Polynomials in ``var`` over the whole line are integrated monomial by monomial (fast and exact).
    """
    expr = sp.expand(expr)
    if lower == -sp.oo and upper == sp.oo and expr.is_polynomial(var):
        poly = sp.Poly(expr, var)
        return sp.expand(sum(coef * gauss_moment(mon[0]) for mon, coef in poly.terms()))
    return sp.simplify(sp.integrate(expr * gauss_pdf(var), (var, lower, upper), conds="none"))


_A, _B, _C = sp.Symbol("A", positive=True), sp.Symbol("B", real=True), sp.Symbol("C", real=True)


@functools.lru_cache(maxsize=None)
def _exp_quadratic_lemma() -> sp.Expr:
    A, B, C = _A, _B, _C
    return sp.simplify(sp.integrate(sp.exp(-(A * z**2 + B * z + C)) * gauss_pdf(z), (z, -sp.oo, sp.oo)))


def E_gauss_exp_quadratic(expr: sp.Expr, var: sp.Symbol) -> sp.Expr:
    """E over ``var ~ N(0,1)`` of ``prefactor * exp(-(A var^2 + B var + C))`` (A > 0).

    Uses the lemma E[exp(-(A z^2 + B z + C))] = exp(B^2/(2(2A+1)) - C)/sqrt(2A+1), integrated once by
    sympy with A declared positive; integrating the raw expression lets sympy wander into
    polar_lift branches.
    """
    pref, exponent = sp.S.One, sp.S.Zero
    for fac in sp.Mul.make_args(sp.powsimp(sp.expand_power_exp(expr), combine="exp")):
        if isinstance(fac, sp.exp):
            exponent += fac.args[0]
        else:
            pref *= fac
    if pref.has(var):
        raise ValueError(f"prefactor {pref} depends on {var}")
    poly = sp.Poly(sp.expand(-exponent), var)
    if poly.degree() > 2:
        raise ValueError(f"exponent {exponent} is not quadratic in {var}")
    coeffs = {_A: poly.coeff_monomial(var**2), _B: poly.coeff_monomial(var), _C: poly.coeff_monomial(1)}
    return pref * _exp_quadratic_lemma().subs(coeffs)


def E_mask(expr: sp.Expr, mask: sp.Symbol = m, keep: sp.Expr = rho) -> sp.Expr:
    """Exact expectation over ``mask ~ Bernoulli(keep)`` (a two-point distribution)."""
    return sp.expand(keep * expr.subs(mask, 1) + (1 - keep) * expr.subs(mask, 0))


def pair_inputs(qq: sp.Expr = q, cc: sp.Expr = c) -> tuple[sp.Expr, sp.Expr]:
    """THEORY §1: u1 = sqrt(q) z1, u2 = sqrt(q) (c z1 + sqrt(1 - c^2) z2)."""
    return sp.sqrt(qq) * z1, sp.sqrt(qq) * (cc * z1 + sp.sqrt(1 - cc**2) * z2)


def E_pair(expr: sp.Expr) -> sp.Expr:
    """E over independent z1, z2 ~ N(0, 1) (use with :func:`pair_inputs`)."""
    return sp.simplify(E_gauss(E_gauss(expr, z2), z1))


def generic_branch(expr: sp.Expr) -> sp.Expr:
    """Replace every Piecewise by its last ('otherwise') branch: the generic closed form.

    sympy's geometric sums come back as Piecewise((degenerate, Eq(ratio, 1)), (generic, True)).
    """
    return expr.replace(lambda e: isinstance(e, sp.Piecewise), lambda e: e.args[-1][0])


def piecewise_equal(a: sp.Expr, b: sp.Expr, solve_for: sp.Symbol) -> bool:
    """Decide a == b for expressions that may contain geometric-sum Piecewise objects.

    The generic branches must agree identically, and both sides must agree on every degenerate
    condition ``Eq(lhs, rhs)`` found in either side, after solving it for ``solve_for`` and
    substituting (which selects the degenerate branch on both sides).
    """
    if sp.simplify(generic_branch(a) - generic_branch(b)) != 0:
        return False
    conditions = set()
    for expr in (a, b):
        for pw in expr.atoms(sp.Piecewise):
            for _, cond in pw.args:
                conditions |= {e for e in sp.preorder_traversal(cond) if isinstance(e, sp.Eq)}
    for cond in conditions:
        for sol in sp.solve(cond, solve_for, dict=True):
            sa, sb = a.subs(sol), b.subs(sol)
            if any(e.has(sp.zoo, sp.nan, sp.oo, -sp.oo) for e in (sa, sb)):
                continue  # the degenerate condition lies outside the formulas' domain (e.g. q* = inf)
            if sp.simplify(sa - sb) != 0:
                return False
    return True


def solve_unique(lhs, rhs, var) -> sp.Expr:
    """The single solution of lhs = rhs for var, simplified (ValueError unless exactly one)."""
    sols = sp.solve(sp.Eq(lhs, rhs), var)
    if len(sols) != 1:
        raise ValueError(f"expected one solution for {var}, got {sols}")
    return sp.simplify(sols[0])
