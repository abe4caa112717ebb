"""k-winners-take-all layers at large width (Ahmad and Scheinkman 2019; THEORY §7).

Assumptions: no boosting (as at initialisation); at large width n keeping the f n largest
pre-activations (f: fraction of winners) is a threshold at tau sqrt(q) with tau = Phi^{-1}(1 - f),
keeping the value itself (g(z) = z 1(z > tau sqrt(q))); the backward pass is the winner mask,
the threshold's dependence on the layer being neglected (exact at infinite width). f = 1/2 is ReLU.

Derived by sympy: tau by ``solve`` of 1 - Phi(tau) = f (giving erfinv), G(f) = E[z^2 1(z > tau)]
by integration (the survival function replaced by f), the forward-critical sigma_w2 by ``solve``,
chi_1 = sigma_w2 P(z > tau) = sigma_w2 f, and chi_1 at forward criticality, f / G(f) < 1 for f < 1/2.
"""

from __future__ import annotations

import functools

import numpy as np
import sympy as sp
from meanfield import kwinners

from . import compare, numeric_twin
from .symbols import E_gauss, f, q, sigma_b2, sigma_w2, tau, solve_unique, z

cached = functools.lru_cache(maxsize=None)


def _in_f(expr):
    """Replace the survival function at tau by the activity fraction f."""
    return sp.simplify(sp.expand(expr.rewrite(sp.erfc)).subs(sp.erfc(tau / sp.sqrt(2)), 2 * f))


@cached
def threshold() -> sp.Expr:
    """tau(f) = Phi^{-1}(1 - f) = sqrt(2) erfinv(1 - 2 f)."""
    return solve_unique(1 - (1 + sp.erf(tau / sp.sqrt(2))) / 2, f, tau)


@cached
def G() -> sp.Expr:
    """Variance gain G(f) = E[z^2 1(z > tau)] = f + tau pdf(tau) (tau = tau(f))."""
    return sp.collect(_in_f(E_gauss(z**2, z, tau, sp.oo)), f)


@cached
def q_map() -> sp.Expr:
    """Variance map q -> sigma_w2 E[(sqrt(q) z)^2 1(z > tau)] + sigma_b2 = sigma_w2 G(f) q + sigma_b2."""
    return sigma_w2 * q * G() + sigma_b2


@cached
def forward_critical_sigma_w2() -> sp.Expr:
    """sigma_w2 = 1/G(f): the variance-map slope chi_q = sigma_w2 G(f) equals 1."""
    return solve_unique(sp.diff(q_map(), q), 1, sigma_w2)


@cached
def chi_1() -> sp.Expr:
    """chi_1 = sigma_w2 E[1(z > tau)] = sigma_w2 f (the backward pass is the winner mask)."""
    return _in_f(sigma_w2 * E_gauss(sp.S.One, z, tau, sp.oo))


@cached
def chi_1_at_forward_critical() -> sp.Expr:
    """chi_1 at sigma_w2 = 1/G(f): f / (f + tau pdf(tau)) < 1 for f < 1/2 (tau > 0)."""
    return sp.simplify(chi_1().subs(sigma_w2, forward_critical_sigma_w2()))


def _with_tau(expr):
    return expr.subs(tau, threshold())


tau_numeric = numeric_twin(threshold, ("f",))
G_numeric = numeric_twin(lambda: _with_tau(G()), ("f",))
forward_critical_numeric = numeric_twin(lambda: _with_tau(forward_critical_sigma_w2()), ("f",))
chi_1_numeric = numeric_twin(chi_1, ("f", "sigma_w2"))
chi_1_at_forward_critical_numeric = numeric_twin(lambda: _with_tau(chi_1_at_forward_critical()), ("f",))
q_map_numeric = numeric_twin(lambda: _with_tau(q_map()), ("q", "f", "sigma_w2", "sigma_b2"))


def _check_core(rng) -> dict[str, float]:
    """Every k-winners derivation vs meanfield.kwinners at f = 1/2 (ReLU) and random f, sigma's, q;
    chi_1 at forward criticality vs the core's chi_1 at the derived (separately checked) sigma_w2."""
    errs: dict[str, float] = {}
    for ff in np.concatenate([[0.5], rng.uniform(0.01, 0.9, 5)]):
        sw, sb, qq = rng.uniform(0.5, 4.0), rng.uniform(0.0, 0.5), rng.uniform(0.1, 3.0)
        where = f"at f={ff}"
        compare(errs, "threshold", where, tau_numeric(ff), kwinners.tau(ff), rtol=1e-12, atol=1e-14)
        compare(errs, "G", where, G_numeric(ff), kwinners.G(ff), rtol=1e-12)
        forward = forward_critical_numeric(ff)
        # forward criticality means the core's variance-map slope chi_q is 1 there
        compare(errs, "forward_critical_sigma_w2", where, kwinners.chi_q(ff, forward), 1.0, rtol=1e-12)
        compare(errs, "chi_1", f"{where}, sigma_w2={sw}", chi_1_numeric(ff, sw), kwinners.chi_1(ff, sw), rtol=1e-12)
        compare(errs, "chi_1_at_forward_critical", where, chi_1_at_forward_critical_numeric(ff),
                kwinners.chi_1(ff, forward), rtol=1e-12)
        compare(errs, "q_map", f"{where}, q={qq}, sigma_w2={sw}, sigma_b2={sb}", q_map_numeric(qq, ff, sw, sb),
                kwinners.q_map(qq, ff, sw, sb), rtol=1e-12)
    return errs


DERIVATIONS = [
    (threshold, _check_core), (G, _check_core), (q_map, _check_core),
    (forward_critical_sigma_w2, _check_core), (chi_1, _check_core),
    (chi_1_at_forward_critical, _check_core),
]
