"""erf with dropout: the arcsin kernel against scipy dblquad, fixed points against direct iteration."""

import numpy as np
import pytest
import sympy as sp
from scipy import integrate, special

import meanfield
from derivations import erf as E
from derivations.symbols import c, q, rho, sigma_w2


def _pair(fn, qq, cc):
    pdf = lambda x: np.exp(-x * x / 2) / np.sqrt(2 * np.pi)  # noqa: E731
    s = np.sqrt(1 - cc * cc)
    val, _ = integrate.dblquad(
        lambda z2, z1: fn(np.sqrt(qq) * z1, np.sqrt(qq) * (cc * z1 + s * z2)) * pdf(z1) * pdf(z2),
        -12, 12, -12, 12, epsabs=1e-13, epsrel=1e-11)
    return val


@pytest.mark.parametrize("a_val,qq,cc", [(np.sqrt(np.pi) / 2, 1.0, 0.4), (np.sqrt(np.pi) / 2, 2.3, -0.8),
                                         (0.7, 0.5, 0.9)])
def test_kernels_vs_dblquad(a_val, qq, cc):
    K = sp.lambdify([q, c], E.kernel(sp.Float(a_val)))
    dK = sp.lambdify([q, c], E.derivative_kernel(sp.Float(a_val)))
    phi = lambda x: special.erf(a_val * x)  # noqa: E731
    dphi = lambda x: 2 * a_val / np.sqrt(np.pi) * np.exp(-(a_val * x) ** 2)  # noqa: E731
    assert K(qq, cc) == pytest.approx(_pair(lambda u, v: phi(u) * phi(v), qq, cc), rel=1e-8)
    assert dK(qq, cc) == pytest.approx(_pair(lambda u, v: dphi(u) * dphi(v), qq, cc), rel=1e-8)


def test_symbolic_forms():
    assert sp.simplify(E.kernel(E.a) - 2 / sp.pi * sp.asin(2 * E.a**2 * q * c / (1 + 2 * E.a**2 * q))) == 0
    assert sp.simplify(E.chi_1() - sigma_w2 / (rho * sp.sqrt(1 + sp.pi * q))) == 0
    # Price's identity in the covariance q_12 = q c: dK/dc = q E[phi' phi']
    assert sp.simplify(sp.diff(E.kernel(), c) - q * E.derivative_kernel()) == 0


def test_q_star_vs_iteration_with_quadrature():
    sw, sb, rho_ = 2.0, 0.1, 0.8
    pdf = lambda z: np.exp(-z * z / 2) / np.sqrt(2 * np.pi)  # noqa: E731
    qq = 1.0
    for _ in range(200):
        m2, _ = integrate.quad(lambda z: special.erf(np.sqrt(np.pi) / 2 * np.sqrt(qq) * z) ** 2 * pdf(z),
                               -np.inf, np.inf, epsabs=1e-14, epsrel=1e-13)
        qq = sw / rho_ * m2 + sb
    assert E.q_star_numeric(sw, sb, rho_) == pytest.approx(qq, rel=1e-9)


@pytest.mark.parametrize("sw", [1.0, 3.0])  # ordered (c* = 1) and chaotic (c* < 1) without noise
def test_c_star_without_noise_vs_core(sw):
    assert E.c_star_numeric(sw, 0.05, 1.0) == pytest.approx(meanfield.analyze("erf", sw, 0.05, 1.0).c_star, rel=1e-8)
