"""Linear dropout derivations: symbolic identities with THEORY §4 / Huang's closed forms, and an
independent numeric iteration of the exact backward recursion."""

import numpy as np
import pytest
import sympy as sp

from derivations import linear as L
from derivations.symbols import generic_branch, i, k, piecewise_equal, rho, sigma_b2, sigma_w2


def test_fixed_points_and_slopes_symbolic():
    assert sp.simplify(L.q_star() - sigma_b2 / (1 - sigma_w2 / rho)) == 0
    assert sp.simplify(L.q_ab_star() - sigma_b2 / (1 - sigma_w2)) == 0
    assert sp.simplify(L.c_star() - L.q_ab_star() / L.q_star()) == 0
    assert sp.simplify(L.chi_1() - sigma_w2 / rho) == 0
    assert sp.simplify(L.chi_q() - L.chi_1()) == 0
    assert sp.simplify(L.chi_2() - sigma_w2) == 0 and sp.simplify(L.chi_c() - L.chi_2()) == 0
    # chi_q from Gaussian integration by parts equals the slope of the variance map
    assert sp.simplify(L.chi_q() - sp.diff(L.q_map(), sp.Symbol("q", positive=True))) == 0


def test_exact_metrics_equal_huang_closed_forms_for_general_k():
    assert piecewise_equal(L.g_aa_exact(), L.g_aa_huang(), sigma_w2)
    assert piecewise_equal(L.g_ab_exact(), L.g_ab_huang(), sigma_w2)


def test_gia_metrics_symbolic():
    assert sp.simplify(L.g_aa_gia() - 4 * L.q_star() ** 2 / rho * (sigma_w2 / rho) ** k) == 0
    assert sp.simplify(L.g_ab_gia() - 4 * L.q_ab_star() ** 2 * sigma_w2**k) == 0


def test_solution_satisfies_recursion():
    qt = generic_branch(L.qt_exact())
    D = L.q_star() / rho**3  # E[g'^2 g^2] for g = x m / rho at variance q*
    step = qt.subs(k, k + 1) - L.chi_1() * qt - L.a_coefficient() ** 2 * D
    assert sp.simplify(step) == 0
    assert sp.simplify(L.a_coefficient().subs(k, 0) - 2 * sigma_w2) == 0
    assert i not in qt.free_symbols


def test_theory_reference_numbers():
    """THEORY §5: sigma_w2 = 0.5, sigma_b2 = 0.1, rho = 0.6 (stated to 4-5 digits)."""
    p = (0.5, 0.1, 0.6)
    assert L.q_star_numeric(*p) == pytest.approx(0.6, rel=1e-12)
    assert L.c_star_numeric(*p) == pytest.approx(1 / 3, rel=1e-12)
    assert L.chi_1_numeric(*p) == pytest.approx(0.8333, rel=1e-4)
    kk = np.array([0.0, 1.0])
    np.testing.assert_allclose(L.g_aa_exact_numeric(*p, kk), [2.4, 4.7778], rtol=1e-4)
    np.testing.assert_allclose(L.g_ab_exact_numeric(*p, kk), [0.16, 0.19111], rtol=1e-4)


def _iterate_exact(sw, sb, rho_, depth):
    """THEORY §4 recursion iterated directly with the linear moments (independent of sympy)."""
    qs, qab = sb / (1 - sw / rho_), sb / (1 - sw)
    chi1, chi2, chiq = sw / rho_, sw, sw / rho_
    qt, qtab, a = 4 * qs, 4 * qab, 2 * sw
    aa, ab = [], []
    for _ in range(depth):
        aa.append(qt * qs / rho_)
        ab.append(qtab * qab)
        qt = chi1 * qt + a**2 * qs / rho_**3
        qtab = chi2 * qtab + a**2 * qab / rho_**2
        a *= chiq
    return np.array(aa), np.array(ab)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # numpy evaluates both Piecewise branches
@pytest.mark.parametrize("p", [(0.5, 0.1, 0.6), (0.3, 0.2, 0.9), (0.81, 0.05, 0.9)])  # last: sigma_w2 = rho^2
def test_exact_metrics_match_direct_iteration(p):
    kk = np.arange(30.0)
    aa, ab = _iterate_exact(*p, 30)
    np.testing.assert_allclose(L.g_aa_exact_numeric(*p, kk), aa, rtol=1e-11)
    np.testing.assert_allclose(L.g_ab_exact_numeric(*p, kk), ab, rtol=1e-11)
