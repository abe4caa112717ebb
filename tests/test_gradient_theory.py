"""Gradient-metric recursions (THEORY §4): Huang's linear closed forms and independent quadrature."""
import math

import numpy as np
import pytest

import meanfield as mf
from meanfield import gradient_metrics

import _quadref as ref


def huang_linear(sw, sb, rho, depth):
    """Huang et al.'s closed forms, typed from THEORY §4 (k = L - l)."""
    q = sb / (1 - sw / rho)
    qab = sb / (1 - sw)
    chi1 = sw / rho
    k = np.arange(depth)
    gaa = np.array([4 * q ** 2 / rho * chi1 ** kk * (1 + sum(chi1 ** j for j in range(1, kk + 1)) / rho) for kk in k])
    gab = np.array([4 * qab ** 2 * sw ** kk * sum((sw / rho ** 2) ** j for j in range(kk + 1)) for kk in k])
    return gaa[::-1], gab[::-1]


@pytest.mark.parametrize("rho", [0.6, 0.7, 0.8, 0.9, 1.0])
def test_linear_exact_equals_huang_closed_forms(rho):
    r = gradient_metrics("linear", 0.5, 0.1, rho, depth=200)
    gaa, gab = huang_linear(0.5, 0.1, rho, 200)
    np.testing.assert_allclose(r.g_aa, gaa, rtol=1e-12, atol=0)
    np.testing.assert_allclose(r.g_ab, gab, rtol=1e-12, atol=0)


def test_linear_reference_numbers():
    r = gradient_metrics("linear", 0.5, 0.1, 0.6, depth=5)
    assert r.g_aa[-1] == pytest.approx(2.4, rel=1e-13)
    assert r.g_aa[-2] == pytest.approx(4.7778, abs=1e-4)
    assert r.g_ab[-1] == pytest.approx(0.16, rel=1e-13)
    assert r.g_ab[-2] == pytest.approx(0.19111, abs=1e-5)


def test_linear_gia_is_pure_geometric():
    r = gradient_metrics("linear", 0.5, 0.1, 0.7, depth=30, method="gia")
    np.testing.assert_allclose(r.g_aa[:-1] / r.g_aa[1:], 0.5 / 0.7, rtol=1e-13)
    np.testing.assert_allclose(r.g_ab[:-1] / r.g_ab[1:], 0.5, rtol=1e-13)


@pytest.mark.parametrize("name,sw", [("tanh", 1.4), ("erf", 1.4), ("hard_tanh", 1.4), ("relu", 1.0)])
def test_source_terms_against_quad(name, sw):
    """First exact step: qt^{L-1} = chi_1 qt^L + a_L^2 E[phi'^2 phi^2]/rho^3, by scipy quad."""
    sb, rho = 0.1, 0.8
    r = gradient_metrics(name, sw, sb, rho, depth=3)
    q, c = float(r.q_star), float(r.c_star)
    phi, dphi = ref.PHI[name]
    kinks = ref.KINKS.get(name, [0.0])
    pd = ref.gauss1(lambda x: (phi(x) * dphi(x)) ** 2, q, kinks)
    qt_top = 4 * pd
    h = 1e-5 * q  # a_L = 2 sw d/dq E[phi^2], by a central difference of quad values
    a2 = lambda qq: ref.gauss1(lambda x: phi(x) ** 2, qq, kinks)
    a_top = 2 * sw * (a2(q + h) - a2(q - h)) / (2 * h)
    chi1 = ref.chi_1(name, sw, q, rho)
    assert r.qt_aa[..., -1] == pytest.approx(qt_top, rel=1e-10)
    assert r.a[..., -1] == pytest.approx(a_top, rel=1e-7)
    assert r.qt_aa[..., -2] == pytest.approx(chi1 * qt_top + a_top ** 2 * pd / rho ** 3, rel=1e-7)
    pk = ref.gauss2(lambda x: phi(x) * dphi(x), lambda x: phi(x) * dphi(x), q, c, kinks)
    chi2 = ref.chi_c(name, sw, q, c)
    assert r.qt_ab[..., -1] == pytest.approx(4 * pk, rel=1e-10)
    assert r.qt_ab[..., -2] == pytest.approx(chi2 * 4 * pk + a_top ** 2 * pk / rho ** 2, rel=1e-7)


def test_decay_rates_and_correction_decay():
    r = gradient_metrics("tanh", 1.4, 0.1, 0.8, depth=400)
    np.testing.assert_allclose(r.a[:-1] / r.a[1:], r.chi_q, rtol=1e-12)
    ratio = r.g_aa[0] / r.g_aa[1]
    assert ratio == pytest.approx(float(r.decay_single), rel=1e-6)
    pair = r.g_ab[0] / r.g_ab[1]
    assert pair == pytest.approx(float(r.decay_pair), rel=1e-3)


def test_readout_loss_is_gia():
    a = gradient_metrics("tanh", 1.4, 0.1, 0.8, depth=20, loss="readout", method="exact")
    b = gradient_metrics("tanh", 1.4, 0.1, 0.8, depth=20, loss="readout", method="gia")
    np.testing.assert_array_equal(a.g_aa, b.g_aa)
    np.testing.assert_allclose(a.g_aa[:-1] / a.g_aa[1:], a.chi_1, rtol=1e-13)


def test_sparseout_s2_equals_dropout():
    a = gradient_metrics("tanh", 1.4, 0.1, 0.8, depth=10, noise="sparseout", s=2.0)
    b = gradient_metrics("tanh", 1.4, 0.1, 0.8, depth=10, noise="dropout")
    np.testing.assert_allclose(a.g_aa, b.g_aa, rtol=1e-11)
    np.testing.assert_allclose(a.g_ab, b.g_ab, rtol=1e-11)


def test_vectorised_over_keep():
    keep = np.array([0.6, 0.8, 1.0])
    r = gradient_metrics("linear", 0.5, 0.1, keep, depth=50)
    assert r.g_aa.shape == (3, 50)
    for i, k in enumerate(keep):
        np.testing.assert_allclose(r.g_aa[i], gradient_metrics("linear", 0.5, 0.1, k, depth=50).g_aa, rtol=1e-14)


def test_crossover_depth():
    r = gradient_metrics("tanh", 1.4, 0.1, 0.8, depth=200)
    k_small, k_big = r.crossover_depth(250), r.crossover_depth(4000)
    assert 0 < k_small < k_big < 200
    # asymptotically k_x ~ ln(sqrt N) / ln(chi_1 / max(chi_2, chi_q^2)): the N-dependence is exact
    slope = math.log(math.sqrt(4000 / 250)) / math.log(float(r.chi_1 / r.decay_pair))
    assert k_big - k_small == pytest.approx(slope, abs=1.5)
    with pytest.raises(ValueError, match="width"):
        r.crossover_depth(0)


def test_bad_arguments():
    with pytest.raises(ValueError, match="method"):
        gradient_metrics("tanh", 1.4, 0.1, 0.8, 10, method="approx")
    with pytest.raises(ValueError, match="loss"):
        gradient_metrics("tanh", 1.4, 0.1, 0.8, 10, loss="xent")
    with pytest.raises(ValueError, match="depth"):
        gradient_metrics("tanh", 1.4, 0.1, 0.8, 0)
    with pytest.raises(mf.NoFixedPointError):
        gradient_metrics("relu", 2.0, 0.1, 0.8, 10)
